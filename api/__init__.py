"""usefirst api package."""
