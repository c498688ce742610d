"""Access: API keys of principals and stored idempotent responses."""
