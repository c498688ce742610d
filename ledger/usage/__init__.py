"""ledger.usage."""
