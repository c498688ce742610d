"""ledger.settlements: on-chain anchoring records, claims and reconciliation."""
