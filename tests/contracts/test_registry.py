"""DatasetRegistry on a real anvil: co-owner signatures (EOA and ERC-1271), nonces, revocation."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message
from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from contracts.client import (
    CoOwnerSignature,
    DatasetRegistration,
    UsefirstChain,
    sign_confirmation,
    sign_revocation,
)
from contracts.errors import ContractRevert
from ledger.rights.eip712 import (
    CONFIRMATION_TYPE,
    REVOCATION_TYPE,
    RightsRevocation,
    confirmation_signable,
    revocation_signable,
    typehash,
)
from tests.contracts.conftest import deploy_contract


def registration_for(
    owners: list[str], shares_bps: list[int] | None = None, **changes: object
) -> DatasetRegistration:
    """A registration of a fresh dataset id with co-owners sorted as the contract requires."""
    shares_bps = shares_bps or _even_shares(len(owners))
    pairs = sorted(zip(owners, shares_bps, strict=True), key=lambda p: int(p[0], 16))
    registration = DatasetRegistration(
        dataset_id=os.urandom(16).rjust(32, b"\0"),
        content_root=os.urandom(32),
        terms_hash=os.urandom(32),
        allowed_uses=3,
        co_owners=tuple(owner for owner, _ in pairs),
        shares_bps=tuple(share for _, share in pairs),
        valid_from=int(time.time()) - 3_600,
        valid_until=0,
    )
    return replace(registration, **changes)  # type: ignore[arg-type]


def _even_shares(n: int) -> list[int]:
    shares = [10_000 // n] * n
    shares[0] += 10_000 - sum(shares)
    return shares


def sign_all(
    chain: UsefirstChain, registration: DatasetRegistration, signers: list[LocalAccount]
) -> list[CoOwnerSignature]:
    domain = chain.registry_domain()
    return [
        sign_confirmation(s, domain, registration, chain.rights_nonce(s.address)) for s in signers
    ]


def revert_name(excinfo: pytest.ExceptionInfo[ContractRevert]) -> str:
    return excinfo.value.error_name


@pytest.fixture
def owners() -> list[LocalAccount]:
    """Three fresh EOAs; registration and revocation are submitted by others, so no ETH needed."""
    return sorted((Account.create() for _ in range(3)), key=lambda a: int(a.address, 16))


def test_the_typehashes_equal_the_shared_eip712_definition(chain: UsefirstChain) -> None:
    assert chain.registry.functions.CONFIRMATION_TYPEHASH().call() == typehash(CONFIRMATION_TYPE)
    assert chain.registry.functions.REVOCATION_TYPEHASH().call() == typehash(REVOCATION_TYPE)


def test_the_contract_digest_equals_the_ledgers_typed_data(
    chain: UsefirstChain, owners: list[LocalAccount]
) -> None:
    registration = registration_for([o.address for o in owners])
    domain = chain.registry_domain()
    signable = confirmation_signable(domain, registration.confirmation(7))
    expected = _hash_eip191_message(signable)  # the EIP-712 digest
    assert chain.registry.functions.hashConfirmation(registration.as_tuple(), 7).call() == expected
    revocation = revocation_signable(domain, RightsRevocation(registration.dataset_id, 3))
    assert chain.registry.functions.hashRevocation(
        registration.dataset_id, 3
    ).call() == _hash_eip191_message(revocation)


def test_co_owners_register_a_dataset_and_anyone_can_read_it(
    chain: UsefirstChain, owners: list[LocalAccount]
) -> None:
    a, b = owners[:2]
    registration = registration_for([a.address, b.address], [6_000, 4_000])
    nonces_before = [chain.rights_nonce(o.address) for o in (a, b)]
    result = chain.register_dataset(registration, sign_all(chain, registration, [b, a]))
    record = chain.get_dataset(registration.dataset_id)
    assert record is not None
    assert record.version == 1
    assert record.co_owners == registration.co_owners
    assert record.shares_bps == registration.shares_bps
    assert (record.content_root, record.terms_hash) == (
        registration.content_root,
        registration.terms_hash,
    )
    assert not record.revoked and chain.is_dataset_active(registration.dataset_id)
    assert [chain.rights_nonce(o.address) for o in (a, b)] == [n + 1 for n in nonces_before]
    events = chain.registry.events.DatasetRegistered().process_receipt(
        result.receipt, errors=DISCARD
    )
    assert [(bytes(e["args"]["datasetId"]), e["args"]["version"]) for e in events] == [
        (registration.dataset_id, 1)
    ]


def test_an_erc1271_wallet_co_owner_can_confirm(
    chain: UsefirstChain, owners: list[LocalAccount]
) -> None:
    holder = owners[0]
    wallet = deploy_contract(chain, "ERC1271WalletMock", holder.address)
    other = owners[1]
    registration = registration_for([wallet.address, other.address])
    domain = chain.registry_domain()
    wallet_nonce = chain.rights_nonce(wallet.address)
    # The wallet's owner signs the EIP-712 digest; the wallet vouches for it via ERC-1271.
    by_holder = sign_confirmation(holder, domain, registration, wallet_nonce)
    signatures = [
        CoOwnerSignature(wallet.address, wallet_nonce, by_holder.signature),
        *sign_all(chain, registration, [other]),
    ]
    chain.register_dataset(registration, signatures)
    record = chain.get_dataset(registration.dataset_id)
    assert record is not None and wallet.address in record.co_owners
    assert chain.rights_nonce(wallet.address) == wallet_nonce + 1


def test_a_signature_from_a_non_owner_is_rejected(
    chain: UsefirstChain, owners: list[LocalAccount]
) -> None:
    a, b, outsider = owners
    registration = registration_for([a.address, b.address])
    forged = sign_confirmation(outsider, chain.registry_domain(), registration, 0)
    signatures = [
        *sign_all(chain, registration, [a]),
        CoOwnerSignature(b.address, chain.rights_nonce(b.address), forged.signature),
    ]
    with pytest.raises(ContractRevert) as excinfo:
        chain.register_dataset(registration, signatures)
    assert (revert_name(excinfo), excinfo.value.error_args) == ("InvalidSignature", (b.address,))
    assert chain.get_dataset(registration.dataset_id) is None


def test_every_co_owner_must_sign_and_nobody_else(
    chain: UsefirstChain, owners: list[LocalAccount]
) -> None:
    a, b, outsider = owners
    registration = registration_for([a.address, b.address])
    with pytest.raises(ContractRevert) as excinfo:
        chain.register_dataset(registration, sign_all(chain, registration, [a]))
    assert (revert_name(excinfo), excinfo.value.error_args) == ("MissingSignature", (b.address,))
    with pytest.raises(ContractRevert) as excinfo:
        chain.register_dataset(registration, sign_all(chain, registration, [a, b, outsider]))
    assert (revert_name(excinfo), excinfo.value.error_args) == (
        "UnexpectedSigner",
        (outsider.address,),
    )
    assert chain.get_dataset(registration.dataset_id) is None


def test_a_stale_nonce_is_rejected(
    chain: UsefirstChain, owners: list[LocalAccount], anvil_accounts: list[LocalAccount]
) -> None:
    owner = anvil_accounts[6]  # has ETH, so it can burn its own nonce
    registration = registration_for([owner.address, owners[0].address])
    signatures = sign_all(chain, registration, [owner, owners[0]])
    chain.transactor.send(owner, chain.registry.functions.cancelNonce())
    with pytest.raises(ContractRevert) as excinfo:
        chain.register_dataset(registration, signatures)
    assert revert_name(excinfo) == "InvalidAccountNonce"
    assert excinfo.value.error_args[0] == owner.address


def test_signatures_cannot_be_replayed_after_a_revocation(
    chain: UsefirstChain, owners: list[LocalAccount], anvil_accounts: list[LocalAccount]
) -> None:
    a, b, _ = owners
    registration = registration_for([a.address, b.address])
    signatures = sign_all(chain, registration, [a, b])
    chain.register_dataset(registration, signatures)
    nonce = chain.rights_nonce(b.address)
    revocation = sign_revocation(b, chain.registry_domain(), registration.dataset_id, nonce)
    # Anyone may submit a co-owner's revocation.
    chain.revoke_dataset(
        registration.dataset_id, b.address, nonce, revocation, sender=anvil_accounts[9]
    )
    record = chain.get_dataset(registration.dataset_id)
    assert record is not None and record.revoked and record.revoked_by == b.address
    assert chain.is_dataset_revoked(registration.dataset_id)
    assert not chain.is_dataset_active(registration.dataset_id)
    with pytest.raises(ContractRevert) as excinfo:
        chain.register_dataset(registration, signatures)
    assert revert_name(excinfo) == "InvalidAccountNonce"
    with pytest.raises(ContractRevert) as excinfo:
        chain.revoke_dataset(registration.dataset_id, b.address, nonce, revocation)
    assert revert_name(excinfo) == "DatasetAlreadyRevoked"
    # Fresh signatures restore the registration as a new version.
    chain.register_dataset(registration, sign_all(chain, registration, [a, b]))
    record = chain.get_dataset(registration.dataset_id)
    assert record is not None and record.version == 2 and not record.revoked


def test_only_a_current_co_owner_can_revoke_with_a_valid_signature(
    chain: UsefirstChain, owners: list[LocalAccount]
) -> None:
    a, b, outsider = owners
    registration = registration_for([a.address, b.address])
    domain = chain.registry_domain()
    with pytest.raises(ContractRevert) as excinfo:
        chain.revoke_dataset(
            registration.dataset_id,
            a.address,
            0,
            sign_revocation(a, domain, registration.dataset_id, 0),
        )
    assert revert_name(excinfo) == "DatasetNotRegistered"
    chain.register_dataset(registration, sign_all(chain, registration, [a, b]))
    nonce = chain.rights_nonce(outsider.address)
    signature = sign_revocation(outsider, domain, registration.dataset_id, nonce)
    with pytest.raises(ContractRevert) as excinfo:
        chain.revoke_dataset(registration.dataset_id, outsider.address, nonce, signature)
    assert revert_name(excinfo) == "NotCoOwner"
    nonce_a = chain.rights_nonce(a.address)
    forged = sign_revocation(outsider, domain, registration.dataset_id, nonce_a)
    with pytest.raises(ContractRevert) as excinfo:
        chain.revoke_dataset(registration.dataset_id, a.address, nonce_a, forged)
    assert revert_name(excinfo) == "InvalidSignature"
    stale = sign_revocation(a, domain, registration.dataset_id, nonce_a - 1)
    with pytest.raises(ContractRevert) as excinfo:
        chain.revoke_dataset(registration.dataset_id, a.address, nonce_a - 1, stale)
    assert revert_name(excinfo) == "InvalidAccountNonce"
    assert not chain.is_dataset_revoked(registration.dataset_id)


def test_new_terms_need_fresh_signatures_including_dropped_co_owners(
    chain: UsefirstChain, owners: list[LocalAccount]
) -> None:
    a, b, c = owners
    first = registration_for([a.address, b.address])
    chain.register_dataset(first, sign_all(chain, first, [a, b]))
    # New terms, and c replaces b.
    second = replace(
        registration_for([a.address, c.address], [7_000, 3_000]), dataset_id=first.dataset_id
    )
    with pytest.raises(ContractRevert) as excinfo:
        chain.register_dataset(second, sign_all(chain, second, [a, c]))
    assert (revert_name(excinfo), excinfo.value.error_args) == ("MissingSignature", (b.address,))
    # Old signatures over the first terms do not count for the second.
    old = sign_all(chain, first, [a, b, c])
    with pytest.raises(ContractRevert) as excinfo:
        chain.register_dataset(second, old)
    assert revert_name(excinfo) == "InvalidSignature"
    chain.register_dataset(second, sign_all(chain, second, [a, b, c]))
    record = chain.get_dataset(first.dataset_id)
    assert record is not None
    assert record.version == 2
    assert record.terms_hash == second.terms_hash
    assert record.co_owners == second.co_owners and record.shares_bps == second.shares_bps


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"shares_bps": (5_000, 4_999)}, "SharesSumInvalid"),
        ({"shares_bps": (10_000, 0)}, "ZeroShare"),
        ({"allowed_uses": 4}, "InvalidAllowedUses"),
        ({"allowed_uses": 0}, "InvalidAllowedUses"),
        ({"valid_from": 100, "valid_until": 100}, "InvalidValidity"),
        ({"dataset_id": b"\0" * 32}, "InvalidDatasetId"),
        ({"shares_bps": (10_000,)}, "LengthMismatch"),
        ("unsorted", "CoOwnersNotSorted"),
    ],
)
def test_invalid_registrations_are_rejected(
    chain: UsefirstChain, owners: list[LocalAccount], change: object, error: str
) -> None:
    registration = registration_for([o.address for o in owners[:2]])
    if change == "unsorted":
        registration = replace(registration, co_owners=registration.co_owners[::-1])
    else:
        registration = replace(registration, **change)  # type: ignore[arg-type]
    with pytest.raises(ContractRevert) as excinfo:
        chain.register_dataset(registration, [])
    assert revert_name(excinfo) == error


def test_only_the_registrar_submits_registrations(
    chain: UsefirstChain, owners: list[LocalAccount], anvil_accounts: list[LocalAccount]
) -> None:
    a, b, _ = owners
    registration = registration_for([a.address, b.address])
    signatures = sign_all(chain, registration, [a, b])
    fn = chain.registry.functions.register(
        registration.as_tuple(), [(s.signer, s.nonce, s.signature) for s in signatures]
    )
    with pytest.raises(ContractRevert) as excinfo:
        chain.transactor.send(anvil_accounts[7], fn)
    assert revert_name(excinfo) == "AccessControlUnauthorizedAccount"


def test_activity_follows_the_validity_window(
    chain: UsefirstChain, owners: list[LocalAccount]
) -> None:
    a = owners[0]
    now = chain.w3.eth.get_block("latest")["timestamp"]
    future = registration_for([a.address], valid_from=now + 86_400)
    chain.register_dataset(future, sign_all(chain, future, [a]))
    expired = registration_for([a.address], valid_from=now - 7_200, valid_until=now - 3_600)
    chain.register_dataset(expired, sign_all(chain, expired, [a]))
    assert not chain.is_dataset_active(future.dataset_id)
    assert not chain.is_dataset_active(expired.dataset_id)
    assert chain.get_dataset(future.dataset_id) is not None
