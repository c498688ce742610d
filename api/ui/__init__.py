"""The web dashboard: server-rendered pages for owners, model teams and finance under
``/ui`` (see docs/ARCHITECTURE.md, "Dashboard"). ``install(app)`` mounts it."""

from api.ui.routes import install, router

__all__ = ["install", "router"]
