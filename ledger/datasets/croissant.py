"""Import an MLCommons Croissant (JSON-LD) description: name, description, licence, files.

The document is read as plain JSON with the standard Croissant context (``sc:`` = schema.org,
``cr:`` = Croissant); we do not run a JSON-LD processor, so keys may be bare (``sha256``) or
prefixed (``cr:sha256``, ``sc:name``). What maps to the manifest:

- every ``FileObject`` in ``distribution`` becomes a manifest entry: ``sha256`` (required:
  Croissant also allows md5, which the manifest cannot use), ``contentSize`` (an exact byte
  count: ``1234``, ``"1234 B"``, or ``"2 MB"``/``"2 MiB"`` when that is a whole number of
  bytes), and a path: ``contentUrl`` when it is relative, otherwise the object's ``name``
  (or ``@id``);
- ``FileSet`` objects select files inside a FileObject (an archive) or a folder; their bytes
  are covered by that FileObject's hash, so they are listed in ``notes``, not imported;
- ``license`` (a string, ``{"@id": url}`` or a list) becomes an SPDX expression: SPDX and
  Creative Commons URLs map to their identifiers, several licences are joined with ``AND``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlparse

from ledger.datasets.fingerprint import ManifestEntry, validate_manifest
from ledger.errors import ErrorCollector, ValidationFailed

_PREFIXES = ("sc:", "schema:", "cr:", "https://schema.org/", "http://schema.org/")
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_UNITS = {
    "": 1,
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


@dataclass(frozen=True)
class CroissantImport:
    """What a Croissant document says, ready for ``register_dataset``."""

    name: str | None
    description: str | None
    licence: str | None  # an SPDX expression candidate; validated at registration
    files: tuple[ManifestEntry, ...]  # validated and sorted by path
    notes: tuple[str, ...]  # what was not imported, and why
    document: dict[str, Any]  # the JSON-LD as given, stored on the dataset


def _plain(obj: Any) -> Any:
    """``obj`` with known context prefixes stripped from its keys (recursively)."""
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if not isinstance(obj, Mapping):
        return obj
    out: dict[str, Any] = {}
    for key, value in obj.items():
        bare = key
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                bare = key[len(prefix) :]
                break
        out[bare] = _plain(value)
    return out


def _text(value: Any) -> str | None:
    """A literal's text: plain strings, ``{"@value": …}`` and single-item lists."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, Mapping):
        value = value.get("@value", value.get("@id"))
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _type_name(obj: Mapping[str, Any]) -> str:
    kinds = obj.get("@type")
    kind = kinds[0] if isinstance(kinds, list) and kinds else kinds
    return re.split(r"[:/#]", kind)[-1] if isinstance(kind, str) else ""


def licence_from_url(value: str) -> str | None:
    """The SPDX id a licence URL or id stands for (``…/licenses/by/4.0/`` → ``CC-BY-4.0``);
    a value that is not a URL is returned as is; an unrecognised URL gives None."""
    if not re.match(r"[a-z]+://", value, re.IGNORECASE):
        return value
    url = urlparse(value)
    host = url.netloc.lower().removeprefix("www.")
    parts = [p for p in url.path.split("/") if p]
    if host == "spdx.org" and len(parts) >= 2 and parts[0] == "licenses":
        return re.sub(r"\.(html|json)$", "", parts[1])
    if host == "opensource.org" and len(parts) >= 2 and parts[0] == "licenses":
        return parts[1]
    if host == "creativecommons.org" and len(parts) >= 3:
        if parts[0] == "licenses":
            return f"CC-{parts[1].upper()}-{parts[2]}"
        if parts[:2] == ["publicdomain", "zero"]:
            return f"CC0-{parts[2]}"
    return None


def _content_size(value: Any) -> int | None:
    """An exact byte count, or None when ``value`` is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = _text(value)
    match = _SIZE.fullmatch(text or "")
    if match is None or match.group(2).lower() not in _UNITS:
        return None
    try:
        size = Decimal(match.group(1)) * _UNITS[match.group(2).lower()]
    except InvalidOperation:
        return None
    return int(size) if size == size.to_integral_value() else None


def _holds_nul(value: Any) -> bool:
    """Whether any key or string in a JSON value contains U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def parse_croissant(document: Mapping[str, Any] | str | bytes) -> CroissantImport:
    """Read a Croissant JSON-LD document (module doc); raise ValidationFailed with field
    paths like ``croissant/distribution/2/sha256`` for anything that cannot be imported."""
    if isinstance(document, str | bytes):
        try:
            document = json.loads(document)
        except json.JSONDecodeError as exc:
            raise ValidationFailed(
                f"the Croissant document is not JSON: {exc}",
                field="croissant",
                code="croissant_invalid",
            ) from None
    if not isinstance(document, Mapping):
        raise ValidationFailed(
            "the Croissant document must be a JSON object",
            field="croissant",
            code="croissant_invalid",
        )
    if _holds_nul(document):
        # PostgreSQL (jsonb) cannot store U+0000, and no real description needs it.
        raise ValidationFailed(
            "the Croissant document contains the NUL character (U+0000); remove it",
            field="croissant",
            code="croissant_invalid",
        )
    doc = _plain(document)
    errors = ErrorCollector()
    notes: list[str] = []

    licences: list[str] = []
    raw_licences = doc.get("license")
    for raw in raw_licences if isinstance(raw_licences, list) else [raw_licences]:
        text = _text(raw)
        if text is None:
            continue
        spdx = licence_from_url(text)
        if spdx is None:
            notes.append(f"license {text} is not an SPDX or Creative Commons URL; give the licence")
        else:
            licences.append(spdx)

    entries: list[dict[str, Any]] = []
    distribution = doc.get("distribution", [])
    if isinstance(distribution, Mapping):
        distribution = [distribution]
    if not isinstance(distribution, list):
        distribution = []
    for i, obj in enumerate(distribution):
        where = f"croissant/distribution/{i}"
        if not isinstance(obj, Mapping):
            continue
        kind = _type_name(obj)
        label = _text(obj.get("name")) or _text(obj.get("@id")) or f"distribution {i}"
        if kind == "FileSet":
            notes.append(
                f"FileSet {label} not imported: its files are covered by the hash of "
                "the FileObject or folder that contains them"
            )
            continue
        if kind != "FileObject":
            notes.append(f"{label} ({kind or 'no @type'}) is not a FileObject; not imported")
            continue
        digest = _text(obj.get("sha256"))
        if digest is None:
            errors.add(
                f"{where}/sha256",
                "croissant_file_unhashed",
                f"FileObject {label} has no sha256 (md5 alone cannot build the SHA-256 "
                "manifest); add sha256, or fingerprint the files with "
                "`usefirst dataset fingerprint`",
            )
        size = _content_size(obj.get("contentSize"))
        if size is None:
            errors.add(
                f"{where}/contentSize",
                "croissant_size_inexact",
                f"FileObject {label} has contentSize {obj.get('contentSize')!r}, which is not "
                'an exact number of bytes; give it in bytes (e.g. "1234 B")',
            )
        url = _text(obj.get("contentUrl"))
        path = url if url and not urlparse(url).scheme else label
        entries.append({"path": path, "size": size, "sha256": digest})
    errors.raise_if_any("the Croissant document cannot be imported")
    if not entries:
        raise ValidationFailed(
            "the Croissant document has no FileObject in distribution, so there is nothing "
            "to fingerprint; add FileObjects with sha256 and contentSize",
            field="croissant/distribution",
            code="croissant_no_files",
        )
    files = validate_manifest(entries, "croissant/files")
    return CroissantImport(
        name=_text(doc.get("name")),
        description=_text(doc.get("description")),
        licence=" AND ".join(licences) if licences else None,
        files=files,
        notes=tuple(notes),
        document=dict(document),
    )


def registration_fields(
    document: Mapping[str, Any] | str | bytes | None,
    *,
    name: str | None = None,
    description: str | None = None,
    licence: str | None = None,
    files: Sequence[ManifestEntry | Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """``register_dataset`` arguments: what the caller gave, else what the Croissant
    ``document`` says (name, description, licence, files), plus the document itself.

    Missing values become empty ones, which registration refuses with a precise code
    (``name_required``, ``licence_required``, ``manifest_empty``). Raises ValidationFailed
    as :func:`parse_croissant` does.
    """
    imported = parse_croissant(document) if document is not None else None
    return {
        "name": name if name is not None else ((imported.name or "") if imported else ""),
        "description": (
            description
            if description is not None
            else ((imported.description or "") if imported else "")
        ),
        "licence": licence if licence is not None else (imported.licence if imported else None),
        "files": files if files is not None else (imported.files if imported else ()),
        "croissant": imported.document if imported else None,
    }
