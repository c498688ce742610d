"""Dashboard sign-in: an API key is exchanged for a signed, httpOnly session cookie.

- The cookie names the API key by id (the key itself is never stored in it or shown
  again), carries the session's CSRF token and its start time, and is signed with
  HMAC-SHA256 (itsdangerous). It is ``HttpOnly``, ``SameSite=Strict``, scoped to ``/ui``,
  ``Secure`` when configured, and expires ``session_max_age_s`` after sign-in.
- Every request re-reads the key and its account: revoking the key or disabling the
  account ends its sessions at once.
- Every form carries the session's CSRF token (a synchronizer token bound to the
  session); the sign-in form, which has no session yet, uses a double-submit cookie. A
  POST whose ``Origin`` names another site is refused too.
- Signing out deletes the cookie. A copy taken before stays valid until it expires:
  sessions are not stored server-side (that needs a session table).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlmodel import Session

from api.deps import Principal, SessionDep
from ledger.access.models import ApiKey
from ledger.access.service import authenticate
from ledger.errors import Forbidden, Unauthorized
from ledger.owners.models import Account

from .settings import get_ui_settings, session_secret

SESSION_COOKIE = "uf_session"
LOGIN_CSRF_COOKIE = "uf_login_csrf"
COOKIE_PATH = "/ui"
CSRF_FIELD = "csrf_token"
LOGIN_CSRF_MAX_AGE_S = 3600
_SALT = "usefirst.ui.session.v1"


class LoginRequired(Unauthorized):
    """No valid session: pages redirect to the sign-in form (``message`` says why)."""

    code = "login_required"


class CsrfRejected(Forbidden):
    code = "csrf_failed"


@dataclass(frozen=True)
class Viewer:
    """The signed-in principal of a dashboard request and its session's CSRF token."""

    principal: Principal
    csrf_token: str
    key_prefix: str

    @property
    def role(self) -> str:
        return self.principal.role


@lru_cache(maxsize=1)
def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        session_secret(get_ui_settings()),
        salt=_SALT,
        signer_kwargs={"digest_method": hashlib.sha256},
    )


def _cookie_options(path: str, max_age: int) -> dict[str, Any]:
    return {
        "path": path,
        "max_age": max_age,
        "httponly": True,
        "samesite": "strict",
        "secure": get_ui_settings().cookie_secure,
    }


# --- sign-in ------------------------------------------------------------------------------


def sign_in(session: Session, plaintext_key: str) -> tuple[ApiKey, Account]:
    """The key and its account (Unauthorized with the reason when the key does not work)."""
    return authenticate(session, plaintext_key.strip())


def start_session(response: Response, key: ApiKey) -> None:
    """Set a fresh session cookie (new CSRF token) for ``key``; drop the sign-in cookie."""
    payload = {"k": str(key.id), "c": secrets.token_urlsafe(32), "t": int(time.time())}
    max_age = get_ui_settings().session_max_age_s
    response.set_cookie(
        SESSION_COOKIE, _serializer().dumps(payload), **_cookie_options(COOKIE_PATH, max_age)
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{COOKIE_PATH}/login")


def end_session(response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=get_ui_settings().cookie_secure,
    )


def login_csrf_token(request: Request) -> str:
    """The sign-in form's token: the browser's cookie if it has one, else a new one."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return token if len(token) >= 32 else secrets.token_urlsafe(32)


def set_login_csrf_cookie(response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, **_cookie_options(f"{COOKIE_PATH}/login", LOGIN_CSRF_MAX_AGE_S)
    )


def check_login_csrf(request: Request, submitted: object) -> None:
    check_same_origin(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not _same_token(submitted, expected):
        raise CsrfRejected(
            "the sign-in form expired or was not sent from this site; reload it and try again",
            field=CSRF_FIELD,
        )


# --- requests with a session --------------------------------------------------------------


def _session_payload(request: Request) -> dict[str, Any]:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        raise LoginRequired("sign in with your API key")
    max_age = get_ui_settings().session_max_age_s
    try:
        payload = _serializer().loads(raw, max_age=max_age)
    except SignatureExpired:
        raise LoginRequired("your session expired; sign in again") from None
    except BadSignature:
        raise LoginRequired("sign in with your API key") from None
    if not isinstance(payload, dict) or not {"k", "c", "t"} <= payload.keys():
        raise LoginRequired("sign in with your API key")
    return payload


def get_viewer(request: Request, session: SessionDep) -> Viewer:
    """The signed-in principal, re-checked against its key and account on every request."""
    payload = _session_payload(request)
    try:
        key_id = uuid.UUID(str(payload["k"]))
    except ValueError:
        raise LoginRequired("sign in with your API key") from None
    key = session.get(ApiKey, key_id)
    account = session.get(Account, key.account_id) if key is not None else None
    if key is None or account is None or key.revoked_at is not None:
        raise LoginRequired("the API key of your session was revoked; sign in with a new key")
    if account.disabled_at is not None:
        raise LoginRequired("your account is disabled")
    request.scope.setdefault("state", {})["key_prefix"] = key.prefix
    principal = Principal(
        account_id=account.id,
        role=account.role,
        display_name=account.display_name,
        key_prefix=key.prefix,
    )
    return Viewer(principal=principal, csrf_token=str(payload["c"]), key_prefix=key.prefix)


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def require_role(viewer: Viewer, *roles: str) -> None:
    if viewer.role not in roles:
        raise Forbidden(
            f"this page is for {' or '.join(roles)} accounts; you are signed in as {viewer.role}",
            code="wrong_role",
        )


def check_same_origin(request: Request) -> None:
    """Refuse a POST whose ``Origin`` (or, without it, ``Referer``) is another site."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return  # not a browser; the CSRF token still has to match
    # An opaque origin ("null": sandboxed frames, cross-site redirects) is not ours either.
    if source == "null" or urlsplit(source).netloc != request.url.netloc:
        raise CsrfRejected(
            "the form was sent from another site; open the dashboard and submit it there",
            field=CSRF_FIELD,
        )


def _same_token(submitted: object, expected: str) -> bool:
    return isinstance(submitted, str) and hmac.compare_digest(submitted.encode(), expected.encode())


async def checked_form(request: Request, viewer: ViewerDep) -> dict[str, str]:
    """The posted form after its CSRF token and origin were checked (text fields only)."""
    check_same_origin(request)
    form = await request.form()
    if not _same_token(form.get(CSRF_FIELD), viewer.csrf_token):
        raise CsrfRejected(
            "the form's security token is missing or stale; reload the page and try again",
            field=CSRF_FIELD,
        )
    return {name: value for name, value in form.items() if isinstance(value, str)}


FormDep = Annotated[dict[str, str], Depends(checked_form)]
