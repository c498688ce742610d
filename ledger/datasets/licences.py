"""Licences: SPDX expressions checked against the SPDX list, custom terms, and the terms hash.

A dataset's licence is an SPDX licence expression (``MIT``, ``CC-BY-4.0``,
``Apache-2.0 OR MIT``) whose identifiers must be on the SPDX licence list shipped by
``license-expression``, or contains ``LicenseRef-<name>`` identifiers for custom terms. Custom
terms need the terms document itself: its SHA-256 is stored and signed (through the terms
hash), so co-owners sign exactly one text.

Terms hash (``usefirst-terms/v1``): the SHA-256 of the canonical JSON (keys sorted, no
spaces, ASCII with ``\\u`` escapes) of the licence and the document hash, e.g.

    {"licence":"MIT","schema":"usefirst-terms/v1","terms_document_sha256":null}

with the document hash as 64 lower-case hex digits when there is one. It is the EIP-712
``termsHash``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache

from license_expression import ExpressionError, Licensing, get_spdx_licensing

from ledger.errors import ValidationFailed

TERMS_SCHEMA = "usefirst-terms/v1"
LICENCE_MAX = 200
CUSTOM_PREFIX = "LicenseRef-"
# SPDX idstring: letters, digits, dots and hyphens.
_CUSTOM_ID = re.compile(r"LicenseRef-[A-Za-z0-9.\-]+", re.IGNORECASE)


@dataclass(frozen=True)
class Licence:
    """A validated licence: the normalised expression and its custom (LicenseRef) ids."""

    expression: str
    custom_ids: tuple[str, ...]

    @property
    def needs_terms_document(self) -> bool:
        return bool(self.custom_ids)


@lru_cache(maxsize=1)
def _licensing() -> Licensing:
    return get_spdx_licensing()


@lru_cache(maxsize=1)
def _spdx_ids() -> tuple[str, ...]:
    # license-expression also knows ScanCode's LicenseRef-scancode-* keys; hints offer SPDX ids.
    return tuple(
        key for key in _licensing().known_symbols if not key.lower().startswith("licenseref-")
    )


def _invalid(message: str, code: str, field: str) -> ValidationFailed:
    return ValidationFailed(message, field=field, code=code)


def parse_licence(value: object, field: str = "licence") -> Licence:
    """Validate and normalise a licence expression (``mit or apache-2.0`` → ``MIT OR Apache-2.0``).

    Raises ValidationFailed: ``licence_required``, ``licence_too_long``, ``licence_invalid``
    (syntax), ``licence_unknown`` (an identifier not on the SPDX list, with close matches).
    """
    if not isinstance(value, str) or not value.strip():
        raise _invalid(
            f"{field} is required: an SPDX identifier such as MIT or CC-BY-4.0, "
            "or LicenseRef-<name> with a terms document",
            "licence_required",
            field,
        )
    text = value.strip()
    if len(text) > LICENCE_MAX:
        raise _invalid(
            f"{field} has {len(text)} characters; at most {LICENCE_MAX} are allowed",
            "licence_too_long",
            field,
        )
    licensing = _licensing()
    try:
        parsed = licensing.parse(text, validate=False, strict=True)
    except ExpressionError as exc:
        raise _invalid(
            f"{field} {text!r} is not a valid SPDX licence expression ({exc}); write e.g. "
            "'MIT', 'Apache-2.0 OR MIT' or 'GPL-2.0-or-later WITH Classpath-exception-2.0'",
            "licence_invalid",
            field,
        ) from None
    if parsed is None:
        raise _invalid(f"{field} is empty", "licence_required", field)
    expression = str(parsed)
    custom: list[str] = []
    unknown: list[str] = []
    for symbol in licensing.license_symbols(parsed, unique=True):
        key = str(symbol.key)
        if key.lower().startswith(CUSTOM_PREFIX.lower()):
            if not _CUSTOM_ID.fullmatch(key):
                raise _invalid(
                    f"{field}: {key!r} is not a valid custom licence id; after LicenseRef- "
                    "use only letters, digits, '.' and '-'",
                    "licence_invalid",
                    field,
                )
            canonical = CUSTOM_PREFIX + key[len(CUSTOM_PREFIX) :]
            # Canonical prefix case, so 'licenseref-x' and 'LicenseRef-x' hash the same.
            expression = re.sub(rf"\b{re.escape(key)}\b", canonical, expression)
            custom.append(canonical)
        elif key in licensing.unknown_license_keys(parsed):
            unknown.append(key)
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, _spdx_ids(), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise _invalid(
            f"{field}: {key!r} is not an SPDX licence identifier{hint}. For terms of your own, "
            "use LicenseRef-<name> (letters, digits, '.' and '-') and upload the terms document",
            "licence_unknown",
            field,
        )
    return Licence(expression=expression, custom_ids=tuple(sorted(set(custom))))


def terms_hash(licence_expression: str, terms_document_sha256: str | None) -> str:
    """The EIP-712 ``termsHash`` (hex): SHA-256 of the canonical terms JSON (module doc)."""
    canonical = json.dumps(
        {
            "licence": licence_expression,
            "schema": TERMS_SCHEMA,
            "terms_document_sha256": terms_document_sha256,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
