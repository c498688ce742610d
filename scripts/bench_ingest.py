"""Benchmark: retrieval-event ingestion over HTTP against a plain PostgreSQL COPY of the
same rows (issue: HTTP API). Targets: ≥ 50,000 retrieval events/s over the API and
≥ 40 % of the raw COPY rate.

1. A bench database (``usefirst_bench_ingest`` on the embedded PostgreSQL), migrated,
   with one model team, its API key, a model with an agreement and 50 datasets
   confirmed for RAG.
2. A real ``uvicorn`` server (``--workers``) on a free loopback port, as a subprocess.
3. ``--batches`` requests of 5,000 retrieval events × 5 chunks (JSON arrays, distinct
   event ids and times, each with an ``Idempotency-Key`` as the SDK sends), from
   ``--clients`` concurrent keep-alive connections; every response is checked (all
   5,000 accepted).
4. The same rows (``usage_retrieval_event`` columns) COPY-ed into an equivalent table
   (same columns, primary key and check constraint) by the same number of concurrent
   connections, one transaction per batch, from COPY data prepared beforehand (text,
   the default format, and binary): the server's and the wire's cost only.

Writes the figures to docs/BENCHMARKS.md. Usage: ``.venv/bin/python scripts/bench_ingest.py``
(part of ``make bench``); ``--batches``, ``--clients``, ``--workers`` to vary.
"""

from __future__ import annotations

import argparse
import http.client
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("USEFIRST_PG_DATABASE", "usefirst_bench_ingest")

import orjson
import psutil
import psycopg
from benchlib import (
    CpuMeter,
    free_port,
    machine,
    postgres_processes,
    process_tree,
    seed_rag_model,
    setup_database,
    start_server,
    write_section,
)
from rich.console import Console

EVENTS_PER_BATCH = 5_000
CHUNKS_PER_EVENT = 5
DATASETS = 50
MONTH = datetime(2026, 1, 1, tzinfo=UTC)  # all events in this (past, open) month
console = Console()


def seed(dsn: str) -> tuple[str, uuid.UUID, list[str]]:
    """A model team with an API key, its model and agreement, and RAG-confirmed datasets.
    Returns (API key, model id, dataset ids)."""
    key, _, model_id, datasets = seed_rag_model(dsn, DATASETS, MONTH - timedelta(days=365))
    return key, model_id, datasets


def make_batches(count: int, datasets: list[str], tag: str) -> list[list[dict[str, Any]]]:
    """``count`` batches of distinct events spread over the month, 5 chunks each."""
    out: list[list[dict[str, Any]]] = []
    for b in range(count):
        batch: list[dict[str, Any]] = []
        for i in range(EVENTS_PER_BATCH):
            n = b * EVENTS_PER_BATCH + i
            at = MONTH + timedelta(seconds=n % 2_000_000, microseconds=n % 997)
            batch.append(
                {
                    "event_id": f"{tag}-{b}-{i}",
                    "query_id": f"q-{n % 9_973}",
                    "occurred_at": at.isoformat().replace("+00:00", "Z"),
                    "chunks": [
                        {
                            "dataset_id": datasets[(n * 7 + r * 13) % DATASETS],
                            "chunk_id": f"doc-{(n * 31 + r) % 100_003}#{r}",
                            "rank": r + 1,
                            "score": round(1.0 - r * 0.1 - (n % 10) * 0.001, 4),
                        }
                        for r in range(CHUNKS_PER_EVENT)
                    ],
                }
            )
        out.append(batch)
    return out


def run_concurrently(
    jobs: list[bytes],
    clients: int,
    send: Callable[[object, bytes], None],
    connect: Callable[[], object],
) -> float:
    """Run ``send(connection, job)`` for every job from ``clients`` threads, each with
    its own connection; returns the wall time in seconds."""
    work: queue.Queue[bytes] = queue.Queue()
    for job in jobs:
        work.put(job)
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def worker() -> None:
        connection = connect()
        start.wait()
        try:
            while True:
                try:
                    job = work.get_nowait()
                except queue.Empty:
                    return
                send(connection, job)
        except BaseException as error:  # reported after the run
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return elapsed


def http_sender(
    port: int, key: str, model_id: uuid.UUID, keep_alive: bool
) -> tuple[Callable[[], object], Callable[[object, bytes], None]]:
    """Without keep-alive every request opens a connection, so the kernel hands it to
    whichever worker accepts first: kept-alive connections stay with the worker that
    accepted them, and 4 connections over 2 workers often split 3:1."""
    path = f"/v1/usage/retrievals?model_id={model_id}"

    def connect() -> object:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def send(connection: object, body: bytes) -> None:
        assert isinstance(connection, http.client.HTTPConnection)
        connection.request(
            "POST",
            path,
            body=body,
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
                "Idempotency-Key": uuid.uuid4().hex,
                "Connection": "keep-alive" if keep_alive else "close",
            },
        )
        response = connection.getresponse()
        payload = response.read()
        if not keep_alive:
            connection.close()  # the next request() connects again
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:500]!r}")
        accepted = orjson.loads(payload)["accepted"]
        if accepted != EVENTS_PER_BATCH:
            raise RuntimeError(f"only {accepted} of {EVENTS_PER_BATCH} events accepted")

    return connect, send


COPY_TABLE_DDL = """
    CREATE TABLE bench_copy_retrieval (LIKE usage_retrieval_event INCLUDING ALL)
"""


def copy_data(
    batches: list[list[dict[str, Any]]], model_id: uuid.UUID, period_id: uuid.UUID, fmt: str
) -> list[bytes]:
    """The COPY data of each batch (the rows ingestion stores), in ``fmt``."""
    from ledger.usage import pgbinary
    from ledger.usage.schemas import parse_retrieval

    out = []
    for batch in batches:
        events = [parse_retrieval(e) for e in batch]
        if fmt == "binary":
            period = pgbinary.uuid_field(period_id)
            out.append(
                pgbinary.retrieval_rows(
                    pgbinary.uuid_field(model_id), ((e, period) for e in events)
                )
            )
            continue
        lines = []
        for e in events:
            scores = ",".join(repr(s) for s in e.scores) if e.scores else ""
            chunk_ids = ",".join(f'"{c}"' for c in e.chunk_ids)
            lines.append(
                f"{model_id}\t{e.event_id}\t{e.query_id}\t{e.occurred_at.isoformat()}\t"
                f"{period_id}\t{len(e.dataset_ids)}\t{{{','.join(e.dataset_ids)}}}\t"
                f"{{{chunk_ids}}}\t{{{scores}}}\n"
            )
        out.append("".join(lines).encode())
    return out


def raw_copy(dsn: str, data: list[bytes], clients: int, fmt: str) -> float:
    statement = (
        "COPY bench_copy_retrieval (model_id, event_id, query_id, occurred_at, period_id,"
        " chunk_count, dataset_ids, chunk_ids, chunk_scores) FROM STDIN"
        + (" (FORMAT binary)" if fmt == "binary" else "")
    )

    def connect() -> object:
        return psycopg.connect(dsn)

    def send(connection: object, payload: bytes) -> None:
        assert isinstance(connection, psycopg.Connection)
        with connection.cursor() as cur, cur.copy(statement) as copy:
            copy.write(payload)
        connection.commit()

    return run_concurrently(data, clients, send, connect)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3, help="repeat each measurement; best counts")
    parser.add_argument("--keep-alive", action="store_true", help="reuse each client's connection")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args()

    console.print("[bold]setting up the bench database")
    dsn = setup_database()
    key, model_id, datasets = seed(dsn)
    events = args.batches * EVENTS_PER_BATCH

    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"usefirst-bench-ingest-{port}.log"
    console.print(f"[bold]starting uvicorn ({args.workers} workers) on 127.0.0.1:{port}")
    server = start_server(port, args.workers, log)
    api_runs: list[tuple[float, float, float]] = []  # (events/s, API CPU s, PostgreSQL CPU s)
    try:
        connect, send = http_sender(port, key, model_id, args.keep_alive)
        warmup = make_batches(2, datasets, "warmup")
        for batch in warmup:  # connections, caches, the period row
            send(connect(), orjson.dumps(batch))
        server_cpu = CpuMeter(lambda: process_tree(psutil.Process(server.pid)))
        pg_cpu = CpuMeter(lambda: postgres_processes(dsn))
        for run in range(args.runs):
            bodies = [orjson.dumps(b) for b in make_batches(args.batches, datasets, f"run{run}")]
            body_mib = sum(map(len, bodies)) / 2**20
            console.print(
                f"[bold]API run {run + 1}: {events:,} events in {args.batches} requests, "
                f"{args.clients} clients"
            )
            server_cpu.start()
            pg_cpu.start()
            api_s = run_concurrently(bodies, args.clients, send, connect)
            api_runs.append((events / api_s, server_cpu.stop(), pg_cpu.stop()))
    finally:
        server.terminate()
        server.wait(30)

    with psycopg.connect(dsn) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM usage_retrieval_event WHERE model_id = %s", (model_id,)
        ).fetchone()
        period = conn.execute(
            "SELECT id FROM period WHERE model_id = %s AND starts_at = %s", (model_id, MONTH)
        ).fetchone()
        conn.execute(COPY_TABLE_DDL)
        conn.commit()
    assert stored is not None and stored[0] == (args.runs * events + 2 * EVENTS_PER_BATCH), stored
    assert period is not None

    with psycopg.connect(dsn) as conn:
        settings_rows = conn.execute(
            "SELECT name, setting FROM pg_settings"
            " WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers') ORDER BY name"
        ).fetchall()
    durability = ", ".join(f"{name}={setting}" for name, setting in settings_rows)

    copy_runs: dict[str, list[float]] = {}
    batches = make_batches(args.batches, datasets, "copy")
    for fmt in ("text", "binary"):
        data = copy_data(batches, model_id, period[0], fmt)
        for run in range(args.runs):
            with psycopg.connect(dsn) as conn:
                conn.execute("TRUNCATE bench_copy_retrieval")
                conn.execute("CHECKPOINT")
                conn.commit()
            console.print(f"[bold]raw COPY ({fmt}) run {run + 1}: {events:,} rows")
            copy_runs.setdefault(fmt, []).append(events / raw_copy(dsn, data, args.clients, fmt))

    best_api = max(api_runs)
    api_rate, api_cpu = best_api[0], best_api[1:]
    api_s = events / api_rate
    copy_rates = {fmt: max(rates) for fmt, rates in copy_runs.items()}
    best_fmt = max(copy_rates, key=lambda f: copy_rates[f])
    ratio = api_rate / copy_rates[best_fmt]

    def runs(rates: list[float]) -> str:
        return ", ".join(f"{rate:,.0f}" for rate in rates)

    table = "\n".join(
        [
            "| path | events/s (best) | all runs | API vs. this |",
            "|---|---:|---|---:|",
            f"| API: `POST /v1/usage/retrievals` | {api_rate:,.0f} | "
            f"{runs([r[0] for r in api_runs])} | |",
            *(
                f"| raw `COPY` ({fmt}) into an equivalent table | {copy_rates[fmt]:,.0f} | "
                f"{runs(rates)} | {api_rate / copy_rates[fmt]:.0%} |"
                for fmt, rates in copy_runs.items()
            ),
        ]
    )
    per_k = 1000 / events
    connections = (
        "keep-alive connections"
        if args.keep_alive
        else "a new connection per request, so every worker gets work"
    )
    busy = (api_cpu[0] + api_cpu[1]) / api_s
    command = (
        f"scripts/bench_ingest.py --batches {args.batches} --clients {args.clients} "
        f"--workers {args.workers} --runs {args.runs}{' --keep-alive' if args.keep_alive else ''}"
    )
    section = f"""
Command: `.venv/bin/python {command}` (part of `make bench`).
Machine: {machine()}. The machine also runs the embedded PostgreSQL, the clients and
whatever else is busy at the time: each path ran {args.runs} times, the best run counts
(the others show the spread).

Input: {args.batches} requests of {EVENTS_PER_BATCH:,} retrieval events × {CHUNKS_PER_EVENT} chunks
({events:,} events, {body_mib:.0f} MiB of JSON arrays, distinct ids and times in one month,
{DATASETS} datasets), each request with an `Idempotency-Key`, sent by {args.clients} concurrent
clients ({connections}) to `uvicorn --workers {args.workers}` on loopback; every response checked
(all {EVENTS_PER_BATCH:,} accepted). Raw COPY: the same rows into a table `LIKE
usage_retrieval_event INCLUDING ALL` (same columns, primary key, check constraint), one
transaction per batch over {args.clients} connections, COPY data prepared beforehand.
PostgreSQL: {durability}.

{table}

Targets: ≥ 50,000 events/s over the API ({"met" if api_rate >= 50_000 else "missed"}) and
≥ 40 % of the raw COPY rate ({"met" if ratio >= 0.40 else "missed"}, against the faster
raw format, {best_fmt}).

CPU per 1,000 events over the API: {api_cpu[0] * per_k * 1000:.1f} ms in the API processes,
{api_cpu[1] * per_k * 1000:.1f} ms in PostgreSQL ({busy:.1f} CPU-seconds per second of the run).

How: a retrieval is one row with its chunks as arrays (migration 0008: no per-row foreign
keys, the natural key as primary key). A body in the compact JSON the SDK sends takes a fast
lane (`ledger/usage/compact.py`): msgspec decodes and shape-checks it in one pass of C, and
encoding the result again must give the body back byte for byte (which proves no key was
repeated); any other body takes the strict Python decoder, which explains every problem.
The batch is checked against the rules with one set-based query, then COPY-ed in binary
straight into the table (the primary key is the replay check: on a conflict the batch falls
back to the staged, per-event path); rollup increments are counted in Python and added in
one statement; the response is built without pydantic and serialised with orjson; the
garbage collector is tuned for batches.

Where the time goes (cProfile of the service in one process, per 5,000 events, profiler
overhead included): decoding and shape checks about 6 ms (was 55 ms before the fast lane),
building the validated events about 7 ms, binary COPY rows about 17 ms, rollup counting
about 6 ms; the rest is HTTP, the idempotency record (the 5,000-result response, stored as
`jsonb`), SQL round trips and freeing the batch. 40 % of the binary COPY rate would leave
about 10 µs of CPU per event on this 2-core machine for everything: the API processes, the
clients and PostgreSQL, which alone spends about 6 µs per event on this path (COPY, rollup
upsert, idempotency record, commit) against 2-4 µs for the bare COPY. The gap is CPython's
per-event work (row encoding first), not the database.
"""
    console.print(table)
    console.print(
        f"API CPU {api_cpu[0]:.1f} s, PostgreSQL CPU {api_cpu[1]:.1f} s, wall {api_s:.1f} s"
    )
    if not args.no_write:
        write_section("Usage ingestion over HTTP (retrieval events)", section)


if __name__ == "__main__":
    main()
