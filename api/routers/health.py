"""``/healthz`` (the process answers) and ``/readyz`` (database, broker and chain answer)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ledger.settings import get_settings

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check(name: str, fn: Any) -> dict[str, Any]:
    try:
        return {"name": name, "ok": True, "detail": fn()}
    except Exception as exc:
        return {"name": name, "ok": False, "detail": str(exc).splitlines()[0][:300]}


@router.get("/readyz", summary="Readiness: database, broker and chain answer")
def readyz() -> JSONResponse:
    settings = get_settings()

    def database() -> str:
        from sqlalchemy import text

        from ledger.db import get_engine

        with get_engine(settings).connect() as conn:
            return str(conn.execute(text("SELECT version()")).scalar_one()).split(" on ")[0]

    def broker() -> str:
        from api.celery_app import celery_app

        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
            return str(conn.as_uri())

    def chain() -> str:
        from api.embedded import anvil

        chain_id = int(
            str(anvil.rpc(settings.effective_eth_rpc_url, "eth_chainId", timeout_s=3)), 16
        )
        return f"chain id {chain_id}"

    checks = [_check("database", database), _check("broker", broker), _check("chain", chain)]
    ready = all(c["ok"] for c in checks)
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )
