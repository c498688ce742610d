"""ledger.periods."""
