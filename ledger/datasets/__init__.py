"""ledger.datasets."""
