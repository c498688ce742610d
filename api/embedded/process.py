"""Process bookkeeping shared by the embedded services: pid files, ports, stopping.

Every service we start writes ``<data_dir>/run/<name>.json`` with its pid, the
command it runs and what it serves. A record whose process is gone, or whose pid
now belongs to another program, is *stale*: it is reported and removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil


class SetupError(RuntimeError):
    """An expected setup failure; its message is one line saying what is wrong and what to do."""


@dataclass
class ServiceRecord:
    name: str
    pid: int
    marker: str  # a string that must appear in the process command line
    started_at: float
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def path(cls, run_dir: Path, name: str) -> Path:
        return run_dir / f"{name}.json"

    def save(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        target = self.path(run_dir, self.name)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        tmp.replace(target)

    @classmethod
    def load(cls, run_dir: Path, name: str) -> ServiceRecord | None:
        target = cls.path(run_dir, name)
        if not target.exists():
            return None
        try:
            data = json.loads(target.read_text())
            return cls(**data)
        except (ValueError, TypeError):
            # A half-written or foreign file: treat as stale.
            target.unlink(missing_ok=True)
            return None

    def remove(self, run_dir: Path) -> None:
        self.path(run_dir, self.name).unlink(missing_ok=True)

    def is_alive(self) -> bool:
        return pid_matches(self.pid, self.marker)


def pid_matches(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and its command line contains ``marker`` (guards pid reuse)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return marker in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def load_live_record(run_dir: Path, name: str) -> tuple[ServiceRecord | None, bool]:
    """Return ``(record, was_stale)``; a stale record is deleted."""
    record = ServiceRecord.load(run_dir, name)
    if record is None:
        return None, False
    if record.is_alive():
        return record, False
    record.remove(run_dir)
    return None, True


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, timeout_s: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.1)
    return False


def stop_process_group(pid: int, timeout_s: float = 15.0, leader_first_s: float = 0.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL whatever is left.

    ``leader_first_s`` > 0: SIGTERM only the leader first and give it that long to stop
    its own children (a Celery worker's warm shutdown; a TERM to the whole group kills
    its pool first, and the leader then waits for the lost children until its own
    timeout)."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    if leader_first_s > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        _wait_gone(pid, leader_first_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    _wait_gone(pid, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    # Reap if it is our child (e.g. started in this same process by a test).
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or _is_zombie(pid):
            return
        time.sleep(0.1)


def _is_zombie(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def tail(path: Path, lines: int = 5) -> str:
    if not path.exists():
        return ""
    content = path.read_text(errors="replace").splitlines()
    return " | ".join(line.strip() for line in content[-lines:] if line.strip())
