"""Streaming plumbing shared by the export formats: CSV chunks, metered output,
spooling for formats that can only be written to a file, and the integrity error.

Every export holds at most one chunk of rows (plus the database cursor's buffer) in
memory, whatever the number of payees.
"""

from __future__ import annotations

import csv
import hashlib
import io
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, Final, Protocol

Progress = Callable[[int, int], None]
"""``progress(done, total)``: rows (or bytes) written so far and expected in all."""

# Rows fetched per round trip from a server-side cursor.
FETCH_ROWS: Final = 2_000
# CSV text buffered before it is encoded and handed on (characters).
CSV_CHUNK_CHARS: Final = 256 * 1024
# Bytes per chunk when streaming a finished file (XLSX, PDF) or a stored statement.
FILE_CHUNK_BYTES: Final = 1024 * 1024
# Spooled exports stay in memory up to this size, then move to a temporary file.
SPOOL_MEMORY_BYTES: Final = 8 * 1024 * 1024

# Spreadsheet programs run a cell starting with one of these as a formula.
_FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")


class BinarySink(Protocol):
    """Where an export writes: any binary file object (only ``write`` is used)."""

    def write(self, data: bytes, /) -> int: ...


class ExportIntegrityError(RuntimeError):
    """The stored data contradicts itself (lines vs. statement totals, bytes vs. hash).

    Not a user error: the export stops instead of handing out numbers that do not add
    up, and the operator investigates.
    """


def safe_text(value: str | None) -> str:
    """Free text (names, descriptions, reasons) made inert for spreadsheet programs:
    a leading ``= + - @`` or control character gets a ``'`` in front (OWASP CSV
    injection). Amounts are never passed through here: ``-40`` stays ``-40``."""
    if value is None:
        return ""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


def csv_chunks(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    total: int,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """RFC 4180 CSV (UTF-8, CRLF, header first) as chunks of bytes; calls
    ``progress(rows_done, total)`` after each chunk and once at the end."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    done = 0
    for row in rows:
        writer.writerow(row)
        done += 1
        if buffer.tell() >= CSV_CHUNK_CHARS:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            if progress is not None:
                progress(done, total)
    yield buffer.getvalue().encode("utf-8")
    if progress is not None:
        progress(done, max(total, done))


class MeteredWriter:
    """A binary file object's ``write`` that also counts bytes and hashes them."""

    def __init__(self, out: BinarySink) -> None:
        self._out = out
        self._sha256 = hashlib.sha256()
        self.bytes_written = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._sha256.update(data)
        self.bytes_written += len(data)
        return len(data)

    def flush(self) -> None:
        flush = getattr(self._out, "flush", None)
        if flush is not None:
            flush()

    # zipfile (XLSX) asks these of its target; the meter is a forward-only stream.
    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.bytes_written

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()


def spooled_chunks(write: Callable[[IO[bytes]], object]) -> Iterator[bytes]:
    """Run ``write(file)`` into a spooled temporary file, then yield it in chunks.

    For formats whose writer needs a whole file before the first byte is final (a ZIP
    directory, a PDF cross-reference table); memory stays bounded by the spool size.
    """
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
        write(spool)
        spool.seek(0)
        while chunk := spool.read(FILE_CHUNK_BYTES):
            yield chunk
