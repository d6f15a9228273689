"""Reports of check results: one offline HTML page, ``gradcheck.json`` and ``junit.xml``.

>>> path = gradcheck.report.write(results, "reports")   # doctest: +SKIP
>>> doc = gradcheck.report.load("reports/gradcheck.json")  # doctest: +SKIP

``results`` are :class:`gradcheck.Result` objects or their ``to_dict()`` (as the pytest plugin
collects them across xdist workers). The three files are rendered in memory first and each is
written atomically (a temporary file in the same folder, then ``os.replace``), so an interrupted
run leaves either the previous report or the new one, never a truncated file.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradcheck.report.records import SCHEMA_ID, check_document, result_dict

__all__ = ["write", "load", "Loaded", "SCHEMA_ID", "SCHEMA_PATH", "HTML_NAME", "JSON_NAME", "JUNIT_NAME"]

HTML_NAME = "index.html"
JSON_NAME = "gradcheck.json"
JUNIT_NAME = "junit.xml"
#: the JSON Schema (draft 2020-12) of ``gradcheck.json``
SCHEMA_PATH = Path(__file__).with_name("schema.json")
DEFAULT_TITLE = "gradcheck report"


@dataclass
class Loaded:
    """A saved report: its results (dicts, as in the file), title, meta and the environment it ran in."""

    results: list[dict[str, Any]]
    title: str = DEFAULT_TITLE
    meta: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    #: the file's schema string (``gradcheck-report/1`` files are read too)
    schema: str = SCHEMA_ID


def write(results: Iterable[Any], out_dir: str | os.PathLike = "reports", *, title: str | None = None,
          meta: Mapping[str, Any] | None = None, junit: bool = True) -> Path:
    """Write ``index.html``, ``gradcheck.json`` and ``junit.xml`` into ``out_dir``; return the HTML path.

    ``results``: :class:`gradcheck.Result` objects or dicts from :meth:`Result.to_dict`. ``meta``: any
    JSON-able facts to show in the summary (``seed``, ``command``, ``duration`` in seconds, ...).
    ``junit=False`` leaves ``junit.xml`` out (the pytest plugin does, unless asked: the checks are
    in pytest's own ``--junitxml`` then, and a second JUnit file would count every failure twice).
    """
    return _write(results, out_dir, title=title, meta=meta, environment=None, junit=junit)


def load(json_path: str | os.PathLike) -> Loaded:
    """Read a ``gradcheck.json`` written by :func:`write` (checks the schema name and version; reads
    ``gradcheck-report/1`` and ``/2``)."""
    path = Path(json_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"json_path={str(path)!r}: no such file") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"json_path={str(path)!r} is not valid JSON: {exc}") from None
    check_document(doc, source=str(path))
    return Loaded(results=doc["results"], title=str(doc.get("title") or DEFAULT_TITLE),
                  meta=dict(doc.get("meta") or {}), environment=dict(doc.get("environment") or {}),
                  schema=str(doc["schema"]))


def _write(results: Iterable[Any], out_dir: str | os.PathLike, *, title: str | None,
           meta: Mapping[str, Any] | None, environment: Mapping[str, str] | None, junit: bool = True) -> Path:
    from gradcheck.report import html, records  # noqa: PLC0415
    from gradcheck.report import junit as junit_module  # noqa: PLC0415

    if isinstance(results, (str, bytes, Mapping)) or not isinstance(results, Iterable):
        raise TypeError(f"results must be a list of gradcheck.Result (or Result.to_dict() dicts), "
                        f"got {type(results).__name__}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    if meta is not None and not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
    if not isinstance(junit, bool):
        raise TypeError(f"junit must be True or False, got {type(junit).__name__}")
    dicts = [result_dict(r, f"results[{i}]") for i, r in enumerate(results)]
    title = title or DEFAULT_TITLE
    meta = records.jsonable(dict(meta or {}))
    env = dict(environment) if environment else records.environment()
    rows = records.make_rows(dicts)
    summary = records.summarize(rows)
    doc = records.document(dicts, title=title, meta=meta, env=env, summary=summary)
    # render everything before touching the folder: a failure here leaves the old report intact
    payload = {JSON_NAME: json.dumps(doc, indent=1, allow_nan=False, ensure_ascii=False) + "\n"}
    if junit:
        payload[JUNIT_NAME] = junit_module.junit_xml(rows, suite=title, meta=meta)
    payload[HTML_NAME] = html.render(rows, title=title, meta=meta, env=env, summary=summary, junit=junit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in payload.items():
        atomic_write(out / name, text)
    return out / HTML_NAME


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
