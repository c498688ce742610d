"""ledger.reports: finance exports of closed statements and the journal (see service.py)."""
