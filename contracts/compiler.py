"""Compile the Solidity sources in ``contracts/src`` through py-solc-x.

The compiler is chosen in this order: ``SOLC_BINARY`` if set, a native ``solc``
on PATH if its version is the pinned one, else the ``scripts/solc`` launcher over
the npm ``solc`` package (py-solc-x cannot download compilers on our machines).
Outputs (ABI + bytecode) are build artefacts cached in ``contracts/build`` under
a key made of the compiler version, settings and every source's SHA-256, so they
are rebuilt exactly when something changes and never edited by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import solcx

from ledger.settings import REPO_ROOT

# Pinned compiler: package.json pins the same solc-js version.
SOLC_VERSION = "0.8.28"
EVM_VERSION = "cancun"
OPTIMIZER_RUNS = 200

SOURCES_DIR = Path(__file__).resolve().parent / "src"
BUILD_DIR = Path(__file__).resolve().parent / "build"
LAUNCHER = REPO_ROOT / "scripts" / "solc"
NODE_MODULES = REPO_ROOT / "node_modules"


# Parsed compiler outputs of this process, by cache key.
_OUTPUTS: dict[str, dict[str, Any]] = {}


class CompilerError(RuntimeError):
    """The compiler could not be found or rejected the sources."""


@dataclass(frozen=True)
class CompiledContract:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str


# A binary's version cannot change under a running process, and asking the node launcher
# costs half a second, which every get_contract() call would otherwise pay.
@lru_cache(maxsize=8)
def _binary_version(binary: str) -> str | None:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return None


def find_solc() -> tuple[str, str]:
    """Return ``(path, version string)`` of the compiler to use, or raise CompilerError."""
    explicit = os.environ.get("SOLC_BINARY")
    if explicit:
        version = _binary_version(explicit)
        if version is None:
            raise CompilerError(f"SOLC_BINARY={explicit} does not answer `--version`; fix the path")
        if not version.startswith(SOLC_VERSION + "+"):
            raise CompilerError(
                f"SOLC_BINARY={explicit} is solc {version}, but usefirst pins {SOLC_VERSION}; "
                "point SOLC_BINARY at solc {SOLC_VERSION} or unset it"
            )
        return explicit, version
    native = shutil.which("solc")
    if native:
        version = _binary_version(native)
        if version and version.startswith(SOLC_VERSION + "+"):
            return native, version
    if not (NODE_MODULES / "solc").is_dir():
        raise CompilerError(
            f"no solc {SOLC_VERSION}: node_modules/solc is missing; "
            "run `npm install` (or `make demo`)"
        )
    version = _binary_version(str(LAUNCHER))
    if version is None:
        raise CompilerError(f"the solc launcher {LAUNCHER} did not start; is Node.js 20 installed?")
    return str(LAUNCHER), version


def _source_files() -> dict[str, Path]:
    return {p.relative_to(SOURCES_DIR).as_posix(): p for p in sorted(SOURCES_DIR.rglob("*.sol"))}


def _standard_input(sources: dict[str, Path]) -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": {name: {"content": path.read_text()} for name, path in sources.items()},
        "settings": {
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "evmVersion": EVM_VERSION,
            # Relative to --base-path (the repo root) so bytecode does not depend on
            # where the checkout lives.
            "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"],
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
            },
        },
    }


def compile_all(force: bool = False) -> dict[str, CompiledContract]:
    """Compile every contract under ``contracts/src``; cached by content hash."""
    sources = _source_files()
    if not sources:
        raise CompilerError(f"no Solidity sources under {SOURCES_DIR}")
    binary, version = find_solc()
    standard_input = _standard_input(sources)
    key_material = json.dumps(
        {"version": version, "input": standard_input, "oz": _oz_version()}, sort_keys=True
    )
    key = hashlib.sha256(key_material.encode()).hexdigest()[:16]
    cache_file = BUILD_DIR / f"combined-{key}.json"
    if not force and key in _OUTPUTS:
        output = _OUTPUTS[key]
    elif cache_file.exists() and not force:
        output = json.loads(cache_file.read_text())
    else:
        if binary == str(LAUNCHER):
            output = _compile_with_launcher(standard_input)
        else:
            try:
                output = solcx.compile_standard(
                    standard_input,
                    solc_binary=binary,
                    base_path=str(REPO_ROOT),
                    allow_paths=[str(SOURCES_DIR), str(NODE_MODULES)],
                )
            except solcx.exceptions.SolcError as exc:
                raise CompilerError(f"solc rejected the sources: {exc}") from exc
        errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
        if errors:
            raise CompilerError("\n".join(e.get("formattedMessage", str(e)) for e in errors))
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        # A per-process temporary name: concurrent compilers (pytest workers) must not
        # interleave their writes before the atomic rename.
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(output))
        tmp.replace(cache_file)
    _OUTPUTS[key] = output
    contracts: dict[str, CompiledContract] = {}
    for source_name in sources:
        for name, data in output["contracts"].get(source_name, {}).items():
            contracts[name] = CompiledContract(
                name=name,
                abi=data["abi"],
                bytecode="0x" + data["evm"]["bytecode"]["object"],
                deployed_bytecode="0x" + data["evm"]["deployedBytecode"]["object"],
            )
    return contracts


def _compile_with_launcher(standard_input: dict[str, Any]) -> dict[str, Any]:
    """Run the solc-js launcher with its stdout going to a file, and parse the output.

    The launcher ends with ``process.exit()`` right after writing, which cuts off
    output written to a pipe at 64 KiB (Node writes to pipes asynchronously);
    writes to a regular file are synchronous, so the output arrives whole.
    """
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as out:
        proc = subprocess.run(
            [
                str(LAUNCHER),
                "--standard-json",
                "--base-path",
                str(REPO_ROOT),
                "--allow-paths",
                f"{SOURCES_DIR},{NODE_MODULES}",
            ],
            input=json.dumps(standard_input),
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=600,
            check=False,
        )
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise CompilerError(f"the solc launcher failed ({proc.returncode}): {proc.stderr.strip()}")
    try:
        output: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CompilerError(f"the solc launcher wrote invalid JSON: {exc}") from exc
    return output


def get_contract(name: str) -> CompiledContract:
    contracts = compile_all()
    try:
        return contracts[name]
    except KeyError:
        raise CompilerError(f"no contract named {name}; have {sorted(contracts)}") from None


def compiler_version() -> str:
    return find_solc()[1]


def _oz_version() -> str:
    package = NODE_MODULES / "@openzeppelin" / "contracts" / "package.json"
    if not package.exists():
        return "missing"
    return str(json.loads(package.read_text()).get("version"))
