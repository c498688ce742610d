"""The demo's corpora: real text that ships with Python itself, written as files, chunked
for retrieval, and questions generated from their titles and function names."""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

CHUNK_CHARS = 1_200


@dataclass(frozen=True)
class Corpus:
    """One corpus: a name and its documents (relative file name → text)."""

    name: str
    title: str
    documents: dict[str, str]


@dataclass(frozen=True)
class Passage:
    corpus: str
    chunk_id: str
    text: str


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "x"


def language_reference() -> Corpus:
    from pydoc_data.topics import topics

    documents = {f"{_safe(key)}.txt": text for key, text in sorted(topics.items()) if text}
    return Corpus("python-reference", "Python language reference topics", documents)


def docstrings(name: str, title: str, modules: tuple[str, ...]) -> Corpus:
    """The documentation strings of ``modules``: one file per public function or class."""
    documents: dict[str, str] = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        doc = inspect.getdoc(module)
        if doc:
            documents[f"{module_name}/__module__.txt"] = f"{module_name}\n\n{doc}"
        for attr, value in sorted(vars(module).items()):
            if attr.startswith("_") or not (inspect.isfunction(value) or inspect.isclass(value)):
                continue
            if getattr(value, "__module__", None) not in (module_name, f"_{module_name}"):
                continue
            doc = inspect.getdoc(value)
            if doc:
                documents[f"{module_name}/{_safe(attr)}.txt"] = f"{module_name}.{attr}\n\n{doc}"
    return Corpus(name, title, documents)


def all_corpora() -> list[Corpus]:
    return [
        language_reference(),
        docstrings(
            "stdlib-formats",
            "Docstrings of json, csv, argparse, textwrap, string",
            ("json", "csv", "argparse", "textwrap", "string"),
        ),
        docstrings(
            "stdlib-time-paths",
            "Docstrings of pathlib, datetime, calendar, shutil",
            ("pathlib", "datetime", "calendar", "shutil"),
        ),
    ]


def write_corpus(corpus: Corpus, root: Path) -> Path:
    """Write the corpus under ``root/<name>/`` (replacing what a previous run left)."""
    directory = root / corpus.name
    if directory.exists():
        for old in sorted(directory.rglob("*"), reverse=True):
            old.unlink() if old.is_file() else old.rmdir()
    for relative, text in corpus.documents.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory


def passages(corpus: Corpus) -> list[Passage]:
    """Chunks of about ``CHUNK_CHARS`` characters, split on blank lines; chunk ids are
    ``<file>#<n>``."""
    out: list[Passage] = []
    for relative, text in sorted(corpus.documents.items()):
        buffer, index = "", 0
        for paragraph in text.split("\n\n"):
            if buffer and len(buffer) + len(paragraph) > CHUNK_CHARS:
                out.append(Passage(corpus.name, f"{relative}#{index}", buffer))
                buffer, index = "", index + 1
            buffer = f"{buffer}\n\n{paragraph}" if buffer else paragraph
        if buffer.strip():
            out.append(Passage(corpus.name, f"{relative}#{index}", buffer))
    return out


TEMPLATES = (
    "How does {} work in Python?",
    "What is {} used for?",
    "Show an example of {}.",
    "What are the pitfalls of {}?",
)


def questions(corpora: list[Corpus], count: int) -> list[str]:
    """``count`` questions built from topic titles and function names (each subject in
    several phrasings), the corpora interleaved."""
    pools: list[list[str]] = []
    for corpus in corpora:
        subjects = []
        for relative in sorted(corpus.documents):
            subject = relative.removesuffix(".txt").replace("/", ".").replace("-", " ")
            subjects.append(subject.removesuffix(".__module__"))
        pools.append([t.format(s) for t in TEMPLATES for s in subjects])
    out: list[str] = []
    position = 0
    while len(out) < count and any(position < len(p) for p in pools):
        out.extend(p[position] for p in pools if position < len(p))
        position += 1
    return out[:count]
