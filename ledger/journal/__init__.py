"""ledger.journal."""
