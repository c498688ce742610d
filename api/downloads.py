"""Export downloads over HTTP, shared by the API (``api/routers/exports.py``) and the
dashboard (``api/ui/routes.py``).

An export streams as it is produced, reading in a database session of its own that lives
as long as the response body: the request's unit of work (``SessionDep``) ends when the
handler returns, and a stream that kept using it would silently check out a connection
nobody returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from fastapi.responses import StreamingResponse
from sqlmodel import Session
from starlette.background import BackgroundTask

from ledger.db import get_engine
from ledger.reports import exports
from ledger.reports.exports import ExportRequest

DOWNLOAD_HEADERS: Final = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def disposition(filename: str) -> dict[str, str]:
    """Headers of a file download named ``filename``."""
    return {"Content-Disposition": f'attachment; filename="{filename}"', **DOWNLOAD_HEADERS}


def stream_export(request: ExportRequest) -> StreamingResponse:
    """Select and start the export in a session of its own, closed when the body is done.

    The first chunk is produced here, so selection errors are raised to the caller (a
    problem answer or an error page), not a broken download. XLSX and PDF are complete by
    then (a statement that does not add up is an error here too); CSV and JSON check their
    totals and hash as the stream ends.
    """
    session = Session(get_engine(), expire_on_commit=False)
    try:
        selected = exports.select_export(session, request)
        chunks = exports.iter_export(session, selected)
        first = next(chunks, b"")
    except BaseException:
        session.close()
        raise

    def body() -> Iterator[bytes]:
        try:
            yield first
            yield from chunks
        finally:
            session.close()

    return StreamingResponse(
        body(),
        media_type=selected.media_type,
        headers={**disposition(selected.filename), **selected.extra_headers},
        # A client that leaves mid-stream cancels the body before its ``finally``; this
        # still runs then (closing twice is harmless).
        background=BackgroundTask(session.close),
    )
