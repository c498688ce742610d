"""Content fingerprints: a manifest of files and the Merkle root over it (``usefirst-manifest/v1``).

A dataset's content is a **manifest**: one entry per file with its path, size in bytes and
SHA-256. The **content root** is the root of a binary Merkle tree over the entries, built as
in RFC 6962 (Certificate Transparency), so anyone can recompute it from the manifest and an
owner can prove that one file belongs to a registered dataset with a short proof.

Definition (version ``usefirst-manifest/v1``):

- Paths are relative POSIX paths (``/`` separators), Unicode NFC-normalised, with no empty,
  ``.`` or ``..`` segment, no leading ``/``, no backslash and no control character.
- Entries are sorted by the UTF-8 bytes of their paths; paths are unique.
- ``leaf = SHA-256(0x00 ‖ sha256 (32 bytes) ‖ size (8 bytes, big-endian) ‖ UTF-8 path)``.
- ``node = SHA-256(0x01 ‖ left ‖ right)``. Each level pairs neighbours left to right; an odd
  last node moves up unchanged (this equals RFC 6962's split at the largest power of two).
- The root of one entry is its leaf; the root of no entries is ``SHA-256("")`` (a dataset
  must have at least one file, so no registered root is that).

The 0x00/0x01 prefixes keep a leaf from ever being mistaken for an inner node. Hashing a
folder streams each file in 1 MiB chunks, so file size is bounded only by the disk.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ledger.errors import ErrorCollector, ValidationFailed

MANIFEST_FORMAT = "usefirst-manifest/v1"
CHUNK_BYTES = 1 << 20  # 1 MiB: memory stays flat whatever the file size
MANIFEST_FILES_MAX = 1_000_000
PATH_BYTES_MAX = 4096
SIZE_BYTES_MAX = (1 << 63) - 1  # the dataset_file.size_bytes column is a signed BIGINT

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Called with (relative path, bytes hashed since the previous call).
ProgressCallback = Callable[[str, int], None]


@dataclass(frozen=True)
class ManifestEntry:
    """One file: relative POSIX path, size in bytes, SHA-256 as 64 lower-case hex digits."""

    path: str
    size: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Fingerprint:
    """A validated, sorted manifest and its content root (hex)."""

    entries: tuple[ManifestEntry, ...]
    root: str
    # Paths found but not part of the manifest (symbolic links, sockets, …), with why.
    skipped: tuple[str, ...] = ()

    @property
    def file_count(self) -> int:
        return len(self.entries)

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def as_json(self) -> dict[str, Any]:
        """The manifest document written by ``usefirst dataset fingerprint --json``."""
        return {
            "format": MANIFEST_FORMAT,
            "root": self.root,
            "file_count": self.file_count,
            "total_bytes": self.total_bytes,
            "files": [e.as_dict() for e in self.entries],
            "skipped": list(self.skipped),
        }


# --- the tree -------------------------------------------------------------------------


def leaf_hash(entry: ManifestEntry) -> bytes:
    """``SHA-256(0x00 ‖ sha256 ‖ size_be64 ‖ utf8(path))`` of a validated entry."""
    return hashlib.sha256(
        b"\x00" + bytes.fromhex(entry.sha256) + entry.size.to_bytes(8, "big") + entry.path.encode()
    ).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    paired = [_node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        paired.append(level[-1])
    return paired


def merkle_root(entries: Sequence[ManifestEntry]) -> str:
    """The content root (hex) of entries already sorted by path (see the module doc)."""
    if not entries:
        return hashlib.sha256(b"").hexdigest()
    level = [leaf_hash(e) for e in entries]
    while len(level) > 1:
        level = _next_level(level)
    return level[0].hex()


def inclusion_proof(entries: Sequence[ManifestEntry], path: str) -> list[tuple[str, bytes]]:
    """Sibling hashes from the leaf of ``path`` up to the root, each tagged ``"L"`` or
    ``"R"`` for the side the sibling is on. Levels where the node moves up alone add nothing."""
    index = next((i for i, e in enumerate(entries) if e.path == path), None)
    if index is None:
        raise ValidationFailed(
            f"{path!r} is not in the manifest", field="path", code="manifest_path_unknown"
        )
    proof: list[tuple[str, bytes]] = []
    level = [leaf_hash(e) for e in entries]
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(("L" if sibling < index else "R", level[sibling]))
        level = _next_level(level)
        index //= 2
    return proof


def verify_inclusion(entry: ManifestEntry, proof: Iterable[tuple[str, bytes]], root: str) -> bool:
    """Whether ``entry`` with ``proof`` (from :func:`inclusion_proof`) leads to ``root``."""
    node = leaf_hash(entry)
    for side, sibling in proof:
        node = _node_hash(sibling, node) if side == "L" else _node_hash(node, sibling)
    return node.hex() == root.lower()


# --- validation -------------------------------------------------------------------------


def path_problem(path: str) -> str | None:
    """Why ``path`` (already NFC) is not a manifest path, or None."""
    if not path:
        return "is empty"
    if len(path.encode()) > PATH_BYTES_MAX:
        return f"is longer than {PATH_BYTES_MAX} bytes"
    if _CONTROL.search(path):
        return "contains a control character"
    if "\\" in path:
        return "contains a backslash; use / between folders"
    if path.startswith("/"):
        return "is absolute; give it relative to the dataset folder"
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            return f"has an empty, '.' or '..' segment ({segment!r}); give a normalised path"
    return None


def validate_manifest(
    entries: Iterable[ManifestEntry | Mapping[str, Any]], field: str = "files"
) -> tuple[ManifestEntry, ...]:
    """Check and normalise manifest entries; return them sorted by path.

    Each entry is a :class:`ManifestEntry` or a mapping with ``path``, ``size`` and
    ``sha256``. Paths are NFC-normalised, hashes lower-cased. Every problem is reported
    at once as ValidationFailed with field paths like ``files/3/sha256``.
    """
    errors = ErrorCollector()
    clean: list[ManifestEntry] = []
    seen: dict[str, int] = {}
    items = list(entries)
    if not items:
        errors.add(
            field, "manifest_empty", f"{field} is empty; a dataset must contain at least one file"
        )
    if len(items) > MANIFEST_FILES_MAX:
        errors.add(
            field,
            "manifest_too_large",
            f"{field} lists {len(items)} files; at most {MANIFEST_FILES_MAX} are allowed "
            "(pack small files into archives)",
        )
        errors.raise_if_any()
    for i, item in enumerate(items):
        raw = item.as_dict() if isinstance(item, ManifestEntry) else item
        where = f"{field}/{i}"
        if not isinstance(raw, Mapping):
            errors.add(where, "manifest_entry_invalid", f"{where} must be an object")
            continue
        path = raw.get("path")
        size = raw.get("size")
        digest = raw.get("sha256")
        ok = True
        if not isinstance(path, str):
            errors.add(f"{where}/path", "manifest_path_invalid", f"{where}/path must be a string")
            ok = False
        else:
            path = unicodedata.normalize("NFC", path)
            problem = path_problem(path)
            if problem is not None:
                errors.add(f"{where}/path", "manifest_path_invalid", f"path {path!r} {problem}")
                ok = False
            elif path in seen:
                errors.add(
                    f"{where}/path",
                    "manifest_path_duplicate",
                    f"path {path!r} appears twice (entries {seen[path]} and {i}); "
                    "each file must be listed once",
                )
                ok = False
            else:
                seen[path] = i
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= SIZE_BYTES_MAX:
            errors.add(
                f"{where}/size",
                "manifest_size_invalid",
                f"{where}/size must be a whole number of bytes from 0 to {SIZE_BYTES_MAX}, "
                f"got {size!r}",
            )
            ok = False
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest.lower()):
            errors.add(
                f"{where}/sha256",
                "manifest_sha256_invalid",
                f"{where}/sha256 must be a SHA-256 digest as 64 hex digits, got {digest!r}",
            )
            ok = False
        if ok:
            assert isinstance(path, str) and isinstance(size, int) and isinstance(digest, str)
            clean.append(ManifestEntry(path=path, size=size, sha256=digest.lower()))
    errors.raise_if_any("the file manifest has invalid entries")
    clean.sort(key=lambda e: e.path.encode())
    return tuple(clean)


def fingerprint_entries(
    entries: Iterable[ManifestEntry | Mapping[str, Any]], field: str = "files"
) -> Fingerprint:
    """Validate a manifest (see :func:`validate_manifest`) and compute its root."""
    clean = validate_manifest(entries, field)
    return Fingerprint(entries=clean, root=merkle_root(clean))


def manifest_from_json(document: Mapping[str, Any], field: str = "manifest") -> Fingerprint:
    """Read a ``usefirst-manifest/v1`` document (as written by the CLI) and check its root.

    Raises ValidationFailed (``manifest_format``, ``content_root_mismatch``, entry errors).
    """
    if document.get("format") != MANIFEST_FORMAT:
        raise ValidationFailed(
            f"{field}/format must be {MANIFEST_FORMAT!r}, got {document.get('format')!r}; "
            "produce the manifest with `usefirst dataset fingerprint --json`",
            field=f"{field}/format",
            code="manifest_format",
        )
    files = document.get("files")
    if not isinstance(files, list):
        raise ValidationFailed(
            f"{field}/files must be a list", field=f"{field}/files", code="manifest_format"
        )
    fingerprint = fingerprint_entries(files, f"{field}/files")
    stated = document.get("root")
    if stated is not None and str(stated).lower() != fingerprint.root:
        raise ValidationFailed(
            f"{field}/root {stated} does not match the root computed from its files "
            f"({fingerprint.root}); the manifest was edited or damaged, fingerprint again",
            field=f"{field}/root",
            code="content_root_mismatch",
        )
    return fingerprint


# --- hashing files ----------------------------------------------------------------------


class FileChangedError(OSError):
    """A file's size changed while it was being hashed."""


def hash_stream(
    stream: BinaryIO,
    on_chunk: Callable[[int], None] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> tuple[str, int]:
    """SHA-256 (hex) and length of everything ``stream`` yields, read ``chunk_bytes`` at a time."""
    digest = hashlib.sha256()
    total = 0
    buffer = bytearray(chunk_bytes)
    view = memoryview(buffer)
    while True:
        n = stream.readinto(view)  # type: ignore[attr-defined]
        if not n:
            break
        digest.update(view[:n])
        total += n
        if on_chunk is not None:
            on_chunk(n)
    return digest.hexdigest(), total


def scan_directory(root: Path) -> tuple[list[tuple[str, Path, int]], list[str]]:
    """Regular files below ``root`` as ``(manifest path, file, size)``, and what was skipped.

    ``root`` may be a single file (its manifest path is its name). Symbolic links are
    skipped, not followed: a link's target may lie outside the dataset or change later.
    """
    if root.is_file() and not root.is_symlink():
        return [(unicodedata.normalize("NFC", root.name), root, root.stat().st_size)], []
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is neither a folder nor a regular file")
    files: list[tuple[str, Path, int]] = []
    skipped: list[str] = []
    for folder, dirnames, filenames in os.walk(root, followlinks=False, onerror=_raise):
        base = Path(folder)
        for name in list(dirnames):
            if (base / name).is_symlink():
                dirnames.remove(name)
                skipped.append(f"{_relative(base / name, root)} (symbolic link to a folder)")
        for name in filenames:
            full = base / name
            rel = _relative(full, root)
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                skipped.append(f"{rel} (symbolic link)")
            elif not stat.S_ISREG(info.st_mode):
                skipped.append(f"{rel} (not a regular file)")
            else:
                files.append((rel, full, info.st_size))
    files.sort(key=lambda item: item[0].encode())
    skipped.sort()
    return files, skipped


def _relative(path: Path, root: Path) -> str:
    return unicodedata.normalize("NFC", path.relative_to(root).as_posix())


def _raise(error: OSError) -> None:
    raise error


def fingerprint_directory(
    root: Path,
    on_progress: ProgressCallback | None = None,
    on_start: Callable[[int, int], None] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Fingerprint:
    """Hash every regular file below ``root`` and compute the manifest and content root.

    ``on_start(file_count, total_bytes)`` is called once after the scan, ``on_progress``
    after every chunk. Raises FileChangedError when a file grows or shrinks while it is
    read (the manifest would not describe any real state of the folder), ValidationFailed
    when a path cannot be a manifest path, OSError when a file cannot be read.
    """
    files, skipped = scan_directory(root)
    if on_start is not None:
        on_start(len(files), sum(size for _, _, size in files))
    entries: list[ManifestEntry] = []
    for rel, full, size in files:
        report = (lambda n, rel=rel: on_progress(rel, n)) if on_progress else None
        with full.open("rb", buffering=0) as stream:
            digest, read = hash_stream(stream, report, chunk_bytes)
        if read != size:
            raise FileChangedError(
                f"{rel} changed while it was being hashed ({size} bytes when listed, "
                f"{read} read); fingerprint again once nothing writes to the folder"
            )
        entries.append(ManifestEntry(path=rel, size=size, sha256=digest))
    fingerprint = fingerprint_entries(entries) if entries else Fingerprint((), merkle_root([]))
    return Fingerprint(entries=fingerprint.entries, root=fingerprint.root, skipped=tuple(skipped))


def sha256_of(document: bytes | Path) -> str:
    """SHA-256 (hex) of bytes, or of a file streamed in 1 MiB chunks."""
    if isinstance(document, bytes | bytearray | memoryview):
        return hashlib.sha256(document).hexdigest()
    with Path(document).open("rb", buffering=0) as stream:
        return hash_stream(stream)[0]
