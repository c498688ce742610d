"""Datasets: registration, updates, terms versions, disputes on shared content, and status.

A dataset's **terms** are what its co-owners sign: content root, licence/terms hash, allowed
uses, validity window and co-owner shares. Registration creates terms version 1; any update
that changes the terms creates version n+1 (recorded in ``dataset_terms``), ends the open
confirmation interval (``ended_reason = 'terms_changed'``) and clears a revocation, so the
dataset counts again only when the new terms are signed (``ledger.rights.service``).

Status (``dataset.status``), derived by :func:`refresh_status` in this order:

1. ``rejected``: finance rejected its claim in a dispute (final);
2. ``revoked``: a co-owner revoked the current terms;
3. ``disputed``: an open dispute (its content root is registered by another owner set);
4. ``confirmed``: every required signer confirmed the current terms;
5. ``pending_signatures``: otherwise.

Usage counts only inside a ``dataset_confirmation`` interval; this module and the rights
service keep those intervals exact: opened when the dataset becomes confirmed, closed when
the terms change, a co-owner revokes or the claim is rejected.

Same content, same owners: registering a content root again with the *same* set of co-owner
addresses (e.g. a new licence offer for the same files) opens no dispute. A *different*
owner set opens one dispute per such dataset (rejected datasets do not count), unless
finance already upheld a dispute between the same two datasets over the same root.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import delete, func, insert, select, text
from sqlmodel import Session, col

from ledger.datasets.fingerprint import Fingerprint, ManifestEntry, fingerprint_entries, sha256_of
from ledger.datasets.licences import parse_licence, terms_hash
from ledger.datasets.models import (
    Dataset,
    DatasetConfirmation,
    DatasetCoOwner,
    DatasetFile,
    DatasetTerms,
    Dispute,
)
from ledger.errors import ErrorCollector, NotFound, StateError, ValidationFailed
from ledger.owners.models import Owner
from ledger.owners.service import (
    UNSET,
    _Unset,
    address_problem,
    check_no_nul,
    ensure_owner,
    get_owner,
    get_owner_by_address,
    normalize_address,
)
from ledger.rights.eip712 import USE_BITS
from ledger.rights.models import RightsSignature
from ledger.types import BPS_DENOMINATOR, utcnow

NAME_MAX = 200
DESCRIPTION_MAX = 20_000
# Same bound as DatasetRegistry.MAX_CO_OWNERS, so every ledger dataset can be anchored.
CO_OWNERS_MAX = 32
# Namespace of the advisory locks taken per content root (pg_advisory_xact_lock(ns, key)).
_CONTENT_ROOT_LOCK_NS = 0x55460001
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TermsDocument = bytes | Path


@dataclass(frozen=True)
class CoOwnerShare:
    """A co-owner and its share in basis points (all shares of a dataset sum to 10,000)."""

    address: str
    share_bps: int
    display_name: str | None = None


@dataclass(frozen=True)
class Terms:
    """Normalised terms of one version: everything a RightsConfirmation signs but the id."""

    content: Fingerprint
    licence: str
    terms_document_sha256: str | None
    terms_hash: str
    allowed_uses: int
    valid_from: datetime
    valid_until: datetime | None
    co_owners: tuple[tuple[str, int], ...]  # (checksummed address, share_bps), sorted

    def signed_part(self) -> tuple[Any, ...]:
        """What a signature binds: equal for two versions means nothing signed changed."""
        return (
            self.content.root,
            self.terms_hash,
            self.allowed_uses,
            self.valid_from,
            self.valid_until,
            self.co_owners,
        )


def co_owner_sort_key(address: str) -> str:
    """Co-owners are ordered ascending by lower-case address (as uint160 on chain)."""
    return address.lower()


# --- validation -------------------------------------------------------------------------


def allowed_uses_mask(uses: object, field: str = "allowed_uses") -> int:
    """Bit mask (1 train, 2 rag) of a non-empty collection of use names; raise otherwise."""
    if isinstance(uses, str) or not isinstance(uses, Iterable):
        raise ValidationFailed(
            f"{field} must be a list of uses, each 'train' or 'rag', e.g. ['train', 'rag']",
            field=field,
            code="allowed_uses_invalid",
        )
    names = list(uses)
    if not names:
        raise ValidationFailed(
            f"{field} is empty; allow at least one of 'train' and 'rag'",
            field=field,
            code="allowed_uses_empty",
        )
    mask = 0
    for name in names:
        if name not in USE_BITS:
            raise ValidationFailed(
                f"{field}: {name!r} is not a use; the uses are 'train' and 'rag'",
                field=field,
                code="allowed_uses_invalid",
            )
        mask |= USE_BITS[name]
    return mask


def uses_from_mask(mask: int) -> tuple[str, ...]:
    """Use names of a bit mask, in a fixed order (``('train', 'rag')``)."""
    return tuple(name for name, bit in USE_BITS.items() if mask & bit)


def _timestamp(
    errors: ErrorCollector, field: str, value: object, *, required: bool
) -> datetime | None:
    """A UTC datetime truncated to whole seconds: the signed terms carry unix seconds."""
    if value is None:
        if required:
            errors.add(field, f"{field}_required", f"{field} is required")
        return None
    if not isinstance(value, datetime):
        errors.add(field, "datetime_invalid", f"{field} must be a date-time, got {value!r}")
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        errors.add(
            field,
            "datetime_naive",
            f"{field} {value.isoformat()} has no time zone; give it in UTC (…Z) or with an offset",
        )
        return None
    moment = value.astimezone(UTC).replace(microsecond=0)
    if moment < _EPOCH:
        errors.add(field, "datetime_before_epoch", f"{field} must not be before 1970-01-01")
        return None
    return moment


def _co_owner_shares(
    errors: ErrorCollector, value: object, field: str = "co_owners"
) -> tuple[tuple[tuple[str, int], ...], dict[str, str | None]]:
    """Validated ``((address, share_bps), …)`` sorted by address, and display names."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        errors.add(field, "co_owners_invalid", f"{field} must be a list of co-owners")
        return (), {}
    items = list(value)
    if not items:
        errors.add(
            field,
            "co_owners_empty",
            f"{field} is empty; name at least one co-owner holding 10,000 bps",
        )
        return (), {}
    if len(items) > CO_OWNERS_MAX:
        errors.add(
            field,
            "co_owners_too_many",
            f"{field} names {len(items)} co-owners; at most {CO_OWNERS_MAX} are allowed",
        )
        return (), {}
    shares: dict[str, int] = {}
    names: dict[str, str | None] = {}
    total = 0
    valid = True
    for i, item in enumerate(items):
        where = f"{field}/{i}"
        address: object
        share: object
        name: object
        if isinstance(item, CoOwnerShare):
            address, share, name = item.address, item.share_bps, item.display_name
        elif isinstance(item, Mapping):
            address, share, name = (
                item.get("address"),
                item.get("share_bps"),
                item.get("display_name"),
            )
        else:
            errors.add(where, "co_owner_invalid", f"{where} must have an address and share_bps")
            valid = False
            continue
        problem = address_problem(address)
        if problem is not None:
            errors.add(f"{where}/address", problem[0], f"{where}/address: {problem[1]}")
            valid = False
        elif isinstance(address, str):
            checksummed = to_checksum_address(address.strip())
            if checksummed in shares:
                errors.add(
                    f"{where}/address",
                    "co_owner_duplicate",
                    f"{checksummed} is listed twice; list each co-owner once with its whole share",
                )
                valid = False
            else:
                shares[checksummed] = share if isinstance(share, int) else 0
                names[checksummed] = name if isinstance(name, str) else None
                check_no_nul(errors, f"{where}/display_name", name)
        if isinstance(share, bool) or not isinstance(share, int) or not 0 < share <= 10_000:
            errors.add(
                f"{where}/share_bps",
                "share_invalid",
                f"{where}/share_bps must be a whole number of basis points from 1 to 10,000, "
                f"got {share!r}",
            )
            valid = False
        else:
            total += share
    if valid and total != BPS_DENOMINATOR:
        gap = BPS_DENOMINATOR - total
        fix = f"add {gap:,} bps" if gap > 0 else f"remove {-gap:,} bps"
        errors.add(
            field,
            "shares_sum_invalid",
            f"co-owner shares sum to {total:,} bps; they must sum to exactly 10,000 bps "
            f"(100%): {fix}",
        )
    ordered = tuple(sorted(shares.items(), key=lambda kv: co_owner_sort_key(kv[0])))
    return ordered, names


def _document_sha256(errors: ErrorCollector, document: object) -> str | None:
    if isinstance(document, bytes | bytearray):
        if not document:
            errors.add("terms_document", "terms_document_empty", "terms_document is empty")
            return None
        return sha256_of(bytes(document))
    if isinstance(document, str | Path):
        path = Path(document)
        if not path.is_file():
            errors.add(
                "terms_document",
                "terms_document_unreadable",
                f"terms_document {path} is not a readable file",
            )
            return None
        return sha256_of(path)
    errors.add(
        "terms_document", "terms_document_invalid", "terms_document must be bytes or a file path"
    )
    return None


def _resolve_terms(
    errors: ErrorCollector,
    current: Terms | None,
    *,
    licence: object,
    terms_document: object,
    allowed_uses: object,
    valid_from: object,
    valid_until: object,
    files: object,
    content_root: str | None,
    co_owners: object,
) -> tuple[Terms | None, dict[str, str | None]]:
    """Merge the given inputs over ``current`` (UNSET keeps a value) and validate the result.

    Problems are added to ``errors``; the terms are None when there was any.
    """
    errors_before = len(errors.errors)

    def given(value: object) -> bool:
        return not isinstance(value, _Unset)

    def missing(field: str) -> None:
        errors.add(field, f"{field}_required", f"{field} is required")

    # Licence and terms document: a new licence comes with its own document (or none).
    licence_expr = current.licence if current else None
    custom_ids: tuple[str, ...] = ()
    doc_sha = current.terms_document_sha256 if current else None
    if given(licence):
        try:
            parsed = parse_licence(licence)
            licence_expr, custom_ids = parsed.expression, parsed.custom_ids
        except ValidationFailed as exc:
            errors.errors.extend(exc.errors)
            licence_expr = None
        doc_sha = None
    elif current is None:
        missing("licence")
    elif licence_expr is not None:
        custom_ids = parse_licence(licence_expr).custom_ids
    if given(terms_document) and terms_document is not None:
        doc_sha = _document_sha256(errors, terms_document)
    elif given(terms_document):
        doc_sha = None
    if (
        custom_ids
        and doc_sha is None
        and not any(e.field == "terms_document" for e in errors.errors)
    ):
        errors.add(
            "terms_document",
            "terms_document_required",
            f"licence {licence_expr} uses custom terms ({', '.join(custom_ids)}); upload the "
            "terms document so its SHA-256 can be signed",
        )

    mask = current.allowed_uses if current else 0
    if given(allowed_uses):
        try:
            mask = allowed_uses_mask(allowed_uses)
        except ValidationFailed as exc:
            errors.errors.extend(exc.errors)
    elif current is None:
        missing("allowed_uses")

    start = current.valid_from if current else None
    if given(valid_from):
        start = _timestamp(errors, "valid_from", valid_from, required=True)
    elif current is None:
        missing("valid_from")
    end = current.valid_until if current else None
    if given(valid_until):
        end = _timestamp(errors, "valid_until", valid_until, required=False)
    if start is not None and end is not None and end <= start:
        errors.add(
            "valid_until",
            "validity_invalid",
            f"valid_until {end.isoformat()} must be after valid_from {start.isoformat()} "
            "(or omitted for no end)",
        )

    content = current.content if current else None
    if given(files):
        try:
            content = fingerprint_entries(files)  # type: ignore[arg-type]
        except ValidationFailed as exc:
            errors.errors.extend(exc.errors)
            content = None
    elif current is None:
        missing("files")
    if content is not None and content_root is not None and content_root.lower() != content.root:
        errors.add(
            "content_root",
            "content_root_mismatch",
            f"content_root {content_root} does not match the root of the files "
            f"({content.root}); the manifest is not the one that was fingerprinted",
        )

    shares = current.co_owners if current else ()
    names: dict[str, str | None] = {}
    if given(co_owners):
        shares, names = _co_owner_shares(errors, co_owners)
    elif current is None:
        missing("co_owners")

    if len(errors.errors) > errors_before:
        return None, names
    assert licence_expr is not None and start is not None and content is not None
    terms = Terms(
        content=content,
        licence=licence_expr,
        terms_document_sha256=doc_sha,
        terms_hash=terms_hash(licence_expr, doc_sha),
        allowed_uses=mask,
        valid_from=start,
        valid_until=end,
        co_owners=shares,
    )
    return terms, names


def _check_text(errors: ErrorCollector, field: str, value: object, max_len: int) -> str:
    if not isinstance(value, str):
        errors.add(field, f"{field}_invalid", f"{field} must be a string")
        return ""
    text_value = value.strip()
    if field == "name" and not text_value:
        errors.add(field, "name_required", "name must be a non-empty string")
    if len(text_value) > max_len:
        errors.add(
            field,
            f"{field}_too_long",
            f"{field} has {len(text_value)} characters; at most {max_len} are allowed",
        )
    check_no_nul(errors, field, text_value)
    return text_value


def moment_of(at: datetime | None) -> datetime:
    """When a change happens: ``at`` in UTC, or now. A naive ``at`` is refused
    (``datetime_naive``): confirmation intervals are compared with event times."""
    if at is None:
        return utcnow()
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise ValidationFailed(
            f"at must be a date-time with a time zone, got {at!r}",
            field="at",
            code="datetime_naive",
        )
    return at.astimezone(UTC)


# --- reads ------------------------------------------------------------------------------


def get_dataset(session: Session, dataset_id: uuid.UUID, *, for_update: bool = False) -> Dataset:
    """The dataset, or NotFound (``dataset_not_found``); ``for_update`` locks its row, which
    serialises every change of its terms, signatures and status."""
    dataset = session.get(
        Dataset, dataset_id, with_for_update=for_update, populate_existing=for_update
    )
    if dataset is None:
        raise NotFound(
            f"dataset {dataset_id} does not exist", field="dataset_id", code="dataset_not_found"
        )
    return dataset


def co_owners_of(
    session: Session, dataset_id: uuid.UUID, terms_version: int
) -> list[DatasetCoOwner]:
    """The co-owners of one terms version, ascending by lower-case address."""
    rows = session.execute(
        select(DatasetCoOwner).where(
            DatasetCoOwner.dataset_id == dataset_id,  # type: ignore[arg-type]
            DatasetCoOwner.terms_version == terms_version,  # type: ignore[arg-type]
        )
    ).scalars()
    return sorted(rows, key=lambda c: co_owner_sort_key(c.address))


def terms_of(session: Session, dataset_id: uuid.UUID, terms_version: int) -> DatasetTerms:
    """The recorded terms of a version, or NotFound (``terms_version_not_found``)."""
    terms = session.get(DatasetTerms, (dataset_id, terms_version))
    if terms is None:
        raise NotFound(
            f"dataset {dataset_id} has no terms version {terms_version}",
            field="terms_version",
            code="terms_version_not_found",
        )
    return terms


def manifest_of(session: Session, dataset_id: uuid.UUID) -> list[ManifestEntry]:
    """The current manifest, sorted by path as the content root is built."""
    rows = session.execute(
        select(DatasetFile).where(DatasetFile.dataset_id == dataset_id)  # type: ignore[arg-type]
    ).scalars()
    entries = [ManifestEntry(r.path, r.size_bytes, r.sha256) for r in rows]
    return sorted(entries, key=lambda e: e.path.encode())


def open_disputes(session: Session, dataset_id: uuid.UUID) -> list[Dispute]:
    """Unresolved disputes about ``dataset_id``'s claim, oldest first."""
    rows = session.execute(
        select(Dispute)
        .where(Dispute.dataset_id == dataset_id, Dispute.status == "open")  # type: ignore[arg-type]
        .order_by(Dispute.opened_at, Dispute.id)  # type: ignore[arg-type]
    ).scalars()
    return list(rows)


def open_interval(session: Session, dataset_id: uuid.UUID) -> DatasetConfirmation | None:
    """The confirmation interval still open (``confirmed_until`` NULL), if any."""
    return session.execute(
        select(DatasetConfirmation).where(
            DatasetConfirmation.dataset_id == dataset_id,  # type: ignore[arg-type]
            DatasetConfirmation.confirmed_until.is_(None),  # type: ignore[union-attr]
        )
    ).scalar_one_or_none()


def required_signers(session: Session, dataset: Dataset) -> list[str]:
    """Addresses whose confirmations the current terms need, ascending.

    The co-owners of the current version, plus those of the last version that was ever
    confirmed: as in DatasetRegistry.register, a co-owner can be dropped only with their
    own signature, so nobody can take a share away by rewriting the co-owner list.
    """
    signers = {c.address for c in co_owners_of(session, dataset.id, dataset.terms_version)}
    last_confirmed = session.execute(
        select(func.max(DatasetConfirmation.terms_version)).where(
            DatasetConfirmation.dataset_id == dataset.id,  # type: ignore[arg-type]
            DatasetConfirmation.terms_version < dataset.terms_version,  # type: ignore[arg-type]
        )
    ).scalar_one_or_none()
    if last_confirmed is not None:
        signers |= {c.address for c in co_owners_of(session, dataset.id, int(last_confirmed))}
    return sorted(signers, key=co_owner_sort_key)


def confirmed_signers(session: Session, dataset: Dataset) -> set[str]:
    """Signers with an accepted confirmation of the dataset's current terms version."""
    rows = session.execute(
        select(col(RightsSignature.signer)).where(
            RightsSignature.dataset_id == dataset.id,  # type: ignore[arg-type]
            RightsSignature.terms_version == dataset.terms_version,  # type: ignore[arg-type]
            RightsSignature.kind == "confirmation",  # type: ignore[arg-type]
        )
    ).scalars()
    return set(rows)


def current_terms(session: Session, dataset: Dataset) -> Terms:
    """The dataset's current terms as a :class:`Terms` value."""
    manifest = manifest_of(session, dataset.id)
    return Terms(
        content=Fingerprint(entries=tuple(manifest), root=dataset.content_root),
        licence=dataset.licence,
        terms_document_sha256=dataset.terms_document_sha256,
        terms_hash=dataset.terms_hash,
        allowed_uses=dataset.allowed_uses,
        valid_from=dataset.valid_from.astimezone(UTC),
        valid_until=dataset.valid_until.astimezone(UTC) if dataset.valid_until else None,
        co_owners=tuple(
            (c.address, c.share_bps)
            for c in co_owners_of(session, dataset.id, dataset.terms_version)
        ),
    )


# --- status and confirmation intervals ------------------------------------------------


def _check_not_before(interval: DatasetConfirmation, at: datetime) -> None:
    if at < interval.confirmed_from:
        raise StateError(
            f"{at.isoformat()} is before the open confirmation interval of dataset "
            f"{interval.dataset_id} started ({interval.confirmed_from.isoformat()}); "
            "changes must be recorded in time order",
            field="at",
            code="time_before_confirmation",
        )


def close_interval(session: Session, dataset: Dataset, at: datetime, reason: str) -> None:
    """End the open confirmation interval (if any) at ``at``: usage after it does not count."""
    interval = open_interval(session, dataset.id)
    if interval is None:
        return
    _check_not_before(interval, at)
    interval.confirmed_until = at
    interval.ended_reason = reason
    session.add(interval)


def refresh_status(session: Session, dataset: Dataset, at: datetime) -> str:
    """Derive ``dataset.status`` (module doc) and open or close its confirmation interval.

    Call with the dataset row locked. Opens an interval at ``at`` when the dataset becomes
    confirmed; closes one (``'disputed'``) if a dispute appears while it is open.
    """
    if dataset.status == "rejected":
        status = "rejected"
    elif dataset.revoked_at is not None:
        status = "revoked"
    elif open_disputes(session, dataset.id):
        status = "disputed"
        close_interval(session, dataset, at, "disputed")
    elif set(required_signers(session, dataset)) <= confirmed_signers(session, dataset):
        status = "confirmed"
        if open_interval(session, dataset.id) is None:
            last_end = session.execute(
                select(func.max(DatasetConfirmation.confirmed_until)).where(
                    DatasetConfirmation.dataset_id == dataset.id  # type: ignore[arg-type]
                )
            ).scalar_one_or_none()
            if last_end is not None and at < last_end:
                raise StateError(
                    f"{at.isoformat()} is before the last confirmation interval of dataset "
                    f"{dataset.id} ended ({last_end.isoformat()}); record changes in time order",
                    field="at",
                    code="time_before_confirmation",
                )
            session.add(
                DatasetConfirmation(
                    dataset_id=dataset.id,
                    terms_version=dataset.terms_version,
                    allowed_uses=dataset.allowed_uses,
                    confirmed_from=at,
                )
            )
            dataset.confirmed_at = at
    else:
        status = "pending_signatures"
    dataset.status = status
    session.add(dataset)
    session.flush()
    return status


# --- disputes -------------------------------------------------------------------------


def _lock_content_root(session: Session, content_root: str) -> None:
    # Two registrations of the same root by different owner sets must see each other.
    key = int.from_bytes(bytes.fromhex(content_root)[:4], "big", signed=True)
    session.execute(
        text("SELECT pg_advisory_xact_lock(:ns, :key)"),
        {"ns": _CONTENT_ROOT_LOCK_NS, "key": key},
    )


def _open_disputes_for_root(session: Session, dataset: Dataset) -> list[Dispute]:
    """Open a dispute against every other live dataset with this content root and a
    different owner set (module doc); returns the disputes opened."""
    own = {c.address for c in co_owners_of(session, dataset.id, dataset.terms_version)}
    others = session.execute(
        select(Dataset).where(
            Dataset.content_root == dataset.content_root,  # type: ignore[arg-type]
            Dataset.id != dataset.id,  # type: ignore[arg-type]
            Dataset.status != "rejected",  # type: ignore[arg-type]
        )
    ).scalars()
    opened: list[Dispute] = []
    for other in others:
        theirs = {c.address for c in co_owners_of(session, other.id, other.terms_version)}
        if theirs == own:
            continue
        decided = session.execute(
            select(col(Dispute.id)).where(
                Dispute.dataset_id == dataset.id,  # type: ignore[arg-type]
                Dispute.conflicting_dataset_id == other.id,  # type: ignore[arg-type]
                Dispute.content_root == dataset.content_root,  # type: ignore[arg-type]
                (Dispute.status == "open") | (Dispute.resolution == "upheld"),  # type: ignore[arg-type]
            )
        ).first()
        if decided is not None:
            continue
        dispute = Dispute(
            dataset_id=dataset.id,
            conflicting_dataset_id=other.id,
            content_root=dataset.content_root,
        )
        session.add(dispute)
        opened.append(dispute)
    session.flush()
    return opened


# --- writes -----------------------------------------------------------------------------


def _write_version(
    session: Session,
    dataset: Dataset,
    terms: Terms,
    names: Mapping[str, str | None],
    *,
    files_changed: bool,
) -> None:
    """Store ``terms`` as the dataset's current version ``dataset.terms_version``."""
    dataset.content_root = terms.content.root
    dataset.file_count = terms.content.file_count
    dataset.total_bytes = terms.content.total_bytes
    dataset.licence = terms.licence
    dataset.terms_document_sha256 = terms.terms_document_sha256
    dataset.terms_hash = terms.terms_hash
    dataset.allowed_uses = terms.allowed_uses
    dataset.valid_from = terms.valid_from
    dataset.valid_until = terms.valid_until
    session.add(dataset)
    session.flush()
    if files_changed:
        session.execute(
            delete(DatasetFile).where(DatasetFile.dataset_id == dataset.id)  # type: ignore[arg-type]
        )
        # One executemany, not one ORM object per file: manifests can be large.
        session.execute(
            insert(DatasetFile),
            [
                {"dataset_id": dataset.id, "path": e.path, "size_bytes": e.size, "sha256": e.sha256}
                for e in terms.content.entries
            ],
        )
    for address, share in terms.co_owners:
        owner = ensure_owner(session, address, names.get(address))
        session.add(
            DatasetCoOwner(
                dataset_id=dataset.id,
                terms_version=dataset.terms_version,
                address=address,
                owner_id=owner.id,
                share_bps=share,
            )
        )
    session.add(
        DatasetTerms(
            dataset_id=dataset.id,
            terms_version=dataset.terms_version,
            content_root=terms.content.root,
            licence=terms.licence,
            terms_document_sha256=terms.terms_document_sha256,
            terms_hash=terms.terms_hash,
            allowed_uses=terms.allowed_uses,
            valid_from=terms.valid_from,
            valid_until=terms.valid_until,
            file_count=terms.content.file_count,
            total_bytes=terms.content.total_bytes,
        )
    )
    session.flush()


def registrant_owner(
    session: Session,
    registrant: str,
    co_owners: Sequence[CoOwnerShare | Mapping[str, Any]],
    *,
    controlled: Collection[str] | None,
) -> Owner:
    """The owner record that registers a dataset for a caller.

    ``registrant`` must be one of ``controlled`` (the addresses linked to the caller's
    account; None for an operator at the command line, whose registrant is created if new)
    and one of ``co_owners``, so whoever registers a dataset can see and change it.
    Raises ValidationFailed ``address_*``, ``registrant_not_yours``, ``registrant_not_co_owner``.
    """
    address = normalize_address(registrant, "registrant")
    if controlled is not None and address not in controlled:
        raise ValidationFailed(
            f"registrant {address} is not one of your owner addresses; link it first "
            "(POST /v1/owners/addresses) or register with an address you have linked",
            field="registrant",
            code="registrant_not_yours",
        )
    named = {
        str(c.address if isinstance(c, CoOwnerShare) else c.get("address", "")).lower()
        for c in co_owners
    }
    if address.lower() not in named:
        raise ValidationFailed(
            f"registrant {address} is not among the co_owners; name it with its share, so "
            "the registrant can see and change the dataset",
            field="registrant",
            code="registrant_not_co_owner",
        )
    if controlled is None:
        return ensure_owner(session, address)
    owner = get_owner_by_address(session, address)
    assert owner is not None  # a controlled address has an owner record
    return owner


def register_dataset(
    session: Session,
    *,
    registrant_owner_id: uuid.UUID,
    name: str,
    licence: str,
    allowed_uses: Iterable[str],
    valid_from: datetime,
    files: Iterable[ManifestEntry | Mapping[str, Any]],
    co_owners: Sequence[CoOwnerShare | Mapping[str, Any]],
    description: str = "",
    valid_until: datetime | None = None,
    terms_document: TermsDocument | None = None,
    content_root: str | None = None,
    croissant: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> Dataset:
    """Register a dataset with terms version 1; it counts only once every co-owner signed.

    ``files`` is the manifest (path, size, sha256); ``content_root``, when given, must equal
    the root computed from it. ``co_owners`` shares are basis points summing to 10,000;
    co-owners without an owner record get one. Status is ``pending_signatures``, or
    ``disputed`` when another owner set registered the same content root (module doc).
    ``at`` is when the change happens (default: now). Raises ValidationFailed listing every
    invalid field, NotFound for an unknown registrant.
    """
    errors = ErrorCollector()
    clean_name = _check_text(errors, "name", name, NAME_MAX)
    clean_description = _check_text(errors, "description", description, DESCRIPTION_MAX)
    terms, names = _resolve_terms(
        errors,
        None,
        licence=licence,
        terms_document=terms_document,
        allowed_uses=allowed_uses,
        valid_from=valid_from,
        valid_until=valid_until,
        files=files,
        content_root=content_root,
        co_owners=co_owners,
    )
    errors.raise_if_any("the dataset has invalid fields")
    assert terms is not None
    get_owner(session, registrant_owner_id)
    moment = moment_of(at)
    _lock_content_root(session, terms.content.root)
    dataset = Dataset(
        name=clean_name,
        description=clean_description,
        registrant_owner_id=registrant_owner_id,
        licence=terms.licence,
        terms_hash=terms.terms_hash,
        allowed_uses=terms.allowed_uses,
        valid_from=terms.valid_from,
        content_root=terms.content.root,
        file_count=terms.content.file_count,
        total_bytes=terms.content.total_bytes,
        terms_version=1,
        status="pending_signatures",
        croissant=dict(croissant) if croissant is not None else None,
        created_at=moment,
        updated_at=moment,
    )
    session.add(dataset)
    session.flush()
    _write_version(session, dataset, terms, names, files_changed=True)
    _open_disputes_for_root(session, dataset)
    refresh_status(session, dataset, moment)
    return dataset


def update_dataset(
    session: Session,
    dataset_id: uuid.UUID,
    *,
    name: str | _Unset = UNSET,
    description: str | _Unset = UNSET,
    licence: str | _Unset = UNSET,
    terms_document: TermsDocument | _Unset | None = UNSET,
    allowed_uses: Iterable[str] | _Unset = UNSET,
    valid_from: datetime | _Unset = UNSET,
    valid_until: datetime | _Unset | None = UNSET,
    files: Iterable[ManifestEntry | Mapping[str, Any]] | _Unset = UNSET,
    co_owners: Sequence[CoOwnerShare | Mapping[str, Any]] | _Unset = UNSET,
    content_root: str | None = None,
    croissant: Mapping[str, Any] | _Unset | None = UNSET,
    renew: bool = False,
    at: datetime | None = None,
) -> Dataset:
    """Change what is passed; a change of terms starts a new terms version.

    Name, description and the Croissant document are not terms: they change in place.
    Anything else that changes what co-owners sign (content root, licence or terms
    document, allowed uses, validity, co-owners or shares) bumps ``terms_version``, ends
    the open confirmation interval (``terms_changed``), clears a revocation and asks for
    signatures again. A new ``licence`` replaces the terms document (pass the new one with
    it); ``terms_document`` alone replaces the document under the same licence.
    ``renew=True`` starts a new version even when nothing changed (after a revocation,
    to sign the same terms again). Raises StateError for a rejected dataset.
    """
    dataset = get_dataset(session, dataset_id, for_update=True)
    if dataset.status == "rejected":
        raise StateError(
            f"dataset {dataset_id} was rejected in a dispute and cannot change; "
            "register the content again if the decision is overturned",
            field="dataset_id",
            code="dataset_rejected",
        )
    errors = ErrorCollector()
    new_name = _check_text(errors, "name", name, NAME_MAX) if not isinstance(name, _Unset) else None
    new_description = (
        _check_text(errors, "description", description, DESCRIPTION_MAX)
        if not isinstance(description, _Unset)
        else None
    )
    current = current_terms(session, dataset)
    terms, names = _resolve_terms(
        errors,
        current,
        licence=licence,
        terms_document=terms_document,
        allowed_uses=allowed_uses,
        valid_from=valid_from,
        valid_until=valid_until,
        files=files,
        content_root=content_root,
        co_owners=co_owners,
    )
    errors.raise_if_any("the dataset has invalid fields")
    assert terms is not None
    moment = moment_of(at)
    if new_name is not None:
        dataset.name = new_name
    if new_description is not None:
        dataset.description = new_description
    if not isinstance(croissant, _Unset):
        dataset.croissant = dict(croissant) if croissant is not None else None
    dataset.updated_at = moment
    terms_changed = terms.signed_part() != current.signed_part()
    if terms_changed or renew:
        owners_changed = {a for a, _ in terms.co_owners} != {a for a, _ in current.co_owners}
        root_changed = terms.content.root != current.content.root
        if root_changed:
            _lock_content_root(session, terms.content.root)
        close_interval(session, dataset, moment, "terms_changed")
        dataset.terms_version += 1
        dataset.revoked_at = None
        dataset.confirmed_at = None
        _write_version(
            session,
            dataset,
            terms,
            names,
            files_changed=terms.content.root != current.content.root,
        )
        if root_changed or owners_changed:
            _open_disputes_for_root(session, dataset)
    refresh_status(session, dataset, moment)
    return dataset
