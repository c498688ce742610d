"""What each dashboard page shows, read for one principal; nothing here writes.

Visibility follows the API's rules, through the same domain queries: an owner sees the
datasets naming one of their addresses as co-owner (in any terms version) and the
statement lines paid to those addresses; a model team sees its own models and their
quarantine; finance sees everything. Functions take a session and return dataclasses
the templates render.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select, tuple_
from sqlmodel import Session, col

import attribution as attr
from api import jobs
from api.ui.charts import Panel, UsagePoint, usage_panels
from ledger.currencies import currency_exponent
from ledger.datasets.models import Dataset, Dispute
from ledger.datasets.queries import DatasetView, dataset_view, datasets_page, disputes_page
from ledger.datasets.queries import usage_page as dataset_usage_page
from ledger.datasets.service import uses_from_mask
from ledger.errors import NotFound
from ledger.models.models import Agreement, Model
from ledger.models.queries import agreements_page, models_page
from ledger.owners.queries import (
    ClaimData,
    OwnerStatementLine,
    claim_data,
    statement_line,
    statement_lines_page,
)
from ledger.periods.close import load_statement
from ledger.periods.models import Period
from ledger.settlements.models import (
    ReconciliationFinding,
    ReconciliationRun,
    Settlement,
    SettlementClaim,
)
from ledger.types import utcnow
from ledger.usage.models import QuarantinedEvent
from ledger.usage.queries import UsageSummary, quarantine_page, usage_summary

DATASETS_MAX: Final = 100
CHART_PERIODS_MAX: Final = 12
LINES_MAX: Final = 60
MODELS_MAX: Final = 50
HEALTH_PERIODS_MAX: Final = 6
QUARANTINE_MAX: Final = 50
PERIODS_PAGE: Final = 50
DISPUTES_MAX: Final = 50
RUNS_MAX: Final = 5
JOBS_MAX: Final = 10


# --- owner ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetCard:
    view: DatasetView
    uses: tuple[str, ...]
    my_share_bps: int  # the viewer's addresses' shares of the current terms
    panels: tuple[Panel, ...]  # usage per period, oldest first

    @property
    def dataset(self) -> Dataset:
        return self.view.dataset


@dataclass(frozen=True)
class ClaimStatus:
    """Where a line's payout stands on chain, without loading the settlement's tree."""

    state: str  # not_anchored | publishing | claimable | claimed | nothing_to_claim | revoked
    label: str
    tx_hash: str | None = None


@dataclass(frozen=True)
class EarningRow:
    line: OwnerStatementLine
    exponent: int
    claim: ClaimStatus


@dataclass(frozen=True)
class OwnerDashboard:
    addresses: tuple[str, ...]
    datasets: list[DatasetCard]
    earnings: list[EarningRow]


def owner_dashboard(session: Session, addresses: Collection[str]) -> OwnerDashboard:
    datasets = datasets_page(
        session, addresses=addresses, status=None, after=None, limit=DATASETS_MAX
    )
    lines = statement_lines_page(
        session, addresses=addresses, model_id=None, after=None, limit=LINES_MAX
    )
    claims = _claim_statuses(session, lines)
    return OwnerDashboard(
        addresses=tuple(sorted(addresses)),
        datasets=[_dataset_card(session, dataset, addresses) for dataset in datasets],
        earnings=[
            EarningRow(
                line, currency_exponent(line.currency), claims[(line.period_id, line.address)]
            )
            for line in lines
        ],
    )


def _dataset_card(session: Session, dataset: Dataset, addresses: Collection[str]) -> DatasetCard:
    view = dataset_view(session, dataset)
    mine = sum(c.share_bps for c in view.co_owners if c.address in addresses)
    return DatasetCard(
        view=view,
        uses=uses_from_mask(dataset.allowed_uses),
        my_share_bps=mine,
        panels=usage_panels(dataset_usage_points(session, dataset.id)),
    )


def dataset_usage_points(session: Session, dataset_id: uuid.UUID) -> list[UsagePoint]:
    """The dataset's usage in its last ``CHART_PERIODS_MAX`` months, all models summed."""
    # One row per model period; months with several models add up below.
    rows = dataset_usage_page(session, dataset_id, after=None, limit=CHART_PERIODS_MAX * 4)
    training: dict[str, dict[str, int]] = defaultdict(dict)
    hits: dict[str, int] = defaultdict(int)
    for row in rows:
        month = training[row.period_key]
        for unit, (quantity, _events) in row.training.items():
            month[unit] = month.get(unit, 0) + quantity
        hits[row.period_key] += row.retrieval_hits
    keys = sorted(training)[-CHART_PERIODS_MAX:]
    return [UsagePoint(key, training[key], hits[key]) for key in keys]


def _claim_statuses(
    session: Session, lines: Iterable[OwnerStatementLine]
) -> dict[tuple[uuid.UUID, str], ClaimStatus]:
    lines = list(lines)
    period_ids = sorted({line.period_id for line in lines})
    settlements = {
        s.period_id: s
        for s in session.execute(
            select(Settlement).where(col(Settlement.period_id).in_(period_ids))
        ).scalars()
    }
    wanted = [
        (settlements[line.period_id].id, line.address.lower())
        for line in lines
        if line.period_id in settlements
    ]
    claimed: dict[tuple[uuid.UUID, str], str] = {}
    if wanted:
        rows = session.execute(
            select(
                col(SettlementClaim.settlement_id),
                func.lower(col(SettlementClaim.account)),
                col(SettlementClaim.tx_hash),
            ).where(
                tuple_(
                    col(SettlementClaim.settlement_id), func.lower(col(SettlementClaim.account))
                ).in_(wanted)
            )
        ).all()
        claimed = {(row[0], row[1]): row[2] for row in rows}
    out: dict[tuple[uuid.UUID, str], ClaimStatus] = {}
    for line in lines:
        out[(line.period_id, line.address)] = claim_status(
            line, settlements.get(line.period_id), claimed
        )
    return out


def claim_status(
    line: OwnerStatementLine,
    settlement: Settlement | None,
    claimed: dict[tuple[uuid.UUID, str], str],
) -> ClaimStatus:
    if line.payable_minor <= 0:
        return ClaimStatus("nothing_to_claim", "nothing payable (carried forward)")
    if settlement is None:
        return ClaimStatus("not_anchored", "not anchored yet")
    if settlement.state == "revoked":
        return ClaimStatus("revoked", "settlement revoked")
    tx_hash = claimed.get((settlement.id, line.address.lower()))
    if tx_hash is not None:
        return ClaimStatus("claimed", "claimed", tx_hash)
    if settlement.state != "confirmed":
        return ClaimStatus("publishing", f"publishing ({settlement.state})")
    return ClaimStatus("claimable", "claimable now")


@dataclass(frozen=True)
class ClaimCall:
    """The exact ``RoyaltySettlement.claim`` call and the CLI command that makes it."""

    data: ClaimData
    rpc_url: str

    @property
    def solidity(self) -> str:
        proof = ", ".join(self.data.proof)
        return (
            f"claim({self.data.settlement_key}, {self.data.account}, "
            f"{self.data.amount_units}, [{proof}])"
        )

    @property
    def arguments(self) -> list[tuple[str, str, str]]:
        """(name, Solidity type, value) in call order."""
        return [
            ("settlementId", "bytes32", self.data.settlement_key),
            ("account", "address", self.data.account),
            ("amount", "uint256", str(self.data.amount_units)),
            ("proof", "bytes32[]", "[" + ",".join(self.data.proof) + "]"),
        ]

    @property
    def command(self) -> str:
        return (
            f"usefirst claim --statement statement-{self.data.period_id}.json "
            f"--settlement {self.data.settlement_key} --account {self.data.account} "
            f"--contract {self.data.contract_address} --rpc {self.rpc_url} "
            "--private-key-env USEFIRST_CLAIM_KEY"
        )


def require_own_address(addresses: Collection[str], period_id: uuid.UUID, address: str) -> None:
    """NotFound (``statement_line_not_found``, as for a line that does not exist) unless
    ``address`` is one of the viewer's."""
    if address not in addresses:
        raise NotFound(
            f"no statement line for {address} in a closed period {period_id}",
            field="address",
            code="statement_line_not_found",
        )


@dataclass(frozen=True)
class LineDetail:
    line: OwnerStatementLine
    exponent: int
    explanation: str
    claim: ClaimStatus
    call: ClaimCall | None


def owner_line(
    session: Session,
    addresses: Collection[str],
    period_id: uuid.UUID,
    address: str,
    rpc_url: str,
) -> LineDetail:
    """One of the viewer's lines with its derivation and claim; NotFound
    (``statement_line_not_found``) for anybody else's line, as for a missing one."""
    require_own_address(addresses, period_id, address)
    line = statement_line(session, period_id, address)
    period = session.get(Period, period_id)
    assert period is not None  # statement_line found its line
    explanation = attr.explain(load_statement(session, period), address)
    settlement = session.execute(
        select(Settlement).where(col(Settlement.period_id) == period_id)
    ).scalar_one_or_none()
    call = None
    if settlement is not None and settlement.state != "revoked" and line.payable_minor > 0:
        call = ClaimCall(claim_data(session, period_id, address), rpc_url)
    claimed = {}
    if call is not None and call.data.claim_tx_hash and settlement is not None:
        claimed = {(settlement.id, address.lower()): call.data.claim_tx_hash}
    return LineDetail(
        line=line,
        exponent=currency_exponent(line.currency),
        explanation=explanation,
        claim=claim_status(line, settlement, claimed),
        call=call,
    )


# --- model team -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelCard:
    model: Model
    agreements: list[Agreement]
    agreement_in_force: Agreement | None
    health: list[UsageSummary]  # newest period first


@dataclass(frozen=True)
class QuarantineRow:
    event: QuarantinedEvent
    model_name: str


@dataclass(frozen=True)
class TeamDashboard:
    models: list[ModelCard]
    quarantine: list[QuarantineRow]


def team_dashboard(session: Session, account_id: uuid.UUID) -> TeamDashboard:
    models = models_page(session, account_id=account_id, after=None, limit=MODELS_MAX)
    names = {m.id: m.name for m in models}
    events = quarantine_page(
        session, account_id=account_id, review_state="open", limit=QUARANTINE_MAX
    )
    return TeamDashboard(
        models=[_model_card(session, model) for model in models],
        quarantine=[QuarantineRow(e, names.get(e.model_id, "?")) for e in events],  # type: ignore[arg-type]
    )


def _model_card(session: Session, model: Model) -> ModelCard:
    agreements = agreements_page(session, model.id, after=None, limit=50)
    now = utcnow()
    in_force = [a for a in agreements if a.effective_from <= now]
    periods = session.execute(
        select(col(Period.starts_at))
        .where(col(Period.model_id) == model.id)
        .order_by(col(Period.starts_at).desc())
        .limit(HEALTH_PERIODS_MAX)
    ).scalars()
    return ModelCard(
        model=model,
        agreements=agreements,
        agreement_in_force=in_force[-1] if in_force else None,
        health=[usage_summary(session, model.id, start, reasons_max=3) for start in periods],
    )


# --- finance --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodRow:
    period: Period
    model_name: str
    currency: str | None
    exponent: int | None
    settlement_state: str | None
    settlement_key: str | None
    job: jobs.Job | None  # the latest close/anchor job of the period

    @property
    def can_close(self) -> bool:
        return self.period.state in ("open", "closing")

    @property
    def can_anchor(self) -> bool:
        return self.period.state == "closed"

    @property
    def has_statement(self) -> bool:
        return self.period.state in ("closed", "anchored", "paid")


@dataclass(frozen=True)
class DisputeRow:
    dispute: Dispute
    dataset: Dataset
    conflicting: Dataset


@dataclass(frozen=True)
class FindingRow:
    finding: ReconciliationFinding
    settlement_key: str | None
    period_key: str | None


@dataclass(frozen=True)
class FinanceDashboard:
    periods: list[PeriodRow]
    next_before: str | None  # keyset cursor of the next page: "<starts_at iso>,<id>"
    state_filter: str | None
    model_filter: uuid.UUID | None
    disputes: list[DisputeRow]
    runs: list[ReconciliationRun]
    findings: list[FindingRow] = field(default_factory=list)
    recent_jobs: list[jobs.Job] = field(default_factory=list)


def finance_dashboard(
    session: Session,
    *,
    state: str | None,
    model_id: uuid.UUID | None,
    before: tuple[datetime, uuid.UUID] | None,
) -> FinanceDashboard:
    rows = period_rows(
        session, state=state, model_id=model_id, before=before, limit=PERIODS_PAGE + 1
    )
    more = len(rows) > PERIODS_PAGE
    rows = rows[:PERIODS_PAGE]
    last = rows[-1].period if rows else None
    runs = list(
        session.execute(
            select(ReconciliationRun)
            .order_by(col(ReconciliationRun.started_at).desc())
            .limit(RUNS_MAX)
        ).scalars()
    )
    return FinanceDashboard(
        periods=rows,
        next_before=f"{last.starts_at.isoformat()},{last.id}" if more and last else None,
        state_filter=state,
        model_filter=model_id,
        disputes=open_disputes(session),
        runs=runs,
        findings=findings_of(session, runs[0].id) if runs else [],
        recent_jobs=jobs.list_jobs(session, None, limit=JOBS_MAX),
    )


def period_rows(
    session: Session,
    *,
    state: str | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
    model_id: uuid.UUID | None = None,
    period_ids: Collection[uuid.UUID] | None = None,
) -> list[PeriodRow]:
    """Periods of every model, newest first, with their model, currency and settlement."""
    query: Any = (
        select(
            Period,
            col(Model.name),
            col(Agreement.currency),
            col(Agreement.currency_exponent),
            col(Settlement.state),
            col(Settlement.settlement_key),
        )
        .join(Model, col(Model.id) == col(Period.model_id))
        .join(Agreement, col(Agreement.id) == col(Period.agreement_id), isouter=True)
        .join(Settlement, col(Settlement.period_id) == col(Period.id), isouter=True)
        .order_by(col(Period.starts_at).desc(), col(Period.id).desc())
    )
    if state is not None:
        query = query.where(col(Period.state) == state)
    if model_id is not None:
        query = query.where(col(Period.model_id) == model_id)
    if before is not None:
        query = query.where(tuple_(col(Period.starts_at), col(Period.id)) < tuple_(*before))
    if period_ids is not None:
        query = query.where(col(Period.id).in_(list(period_ids)))
    found = session.execute(query.limit(limit)).all()
    latest = latest_jobs(session, [row[0].id for row in found])
    return [
        PeriodRow(
            period=period,
            model_name=name,
            currency=currency,
            exponent=exponent,
            settlement_state=settlement_state,
            settlement_key=settlement_key,
            job=latest.get(period.id),
        )
        for period, name, currency, exponent, settlement_state, settlement_key in found
    ]


def latest_jobs(session: Session, period_ids: list[uuid.UUID]) -> dict[uuid.UUID, jobs.Job]:
    if not period_ids:
        return {}
    period_param = jobs.Job.params["period_id"].astext  # type: ignore[index]
    rows = session.execute(
        select(jobs.Job)
        .where(period_param.in_([str(p) for p in period_ids]))
        .order_by(col(jobs.Job.created_at).desc())
    ).scalars()
    out: dict[uuid.UUID, jobs.Job] = {}
    for job in rows:
        out.setdefault(uuid.UUID(job.params["period_id"]), job)
    return out


def open_disputes(session: Session) -> list[DisputeRow]:
    disputes = disputes_page(session, addresses=None, status="open", after=None, limit=DISPUTES_MAX)
    ids = {d.dataset_id for d in disputes} | {d.conflicting_dataset_id for d in disputes}
    datasets = {
        d.id: d
        for d in session.execute(select(Dataset).where(col(Dataset.id).in_(list(ids)))).scalars()
    }
    return [
        DisputeRow(d, datasets[d.dataset_id], datasets[d.conflicting_dataset_id]) for d in disputes
    ]


def findings_of(session: Session, run_id: uuid.UUID) -> list[FindingRow]:
    rows = session.execute(
        select(ReconciliationFinding, col(Settlement.settlement_key), col(Period.key))
        .join(
            Settlement, col(Settlement.id) == col(ReconciliationFinding.settlement_id), isouter=True
        )
        .join(Period, col(Period.id) == col(Settlement.period_id), isouter=True)
        .where(col(ReconciliationFinding.run_id) == run_id)
        .order_by(col(ReconciliationFinding.id))
    ).all()
    return [FindingRow(finding, key, period_key) for finding, key, period_key in rows]


@dataclass(frozen=True)
class JobView:
    """A job as the progress page and its polling endpoint show it."""

    job: jobs.Job
    period: PeriodRow | None

    @property
    def finished(self) -> bool:
        return self.job.state in ("succeeded", "failed")

    def as_json(self) -> dict[str, Any]:
        progress = self.job.progress or {}
        return {
            "id": self.job.id,
            "kind": self.job.kind,
            "state": self.job.state,
            "finished": self.finished,
            "step": progress.get("step"),
            "message": progress.get("message"),
            "error": self.job.error,
            "period_state": self.period.period.state if self.period else None,
            "settlement_state": self.period.settlement_state if self.period else None,
        }


def job_view(session: Session, job_id: str, account_id: uuid.UUID | None) -> JobView:
    """The job (of ``account_id`` unless None: finance sees every job) and its period."""
    job = session.get(jobs.Job, job_id, populate_existing=True)
    if job is None or (account_id is not None and job.account_id != account_id):
        raise NotFound(f"job {job_id} does not exist", field="job_id", code="job_not_found")
    period = None
    raw = (job.params or {}).get("period_id")
    if raw:
        found = period_rows(session, state=None, before=None, limit=1, period_ids=[uuid.UUID(raw)])
        period = found[0] if found else None
    return JobView(job, period)
