"""Import every table module so SQLModel.metadata knows the whole schema.

Alembic's env and the test setup import this module; add each new domain's
``models`` module here.
"""

from __future__ import annotations

from ledger import ops_models  # noqa: F401
