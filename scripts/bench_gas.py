"""Gas benchmark of the settlement contracts; prints a table and rewrites ``## Gas`` in
docs/BENCHMARKS.md.

    .venv/bin/python scripts/bench_gas.py [--rpc-url URL] [--no-write]

Without ``--rpc-url`` (or ``ETH_RPC_URL``) it starts a private anvil on a free port and stops it
at the end. Contracts are deployed fresh into a temporary deployment directory. Gas is the
receipt's ``gasUsed`` (intrinsic and calldata cost included, refunds deducted).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from web3 import Web3  # noqa: E402

from api.embedded import anvil  # noqa: E402
from contracts.client import ClaimLine, UsefirstChain  # noqa: E402
from contracts.compiler import EVM_VERSION, OPTIMIZER_RUNS, compiler_version  # noqa: E402
from contracts.merkle import StandardMerkleTree, statement_tree  # noqa: E402
from ledger.settings import Settings  # noqa: E402

BENCHMARKS = REPO_ROOT / "docs" / "BENCHMARKS.md"
STATEMENT_HASH = b"\x42" * 32
BIG_LINES = 100_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def node(rpc_url: str | None) -> Iterator[str]:
    """The RPC URL to measure on; starts (and stops) a private anvil when none is given."""
    if rpc_url:
        yield rpc_url
        return
    port = free_port()
    binary = anvil.binary(Settings())
    proc = subprocess.Popen(
        [str(binary), "--port", str(port), "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        w3 = Web3(Web3.HTTPProvider(url))
        for _ in range(100):
            if w3.is_connected():
                break
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def random_accounts(n: int, rng: random.Random) -> list[str]:
    return [Web3.to_checksum_address(rng.randbytes(20)) for _ in range(n)]


def publish(
    chain: UsefirstChain, tree: StandardMerkleTree, total: int, *, execution: bool = False
) -> tuple[bytes, int]:
    """Fund and publish ``tree`` under a fresh id; returns ``(settlement id, publish gas)``,
    the execution part only (no intrinsic or calldata gas) when ``execution``."""
    settlement_id = os.urandom(32)
    chain.mint_test_tokens(chain.keys.settler.address, total)
    token = chain.token()
    # Approve separately so the publish receipt measures publish alone.
    chain.transactor.send(
        chain.keys.settler, token.functions.approve(chain.settlement.address, total)
    )
    fn = chain.settlement.functions.publish(
        settlement_id, tree.root, total, chain.token_address, STATEMENT_HASH
    )
    result = chain.transactor.send(chain.keys.settler, fn)
    if execution:
        return settlement_id, execution_gas(chain, result.tx_hash, result.gas_used)
    return settlement_id, result.gas_used


def execution_gas(chain: UsefirstChain, tx_hash: str, gas_used: int) -> int:
    """``gas_used`` minus the 21,000 intrinsic gas and the calldata bytes (4 zero, 16 other)."""
    data = bytes(chain.w3.eth.get_transaction(tx_hash)["input"])  # type: ignore[arg-type]
    zeros = data.count(0)
    return gas_used - 21_000 - 4 * zeros - 16 * (len(data) - zeros)


def claim_gas(chain: UsefirstChain, settlement_id: bytes, tree: StandardMerkleTree, i: int) -> int:
    account, amount = tree.values[i]
    return chain.claim(settlement_id, account, amount, tree.get_proof(i)).gas_used


def measure(rpc_url: str) -> tuple[dict[str, int], str]:
    rng = random.Random(2026)
    workdir = Path(tempfile.mkdtemp(prefix="usefirst-bench-gas-"))
    try:
        settings = Settings().model_copy(
            update={
                "data_dir": workdir,
                "eth_rpc_url": rpc_url,
                "chain_challenge_window_s": 0,
                "chain_confirmations": 1,
            }
        )
        chain = UsefirstChain.connect(settings, deploy=True)
        results: dict[str, int] = {}

        # The contract's first publication also pays for its first token balance and settlement
        # counter (zero to non-zero writes); warm up so both measured publications are alike.
        warmup = statement_tree([(random_accounts(1, rng)[0], 1)])
        publish(chain, warmup, 1)
        small_lines = [(a, rng.randrange(1, 10**9)) for a in random_accounts(10, rng)]
        small = statement_tree(small_lines)
        small_total = sum(a for _, a in small_lines)
        _, results["publish_10_lines"] = publish(chain, small, small_total)
        _, results["publish_10_lines_exec"] = publish(chain, small, small_total, execution=True)

        started = time.perf_counter()
        big_lines = [(a, rng.randrange(1, 10**9)) for a in random_accounts(BIG_LINES, rng)]
        big = statement_tree(big_lines)
        results["tree_build_ms"] = int((time.perf_counter() - started) * 1000)
        big_total = sum(a for _, a in big_lines)
        big_id, results["publish_100000_lines"] = publish(chain, big, big_total)
        _, results["publish_100000_lines_exec"] = publish(chain, big, big_total, execution=True)

        # Leaves sit 16 or 17 levels deep in a 100,000-leaf tree; measure the deepest.
        deep = [i for i in range(200) if len(big.get_proof(i)) == 17][:3]
        results["proof_siblings"] = len(big.get_proof(deep[0]))

        # 1. A payee's first claim ever: no token balance, no claimed-bits word yet.
        results["claim_first_empty_wallet"] = claim_gas(chain, big_id, big, deep[0])
        # 2. First claim in this contract of a payee who already holds the token.
        holder, _ = big.values[deep[1]]
        chain.mint_test_tokens(holder, 1)
        results["claim_first_funded_wallet"] = claim_gas(chain, big_id, big, deep[1])
        # 3. Steady state: an owner who claimed an earlier settlement claims the next one
        #    (token balance and claimed-bits word both already non-zero).
        next_id, _ = publish(chain, big, big_total)
        results["claim_repeat_owner"] = claim_gas(chain, next_id, big, deep[1])

        # claimMany, one owner collecting N settlements (the owner's batch) and a relayer
        # paying N payees of one settlement.
        owner_index = deep[2]
        owner, owner_amount = big.values[owner_index]
        owner_proof = tuple(big.get_proof(owner_index))
        for n in (10, 100):
            ids = [publish(chain, big, big_total)[0] for _ in range(n)]
            lines = [ClaimLine(sid, owner, owner_amount, owner_proof) for sid in ids]
            results[f"claim_many_owner_{n}"] = chain.claim_many(lines).tx.gas_used
        offset = 200
        for n in (10, 100):
            lines = []
            for i in range(offset, offset + n):
                account, amount = big.values[i]
                lines.append(ClaimLine(big_id, account, amount, tuple(big.get_proof(i))))
            offset += n
            results[f"claim_many_payees_{n}"] = chain.claim_many(lines).tx.gas_used
        info: Any = chain.w3.provider.make_request("anvil_nodeInfo", [])  # type: ignore[arg-type]
        hardfork = str((info.get("result") or {}).get("hardFork", "unknown"))
        return results, hardfork
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def render(results: dict[str, int], hardfork: str, command: str) -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    publish_equal = results["publish_10_lines_exec"] == results["publish_100000_lines_exec"]
    repeat = results["claim_repeat_owner"]
    funded = results["claim_first_funded_wallet"]
    empty = results["claim_first_empty_wallet"]
    verdict = "meets" if repeat <= 70_000 else f"misses by {repeat - 70_000:,}"
    rows = [
        (
            "publish, 10-line statement",
            results["publish_10_lines"],
            f"execution gas {results['publish_10_lines_exec']:,}",
        ),
        (
            "publish, 100,000-line statement",
            results["publish_100000_lines"],
            (
                f"execution gas {results['publish_100000_lines_exec']:,} "
                + ("= 10 lines" if publish_equal else "DIFFERS from 10 lines")
            ),
        ),
        (
            "claim, 100,000-line proof: repeat owner",
            repeat,
            f"target ≤ 70,000: {verdict}; payee claimed an earlier settlement, holds the token",
        ),
        (
            "claim, 100,000-line proof: first claim, funded wallet",
            funded,
            f"+{funded - repeat:,}: the payee's first claimed-bits word",
        ),
        (
            "claim, 100,000-line proof: first claim, empty wallet",
            empty,
            f"+{empty - funded:,} more: the payee's first token balance (ERC20 storage)",
        ),
        ("claimMany, 1 owner × 10 settlements", results["claim_many_owner_10"], "one transfer"),
        ("claimMany, 1 owner × 100 settlements", results["claim_many_owner_100"], "one transfer"),
        ("claimMany, 10 payees of one settlement", results["claim_many_payees_10"], "new wallets"),
        (
            "claimMany, 100 payees of one settlement",
            results["claim_many_payees_100"],
            "new wallets",
        ),
    ]
    table = "\n".join(f"| {name} | {gas:,} | {note} |" for name, gas, note in rows)
    return f"""## Gas

Command: `{command}` (a private anvil, fresh contracts).
Machine: {os.cpu_count()} cores, `uname -m` = {platform.machine()}, {cpu}.
Compiler: solc {compiler_version()}, optimizer on ({OPTIMIZER_RUNS} runs), EVM `{EVM_VERSION}`,
no via-IR. Node: anvil, hardfork `{hardfork}`.
Gas is the receipt's `gasUsed` (21,000 intrinsic and calldata included). Claims use leaves
{results["proof_siblings"]} levels deep (the deepest of the 100,000-line tree, built in
{results["tree_build_ms"]:,} ms in Python).

| operation | gas | note |
|---|---:|---|
{table}

Publishing stores the root, never the lines, so its execution gas does not depend on the
statement size (`gasUsed` varies by a few gas with the calldata bytes of the root and total).

A claim of a 17-deep proof spends 21,000 intrinsic + about 10,100 calldata gas (708 bytes)
before any code runs. Execution is dominated by storage: five cold reads in the settlement
contract (pause flag, root, packed token/window/status/sequence, remaining, the payee's
claimed-bits word), two writes, and the token's two balances. The claimed-bits word (one bit per
settlement, 256 settlements per word, keyed by payee) and the payee's token balance each cost
22,100 gas when zero and 5,000 when not, which is why a new payee's first claim costs about
34,000 gas more than an owner's recurring claim; with one `(account, amount)` leaf per payee no
layout avoids that first write. Getting the recurring claim under 70,000 would need one cold
read less, i.e. a two-slot settlement layout (a `uint96` remaining and a root truncated to 176
bits for verification); we kept the full 256-bit root.
"""


def write_section(section: str) -> None:
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    start = text.find("\n## Gas\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        tail = "" if end == -1 else text[end:]
        text = text[: start + 1] + section + tail
    BENCHMARKS.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpc-url", default=os.environ.get("ETH_RPC_URL"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    with node(args.rpc_url) as url:
        results, hardfork = measure(url)
    section = render(results, hardfork, ".venv/bin/python scripts/bench_gas.py")
    print(section)
    if not args.no_write:
        write_section(section)
        print(f"wrote the ## Gas section of {BENCHMARKS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
