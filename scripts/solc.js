#!/usr/bin/env node
// A solc-compatible command line over the npm `solc` package (solc-js), so that
// py-solc-x can drive it like the native binary. It answers the two calls
// py-solc-x makes: `--version` and `--standard-json` (input JSON on stdin,
// output JSON on stdout). Imports are resolved from --base-path, every
// --include-path, and this repository's node_modules (for @openzeppelin/...).
"use strict";
const fs = require("fs");
const path = require("path");

const repoRoot = path.resolve(__dirname, "..");
let solc;
try {
  solc = require(path.join(repoRoot, "node_modules", "solc"));
} catch (err) {
  process.stderr.write(
    "solc launcher: the npm package 'solc' is not installed; run `npm install` in " + repoRoot + "\n"
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { version: false, standardJson: false, basePath: null, includePaths: [], allowPaths: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const takeValue = () => {
      if (arg.includes("=")) return arg.slice(arg.indexOf("=") + 1);
      i += 1;
      return argv[i];
    };
    if (arg === "--version" || arg === "-v") opts.version = true;
    else if (arg === "--standard-json") opts.standardJson = true;
    else if (arg.startsWith("--base-path")) opts.basePath = takeValue();
    else if (arg.startsWith("--include-path")) opts.includePaths.push(takeValue());
    else if (arg.startsWith("--allow-paths")) opts.allowPaths.push(...takeValue().split(","));
    else if (arg === "--help" || arg === "-h") opts.help = true;
    else {
      process.stderr.write("solc launcher: unsupported argument " + JSON.stringify(arg) +
        "; only --version and --standard-json (with --base-path/--include-path/--allow-paths) are supported\n");
      process.exit(2);
    }
  }
  return opts;
}

function readStdin() {
  return fs.readFileSync(0, "utf8");
}

function makeImportResolver(opts) {
  const roots = [];
  if (opts.basePath) roots.push(path.resolve(opts.basePath));
  for (const p of opts.includePaths) roots.push(path.resolve(p));
  roots.push(process.cwd());
  roots.push(path.join(repoRoot, "node_modules"));
  roots.push(path.join(repoRoot, "contracts", "src"));
  return function findImports(importPath) {
    const candidates = path.isAbsolute(importPath) ? [importPath] : roots.map((r) => path.join(r, importPath));
    for (const candidate of candidates) {
      try {
        return { contents: fs.readFileSync(candidate, "utf8") };
      } catch (_) {
        // try the next root
      }
    }
    return { error: "File not found: " + importPath + " (searched " + roots.join(", ") + ")" };
  };
}

const opts = parseArgs(process.argv.slice(2));
if (opts.help) {
  process.stdout.write("usefirst solc launcher over solc-js " + solc.version() + "\nUsage: solc --version | solc --standard-json [--base-path P] [--include-path P] [--allow-paths P]\n");
  process.exit(0);
}
if (opts.version) {
  // Same shape as the native binary; py-solc-x parses the "Version:" line.
  process.stdout.write("solc, the solidity compiler commandline interface\nVersion: " + solc.version() + "\n");
  process.exit(0);
}
if (opts.standardJson) {
  const input = readStdin();
  const output = solc.compile(input, { import: makeImportResolver(opts) });
  // No process.exit() after a write: on a pipe, stdout is asynchronous and exiting
  // early truncates the output at the pipe buffer (64 KiB). Let node drain it.
  process.stdout.write(output);
  process.exitCode = 0;
} else {
  process.stderr.write("solc launcher: nothing to do; pass --version or --standard-json\n");
  process.exitCode = 2;
}
