"""Import every table module so SQLModel.metadata knows the whole schema.

Alembic's env and the test setup import this module; add each new domain's
``models`` module here.
"""

from __future__ import annotations

from ledger import ops_models  # noqa: F401
from ledger.access import models as access_models  # noqa: F401
from ledger.datasets import models as datasets_models  # noqa: F401
from ledger.journal import models as journal_models  # noqa: F401
from ledger.models import models as models_models  # noqa: F401
from ledger.owners import models as owners_models  # noqa: F401
from ledger.periods import models as periods_models  # noqa: F401
from ledger.revenue import models as revenue_models  # noqa: F401
from ledger.rights import models as rights_models  # noqa: F401
from ledger.settlements import models as settlements_models  # noqa: F401
from ledger.usage import models as usage_models  # noqa: F401
