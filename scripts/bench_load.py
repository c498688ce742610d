"""Benchmark: a bounded load test of retrieval ingestion while a period closes (issue #8,
point 3). Loopback only; a benchmark, not a timed test.

1. A bench database (``usefirst_bench_load`` on the embedded PostgreSQL), migrated, with a
   model team and a finance principal (API keys), a model with an agreement and 50
   datasets confirmed for RAG; a real ``uvicorn`` server (``--workers``) and a real Celery
   worker of its own (``bench-load``) on that database, as subprocesses.
2. The previous UTC month is an ended period with usage (``--preload-batches`` batches sent
   over HTTP) and revenue (``POST /v1/revenue``); the current month is open.
3. ``--clients`` threads send batches of ``--batch-events`` retrieval events × 5 chunks
   (JSON arrays, each request with an ``Idempotency-Key``) for ``--duration`` seconds, as
   fast as the server answers. Every ``--late-every``-th batch is late: half of its events
   belong to the previous month.
4. After ``--close-after`` seconds finance closes the previous period over HTTP
   (``POST /v1/periods/{id}/close``, no anchoring) and polls ``GET /v1/jobs/{id}`` while the
   load goes on. Late events are accepted until the close starts and rejected per event
   afterwards (``period_not_open``, in a 200 answer): these are counted, not errors.
5. Errors are anything else: a non-200 answer, a timeout, a connection error, an event
   rejected for another reason, a duplicate, a failed close. Any error exits non-zero.
6. Afterwards the database must agree with what the clients were told: per (period,
   dataset) the rollup hits equal the accepted events naming the dataset (each event names
   five distinct datasets), stored events and rank-1 hits equal the accepted events per
   period, the quarantine holds exactly the rejected events, and recomputing the closed
   period's statement now gives the stored bytes (no event slipped in after the close
   read the rollups). A mismatch exits non-zero.

Writes its section of docs/BENCHMARKS.md and of docs/RELIABILITY.md. Usage:
``.venv/bin/python scripts/bench_load.py`` (part of ``make bench``); ``--duration``,
``--clients``, ``--batch-events``, ``--workers`` to vary; ``--no-write`` to leave the docs.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import math
import os
import re
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("USEFIRST_PG_DATABASE", "usefirst_bench_load")

import orjson
import psutil
import psycopg
from benchlib import (
    REPO,
    cpu_seconds,
    free_port,
    machine,
    postgres_processes,
    process_tree,
    seed_rag_model,
    setup_database,
    write_section,
)
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from api.embedded.apiserver import ApiServer

if TYPE_CHECKING:
    from api.sdk import UsefirstClient

DATASETS: Final = 50
CHUNKS_PER_EVENT: Final = 5
# Distinct chunk lists the events cycle through (prime, so they do not line up with batches).
CHUNK_LISTS: Final = 1_009
TIMES_PER_MONTH: Final = 4_096
REVENUE_MINOR: Final = 1_234_567
WORKER_NAME: Final = "bench-load"
REQUEST_TIMEOUT_S: Final = 60.0
CLOSE_WAIT_AFTER_LOAD_S: Final = 300.0
JOB_POLL_INTERVAL_S: Final = 0.2
CURRENT, PREVIOUS = 0, 1  # period flags of an event
SECTION: Final = "Load: retrieval ingestion while a period closes"
RELIABILITY_SECTION: Final = "Load: ingestion while a period closes"
RELIABILITY_DOC: Final = REPO / "docs" / "RELIABILITY.md"
console = Console()


def month_start(at: datetime) -> datetime:
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


class Workload:
    """Batches of retrieval events, cheap to build: event ``n`` of batch ``b`` uses the
    precomputed chunk list ``(b × size + n) mod CHUNK_LISTS`` (five distinct datasets) and
    a precomputed time in its month. Whether an event is accepted is all the accounting
    needs: the chunk list says which datasets it counts for."""

    def __init__(
        self, datasets: list[str], batch_events: int, late_every: int, now: datetime
    ) -> None:
        self.batch_events = batch_events
        self.late_every = late_every
        self.list_datasets: list[tuple[int, ...]] = []
        self.lists_json: list[str] = []
        for j in range(CHUNK_LISTS):
            picks = tuple((j * 7 + r * 13) % DATASETS for r in range(CHUNKS_PER_EVENT))
            assert len(set(picks)) == CHUNKS_PER_EVENT  # so hits per dataset = events
            self.list_datasets.append(picks)
            chunks = [
                {
                    "dataset_id": datasets[d],
                    "chunk_id": f"doc-{(j * 31 + r) % 100_003}#{r}",
                    "rank": r + 1,
                    "score": round(1.0 - r * 0.1 - (j % 10) * 0.001, 4),
                }
                for r, d in enumerate(picks)
            ]
            self.lists_json.append(orjson.dumps(chunks).decode())
        self.current_month = month_start(now)
        self.previous_month = month_start(self.current_month - timedelta(days=1))
        # Current-month events lie between the month's start and now (never in the future).
        current_span = max(timedelta(0), now - self.current_month - timedelta(seconds=1))
        previous_span = self.current_month - self.previous_month
        self.times: tuple[list[str], list[str]] = (
            [
                iso(self.current_month + current_span * k / TIMES_PER_MONTH)
                for k in range(TIMES_PER_MONTH)
            ],
            [
                iso(self.previous_month + previous_span * k / TIMES_PER_MONTH)
                for k in range(TIMES_PER_MONTH)
            ],
        )

    def is_late(self, b: int) -> bool:
        return self.late_every > 0 and b % self.late_every == self.late_every - 1

    def period_of(self, late: bool, i: int) -> int:
        """A late batch's even events belong to the previous month."""
        return PREVIOUS if late and i % 2 == 0 else CURRENT

    def list_of(self, b: int, i: int) -> int:
        return (b * self.batch_events + i) % CHUNK_LISTS

    def body(self, tag: str, b: int, late: bool, month: int | None = None) -> bytes:
        """Batch ``b``'s JSON array; ``month`` puts every event in that month."""
        times, lists = self.times, self.lists_json
        parts = []
        for i in range(self.batch_events):
            n = b * self.batch_events + i
            at = self.period_of(late, i) if month is None else month
            parts.append(
                f'{{"event_id":"{tag}{b}-{i}","query_id":"q-{n % 9_973}",'
                f'"occurred_at":"{times[at][n % TIMES_PER_MONTH]}",'
                f'"chunks":{lists[n % CHUNK_LISTS]}}}'
            )
        return ("[" + ",".join(parts) + "]").encode()


@dataclass
class Sample:
    done_s: float  # since the load started
    latency_s: float
    accepted: int
    late: bool  # half of its events in the previous month


@dataclass
class ClientStats:
    """What one client was told (merged after the run; the progress display reads the
    counters without a lock, which is fine for a display)."""

    requests: int = 0
    accepted: int = 0
    late_sent: int = 0  # previous-month events sent
    late_accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # expected rejections, by code
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    # accepted[period flag][chunk list] = accepted events of that period using that list
    accepted_lists: tuple[list[int], list[int]] = field(
        default_factory=lambda: ([0] * CHUNK_LISTS, [0] * CHUNK_LISTS)
    )

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{kind}: {detail[:300]}")

    def merge(self, other: ClientStats) -> None:
        self.requests += other.requests
        self.accepted += other.accepted
        self.late_sent += other.late_sent
        self.late_accepted += other.late_accepted
        self.rejected.update(other.rejected)
        self.errors.update(other.errors)
        self.error_samples.extend(other.error_samples)
        self.samples.extend(other.samples)
        for mine, theirs in zip(self.accepted_lists, other.accepted_lists, strict=True):
            for j, count in enumerate(theirs):
                mine[j] += count


class Sender:
    """``POST /v1/usage/retrievals`` over http.client. Without keep-alive each request
    opens a connection, so the kernel spreads them over the uvicorn workers (kept-alive
    connections stay with the worker that accepted them)."""

    def __init__(self, port: int, key: str, model_id: uuid.UUID, keep_alive: bool) -> None:
        self.port, self.keep_alive = port, keep_alive
        self.path = f"/v1/usage/retrievals?model_id={model_id}"
        self.headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Connection": "keep-alive" if keep_alive else "close",
        }
        self.connection: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> tuple[int, bytes]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S
            )
        try:
            self.connection.request(
                "POST",
                self.path,
                body=body,
                headers=self.headers | {"Idempotency-Key": uuid.uuid4().hex},
            )
            response = self.connection.getresponse()
            payload = response.read()
        except BaseException:
            self.close()
            raise
        if not self.keep_alive:
            self.close()
        return response.status, payload

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def send_batch(
    sender: Sender,
    workload: Workload,
    stats: ClientStats,
    tag: str,
    b: int,
    t0: float,
    month: int | None = None,
) -> None:
    """Send batch ``b`` (every event in ``month`` if given) and account for every event
    of the answer in ``stats``."""
    late = workload.is_late(b) and month is None
    body = workload.body(tag, b, late, month)
    sent_at = time.perf_counter()
    try:
        status, payload = sender.post(body)
    except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors
        stats.requests += 1
        stats.error(type(exc).__name__, str(exc))
        return
    done = time.perf_counter()
    stats.requests += 1
    if status != 200:
        stats.error(f"HTTP {status}", payload.decode(errors="replace"))
        return
    answer = orjson.loads(payload)
    results = answer["results"]
    if len(results) != workload.batch_events:
        stats.error("results", f"{len(results)} results for {workload.batch_events} events")
        return
    accepted = 0
    lists = stats.accepted_lists
    for result in results:
        i = result["index"]
        at = workload.period_of(late, i) if month is None else month
        if at == PREVIOUS:
            stats.late_sent += 1
        outcome = result["status"]
        if outcome == "accepted":
            accepted += 1
            lists[at][workload.list_of(b, i)] += 1
            if at == PREVIOUS:
                stats.late_accepted += 1
        elif outcome == "rejected" and result["code"] == "period_not_open" and at == PREVIOUS:
            stats.rejected[result["code"]] += 1
        else:  # another rejection, or a duplicate: the workload never provokes either
            stats.error(f"event {outcome}", orjson.dumps(result).decode())
    stats.accepted += accepted
    stats.samples.append(Sample(done - t0, done - sent_at, accepted, late))


def client(
    sender: Sender,
    workload: Workload,
    stats: ClientStats,
    batches: Iterator[int],
    start: threading.Barrier,
    stop: threading.Event,
    t0: list[float],
) -> None:
    start.wait()
    try:
        while not stop.is_set():
            send_batch(sender, workload, stats, "L", next(batches), t0[0])
    except BaseException as exc:  # a bug in the driver: reported, never swallowed
        stats.error(f"driver {type(exc).__name__}", repr(exc))
    finally:
        sender.close()


@dataclass
class CloseJob:
    period_id: uuid.UUID
    job_id: str | None = None
    posted_s: float | None = None  # since the load started
    done_s: float | None = None
    state: str = "not started"
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime | None = None  # the job row's
    running_at: datetime | None = None  # the worker marked it running (if a poll saw it)

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (sorted or not); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def seed_finance(account_label: str) -> str:
    """A finance account and its API key (the principal that closes periods)."""
    from sqlmodel import Session

    from ledger.access.service import create_api_key
    from ledger.db import get_engine
    from ledger.owners.service import create_account

    with Session(get_engine()) as session:
        account = create_account(session, role="finance", display_name=account_label)
        key = create_api_key(session, account.id, label="bench").plaintext
        session.commit()
    return key


@dataclass
class Verification:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append((name, ok, detail))

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


def verify(
    dsn: str,
    model_id: uuid.UUID,
    period_ids: dict[int, uuid.UUID],
    datasets: list[str],
    workload: Workload,
    told: ClientStats,
    close: CloseJob,
) -> Verification:
    """Compare the database with what the clients were told (see the module docstring)."""
    from sqlmodel import Session

    import attribution as attr
    from ledger.db import get_engine
    from ledger.periods import close as closing
    from ledger.periods.models import Period

    result = Verification()
    flag_of = {period_id: flag for flag, period_id in period_ids.items()}
    expected: Counter[tuple[int, int]] = Counter()
    for flag, per_list in enumerate(told.accepted_lists):
        for j, count in enumerate(per_list):
            for d in workload.list_datasets[j]:
                expected[(flag, d)] += count
    events_told = [sum(per_list) for per_list in told.accepted_lists]
    dataset_index = {uuid.UUID(d): i for i, d in enumerate(datasets)}
    with psycopg.connect(dsn) as conn:
        rollups = conn.execute(
            "SELECT period_id, dataset_id, sum(quantity), sum(event_count),"
            " sum(quantity) FILTER (WHERE rank = 1)"
            " FROM usage_rollup WHERE model_id = %s AND kind = 'rag' GROUP BY 1, 2",
            (model_id,),
        ).fetchall()
        stored: dict[uuid.UUID, int] = dict(
            conn.execute(
                "SELECT period_id, count(*) FROM usage_retrieval_event WHERE model_id = %s"
                " GROUP BY 1",
                (model_id,),
            ).fetchall()
        )
        quarantined: dict[str, int] = dict(
            conn.execute(
                "SELECT reason_code, count(*) FROM usage_quarantine WHERE model_id = %s GROUP BY 1",
                (model_id,),
            ).fetchall()
        )
        timing = conn.execute(
            "SELECT p.closing_started_at, max(e.ingested_at) FROM period p"
            " LEFT JOIN usage_retrieval_event e ON e.model_id = p.model_id AND e.period_id = p.id"
            " WHERE p.id = %s GROUP BY p.closing_started_at",
            (period_ids[PREVIOUS],),
        ).fetchone()
    actual: dict[tuple[int, int], int] = {}
    rank1, foreign_rows, counts_differ = [0, 0], 0, 0
    for period_id, dataset_id, quantity, event_count, first in rollups:
        if period_id not in flag_of:
            foreign_rows += 1
            continue
        flag = flag_of[period_id]
        actual[(flag, dataset_index[dataset_id])] = int(quantity)
        rank1[flag] += int(first or 0)
        counts_differ += quantity != event_count
    pairs = sorted(set(expected) | set(actual))
    mismatches = [
        (key, expected.get(key, 0), actual.get(key, 0))
        for key in pairs
        if expected.get(key, 0) != actual.get(key, 0)
    ]
    result.check(
        "rollup hits per (period, dataset) = accepted events naming the dataset",
        not mismatches and not foreign_rows and not counts_differ,
        f"{len(pairs)} pairs, {len(mismatches)} differ"
        + (f" (first: {mismatches[:3]})" if mismatches else "")
        + (f", {foreign_rows} rollup rows of other periods" if foreign_rows else "")
        + (f", {counts_differ} rows with event_count ≠ hits" if counts_differ else ""),
    )
    for flag, name in ((CURRENT, "open (current) period"), (PREVIOUS, "closed period")):
        period_id = period_ids[flag]
        result.check(
            f"{name}: stored events = rank-1 hits = accepted events",
            stored.get(period_id, 0) == rank1[flag] == events_told[flag],
            f"{stored.get(period_id, 0):,} = {rank1[flag]:,} = {events_told[flag]:,}",
        )
    total_hits = sum(actual.values())
    result.check(
        f"total: rollup hits = {CHUNKS_PER_EVENT} × accepted events",
        total_hits == CHUNKS_PER_EVENT * sum(events_told) == sum(expected.values()),
        f"{total_hits:,} = {CHUNKS_PER_EVENT} × {sum(events_told):,}",
    )
    result.check(
        "quarantine = rejected events",
        quarantined == dict(told.rejected),
        f"quarantine {quarantined or 0}, rejected {dict(told.rejected) or 0}",
    )
    closing_started_at, last_ingested_at = timing if timing is not None else (None, None)
    result.check(
        "every event of the closed period was ingested before its close began",
        closing_started_at is not None
        and (last_ingested_at is None or last_ingested_at < closing_started_at),
        f"last ingested {last_ingested_at and iso(last_ingested_at)}, "
        f"close began {closing_started_at and iso(closing_started_at)}",
    )
    name = "closed period's statement recomputed now = the stored bytes (and the job's hash)"
    with Session(get_engine()) as session:
        period = session.get(Period, period_ids[PREVIOUS])
        assert period is not None
        if period.state != "closed":
            result.check(name, False, f"the period is {period.state}")
        else:
            agreement = closing.agreement_for_period(session, period)
            recomputed = attr.canonical_json(
                attr.compute_statement(closing.build_period_input(session, period, agreement))
            )
            job_hash = (close.result or {}).get("statement_hash")
            result.check(
                name,
                recomputed == closing.statement_bytes(session, period)
                and job_hash == period.statement_hash,
                f"`{period.statement_hash}`",
            )
    return result


class CpuMeter:
    """CPU seconds used by named groups of processes between ``start`` and ``stop``. A
    group is a root process and, with ``tree``, its descendants found at either moment
    (processes started in between count in full; those that exited are lost, a few
    database backends at most)."""

    def __init__(self, groups: dict[str, tuple[psutil.Process, bool]]) -> None:
        self.groups = groups
        self.before: dict[str, dict[int, float]] = {}
        self.used: dict[str, float] = {}

    def _sample(self, name: str) -> dict[int, float]:
        root, tree = self.groups[name]
        return {p.pid: cpu_seconds([p]) for p in (process_tree(root) if tree else [root])}

    def start(self) -> None:
        self.before = {name: self._sample(name) for name in self.groups}

    def stop(self) -> None:
        for name in self.groups:
            before = self.before[name]
            self.used[name] = sum(
                seconds - before.get(pid, 0.0) for pid, seconds in self._sample(name).items()
            )


class ActivitySampler:
    """What the database sessions of the bench database are doing, sampled from
    ``pg_stat_activity`` every ``interval_s`` on a thread of its own: the average number of
    sessions per (state or wait, statement), i.e. average active sessions."""

    def __init__(self, dsn: str, interval_s: float = 0.05) -> None:
        self.dsn, self.interval_s = dsn, interval_s
        self.counts: Counter[tuple[str, str]] = Counter()
        self.ticks = 0
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ActivitySampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.thread.join()

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.halt.wait(self.interval_s):
                rows = conn.execute(
                    "SELECT state, wait_event_type, wait_event, query FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend' AND state <> 'idle'"
                ).fetchall()
                self.ticks += 1
                for state, wait_type, wait_event, query in rows:
                    self.counts[(doing(state, wait_type, wait_event), statement_of(query))] += 1

    def top(self, n: int) -> list[tuple[str, str, float]]:
        ticks = max(self.ticks, 1)
        return [(what, sql, count / ticks) for (what, sql), count in self.counts.most_common(n)]

    def total(self) -> float:
        return sum(self.counts.values()) / max(self.ticks, 1)


def doing(state: str, wait_type: str | None, wait_event: str | None) -> str:
    if wait_type is None:
        return "running"
    if wait_type == "Client":
        return "in a transaction, waiting for the API" if state != "active" else "reading input"
    if wait_type == "Lock":
        return f"waiting for a lock ({wait_event})"
    return f"waiting: {wait_type} {wait_event}"


def statement_of(query: str) -> str:
    """``INSERT usage_rollup``, ``SELECT period``, ``COPY usage_retrieval_event``, …"""
    text = " ".join(query.split())
    verb = text.split(" ", 1)[0].upper()
    copy = re.match(r"COPY\s+(\w+)", text, re.I)
    target = copy or re.search(r"(?<!DISTINCT )\b(?:INTO|FROM|UPDATE)\s+(\w+)", text, re.I)
    return f"{verb} {target.group(1)}" if target else text[:40]


@dataclass
class Phase:
    name: str
    seconds: float
    accepted: int
    requests: int
    latency_ms: tuple[float, float]  # p50, p99
    late_latency_ms: tuple[float, float]  # p50, p99 of the late batches

    @property
    def events_s(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0


def phases(samples: list[Sample], close: CloseJob, load_s: float) -> list[Phase]:
    """Before the close POST, while the job ran (POST → seen done), after it."""
    posted = close.posted_s if close.posted_s is not None else load_s
    done = min(close.done_s if close.done_s is not None else load_s, load_s)
    out = []
    for name, lo, hi in (
        ("before the close", 0.0, posted),
        ("while closing (POST → job seen done)", posted, done),
        ("after the close", done, load_s),
    ):
        inside = [s for s in samples if lo <= s.done_s < hi or s.done_s == hi == load_s]
        latencies = [s.latency_s * 1000 for s in inside]
        late = [s.latency_s * 1000 for s in inside if s.late]
        out.append(
            Phase(
                name,
                max(0.0, hi - lo),
                sum(s.accepted for s in inside),
                len(inside),
                (percentile(latencies, 50), percentile(latencies, 99)),
                (percentile(late, 50), percentile(late, 99)),
            )
        )
    return out


@dataclass
class Services:
    server: ApiServer
    worker_pid: int


@contextmanager
def services(workers: int) -> Iterator[Services]:
    """uvicorn (``workers`` processes) on a free loopback port and the bench's own Celery
    worker, on the bench database; both stopped on the way out."""
    from api.embedded import worker as celery_worker
    from ledger.settings import get_settings

    settings = get_settings()
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"usefirst-bench-load-{port}.log"
    console.print(f"[bold]starting uvicorn ({workers} workers) on 127.0.0.1:{port} and a worker")
    with ApiServer(port, workers=workers, log=log) as server:
        try:
            worker_pid = celery_worker.start(settings, WORKER_NAME).pid
            assert worker_pid is not None
            yield Services(server, worker_pid)
        finally:
            celery_worker.stop(settings, WORKER_NAME)


@dataclass
class LoadRun:
    """The timed part: what the clients were told, the close job, the machine."""

    stats: ClientStats
    load_s: float  # first request sent → last answer
    close: CloseJob
    cpu: CpuMeter
    activity: ActivitySampler
    load_avg: tuple[float, float]  # 1-minute load average at the start and the end


def run_load(
    args: argparse.Namespace,
    close_after_s: float,
    svc: Services,
    dsn: str,
    workload: Workload,
    team_key: str,
    finance: UsefirstClient,
    model_id: uuid.UUID,
    closing_period_id: uuid.UUID,
) -> LoadRun:
    """``args.clients`` threads send batches for ``args.duration`` seconds; meanwhile
    finance closes ``closing_period_id`` and polls the job. Waits for the job (at most
    CLOSE_WAIT_AFTER_LOAD_S more) if the load ends first."""
    from api.sdk import UsefirstError

    stats = [ClientStats() for _ in range(args.clients)]
    stop, start, t0 = threading.Event(), threading.Barrier(args.clients + 1), [0.0]
    batches = itertools.count()  # next() is atomic under the GIL
    threads = [
        threading.Thread(
            target=client,
            args=(
                Sender(svc.server.port, team_key, model_id, args.keep_alive),
                workload,
                s,
                batches,
                start,
                stop,
                t0,
            ),
            daemon=True,
        )
        for s in stats
    ]
    assert svc.server.process is not None
    server_pid = svc.server.process.pid
    cpu = CpuMeter(
        {
            "API (uvicorn)": (psutil.Process(server_pid), True),
            "PostgreSQL": (postgres_processes(dsn)[0], True),
            "Celery worker": (psutil.Process(svc.worker_pid), True),
            # This process only: the server and the worker are its children.
            "load driver (clients)": (psutil.Process(), False),
        }
    )
    close = CloseJob(closing_period_id)
    load_avg_start = os.getloadavg()[0]
    next_poll_s, load_s, load_avg_end = 0.0, 0.0, 0.0
    columns = (
        TimeElapsedColumn(),
        BarColumn(bar_width=20),
        TextColumn("{task.fields[stats]}"),
    )
    with ActivitySampler(dsn) as activity, Progress(*columns, console=console) as progress:
        task = progress.add_task("load", total=args.duration, stats="")
        cpu.start()
        for thread in threads:
            thread.start()
        t0[0] = time.perf_counter()
        start.wait()
        while True:
            elapsed = time.perf_counter() - t0[0]
            if elapsed >= args.duration:
                stop.set()
            if close.job_id is None and close.error is None and elapsed >= close_after_s:
                close.posted_s = elapsed
                try:
                    job_accepted = finance.close_period(close.period_id, anchor=False)
                    close.job_id, close.state = job_accepted.job_id, job_accepted.state
                except UsefirstError as exc:
                    close.state, close.error = "failed", f"POST close: {exc}"
            elif close.job_id is not None and not close.finished and elapsed >= next_poll_s:
                next_poll_s = elapsed + JOB_POLL_INTERVAL_S
                try:
                    job = finance.get_job(close.job_id)
                except UsefirstError as exc:
                    close.state, close.error = "failed", f"GET job: {exc}"
                else:
                    close.state, close.created_at = job.state, job.created_at
                    if job.state == "running" and close.running_at is None:
                        close.running_at = job.updated_at
                    if close.finished:
                        close.done_s = time.perf_counter() - t0[0]
                        close.result, close.error = job.result, job.error
            alive = any(thread.is_alive() for thread in threads)
            if not alive and not load_s:
                cpu.stop()
                load_s = max((s.done_s for c in stats for s in c.samples), default=elapsed)
                load_avg_end = os.getloadavg()[0]
            accepted = sum(c.accepted for c in stats)
            progress.update(
                task,
                completed=min(elapsed, args.duration),
                stats=f"{accepted:,} events · {accepted / max(elapsed, 1e-9):,.0f}/s · "
                f"{sum(c.requests for c in stats):,} requests · "
                f"{sum(sum(c.errors.values()) for c in stats)} errors · "
                f"{sum(sum(c.rejected.values()) for c in stats):,} late rejected · "
                f"close {close.state}",
            )
            if not alive and (
                close.finished
                or close.error is not None
                or elapsed > args.duration + CLOSE_WAIT_AFTER_LOAD_S
            ):
                break
            time.sleep(0.1)
    merged = ClientStats()
    for s in stats:
        merged.merge(s)
    return LoadRun(merged, load_s, close, cpu, activity, (load_avg_start, load_avg_end))


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def reflow(markdown: str, width: int = 92) -> str:
    """Fill the prose paragraphs of ``markdown`` to ``width`` without breaking a code span;
    tables and lists stay as they are."""

    def fill(block: str) -> str:
        spans = re.sub(r"`[^`]*`", lambda m: m[0].replace(" ", "\0"), " ".join(block.split()))
        text = textwrap.fill(spans, width, break_long_words=False, break_on_hyphens=False)
        return text.replace("\0", " ")

    blocks = markdown.strip().split("\n\n")
    return "\n\n".join(
        block if block.lstrip().startswith(("|", "- ")) else fill(block) for block in blocks
    )


def plain(text: str) -> None:
    """Print without rich's markup, highlighting or wrapping (tables stay copyable)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=6, help="concurrent client threads")
    parser.add_argument("--batch-events", type=int, default=500, help="events per request")
    parser.add_argument("--workers", type=int, default=3, help="uvicorn worker processes")
    parser.add_argument(
        "--close-after", type=float, help="seconds into the load (default: a third of it)"
    )
    parser.add_argument("--late-every", type=int, default=10, help="every n-th batch is late")
    parser.add_argument("--preload-batches", type=int, default=20, help="previous month usage")
    parser.add_argument("--keep-alive", action="store_true", help="reuse each client's connection")
    parser.add_argument("--no-write", action="store_true", help="leave the docs alone")
    args = parser.parse_args()
    close_after_s = args.duration / 3 if args.close_after is None else args.close_after
    if not 0 <= close_after_s < args.duration:
        parser.error("--close-after must fall inside --duration")
    if args.clients < 1 or not 1 <= args.batch_events <= 50_000 or args.late_every < 0:
        parser.error("--clients ≥ 1, 1 ≤ --batch-events ≤ 50,000, --late-every ≥ 0")

    from api.embedded import worker as celery_worker
    from api.sdk import UsefirstClient
    from ledger.settings import get_settings

    settings = get_settings()
    # A worker left by an interrupted run would hold connections to the dropped database.
    celery_worker.stop(settings, WORKER_NAME)
    console.print("[bold]setting up the bench database")
    dsn = setup_database()
    now = datetime.now(UTC)
    previous_month = month_start(month_start(now) - timedelta(days=1))
    team_key, _, model_id, datasets = seed_rag_model(
        dsn, DATASETS, previous_month - timedelta(days=365)
    )
    finance_key = seed_finance("bench finance")
    workload = Workload(datasets, args.batch_events, args.late_every, now)

    with services(args.workers) as svc:
        base_url = f"http://127.0.0.1:{svc.server.port}"
        team = UsefirstClient(base_url, team_key, retries=0, timeout_s=REQUEST_TIMEOUT_S)
        finance = UsefirstClient(base_url, finance_key, retries=0, timeout_s=REQUEST_TIMEOUT_S)
        # The previous month gets usage and revenue: an ended period, still open.
        console.print(
            f"[bold]preloading the previous month ({previous_month:%Y-%m}) with "
            f"{args.preload_batches} batches and revenue"
        )
        setup = ClientStats()
        sender = Sender(svc.server.port, team_key, model_id, args.keep_alive)
        for b in range(args.preload_batches):
            send_batch(sender, workload, setup, "P", b, time.perf_counter(), month=PREVIOUS)
        for b in range(2):  # warm-up of the current month: connections, caches, its period
            send_batch(sender, workload, setup, "W", b, time.perf_counter(), month=CURRENT)
        team.record_revenue(
            model_id,
            amount_minor=REVENUE_MINOR,
            currency="EUR",
            external_ref="bench-load-revenue",
            occurred_at=previous_month + timedelta(days=14),
        )
        period_ids = {
            PREVIOUS if p.starts_at == previous_month else CURRENT: p.id
            for p in finance.list_periods(model_id=model_id).items
        }
        if setup.errors or len(period_ids) != 2:
            raise SystemExit(f"setup failed: {setup.error_samples or period_ids}")
        console.print(
            f"[bold]load: {args.clients} clients × {args.duration:g} s; finance closes "
            f"{previous_month:%Y-%m} after {close_after_s:g} s"
        )
        run = run_load(
            args,
            close_after_s,
            svc,
            dsn,
            workload,
            team_key,
            finance,
            model_id,
            period_ids[PREVIOUS],
        )
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT closing_started_at, closed_at FROM period WHERE id = %s",
                (period_ids[PREVIOUS],),
            ).fetchone()
            pg_settings = conn.execute(
                "SELECT name, setting FROM pg_settings"
                " WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers') ORDER BY name"
            ).fetchall()

    console.print("[bold]verifying the ledger against what the clients were told")
    told = ClientStats()
    told.merge(run.stats)
    told.merge(setup)
    verification = verify(dsn, model_id, period_ids, datasets, workload, told, run.close)
    closing_started_at, closed_at = row if row is not None else (None, None)
    report = Report(args, close_after_s, settings.worker_concurrency, previous_month, setup, run)
    report.close_timing(closing_started_at, closed_at)
    report.durability = ", ".join(f"{name}={setting}" for name, setting in pg_settings)
    report.verification = verification
    report.body_kib = len(workload.body("L", 0, False)) / 1024
    for table in report.tables():
        plain(table)

    failures = []
    if run.stats.errors or setup.errors:
        samples = (run.stats.error_samples + setup.error_samples)[:5]
        failures.append(f"errors {dict(run.stats.errors + setup.errors)}: {samples}")
    if run.close.state != "succeeded":
        failures.append(f"the close job ended {run.close.state}: {run.close.error}")
    if not verification.ok:
        failures.append("the ledger does not match what the clients were told (above)")
    if failures:
        console.print(f"[red bold]FAILED[/]: {'; '.join(failures)}; server log {svc.server.log}")
        raise SystemExit(1)
    if not args.no_write:
        write_section(SECTION, reflow(report.benchmarks_section()))
        write_section(RELIABILITY_SECTION, reflow(report.reliability_section()), RELIABILITY_DOC)
        console.print("[bold]wrote docs/BENCHMARKS.md and docs/RELIABILITY.md")


class Report:
    """The figures of one run as markdown: tables, the BENCHMARKS and RELIABILITY text."""

    def __init__(
        self,
        args: argparse.Namespace,
        close_after_s: float,
        worker_concurrency: int,
        previous_month: datetime,
        setup: ClientStats,
        run: LoadRun,
    ) -> None:
        self.args, self.close_after_s, self.run = args, close_after_s, run
        self.worker_concurrency = worker_concurrency
        self.previous_month, self.preloaded = previous_month, setup.accepted
        self.machine = machine()
        self.body_kib = 0.0
        self.durability = ""
        self.verification = Verification()
        self.to_closing_s: float | None = None  # job created → period closing
        self.queued_s: float | None = None  # job created → running (if a poll saw it)
        self.closing_s: float | None = None
        stats, load_s = run.stats, run.load_s
        self.latencies_ms = [s.latency_s * 1000 for s in stats.samples]
        self.events_s = stats.accepted / load_s if load_s else 0.0
        self.requests_s = stats.requests / load_s if load_s else 0.0
        self.errors = sum(stats.errors.values())
        self.rejected = sum(stats.rejected.values())
        close = run.close
        self.close_s = (
            close.done_s - close.posted_s
            if close.done_s is not None and close.posted_s is not None
            else None
        )

    def close_timing(self, closing_started_at: datetime | None, closed_at: datetime | None) -> None:
        created_at, running_at = self.run.close.created_at, self.run.close.running_at
        if running_at and created_at:
            self.queued_s = (running_at - created_at).total_seconds()
        if closing_started_at and created_at:
            self.to_closing_s = (closing_started_at - created_at).total_seconds()
        if closed_at and closing_started_at:
            self.closing_s = (closed_at - closing_started_at).total_seconds()

    def command(self) -> str:
        args = self.args
        extra = {
            "--close-after": (args.close_after, None),
            "--late-every": (args.late_every, 10),
            "--preload-batches": (args.preload_batches, 20),
        }
        return (
            f"scripts/bench_load.py --duration {args.duration:g} --clients {args.clients} "
            f"--batch-events {args.batch_events} --workers {args.workers}"
            + "".join(f" {flag} {value:g}" for flag, (value, d) in extra.items() if value != d)
            + (" --keep-alive" if args.keep_alive else "")
        )

    def tables(self) -> list[str]:
        run, stats, close = self.run, self.run.stats, self.run.close
        result = close.result or {}

        figures = "\n".join(
            [
                "| figure | value |",
                "|---|---:|",
                f"| load (wall: first request sent → last answer) | {run.load_s:.1f} s |",
                f"| accepted events | {stats.accepted:,} |",
                f"| **sustained events/s** (accepted events / wall) | **{self.events_s:,.0f}** |",
                f"| requests/s ({self.args.batch_events} events each) | {self.requests_s:,.1f} |",
                "| latency per request p50 / p95 / p99 / max | "
                + " / ".join(f"{percentile(self.latencies_ms, p):,.0f}" for p in (50, 95, 99, 100))
                + " ms |",
                "| **errors** (non-200, timeouts, connection errors, unexpected event outcomes) "
                f"| **{self.errors}** |",
                f"| late events sent (previous month) | {stats.late_sent:,} |",
                f"| … accepted (before the close began) | {stats.late_accepted:,} |",
                f"| … rejected per event: `period_not_open` in a 200 answer | {self.rejected:,} |",
                "| close job: `POST …/close` → `succeeded` seen by polling "
                f"| {seconds(self.close_s)} |",
                "| … job created → period `closing` (broker, worker, `begin_close` waiting "
                f"for the batches that lock the period) | {seconds(self.to_closing_s)} |",
                "| … of which job created → the worker marks it running (n/a if no poll saw "
                f"it running) | {seconds(self.queued_s)} |",
                f"| … close (`closing` → `closed`: statement, lines, journal) "
                f"| {seconds(self.closing_s)} |",
                f"| close result | {close.state}: {result.get('lines', '?')} lines, pool "
                f"{result.get('pool_minor', '?')} EUR minor |",
            ]
        )
        phase_table = "\n".join(
            [
                "| phase | seconds | requests | events/s | p50 ms | p99 ms "
                "| late batches: p50 ms | p99 ms |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
                *(
                    f"| {p.name} | {p.seconds:.1f} | {p.requests:,} | "
                    f"{p.events_s:,.0f} | "
                    f"{p.latency_ms[0]:,.0f} | {p.latency_ms[1]:,.0f} | "
                    f"{p.late_latency_ms[0]:,.0f} | {p.late_latency_ms[1]:,.0f} |"
                    for p in phases(stats.samples, close, run.load_s)
                ),
            ]
        )
        used = run.cpu.used
        per_k = 1e6 / max(stats.accepted, 1)
        cpu_table = "\n".join(
            [
                "| processes | CPU-seconds per second | CPU ms per 1,000 accepted events |",
                "|---|---:|---:|",
                *(
                    f"| {name} | {seconds / run.load_s:.2f} | {seconds * per_k:.1f} |"
                    for name, seconds in used.items()
                ),
                f"| all | {sum(used.values()) / run.load_s:.2f} | "
                f"{sum(used.values()) * per_k:.1f} |",
            ]
        )
        activity_table = "\n".join(
            [
                "| database sessions (bench database) | statement | average sessions |",
                "|---|---|---:|",
                *(
                    f"| {what} | `{sql}` | {sessions:.2f} |"
                    for what, sql, sessions in run.activity.top(6)
                ),
                f"| all non-idle sessions | | {run.activity.total():.2f} |",
            ]
        )
        checks = "\n".join(
            f"- {'✓' if ok else '✗ FAILED'} {name}: {detail}"
            for name, ok, detail in self.verification.checks
        )
        return [figures, phase_table, cpu_table, activity_table, checks]

    def benchmarks_section(self) -> str:
        args, run = self.args, self.run
        figures, phase_table, cpu_table, activity_table, checks = self.tables()
        connections = (
            "keep-alive connections"
            if args.keep_alive
            else "a new connection per request, so every uvicorn worker gets work"
        )
        return f"""
Command: `.venv/bin/python {self.command()}` (part of `make bench`).
Machine: {self.machine}; 1-minute load average {run.load_avg[0]:.1f} when the load started,
{run.load_avg[1]:.1f} when it ended. Everything shares the machine, on loopback:
`uvicorn --workers {args.workers}`, one Celery worker (concurrency {self.worker_concurrency}),
the embedded PostgreSQL ({self.durability}) and the clients.

Input: the previous month ({self.previous_month:%Y-%m}) is an ended, open period holding
{self.preloaded:,} retrieval events and {REVENUE_MINOR:,} EUR minor of revenue.
{args.clients} clients (threads, {connections}) send batches of {args.batch_events} retrieval
events × {CHUNKS_PER_EVENT} chunks (about {self.body_kib:.0f} KiB of JSON, {DATASETS} datasets, each
request with an `Idempotency-Key`) for {args.duration:g} s, each as soon as its previous
answer arrived; every {args.late_every}th batch is late (half of its events in the previous
month). After {self.close_after_s:g} s finance closes the previous month over HTTP
(`POST /v1/periods/{{id}}/close`, `anchor: false`; the worker runs `begin_close`, then
`finish_close`) and polls `GET /v1/jobs/{{id}}` every {JOB_POLL_INTERVAL_S:g} s while the load
goes on.

{figures}

{phase_table}

{cpu_table}

Sampled every 0.05 s from `pg_stat_activity` (sessions that were not idle):

{activity_table}

{self.findings()}

Late events are accepted while their period is open and rejected per event once the close
has begun (`period_not_open`, in a 200 answer, kept in the quarantine): they are not errors.
An error would be any other answer, a timeout ({REQUEST_TIMEOUT_S:g} s), a connection error,
an event rejected for another reason or a duplicate; the script exits non-zero on any.

Verified after the run against the database, event by event as the clients were told (the
script exits non-zero on any mismatch; each event names {CHUNKS_PER_EVENT} distinct datasets,
so a dataset's hits are the events naming it):

{checks}
"""

    def findings(self) -> str:
        """Why the figures look as they do, from this run's samples."""
        run = self.run
        waiting = sum(
            sessions
            for what, sql, sessions in run.activity.top(50)
            if what.startswith("waiting for a lock") and sql == "INSERT usage_rollup"
        )
        after = run.close.done_s if run.close.done_s is not None else run.load_s
        before_close, _, after_close = phases(run.stats.samples, run.close, run.load_s)
        late: list[float] = []
        other: list[float] = []
        for sample in run.stats.samples:
            if sample.done_s >= after:
                (late if sample.late else other).append(sample.latency_s * 1000)
        return f"""
What the figures show. Every batch of one model and month increments the same rollup rows
({DATASETS} datasets × {CHUNKS_PER_EVENT} ranks of the current period) and holds their row
locks until it commits, so concurrent batches of one model queue on `INSERT usage_rollup …
ON CONFLICT DO UPDATE`: {waiting:.2f} database sessions on average were waiting there. Once
the close has begun, a late batch leaves the fast path (`_fast_retrievals` hands the whole
batch to the staged path as soon as one of its months is not open): after the close, late
batches took {percentile(late, 50):,.0f} ms at the median against
{percentile(other, 50):,.0f} ms for the others, and the throughput of all batches went from
{before_close.events_s:,.0f} to {after_close.events_s:,.0f} events/s.
Of the close job's {seconds(self.close_s)}, {seconds(self.to_closing_s)} passed between
the job row's creation and the period turning `closing` (delivery through the SQL broker,
which the worker polls every 0.2 s, the start of the task, then `begin_close` waiting for
the batches that hold the period's row lock) and {seconds(self.closing_s)} in the close
itself.
"""

    def reliability_section(self) -> str:
        args, run = self.args, self.run
        return f"""
`scripts/bench_load.py` (part of `make bench`; figures and the machine in
`docs/BENCHMARKS.md`, "{SECTION}") sends {args.duration:g} s of retrieval batches from
{args.clients} clients to a real uvicorn server ({args.workers} workers) while finance closes
the previous month through the API and a real Celery worker; every {args.late_every}th batch
carries late events for the month being closed.

Last run: {run.stats.accepted:,} events accepted at {self.events_s:,.0f} events/s, p99
{percentile(self.latencies_ms, 99):,.0f} ms per {args.batch_events}-event request,
**{self.errors} errors**; {run.stats.late_accepted:,} late events went into the closed period
before its close began and {self.rejected:,} were rejected per event (`period_not_open`)
after; the close job took {self.close_s or 0:.1f} s under load.

Checked after every run against what each client was told, event by event: rollup hits per
(period, dataset) equal the accepted events naming the dataset; stored events and rank-1
hits equal the accepted events of each period; the quarantine holds exactly the rejected
events; no event of the closed period was ingested after its close began; recomputing the
closed period's statement now gives the stored bytes. So a late event is either in the
statement or rejected, never half, and the script fails loudly otherwise.
"""


if __name__ == "__main__":
    main()
