// Reference output of @openzeppelin/merkle-tree for the Python compatibility tests.
// stdin: {"values": [[address, amountDecimalString], ...]}
// stdout: {"root": hex, "proofs": [[hex, ...] per value], "dump": tree.dump()}
"use strict";
const fs = require("fs");
const path = require("path");
const { StandardMerkleTree } = require(
  path.join(__dirname, "..", "..", "node_modules", "@openzeppelin", "merkle-tree")
);

const input = JSON.parse(fs.readFileSync(0, "utf8"));
const tree = StandardMerkleTree.of(input.values, ["address", "uint256"]);
const proofs = input.values.map((_, i) => tree.getProof(i));
const output = JSON.stringify({ root: tree.root, proofs, dump: tree.dump() });
// writeSync: a plain write may be cut off at 64 KiB when stdout is a pipe and node exits.
fs.writeSync(1, output);
