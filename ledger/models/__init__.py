"""ledger.models."""
