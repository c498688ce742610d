"""Owner self-verification and claims from the exported statement alone (no database).

An owner holds the canonical statement JSON (``usefirst period statement PERIOD -o FILE``), an
RPC URL and the settlement contract's address. :func:`verify_statement_line` rebuilds the
settlement tree from the statement exactly as the ledger does (``tree.py``: units per minor
from the token's decimals read on chain and the currency's exponent) and checks, against the
chain only: the statement's SHA-256 is the published statement hash, the rebuilt root is the
published root, and the account's line with its proof verifies (locally and by the contract's
own ``verifyLine``). :func:`claim_statement_line` verifies first, then claims with the
owner's local key.

A statement is published under attempt 0's settlement id, and under the next attempt's after
each revocation by the guardian (``ids.py``); by default the newest attempt on chain is used.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address
from web3 import Web3

import attribution as attr
from contracts import merkle
from contracts.client import SettlementReader, SettlementStatus
from contracts.errors import ContractRevert
from contracts.transactions import Transactor, TxResult
from ledger.errors import ValidationFailed
from ledger.settings import Settings
from ledger.settlements.ids import ATTEMPTS_MAX, settlement_key_for
from ledger.settlements.tree import statement_settlement_tree, units_per_minor


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class LineVerification:
    """Everything an owner needs to see about their line, and whether every check passed."""

    chain_id: int
    contract_address: str
    settlement_key: str
    account: str
    statement_sha256: str
    checks: list[Check] = field(default_factory=list)
    payable_minor: int | None = None
    currency: str | None = None
    units_per_minor: int | None = None
    amount_units: int | None = None
    leaf: str | None = None
    proof: list[str] = field(default_factory=list)
    statement_root: str | None = None
    chain_root: str | None = None
    chain_statement_hash: str | None = None
    claimed: bool | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "chain_id": self.chain_id,
            "contract_address": self.contract_address,
            "settlement": self.settlement_key,
            "account": self.account,
            "currency": self.currency,
            "payable_minor": self.payable_minor,
            "units_per_minor": self.units_per_minor,
            "amount_units": self.amount_units,
            "leaf": self.leaf,
            "proof": self.proof,
            "statement_sha256": self.statement_sha256,
            "chain_statement_hash": self.chain_statement_hash,
            "statement_root": self.statement_root,
            "chain_root": self.chain_root,
            "claimed": self.claimed,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


def newest_attempt_key(
    reader: SettlementReader, model_id: uuid.UUID | str, period_id: uuid.UUID | str
) -> bytes:
    """The settlement id of the period's newest attempt on chain: the first one the guardian
    has not revoked, else the last revoked one (attempt 0's id when nothing is published)."""
    newest = settlement_key_for(model_id, period_id, 0)
    for attempt in range(ATTEMPTS_MAX):
        key = settlement_key_for(model_id, period_id, attempt)
        record = reader.get_settlement(key)
        if record is None:
            break
        newest = key
        if record.status != SettlementStatus.REVOKED:
            break
    return newest


def parse_settlement(
    value: str | None, statement: attr.Statement | None, reader: SettlementReader | None = None
) -> bytes:
    """A settlement id from ``0x…`` (32 bytes hex), ``MODEL:PERIOD[:ATTEMPT]`` (two UUIDs and an
    optional attempt number; ``/`` or ``+`` also separate them), or, when ``value`` is None, the
    statement's own model and period. Without an attempt, the newest attempt on chain when a
    ``reader`` is given (:func:`newest_attempt_key`), else attempt 0."""

    def for_period(model: uuid.UUID | str, period: uuid.UUID | str) -> bytes:
        if reader is None:
            return settlement_key_for(model, period, 0)
        return newest_attempt_key(reader, model, period)

    if value is None:
        if statement is None:
            raise ValidationFailed(
                "pass --settlement: the statement could not be read", field="settlement"
            )
        return for_period(statement.model_id, statement.period_id)
    text = value.strip()
    separators = (":", "/", "+")
    if any(separator in text for separator in separators):
        for separator in separators[1:]:
            text = text.replace(separator, ":")
        parts = text.split(":")
        try:
            if len(parts) == 2:
                return for_period(uuid.UUID(parts[0]), uuid.UUID(parts[1]))
            if len(parts) == 3 and parts[2].isdigit() and int(parts[2]) < ATTEMPTS_MAX:
                return settlement_key_for(uuid.UUID(parts[0]), uuid.UUID(parts[1]), int(parts[2]))
        except ValueError:
            pass
        raise ValidationFailed(
            f"{value!r} is not MODEL_ID:PERIOD_ID (two UUIDs) or MODEL_ID:PERIOD_ID:ATTEMPT "
            f"(attempt 0 to {ATTEMPTS_MAX - 1})",
            field="settlement",
        )
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValidationFailed(
            f"{value!r} is neither a settlement id (0x + 64 hex digits) nor MODEL_ID:PERIOD_ID",
            field="settlement",
        )
    return raw


def verify_statement_line(
    w3: Web3,
    contract_address: str,
    statement_bytes: bytes,
    account: str,
    *,
    settlement: str | None = None,
    configured_units_per_minor: int | None = None,
) -> LineVerification:
    """Check ``account``'s line of the statement in ``statement_bytes`` against the chain.

    Never raises for a failed check: each one is reported in ``checks`` (``ok`` is their
    conjunction). Raises ValidationFailed for an unusable ``account`` or ``settlement``.
    """
    if not is_address(account):
        raise ValidationFailed(f"{account!r} is not an EVM address", field="account")
    account = to_checksum_address(account)
    reader = SettlementReader(w3, contract_address)
    digest = hashlib.sha256(statement_bytes).hexdigest()
    statement: attr.Statement | None
    try:
        statement = attr.statement_from_json(statement_bytes)
        format_check = Check("statement format", True, "canonical statement JSON")
    except attr.StatementFormatError as exc:
        statement = None
        format_check = Check("statement format", False, str(exc))
    key = parse_settlement(settlement, statement, reader)
    result = LineVerification(
        chain_id=int(w3.eth.chain_id),
        contract_address=reader.contract.address,
        settlement_key="0x" + key.hex(),
        account=account,
        statement_sha256=digest,
        checks=[format_check],
    )
    checks = result.checks
    if statement is not None:
        attempts = [
            settlement_key_for(statement.model_id, statement.period_id, attempt)
            for attempt in range(ATTEMPTS_MAX)
        ]
        detail = (
            f"attempt {attempts.index(key)} of model {statement.model_id} period "
            f"{statement.period_id}"
            if key in attempts
            else f"settlement ids of model {statement.model_id} period {statement.period_id} "
            f"are 0x{attempts[0].hex()} (attempt 0) and its re-anchors' (ids.settlement_key_for)"
        )
        checks.append(Check("settlement of this statement", key in attempts, detail))
    record = reader.get_settlement(key)
    if record is None:
        checks.append(Check("published", False, "the contract has no such settlement"))
        return result
    result.chain_root = "0x" + record.merkle_root.hex()
    result.chain_statement_hash = "0x" + record.statement_hash.hex()
    published = record.status == SettlementStatus.PUBLISHED
    checks.append(
        Check("published", published, f"status {record.status.name}, token {record.token}")
    )
    checks.append(
        Check(
            "statement hash",
            record.statement_hash.hex() == digest,
            f"SHA-256 of the file {digest}, on chain {record.statement_hash.hex()}",
        )
    )
    if statement is None:
        return result
    result.currency = statement.currency
    try:
        scale = units_per_minor(
            reader.token_decimals(record.token),
            statement.currency,
            configured_units_per_minor=configured_units_per_minor,
        )
    except ValidationFailed as exc:
        checks.append(Check("units per minor", False, exc.message))
        return result
    result.units_per_minor = scale
    built = statement_settlement_tree(statement, scale)
    result.statement_root = built.tree.root_hex if built.tree else None
    checks.append(
        Check(
            "root",
            built.tree is not None and built.tree.root == record.merkle_root,
            f"rebuilt from the statement {result.statement_root}, on chain {result.chain_root}",
        )
    )
    line = next((x for x in built.lines if x.account.lower() == account.lower()), None)
    if line is None or built.tree is None:
        checks.append(Check("line", False, f"{account} has no payable line in this statement"))
        return result
    amount_units, proof = built.tree.line_proof(line.account)
    result.payable_minor = line.payable_minor
    result.amount_units = amount_units
    result.leaf = "0x" + merkle.leaf_hash(line.account, amount_units).hex()
    result.proof = ["0x" + node.hex() for node in proof]
    checks.append(
        Check(
            "proof",
            merkle.verify(record.merkle_root, line.account, amount_units, proof),
            "the line's proof against the on-chain root (computed locally)",
        )
    )
    checks.append(
        Check(
            "contract verifyLine",
            reader.verify_line(key, line.account, amount_units, proof),
            "the contract's own verifyLine(settlement, account, amount, proof)",
        )
    )
    result.claimed = reader.is_claimed(key, line.account)
    return result


@dataclass(frozen=True)
class ClaimOutcome:
    verification: LineVerification
    already_claimed: bool
    tx: TxResult | None


def claim_statement_line(
    w3: Web3,
    contract_address: str,
    statement_bytes: bytes,
    sender: LocalAccount,
    settings: Settings,
    *,
    account: str | None = None,
    settlement: str | None = None,
    configured_units_per_minor: int | None = None,
) -> ClaimOutcome:
    """Verify ``account``'s line (default: the sender's) and claim it, sent by ``sender``.

    Sends nothing when a check fails (ValidationFailed listing them) or the line is already
    claimed. The tokens always go to ``account``, whoever sends.
    """
    verification = verify_statement_line(
        w3,
        contract_address,
        statement_bytes,
        account or sender.address,
        settlement=settlement,
        configured_units_per_minor=configured_units_per_minor,
    )
    if not verification.ok:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in verification.checks if not c.ok)
        raise ValidationFailed(
            f"the line does not verify against the chain, nothing was sent ({failed})",
            field="statement",
            code="line_not_verified",
        )
    if verification.claimed:
        return ClaimOutcome(verification, already_claimed=True, tx=None)
    assert verification.amount_units is not None
    reader = SettlementReader(w3, contract_address)
    fn = reader.contract.functions.claim(
        bytes.fromhex(verification.settlement_key.removeprefix("0x")),
        verification.account,
        verification.amount_units,
        [bytes.fromhex(node.removeprefix("0x")) for node in verification.proof],
    )
    transactor = Transactor.from_settings(w3, settings, verification.chain_id)
    try:
        tx = transactor.send(sender, fn)
    except ContractRevert as exc:
        if exc.error_name == "AlreadyClaimed":
            return ClaimOutcome(verification, already_claimed=True, tx=None)
        raise
    verification.claimed = True
    return ClaimOutcome(verification, already_claimed=False, tx=tx)
