"""usefirst ledger package."""
