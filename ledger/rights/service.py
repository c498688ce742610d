"""Rights confirmations, revocations and dispute resolution.

Each co-owner signs EIP-712 typed data (``ledger/rights/eip712.py``) over the dataset's
*current* terms version; the ledger checks it as DatasetRegistry does on chain (ECDSA with
low ``s`` and ``v`` in {27, 28}, else ERC-1271 for contract wallets), in the same domain
(name, version, chain id, verifying contract) and with the signer's next nonce, which the
accepted signature consumes. Nonces are per signer across all datasets, like the registry's
OpenZeppelin ``Nonces``, so one signature can be anchored on chain unchanged.

When every required signer has confirmed the current version the dataset becomes
``confirmed`` and a ``dataset_confirmation`` interval opens; a revocation closes it. Each
function locks the dataset row first and the signer's nonce row second (always that order).
Submitting an accepted signature again returns the stored result and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session

from ledger.datasets.models import Dataset, Dispute
from ledger.datasets.service import (
    close_interval,
    co_owners_of,
    confirmed_signers,
    get_dataset,
    moment_of,
    open_disputes,
    refresh_status,
    required_signers,
    terms_of,
)
from ledger.errors import (
    Conflict,
    Forbidden,
    NotFound,
    StateError,
    ValidationFailed,
)
from ledger.owners.service import get_account, normalize_address
from ledger.rights.eip712 import (
    Eip712Domain,
    RightsConfirmation,
    RightsRevocation,
    confirmation_signable,
    dataset_id_bytes32,
    revocation_signable,
    typed_data_document,
)
from ledger.rights.models import RightsSignature, SignerNonce
from ledger.rights.signatures import (
    ChainReader,
    Web3ChainReader,
    check_signature,
    parse_signature,
    typed_data_digest,
)
from ledger.settings import Settings, get_settings

NONCE_MAX = 2**256 - 1
RESOLUTIONS = ("upheld", "rejected")
NOTE_MAX = 5_000


@dataclass(frozen=True)
class RightsResult:
    """An accepted (or replayed) signature and the dataset after it."""

    signature: RightsSignature
    dataset: Dataset
    replayed: bool  # True: this exact signature had been accepted before; nothing changed
    missing_signers: tuple[str, ...]  # required signers who have not confirmed yet


# --- domain and messages ----------------------------------------------------------------


def rights_domain(
    settings: Settings | None = None,
    *,
    chain_id: int | None = None,
    verifying_contract: str | None = None,
) -> Eip712Domain:
    """The EIP-712 domain rights signatures are checked in.

    Name and version come from settings; the chain id defaults to ``anvil_chain_id`` and
    the verifying contract to ``rights_verifying_contract``. Once DatasetRegistry is
    deployed, pass its chain id and address (``UsefirstChain.registry_domain()``), so a
    signature accepted here is also valid on chain.
    """
    settings = settings or get_settings()
    return Eip712Domain(
        name=settings.eip712_name,
        version=settings.eip712_version,
        chain_id=settings.anvil_chain_id if chain_id is None else chain_id,
        verifying_contract=to_checksum_address(
            verifying_contract or settings.rights_verifying_contract
        ),
    )


def _domain_from(value: Eip712Domain | Mapping[str, Any]) -> Eip712Domain:
    if isinstance(value, Eip712Domain):
        return value
    try:
        return Eip712Domain(
            name=str(value["name"]),
            version=str(value["version"]),
            chain_id=int(value["chainId"]),
            verifying_contract=str(value["verifyingContract"]),
        )
    except (KeyError, TypeError, ValueError):
        raise ValidationFailed(
            "domain must have name, version, chainId and verifyingContract",
            field="domain",
            code="domain_invalid",
        ) from None


def _check_domain(signed: Eip712Domain, expected: Eip712Domain) -> None:
    """Raise ``wrong_domain`` naming the first field where the domains differ."""
    differences = [
        ("name", signed.name, expected.name),
        ("version", signed.version, expected.version),
        ("chainId", signed.chain_id, expected.chain_id),
        (
            "verifyingContract",
            signed.verifying_contract.lower(),
            expected.verifying_contract.lower(),
        ),
    ]
    for field, got, want in differences:
        if got != want:
            raise ValidationFailed(
                f"the signature's domain has {field} {got!r}, but rights signatures here use "
                f"{want!r}; sign again in the domain name={expected.name!r}, "
                f"version={expected.version!r}, chainId={expected.chain_id}, "
                f"verifyingContract={expected.verifying_contract}",
                field=f"domain/{field}",
                code="wrong_domain",
            )


def confirmation_message(
    session: Session, dataset_id: uuid.UUID, nonce: int, *, terms_version: int | None = None
) -> RightsConfirmation:
    """The RightsConfirmation a co-owner signs for the dataset's terms (current version
    unless ``terms_version`` is given), with ``nonce``."""
    dataset = get_dataset(session, dataset_id)
    version = dataset.terms_version if terms_version is None else terms_version
    terms = terms_of(session, dataset_id, version)
    co_owners = co_owners_of(session, dataset_id, version)
    return RightsConfirmation(
        dataset_id=dataset_id_bytes32(dataset_id),
        content_root=bytes.fromhex(terms.content_root),
        terms_hash=bytes.fromhex(terms.terms_hash),
        allowed_uses=terms.allowed_uses,
        co_owners=tuple(c.address for c in co_owners),
        shares_bps=tuple(c.share_bps for c in co_owners),
        valid_from=int(terms.valid_from.timestamp()),
        valid_until=int(terms.valid_until.timestamp()) if terms.valid_until else 0,
        nonce=nonce,
    )


def revocation_message(dataset_id: uuid.UUID, nonce: int) -> RightsRevocation:
    """The RightsRevocation a co-owner signs to revoke ``dataset_id`` with ``nonce``."""
    return RightsRevocation(dataset_id=dataset_id_bytes32(dataset_id), nonce=nonce)


def signer_next_nonce(session: Session, signer: str) -> int:
    """The nonce ``signer``'s next confirmation or revocation must carry (0 at first)."""
    row = session.get(SignerNonce, normalize_address(signer, "signer"))
    return int(row.next_nonce) if row else 0


def _lock_nonce(session: Session, signer: str) -> SignerNonce:
    """The signer's nonce row, created at 0 if new, locked until the transaction ends."""
    session.execute(
        pg_insert(SignerNonce)
        .values(signer=signer, next_nonce=0)
        .on_conflict_do_nothing(index_elements=["signer"])
    )
    row = session.get(SignerNonce, signer, with_for_update=True, populate_existing=True)
    assert row is not None
    return row


# --- shared steps -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Submission:
    dataset: Dataset
    signer: str
    signature: bytes
    nonce: int
    domain: Eip712Domain
    at: datetime
    chain: ChainReader


def _prepare(
    session: Session,
    kind: str,
    dataset_id: uuid.UUID,
    signer: str,
    signature: bytes | str,
    nonce: int,
    domain: Eip712Domain | Mapping[str, Any] | None,
    expected_domain: Eip712Domain | None,
    chain: ChainReader | None,
    at: datetime | None,
) -> _Submission | RightsResult:
    """Input checks common to confirmations and revocations; a RightsResult for a replay."""
    dataset = get_dataset(session, dataset_id, for_update=True)
    checksummed = normalize_address(signer, "signer")
    raw = parse_signature(signature)
    if raw is None:
        raise ValidationFailed(
            "signature must be bytes or 0x-prefixed hex", field="signature", code="signature_format"
        )
    if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce <= NONCE_MAX:
        raise ValidationFailed(
            f"nonce must be a whole number from 0 to 2**256-1, got {nonce!r}",
            field="nonce",
            code="nonce_invalid",
        )
    expected = expected_domain or rights_domain()
    _check_domain(_domain_from(domain) if domain is not None else expected, expected)

    previous = session.execute(
        select(RightsSignature).where(
            RightsSignature.signer == checksummed,  # type: ignore[arg-type]
            RightsSignature.nonce == nonce,  # type: ignore[arg-type]
        )
    ).scalar_one_or_none()
    if previous is not None:
        if (
            previous.dataset_id == dataset.id
            and previous.kind == kind
            and bytes(previous.signature) == raw
        ):
            return RightsResult(previous, dataset, True, _missing(session, dataset))
        raise Conflict(
            f"nonce {nonce} of {checksummed} was already used by an accepted signature; "
            f"sign again with the signer's next nonce ({signer_next_nonce(session, checksummed)})",
            field="nonce",
            code="nonce_used",
        )

    _check_signable(session, dataset, checksummed)
    return _Submission(
        dataset=dataset,
        signer=checksummed,
        signature=raw,
        nonce=nonce,
        domain=expected,
        at=moment_of(at),
        chain=chain or Web3ChainReader.from_settings(),
    )


def _check_signable(session: Session, dataset: Dataset, signer: str) -> None:
    """Raise unless ``signer`` (checksummed) may sign for the dataset now."""
    if dataset.status == "rejected":
        raise StateError(
            f"dataset {dataset.id} was rejected in a dispute; it takes no signatures",
            field="dataset_id",
            code="dataset_rejected",
        )
    if dataset.revoked_at is not None:
        raise StateError(
            f"a co-owner revoked dataset {dataset.id} at {dataset.revoked_at.isoformat()}; "
            "its terms must be renewed (a new terms version) before anyone signs again",
            field="dataset_id",
            code="dataset_revoked",
        )
    if signer not in required_signers(session, dataset):
        raise Forbidden(
            f"{signer} is not a co-owner of dataset {dataset.id} (terms version "
            f"{dataset.terms_version}); only its co-owners can confirm or revoke",
            field="signer",
            code="not_co_owner",
        )


def _check_nonce(session: Session, sub: _Submission) -> SignerNonce:
    row = _lock_nonce(session, sub.signer)
    expected = int(row.next_nonce)
    if sub.nonce < expected:
        raise Conflict(
            f"nonce {sub.nonce} of {sub.signer} was already used; sign again with the "
            f"signer's next nonce ({expected})",
            field="nonce",
            code="nonce_used",
        )
    if sub.nonce > expected:
        raise ValidationFailed(
            f"nonce {sub.nonce} is ahead of {sub.signer}'s next nonce ({expected}); nonces are "
            f"used in order: sign again with nonce {expected}",
            field="nonce",
            code="nonce_mismatch",
        )
    return row


def _invalid_signature(sub: _Submission, digest: bytes, what: str) -> ValidationFailed:
    verdict = check_signature(sub.signer, digest, sub.signature, sub.chain)
    if verdict.method == "erc1271":
        message = (
            f"the contract wallet {sub.signer} did not accept the signature (ERC-1271) over "
            f"{what}; sign it again with the wallet"
        )
        return ValidationFailed(message, field="signature", code="signature_invalid")
    if verdict.problem is not None:
        code, detail = verdict.problem
        return ValidationFailed(f"signature: {detail}", field="signature", code=code)
    recovered = f"recovers to {verdict.recovered}" if verdict.recovered else "recovers no address"
    return ValidationFailed(
        f"the signature {recovered}, not {sub.signer}: it was made with another key or over "
        f"other data; {sub.signer} must sign {what}",
        field="signature",
        code="signature_invalid",
    )


def _store(
    session: Session, sub: _Submission, kind: str, digest: bytes, nonce_row: SignerNonce
) -> RightsSignature:
    record = RightsSignature(
        dataset_id=sub.dataset.id,
        terms_version=sub.dataset.terms_version,
        kind=kind,
        signer=sub.signer,
        nonce=sub.nonce,
        signature=sub.signature,
        digest="0x" + digest.hex(),
        domain_chain_id=sub.domain.chain_id,
        domain_verifying_contract=to_checksum_address(sub.domain.verifying_contract),
        accepted_at=sub.at,
    )
    session.add(record)
    nonce_row.next_nonce = sub.nonce + 1
    session.add(nonce_row)
    session.flush()
    return record


def _missing(session: Session, dataset: Dataset) -> tuple[str, ...]:
    signed = confirmed_signers(session, dataset)
    return tuple(a for a in required_signers(session, dataset) if a not in signed)


# --- confirmations and revocations ------------------------------------------------------


def submit_confirmation(
    session: Session,
    dataset_id: uuid.UUID,
    signer: str,
    signature: bytes | str,
    nonce: int,
    domain: Eip712Domain | Mapping[str, Any] | None = None,
    *,
    expected_domain: Eip712Domain | None = None,
    chain: ChainReader | None = None,
    at: datetime | None = None,
) -> RightsResult:
    """Accept ``signer``'s RightsConfirmation of the dataset's current terms.

    ``domain`` is the domain the signer signed in (default: the expected one);
    ``expected_domain`` is where signatures must be made (default :func:`rights_domain`);
    ``chain`` answers ERC-1271 questions (default: the configured node, asked only when
    ECDSA does not recover the signer); ``at`` is the time of acceptance (default now).
    When this was the last missing confirmation the dataset becomes confirmed (unless
    disputed) and a confirmation interval opens at ``at``.

    Refuses, with codes: ``wrong_domain``, ``not_co_owner`` (Forbidden),
    ``already_confirmed``, ``nonce_used``/``nonce_mismatch``, ``stale_terms`` (signed
    over an earlier terms version), ``signature_invalid``/``signature_length``/
    ``signature_v``/``signature_high_s``, ``dataset_revoked``/``dataset_rejected``.
    """
    prepared = _prepare(
        session, "confirmation", dataset_id, signer, signature, nonce, domain,
        expected_domain, chain, at,
    )  # fmt: skip
    if isinstance(prepared, RightsResult):
        return prepared
    sub = prepared
    dataset = sub.dataset
    if sub.signer in confirmed_signers(session, dataset):
        raise Conflict(
            f"{sub.signer} already confirmed terms version {dataset.terms_version} of dataset "
            f"{dataset.id}; nothing to do",
            field="signer",
            code="already_confirmed",
        )
    nonce_row = _check_nonce(session, sub)
    message = confirmation_message(session, dataset.id, sub.nonce)
    digest = typed_data_digest(confirmation_signable(sub.domain, message))
    if not check_signature(sub.signer, digest, sub.signature, sub.chain).valid:
        _raise_if_stale(session, sub)
        raise _invalid_signature(
            sub,
            digest,
            f"the current terms (version {dataset.terms_version}) with nonce {sub.nonce}",
        )
    record = _store(session, sub, "confirmation", digest, nonce_row)
    refresh_status(session, dataset, sub.at)
    return RightsResult(record, dataset, False, _missing(session, dataset))


def _raise_if_stale(session: Session, sub: _Submission) -> None:
    """Raise ``stale_terms`` if the signature is valid for an earlier terms version."""
    for version in range(sub.dataset.terms_version - 1, 0, -1):
        old = confirmation_message(session, sub.dataset.id, sub.nonce, terms_version=version)
        digest = typed_data_digest(confirmation_signable(sub.domain, old))
        if check_signature(sub.signer, digest, sub.signature, sub.chain).valid:
            raise Conflict(
                f"the signature confirms terms version {version}, but the terms of dataset "
                f"{sub.dataset.id} have changed since: the current version is "
                f"{sub.dataset.terms_version}; review the new terms and sign them",
                field="signature",
                code="stale_terms",
            )


def submit_revocation(
    session: Session,
    dataset_id: uuid.UUID,
    signer: str,
    signature: bytes | str,
    nonce: int,
    domain: Eip712Domain | Mapping[str, Any] | None = None,
    *,
    expected_domain: Eip712Domain | None = None,
    chain: ChainReader | None = None,
    at: datetime | None = None,
) -> RightsResult:
    """Accept a co-owner's RightsRevocation: from ``at`` on, usage of the dataset no longer
    counts (the confirmation interval ends with ``revoked``); usage before keeps counting.

    The signature consumes the signer's nonce. Arguments and refusals as in
    :func:`submit_confirmation`, plus ``dataset_revoked`` when it is already revoked.
    """
    prepared = _prepare(
        session, "revocation", dataset_id, signer, signature, nonce, domain,
        expected_domain, chain, at,
    )  # fmt: skip
    if isinstance(prepared, RightsResult):
        return prepared
    sub = prepared
    nonce_row = _check_nonce(session, sub)
    message = revocation_message(sub.dataset.id, sub.nonce)
    digest = typed_data_digest(revocation_signable(sub.domain, message))
    if not check_signature(sub.signer, digest, sub.signature, sub.chain).valid:
        raise _invalid_signature(
            sub, digest, f"the revocation of dataset {sub.dataset.id} with nonce {sub.nonce}"
        )
    record = _store(session, sub, "revocation", digest, nonce_row)
    close_interval(session, sub.dataset, sub.at, "revoked")
    sub.dataset.revoked_at = sub.at
    refresh_status(session, sub.dataset, sub.at)
    return RightsResult(record, sub.dataset, False, _missing(session, sub.dataset))


# --- what a wallet signs ----------------------------------------------------------------


@dataclass(frozen=True)
class TypedData:
    """The EIP-712 document a co-owner's wallet signs now, and its digest (0x hex)."""

    kind: str  # confirmation | revocation
    dataset_id: uuid.UUID
    terms_version: int
    signer: str
    nonce: int
    document: dict[str, Any]
    digest: str


def typed_data_to_sign(
    session: Session,
    dataset_id: uuid.UUID,
    signer: str,
    kind: str = "confirmation",
    *,
    domain: Eip712Domain | None = None,
) -> TypedData:
    """What ``signer`` must sign (``eth_signTypedData_v4``) to confirm the current terms
    or to revoke, with the signer's next nonce, in ``domain`` (default :func:`rights_domain`).

    Refuses what submitting would refuse: ``not_co_owner`` (Forbidden), ``dataset_revoked``,
    ``dataset_rejected``, and for a confirmation ``already_confirmed``; ``kind_invalid``
    for a kind other than ``confirmation`` or ``revocation``.
    """
    if kind not in ("confirmation", "revocation"):
        raise ValidationFailed(
            f"kind {kind!r} must be 'confirmation' or 'revocation'",
            field="kind",
            code="kind_invalid",
        )
    dataset = get_dataset(session, dataset_id)
    checksummed = normalize_address(signer, "signer")
    _check_signable(session, dataset, checksummed)
    if kind == "confirmation" and checksummed in confirmed_signers(session, dataset):
        raise Conflict(
            f"{checksummed} already confirmed terms version {dataset.terms_version} of dataset "
            f"{dataset.id}; nothing to sign",
            field="signer",
            code="already_confirmed",
        )
    nonce = signer_next_nonce(session, checksummed)
    expected = domain or rights_domain()
    if kind == "confirmation":
        confirmation = confirmation_message(session, dataset.id, nonce)
        signable = confirmation_signable(expected, confirmation)
        document = typed_data_document(expected, "RightsConfirmation", confirmation.message())
    else:
        revocation = revocation_message(dataset.id, nonce)
        signable = revocation_signable(expected, revocation)
        document = typed_data_document(expected, "RightsRevocation", revocation.message())
    return TypedData(
        kind=kind,
        dataset_id=dataset.id,
        terms_version=dataset.terms_version,
        signer=checksummed,
        nonce=nonce,
        document=document,
        digest="0x" + typed_data_digest(signable).hex(),
    )


# --- disputes -------------------------------------------------------------------------


def get_dispute(session: Session, dispute_id: uuid.UUID) -> Dispute:
    """The dispute, or NotFound (``dispute_not_found``)."""
    dispute = session.get(Dispute, dispute_id)
    if dispute is None:
        raise NotFound(
            f"dispute {dispute_id} does not exist", field="dispute_id", code="dispute_not_found"
        )
    return dispute


def resolve_dispute(
    session: Session,
    dispute_id: uuid.UUID,
    resolution: str,
    note: str,
    resolved_by: uuid.UUID,
    *,
    at: datetime | None = None,
) -> Dispute:
    """Finance decides a dispute over a shared content root.

    ``upheld``: the disputed dataset's claim stands; once it has no other open dispute it
    is ``confirmed`` if every co-owner signed (the interval opens at ``at``), else
    ``pending_signatures``. ``rejected``: the dataset is ``rejected`` for good and its
    other open disputes close with it. ``resolved_by`` must be a finance account
    (Forbidden ``finance_only``). Resolving again with the same resolution returns the
    dispute unchanged; with another one raises StateError ``dispute_resolved``.
    """
    if resolution not in RESOLUTIONS:
        raise ValidationFailed(
            f"resolution {resolution!r} must be 'upheld' (the claim stands) or 'rejected'",
            field="resolution",
            code="resolution_invalid",
        )
    if (
        not isinstance(note, str)
        or not note.strip()
        or len(note.strip()) > NOTE_MAX
        or "\x00" in note
    ):
        raise ValidationFailed(
            f"note must say why, in 1 to {NOTE_MAX} characters (no NUL); it is kept in the "
            "audit trail",
            field="note",
            code="note_required",
        )
    account = get_account(session, resolved_by)
    if account.role != "finance" or account.disabled_at is not None:
        raise Forbidden(
            f"account {resolved_by} is {account.role}; only an active finance account "
            "resolves disputes",
            field="resolved_by",
            code="finance_only",
        )
    dataset_id = get_dispute(session, dispute_id).dataset_id
    dataset = get_dataset(session, dataset_id, for_update=True)
    dispute = session.get(Dispute, dispute_id, populate_existing=True)
    assert dispute is not None
    if dispute.status == "resolved":
        if dispute.resolution == resolution:
            return dispute
        raise StateError(
            f"dispute {dispute_id} was already resolved as {dispute.resolution}",
            field="dispute_id",
            code="dispute_resolved",
        )
    moment = moment_of(at)
    to_close = [dispute]
    if resolution == "rejected":
        to_close += [d for d in open_disputes(session, dataset.id) if d.id != dispute.id]
    for item in to_close:
        item.status = "resolved"
        item.resolution = resolution
        item.resolution_note = (
            note.strip() if item is dispute else f"closed with dispute {dispute.id}: {note.strip()}"
        )
        item.resolved_at = moment
        item.resolved_by = str(resolved_by)
        session.add(item)
    session.flush()
    if resolution == "rejected":
        close_interval(session, dataset, moment, "rejected")
        dataset.status = "rejected"
    refresh_status(session, dataset, moment)
    return dispute
