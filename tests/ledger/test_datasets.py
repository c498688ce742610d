"""Dataset registration and updates: licences, uses, validity, shares (service and database),
terms versions, disputes over shared content, and Croissant import."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account as EthAccount
from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from ledger.datasets.croissant import licence_from_url, parse_croissant
from ledger.datasets.fingerprint import fingerprint_entries
from ledger.datasets.licences import parse_licence, terms_hash
from ledger.datasets.models import (
    Dataset,
    DatasetCoOwner,
    DatasetFile,
    DatasetTerms,
    Dispute,
)
from ledger.datasets.service import (
    CoOwnerShare,
    co_owners_of,
    manifest_of,
    open_disputes,
    register_dataset,
    update_dataset,
    uses_from_mask,
)
from ledger.errors import DomainError, NotFound, StateError, ValidationFailed
from ledger.owners.service import get_owner_by_address
from tests.ledger.factories_rights import (
    LONG_AGO,
    KeyedOwner,
    confirm_all,
    confirmation_intervals,
    make_dataset,
    make_owner,
    random_files,
    unique,
)

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def _register(session: Session, owners: list[KeyedOwner], **overrides: Any) -> Dataset:
    shares = overrides.pop("shares", None) or [10_000 // len(owners)] * len(owners)
    shares[0] += 10_000 - sum(shares)
    args: dict[str, Any] = {
        "registrant_owner_id": owners[0].id,
        "name": unique("ds"),
        "licence": "CC-BY-4.0",
        "allowed_uses": ["train"],
        "valid_from": T0,
        "files": random_files(),
        "co_owners": [CoOwnerShare(o.address, s) for o, s in zip(owners, shares, strict=True)],
        "at": T0,
    }
    args.update(overrides)
    return register_dataset(session, **args)


def _field_codes(error: DomainError) -> dict[str, str]:
    return {e.field: e.code for e in error.errors}


# --- registration -----------------------------------------------------------------------


def test_registration_stores_terms_version_1_pending_signatures(db_session: Session) -> None:
    a, b = make_owner(db_session), make_owner(db_session)
    files = random_files(3)
    dataset = _register(
        db_session,
        [a, b],
        shares=[7_000, 3_000],
        description=" survey answers ",
        licence="cc-by-4.0",
        allowed_uses=["train", "rag"],
        valid_until=T0 + timedelta(days=365, microseconds=900),
        files=files,
    )
    assert dataset.status == "pending_signatures"
    assert (dataset.terms_version, dataset.description, dataset.licence) == (
        1,
        "survey answers",
        "CC-BY-4.0",
    )
    assert dataset.allowed_uses == 3 and uses_from_mask(dataset.allowed_uses) == ("train", "rag")
    # Signed times are unix seconds, so stored windows are whole seconds.
    assert dataset.valid_until == T0 + timedelta(days=365)
    assert dataset.content_root == fingerprint_entries(files).root
    assert (dataset.file_count, dataset.total_bytes) == (3, sum(f.size for f in files))
    assert dataset.terms_hash == terms_hash("CC-BY-4.0", None)
    assert manifest_of(db_session, dataset.id) == sorted(files, key=lambda f: f.path)
    co_owners = co_owners_of(db_session, dataset.id, 1)
    assert [(c.address, c.share_bps) for c in co_owners] == sorted(
        [(a.address, 7_000), (b.address, 3_000)], key=lambda x: x[0].lower()
    )
    terms = db_session.get(DatasetTerms, (dataset.id, 1))
    assert terms is not None and terms.content_root == dataset.content_root
    assert confirmation_intervals(db_session, dataset.id) == []


def test_new_co_owners_get_an_owner_record(db_session: Session) -> None:
    registrant = make_owner(db_session)
    newcomer = "0x" + uuid.uuid4().hex + "00000000"
    dataset = _register(
        db_session,
        [registrant],
        co_owners=[
            CoOwnerShare(registrant.address, 5_000),
            {"address": newcomer, "share_bps": 5_000, "display_name": "Archive B"},
        ],
    )
    owner = get_owner_by_address(db_session, newcomer)
    assert owner is not None and owner.display_name == "Archive B"
    assert {c.owner_id for c in co_owners_of(db_session, dataset.id, 1)} == {
        registrant.id,
        owner.id,
    }


def test_every_invalid_field_is_reported_at_once(db_session: Session) -> None:
    owner = make_owner(db_session)
    with pytest.raises(ValidationFailed) as caught:
        _register(
            db_session,
            [owner],
            name="",
            licence="Apache2",
            allowed_uses=[],
            valid_from=datetime(2025, 1, 1),
            files=[{"path": "../x", "size": 1, "sha256": "a" * 64}],
            co_owners=[],
        )
    assert _field_codes(caught.value) == {
        "name": "name_required",
        "licence": "licence_unknown",
        "allowed_uses": "allowed_uses_empty",
        "valid_from": "datetime_naive",
        "files/0/path": "manifest_path_invalid",
        "co_owners": "co_owners_empty",
    }
    licence_error = next(e for e in caught.value.errors if e.field == "licence")
    assert "did you mean Apache-2.0" in licence_error.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mit", "MIT"),
        ("Apache-2.0 or MIT", "Apache-2.0 OR MIT"),
        ("GPL-2.0-or-later WITH Classpath-exception-2.0", None),
        ("GPL-2.0+", "GPL-2.0-or-later"),
    ],
)
def test_spdx_expressions_are_normalised(value: str, expected: str | None) -> None:
    licence = parse_licence(value)
    assert licence.expression == (expected or value)
    assert not licence.needs_terms_document


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "licence_required"),
        ("(MIT", "licence_invalid"),
        ("Apache-2.0 WITH MIT", "licence_invalid"),
        ("LicenseRef-a_b", "licence_invalid"),
        ("Foo-License-9", "licence_unknown"),
        ("x" * 201, "licence_too_long"),
    ],
)
def test_bad_licences_are_refused(value: str, code: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_licence(value)
    assert caught.value.code == code
    assert caught.value.errors[0].field == "licence"


def test_custom_terms_need_their_document(db_session: Session, tmp_path: Path) -> None:
    owner = make_owner(db_session)
    with pytest.raises(ValidationFailed) as caught:
        _register(db_session, [owner], licence="LicenseRef-acme-data-1")
    assert _field_codes(caught.value) == {"terms_document": "terms_document_required"}
    assert "LicenseRef-acme-data-1" in caught.value.message

    document = b"ACME data licence v1: research and commercial training allowed.\n"
    from_bytes = _register(
        db_session, [owner], licence="licenseref-acme-data-1", terms_document=document
    )
    digest = hashlib.sha256(document).hexdigest()
    assert from_bytes.licence == "LicenseRef-acme-data-1"
    assert from_bytes.terms_document_sha256 == digest
    assert from_bytes.terms_hash == terms_hash("LicenseRef-acme-data-1", digest)
    assert from_bytes.terms_hash != terms_hash("LicenseRef-acme-data-1", None)

    path = tmp_path / "terms.txt"
    path.write_bytes(document)
    from_path = _register(
        db_session, [owner], licence="LicenseRef-acme-data-1", terms_document=path
    )
    assert from_path.terms_hash == from_bytes.terms_hash
    with pytest.raises(ValidationFailed) as caught:
        _register(db_session, [owner], licence="LicenseRef-x", terms_document=tmp_path / "missing")
    assert _field_codes(caught.value) == {"terms_document": "terms_document_unreadable"}


@pytest.mark.parametrize(
    ("uses", "code"),
    [
        ([], "allowed_uses_empty"),
        (["train", "sell"], "allowed_uses_invalid"),
        ("train", "allowed_uses_invalid"),
    ],
)
def test_allowed_uses_are_a_non_empty_subset(db_session: Session, uses: Any, code: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _register(db_session, [make_owner(db_session)], allowed_uses=uses)
    assert _field_codes(caught.value) == {"allowed_uses": code}


def test_validity_window_must_be_ordered(db_session: Session) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _register(db_session, [make_owner(db_session)], valid_until=T0)
    assert _field_codes(caught.value) == {"valid_until": "validity_invalid"}
    assert "must be after valid_from" in caught.value.message


@pytest.mark.parametrize(
    ("shares", "fragment"),
    [([6_000, 3_999], "sum to 9,999 bps"), ([6_000, 4_001], "remove 1 bps")],
)
def test_shares_must_sum_to_exactly_10000(
    db_session: Session, shares: list[int], fragment: str
) -> None:
    a, b = make_owner(db_session), make_owner(db_session)
    with pytest.raises(ValidationFailed) as caught:
        _register(
            db_session,
            [a],
            co_owners=[CoOwnerShare(a.address, shares[0]), CoOwnerShare(b.address, shares[1])],
        )
    assert _field_codes(caught.value) == {"co_owners": "shares_sum_invalid"}
    assert fragment in caught.value.message


def test_co_owner_entries_are_checked_one_by_one(db_session: Session) -> None:
    a = make_owner(db_session)
    with pytest.raises(ValidationFailed) as caught:
        _register(
            db_session,
            [a],
            co_owners=[
                CoOwnerShare(a.address, 5_000),
                CoOwnerShare(a.address.lower(), 5_000),
                CoOwnerShare("0x" + "0" * 40, 1),
                CoOwnerShare(make_owner(db_session).address, 0),
            ],
        )
    assert _field_codes(caught.value) == {
        "co_owners/1/address": "co_owner_duplicate",
        "co_owners/2/address": "address_zero",
        "co_owners/3/share_bps": "share_invalid",
    }
    with pytest.raises(ValidationFailed) as caught:
        _register(
            db_session,
            [a],
            co_owners=[CoOwnerShare(make_owner(db_session).address, 1) for _ in range(33)],
        )
    assert _field_codes(caught.value) == {"co_owners": "co_owners_too_many"}


def test_a_given_content_root_must_match_the_files(db_session: Session) -> None:
    files = random_files()
    with pytest.raises(ValidationFailed) as caught:
        _register(db_session, [make_owner(db_session)], files=files, content_root="ab" * 32)
    assert _field_codes(caught.value) == {"content_root": "content_root_mismatch"}
    root = fingerprint_entries(files).root
    dataset = _register(
        db_session, [make_owner(db_session)], files=files, content_root=root.upper()
    )
    assert dataset.content_root == root


def test_unknown_registrant_is_not_found(db_session: Session) -> None:
    owner = make_owner(db_session)
    with pytest.raises(NotFound) as caught:
        _register(db_session, [owner], registrant_owner_id=uuid.uuid4())
    assert caught.value.code == "owner_not_found"


# --- the database enforces the share invariant by itself -----------------------------


def test_database_refuses_co_owner_shares_that_do_not_sum_to_10000(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        a, b = make_owner(session), make_owner(session)
        dataset = _register(session, [a])
        session.commit()
        dataset_id = dataset.id
        # A second terms version written around the service: 6,000 + 3,000 bps.
        for owner, share in ((a, 6_000), (b, 3_000)):
            session.add(
                DatasetCoOwner(
                    dataset_id=dataset_id,
                    terms_version=2,
                    address=owner.address,
                    owner_id=owner.id,
                    share_bps=share,
                )
            )
        with pytest.raises(IntegrityError, match="must sum to exactly 10000"):
            session.commit()
        session.rollback()
        # Editing a committed share is checked too.
        session.execute(
            update(DatasetCoOwner)
            .where(DatasetCoOwner.dataset_id == dataset_id)  # type: ignore[arg-type]
            .values(share_bps=9_999)
        )
        with pytest.raises(IntegrityError, match="sum to 9999"):
            session.commit()
        session.rollback()
        shares = session.execute(
            text("SELECT sum(share_bps) FROM dataset_co_owner WHERE dataset_id = :d"),
            {"d": dataset_id},
        ).scalar_one()
        assert shares == 10_000


# --- updates and terms versions ---------------------------------------------------------


def test_changing_only_name_or_description_keeps_the_terms(db_session: Session) -> None:
    owner = make_owner(db_session)
    dataset = make_dataset(db_session, owners=[owner], confirm=True)
    update_dataset(db_session, dataset.id, name="Renamed", description="new words", at=T0)
    update_dataset(db_session, dataset.id, allowed_uses=["rag", "train"], at=T0)  # same mask
    assert (dataset.name, dataset.terms_version, dataset.status) == ("Renamed", 1, "confirmed")
    assert confirmation_intervals(db_session, dataset.id)[0].confirmed_until is None


@pytest.mark.parametrize(
    "change",
    [
        {"allowed_uses": ["train"]},
        {"files": "new"},
        {"licence": "MIT"},
        {"valid_until": T0 + timedelta(days=30)},
        {"valid_from": LONG_AGO + timedelta(days=1)},
        {"shares": [4_000, 6_000]},
    ],
    ids=["uses", "content", "licence", "valid_until", "valid_from", "shares"],
)
def test_a_terms_change_invalidates_earlier_signatures(
    db_session: Session, change: dict[str, Any]
) -> None:
    a, b = make_owner(db_session), make_owner(db_session)
    dataset = make_dataset(db_session, owners=[a, b], confirm=True)
    assert dataset.status == "confirmed"
    kwargs = dict(change)
    if kwargs.get("files") == "new":
        kwargs["files"] = random_files()
    if "shares" in kwargs:
        kwargs["co_owners"] = [
            CoOwnerShare(o.address, s) for o, s in zip([a, b], kwargs.pop("shares"), strict=True)
        ]
    update_dataset(db_session, dataset.id, at=T0, **kwargs)
    assert (dataset.terms_version, dataset.status) == (2, "pending_signatures")
    assert dataset.confirmed_at is None
    [interval] = confirmation_intervals(db_session, dataset.id)
    assert (interval.terms_version, interval.confirmed_until, interval.ended_reason) == (
        1,
        T0,
        "terms_changed",
    )
    assert db_session.get(DatasetTerms, (dataset.id, 2)) is not None
    assert len(co_owners_of(db_session, dataset.id, 2)) == 2
    # Signing the new version confirms it again, in a new interval.
    confirm_all(db_session, dataset, [a, b], at=T0 + timedelta(hours=1))
    assert dataset.status == "confirmed"
    later = confirmation_intervals(db_session, dataset.id)[1]
    assert (later.terms_version, later.confirmed_from, later.confirmed_until) == (
        2,
        T0 + timedelta(hours=1),
        None,
    )


def test_new_files_replace_the_manifest(db_session: Session) -> None:
    dataset = make_dataset(db_session)
    files = random_files(5)
    update_dataset(db_session, dataset.id, files=files, at=T0)
    assert manifest_of(db_session, dataset.id) == sorted(files, key=lambda f: f.path)
    stored = db_session.execute(
        select(DatasetFile).where(DatasetFile.dataset_id == dataset.id)  # type: ignore[arg-type]
    ).scalars()
    assert len(list(stored)) == 5
    assert dataset.file_count == 5


def test_a_new_licence_replaces_the_terms_document(db_session: Session) -> None:
    owner = make_owner(db_session)
    dataset = _register(db_session, [owner], licence="LicenseRef-own", terms_document=b"our terms")
    with pytest.raises(ValidationFailed) as caught:
        update_dataset(db_session, dataset.id, licence="LicenseRef-other", at=T0)
    assert _field_codes(caught.value) == {"terms_document": "terms_document_required"}
    update_dataset(db_session, dataset.id, terms_document=b"our terms, v2", at=T0)
    assert dataset.terms_document_sha256 == hashlib.sha256(b"our terms, v2").hexdigest()
    update_dataset(db_session, dataset.id, licence="MIT", at=T0)
    assert (dataset.licence, dataset.terms_document_sha256, dataset.terms_version) == (
        "MIT",
        None,
        3,
    )


def test_change_times_must_carry_a_time_zone(db_session: Session) -> None:
    dataset = make_dataset(db_session)
    with pytest.raises(ValidationFailed) as caught:
        update_dataset(db_session, dataset.id, name="x", at=datetime(2025, 1, 1))
    assert (caught.value.code, caught.value.errors[0].field) == ("datetime_naive", "at")


def test_missing_dataset_is_not_found(db_session: Session) -> None:
    with pytest.raises(NotFound) as caught:
        update_dataset(db_session, uuid.uuid4(), name="x")
    assert caught.value.code == "dataset_not_found"


# --- disputes over shared content -----------------------------------------------------


def test_same_content_by_a_different_owner_set_is_disputed(db_session: Session) -> None:
    files = random_files()
    first = make_dataset(db_session, files=files, confirm=True)
    claimant = make_owner(db_session)
    second = make_dataset(db_session, owners=[claimant], files=files, confirm=True)
    assert first.status == "confirmed"
    assert second.status == "disputed"  # even though its co-owner signed
    [dispute] = open_disputes(db_session, second.id)
    assert (dispute.conflicting_dataset_id, dispute.content_root) == (first.id, first.content_root)
    assert confirmation_intervals(db_session, second.id) == []


def test_same_content_by_the_same_owner_set_is_allowed(db_session: Session) -> None:
    a, b = make_owner(db_session), make_owner(db_session)
    files = random_files()
    make_dataset(db_session, owners=[a, b], files=files)
    # A second offer of the same files by the same co-owners, other shares and licence.
    again = make_dataset(
        db_session, owners=[b, a], shares=[2_500, 7_500], files=files, licence="MIT"
    )
    assert again.status == "pending_signatures"
    assert open_disputes(db_session, again.id) == []


def test_updating_to_someone_elses_content_opens_a_dispute(db_session: Session) -> None:
    theirs = make_dataset(db_session)
    mine = make_dataset(db_session, confirm=True)
    update_dataset(db_session, mine.id, files=manifest_of(db_session, theirs.id), at=T0)
    assert (mine.status, mine.content_root) == ("disputed", theirs.content_root)
    assert [d.conflicting_dataset_id for d in open_disputes(db_session, mine.id)] == [theirs.id]
    [interval] = confirmation_intervals(db_session, mine.id)
    assert interval.ended_reason == "terms_changed"


def test_rejected_datasets_take_no_updates(db_session: Session) -> None:
    dataset = make_dataset(db_session)
    dataset.status = "rejected"
    with pytest.raises(StateError) as caught:
        update_dataset(db_session, dataset.id, name="x")
    assert caught.value.code == "dataset_rejected"


def test_disputes_only_count_live_datasets(db_session: Session) -> None:
    files = random_files()
    rejected = make_dataset(db_session, files=files)
    db_session.execute(
        update(Dataset).where(Dataset.id == rejected.id).values(status="rejected")  # type: ignore[arg-type]
    )
    fresh = make_dataset(db_session, files=files)
    assert fresh.status == "pending_signatures"
    assert (
        db_session.execute(
            select(Dispute).where(Dispute.dataset_id == fresh.id)  # type: ignore[arg-type]
        ).first()
        is None
    )


# --- Croissant ------------------------------------------------------------------------

TRAIN_SHA = hashlib.sha256(b"train").hexdigest()
TEST_SHA = hashlib.sha256(b"test").hexdigest()


def _croissant(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "@context": {
            "@language": "en",
            "@vocab": "https://schema.org/",
            "cr": "http://mlcommons.org/croissant/",
            "sc": "https://schema.org/",
        },
        "@type": "sc:Dataset",
        "name": "city-noise-2024",
        "description": "Street noise readings, one row per minute.",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "license": "https://creativecommons.org/licenses/by-sa/4.0/",
        "distribution": [
            {
                "@type": "cr:FileObject",
                "@id": "train.csv",
                "name": "train.csv",
                "contentUrl": "data/train.csv",
                "encodingFormat": "text/csv",
                "contentSize": "117743 B",
                "sha256": TRAIN_SHA,
            },
            {
                "@type": "cr:FileObject",
                "@id": "test-file",
                "name": "test.csv",
                "contentUrl": "https://example.org/noise/test.csv",
                "contentSize": "2 KiB",
                "cr:sha256": TEST_SHA.upper(),
            },
            {
                "@type": "cr:FileSet",
                "@id": "csv-files",
                "containedIn": {"@id": "train.csv"},
                "includes": "*.csv",
            },
        ],
    }
    document.update(overrides)
    return document


def test_croissant_fills_name_licence_and_manifest(db_session: Session) -> None:
    imported = parse_croissant(json.dumps(_croissant()))
    assert imported.name == "city-noise-2024"
    assert imported.description == "Street noise readings, one row per minute."
    assert imported.licence == "CC-BY-SA-4.0"
    assert [(f.path, f.size, f.sha256) for f in imported.files] == [
        ("data/train.csv", 117_743, TRAIN_SHA),
        ("test.csv", 2_048, TEST_SHA),
    ]
    assert imported.notes and "FileSet csv-files" in imported.notes[0]

    owner = make_owner(db_session)
    assert imported.name and imported.licence
    dataset = _register(
        db_session,
        [owner],
        name=imported.name,
        licence=imported.licence,
        files=imported.files,
        croissant=imported.document,
    )
    assert dataset.licence == "CC-BY-SA-4.0"
    assert dataset.content_root == fingerprint_entries(imported.files).root
    assert dataset.croissant is not None and dataset.croissant["name"] == "city-noise-2024"


@pytest.mark.parametrize(
    ("url", "spdx"),
    [
        ("https://spdx.org/licenses/Apache-2.0.html", "Apache-2.0"),
        ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
        ("https://opensource.org/licenses/MIT", "MIT"),
        ("cc-by-4.0", "cc-by-4.0"),
        ("https://example.org/our-licence", None),
    ],
)
def test_licence_urls_map_to_spdx_ids(url: str, spdx: str | None) -> None:
    assert licence_from_url(url) == spdx


def test_croissant_files_need_sha256_and_exact_sizes() -> None:
    document = _croissant()
    del document["distribution"][0]["sha256"]
    document["distribution"][0]["md5"] = "0" * 32
    document["distribution"][1]["contentSize"] = "1.0001 KB"
    with pytest.raises(ValidationFailed) as caught:
        parse_croissant(document)
    assert _field_codes(caught.value) == {
        "croissant/distribution/0/sha256": "croissant_file_unhashed",
        "croissant/distribution/1/contentSize": "croissant_size_inexact",
    }


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ("{not json", "croissant_invalid"),
        ("[1, 2]", "croissant_invalid"),
        (json.dumps({"name": "x", "distribution": []}), "croissant_no_files"),
    ],
)
def test_unusable_croissant_documents(document: str, code: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_croissant(document)
    assert caught.value.code == code


# --- who registers, who sees ---------------------------------------------------------------


def test_the_registrant_must_be_the_callers_and_a_co_owner(db_session: Session) -> None:
    from ledger.datasets.service import registrant_owner

    alice, bob = make_owner(db_session), make_owner(db_session)
    shares = [{"address": alice.address.lower(), "share_bps": 10_000}]
    found = registrant_owner(db_session, alice.address, shares, controlled={alice.address})
    assert found.id == alice.id
    for registrant, controlled, code in (
        (bob.address, {alice.address}, "registrant_not_yours"),
        (bob.address, {bob.address}, "registrant_not_co_owner"),
        ("0x1234", None, "address_invalid"),
    ):
        with pytest.raises(ValidationFailed) as caught:
            registrant_owner(db_session, registrant, shares, controlled=controlled)
        assert caught.value.code == code
    # An operator at the command line controls every address; a new one gets a record.
    fresh = EthAccount.create().address
    created = registrant_owner(
        db_session, fresh, [{"address": fresh, "share_bps": 10_000}], controlled=None
    )
    assert created.address == fresh


def test_a_dataset_is_visible_to_co_owners_of_any_version(db_session: Session) -> None:
    from ledger.datasets import queries

    alice, bob, carol = make_owner(db_session), make_owner(db_session), make_owner(db_session)
    dataset = _register(db_session, [alice, bob])
    update_dataset(
        db_session,
        dataset.id,
        co_owners=[CoOwnerShare(alice.address, 6_000), CoOwnerShare(carol.address, 4_000)],
        at=T0,
    )
    for who in (alice, bob, carol):
        assert queries.visible_dataset(db_session, dataset.id, {who.address}).id == dataset.id
    assert queries.current_co_owner(db_session, dataset, {carol.address})
    assert not queries.current_co_owner(db_session, dataset, {bob.address})
    with pytest.raises(NotFound) as caught:
        queries.visible_dataset(db_session, dataset.id, {make_owner(db_session).address})
    assert caught.value.code == "dataset_not_found"
    page = queries.datasets_page(
        db_session, addresses={bob.address}, status=None, after=None, limit=10
    )
    assert [d.id for d in page] == [dataset.id]
    assert (
        queries.datasets_page(db_session, addresses=set(), status=None, after=None, limit=10) == []
    )
