"""``gradcheck report merge A.json B.json ... --out DIR``: the shards of one sweep as one report.

Each input is a ``gradcheck.json`` written by ``gradcheck sweep`` (``--shard I/N`` or not). The
files must come from one sweep: the same seed, the same gradcheck version and the same sweep
configuration (``meta["sweep config"]``, the options that decide the cells and their records);
anything else is refused with a one-line :class:`MergeError` naming the files and the values. A
record name found in two files, or a cell whose records are in two files, is a duplicate and is
refused too. With shards, every shard 1..N must be there (``allow_missing=True`` merges what there
is and says which are missing). The records are put back in the sweep's cell order, so N shards
merged give the unsharded sweep's records, record for record.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MergeError", "Merged", "merge", "write_merged"]


class MergeError(ValueError):
    """Reports that cannot be merged: a one-line message naming the files and values."""


@dataclass
class Merged:
    """The merged report: records in cell order, and what to write with them."""

    results: list[dict[str, Any]]
    title: str
    meta: dict[str, Any]
    environment: dict[str, str]
    #: problems that did not stop the merge (missing shards with ``allow_missing``)
    warnings: list[str] = field(default_factory=list)


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)


def _same(what: str, values: Mapping[str, Any]) -> None:
    """Refuse unless every file has the same value of ``what``."""
    distinct = {repr(v) for v in values.values()}
    if len(distinct) > 1:
        listed = ", ".join(f"{name} {what} {_shown(v)}" for name, v in values.items())
        raise MergeError(f"mixed {what}s: {listed}; merge only the reports of one sweep")


def _config_difference(configs: Mapping[str, Any]) -> None:
    names = list(configs)
    first = configs[names[0]]
    for other in names[1:]:
        theirs = configs[other]
        keys = [k for k in sorted(set(first) | set(theirs)) if first.get(k) != theirs.get(k)]
        if keys:
            k = keys[0]
            raise MergeError(f"mixed sweep configs: {names[0]} {k}={_shown(first.get(k))}, "
                             f"{other} {k}={_shown(theirs.get(k))}; merge only the reports of one sweep")


def _record_cell(record: Mapping[str, Any]) -> tuple[str, str, str, str] | None:
    """``(kind, activation, loss, dtype)`` of a sweep record, read from its name
    (``conv2d: relu x mse [...] (realistic)`` or ``tanh x mse [...] (margin)``) and its spec's dtype."""
    name = str(record.get("name") or "")
    head, sep, rest = name.partition(": ")
    kind = head if sep and " " not in head and " x " in rest else "dense"
    body = rest if kind != "dense" else name
    activation, sep, tail = body.partition(" x ")
    if not sep or " [" not in tail:
        return None
    spec = record.get("spec")
    dtype = spec.get("dtype") if isinstance(spec, Mapping) and spec.get("dtype") else record.get("dtype")
    return (kind, activation, tail.split(" [", 1)[0], str(dtype or ""))


def _config(meta_config: Mapping[str, Any]) -> Any:
    """The SweepConfig a report's ``sweep config`` describes (``"all"`` back to None)."""
    from gradcheck.sweep import CELL_SET_FIELDS, SweepConfig  # noqa: PLC0415

    values: dict[str, Any] = {}
    for name in CELL_SET_FIELDS:
        if name not in meta_config:
            raise MergeError(f"sweep config without {name!r}")
        v = meta_config[name]
        values[name] = None if v == "all" else tuple(v) if isinstance(v, list) else v
    return SweepConfig(out=None, quiet=True, **values)


_SHARD_OPTION = re.compile(r"\s--shard(?:=|\s+)\S+")


def merge(paths: Sequence[str | os.PathLike], *, allow_missing: bool = False) -> Merged:
    """Merge the sweep reports ``paths`` (see the module docstring); raises :class:`MergeError`."""
    from gradcheck.report import load  # noqa: PLC0415
    from gradcheck.shards import cell_key, parse_shard, shard_of  # noqa: PLC0415
    from gradcheck.sweep import sweep_cells  # noqa: PLC0415

    if not paths:
        raise MergeError("no reports to merge: give the gradcheck.json of every shard")
    names = [str(p) for p in paths]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise MergeError(f"{twice} given twice")
    loaded = {}
    for name in names:
        try:
            loaded[name] = load(name)
        except (OSError, ValueError) as exc:
            raise MergeError(str(exc)) from None
    for name, doc in loaded.items():
        if not isinstance(doc.meta.get("sweep config"), dict):
            raise MergeError(f"{name} is not a report of gradcheck sweep with its configuration "
                             "(no 'sweep config' in its meta): only sweep reports can be merged")
    _same("seed", {n: d.meta.get("seed") for n, d in loaded.items()})
    _same("gradcheck version", {n: d.meta.get("gradcheck version", d.environment.get("gradcheck"))
                                for n, d in loaded.items()})
    _config_difference({n: d.meta["sweep config"] for n, d in loaded.items()})

    # shards: all or none, one N, each I once, every I there
    shards: dict[str, tuple[int, int]] = {}  # the sharded files only
    for name, doc in loaded.items():
        text = doc.meta.get("shard")
        try:
            if text is not None:
                shards[name] = parse_shard(str(text))
        except ValueError:
            raise MergeError(f"{name}: meta shard={text!r} is not I/N") from None
    sharded = list(shards)
    whole = [n for n in names if n not in shards]
    if sharded and whole:
        raise MergeError(f"{whole[0]} is a whole sweep and {sharded[0]} shard {loaded[sharded[0]].meta['shard']}: "
                         "merge the shards of one sweep")
    warnings: list[str] = []
    missing: list[str] = []
    if sharded:
        _same("shard count", {n: f"N={shards[n][1]}" for n in sharded})
        total = shards[sharded[0]][1]
        seen: dict[int, str] = {}
        for name in sharded:
            i = shards[name][0]
            if i in seen:
                raise MergeError(f"shard {i}/{total} given twice: {seen[i]} and {name}")
            seen[i] = name
        missing = [f"{i}/{total}" for i in range(1, total + 1) if i not in seen]
        if missing:
            message = f"missing shard(s) {', '.join(missing)} of {total}"
            if not allow_missing:
                raise MergeError(f"{message}: give every shard's gradcheck.json (or --allow-missing)")
            warnings.append(message + ": the merged report leaves their cells out")

    # the sweep's cells, to check each record's place and to put the records in cell order
    cfg = _config(loaded[names[0]].meta["sweep config"])
    try:
        todo = sweep_cells(cfg)
    except ValueError as exc:
        raise MergeError(f"{names[0]}: its sweep config does not name cells of this gradcheck: {exc}") from None
    index_of = {cell_key(item): i for i, item in enumerate(todo)}
    record_file: dict[str, str] = {}
    cell_file: dict[int, str] = {}
    keyed: list[tuple[int, int, int, dict[str, Any]]] = []
    for f, name in enumerate(names):
        doc = loaded[name]
        allowed = set(shard_of(todo, *shards[name])) if name in shards else None
        for position, record in enumerate(doc.results):
            rname = str(record.get("name"))
            if rname in record_file and record_file[rname] != name:
                raise MergeError(f"duplicate record {rname!r}: in {record_file[rname]} and {name}")
            record_file[rname] = name
            key = _record_cell(record)
            cell = index_of.get(key) if key is not None else None
            if cell is None:
                raise MergeError(f"{name}: record {rname!r} is not a cell of its sweep config")
            if cell_file.setdefault(cell, name) != name:
                raise MergeError(f"duplicate cell {' '.join(key or ())}: records in {cell_file[cell]} and {name}")
            if allowed is not None and cell not in allowed:
                raise MergeError(f"{name}: record {rname!r} is not in shard {doc.meta['shard']} "
                                 "(a shard of another partition?)")
            keyed.append((cell, f, position, record))
    keyed.sort(key=lambda t: t[:3])

    first = loaded[names[0]]
    meta = dict(first.meta)
    meta.pop("shard", None)
    meta["command"] = _SHARD_OPTION.sub("", str(meta.get("command") or "gradcheck sweep"))
    durations = [d.meta.get("duration (s)") for d in loaded.values()]
    if all(isinstance(x, (int, float)) for x in durations):
        meta["duration (s)"] = round(sum(float(x) for x in durations if x is not None), 2)
    skipped = [d.meta.get("skipped cells") for d in loaded.values()]
    if all(isinstance(x, int) for x in skipped):
        meta["skipped cells"] = sum(int(x) for x in skipped if x is not None)
    executors = list(dict.fromkeys(str(d.meta["executor"]) for d in loaded.values() if "executor" in d.meta))
    if executors:
        meta["executor"] = ", ".join(executors)
    meta["merged from"] = [f"{name} (shard {shards[name][0]}/{shards[name][1]})" if name in shards else name
                           for name in names]
    if missing:
        meta["missing shards"] = ", ".join(missing)
    return Merged(results=[r for *_, r in keyed], title=first.title, meta=meta,
                  environment=dict(first.environment), warnings=warnings)


def write_merged(merged: Merged, out_dir: str | os.PathLike) -> Path:
    """Write the merged ``index.html``, ``gradcheck.json`` and ``junit.xml`` into ``out_dir``."""
    from gradcheck.report import _write  # noqa: PLC0415

    return _write(merged.results, out_dir, title=merged.title, meta=merged.meta,
                  environment=merged.environment or None, junit=True)
