"""Owners and accounts: strict EVM addresses, names, contacts, roles."""

from __future__ import annotations

import uuid

import pytest
from eth_account import Account as EthAccount
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from ledger.errors import Conflict, NotFound, ValidationFailed
from ledger.owners.service import (
    address_problem,
    create_account,
    create_owner,
    ensure_owner,
    get_account,
    get_owner,
    get_owner_by_address,
    normalize_address,
    update_owner,
)
from tests.ledger.factories_rights import make_account, make_owner, unique

VALID = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # the EIP-55 specification's example


def _flip_case_of_one_letter(address: str) -> str:
    digits = list(address[2:])
    i = next(i for i, c in enumerate(digits) if c.isalpha())
    digits[i] = digits[i].swapcase()
    return "0x" + "".join(digits)


def test_checksummed_and_single_case_addresses_are_accepted_and_stored_checksummed() -> None:
    assert normalize_address(VALID) == VALID
    assert normalize_address(VALID.lower()) == VALID
    assert normalize_address("0x" + VALID[2:].upper()) == VALID
    assert normalize_address(f"  {VALID}  ") == VALID


@pytest.mark.parametrize(
    ("value", "code", "fragment"),
    [
        (_flip_case_of_one_letter(VALID), "address_checksum", "EIP-55 checksum"),
        ("0x" + "0" * 40, "address_zero", "zero address"),
        ("0x1234", "address_invalid", "has 4 characters after 0x"),
        ("0x" + "g" * 40, "address_invalid", "'g', which is not a hex digit"),
        (VALID[2:], "address_invalid", "must start with 0x"),
        ("0x" + "a" * 42, "address_invalid", "exactly 40 hex digits"),
        (1234, "address_invalid", "must be a string"),
    ],
)
def test_bad_addresses_are_refused_with_a_precise_code(
    value: object, code: str, fragment: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        normalize_address(value, "co_owners/0/address")
    assert caught.value.code == code
    assert fragment in caught.value.message
    assert caught.value.errors[0].field == "co_owners/0/address"


@settings(max_examples=60, deadline=None)
@given(raw=st.binary(min_size=20, max_size=20).filter(any), data=st.data())
def test_any_case_mutation_of_a_checksummed_address_is_caught(
    raw: bytes, data: st.DataObject
) -> None:
    good = to_checksum_address(raw)
    letters = [i for i, c in enumerate(good[2:]) if c.isalpha()]
    assert normalize_address(good.lower()) == good
    if not letters:
        return
    flips = data.draw(st.sets(st.sampled_from(letters), min_size=1))
    mutated = "0x" + "".join(c.swapcase() if i in flips else c for i, c in enumerate(good[2:]))
    problem = address_problem(mutated)
    if mutated[2:] in (good[2:].lower(), good[2:].upper()):
        assert problem is None  # a single-case address carries no checksum
    else:
        assert problem is not None and problem[0] == "address_checksum"


def test_create_owner_stores_the_checksummed_address(db_session: Session) -> None:
    key = EthAccount.create()
    owner = create_owner(
        db_session, address=key.address.lower(), display_name="  Lab A ", contact="a@lab.example"
    )
    assert owner.address == key.address
    assert owner.display_name == "Lab A"
    assert get_owner(db_session, owner.id) is owner
    assert get_owner_by_address(db_session, key.address.upper().replace("0X", "0x")) is owner


def test_an_address_can_be_registered_once(db_session: Session) -> None:
    owner = make_owner(db_session)
    with pytest.raises(Conflict) as caught:
        create_owner(db_session, address=owner.address.lower(), display_name="again")
    assert caught.value.code == "owner_exists"
    assert str(owner.id) in caught.value.message


def test_owner_fields_are_all_reported_at_once(db_session: Session) -> None:
    with pytest.raises(ValidationFailed) as caught:
        create_owner(db_session, address="0x" + "0" * 40, display_name=" ", contact="x" * 400)
    codes = {e.field: e.code for e in caught.value.errors}
    assert codes == {
        "address": "address_zero",
        "display_name": "display_name_required",
        "contact": "contact_too_long",
    }


def test_update_owner_changes_only_what_is_passed(db_session: Session) -> None:
    owner = make_owner(db_session).owner
    account = make_account(db_session)
    update_owner(db_session, owner.id, contact="legal@example.org", account_id=account.id)
    name = owner.display_name
    assert (owner.display_name, owner.contact, owner.account_id) == (
        name,
        "legal@example.org",
        account.id,
    )
    update_owner(db_session, owner.id, display_name="Renamed", contact=None)
    assert (owner.display_name, owner.contact) == ("Renamed", None)
    with pytest.raises(NotFound) as caught:
        update_owner(db_session, owner.id, account_id=uuid.uuid4())
    assert caught.value.code == "account_not_found"
    with pytest.raises(NotFound) as caught:
        update_owner(db_session, uuid.uuid4(), display_name="x")
    assert caught.value.code == "owner_not_found"


def test_ensure_owner_creates_once_and_then_returns_the_same_owner(db_session: Session) -> None:
    address = EthAccount.create().address
    first = ensure_owner(db_session, address.lower(), "Co-owner")
    second = ensure_owner(db_session, address)
    assert first.id == second.id
    assert first.display_name == "Co-owner"


def test_accounts_have_a_known_role(db_session: Session) -> None:
    account = create_account(db_session, role="finance", display_name=unique("fin"))
    assert get_account(db_session, account.id).role == "finance"
    with pytest.raises(ValidationFailed) as caught:
        create_account(db_session, role="superuser", display_name="x")
    assert [(e.field, e.code) for e in caught.value.errors] == [("role", "role_invalid")]
    assert "owner, model_team, finance, admin" in caught.value.message
    with pytest.raises(NotFound) as caught_nf:
        get_account(db_session, uuid.uuid4())
    assert caught_nf.value.code == "account_not_found"


# --- disabling accounts, issuing keys, linking addresses ----------------------------------


def test_a_disabled_account_gets_no_new_keys_and_an_admin_cannot_disable_itself(
    db_session: Session,
) -> None:
    from ledger.errors import StateError
    from ledger.owners.service import disable_account, issue_api_key

    admin = make_account(db_session, "admin")
    team = make_account(db_session, "model_team")
    assert issue_api_key(db_session, team.id, "ci").plaintext.startswith("uf_")
    first = disable_account(db_session, team.id, by=admin.id).disabled_at
    assert first is not None
    assert disable_account(db_session, team.id, by=admin.id).disabled_at == first
    with pytest.raises(StateError) as caught:
        issue_api_key(db_session, team.id)
    assert caught.value.code == "account_disabled"
    with pytest.raises(StateError) as self_disable:
        disable_account(db_session, admin.id, by=admin.id)
    assert self_disable.value.code == "cannot_disable_self"


def _proof(account_id: uuid.UUID, key) -> bytes:  # type: ignore[no-untyped-def]
    from eth_account.messages import encode_defunct

    from ledger.owners.service import address_proof_message

    message = address_proof_message(account_id, key.address)
    return bytes(key.sign_message(encode_defunct(text=message)).signature)


def test_an_owner_account_links_an_address_it_proves_to_control(db_session: Session) -> None:
    from ledger.errors import Forbidden
    from ledger.owners.service import link_owner_address
    from ledger.rights.signatures import NoChain

    account = make_account(db_session, "owner")
    key = EthAccount.create()
    # A dataset named the address first: linking adopts that owner record.
    named = ensure_owner(db_session, key.address.lower(), "Co-owner")
    linked = link_owner_address(
        db_session, account.id, key.address, _proof(account.id, key), display_name="Treasury",
        chain=NoChain(),
    )  # fmt: skip
    assert (linked.owner.id, linked.linked_now) == (named.id, True)
    assert (linked.owner.account_id, linked.owner.display_name) == (account.id, "Treasury")
    again = link_owner_address(
        db_session, account.id, key.address, _proof(account.id, key), chain=NoChain()
    )
    assert again.linked_now is False

    other = make_account(db_session, "owner")
    with pytest.raises(Conflict) as taken:
        link_owner_address(
            db_session, other.id, key.address, _proof(other.id, key), chain=NoChain()
        )
    assert taken.value.code == "address_taken"
    # A proof names its account: it cannot be replayed for another one.
    with pytest.raises(ValidationFailed) as replayed:
        link_owner_address(
            db_session, other.id, key.address, _proof(account.id, key), chain=NoChain()
        )
    assert replayed.value.code == "address_proof_invalid"
    team = make_account(db_session, "model_team")
    with pytest.raises(Forbidden) as wrong_role:
        link_owner_address(db_session, team.id, key.address, _proof(team.id, key), chain=NoChain())
    assert wrong_role.value.code == "not_owner_account"
