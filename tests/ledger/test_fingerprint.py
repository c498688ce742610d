"""Content fingerprints: the manifest, its Merkle root, streaming hashing and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.datasets.fingerprint import (
    CHUNK_BYTES,
    MANIFEST_FORMAT,
    FileChangedError,
    ManifestEntry,
    fingerprint_directory,
    fingerprint_entries,
    inclusion_proof,
    manifest_from_json,
    merkle_root,
    validate_manifest,
    verify_inclusion,
)
from ledger.errors import ValidationFailed

REPO_ROOT = Path(__file__).resolve().parents[2]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _reference_root(entries: list[ManifestEntry]) -> str:
    """RFC 6962's recursive definition, written independently of the module's loop."""

    def leaf(e: ManifestEntry) -> bytes:
        return hashlib.sha256(
            b"\x00" + bytes.fromhex(e.sha256) + e.size.to_bytes(8, "big") + e.path.encode()
        ).digest()

    def mth(items: list[ManifestEntry]) -> bytes:
        if len(items) == 1:
            return leaf(items[0])
        k = 1
        while k * 2 < len(items):
            k *= 2
        return hashlib.sha256(b"\x01" + mth(items[:k]) + mth(items[k:])).digest()

    return mth(sorted(entries, key=lambda e: e.path.encode())).hex()


def _entries(n: int) -> list[ManifestEntry]:
    return [ManifestEntry(f"f{i:03d}.bin", i, _sha(bytes([i]))) for i in range(n)]


def _make_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


BIG = os.urandom(CHUNK_BYTES * 2 + 12_345)  # more than two chunks
FILES = {"big/blob.bin": BIG, "a.txt": b"alpha\n", "docs/empty.txt": b"", "z/y/x.csv": b"1,2\n"}


def test_folder_fingerprint_streams_every_file_and_is_exact(tmp_path: Path) -> None:
    _make_tree(tmp_path, FILES)
    progress: list[tuple[str, int]] = []
    started: list[tuple[int, int]] = []
    result = fingerprint_directory(
        tmp_path,
        on_progress=lambda path, n: progress.append((path, n)),
        on_start=lambda count, total: started.append((count, total)),
    )
    expected = sorted(
        (ManifestEntry(path, len(data), _sha(data)) for path, data in FILES.items()),
        key=lambda e: e.path.encode(),
    )
    assert list(result.entries) == expected
    assert result.root == _reference_root(expected)
    assert (result.file_count, result.total_bytes) == (4, sum(len(d) for d in FILES.values()))
    assert started == [(4, result.total_bytes)]
    # Progress arrives chunk by chunk, never more than 1 MiB at once, and adds up.
    big_chunks = [n for path, n in progress if path == "big/blob.bin"]
    assert big_chunks == [CHUNK_BYTES, CHUNK_BYTES, 12_345]
    assert sum(n for _, n in progress) == result.total_bytes


def test_the_root_depends_on_content_and_names_not_on_creation_order(tmp_path: Path) -> None:
    one, two, three = tmp_path / "one", tmp_path / "two", tmp_path / "three"
    _make_tree(one, FILES)
    _make_tree(two, dict(reversed(list(FILES.items()))))
    assert fingerprint_directory(one).root == fingerprint_directory(two).root
    assert fingerprint_directory(one) == fingerprint_directory(one)
    _make_tree(three, {**FILES, "a.txt": b"alphA\n"})
    assert fingerprint_directory(three).root != fingerprint_directory(one).root
    (three / "a.txt").write_bytes(b"alpha\n")
    (three / "a.txt").rename(three / "b.txt")
    assert fingerprint_directory(three).root != fingerprint_directory(one).root


def test_symbolic_links_are_skipped_and_reported(tmp_path: Path) -> None:
    _make_tree(tmp_path / "data", {"real.txt": b"x"})
    (tmp_path / "data" / "link.txt").symlink_to(tmp_path / "data" / "real.txt")
    (tmp_path / "data" / "linked-dir").symlink_to(tmp_path)
    result = fingerprint_directory(tmp_path / "data")
    assert [e.path for e in result.entries] == ["real.txt"]
    assert result.skipped == ("link.txt (symbolic link)", "linked-dir (symbolic link to a folder)")


def test_a_single_file_can_be_fingerprinted(tmp_path: Path) -> None:
    target = tmp_path / "corpus.jsonl"
    target.write_bytes(b'{"a": 1}\n')
    result = fingerprint_directory(target)
    assert result.entries == (ManifestEntry("corpus.jsonl", 9, _sha(b'{"a": 1}\n')),)


def test_a_file_that_changes_while_hashed_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "growing.log"
    target.write_bytes(b"x" * (CHUNK_BYTES + 10))

    appended: list[int] = []

    def append(_path: str, _n: int) -> None:
        if not appended:  # once: a writer that never stops would keep the read going
            appended.append(1)
            with target.open("ab") as handle:
                handle.write(b"more")

    with pytest.raises(FileChangedError, match="changed while it was being hashed"):
        fingerprint_directory(tmp_path, on_progress=append)


def test_known_roots_of_small_manifests() -> None:
    one = [ManifestEntry("a", 1, _sha(b"a"))]
    leaf = hashlib.sha256(b"\x00" + hashlib.sha256(b"a").digest() + (1).to_bytes(8, "big") + b"a")
    assert merkle_root(one) == leaf.hexdigest()
    assert merkle_root([]) == _sha(b"")
    for n in range(2, 10):
        assert merkle_root(_entries(n)) == _reference_root(_entries(n))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), data=st.data())
def test_every_file_has_an_inclusion_proof(n: int, data: st.DataObject) -> None:
    entries = _entries(n)
    root = merkle_root(entries)
    index = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(entries, entries[index].path)
    assert verify_inclusion(entries[index], proof, root)
    tampered = ManifestEntry(entries[index].path, entries[index].size + 1, entries[index].sha256)
    assert not verify_inclusion(tampered, proof, root)


@settings(max_examples=40, deadline=None)
@given(
    files=st.dictionaries(
        st.text(alphabet="abcdefgh/é", min_size=1, max_size=12).filter(
            lambda p: "" not in p.split("/")
        ),
        st.integers(0, 10**12),
        min_size=1,
        max_size=20,
    ),
    seed=st.randoms(use_true_random=False),
)
def test_the_root_ignores_the_order_entries_are_given_in(files: dict[str, int], seed) -> None:
    entries = [{"path": p, "size": s, "sha256": _sha(p.encode())} for p, s in files.items()]
    shuffled = list(entries)
    seed.shuffle(shuffled)
    assert fingerprint_entries(entries).root == fingerprint_entries(shuffled).root


def test_paths_are_nfc_normalised_and_hashes_lower_cased() -> None:
    decomposed = unicodedata.normalize("NFD", "café.txt")
    result = validate_manifest([{"path": decomposed, "size": 1, "sha256": "AB" * 32}])
    assert result == (ManifestEntry("café.txt", 1, "ab" * 32),)


@pytest.mark.parametrize(
    ("entry", "field", "code"),
    [
        ({"path": "../etc/passwd", "size": 1, "sha256": "a" * 64}, "path", "manifest_path_invalid"),
        ({"path": "/abs", "size": 1, "sha256": "a" * 64}, "path", "manifest_path_invalid"),
        ({"path": "a\\b", "size": 1, "sha256": "a" * 64}, "path", "manifest_path_invalid"),
        ({"path": "a//b", "size": 1, "sha256": "a" * 64}, "path", "manifest_path_invalid"),
        ({"path": "a\nb", "size": 1, "sha256": "a" * 64}, "path", "manifest_path_invalid"),
        ({"path": "", "size": 1, "sha256": "a" * 64}, "path", "manifest_path_invalid"),
        ({"path": "a", "size": -1, "sha256": "a" * 64}, "size", "manifest_size_invalid"),
        ({"path": "a", "size": True, "sha256": "a" * 64}, "size", "manifest_size_invalid"),
        ({"path": "a", "size": 1.5, "sha256": "a" * 64}, "size", "manifest_size_invalid"),
        ({"path": "a", "size": 1, "sha256": "a" * 63}, "sha256", "manifest_sha256_invalid"),
        ({"path": "a", "size": 1, "sha256": "g" * 64}, "sha256", "manifest_sha256_invalid"),
    ],
)
def test_bad_manifest_entries_name_the_field(
    entry: dict[str, object], field: str, code: str
) -> None:
    good = {"path": "ok.txt", "size": 3, "sha256": "b" * 64}
    with pytest.raises(ValidationFailed) as caught:
        validate_manifest([good, entry])
    assert [(e.field, e.code) for e in caught.value.errors] == [(f"files/1/{field}", code)]


def test_duplicate_and_empty_manifests_are_refused() -> None:
    same = {"path": "a.txt", "size": 1, "sha256": "c" * 64}
    with pytest.raises(ValidationFailed) as caught:
        validate_manifest([same, dict(same)])
    assert caught.value.errors[0].code == "manifest_path_duplicate"
    assert "entries 0 and 1" in caught.value.errors[0].message
    with pytest.raises(ValidationFailed) as caught:
        validate_manifest([])
    assert caught.value.errors[0].code == "manifest_empty"


def test_manifest_json_round_trips_and_detects_tampering(tmp_path: Path) -> None:
    _make_tree(tmp_path, FILES)
    document = fingerprint_directory(tmp_path).as_json()
    assert manifest_from_json(json.loads(json.dumps(document))).root == document["root"]
    document["files"][0]["size"] += 1
    with pytest.raises(ValidationFailed) as caught:
        manifest_from_json(document)
    assert caught.value.code == "content_root_mismatch"
    with pytest.raises(ValidationFailed) as caught:
        manifest_from_json({**document, "format": "other/v2"})
    assert caught.value.code == "manifest_format"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "dataset", "fingerprint", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )


def test_cli_prints_the_manifest_as_json_and_progress_on_stderr(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _make_tree(data, FILES)
    out_file = tmp_path / "manifest.json"
    proc = _cli(str(data), "--json", "--output", str(out_file))
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed == json.loads(out_file.read_text())
    assert printed["format"] == MANIFEST_FORMAT
    assert printed["root"] == fingerprint_directory(data).root
    assert [f["path"] for f in printed["files"]] == sorted(FILES, key=str.encode)
    # The byte progress bar goes to stderr, so stdout stays parseable.
    assert "fingerprint" in proc.stderr and "4 files" in proc.stderr and "MB" in proc.stderr


def test_cli_summary_and_errors(tmp_path: Path) -> None:
    _make_tree(tmp_path, {"one.txt": b"1"})
    proc = _cli(str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert f"content root  {fingerprint_directory(tmp_path).root}" in proc.stdout
    assert "files         1" in proc.stdout
    missing = _cli(str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
