"""OpenZeppelin ``StandardMerkleTree`` for statement lines ``(address account, uint256 amount)``.

Byte-for-byte compatible with ``@openzeppelin/merkle-tree`` 1.x
``StandardMerkleTree.of(values, ["address", "uint256"])`` (default ``sortLeaves: true``):

- leaf = ``keccak256(keccak256(abi.encode(account, amount)))`` (double hashing keeps a leaf from
  ever being confused with an inner node);
- inner node = ``keccak256(min(a, b) ++ max(a, b))`` (sorted pairs, what ``MerkleProof.verify``
  expects);
- leaves are sorted by hash (stably), laid out at the end of a ``2n - 1`` array in reverse, and
  each parent ``i`` hashes its children ``2i + 1`` and ``2i + 2``; the root is ``tree[0]``;
- :meth:`StandardMerkleTree.dump` returns the JS ``tree.dump()`` document (``standard-v1``), and
  :meth:`StandardMerkleTree.load` reads one written by either side.

Statement trees (:func:`statement_tree`) add the settlement rule of one line per account with a
positive amount; the generic tree, like the JS one, accepts any values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_hash.auto import keccak

LEAF_ENCODING: tuple[str, str] = ("address", "uint256")
DUMP_FORMAT = "standard-v1"
UINT256_MAX = 2**256 - 1

_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_ZERO_PAD_12 = bytes(12)


class MerkleTreeError(ValueError):
    """A value, proof or dump is not a valid ``(address, uint256)`` StandardMerkleTree input."""

    code = "merkle_invalid"


@dataclass(frozen=True)
class Line:
    """One statement line: pay ``amount_units`` token base units to ``account``."""

    account: str
    amount_units: int


def _check_value(account: str, amount: int) -> None:
    if not isinstance(account, str) or not _ADDRESS_RE.match(account):
        raise MerkleTreeError(f"account {account!r} is not a 0x-prefixed 20-byte hex address")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= UINT256_MAX:
        raise MerkleTreeError(f"amount {amount!r} for {account} is not a uint256 integer")


def leaf_hash(account: str, amount: int) -> bytes:
    """The 32-byte StandardMerkleTree leaf of ``(account, amount)``; same as the contract's."""
    _check_value(account, amount)
    encoded = _ZERO_PAD_12 + bytes.fromhex(account[2:]) + amount.to_bytes(32, "big")
    return keccak(keccak(encoded))


def node_hash(a: bytes, b: bytes) -> bytes:
    """Hash of two sibling nodes in sorted order (commutative)."""
    return keccak(a + b) if a <= b else keccak(b + a)


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root reached by hashing ``leaf`` up along ``proof``."""
    node = leaf
    for sibling in proof:
        node = node_hash(node, sibling)
    return node


def verify(root: bytes | str, account: str, amount: int, proof: Sequence[bytes | str]) -> bool:
    """Whether ``(account, amount)`` with ``proof`` belongs to the tree with ``root``.

    Never raises for a malformed proof or value; it is simply not valid.
    """
    try:
        leaf = leaf_hash(account, amount)
        proof_bytes = [_to_bytes32(p) for p in proof]
        root_bytes = _to_bytes32(root)
    except MerkleTreeError:
        return False
    return process_proof(leaf, proof_bytes) == root_bytes


def _to_bytes32(value: bytes | str) -> bytes:
    if isinstance(value, str):
        text = value[2:] if value.startswith(("0x", "0X")) else value
        try:
            value = bytes.fromhex(text)
        except ValueError as exc:
            raise MerkleTreeError(f"{value!r} is not hex") from exc
    if len(value) != 32:
        raise MerkleTreeError(f"a Merkle node has 32 bytes, got {len(value)}")
    return value


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


class StandardMerkleTree:
    """An OpenZeppelin StandardMerkleTree over ``(address, uint256)`` values.

    Build with :meth:`of` or :meth:`load`. Values keep their input order (``values[i]`` is the
    i-th input); ``tree_indices[i]`` is where its leaf sits in :attr:`tree`.
    """

    __slots__ = ("_by_account", "tree", "tree_indices", "values")

    def __init__(
        self, tree: list[bytes], values: list[tuple[str, int]], tree_indices: list[int]
    ) -> None:
        self.tree = tree
        self.values = values
        self.tree_indices = tree_indices
        self._by_account: dict[str, int] | None = None

    # --- construction --------------------------------------------------------------------

    @classmethod
    def of(
        cls, values: Iterable[tuple[str, int]], *, sort_leaves: bool = True
    ) -> StandardMerkleTree:
        """Build the tree of ``values`` exactly as the JS ``StandardMerkleTree.of`` does.

        Raises MerkleTreeError if there are no values or one is not ``(address, uint256)``.
        """
        value_list = [(account, amount) for account, amount in values]
        if not value_list:
            raise MerkleTreeError("a Merkle tree needs at least one value")
        hashed = [(leaf_hash(a, v), i) for i, (a, v) in enumerate(value_list)]
        if sort_leaves:
            # Python's sort is stable like Array.prototype.sort, so equal leaves keep input
            # order as in the JS library.
            hashed.sort(key=lambda item: item[0])
        n = len(hashed)
        size = 2 * n - 1
        tree: list[bytes] = [b""] * size
        tree_indices = [0] * n
        for leaf_index, (leaf, value_index) in enumerate(hashed):
            tree[size - 1 - leaf_index] = leaf
            tree_indices[value_index] = size - 1 - leaf_index
        for i in range(size - 1 - n, -1, -1):
            left, right = tree[2 * i + 1], tree[2 * i + 2]
            tree[i] = keccak(left + right) if left <= right else keccak(right + left)
        return cls(tree, value_list, tree_indices)

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> StandardMerkleTree:
        """Read a ``standard-v1`` dump (ours or the JS library's) and check it is consistent.

        Raises MerkleTreeError naming what is wrong.
        """
        if data.get("format") != DUMP_FORMAT:
            raise MerkleTreeError(f"unknown Merkle dump format {data.get('format')!r}")
        if list(data.get("leafEncoding", [])) != list(LEAF_ENCODING):
            raise MerkleTreeError(
                f"leafEncoding must be {list(LEAF_ENCODING)}, got {data.get('leafEncoding')!r}"
            )
        tree = [_to_bytes32(node) for node in data["tree"]]
        values: list[tuple[str, int]] = []
        tree_indices: list[int] = []
        for entry in data["values"]:
            account, amount_text = entry["value"]
            values.append((account, int(amount_text)))
            tree_indices.append(int(entry["treeIndex"]))
        loaded = cls(tree, values, tree_indices)
        loaded.validate()
        return loaded

    def validate(self) -> None:
        """Check every value's leaf and every inner node; raises MerkleTreeError if not."""
        size = len(self.tree)
        if size == 0 or size % 2 == 0:
            raise MerkleTreeError(f"a tree of n leaves has 2n - 1 nodes, got {size}")
        for (account, amount), index in zip(self.values, self.tree_indices, strict=True):
            if not (size // 2 <= index < size) or self.tree[index] != leaf_hash(account, amount):
                raise MerkleTreeError(f"value ({account}, {amount}) is not at tree index {index}")
        for i in range(size // 2):
            if self.tree[i] != node_hash(self.tree[2 * i + 1], self.tree[2 * i + 2]):
                raise MerkleTreeError(f"node {i} is not the hash of its children")

    # --- reading -------------------------------------------------------------------------

    @property
    def root(self) -> bytes:
        """The 32-byte root (what the settlement contract stores)."""
        return self.tree[0]

    @property
    def root_hex(self) -> str:
        return _hex(self.tree[0])

    def __len__(self) -> int:
        return len(self.values)

    def get_proof(self, value_index: int) -> list[bytes]:
        """The sibling hashes from the leaf of ``values[value_index]`` up to the root (excluded)."""
        index = self.tree_indices[value_index]
        proof: list[bytes] = []
        while index > 0:
            sibling = index - 1 if index % 2 == 0 else index + 1
            proof.append(self.tree[sibling])
            index = (index - 1) // 2
        return proof

    def get_proof_hex(self, value_index: int) -> list[str]:
        """:meth:`get_proof` as 0x-hex strings, as the JS ``getProof`` returns them."""
        return [_hex(node) for node in self.get_proof(value_index)]

    def index_of(self, account: str) -> int:
        """The value index of ``account``'s line (first one if the tree has several).

        Raises KeyError if the account has no line.
        """
        if self._by_account is None:
            by_account: dict[str, int] = {}
            for i, (a, _) in enumerate(self.values):
                by_account.setdefault(a.lower(), i)
            self._by_account = by_account
        return self._by_account[account.lower()]

    def line_proof(self, account: str) -> tuple[int, list[bytes]]:
        """``(amount, proof)`` of ``account``'s line; raises KeyError if it has none."""
        i = self.index_of(account)
        return self.values[i][1], self.get_proof(i)

    def dump(self) -> dict[str, Any]:
        """The JS ``tree.dump()`` document; amounts are decimal strings as JSON has no uint256."""
        return {
            "format": DUMP_FORMAT,
            "leafEncoding": list(LEAF_ENCODING),
            "tree": [_hex(node) for node in self.tree],
            "values": [
                {"value": [account, str(amount)], "treeIndex": index}
                for (account, amount), index in zip(self.values, self.tree_indices, strict=True)
            ],
        }


def statement_tree(lines: Iterable[Line] | Iterable[tuple[str, int]]) -> StandardMerkleTree:
    """The settlement tree of a statement: one line per account, every amount positive.

    Raises MerkleTreeError on a repeated account (the contract keys claims by account, so a
    second line for it could never be claimed) or on a zero amount (it could not be claimed).
    """
    values: list[tuple[str, int]] = []
    seen: set[str] = set()
    for line in lines:
        account, amount = (
            (line.account, line.amount_units) if isinstance(line, Line) else (line[0], line[1])
        )
        _check_value(account, amount)
        if amount == 0:
            raise MerkleTreeError(f"line for {account} has amount 0; leave it out of the statement")
        key = account.lower()
        if key in seen:
            raise MerkleTreeError(f"account {account} has more than one line; merge them first")
        seen.add(key)
        values.append((account, amount))
    return StandardMerkleTree.of(values)
