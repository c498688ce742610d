"""The canonical statement JSON, streamed from the database in slices.

These are the exact bytes whose SHA-256 is ``period.statement_hash`` (and, once
anchored, the statement hash on chain). The stream re-hashes what it sends and raises
:class:`ExportIntegrityError` at the end if the bytes do not match the hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from sqlmodel import Session

from ledger.reports import queries
from ledger.reports.queries import StatementRef
from ledger.reports.streams import FILE_CHUNK_BYTES, ExportIntegrityError, Progress


def iter_statement_json(
    session: Session,
    ref: StatementRef,
    progress: Progress | None = None,
    chunk_bytes: int = FILE_CHUNK_BYTES,
) -> Iterator[bytes]:
    """The statement bytes in chunks of ``chunk_bytes``; ``progress(bytes, total)``."""
    size, stored_sha256 = queries.statement_size(session, ref.period_id)
    if stored_sha256 != ref.statement_hash:
        raise ExportIntegrityError(
            f"period {ref.period_id}: stored statement hash {stored_sha256} differs from the "
            f"period's {ref.statement_hash}"
        )
    digest = hashlib.sha256()
    offset = 0
    for chunk in queries.stream_statement_slices(session, ref.period_id, chunk_bytes):
        digest.update(chunk)
        offset += len(chunk)
        yield chunk
        if progress is not None:
            progress(offset, size)
    if offset != size or digest.hexdigest() != ref.statement_hash:
        raise ExportIntegrityError(
            f"period {ref.period_id}: the stored statement ({offset} of {size} bytes read) "
            f"does not hash to {ref.statement_hash}"
        )
    if progress is not None and size == 0:
        progress(0, 0)
