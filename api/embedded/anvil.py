"""The embedded EVM node: ``anvil`` from the npm package ``@foundry-rs/anvil``.

It listens on a loopback port and keeps its chain in a state file under the data
directory (written every few seconds and on shutdown), so a restart keeps the
chain and our deployment records stay valid.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from api.embedded.process import (
    ServiceRecord,
    SetupError,
    load_live_record,
    port_is_free,
    stop_process_group,
    tail,
    wait_for_port,
)
from ledger.settings import Settings

NAME = "anvil"


@dataclass
class AnvilStatus:
    running: bool
    pid: int | None
    port: int
    url: str
    version: str
    stale_record_removed: bool = False
    block_number: int | None = None


def binary(settings: Settings) -> Path:
    """The native anvil binary inside node_modules (no node wrapper in between)."""
    root = settings.node_root / "node_modules" / "@foundry-rs"
    for candidate in sorted(root.glob("anvil-*/bin/anvil")):
        return candidate
    wrapper = settings.node_root / "node_modules" / ".bin" / "anvil"
    if wrapper.exists():
        return wrapper
    raise SetupError(
        "anvil is not installed (node_modules/@foundry-rs/anvil missing); "
        "run `npm install` in the repository (or `make demo`), which needs Node.js 20 and npm"
    )


def version(settings: Settings) -> str:
    out = subprocess.run(
        [str(binary(settings)), "--version"], capture_output=True, text=True, check=False
    )
    first = out.stdout.strip().splitlines()[:1]
    return first[0].replace("Version: ", "") if first else "unknown"


def rpc(
    url: str, method: str, params: list[object] | None = None, timeout_s: float = 5.0
) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(  # noqa: S310 - loopback/configured URL only
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        payload = json.loads(response.read())
    if "error" in payload:
        raise RuntimeError(payload["error"])
    return payload["result"]


def status(settings: Settings) -> AnvilStatus:
    record, stale = load_live_record(settings.run_dir, NAME)
    url = f"http://127.0.0.1:{settings.anvil_port}"
    block: int | None = None
    if record is not None:
        try:
            block = int(str(rpc(url, "eth_blockNumber")), 16)
        except (OSError, RuntimeError, ValueError):
            block = None
    return AnvilStatus(
        running=record is not None,
        pid=record.pid if record else None,
        port=settings.anvil_port,
        url=url,
        version=version(settings),
        stale_record_removed=stale,
        block_number=block,
    )


def start(settings: Settings) -> AnvilStatus:
    current = status(settings)
    if current.running:
        return current
    if not port_is_free(settings.anvil_port):
        raise SetupError(
            f"port {settings.anvil_port} (embedded anvil) is taken by another program; "
            "free it or set USEFIRST_ANVIL_PORT to a free port"
        )
    exe = binary(settings)
    state_file = settings.anvil_state_file
    state_file.parent.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    log_file = settings.log_dir / "anvil.log"
    command = [
        str(exe),
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.anvil_port),
        "--chain-id",
        str(settings.anvil_chain_id),
        "--state",
        str(state_file),
        "--state-interval",
        str(settings.anvil_state_interval_s),
    ]
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    record = ServiceRecord(
        name=NAME,
        pid=proc.pid,
        marker=str(state_file),
        started_at=time.time(),
        info={"port": settings.anvil_port, "state_file": str(state_file)},
    )
    record.save(settings.run_dir)
    url = f"http://127.0.0.1:{settings.anvil_port}"
    deadline = time.monotonic() + settings.service_start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            record.remove(settings.run_dir)
            raise SetupError(
                f"anvil exited at start (log: {log_file}: {tail(log_file, 3)}); "
                f"if its state file {state_file} is corrupted, move it away to start a fresh chain"
            )
        if wait_for_port(settings.anvil_port, 0.5):
            try:
                rpc(url, "eth_chainId")
                return status(settings)
            except (OSError, RuntimeError):
                pass
    stop_process_group(proc.pid)
    record.remove(settings.run_dir)
    raise SetupError(f"anvil did not answer on {url} within {settings.service_start_timeout_s}s")


def stop(settings: Settings) -> bool:
    record, _ = load_live_record(settings.run_dir, NAME)
    if record is None:
        return False
    # SIGTERM lets anvil dump its state file before exiting.
    stop_process_group(record.pid, timeout_s=20)
    record.remove(settings.run_dir)
    return True
