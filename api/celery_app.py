"""The Celery application.

Broker and result backend come from settings: by default kombu's SQLAlchemy
transport and the database result backend on our own PostgreSQL (psycopg 3);
Redis or RabbitMQ when ``CELERY_BROKER_URL`` names them.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from ledger.settings import get_settings


def create_celery_app() -> Celery:
    settings = get_settings()
    app = Celery(
        "usefirst",
        broker=settings.effective_broker_url,
        backend=settings.effective_result_backend,
        include=["api.tasks"],
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_extended=True,
        task_track_started=True,
        # One message at a time per process: long money tasks must not sit prefetched.
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        database_table_names={"task": "celery_taskmeta", "group": "celery_groupmeta"},
        timezone="UTC",
        enable_utc=True,
        # Periodic chain work, run by the worker started with --beat (one per deployment).
        beat_schedule={
            "index-claims": {
                "task": "usefirst.index_claims",
                "schedule": settings.index_interval_s,
            },
            "reconcile": {"task": "usefirst.reconcile", "schedule": settings.reconcile_interval_s},
            "sweep-jobs": {"task": "usefirst.sweep_jobs", "schedule": 60.0},
        },
    )
    if settings.effective_broker_url.startswith("sqla+"):
        # The SQL transport polls the queue table. Its transport options go straight
        # to create_engine(), so the interval is set on the class: 0.2 s instead of
        # 1 s keeps task latency low at the cost of a few cheap queries per second.
        from kombu.transport import sqlalchemy as kombu_sqla

        kombu_sqla.Transport.polling_interval = 0.2
    return app


celery_app = create_celery_app()


def _guard_recursion_limit() -> None:
    # Same guard as the API (see api.app.guard_recursion_limit): tasks parse JSON too.
    import eth_account  # noqa: F401
    import web3  # noqa: F401

    from ledger.usage.wire import cap_recursion_limit

    cap_recursion_limit()


_guard_recursion_limit()


@worker_process_init.connect
def _fresh_connections_after_fork(**_: object) -> None:
    # Pooled connections must not be shared across forked worker processes.
    from ledger.db import dispose_engines

    dispose_engines()
