"""Reconciliation: every settlement, ledger against chain, differences recorded as findings.

:func:`reconcile` never raises for a difference (nor for a settlement whose chain state cannot
be read: that is a ``chain_error`` finding). It stores one ``ReconciliationRun`` with its
findings and returns them. Kinds:

- chain vs ledger record: ``missing_on_chain``, ``published_not_recorded`` (a prepared
  settlement already on chain), ``revoked_on_chain`` (a revocation the ledger has not applied
  yet: run ``usefirst index``), ``revoked_not_on_chain`` (the ledger has an attempt revoked that
  the contract does not), ``root_mismatch``, ``total_mismatch``, ``token_mismatch``,
  ``statement_hash_mismatch``;
- ledger vs itself (invariant 7: the anchored root is the root recomputed from the ledger):
  ``ledger_root_mismatch``, ``ledger_total_mismatch``, ``ledger_statement_hash_mismatch``;
- claims: ``claim_not_indexed`` (on chain, not in the ledger), ``claim_missing_on_chain``,
  ``claim_amount_mismatch``, ``claim_tx_mismatch``, ``claim_line_mismatch`` (a claim that is
  not the published line), ``claim_not_journaled``, ``claimed_units_mismatch`` (the
  settlement's claimed total against its claims), ``remaining_mismatch`` (the contract's
  remaining against total − claimed);
- journal and life cycle: ``escrow_balance_mismatch`` (also: a revoked attempt whose escrow
  is not back to 0, i.e. its funding was not reversed), ``period_state_mismatch``.

A settlement revoked on chain whose revocation the ledger applied (funding reversed, settlement
revoked, period closed) has no finding; after a re-anchor, its earlier revoked attempts
(``settlement_revocation`` rows) are checked too.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from sqlalchemy import select
from sqlmodel import Session, col

from contracts.client import ClaimEvent, SettlementRecord, SettlementStatus, UsefirstChain
from contracts.errors import ChainError
from ledger.db import session_scope
from ledger.journal import queries as journal_queries
from ledger.periods.models import Period
from ledger.settings import Settings, get_settings
from ledger.settlements import postings, queries
from ledger.settlements.indexer import block_ranges
from ledger.settlements.models import (
    ReconciliationFinding,
    ReconciliationRun,
    Settlement,
    SettlementClaim,
    SettlementRevocation,
)
from ledger.settlements.tree import build_tree
from ledger.types import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    kind: str
    detail: str
    settlement_id: uuid.UUID | None = None
    settlement_key: str | None = None
    ledger_value: str | None = None
    chain_value: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        data = asdict(self)
        data["settlement_id"] = str(self.settlement_id) if self.settlement_id else None
        return data


@dataclass
class ReconcileReport:
    run_id: uuid.UUID
    chain_id: int
    contract_address: str
    settlements_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings


def reconcile(
    *,
    chain: UsefirstChain | None = None,
    settings: Settings | None = None,
    settlement_ids: Sequence[uuid.UUID] | None = None,
) -> ReconcileReport:
    """Compare every settlement of the connected contract (or ``settlement_ids``) with the
    chain; store and return the run. Commits its own transaction."""
    settings = settings or get_settings()
    chain = chain or UsefirstChain.connect(settings)
    head = int(chain.w3.eth.block_number)
    with session_scope(settings) as session:
        query = select(Settlement).where(
            col(Settlement.chain_id) == chain.chain_id,
            col(Settlement.contract_address) == chain.settlement.address,
        )
        if settlement_ids is not None:
            query = query.where(col(Settlement.id).in_(list(settlement_ids)))
        settlements = session.execute(query.order_by(col(Settlement.created_at))).scalars().all()
        run = ReconciliationRun(chain_id=chain.chain_id)
        session.add(run)
        session.flush()
        report = ReconcileReport(
            run_id=run.id, chain_id=chain.chain_id, contract_address=chain.settlement.address
        )
        for settlement in settlements:
            report.settlements_checked += 1
            checker = _Checker(session, chain, settings, settlement, head)
            try:
                checker.run()
            except ChainError as exc:
                checker.add("chain_error", f"could not read the chain: {exc}")
            report.findings.extend(checker.findings)
        for finding in report.findings:
            session.add(
                ReconciliationFinding(
                    run_id=run.id,
                    settlement_id=finding.settlement_id,
                    kind=finding.kind,
                    detail=finding.detail,
                    ledger_value=finding.ledger_value,
                    chain_value=finding.chain_value,
                )
            )
        run.settlements_checked = report.settlements_checked
        run.findings_count = len(report.findings)
        run.finished_at = utcnow()
        session.add(run)
    for finding in report.findings:
        log.warning("reconcile: %s %s: %s", finding.kind, finding.settlement_key, finding.detail)
    return report


class _Checker:
    """The checks of one settlement; collects findings."""

    def __init__(
        self,
        session: Session,
        chain: UsefirstChain,
        settings: Settings,
        settlement: Settlement,
        head: int,
    ) -> None:
        self.session = session
        self.chain = chain
        self.settings = settings
        self.settlement = settlement
        self.head = head
        self.findings: list[Finding] = []

    def add(
        self,
        kind: str,
        detail: str,
        ledger_value: object = None,
        chain_value: object = None,
        *,
        settlement_key: str | None = None,
    ) -> None:
        self.findings.append(
            Finding(
                kind=kind,
                detail=detail,
                settlement_id=self.settlement.id,
                settlement_key=settlement_key or self.settlement.settlement_key,
                ledger_value=None if ledger_value is None else str(ledger_value),
                chain_value=None if chain_value is None else str(chain_value),
            )
        )

    def run(self) -> None:
        s = self.settlement
        key = bytes.fromhex(s.settlement_key.removeprefix("0x"))
        period = self.session.get(Period, s.period_id)
        assert period is not None
        self._check_ledger(period)
        self._check_revoked_attempts(period)
        record = self.chain.get_settlement(key)
        if s.state == "prepared":
            if record is not None:
                self.add(
                    "published_not_recorded",
                    "the settlement is on chain but the ledger still has it prepared; run the "
                    "anchoring again to record it",
                    s.state,
                    record.status.name,
                )
            return
        if record is None:
            self.add(
                "missing_on_chain",
                f"the ledger has the settlement {s.state} but the contract does not know it",
                s.state,
                "none",
            )
            return
        self._check_record(record)
        chain_claims = self._chain_claims(key)
        self._check_claims(record, chain_claims)
        self._check_journal_and_period(period, record, chain_claims)

    def _check_ledger(self, period: Period) -> None:
        s = self.settlement
        if period.statement_hash is None or "0x" + period.statement_hash != s.statement_hash:
            self.add(
                "ledger_statement_hash_mismatch",
                "the settlement's statement hash is not the period's statement hash",
                s.statement_hash,
                period.statement_hash,
            )
        rebuilt = build_tree(
            queries.payable_lines(self.session, s.period_id), int(s.units_per_minor)
        )
        root = rebuilt.tree.root_hex if rebuilt.tree else None
        if root != s.merkle_root:
            self.add(
                "ledger_root_mismatch",
                "the root recomputed from the ledger's statement lines differs from the "
                "settlement's root",
                root,
                s.merkle_root,
            )
        if rebuilt.total_units != int(s.total_units):
            self.add(
                "ledger_total_mismatch",
                "the total recomputed from the ledger's statement lines differs from the "
                "settlement's total",
                rebuilt.total_units,
                s.total_units,
            )

    def _check_revoked_attempts(self, period: Period) -> None:
        """Earlier attempts of the settlement, revoked and replaced by the current one."""
        s = self.settlement
        currency = queries.period_currency(self.session, period)
        for revoked in queries.revocations_of(self.session, s.id):
            if revoked.settlement_key == s.settlement_key:
                continue  # the current attempt: checked with the settlement itself
            if revoked.contract_address != self.chain.settlement.address:
                continue  # published on an earlier deployment (a reset local chain)
            self._check_revocation_applied(revoked, currency)

    def _check_revocation_applied(self, revoked: SettlementRevocation, currency: str) -> None:
        key = revoked.settlement_key
        record = self.chain.get_settlement(bytes.fromhex(key.removeprefix("0x")))
        if record is None or record.status != SettlementStatus.REVOKED:
            self.add(
                "revoked_not_on_chain",
                f"the ledger has attempt {revoked.attempt} of the settlement revoked but the "
                "contract does not",
                "revoked",
                "none" if record is None else record.status.name,
                settlement_key=key,
            )
        escrow_minor = journal_queries.balance(self.session, postings.escrow_account(key), currency)
        if escrow_minor != 0:
            self.add(
                "escrow_balance_mismatch",
                f"attempt {revoked.attempt} of the settlement was revoked but its escrow "
                f"({currency} minor units) is not back to 0: the funding was not reversed",
                escrow_minor,
                0,
                settlement_key=key,
            )

    def _check_record(self, record: SettlementRecord) -> None:
        s = self.settlement
        if record.status == SettlementStatus.REVOKED and s.state != "revoked":
            self.add(
                "revoked_on_chain",
                "the guardian revoked the settlement on chain and the ledger has not applied "
                "it yet (funding not reversed, period not closed); run usefirst index",
                s.state,
                "REVOKED",
            )
        if record.status == SettlementStatus.PUBLISHED and s.state == "revoked":
            self.add(
                "revoked_not_on_chain",
                "the ledger has the settlement revoked but the contract has it published",
                s.state,
                record.status.name,
            )
        if record.merkle_root.hex() != s.merkle_root.removeprefix("0x"):
            self.add(
                "root_mismatch",
                "Merkle roots differ",
                s.merkle_root,
                "0x" + record.merkle_root.hex(),
            )
        if record.total_units != int(s.total_units):
            self.add("total_mismatch", "totals differ", s.total_units, record.total_units)
        if record.token.lower() != s.token_address.lower():
            self.add("token_mismatch", "tokens differ", s.token_address, record.token)
        if record.statement_hash.hex() != s.statement_hash.removeprefix("0x"):
            self.add(
                "statement_hash_mismatch",
                "statement hashes differ",
                s.statement_hash,
                "0x" + record.statement_hash.hex(),
            )

    def _chain_claims(self, key: bytes) -> dict[str, ClaimEvent]:
        start = self.settlement.publish_block or self.chain.settlement_from_block
        claims: dict[str, ClaimEvent] = {}
        for low, high in block_ranges(start, self.head, self.settings.chain_log_block_range):
            for event in self.chain.claim_events(low, high, key):
                claims[event.account.lower()] = event
        return claims

    def _check_claims(self, record: SettlementRecord, chain_claims: dict[str, ClaimEvent]) -> None:
        s = self.settlement
        rows = (
            self.session.execute(
                select(SettlementClaim).where(col(SettlementClaim.settlement_id) == s.id)
            )
            .scalars()
            .all()
        )
        ledger_claims = {row.account.lower(): row for row in rows}
        lines = queries.tree_lines(s)
        for account, event in chain_claims.items():
            line = lines.get(account)
            if line is None or line[1] != event.amount_units:
                self.add(
                    "claim_line_mismatch",
                    f"{event.account} was paid {event.amount_units} units on chain but its "
                    "published line says otherwise",
                    None if line is None else line[1],
                    event.amount_units,
                )
            row = ledger_claims.get(account)
            if row is None:
                self.add(
                    "claim_not_indexed",
                    f"{event.account} claimed in {event.tx_hash} but the ledger has no record; "
                    "run usefirst index",
                    None,
                    event.amount_units,
                )
                continue
            if int(row.amount_units) != event.amount_units:
                self.add(
                    "claim_amount_mismatch",
                    f"the ledger records another amount for {event.account}'s claim",
                    row.amount_units,
                    event.amount_units,
                )
            if (row.tx_hash.lower(), row.log_index) != (event.tx_hash.lower(), event.log_index):
                self.add(
                    "claim_tx_mismatch",
                    f"the ledger records {event.account}'s claim in another transaction",
                    f"{row.tx_hash}:{row.log_index}",
                    f"{event.tx_hash}:{event.log_index}",
                )
        for account, row in ledger_claims.items():
            if account not in chain_claims:
                self.add(
                    "claim_missing_on_chain",
                    f"the ledger records a claim by {row.account} that the chain does not have",
                    row.amount_units,
                    None,
                )
            if row.journal_transaction_id is None:
                self.add(
                    "claim_not_journaled",
                    f"the claim by {row.account} has no payout in the journal",
                    row.amount_units,
                    None,
                )
        ledger_claimed = sum(int(row.amount_units) for row in rows)
        if int(s.claimed_units) != ledger_claimed:
            self.add(
                "claimed_units_mismatch",
                "the settlement's claimed total is not the sum of its recorded claims",
                s.claimed_units,
                ledger_claimed,
            )
        chain_claimed = sum(event.amount_units for event in chain_claims.values())
        if record.remaining_units != record.total_units - chain_claimed and (
            record.status == SettlementStatus.PUBLISHED
        ):
            self.add(
                "remaining_mismatch",
                "the contract's remaining amount is not its total minus the claims paid",
                record.total_units - chain_claimed,
                record.remaining_units,
            )

    def _check_journal_and_period(
        self, period: Period, record: SettlementRecord, chain_claims: dict[str, ClaimEvent]
    ) -> None:
        s = self.settlement
        scale = int(s.units_per_minor)
        if s.state == "confirmed":
            if period.state not in ("anchored", "paid"):
                self.add(
                    "period_state_mismatch",
                    "the settlement is confirmed but its period is not anchored",
                    period.state,
                    record.status.name,
                )
            currency = queries.period_currency(self.session, period)
            escrow_minor = journal_queries.balance(
                self.session, postings.escrow_account(s.settlement_key), currency
            )
            expected_minor = -(record.remaining_units // scale)
            if escrow_minor != expected_minor:
                self.add(
                    "escrow_balance_mismatch",
                    f"the journal's escrow balance ({currency} minor units) is not what the "
                    "contract still holds for the settlement",
                    escrow_minor,
                    expected_minor,
                )
        if s.state == "revoked":
            if period.state != "closed":
                self.add(
                    "period_state_mismatch",
                    "the settlement is revoked but its period is not back to closed",
                    period.state,
                    record.status.name,
                )
            currency = queries.period_currency(self.session, period)
            escrow_minor = journal_queries.balance(
                self.session, postings.escrow_account(s.settlement_key), currency
            )
            if escrow_minor != 0:
                self.add(
                    "escrow_balance_mismatch",
                    f"the settlement is revoked but its escrow ({currency} minor units) is not "
                    "back to 0: the funding was not reversed",
                    escrow_minor,
                    0,
                )
        all_claimed = len(chain_claims) >= s.line_count
        if all_claimed and s.state == "confirmed" and period.state != "paid":
            self.add(
                "period_state_mismatch",
                "every line is claimed on chain but the period is not marked paid",
                period.state,
                f"{len(chain_claims)} of {s.line_count} lines claimed",
            )
