"""ledger.owners."""
