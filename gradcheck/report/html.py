"""The HTML page: one self-contained file rendered with Jinja2 (autoescaping on: check names, parameter
names and messages are user data). Styles, script and charts are inline; a Content-Security-Policy
allows no network request at all and only the page's own script (by its SHA-256), so even an
injected handler could not run.
"""
from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gradcheck.report import charts
from gradcheck.report.records import (
    PAIR_TITLES,
    SCHEMA_ID,
    Row,
    element_label,
    heatmap_cells,
    layer_cells,
    pairs_present,
    rerun_command,
)
from gradcheck.result import ORACLE_PAIRS
from gradcheck.result import fmt_error as result_fmt_error

TEMPLATES = Path(__file__).with_name("templates")
#: failures shown in full detail (the rest: their explanation line in the table and in the JSON)
MAX_DETAILED = 200
#: failures that get a step-size chart (worst first); the others show the curve as numbers
MAX_STEP_CHARTS = 40
#: elements listed per failure (kinks, failing elements)
MAX_LISTED = 12
#: a table with more checks than this lists only the failures until "show passing" is ticked
COLLAPSE_PASSING_OVER = 20


def fmt_error(x: Any) -> str:
    """An error as ``1.23e-09``; nan/inf spelled out; ``–`` when absent."""
    return result_fmt_error(x, missing="–")


def fmt_error0(x: Any) -> str:
    """An error as :func:`fmt_error`, but an exact zero as ``exact`` (never a bare 0)."""
    try:
        if x is not None and float(x) == 0:
            return "exact"
    except (TypeError, ValueError):
        pass
    return fmt_error(x)


def fmt_value(x: Any) -> str:
    """A gradient value with 9 significant digits."""
    if x is None:
        return "–"
    try:
        return f"{float(x):.9g}"
    except (TypeError, ValueError):
        return str(x)


def sort_key(x: Any) -> str:
    """The ``data-sort`` value of an error cell: nan and inf sort as the largest, absent as empty."""
    if x is None:
        return ""
    x = float(x)
    if math.isnan(x) or math.isinf(x) and x > 0:
        return "Infinity"
    return repr(x)


def fmt_margin(x: Any) -> str:
    """A margin (error / tolerance, < 1 passes) as 0.0043, 0.8, 3.1, 1.2e+05; ``–`` when absent."""
    if x is None:
        return "–"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 0.99 <= x < 1:  # never round a pass up to the failing "1"
        return f"{math.floor(x * 1000) / 1000:.3f}"
    return f"{x:.2g}" if 1e-3 <= x < 100 else f"{x:.1e}"


_CHUNKS = re.compile(r"(\d+)")


def natural_key(text: str) -> str:
    """The key the page's table sort uses for text (report.js ``natural``): lower case, every run of
    digits left-padded to 6 digits, so a plain string comparison puts ``[2]`` before ``[16]``."""
    return _CHUNKS.sub(lambda m: m.group(1).rjust(6, "0"), text.lower())


def fmt_index(index: Any) -> str:
    if index is None:
        return ""
    return "[" + ", ".join(str(i) for i in index) + "]"


def prefixed(names: Any, prefix: str = "") -> str:
    """The ``pfx`` filter: every class name in ``names`` with ``prefix`` in front (``"n mono"`` with
    ``"gck-"`` is ``"gck-n gck-mono"``): the shared templates' classes, as the report (no prefix) and the
    notebook card (its own prefix) spell them."""
    return " ".join(prefix + n for n in str(names).split())


def _environment(autoescape: bool = True):
    import jinja2  # noqa: PLC0415

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(err=fmt_error, err0=fmt_error0, val=fmt_value, sortkey=sort_key, index=fmt_index, margin=fmt_margin,
                       natural=natural_key, pfx=prefixed)
    env.globals["element_label"] = element_label  # for the shared macros (_card.html.j2)
    return env


def check_context(row: Row, with_chart: bool, meta: Mapping[str, Any], title: str,
                  chart_key: str | None = None) -> dict[str, Any]:
    """What the shared detail macros (``_card.html.j2``) show of one check: its worst element, per-tensor
    rows, step-size curve (and chart, ``with_chart``; its SVG ids prefixed with ``chart_key``, by default
    ``step-<anchor>``), diagnosis, problems and notes."""
    d = row.data
    worst = d.get("worst") or None
    tensors = list((d.get("tensors") or {}).values())
    curve = [c for c in d.get("step_curve") or [] if isinstance(c, (list, tuple)) and len(c) == 2]
    chart = None
    if curve and with_chart:
        tol = worst.get("tolerance") if worst else row.tolerance
        chart = charts.step_curve([[_num(h), _num(e)] for h, e in curve], _num(tol), key=chart_key or f"step-{row.anchor}")
    diag = d.get("diagnosis") or None
    return {
        "row": row, "worst": worst, "tensors": tensors,
        "failing": (d.get("failures") or [])[:MAX_LISTED], "n_failing": len(d.get("failures") or []),
        "kinks": (d.get("kinks") or [])[:MAX_LISTED], "n_kinks": row.n_kinks,
        "problems": d.get("problems") or [], "notes": d.get("notes") or [],
        "diagnosis": diag, "curve": [[_num(h), _num(e)] for h, e in curve], "chart": chart,
        "explanation": row.explanation, "reproduction": row.reproduction,
        "rerun": rerun_command(d, meta, title), "closest": row.closest,
        "symbolic_status": d.get("symbolic_status"), "fast": d.get("mode") == "fast",
    }


def _error_key(row: Row) -> tuple[bool, float]:
    """Sort key, largest first with ``reverse=True``: nan (a broken check) above every number; a
    missing error (a hand-made record) below every number."""
    e = row.max_rel_error
    return (False, -math.inf) if e is None else (math.isnan(e), e)


def _dtype_order(dtype: str) -> tuple[int, str]:
    """float64 first (the reference precision), then the others by name."""
    return (dtype != "float64", dtype)


def _num(x: Any) -> float | None:
    from gradcheck.report.records import number  # noqa: PLC0415

    try:
        return number(x)
    except (TypeError, ValueError):
        return None


def _meta_items(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    import json  # noqa: PLC0415

    first = [k for k in ("seed", "command", "duration") if k in meta]
    items = []
    for k in first + [k for k in meta if k not in first]:
        v = meta[k]
        if k == "duration" and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = f"{v:.1f} s"
        items.append((str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)))
    return items


def render(rows: Sequence[Row], *, title: str, meta: Mapping[str, Any], env: Mapping[str, str],
           summary: Mapping[str, Any], junit: bool = True) -> str:
    """The report page as one HTML string (``junit``: a ``junit.xml`` is written beside it)."""
    pairs = pairs_present(rows)
    have_charts = charts.available()
    heatmaps = []
    for pair in pairs:
        for dtype in sorted({r.dtype for r in rows}, key=_dtype_order):
            cells = heatmap_cells(rows, pair, dtype)
            # a 1 x 1 map says nothing the table's row does not (a single check, a lesson)
            if len({c.activation for c in cells}) * len({c.loss for c in cells}) > 1:
                heatmaps.append({"pair": pair, "dtype": dtype, "title": f"{PAIR_TITLES[pair]} · {dtype}",
                                 "cells": cells, "svg": charts.heatmap(cells, pair, dtype) if have_charts else None})
    layer_maps = []
    if any(r.layers not in (None, "dense") for r in rows):  # the layer-kind view, first-order pairs
        for pair in [p for p in pairs if p in ORACLE_PAIRS]:
            for dtype in sorted({r.dtype for r in rows}, key=_dtype_order):
                cells = layer_cells(rows, pair, dtype)
                if len(cells) > 1:
                    layer_maps.append({"pair": pair, "dtype": dtype, "title": f"{PAIR_TITLES[pair]} · {dtype}",
                                       "cells": cells, "svg": charts.heatmap(cells, pair, dtype, rows="layer kind",
                                                                             columns="activation")
                                       if have_charts else None})
    histogram = charts.histogram(rows, pairs) if have_charts and pairs and rows else None
    failed = [r for r in rows if not r.passed]
    curved = [r for r in failed[:MAX_DETAILED] if r.data.get("step_curve")]
    by_error = sorted(curved, key=_error_key, reverse=True)
    charted = {r.anchor for r in by_error[:MAX_STEP_CHARTS]} if have_charts else set()
    failures = [check_context(r, r.anchor in charted, meta, title) for r in failed[:MAX_DETAILED]]
    ungrouped = sum(r.activation is None for r in rows)

    jenv = _environment()
    script = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    style = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    script_hash = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return jenv.get_template("report.html.j2").render(
        title=title, rows=rows, summary=summary, env=env, meta_items=_meta_items(meta), pairs=pairs,
        pair_titles=PAIR_TITLES, heatmaps=heatmaps, layer_maps=layer_maps, histogram=histogram, failures=failures,
        n_failed=len(failed), detailed={f["row"].anchor for f in failures},
        has_duration=any(str(k).startswith("duration") for k in meta), have_charts=have_charts, ungrouped=ungrouped,
        activations=sorted({r.activation for r in rows if r.activation is not None}),
        losses=sorted({r.loss for r in rows if r.loss is not None}),
        dtypes=sorted({r.dtype for r in rows}), style=style, script=script, script_hash=script_hash,
        log_min=charts.LOG_MIN, log_max=charts.LOG_MAX, schema_id=SCHEMA_ID,
        grid=any(r.activation is not None or r.loss is not None for r in rows),
        collapse=len(rows) > COLLAPSE_PASSING_OVER and any(r.passed for r in rows),
        n_passed=sum(r.passed for r in rows), element_label=element_label, junit=junit)
