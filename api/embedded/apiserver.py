"""The API under uvicorn in a child process on a loopback port, for whoever needs a real
server next to them: the demo, the benchmarks and the tests (clients that retry while the
server stops and comes back, third-party clients that cannot use an in-process client).

``usefirst serve`` is the operator's way to run the API; this is the programmatic one. The
child inherits the environment, so it uses the caller's database and chain settings.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    """A TCP port nobody listens on at the moment, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiServer:
    """``api.app:create_app`` under uvicorn (``workers`` processes) on 127.0.0.1:``port``
    (a free one by default). ``start()`` returns once ``/healthz`` answers; ``stop()`` and
    ``start()`` again keep the port, so clients see the same server come back. Output goes
    to ``log`` (appended) or to this process's own streams."""

    def __init__(self, port: int | None = None, *, workers: int = 1, log: Path | None = None):
        self.port = port or free_port()
        self.workers = workers
        self.log = log
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> ApiServer:
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
            "--workers",
            str(self.workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        if self.log is not None:
            self._log_file = self.log.open("ab")
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=dict(os.environ),
            stdout=self._log_file,
            stderr=subprocess.STDOUT if self._log_file else None,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise RuntimeError(f"uvicorn exited with {code}{self._see_log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"uvicorn did not answer on {self.url} within {START_TIMEOUT_S:.0f} s{self._see_log()}"
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _see_log(self) -> str:
        return f"; see {self.log}" if self.log is not None else ""
