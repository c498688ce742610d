"""The settlements domain's service API: anchoring, claim indexing and reconciliation.

The rules live in ``anchoring.py`` (prepare → publish → confirm), ``indexer.py`` (``Claimed``
events → claims, journal payouts, paid periods; ``SettlementRevoked`` events → revocations),
``revocations.py`` (a guardian's revocation: funding reversed, settlement revoked, period back
to closed; shared by the indexer and anchoring) and ``reconcile.py`` (ledger vs chain
findings); journal postings in ``postings.py``; the statement → tree conversion, shared with
owners' self-verification, in ``tree.py``; settlement ids per attempt in ``ids.py``. Each
function takes ids, reloads its rows and is safe to run again (Celery tasks call them as they
are).
"""

from __future__ import annotations

from ledger.settlements.anchoring import (
    NO_PAYABLE_NOTE,
    AnchorOutcome,
    anchor_period,
    confirm_settlement,
    prepare_settlement,
    publish_settlement,
)
from ledger.settlements.indexer import IndexOutcome, index_claims
from ledger.settlements.reconcile import Finding, ReconcileReport, reconcile
from ledger.settlements.revocations import RevocationOutcome, apply_revocation

__all__ = [
    "NO_PAYABLE_NOTE",
    "AnchorOutcome",
    "Finding",
    "IndexOutcome",
    "ReconcileReport",
    "RevocationOutcome",
    "anchor_period",
    "apply_revocation",
    "confirm_settlement",
    "index_claims",
    "prepare_settlement",
    "publish_settlement",
    "reconcile",
]
