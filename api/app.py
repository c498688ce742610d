"""The FastAPI application: versioned routers under ``/v1``, problem+json errors,
request ids, JSON logs and body size limits."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from api import ui
from api.errors import install_error_handlers
from api.logging_setup import configure_logging
from api.middleware import BodySizeLimitMiddleware, MiB, RequestContextMiddleware
from api.routers import health
from ledger.settings import get_settings

API_VERSION = "v1"
# Usage batches carry up to 50,000 events; everything else is small.
USAGE_BODY_MAX_BYTES = 64 * MiB
DEFAULT_BODY_MAX_BYTES = 1 * MiB


def guard_recursion_limit() -> None:
    """Import the chain libraries now, then cap the interpreter's recursion limit.

    py_ecc (imported through web3/eth-account) raises the limit to 100,000 at import;
    JSON decoding then recurses on the C stack and a ~100 kB body of ``[[[[…`` would
    crash the process. Importing them first means no later import can undo the cap.
    """
    import eth_account  # noqa: F401
    import web3  # noqa: F401

    from ledger.usage.wire import cap_recursion_limit

    cap_recursion_limit()


def create_app() -> FastAPI:
    guard_recursion_limit()
    settings = get_settings()
    configure_logging(json_logs=settings.log_json)
    app = FastAPI(
        title="usefirst",
        version="0.1.0",
        summary="Use first, pay later: a data royalty ledger with on-chain settlement.",
        openapi_url="/v1/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimitMiddleware,
        default_max_bytes=DEFAULT_BODY_MAX_BYTES,
        large_paths={
            f"/{API_VERSION}/usage/": USAGE_BODY_MAX_BYTES,
            f"/{API_VERSION}/lineage": 8 * MiB,
            # A dataset manifest lists every file (path, size, SHA-256).
            f"/{API_VERSION}/datasets": 32 * MiB,
        },
    )
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health.router)
    for router in _v1_routers():
        app.include_router(router, prefix=f"/{API_VERSION}")
    ui.install(app)
    return app


def _v1_routers() -> list[APIRouter]:
    # Each domain router registers here as it lands.
    from api.routers import (
        accounts,
        datasets,
        exports,
        jobs,
        lineage,
        me,
        models,
        owners,
        periods,
        quarantine,
        revenue,
        statements,
        usage,
    )

    return [
        me.router,
        periods.router,
        jobs.router,
        usage.router,
        revenue.router,
        quarantine.router,
        lineage.router,
        accounts.router,
        owners.router,
        datasets.router,
        models.router,
        statements.router,
        exports.router,
    ]
