"""Support for the SDK and integration tests: a real uvicorn server in a subprocess
(for clients that retry while the server is stopped and restarted, and third-party
clients such as the OpenLineage HTTP transport that cannot talk to an in-process test
client), and a model team with a model and datasets.

The subprocess inherits the environment, so it uses the test session's database; start
it only after the ``database`` fixture has migrated it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine
from sqlmodel import Session

from tests.api.conftest import ApiPrincipal
from tests.ledger import factories

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """``api.app:create_app`` under uvicorn on a loopback port; ``stop()`` and
    ``start()`` keep the port, so clients see the same server come back."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> LiveServer:
        if self.running:
            return self
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        self._process = subprocess.Popen(command, cwd=REPO_ROOT, env=dict(os.environ))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self._process.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"uvicorn did not answer on {self.url} within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


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
