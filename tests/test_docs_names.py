"""Every module, function and file the docs name exists (issue 17: stale text is a bug).

Scans README.md, CONTRIBUTING.md, CHANGELOG.md and docs/*.md for
* dotted names in backticks starting with ``gradcheck.`` (``gradcheck.numerical.refine_element``):
  the longest importable module prefix is imported and the rest resolved as attributes;
* repository paths in backticks or links (``gradcheck/checker.py``, ``benchmarks/sensitivity.py``,
  ``docs/checker.md``, ``tests/...``, ``examples/...``): the file or folder must exist.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [p for p in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md",
                    *sorted((ROOT / "docs").glob("*.md"))] if p.exists()]

DOTTED = re.compile(r"`(gradcheck(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?:\([^`]*\))?`")
PATH = re.compile(r"(?<![\w/.-])((?:gradcheck|reference|benchmarks|tests|docs|examples|\.ci)/[\w./-]*[\w/])")
#: written output of a run, not files of the repository
GENERATED = ("reports/", "site/")
#: dotted words that are not Python objects: file names, and JUnit failure types the report writes
NOT_PYTHON = {"gradcheck.GradientMismatch"}
FILE_SUFFIXES = (".json", ".xml", ".html", ".md", ".py", ".toml", ".csv", ".txt")
#: the JUnit <property> names the pytest plugin writes (gradcheck.passed, gradcheck.1.passed, ...)
PROPERTY = re.compile(r"gradcheck\.(\d+\.)?(passed|max_rel_error|tolerance|margin|worst|scheme|name|problem|diagnosis)")


def _names() -> list[tuple[str, str]]:
    found = set()
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in DOTTED.finditer(text):
            name = m.group(1)
            if name in NOT_PYTHON or name.endswith(FILE_SUFFIXES) or PROPERTY.fullmatch(name):
                continue
            found.add((doc.relative_to(ROOT).as_posix(), name))
    return sorted(found)


def _paths() -> list[tuple[str, str]]:
    found = set()
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in PATH.finditer(text):
            path = m.group(1).rstrip(".")
            if any(path.startswith(g) for g in GENERATED) or "*" in path or "<" in path:
                continue
            found.add((doc.relative_to(ROOT).as_posix(), path))
    return sorted(found)


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(dotted)


def test_the_scan_finds_names_and_paths():
    assert len(_names()) >= 10 and len(_paths()) >= 10


def _assert_resolves(where: str, dotted: str) -> None:
    try:
        _resolve(dotted)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{where} names `{dotted}`, which does not exist ({type(exc).__name__}: {exc})")


@pytest.mark.parametrize("doc, dotted", _names())
def test_named_python_object_exists(doc, dotted):
    _assert_resolves(doc, dotted)


@pytest.mark.parametrize("doc, path", _paths())
def test_named_file_exists(doc, path):
    assert (ROOT / path).exists(), f"{doc} names {path}, which is not in the repository"


ROLE = re.compile(r":(?:func|mod|class|meth|data|attr|exc):`~?(gradcheck(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")


def _source_references() -> list[tuple[str, str]]:
    found = set()
    for path in sorted((ROOT / "gradcheck").rglob("*.py")):
        for m in ROLE.finditer(path.read_text(encoding="utf-8")):
            found.add((path.relative_to(ROOT).as_posix(), m.group(1)))
    return sorted(found)


@pytest.mark.parametrize("source, dotted", _source_references())
def test_cross_references_in_docstrings_resolve(source, dotted):
    """Sphinx-style references in the package's docstrings (``:func:`gradcheck.x.y```) name real objects."""
    _assert_resolves(source, dotted)
