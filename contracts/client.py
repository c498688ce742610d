"""The usefirst chain client: datasets, settlements and claims on the deployed contracts.

Typical use by the ledger::

    chain = UsefirstChain.connect()                      # reads settings, loads the deployment
    tree = statement_tree(lines)                         # contracts.merkle
    published = chain.find_publish(settlement_id)        # a restarted process checks first
    if published is None:
        chain.publish_settlement(settlement_id, tree.root, total_units, statement_hash,
                                 on_sent=record_tx_hash)

Every write goes through :class:`contracts.transactions.Transactor` (gas estimation with decoded
reverts, per-sender nonce lock, retries on transient RPC errors, confirmations with a timeout).
Amounts are token base units (``*_units``); ids are 32 bytes.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from contracts.compiler import get_contract
from contracts.deploy import (
    REGISTRY,
    SETTLEMENT,
    TOKEN,
    Deployment,
    ensure_deployed,
    load_deployment,
    missing_code,
)
from contracts.errors import (
    ChainConfigError,
    ContractRevert,
    DeploymentError,
    SettlementConflict,
)
from contracts.transactions import ChainKeys, OnSent, Transactor, TxResult, connect, load_keys
from ledger.rights.eip712 import (
    Eip712Domain,
    RightsConfirmation,
    RightsRevocation,
    confirmation_signable,
    revocation_signable,
)
from ledger.settings import Settings, get_settings

__all__ = [
    "ClaimEvent",
    "ClaimLine",
    "ClaimManyResult",
    "CoOwnerSignature",
    "DatasetRecord",
    "DatasetRegistration",
    "PublishedSettlement",
    "SettlementReader",
    "SettlementRecord",
    "SettlementStatus",
    "UsefirstChain",
    "settlement_id_for",
    "sign_confirmation",
    "sign_revocation",
]


def _b32(value: bytes | str) -> bytes:
    raw = (
        bytes.fromhex(value[2:] if value.startswith("0x") else value)
        if isinstance(value, str)
        else value
    )
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return raw


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def settlement_id_for(model_id: uuid.UUID | str, period_id: uuid.UUID | str) -> bytes:
    """The settlement id of a model's period: ``keccak256(abi.encode(string, string))``.

    UUIDs are used in their canonical lower-case text form, so the same ids always give the
    same settlement id, whichever type the caller holds.
    """
    return keccak(abi_encode(["string", "string"], [id_text(model_id), id_text(period_id)]))


def id_text(value: uuid.UUID | str) -> str:
    """A model or period id as settlement ids hash it: a UUID in canonical lower-case text,
    anything else as given."""
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value


# --- datasets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetRegistration:
    """What the co-owners confirm and the registry anchors (see ``ledger/rights/eip712.py``)."""

    dataset_id: bytes
    content_root: bytes
    terms_hash: bytes
    allowed_uses: int
    co_owners: tuple[str, ...]
    shares_bps: tuple[int, ...]
    valid_from: int
    valid_until: int = 0

    def confirmation(self, nonce: int) -> RightsConfirmation:
        """The typed-data message a co-owner with ``nonce`` signs."""
        return RightsConfirmation(
            dataset_id=self.dataset_id,
            content_root=self.content_root,
            terms_hash=self.terms_hash,
            allowed_uses=self.allowed_uses,
            co_owners=self.co_owners,
            shares_bps=self.shares_bps,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            nonce=nonce,
        )

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.dataset_id,
            self.content_root,
            self.terms_hash,
            self.allowed_uses,
            [to_checksum_address(a) for a in self.co_owners],
            list(self.shares_bps),
            self.valid_from,
            self.valid_until,
        )


@dataclass(frozen=True)
class CoOwnerSignature:
    """A signer's RightsConfirmation signature (EOA or ERC-1271 wallet) and the nonce it used."""

    signer: str
    nonce: int
    signature: bytes


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset as anchored on chain."""

    dataset_id: bytes
    content_root: bytes
    terms_hash: bytes
    allowed_uses: int
    valid_from: int
    valid_until: int
    version: int
    registered_at: int
    revoked_at: int
    revoked_by: str | None
    co_owners: tuple[str, ...]
    shares_bps: tuple[int, ...]

    @property
    def revoked(self) -> bool:
        return self.revoked_at != 0


def sign_confirmation(
    account: LocalAccount, domain: Eip712Domain, registration: DatasetRegistration, nonce: int
) -> CoOwnerSignature:
    """``account``'s RightsConfirmation signature over ``registration`` (development and tests;
    real owners sign in their own wallet)."""
    signed = account.sign_message(confirmation_signable(domain, registration.confirmation(nonce)))
    return CoOwnerSignature(account.address, nonce, bytes(signed.signature))


def sign_revocation(
    account: LocalAccount, domain: Eip712Domain, dataset_id: bytes, nonce: int
) -> bytes:
    """``account``'s RightsRevocation signature of ``dataset_id`` with ``nonce``."""
    signable = revocation_signable(domain, RightsRevocation(dataset_id=dataset_id, nonce=nonce))
    return bytes(account.sign_message(signable).signature)


# --- settlements ------------------------------------------------------------------------


class SettlementStatus(IntEnum):
    NONE = 0
    PUBLISHED = 1
    REVOKED = 2


@dataclass(frozen=True)
class SettlementRecord:
    """A settlement as stored by the contract."""

    settlement_id: bytes
    merkle_root: bytes
    token: str
    total_units: int
    remaining_units: int
    statement_hash: bytes
    settler: str
    published_at: int
    claimable_at: int
    status: SettlementStatus
    sequence: int


@dataclass(frozen=True)
class PublishedSettlement:
    """A settlement found on chain, with the transaction that published it."""

    record: SettlementRecord
    tx_hash: str | None
    block_number: int | None


@dataclass(frozen=True)
class ClaimLine:
    """One statement line to claim: ``amount_units`` to ``account`` with its Merkle proof."""

    settlement_id: bytes
    account: str
    amount_units: int
    proof: tuple[bytes, ...]

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.settlement_id,
            to_checksum_address(self.account),
            self.amount_units,
            list(self.proof),
        )


@dataclass(frozen=True)
class ClaimEvent:
    """A line paid on chain."""

    settlement_id: bytes
    account: str
    amount_units: int
    token: str
    tx_hash: str
    block_number: int
    # (tx_hash, log_index) identifies the event.
    log_index: int


@dataclass(frozen=True)
class RevocationEvent:
    """A settlement the guardian revoked: ``refunded_units`` went back to ``settler``."""

    settlement_id: bytes
    token: str
    settler: str
    refunded_units: int
    tx_hash: str
    block_number: int
    # (tx_hash, log_index) identifies the event.
    log_index: int

    @property
    def settlement_key(self) -> str:
        return "0x" + self.settlement_id.hex()


@dataclass(frozen=True)
class ClaimManyResult:
    tx: TxResult
    paid_lines: int
    # (settlement id, account, amount units) of each line paid by this transaction.
    paid: tuple[tuple[bytes, str, int], ...]


class SettlementReader:
    """Read-only access to a RoyaltySettlement contract: no keys, no deployment record.

    What an owner needs to verify a line with nothing but an RPC URL and the contract address;
    :class:`UsefirstChain` reads through it too.
    """

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.contract: Contract = w3.eth.contract(
            address=to_checksum_address(address), abi=get_contract(SETTLEMENT).abi
        )

    def get_settlement(self, settlement_id: bytes) -> SettlementRecord | None:
        """The contract's record of ``settlement_id``, or None if it was never published."""
        raw = self.contract.functions.getSettlement(_b32(settlement_id)).call()
        (
            root,
            token,
            total,
            remaining,
            statement_hash,
            settler,
            published_at,
            claimable_at,
            status,
            sequence,
        ) = raw
        if status == SettlementStatus.NONE:
            return None
        return SettlementRecord(
            settlement_id=_b32(settlement_id),
            merkle_root=bytes(root),
            token=token,
            total_units=total,
            remaining_units=remaining,
            statement_hash=bytes(statement_hash),
            settler=settler,
            published_at=published_at,
            claimable_at=claimable_at,
            status=SettlementStatus(status),
            sequence=sequence,
        )

    def is_claimed(self, settlement_id: bytes, account: str) -> bool:
        return bool(
            self.contract.functions.isClaimed(
                _b32(settlement_id), to_checksum_address(account)
            ).call()
        )

    def verify_line(
        self, settlement_id: bytes, account: str, amount_units: int, proof: Sequence[bytes]
    ) -> bool:
        """Whether the contract accepts ``(account, amount_units)`` with ``proof`` (a view call)."""
        return bool(
            self.contract.functions.verifyLine(
                _b32(settlement_id), to_checksum_address(account), amount_units, list(proof)
            ).call()
        )

    def token_decimals(self, token: str) -> int:
        """``decimals()`` of an ERC20: one whole token is ``10 ** decimals`` base units."""
        erc20 = self.w3.eth.contract(
            address=to_checksum_address(token), abi=get_contract(TOKEN).abi
        )
        return int(erc20.functions.decimals().call())

    def claim_events(
        self, from_block: int, to_block: int | str = "latest", settlement_id: bytes | None = None
    ) -> list[ClaimEvent]:
        """``Claimed`` events in ``[from_block, to_block]``, optionally of one settlement, in
        chain order. One ``eth_getLogs``: callers keep the range within what their node serves.
        """
        filters = {} if settlement_id is None else {"settlementId": _b32(settlement_id)}
        logs = self.contract.events.Claimed().get_logs(
            from_block=from_block, to_block=to_block, argument_filters=filters
        )
        return [
            ClaimEvent(
                settlement_id=bytes(log["args"]["settlementId"]),
                account=log["args"]["account"],
                amount_units=log["args"]["amount"],
                token=log["args"]["token"],
                tx_hash=_hex(log["transactionHash"]),
                block_number=log["blockNumber"],
                log_index=log["logIndex"],
            )
            for log in logs
        ]

    def revocation_events(
        self, from_block: int, to_block: int | str = "latest", settlement_id: bytes | None = None
    ) -> list[RevocationEvent]:
        """``SettlementRevoked`` events in ``[from_block, to_block]``, optionally of one
        settlement, in chain order. One ``eth_getLogs``, like :meth:`claim_events`."""
        filters = {} if settlement_id is None else {"settlementId": _b32(settlement_id)}
        logs = self.contract.events.SettlementRevoked().get_logs(
            from_block=from_block, to_block=to_block, argument_filters=filters
        )
        return [
            RevocationEvent(
                settlement_id=bytes(log["args"]["settlementId"]),
                token=log["args"]["token"],
                settler=log["args"]["settler"],
                refunded_units=int(log["args"]["refunded"]),
                tx_hash=_hex(log["transactionHash"]),
                block_number=int(log["blockNumber"]),
                log_index=int(log["logIndex"]),
            )
            for log in logs
        ]


class UsefirstChain:
    """High-level access to the DatasetRegistry, RoyaltySettlement and settlement token."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        keys: ChainKeys,
        transactor: Transactor,
        settings: Settings,
    ) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.keys = keys
        self.transactor = transactor
        self.settings = settings
        self.chain_id = deployment.chain_id
        self.registry: Contract = w3.eth.contract(
            address=to_checksum_address(deployment.registry_address),
            abi=get_contract(REGISTRY).abi,
        )
        self.reader = SettlementReader(w3, deployment.settlement_address)
        self.settlement: Contract = self.reader.contract
        self.token_address = to_checksum_address(deployment.token_address)
        # Approve-then-publish must not interleave for one settler, or a second approval could
        # overwrite the allowance the first publication relies on.
        self._publish_lock = threading.Lock()

    @classmethod
    def connect(
        cls,
        settings: Settings | None = None,
        *,
        w3: Web3 | None = None,
        deploy: bool = False,
    ) -> UsefirstChain:
        """Connect with ``settings`` and load this chain's deployment record.

        ``deploy=True`` deploys when there is no valid record (see
        :func:`contracts.deploy.ensure_deployed`); otherwise a missing or stale record raises
        DeploymentError.
        """
        settings = settings or get_settings()
        w3 = w3 or connect(settings)
        chain_id = w3.eth.chain_id
        keys = load_keys(settings, chain_id)
        if deploy:
            deployment = ensure_deployed(w3, settings=settings, keys=keys)
        else:
            record = load_deployment(settings, chain_id)
            if record is None:
                raise DeploymentError(
                    f"no deployment record for chain {chain_id} in {settings.deployments_dir}; "
                    "deploy first (`usefirst deploy`, or UsefirstChain.connect(deploy=True))"
                )
            gone = missing_code(w3, record)
            if gone:
                raise DeploymentError(
                    f"the deployment record for chain {chain_id} does not match the chain: "
                    + "; ".join(gone)
                )
            deployment = record
        return cls(w3, deployment, keys, Transactor.from_settings(w3, settings, chain_id), settings)

    # --- token ---------------------------------------------------------------------------

    def token(self, address: str | None = None) -> Contract:
        """An ERC20 contract object (the deployment's token by default)."""
        return self.w3.eth.contract(
            address=to_checksum_address(address or self.token_address), abi=get_contract(TOKEN).abi
        )

    def token_balance(self, account: str, token: str | None = None) -> int:
        """``account``'s balance of ``token`` in base units."""
        return int(self.token(token).functions.balanceOf(to_checksum_address(account)).call())

    def token_decimals(self, token: str | None = None) -> int:
        """``decimals()`` of ``token`` (the deployment's token by default)."""
        return self.reader.token_decimals(token or self.token_address)

    @property
    def is_local(self) -> bool:
        """The local development chain, where the deployer owns and can mint the token."""
        return self.chain_id == self.settings.anvil_chain_id and TOKEN in self.deployment.contracts

    def mint_test_tokens(self, to: str, amount_units: int) -> TxResult:
        """Mint RoyaltyToken on the local chain (the deployer owns it). Raises elsewhere."""
        if not self.is_local:
            raise ChainConfigError("test tokens can only be minted on the local chain")
        fn = self.token().functions.mint(to_checksum_address(to), amount_units)
        return self.transactor.send(self.keys.deployer, fn)

    # --- datasets ------------------------------------------------------------------------

    def registry_domain(self) -> Eip712Domain:
        """The EIP-712 domain co-owners sign rights confirmations and revocations in."""
        return Eip712Domain(
            name=self.settings.eip712_name,
            version=self.settings.eip712_version,
            chain_id=self.chain_id,
            verifying_contract=self.registry.address,
        )

    def rights_nonce(self, owner: str) -> int:
        """The nonce ``owner``'s next confirmation or revocation signature must carry."""
        return int(self.registry.functions.nonces(to_checksum_address(owner)).call())

    def register_dataset(
        self,
        registration: DatasetRegistration,
        signatures: Sequence[CoOwnerSignature],
        *,
        on_sent: OnSent | None = None,
    ) -> TxResult:
        """Anchor ``registration`` with its co-owners' confirmations (any order; sorted here).

        Re-registration also needs the signatures of previous co-owners who are dropped.
        Raises ContractRevert naming the problem (e.g. ``MissingSignature(addr)``,
        ``InvalidAccountNonce``) before anything is sent.
        """
        ordered = sorted(signatures, key=lambda s: int(s.signer, 16))
        fn = self.registry.functions.register(
            registration.as_tuple(),
            [(to_checksum_address(s.signer), s.nonce, s.signature) for s in ordered],
        )
        return self.transactor.send(self.keys.settler, fn, on_sent=on_sent)

    def revoke_dataset(
        self,
        dataset_id: bytes,
        co_owner: str,
        nonce: int,
        signature: bytes,
        *,
        sender: LocalAccount | None = None,
        on_sent: OnSent | None = None,
    ) -> TxResult:
        """Submit a co-owner's RightsRevocation (anyone may; default sender: the settler key)."""
        fn = self.registry.functions.revoke(
            _b32(dataset_id), to_checksum_address(co_owner), nonce, signature
        )
        return self.transactor.send(sender or self.keys.settler, fn, on_sent=on_sent)

    def get_dataset(self, dataset_id: bytes) -> DatasetRecord | None:
        """The anchored record, or None if the dataset was never registered."""
        raw = self.registry.functions.getDataset(_b32(dataset_id)).call()
        (
            content_root,
            terms_hash,
            allowed_uses,
            valid_from,
            valid_until,
            version,
            registered_at,
            revoked_at,
            revoked_by,
            co_owners,
            shares_bps,
        ) = raw
        if version == 0:
            return None
        return DatasetRecord(
            dataset_id=_b32(dataset_id),
            content_root=bytes(content_root),
            terms_hash=bytes(terms_hash),
            allowed_uses=allowed_uses,
            valid_from=valid_from,
            valid_until=valid_until,
            version=version,
            registered_at=registered_at,
            revoked_at=revoked_at,
            revoked_by=revoked_by if revoked_at else None,
            co_owners=tuple(co_owners),
            shares_bps=tuple(shares_bps),
        )

    def is_dataset_revoked(self, dataset_id: bytes) -> bool:
        return bool(self.registry.functions.isRevoked(_b32(dataset_id)).call())

    def is_dataset_active(self, dataset_id: bytes) -> bool:
        """Registered, not revoked and inside its validity window at the latest block."""
        return bool(self.registry.functions.isActive(_b32(dataset_id)).call())

    # --- settlements ---------------------------------------------------------------------

    def get_settlement(self, settlement_id: bytes) -> SettlementRecord | None:
        """The contract's record of ``settlement_id``, or None if it was never published."""
        return self.reader.get_settlement(settlement_id)

    @property
    def settlement_from_block(self) -> int:
        """The block the RoyaltySettlement contract was deployed in (no event is older)."""
        return self.deployment.contracts[SETTLEMENT].block_number

    def find_publish(self, settlement_id: bytes) -> PublishedSettlement | None:
        """What the chain knows about ``settlement_id``: None if it was never published.

        A process that restarts after sending a publication calls this instead of sending
        again; the record is read from contract state (authoritative), the transaction from the
        ``SettlementPublished`` event when the node still serves the logs.
        """
        record = self.get_settlement(settlement_id)
        if record is None:
            return None
        event = self.settlement.events.SettlementPublished()
        try:
            logs = event.get_logs(
                from_block=self.deployment.from_block,
                argument_filters={"settlementId": _b32(settlement_id)},
            )
        except Exception:  # a pruned or log-limited node: the state alone is still authoritative
            logs = []
        if not logs:
            return PublishedSettlement(record=record, tx_hash=None, block_number=None)
        first = logs[0]
        return PublishedSettlement(
            record=record, tx_hash=_hex(first["transactionHash"]), block_number=first["blockNumber"]
        )

    def publish_settlement(
        self,
        settlement_id: bytes,
        merkle_root: bytes,
        total_units: int,
        statement_hash: bytes,
        *,
        token: str | None = None,
        on_sent: OnSent | None = None,
        on_approve_sent: OnSent | None = None,
    ) -> PublishedSettlement:
        """Approve (when the allowance is short) and publish a funded settlement.

        Idempotent: if the id is already on chain with the same root, total, token and statement
        hash, nothing is sent and the existing publication is returned; with different contents
        it raises SettlementConflict. ``on_sent`` receives the publish transaction's hash as soon
        as the node accepted it (``on_approve_sent`` the approval's, when one is sent). Raises
        ContractRevert (nothing sent) when the settler lacks funds or the role.
        """
        settlement_id = _b32(settlement_id)
        merkle_root = _b32(merkle_root)
        statement_hash = _b32(statement_hash)
        token_address = to_checksum_address(token or self.token_address)
        with self._publish_lock:
            existing = self.find_publish(settlement_id)
            if existing is not None:
                self.check_publication(
                    existing.record, merkle_root, total_units, token_address, statement_hash
                )
                return existing
            settler = self.keys.settler
            erc20 = self.token(token_address)
            allowance = erc20.functions.allowance(settler.address, self.settlement.address).call()
            if allowance < total_units:
                self.transactor.send(
                    settler,
                    erc20.functions.approve(self.settlement.address, total_units),
                    on_sent=on_approve_sent,
                )
            fn = self.settlement.functions.publish(
                settlement_id, merkle_root, total_units, token_address, statement_hash
            )
            try:
                result = self.transactor.send(settler, fn, on_sent=on_sent)
            except ContractRevert as exc:
                # Another process published the same id between our check and our send.
                if exc.error_name != "AlreadyPublished":
                    raise
                raced = self.find_publish(settlement_id)
                if raced is None:  # pragma: no cover - the contract just said it exists
                    raise
                self.check_publication(
                    raced.record, merkle_root, total_units, token_address, statement_hash
                )
                return raced
        record = self.get_settlement(settlement_id)
        if record is None:  # pragma: no cover - the receipt said it succeeded
            raise DeploymentError(f"publish {result.tx_hash} succeeded but no record is visible")
        return PublishedSettlement(
            record=record, tx_hash=result.tx_hash, block_number=result.block_number
        )

    @staticmethod
    def check_publication(
        record: SettlementRecord, root: bytes, total: int, token: str, statement_hash: bytes
    ) -> None:
        """Raise SettlementConflict naming each field where ``record`` differs from the
        publication the caller means (root, total, token, statement hash)."""
        differences = []
        if record.merkle_root != root:
            differences.append(f"root {_hex(record.merkle_root)} on chain vs {_hex(root)}")
        if record.total_units != total:
            differences.append(f"total {record.total_units} on chain vs {total}")
        if record.token.lower() != token.lower():
            differences.append(f"token {record.token} on chain vs {token}")
        if record.statement_hash != statement_hash:
            differences.append("statement hash differs")
        if differences:
            raise SettlementConflict(
                f"settlement {_hex(record.settlement_id)} is already published with other "
                f"contents ({'; '.join(differences)}); settlement ids are never reused, derive a "
                "new one for a corrected statement"
            )

    def revoke_settlement(self, settlement_id: bytes, *, on_sent: OnSent | None = None) -> TxResult:
        """Guardian: revoke inside the challenge window; the funds return to the settler."""
        fn = self.settlement.functions.revoke(_b32(settlement_id))
        return self.transactor.send(self.keys.guardian, fn, on_sent=on_sent)

    def pause(self) -> TxResult:
        """Guardian: stop publications and claims."""
        return self.transactor.send(self.keys.guardian, self.settlement.functions.pause())

    def unpause(self) -> TxResult:
        """Guardian: resume publications and claims."""
        return self.transactor.send(self.keys.guardian, self.settlement.functions.unpause())

    def is_paused(self) -> bool:
        return bool(self.settlement.functions.paused().call())

    # --- claims --------------------------------------------------------------------------

    def is_claimed(self, settlement_id: bytes, account: str) -> bool:
        return self.reader.is_claimed(settlement_id, account)

    def verify_line(
        self, settlement_id: bytes, account: str, amount_units: int, proof: Sequence[bytes]
    ) -> bool:
        """Whether the contract accepts ``(account, amount_units)`` with ``proof`` (a view call)."""
        return self.reader.verify_line(settlement_id, account, amount_units, proof)

    def claims(self, settlement_id: bytes) -> list[ClaimEvent]:
        """Every line paid from ``settlement_id``, from the ``Claimed`` events since deployment,
        in chain order (one log query; on long-lived chains use :meth:`claim_events` in bounded
        block ranges)."""
        return self.reader.claim_events(self.settlement_from_block, "latest", settlement_id)

    def claim_events(
        self, from_block: int, to_block: int | str = "latest", settlement_id: bytes | None = None
    ) -> list[ClaimEvent]:
        """``Claimed`` events of every settlement (or one) in ``[from_block, to_block]``."""
        return self.reader.claim_events(from_block, to_block, settlement_id)

    def revocation_events(
        self, from_block: int, to_block: int | str = "latest", settlement_id: bytes | None = None
    ) -> list[RevocationEvent]:
        """``SettlementRevoked`` events of every settlement (or one) in the block range."""
        return self.reader.revocation_events(from_block, to_block, settlement_id)

    def claim(
        self,
        settlement_id: bytes,
        account: str,
        amount_units: int,
        proof: Sequence[bytes],
        *,
        sender: LocalAccount | None = None,
        on_sent: OnSent | None = None,
    ) -> TxResult:
        """Pay one line to ``account`` (the funds always go to ``account``, whoever sends).

        ``sender`` defaults to the settler key acting as a relayer. Raises ContractRevert, e.g.
        ``AlreadyClaimed``, ``InvalidProof``, ``ClaimNotOpen``, before anything is sent.
        """
        fn = self.settlement.functions.claim(
            _b32(settlement_id), to_checksum_address(account), amount_units, list(proof)
        )
        return self.transactor.send(sender or self.keys.settler, fn, on_sent=on_sent)

    def claim_many(
        self,
        lines: Sequence[ClaimLine],
        *,
        sender: LocalAccount | None = None,
        on_sent: OnSent | None = None,
    ) -> ClaimManyResult:
        """Pay many lines in one transaction; lines already claimed are skipped, not failed."""
        if not lines:
            raise ValueError("claim_many needs at least one line")
        fn = self.settlement.functions.claimMany([line.as_tuple() for line in lines])
        result = self.transactor.send(sender or self.keys.settler, fn, on_sent=on_sent)
        events = self.settlement.events.Claimed().process_receipt(result.receipt, errors=DISCARD)
        paid = tuple(
            (bytes(e["args"]["settlementId"]), e["args"]["account"], e["args"]["amount"])
            for e in events
        )
        return ClaimManyResult(tx=result, paid_lines=len(paid), paid=paid)
