"""Idempotent deployment of the usefirst contracts, with one record per chain.

The record ``settings.deployments_dir / f"{chain_id}.json"`` holds, per contract, the address,
the deployment transaction and block, the keccak-256 of the runtime code found on chain and of
the compiled creation code. :func:`ensure_deployed` reuses the record while it still describes
the chain, and deploys afresh when it does not:

- no record, or the code at a recorded address differs (a fresh chain, another chain on the same
  id): deploy everything and write a new record;
- the sources changed, or the configured roles or challenge window differ from what was deployed
  ("outdated"): on the local chain redeploy; on any other chain keep the existing contracts (they
  may hold funds) and log what differs.

A file lock serialises concurrent deployers on the same machine.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_utils import keccak, to_checksum_address
from web3 import Web3

from contracts.compiler import EVM_VERSION, OPTIMIZER_RUNS, compiler_version, get_contract
from contracts.errors import ChainConfigError, DeploymentError
from contracts.transactions import ChainKeys, Transactor, connect, load_keys
from ledger.settings import Settings, get_settings

log = logging.getLogger(__name__)

RECORD_FORMAT = "usefirst-deployment-v1"
REGISTRY = "DatasetRegistry"
SETTLEMENT = "RoyaltySettlement"
TOKEN = "RoyaltyToken"  # noqa: S105 - a contract name, not a secret
DEFAULT_CHALLENGE_WINDOW_S = 86_400


@dataclass(frozen=True)
class DeployedContract:
    name: str
    address: str
    tx_hash: str
    block_number: int
    block_hash: str
    # keccak-256 of the runtime code read back from the chain (immutables included).
    code_hash: str
    # keccak-256 of the compiled creation code, without constructor arguments.
    creation_code_hash: str


@dataclass(frozen=True)
class Deployment:
    """Where the usefirst contracts live on one chain, and how they were configured."""

    chain_id: int
    contracts: dict[str, DeployedContract]
    token_address: str
    deployer: str
    settler: str
    guardian: str
    challenge_window_s: int
    compiler: dict[str, Any] = field(default_factory=dict)
    deployed_at: str = ""
    format: str = RECORD_FORMAT

    @property
    def registry_address(self) -> str:
        return self.contracts[REGISTRY].address

    @property
    def settlement_address(self) -> str:
        return self.contracts[SETTLEMENT].address

    @property
    def from_block(self) -> int:
        """The first block that can hold usefirst events (for log queries)."""
        return min(c.block_number for c in self.contracts.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        if data.get("format") != RECORD_FORMAT:
            raise DeploymentError(f"unknown deployment record format {data.get('format')!r}")
        contracts = {name: DeployedContract(**c) for name, c in data["contracts"].items()}
        return cls(**{**data, "contracts": contracts})


def challenge_window_s(settings: Settings, chain_id: int) -> int:
    """The configured challenge window, defaulting to 0 on the local chain and 1 day elsewhere."""
    if settings.chain_challenge_window_s is not None:
        return settings.chain_challenge_window_s
    return 0 if chain_id == settings.anvil_chain_id else DEFAULT_CHALLENGE_WINDOW_S


def deployment_path(settings: Settings, chain_id: int) -> Path:
    return settings.deployments_dir / f"{chain_id}.json"


def load_deployment(settings: Settings, chain_id: int) -> Deployment | None:
    """The recorded deployment for ``chain_id``, or None if there is no record."""
    path = deployment_path(settings, chain_id)
    if not path.exists():
        return None
    return Deployment.from_dict(json.loads(path.read_text()))


def _write_record(path: Path, deployment: Deployment) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(deployment.to_dict(), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _code_hash(w3: Web3, address: str) -> str:
    return "0x" + keccak(bytes(w3.eth.get_code(to_checksum_address(address)))).hex()


def _creation_code_hash(name: str) -> str:
    return "0x" + keccak(hexstr=get_contract(name).bytecode).hex()


def missing_code(w3: Web3, deployment: Deployment) -> list[str]:
    """Contracts of the record whose on-chain code is absent or different (empty = all there)."""
    problems = []
    for name, deployed in deployment.contracts.items():
        if _code_hash(w3, deployed.address) != deployed.code_hash:
            problems.append(f"{name} at {deployed.address}: code differs from the record")
    return problems


def outdated(deployment: Deployment, keys: ChainKeys, settings: Settings) -> list[str]:
    """What differs between the deployed contracts and the current sources and settings."""
    problems = []
    for name, deployed in deployment.contracts.items():
        if _creation_code_hash(name) != deployed.creation_code_hash:
            problems.append(f"{name}: the sources changed since deployment")
    wanted = {"settler": keys.settler.address, "guardian": keys.guardian.address}
    for role, address in wanted.items():
        if getattr(deployment, role) != address:
            problems.append(f"{role} is {address} but {getattr(deployment, role)} was deployed")
    window = challenge_window_s(settings, deployment.chain_id)
    if window != deployment.challenge_window_s:
        problems.append(
            f"challenge window is {window} s but {deployment.challenge_window_s} s was deployed"
        )
    configured_token = settings.chain_token_address
    if configured_token and configured_token.lower() != deployment.token_address.lower():
        problems.append(f"token is {configured_token} but {deployment.token_address} was deployed")
    return problems


def ensure_deployed(
    w3: Web3 | None = None,
    *,
    settings: Settings | None = None,
    keys: ChainKeys | None = None,
    force: bool = False,
) -> Deployment:
    """The usefirst contracts on the node's chain, deploying them only when needed.

    Idempotent: a second call finds the record and the code on chain and sends nothing.
    ``force`` deploys anew regardless. Raises ChainConfigError when keys or the token address
    are missing for a non-local chain, and the chain errors of :class:`Transactor`.
    """
    settings = settings or get_settings()
    w3 = w3 or connect(settings)
    chain_id = w3.eth.chain_id
    keys = keys or load_keys(settings, chain_id)
    path = deployment_path(settings, chain_id)
    with _file_lock(path.with_suffix(".lock")):
        record = None if force else load_deployment(settings, chain_id)
        if record is not None:
            gone = missing_code(w3, record)
            if gone:
                log.warning("redeploying on chain %d: %s", chain_id, "; ".join(gone))
            else:
                stale = outdated(record, keys, settings)
                if not stale:
                    return record
                if chain_id != settings.anvil_chain_id:
                    log.warning(
                        "deployment on chain %d is outdated (%s); keeping it because it may "
                        "hold funds; deploy with force=True to replace it",
                        chain_id,
                        "; ".join(stale),
                    )
                    return record
                log.info("redeploying on the local chain: %s", "; ".join(stale))
        deployment = _deploy(w3, settings, keys, chain_id)
        _write_record(path, deployment)
        return deployment


def _deploy(w3: Web3, settings: Settings, keys: ChainKeys, chain_id: int) -> Deployment:
    transactor = Transactor.from_settings(w3, settings, chain_id)
    window = challenge_window_s(settings, chain_id)
    deployer = keys.deployer
    contracts: dict[str, DeployedContract] = {}

    def deploy_one(name: str, *args: Any) -> str:
        compiled = get_contract(name)
        factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
        result = transactor.send(deployer, factory.constructor(*args))
        if result.contract_address is None:
            raise DeploymentError(f"deploying {name}: receipt {result.tx_hash} has no address")
        contracts[name] = DeployedContract(
            name=name,
            address=result.contract_address,
            tx_hash=result.tx_hash,
            block_number=result.block_number,
            block_hash=result.block_hash,
            code_hash=_code_hash(w3, result.contract_address),
            creation_code_hash=_creation_code_hash(name),
        )
        log.info("deployed %s at %s (%s)", name, result.contract_address, result.tx_hash)
        return result.contract_address

    token: str
    if settings.chain_token_address:
        token = to_checksum_address(settings.chain_token_address)
        if not w3.eth.get_code(token):
            raise ChainConfigError(
                f"USEFIRST_CHAIN_TOKEN_ADDRESS {token} has no code on chain {chain_id}"
            )
    elif chain_id == settings.anvil_chain_id:
        token = deploy_one(TOKEN, deployer.address)
    else:
        raise ChainConfigError(
            f"chain {chain_id} is not the local chain: set USEFIRST_CHAIN_TOKEN_ADDRESS to the "
            "ERC20 settlements are paid in"
        )
    deploy_one(REGISTRY, deployer.address, keys.settler.address)
    deploy_one(SETTLEMENT, deployer.address, keys.settler.address, keys.guardian.address, window)
    return Deployment(
        chain_id=chain_id,
        contracts=contracts,
        token_address=token,
        deployer=deployer.address,
        settler=keys.settler.address,
        guardian=keys.guardian.address,
        challenge_window_s=window,
        compiler={
            "solc": compiler_version(),
            "evm_version": EVM_VERSION,
            "optimizer_runs": OPTIMIZER_RUNS,
        },
        deployed_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
