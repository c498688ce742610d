"""Rights confirmations and revocations by EIP-712 signature, and dispute resolution."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account as EthAccount
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlmodel import Session
from web3 import Web3

from ledger.datasets.models import Dataset
from ledger.datasets.service import CoOwnerShare, open_disputes, update_dataset
from ledger.errors import Conflict, DomainError, Forbidden, NotFound, StateError, ValidationFailed
from ledger.rights.eip712 import Eip712Domain, confirmation_signable
from ledger.rights.models import RightsSignature
from ledger.rights.service import (
    confirmation_message,
    resolve_dispute,
    rights_domain,
    signer_next_nonce,
    submit_confirmation,
    submit_revocation,
)
from ledger.rights.signatures import (
    SECP256K1_N,
    ChainUnavailable,
    NoChain,
    Web3ChainReader,
    typed_data_digest,
)
from ledger.settings import Settings
from tests.ledger.factories import run_concurrently
from tests.ledger.factories_rights import (
    KeyedOwner,
    confirm_all,
    confirmation_intervals,
    confirmation_signature,
    make_account,
    make_dataset,
    make_owner,
    random_files,
    revocation_signature,
)

T0 = datetime(2025, 6, 1, tzinfo=UTC)
NO_CHAIN = NoChain()


def _confirm(
    session: Session, dataset: Dataset, owner: KeyedOwner, at: datetime = T0, **kwargs: object
):
    signature, nonce = confirmation_signature(session, dataset.id, owner.key)
    return submit_confirmation(
        session, dataset.id, owner.address, signature, nonce, chain=NO_CHAIN, at=at, **kwargs
    )


def _pending(
    session: Session, owners: int = 2, **kwargs: object
) -> tuple[Dataset, list[KeyedOwner]]:
    keyed = [make_owner(session) for _ in range(owners)]
    return make_dataset(session, owners=keyed, confirmed_at=T0, **kwargs), keyed


def _malleate(signature: bytes) -> bytes:
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])


# --- confirmation -----------------------------------------------------------------------


def test_dataset_is_confirmed_only_when_every_co_owner_signed(db_session: Session) -> None:
    dataset, (a, b) = _pending(db_session, allowed_uses=("rag",))
    first = _confirm(db_session, dataset, a, at=T0)
    assert (first.replayed, dataset.status) == (False, "pending_signatures")
    assert first.missing_signers == (b.address,)
    assert confirmation_intervals(db_session, dataset.id) == []

    second = _confirm(db_session, dataset, b, at=T0 + timedelta(minutes=5))
    assert (dataset.status, second.missing_signers) == ("confirmed", ())
    assert dataset.confirmed_at == T0 + timedelta(minutes=5)
    [interval] = confirmation_intervals(db_session, dataset.id)
    assert (interval.terms_version, interval.allowed_uses, interval.confirmed_from) == (
        1,
        2,
        T0 + timedelta(minutes=5),
    )
    assert interval.confirmed_until is None
    stored = second.signature
    assert (stored.kind, stored.signer, int(stored.nonce), stored.terms_version) == (
        "confirmation",
        b.address,
        0,
        1,
    )
    assert int(stored.domain_chain_id) == rights_domain().chain_id
    assert signer_next_nonce(db_session, b.address) == 1


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), owners=st.integers(1, 4))
def test_confirmation_needs_all_signers_in_any_order(
    db_session: Session, data: st.DataObject, owners: int
) -> None:
    dataset, keyed = _pending(db_session, owners)
    order = data.draw(st.permutations(keyed))
    signers = order[: data.draw(st.integers(0, owners))]
    for i, owner in enumerate(signers):
        _confirm(db_session, dataset, owner, at=T0 + timedelta(seconds=i))
    complete = len(signers) == owners
    assert dataset.status == ("confirmed" if complete else "pending_signatures")
    assert len(confirmation_intervals(db_session, dataset.id)) == (1 if complete else 0)


def test_a_signature_by_another_key_is_refused(db_session: Session) -> None:
    dataset, (a, _) = _pending(db_session)
    intruder = EthAccount.create()
    signature, nonce = confirmation_signature(db_session, dataset.id, intruder, nonce=0)
    with pytest.raises(ValidationFailed) as caught:
        submit_confirmation(db_session, dataset.id, a.address, signature, nonce, chain=NO_CHAIN)
    assert caught.value.code == "signature_invalid"
    assert f"recovers to {intruder.address}, not {a.address}" in caught.value.message
    assert signer_next_nonce(db_session, a.address) == 0  # nothing consumed


def test_non_co_owners_cannot_confirm(db_session: Session) -> None:
    dataset, _ = _pending(db_session)
    stranger = make_owner(db_session)
    signature, nonce = confirmation_signature(db_session, dataset.id, stranger.key)
    with pytest.raises(Forbidden) as caught:
        submit_confirmation(
            db_session, dataset.id, stranger.address, signature, nonce, chain=NO_CHAIN
        )
    assert caught.value.code == "not_co_owner"


def test_a_signature_over_earlier_terms_is_stale(db_session: Session) -> None:
    dataset, (a, _b) = _pending(db_session)
    old_signature, nonce = confirmation_signature(db_session, dataset.id, a.key)
    update_dataset(db_session, dataset.id, allowed_uses=["train"], at=T0)
    with pytest.raises(Conflict) as caught:
        submit_confirmation(db_session, dataset.id, a.address, old_signature, nonce, chain=NO_CHAIN)
    assert caught.value.code == "stale_terms"
    assert "confirms terms version 1" in caught.value.message
    assert "current version is 2" in caught.value.message


def test_signatures_before_a_terms_change_no_longer_count(db_session: Session) -> None:
    dataset, (a, b) = _pending(db_session)
    _confirm(db_session, dataset, a, at=T0)
    update_dataset(db_session, dataset.id, valid_until=T0 + timedelta(days=90), at=T0)
    _confirm(db_session, dataset, b, at=T0)
    assert dataset.status == "pending_signatures"  # a signed version 1, not version 2
    result = _confirm(db_session, dataset, a, at=T0)
    assert dataset.status == "confirmed" and result.missing_signers == ()


def test_replaying_an_accepted_signature_changes_nothing(db_session: Session) -> None:
    dataset, (a, _b) = _pending(db_session)
    signature, nonce = confirmation_signature(db_session, dataset.id, a.key)
    first = submit_confirmation(db_session, dataset.id, a.address, signature, nonce, chain=NO_CHAIN)
    again = submit_confirmation(
        db_session, dataset.id, a.address, "0x" + signature.hex(), nonce, chain=NO_CHAIN
    )
    assert again.replayed and again.signature.id == first.signature.id
    assert signer_next_nonce(db_session, a.address) == nonce + 1
    count = db_session.execute(
        select(RightsSignature).where(RightsSignature.signer == a.address)
    ).all()
    assert len(count) == 1


def test_old_and_future_nonces_are_refused(db_session: Session) -> None:
    dataset, (a, _b) = _pending(db_session)
    other, _ = _pending(db_session)
    # a is also a co-owner of ``other``; its nonce 0 is used there first.
    update_dataset(
        db_session,
        other.id,
        co_owners=[CoOwnerShare(a.address, 10_000)],
        at=T0,
    )
    _confirm(db_session, other, a)
    reused, _ = confirmation_signature(db_session, dataset.id, a.key, nonce=0)
    with pytest.raises(Conflict) as caught:
        submit_confirmation(db_session, dataset.id, a.address, reused, 0, chain=NO_CHAIN)
    assert caught.value.code == "nonce_used"
    assert "next nonce (1)" in caught.value.message
    ahead, _ = confirmation_signature(db_session, dataset.id, a.key, nonce=5)
    with pytest.raises(ValidationFailed) as caught_v:
        submit_confirmation(db_session, dataset.id, a.address, ahead, 5, chain=NO_CHAIN)
    assert caught_v.value.code == "nonce_mismatch"
    assert "sign again with nonce 1" in caught_v.value.message


def test_a_second_confirmation_of_the_same_terms_is_refused(db_session: Session) -> None:
    dataset, (a, _) = _pending(db_session)
    _confirm(db_session, dataset, a)
    with pytest.raises(Conflict) as caught:
        _confirm(db_session, dataset, a)
    assert caught.value.code == "already_confirmed"


def test_signatures_in_another_domain_are_refused(db_session: Session) -> None:
    dataset, (a, _) = _pending(db_session)
    expected = rights_domain()
    other_chain = Eip712Domain(expected.name, expected.version, 1, expected.verifying_contract)
    signature, nonce = confirmation_signature(db_session, dataset.id, a.key, domain=other_chain)
    with pytest.raises(ValidationFailed) as caught:
        submit_confirmation(
            db_session, dataset.id, a.address, signature, nonce, other_chain, chain=NO_CHAIN
        )
    assert caught.value.code == "wrong_domain"
    assert caught.value.errors[0].field == "domain/chainId"
    assert "domain has chainId 1, but" in caught.value.message
    # Without a stated domain the signature simply does not verify in ours.
    with pytest.raises(ValidationFailed) as caught:
        submit_confirmation(db_session, dataset.id, a.address, signature, nonce, chain=NO_CHAIN)
    assert caught.value.code == "signature_invalid"

    registry = "0x" + "ab" * 20
    elsewhere = Eip712Domain(expected.name, expected.version, expected.chain_id, registry)
    with pytest.raises(ValidationFailed) as caught:
        submit_confirmation(
            db_session, dataset.id, a.address, signature, nonce, elsewhere.as_dict(), chain=NO_CHAIN
        )
    assert caught.value.errors[0].field == "domain/verifyingContract"


def test_the_registry_domain_can_be_passed_in(db_session: Session) -> None:
    dataset, (a, b) = _pending(db_session)
    registry = rights_domain(chain_id=8453, verifying_contract="0x" + "12" * 20)
    for owner in (a, b):
        signature, nonce = confirmation_signature(
            db_session, dataset.id, owner.key, domain=registry
        )
        submit_confirmation(
            db_session,
            dataset.id,
            owner.address,
            signature,
            nonce,
            registry,
            expected_domain=registry,
            chain=NO_CHAIN,
            at=T0,
        )
    assert dataset.status == "confirmed"


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (_malleate, "signature_high_s"),
        (lambda sig: sig[:64] + bytes([sig[64] - 27]), "signature_v"),
        (lambda sig: sig[:64], "signature_length"),
    ],
    ids=["high-s", "v-0-1", "short"],
)
def test_non_canonical_signatures_are_refused(db_session: Session, mangle, code: str) -> None:
    dataset, (a, _) = _pending(db_session)
    signature, nonce = confirmation_signature(db_session, dataset.id, a.key)
    with pytest.raises(ValidationFailed) as caught:
        submit_confirmation(
            db_session, dataset.id, a.address, mangle(signature), nonce, chain=NO_CHAIN
        )
    assert caught.value.code == code
    # The same signature as the wallet produced it is fine.
    submit_confirmation(db_session, dataset.id, a.address, signature, nonce, chain=NO_CHAIN)


def test_malformed_inputs(db_session: Session) -> None:
    dataset, (a, _) = _pending(db_session)
    with pytest.raises(ValidationFailed) as caught:
        submit_confirmation(db_session, dataset.id, a.address, "0xzz", 0, chain=NO_CHAIN)
    assert caught.value.code == "signature_format"
    with pytest.raises(ValidationFailed) as caught:
        submit_confirmation(db_session, dataset.id, a.address, b"", -1, chain=NO_CHAIN)
    assert caught.value.code == "nonce_invalid"
    with pytest.raises(ValidationFailed) as caught:
        submit_confirmation(db_session, dataset.id, "0x1234", b"", 0, chain=NO_CHAIN)
    assert caught.value.code == "address_invalid" and caught.value.errors[0].field == "signer"
    with pytest.raises(NotFound) as caught_nf:
        submit_confirmation(db_session, uuid.uuid4(), a.address, b"", 0, chain=NO_CHAIN)
    assert caught_nf.value.code == "dataset_not_found"


def test_changes_must_come_in_time_order(db_session: Session) -> None:
    dataset, (a, b) = _pending(db_session)
    confirm_all(db_session, dataset, [a, b], at=T0)
    signature, nonce = revocation_signature(db_session, dataset.id, a.key)
    with pytest.raises(StateError) as caught:
        submit_revocation(
            db_session, dataset.id, a.address, signature, nonce, chain=NO_CHAIN,
            at=T0 - timedelta(days=1),
        )  # fmt: skip
    assert caught.value.code == "time_before_confirmation"


# --- co-owners leaving ------------------------------------------------------------------


def test_dropping_a_co_owner_needs_their_signature(db_session: Session) -> None:
    dataset, (a, b) = _pending(db_session)
    confirm_all(db_session, dataset, [a, b], at=T0)
    update_dataset(db_session, dataset.id, co_owners=[CoOwnerShare(a.address, 10_000)], at=T0)
    result = _confirm(db_session, dataset, a)
    assert dataset.status == "pending_signatures"
    assert result.missing_signers == (b.address,)
    _confirm(db_session, dataset, b)  # b consents to the new terms without b
    assert dataset.status == "confirmed"


# --- revocation -------------------------------------------------------------------------


def test_revocation_ends_counting_from_that_moment(db_session: Session) -> None:
    dataset, (a, b) = _pending(db_session, allowed_uses=("train",))
    confirm_all(db_session, dataset, [a, b], at=T0)
    revoked_at = T0 + timedelta(days=10)
    signature, nonce = revocation_signature(db_session, dataset.id, b.key)
    result = submit_revocation(
        db_session, dataset.id, b.address, signature, nonce, chain=NO_CHAIN, at=revoked_at
    )
    assert (dataset.status, dataset.revoked_at) == ("revoked", revoked_at)
    assert result.signature.kind == "revocation"
    assert signer_next_nonce(db_session, b.address) == nonce + 1
    # Usage from T0 up to the revocation still counts; after it, nothing does.
    [interval] = confirmation_intervals(db_session, dataset.id)
    assert (interval.confirmed_from, interval.confirmed_until, interval.ended_reason) == (
        T0,
        revoked_at,
        "revoked",
    )
    with pytest.raises(StateError) as caught:
        _confirm(db_session, dataset, a)
    assert caught.value.code == "dataset_revoked"
    again, nonce = revocation_signature(db_session, dataset.id, a.key)
    with pytest.raises(StateError) as caught:
        submit_revocation(db_session, dataset.id, a.address, again, nonce, chain=NO_CHAIN)
    assert caught.value.code == "dataset_revoked"


def test_renewed_terms_can_be_confirmed_after_a_revocation(db_session: Session) -> None:
    dataset, (a, b) = _pending(db_session)
    confirm_all(db_session, dataset, [a, b], at=T0)
    signature, nonce = revocation_signature(db_session, dataset.id, a.key)
    submit_revocation(db_session, dataset.id, a.address, signature, nonce, chain=NO_CHAIN, at=T0)
    update_dataset(db_session, dataset.id, renew=True, at=T0 + timedelta(days=1))
    assert (dataset.terms_version, dataset.status, dataset.revoked_at) == (
        2,
        "pending_signatures",
        None,
    )
    confirm_all(db_session, dataset, [a, b], at=T0 + timedelta(days=2))
    assert dataset.status == "confirmed"
    assert [
        (i.terms_version, i.ended_reason) for i in confirmation_intervals(db_session, dataset.id)
    ] == [
        (1, "revoked"),
        (2, None),
    ]


def test_revocation_needs_a_co_owners_valid_signature(db_session: Session) -> None:
    dataset, (a, _) = _pending(db_session)
    stranger = make_owner(db_session)
    signature, nonce = revocation_signature(db_session, dataset.id, stranger.key)
    with pytest.raises(Forbidden) as caught:
        submit_revocation(
            db_session, dataset.id, stranger.address, signature, nonce, chain=NO_CHAIN
        )
    assert caught.value.code == "not_co_owner"
    forged, nonce = revocation_signature(db_session, dataset.id, stranger.key, nonce=0)
    with pytest.raises(ValidationFailed) as caught_v:
        submit_revocation(db_session, dataset.id, a.address, forged, nonce, chain=NO_CHAIN)
    assert caught_v.value.code == "signature_invalid"
    assert dataset.revoked_at is None


# --- disputes ---------------------------------------------------------------------------


def _disputed(session: Session) -> tuple[Dataset, Dataset, KeyedOwner]:
    files = random_files()
    first = make_dataset(session, files=files, confirm=True, confirmed_at=T0)
    claimant = make_owner(session)
    second = make_dataset(session, owners=[claimant], files=files, confirm=True, confirmed_at=T0)
    assert second.status == "disputed"
    return first, second, claimant


def test_an_upheld_claim_counts_once_signed(db_session: Session) -> None:
    _, second, _ = _disputed(db_session)
    [dispute] = open_disputes(db_session, second.id)
    finance = make_account(db_session, "finance")
    decided_at = T0 + timedelta(days=3)
    resolve_dispute(
        db_session, dispute.id, "upheld", "licence chain checked", finance.id, at=decided_at
    )
    assert (dispute.status, dispute.resolution, dispute.resolved_by) == (
        "resolved",
        "upheld",
        str(finance.id),
    )
    # Its co-owner signed while disputed; it counts from the decision, not from the signature.
    assert (second.status, second.confirmed_at) == ("confirmed", decided_at)
    [interval] = confirmation_intervals(db_session, second.id)
    assert interval.confirmed_from == decided_at
    # Deciding the same way again changes nothing; the other way is refused.
    assert (
        resolve_dispute(db_session, dispute.id, "upheld", "again", finance.id).resolved_at
        == decided_at
    )
    with pytest.raises(StateError) as caught:
        resolve_dispute(db_session, dispute.id, "rejected", "changed mind", finance.id)
    assert caught.value.code == "dispute_resolved"
    # Finance's decision stands: a later terms change does not reopen the same dispute.
    update_dataset(db_session, second.id, allowed_uses=["rag"], at=decided_at)
    assert second.status == "pending_signatures"


def test_an_upheld_claim_without_signatures_waits_for_them(db_session: Session) -> None:
    files = random_files()
    make_dataset(db_session, files=files)
    claimant = make_owner(db_session)
    second = make_dataset(db_session, owners=[claimant], files=files)
    [dispute] = open_disputes(db_session, second.id)
    resolve_dispute(
        db_session, dispute.id, "upheld", "ok", make_account(db_session, "finance").id, at=T0
    )
    assert second.status == "pending_signatures"
    _confirm(db_session, second, claimant, at=T0)
    assert second.status == "confirmed"


def test_a_rejected_claim_is_final(db_session: Session) -> None:
    first, second, claimant = _disputed(db_session)
    [dispute] = open_disputes(db_session, second.id)
    finance = make_account(db_session, "finance")
    resolve_dispute(db_session, dispute.id, "rejected", "no proof of rights", finance.id, at=T0)
    assert second.status == "rejected"
    assert confirmation_intervals(db_session, second.id) == []
    with pytest.raises(StateError) as caught:
        _confirm(db_session, second, claimant)
    assert caught.value.code == "dataset_rejected"
    assert first.status == "confirmed"


def test_rejection_closes_every_open_dispute_of_the_dataset(db_session: Session) -> None:
    files = random_files()
    make_dataset(db_session, files=files)
    make_dataset(db_session, files=files, owners=[make_owner(db_session), make_owner(db_session)])
    third = make_dataset(db_session, files=files)
    disputes = open_disputes(db_session, third.id)
    assert len(disputes) == 2
    finance = make_account(db_session, "finance")
    resolve_dispute(db_session, disputes[0].id, "rejected", "duplicate upload", finance.id, at=T0)
    assert open_disputes(db_session, third.id) == []
    assert disputes[1].resolution == "rejected"
    assert disputes[1].resolution_note == f"closed with dispute {disputes[0].id}: duplicate upload"


def test_only_finance_resolves_with_a_reason(db_session: Session) -> None:
    _, second, _ = _disputed(db_session)
    [dispute] = open_disputes(db_session, second.id)
    owner_account = make_account(db_session, "owner")
    with pytest.raises(Forbidden) as caught:
        resolve_dispute(db_session, dispute.id, "upheld", "mine", owner_account.id)
    assert caught.value.code == "finance_only"
    finance = make_account(db_session, "finance")
    with pytest.raises(ValidationFailed) as caught_v:
        resolve_dispute(db_session, dispute.id, "maybe", "x", finance.id)
    assert caught_v.value.code == "resolution_invalid"
    with pytest.raises(ValidationFailed) as caught_v:
        resolve_dispute(db_session, dispute.id, "upheld", "  ", finance.id)
    assert caught_v.value.code == "note_required"
    with pytest.raises(NotFound) as caught_nf:
        resolve_dispute(db_session, uuid.uuid4(), "upheld", "x", finance.id)
    assert caught_nf.value.code == "dispute_not_found"


# --- contract wallets (ERC-1271) on anvil -----------------------------------------------


@pytest.fixture(scope="module")
def wallet_factory(w3: Web3, anvil_accounts: list[LocalAccount]):
    from contracts.compiler import get_contract

    compiled = get_contract("ERC1271WalletMock")
    deployer = anvil_accounts[7]

    def deploy(owner: str) -> str:
        factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
        tx = factory.constructor(owner).build_transaction(
            {"from": deployer.address, "nonce": w3.eth.get_transaction_count(deployer.address)}
        )
        signed = deployer.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(signed.raw_transaction)
        )
        assert receipt["status"] == 1
        return str(receipt["contractAddress"])

    return deploy


def test_a_contract_wallet_confirms_through_erc1271(
    db_session: Session, w3: Web3, wallet_factory
) -> None:
    holder = EthAccount.create()  # the key behind the wallet
    wallet = wallet_factory(holder.address)
    person = make_owner(db_session)
    dataset = make_dataset(db_session, owners=[person], confirmed_at=T0)
    update_dataset(
        db_session,
        dataset.id,
        co_owners=[CoOwnerShare(person.address, 5_000), CoOwnerShare(wallet, 5_000)],
        at=T0,
    )
    chain = Web3ChainReader(w3)
    _confirm(db_session, dataset, person)

    message = confirmation_message(db_session, dataset.id, 0)
    digest = typed_data_digest(confirmation_signable(rights_domain(), message))
    stranger = EthAccount.create()
    bad = bytes(stranger.unsafe_sign_hash(digest).signature)
    with pytest.raises(ValidationFailed) as caught:
        submit_confirmation(db_session, dataset.id, wallet, bad, 0, chain=chain, at=T0)
    assert caught.value.code == "signature_invalid"
    assert "contract wallet" in caught.value.message and "ERC-1271" in caught.value.message

    good = bytes(holder.unsafe_sign_hash(digest).signature)
    result = submit_confirmation(db_session, dataset.id, wallet, good, 0, chain=chain, at=T0)
    assert result.signature.signer == wallet
    assert dataset.status == "confirmed"


def test_an_unreachable_chain_is_reported(settings: Settings) -> None:
    reader = Web3ChainReader.from_settings(
        settings.model_copy(update={"eth_rpc_url": "http://127.0.0.1:9"})
    )
    with pytest.raises(ChainUnavailable) as caught:
        reader.has_code("0x" + "11" * 20)
    assert caught.value.code == "chain_unavailable" and caught.value.http_status == 503


# --- races (separate, committing connections) ----------------------------------------


def _submit_in_own_session(
    engine: Engine, dataset_id: uuid.UUID, owner: KeyedOwner, signature: bytes, nonce: int
) -> Callable[[], str]:
    def work() -> str:
        with Session(engine, expire_on_commit=False) as session:
            try:
                submit_confirmation(
                    session, dataset_id, owner.address, signature, nonce, chain=NO_CHAIN
                )
                session.commit()
                return "accepted"
            except DomainError as error:
                session.rollback()
                return error.code

    return work


def test_the_last_two_signatures_at_once_confirm_exactly_once(db_engine: Engine) -> None:
    with Session(db_engine, expire_on_commit=False) as session:
        dataset, (a, b) = _pending(session)
        signed = [confirmation_signature(session, dataset.id, o.key) for o in (a, b)]
        session.commit()
    results = run_concurrently(
        [
            _submit_in_own_session(db_engine, dataset.id, owner, sig, nonce)
            for owner, (sig, nonce) in zip((a, b), signed, strict=True)
        ]
    )
    assert results == ["accepted", "accepted"]
    with Session(db_engine) as session:
        assert session.get(Dataset, dataset.id).status == "confirmed"  # type: ignore[union-attr]
        [interval] = confirmation_intervals(session, dataset.id)
        assert interval.confirmed_until is None


def test_one_nonce_is_spent_once_across_datasets(db_engine: Engine) -> None:
    with Session(db_engine, expire_on_commit=False) as session:
        owner = make_owner(session)
        first = make_dataset(session, owners=[owner])
        second = make_dataset(session, owners=[owner])
        signed = [
            confirmation_signature(session, d.id, owner.key, nonce=0) for d in (first, second)
        ]
        session.commit()
    results = run_concurrently(
        [
            _submit_in_own_session(db_engine, d.id, owner, sig, 0)
            for d, (sig, _) in zip((first, second), signed, strict=True)
        ]
    )
    assert sorted(results) == ["accepted", "nonce_used"]
    with Session(db_engine) as session:
        assert signer_next_nonce(session, owner.address) == 1


# --- the typed data a wallet signs ------------------------------------------------------


def test_the_typed_data_document_signed_by_a_wallet_is_accepted(db_session: Session) -> None:
    from ledger.rights.service import typed_data_to_sign

    alice, bob = make_owner(db_session), make_owner(db_session)
    dataset = make_dataset(db_session, owners=[alice, bob])
    typed = typed_data_to_sign(db_session, dataset.id, bob.address.lower())
    assert typed.signer == bob.address
    assert typed.document["primaryType"] == "RightsConfirmation"
    assert typed.document["types"]["EIP712Domain"][3] == {
        "name": "verifyingContract",
        "type": "address",
    }
    assert typed.document["message"]["datasetId"] == "0x" + dataset.id.int.to_bytes(32).hex()
    assert typed.document["message"]["nonce"] == signer_next_nonce(db_session, bob.address)
    signed = bob.key.sign_typed_data(full_message=typed.document)
    assert "0x" + bytes(signed.message_hash).hex() == typed.digest
    result = submit_confirmation(
        db_session, dataset.id, bob.address, bytes(signed.signature), typed.nonce, chain=NoChain()
    )
    assert result.missing_signers == (alice.address,)
    with pytest.raises(Conflict) as caught:
        typed_data_to_sign(db_session, dataset.id, bob.address)
    assert caught.value.code == "already_confirmed"

    revocation = typed_data_to_sign(db_session, dataset.id, alice.address, "revocation")
    assert revocation.document["message"] == {
        "datasetId": typed.document["message"]["datasetId"],
        "nonce": signer_next_nonce(db_session, alice.address),
    }
    signed = alice.key.sign_typed_data(full_message=revocation.document)
    revoked = submit_revocation(
        db_session, dataset.id, alice.address, bytes(signed.signature), revocation.nonce,
        chain=NoChain(),
    )  # fmt: skip
    assert revoked.dataset.status == "revoked"


def test_typed_data_is_refused_to_whoever_may_not_sign(db_session: Session) -> None:
    from ledger.rights.service import typed_data_to_sign

    alice = make_owner(db_session)
    dataset = make_dataset(db_session, owners=[alice])
    with pytest.raises(Forbidden) as caught:
        typed_data_to_sign(db_session, dataset.id, make_owner(db_session).address)
    assert caught.value.code == "not_co_owner"
    with pytest.raises(ValidationFailed) as invalid:
        typed_data_to_sign(db_session, dataset.id, alice.address, "approve")
    assert invalid.value.code == "kind_invalid"
