"""Settings of the web dashboard, read once from ``USEFIRST_UI_*``.

Kept beside the dashboard until they move into :class:`ledger.settings.Settings`; the
signing secret defaults to a random file in the data directory, so every app process of
one installation shares it without configuration.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledger.settings import get_settings

SECRET_FILE_NAME = "session_secret"  # noqa: S105 - a file name, not a secret


class UiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="USEFIRST_UI_", extra="ignore")

    # HMAC key of the session cookie. Unset: <data_dir>/ui/session_secret, created on first use.
    session_secret: SecretStr | None = None
    # Set the cookie's Secure flag (serve the dashboard over HTTPS, e.g. behind a proxy).
    cookie_secure: bool = False
    # A session ends this long after sign-in, whatever happens in between.
    session_max_age_s: int = 8 * 3600


@lru_cache(maxsize=1)
def get_ui_settings() -> UiSettings:
    return UiSettings()


def session_secret(ui: UiSettings) -> str:
    """The configured secret, or the installation's secret file (created 0600 if missing)."""
    if ui.session_secret is not None:
        return ui.session_secret.get_secret_value()
    path = get_settings().data_dir / "ui" / SECRET_FILE_NAME
    return _read_or_create(path)


def _read_or_create(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            # A hard link appears complete or not at all, and fails if another process
            # published its secret first: every process ends up with the same one.
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()
