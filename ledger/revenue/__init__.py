"""ledger.revenue."""
