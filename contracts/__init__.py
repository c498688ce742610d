"""usefirst contracts package."""
