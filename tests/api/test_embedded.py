"""`usefirst up/down/status` as a user runs them, and the clear errors for bad setups."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from ledger.settings import Settings

USEFIRST = [sys.executable, "-m", "api.cli"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*USEFIRST, *args],
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        timeout=timeout,
    )


def by_name(output: str) -> dict[str, dict[str, object]]:
    return {r["name"]: r for r in json.loads(output)}


def test_up_twice_reuses_running_services(services: Settings) -> None:
    first = run_cli("up", "--json")
    assert first.returncode == 0, first.stderr
    second = run_cli("up", "--json")
    assert second.returncode == 0, second.stderr
    a, b = by_name(first.stdout), by_name(second.stdout)
    for name in ("postgres", "anvil", "worker"):
        assert a[name]["running"] and b[name]["running"]
        assert a[name]["pid"] == b[name]["pid"], f"{name} was restarted by a second `up`"


def test_status_reports_pids_urls_and_versions(services: Settings) -> None:
    out = run_cli("status", "--json")
    assert out.returncode == 0, out.stderr
    report = by_name(out.stdout)
    assert report["postgres"]["running"] and "PostgreSQL" in str(report["postgres"]["version"])
    assert str(services.pg_port) in str(report["postgres"]["url"])
    assert report["anvil"]["running"] and str(services.anvil_port) in str(report["anvil"]["url"])
    assert "1.7.1" in str(report["anvil"]["version"])
    assert report["worker"]["running"] and "celery" in str(report["worker"]["version"])
    for name in ("postgres", "anvil", "worker"):
        pid = report[name]["pid"]
        assert isinstance(pid, int) and Path(f"/proc/{pid}").exists()


def _isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["USEFIRST_DATA_DIR"] = str(tmp_path / "data")
    for key in ("DATABASE_URL", "ETH_RPC_URL", "CELERY_BROKER_URL"):
        env.pop(key, None)
    env.update(extra)
    return env


def _assert_one_clear_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    joined = " ".join(lines)
    assert joined.startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in joined, joined


def test_port_taken_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = _isolated_env(tmp_path, USEFIRST_PG_PORT=str(port))
        result = run_cli("up", "--no-worker", env=env)
    _assert_one_clear_line(result, f"port {port}", "USEFIRST_PG_PORT")


def test_corrupted_data_directory_is_one_clear_line(tmp_path: Path) -> None:
    pgdata = tmp_path / "data" / "pg"
    pgdata.mkdir(parents=True)
    (pgdata / "base").write_text("garbage")
    env = _isolated_env(tmp_path, USEFIRST_PG_PORT=str(_free_port()))
    result = run_cli("up", "--no-worker", env=env)
    _assert_one_clear_line(result, "corrupted", str(pgdata))


def test_unreachable_database_url_is_one_clear_line(tmp_path: Path) -> None:
    env = _isolated_env(
        tmp_path, DATABASE_URL=f"postgresql://nobody@127.0.0.1:{_free_port()}/nowhere"
    )
    result = run_cli("migrate", env=env)
    _assert_one_clear_line(result, "cannot reach the database", "DATABASE_URL")


def test_missing_node_is_one_clear_line(tmp_path: Path, database: Settings) -> None:
    node_free = tmp_path / "bin"
    node_free.mkdir()
    env = _isolated_env(
        tmp_path,
        DATABASE_URL=database.effective_database_url,
        USEFIRST_ANVIL_PORT=str(_free_port()),
        # Only an empty directory on PATH: the CLI itself runs from sys.executable.
        PATH=str(node_free),
    )
    assert shutil.which("node", path=env["PATH"]) is None
    result = run_cli("up", "--no-worker", env=env)
    _assert_one_clear_line(result, "Node.js")


def test_stale_pid_record_is_detected_and_cleaned(tmp_path: Path) -> None:
    env = _isolated_env(tmp_path, USEFIRST_ANVIL_PORT=str(_free_port()))
    run_dir = tmp_path / "data" / "run"
    run_dir.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    record = {"name": "anvil", "pid": dead.pid, "marker": "anvil", "started_at": 0, "info": {}}
    (run_dir / "anvil.json").write_text(json.dumps(record))
    result = run_cli("status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    anvil = by_name(result.stdout)["anvil"]
    assert anvil["running"] is False
    assert "stale pid record removed" in anvil["notes"]
    assert not (run_dir / "anvil.json").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_health_checks_with_json_logs(services: Settings) -> None:
    import time
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen(
        [*USEFIRST, "serve", "--port", str(port), "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        body = b""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    body = r.read()
                    break
            except OSError:
                time.sleep(0.3)
        assert json.loads(body) == {"status": "ok"}
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    request_lines = [line for line in output.splitlines() if '"msg": "request"' in line]
    assert request_lines, output
    logged = json.loads(request_lines[0])
    assert logged["path"] == "/healthz" and logged["status"] == 200 and logged["request_id"]
