"""Benchmark: close a period with 10,000 datasets, 50,000 payees and rollups derived
from 10 million retrieval events (issue: attribution engine and period close).

Targets: the attribution step under 2 s; the whole close (incl. journal) under 30 s.
Runs on the embedded PostgreSQL in its own database (``usefirst_bench``) and writes
the figures to docs/BENCHMARKS.md. Usage: ``.venv/bin/python scripts/bench_close.py``.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("USEFIRST_PG_DATABASE", "usefirst_bench")

import psycopg
from benchlib import machine, setup_database, write_section
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from rich.console import Console

DATASETS = 10_000
CO_OWNERS_PER_DATASET = 5
PAYEES = DATASETS * CO_OWNERS_PER_DATASET
RETRIEVAL_EVENTS = 10_000_000
CHUNKS_PER_EVENT = 5
TRAINED_DATASETS = 2_000
REVENUE_MINOR = 987_654_321

console = Console()


def load_data(dsn: str) -> tuple[uuid.UUID, uuid.UUID]:
    """Insert the model, datasets, owners and rollups with COPY; return (model, period)."""
    account_id, model_id, period_id, agreement_id = (uuid.uuid4() for _ in range(4))
    starts = datetime(2026, 1, 1, tzinfo=UTC)
    ends = datetime(2026, 2, 1, tzinfo=UTC)
    addresses = [to_checksum_address(keccak(f"payee-{i}".encode())[:20]) for i in range(PAYEES)]
    owner_ids = [uuid.uuid4() for _ in range(PAYEES)]
    dataset_ids = [uuid.uuid4() for _ in range(DATASETS)]
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO account (id, role, display_name) VALUES (%s, 'model_team', 'bench team')",
            (account_id,),
        )
        cur.execute(
            "INSERT INTO model (id, account_id, name, description, kind) "
            "VALUES (%s, %s, 'bench model', '', 'rag_app')",
            (model_id, account_id),
        )
        cur.execute(
            "INSERT INTO agreement (id, model_id, version, royalty_rate_bps, training_share_bps,"
            " min_payout_minor, currency, currency_exponent, training_unit, retrieval_policy,"
            " effective_from) VALUES (%s, %s, 1, 1000, 3000, 100, 'USD', 2, 'tokens',"
            " 'rank-discount/v1', %s)",
            (agreement_id, model_id, starts),
        )
        cur.execute(
            "INSERT INTO period (id, model_id, key, starts_at, ends_at, state)"
            " VALUES (%s, %s, '2026-01', %s, %s, 'open')",
            (period_id, model_id, starts, ends),
        )
        with cur.copy("COPY owner (id, address, display_name) FROM STDIN") as copy:
            for owner_id, address in zip(owner_ids, addresses, strict=True):
                copy.write_row((owner_id, address, "bench owner"))
        with cur.copy(
            "COPY dataset (id, name, description, registrant_owner_id, licence, terms_hash,"
            " allowed_uses, valid_from, content_root, file_count, total_bytes, terms_version,"
            " status) FROM STDIN"
        ) as copy:
            for i, dataset_id in enumerate(dataset_ids):
                copy.write_row(
                    (
                        dataset_id,
                        f"dataset {i}",
                        "",
                        owner_ids[i * CO_OWNERS_PER_DATASET],
                        "CC-BY-4.0",
                        "00" * 32,
                        3,
                        starts,
                        f"{i:064x}",
                        1,
                        1,
                        1,
                        "confirmed",
                    )
                )
        with cur.copy(
            "COPY dataset_co_owner (dataset_id, terms_version, address, owner_id, share_bps)"
            " FROM STDIN"
        ) as copy:
            for i, dataset_id in enumerate(dataset_ids):
                for k in range(CO_OWNERS_PER_DATASET):
                    j = i * CO_OWNERS_PER_DATASET + k
                    copy.write_row((dataset_id, 1, addresses[j], owner_ids[j], 2000))
        # Rollups equivalent to 10M retrieval events of 5 chunks each: every event puts one
        # chunk at each rank 1..5; events are spread unevenly over the datasets.
        per_rank_total = RETRIEVAL_EVENTS
        weights = [(i % 97) + 1 for i in range(DATASETS)]
        weight_sum = sum(weights)
        with cur.copy(
            "COPY usage_rollup (model_id, period_id, dataset_id, kind, unit, list_length, rank,"
            " quantity, event_count) FROM STDIN"
        ) as copy:
            for rank in range(1, CHUNKS_PER_EVENT + 1):
                remaining = per_rank_total
                for i, dataset_id in enumerate(dataset_ids):
                    hits = per_rank_total * weights[(i + rank) % DATASETS] // weight_sum
                    if i == DATASETS - 1:
                        hits = remaining
                    remaining -= hits
                    copy.write_row(
                        (
                            model_id,
                            period_id,
                            dataset_id,
                            "rag",
                            "hits",
                            CHUNKS_PER_EVENT,
                            rank,
                            hits,
                            hits,
                        )
                    )
            for i in range(TRAINED_DATASETS):
                copy.write_row(
                    (
                        model_id,
                        period_id,
                        dataset_ids[i],
                        "train",
                        "tokens",
                        0,
                        0,
                        1_000_000 + i * 7919,
                        3,
                    )
                )
        cur.execute(
            "INSERT INTO revenue_event (id, model_id, period_id, amount_minor, currency,"
            " external_ref, occurred_at, request_hash) VALUES (%s, %s, %s, %s, 'USD', 'bench',"
            " %s, %s)",
            (uuid.uuid4(), model_id, period_id, REVENUE_MINOR, starts, "00" * 32),
        )
        conn.commit()
    return model_id, period_id


def main() -> None:
    import attribution as attr
    from ledger.db import session_scope
    from ledger.periods import close as close_service
    from ledger.settings import get_settings

    console.print(f"[bold]close benchmark[/] on {machine()}")
    setup_database()
    dsn = get_settings().effective_database_url.replace("postgresql+psycopg://", "postgresql://")
    started = time.perf_counter()
    _model_id, period_id = load_data(dsn)
    console.print(
        f"loaded {DATASETS} datasets / {PAYEES} payees in {time.perf_counter() - started:.1f}s"
    )

    with session_scope() as session:
        close_service.begin_close(session, period_id)
    with session_scope() as session:
        from ledger.periods.models import Period

        period = session.get(Period, period_id)
        assert period is not None
        agreement = close_service.agreement_for_period(session, period)
        t0 = time.perf_counter()
        period_input = close_service.build_period_input(session, period, agreement)
        t1 = time.perf_counter()
        statement = attr.compute_statement(period_input)
        t2 = time.perf_counter()
        attr.canonical_json(statement)
        t3 = time.perf_counter()
    read_s, attribute_s, serialise_s = t1 - t0, t2 - t1, t3 - t2

    close_started = time.perf_counter()
    with session_scope() as session:
        outcome = close_service.finish_close(session, period_id)
    close_s = time.perf_counter() - close_started
    assert outcome.line_count == PAYEES, outcome
    console.print(
        f"read rollups {read_s:.2f}s, attribution {attribute_s:.2f}s, canonical JSON "
        f"{serialise_s:.2f}s; whole close {close_s:.2f}s ({outcome.line_count} lines)"
    )
    write_section(
        "Period close (10,000 datasets, 50,000 payees, 10M retrieval events)",
        f"""
Command: `.venv/bin/python scripts/bench_close.py` (part of `make bench`).
Machine: {machine()}.

Input: {DATASETS:,} datasets with {CO_OWNERS_PER_DATASET} co-owners each ({PAYEES:,} payees),
retrieval rollups equivalent to {RETRIEVAL_EVENTS:,} events × {CHUNKS_PER_EVENT} chunks
(policy rank-discount/v1), {TRAINED_DATASETS:,} trained datasets, one revenue event.

| step | seconds | target |
|---|---|---|
| read rollups into the engine input | {read_s:.2f} | |
| attribution (`compute_statement`) | {attribute_s:.2f} | < 2 |
| canonical JSON + SHA-256 | {serialise_s:.2f} | |
| whole close (read, attribute, store statement + lines, post journal) | {close_s:.2f} | < 30 |
""",
    )


if __name__ == "__main__":
    main()
