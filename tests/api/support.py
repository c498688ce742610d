"""Support for the SDK and integration tests: a real uvicorn server in a subprocess
(``LiveServer``, the shared ``api.embedded.apiserver.ApiServer``: for clients that retry
while the server is stopped and restarted, and third-party clients such as the
OpenLineage HTTP transport that cannot talk to an in-process test client), and a model
team with a model and datasets.

The subprocess inherits the environment, so it uses the test session's database; start
it only after the ``database`` fixture has migrated it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session

from api.embedded.apiserver import REPO_ROOT, ApiServer, free_port
from tests.api.conftest import ApiPrincipal
from tests.ledger import factories

# The tests' name for the shared launcher (api/embedded/apiserver.py).
LiveServer = ApiServer
__all__ = ["REPO_ROOT", "LiveServer", "Team", "free_port", "team_with_model"]


@dataclass
class Team:
    """A model team (its API principal) with one model and some datasets."""

    team: ApiPrincipal
    model_id: uuid.UUID
    datasets: list[uuid.UUID]


def team_with_model(
    principal: Callable[..., ApiPrincipal],
    db_engine: Engine,
    allowed_uses: tuple[int, ...] = (factories.BOTH, factories.BOTH),
) -> Team:
    """A committed model team, its model (agreement in tokens) and one confirmed dataset
    per entry of ``allowed_uses`` (``factories.TRAIN``, ``RAG`` or ``BOTH``)."""
    team = principal("model_team")
    with Session(db_engine, expire_on_commit=False) as session:
        model = factories.make_model(session)
        model.account_id = team.account_id
        session.add(model)
        datasets = [factories.make_dataset(session, allowed_uses=u).id for u in allowed_uses]
        session.commit()
    return Team(team, model.id, datasets)
