"""Report records: check results (``Result`` objects or their ``to_dict()``) turned into plain rows,
heatmap cells and a summary, plus the versioned JSON document they are saved in.

Everything here is builtins only, so it crosses processes (pytest-xdist) and files. Non-finite
numbers are the strings ``"nan"``, ``"inf"`` and ``"-inf"`` in the JSON document (as
:meth:`gradcheck.Result.to_dict` writes them) and Python floats in the rows.
"""
from __future__ import annotations

import json
import math
import platform
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradcheck.result import ORACLE_PAIRS, SECOND_ORDER_PAIRS, Result

#: the ``"schema"`` field of ``gradcheck.json``; the number changes on incompatible changes
SCHEMA_ID = "gradcheck-report/2"
SCHEMA_NAME = "gradcheck-report"
SCHEMA_MAJOR = 2
#: major versions :func:`check_document` accepts: 1 (before margins; re-rendered with margins derived
#: from the per-tensor errors and tolerances) and 2
READABLE_MAJORS = (1, 2)

#: short column titles for the oracle pairs
PAIR_TITLES = {"analytic_vs_numerical": "analytic vs numerical",
               "analytic_vs_symbolic": "analytic vs symbolic",
               "numerical_vs_symbolic": "numerical vs symbolic",
               "hvp_vs_numerical": "second order: hvp vs numerical",
               "hvp_vs_symbolic": "second order: hvp vs symbolic"}

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


# -- JSON-safe values -----------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """``value`` as JSON builtins: nan/inf as strings, numpy scalars/arrays as numbers/lists, tuples as
    lists, any other object as its ``str``. ``json.dumps(..., allow_nan=False)`` accepts the result."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, without importing numpy
    if callable(tolist) and type(value).__module__ == "numpy":
        return jsonable(tolist())
    return str(value)


def number(value: Any) -> float | None:
    """A JSON number or nan/inf string as a float; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        if value in _NONFINITE:
            return _NONFINITE[value]
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def result_dict(result: Any, where: str = "results[?]") -> dict[str, Any]:
    """A check result as the JSON-ready dict of :meth:`Result.to_dict` (a dict is checked and copied)."""
    if isinstance(result, Result):
        return result.to_dict()
    if isinstance(result, Mapping):
        missing = [k for k in ("passed", "max_rel_error") if k not in result]
        if missing:
            raise ValueError(f"{where} is a dict without {missing}: expected gradcheck.Result.to_dict() output")
        if not isinstance(result["passed"], bool):
            raise ValueError(f"{where}['passed']={result['passed']!r}: expected True or False")
        return jsonable(dict(result))
    raise TypeError(f"{where} must be a gradcheck.Result or the dict of Result.to_dict(), "
                    f"got {type(result).__name__}")


# -- labels derived from a spec ---------------------------------------------------------------------
def activation_label(spec: Mapping[str, Any] | None) -> str | None:
    """The activation a check exercises: the distinct activations of the hidden layers (all layers but
    the last, which the loss usually dictates) in order of first use, joined by ``+``; for a network
    with one layer, that layer's activation. None without a spec."""
    layers = list((spec or {}).get("layers") or [])
    if not layers:
        return None
    hidden = layers[:-1] or layers
    # other layer kinds (a "kind" key): only an activation of their own counts (a conv's relu)
    acts = [str(_layer_activation(l)) for l in hidden
            if not (isinstance(l, Mapping) and "kind" in l and l.get("activation", "identity") == "identity")]
    return "+".join(dict.fromkeys(acts or ["identity"]))


def layers_label(spec: Mapping[str, Any] | None) -> str:
    """The layer kinds of a check other than dense and flatten, joined by ``+`` (``conv2d+batchnorm``),
    or ``dense`` for a dense network: the row of the report's layer-kind view."""
    kinds = [str(l.get("kind")) for l in (spec or {}).get("layers") or []
             if isinstance(l, Mapping) and l.get("kind") not in (None, "dense", "flatten")]
    return "+".join(dict.fromkeys(kinds)) or ("flatten" if any(
        isinstance(l, Mapping) and l.get("kind") == "flatten" for l in (spec or {}).get("layers") or []) else "dense")


def _layer_activation(layer: Any) -> Any:
    if isinstance(layer, Mapping):
        return layer.get("activation", "?")
    if isinstance(layer, (list, tuple)) and len(layer) > 1:
        return layer[1]
    return "?"


def loss_label(spec: Mapping[str, Any] | None) -> str | None:
    """The spec's loss name, or None without a spec."""
    if not spec or spec.get("loss") is None:
        return None
    return str(spec["loss"])


def spec_object(spec: Mapping[str, Any] | None):
    """The :class:`NetworkSpec` of a spec dict, or None when there is none or it does not validate."""
    if not spec:
        return None
    from gradcheck.spec import NetworkSpec  # noqa: PLC0415

    try:
        return NetworkSpec.from_dict(dict(spec))
    except (TypeError, ValueError):
        return None


def spec_label(spec: Mapping[str, Any] | None) -> str | None:
    """``NetworkSpec.label()`` (e.g. ``3-4(tanh)-1(identity) mse b4 float64``) or the spec as JSON."""
    if not spec:
        return None
    obj = spec_object(spec)
    return obj.label() if obj is not None else json.dumps(jsonable(spec), sort_keys=True)


def reproduction(d: Mapping[str, Any]) -> str:
    """A line that rebuilds the checked network (the spec's repr, which is valid Python), or, without a
    spec, the check's name (a test id or label to re-run)."""
    spec = d.get("spec")
    if spec:
        obj = spec_object(spec)
        if obj is not None:
            return f"from gradcheck.spec import NetworkSpec, Layer\nspec = {obj!r}"
        return ("from gradcheck.spec import NetworkSpec\n"
                f"spec = NetworkSpec.from_dict({json.dumps(jsonable(spec), sort_keys=True)})")
    return str(d.get("name") or "(unnamed check: pass name=... to gradcheck.check)")


_LESSON_TITLE = re.compile(r"gradcheck lesson: ([A-Za-z0-9_-]+)")
_PYTEST_ID = re.compile(r"\S+\.py::.+")


def rerun_command(d: Mapping[str, Any], meta: Mapping[str, Any] | None = None, title: str = "") -> str | None:
    """A shell command that re-runs the check, when the record says enough to build one:
    a sweep check re-runs its cell (same seed: the cell's cases are deterministic), a
    ``gradcheck check`` report its own command, a lesson ``gradcheck teach NAME``, a pytest check
    its node id. None when nothing runnable is known (the Python snippet is then the way)."""
    meta = meta or {}
    command = str(meta.get("command") or "")
    spec = d.get("spec") or None
    act, loss = activation_label(spec), loss_label(spec)
    if command.startswith("gradcheck sweep") and act and loss and "+" not in act:
        dtype = str(d.get("dtype") or (spec or {}).get("dtype") or "float64")
        parts = ["gradcheck", "sweep", "--activations", act, "--losses", loss, "--dtype", dtype]
        if meta.get("seed") is not None:
            parts += ["--seed", str(meta["seed"])]
        if meta.get("examples per cell") is not None:
            parts += ["--examples", str(meta["examples per cell"])]
        return " ".join(shlex.quote(p) for p in parts + ["--out", "reports/rerun"])
    if command.startswith("gradcheck check "):
        return command
    m = _LESSON_TITLE.fullmatch(title or "")
    if m:
        return f"gradcheck teach {m.group(1)}"
    name = str(d.get("name") or "")
    if _PYTEST_ID.fullmatch(name):
        return f"python -m pytest {shlex.quote(name)}"
    return None


def explanation(d: Mapping[str, Any]) -> str:
    """``str(result)`` of a result dict (the checker's own explanation)."""
    try:
        return str(Result.from_dict(dict(d)))
    except Exception as exc:  # a dict from another gradcheck version: say what we can
        verdict = "passed" if d.get("passed") else "FAILED"
        return (f"gradcheck {verdict} {d.get('name') or ''}: max relative error {d.get('max_rel_error')} "
                f"(explanation unavailable: {type(exc).__name__}: {exc})")


# -- rows ---------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One check as the report shows it."""

    index: int
    anchor: str
    name: str
    label: str | None
    activation: str | None
    loss: str | None
    n_params: int | None
    dtype: str
    passed: bool
    errors: dict[str, float | None]
    max_rel_error: float | None  # None only in a hand-made record with "max_rel_error": null
    tolerance: float
    worst_param: str | None
    n_kinks: int
    n_problems: int
    seconds: float
    symbolic_status: str | None
    data: dict[str, Any] = field(repr=False)
    #: largest error / tolerance over the judged elements (< 1 passes); derived for schema-1 records
    margin: float = math.nan
    normwise: float | None = None
    n_below_resolution: int = 0
    n_unsettled: int = 0
    #: the element with the largest margin (a dict as in the JSON), or None
    closest: dict[str, Any] | None = None
    #: the layer kinds of the network (:func:`layers_label`), ``dense`` for dense ones, None without a spec
    layers: str | None = None

    @property
    def status(self) -> str:
        return "passed" if self.passed else "failed"

    @property
    def diagnosis(self) -> str | None:
        diag = self.data.get("diagnosis")
        return diag.get("message") if isinstance(diag, Mapping) else None

    @property
    def explanation(self) -> str:
        return explanation(self.data)

    @property
    def reproduction(self) -> str:
        return reproduction(self.data)


def _n_params(d: Mapping[str, Any]) -> int | None:
    tensors = d.get("tensors") or {}
    if tensors:
        return int(sum(int(t.get("n_elements") or 0) for t in tensors.values()))
    obj = spec_object(d.get("spec"))
    return obj.n_params if obj is not None else None


def make_rows(results: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Rows in the given order; ``anchor`` is ``check-<n>`` (1-based), unique in the page."""
    rows = []
    for i, d in enumerate(results):
        spec = d.get("spec") or None
        oracles = d.get("oracles") or {}
        errors = {p: number(oracles[p]) if p in oracles else None for p in ORACLE_PAIRS + SECOND_ORDER_PAIRS}
        if errors["analytic_vs_numerical"] is None and d.get("max_rel_error") is not None:
            # a check that failed before comparing (fn raised, nan gradient) has only max_rel_error,
            # which is the analytic-vs-numerical error by definition
            errors["analytic_vs_numerical"] = number(d["max_rel_error"])
        label = spec_label(spec)
        rows.append(Row(
            index=i, anchor=f"check-{i + 1}",
            name=str(d.get("name") or label or f"check {i + 1}"), label=label,
            activation=activation_label(spec), loss=loss_label(spec), n_params=_n_params(d),
            layers=layers_label(spec) if spec else None,
            dtype=str(d.get("dtype") or (spec or {}).get("dtype") or "?"), passed=bool(d["passed"]),
            errors=errors, max_rel_error=number(d.get("max_rel_error")),
            tolerance=_or_nan(d.get("tolerance")), worst_param=d.get("worst_param"),
            n_kinks=sum(int(t.get("n_kinks") or 0) for t in (d.get("tensors") or {}).values())
            or len(d.get("kinks") or []),
            n_problems=len(d.get("problems") or []), seconds=_or_nan(d.get("seconds")) or 0.0,
            symbolic_status=d.get("symbolic_status"), data=dict(d), margin=row_margin(d),
            normwise=_num_or_none(d.get("normwise")),
            n_below_resolution=int(d.get("n_below_resolution") or 0),
            n_unsettled=sum(int(t.get("n_unsettled") or 0) for t in (d.get("tensors") or {}).values()),
            closest=d.get("closest") or (d.get("worst") if "margin" not in d else None) or None))
    return rows


def row_margin(d: Mapping[str, Any]) -> float:
    """The check's margin (largest error / tolerance; < 1 passes). A schema-1 record has none: it is
    derived as the largest per-tensor max_rel_error / tolerance (nan when nothing was compared; inf
    for a failed check without numbers)."""
    if d.get("margin") is not None:
        return _or_nan(d["margin"])
    ratios = []
    for t in (d.get("tensors") or {}).values():
        e, tol = _num_or_none(t.get("max_rel_error")), _num_or_none(t.get("tolerance"))
        if e is None or tol is None or (t.get("passed") and (math.isnan(e) or math.isnan(tol))):  # all kinks
            continue
        ratios.append(math.nan if math.isnan(e) or math.isnan(tol) else (e / tol if tol > 0 else math.inf))
    if ratios:
        return cell_max(ratios)
    e, tol = _num_or_none(d.get("max_rel_error")), _num_or_none(d.get("tolerance"))
    if e is not None and tol is not None and tol > 0 and not math.isnan(e):
        return e / tol
    return math.nan if d.get("passed") else math.inf


def _num_or_none(value: Any) -> float | None:
    try:
        return number(value)
    except (TypeError, ValueError):
        return None


def element_label(e: Mapping[str, Any] | None) -> str:
    """``W1[2, 0]`` for an element dict (an operator check's entry reads ``d out[1] / d x[0, 2]``)."""
    if not e:
        return ""
    if e.get("display"):
        return str(e["display"])
    index = e.get("index")
    return f"{e.get('param')}" + ("[" + ", ".join(str(i) for i in index) + "]" if index else "")


def _or_nan(value: Any) -> float:
    v = number(value)
    return math.nan if v is None else v


# -- heatmap cells --------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One activation x loss cell of one oracle pair: the max error over its checks."""

    activation: str
    loss: str
    value: float          # max over the checks; nan if any is nan
    n: int                # checks in the cell
    failed: int           # of which failed
    margin: float = math.nan  # worst margin (error / tolerance) over the checks; nan if any is nan


def cell_max(values: list[float]) -> float:
    """The max of errors, nan when any is nan (a nan error is a broken check, the worst outcome)."""
    if any(math.isnan(v) for v in values):
        return math.nan
    return max(values)


def heatmap_cells(rows: Iterable[Row], pair: str, dtype: str | None = None) -> list[Cell]:
    """Cells for one oracle pair (and one dtype, if given) from the rows that have a spec and an error
    for that pair. Dtypes are kept apart because float32 errors (~1e-4) would hide float64 ones."""
    groups: dict[tuple[str, str], list[tuple[Row, float]]] = {}  # (row, its error for the pair)
    for r in rows:
        error = r.errors.get(pair)
        if r.activation is None or r.loss is None or error is None:
            continue
        if dtype is not None and r.dtype != dtype:
            continue
        groups.setdefault((r.activation, r.loss), []).append((r, error))
    return [Cell(a, l, cell_max([e for _, e in g]), len(g), sum(not r.passed for r, _ in g),
                 cell_max([r.margin for r, _ in g]))
            for (a, l), g in sorted(groups.items())]


def layer_cells(rows: Iterable[Row], pair: str, dtype: str | None = None) -> list[Cell]:
    """The layer-kind view: cells of layer kinds (``Cell.activation``) x activation (``Cell.loss``)
    for one oracle pair and dtype, like :func:`heatmap_cells`."""
    groups: dict[tuple[str, str], list[tuple[Row, float]]] = {}
    for r in rows:
        error = r.errors.get(pair)
        if r.layers is None or r.activation is None or error is None or (dtype is not None and r.dtype != dtype):
            continue
        groups.setdefault((r.layers, r.activation), []).append((r, error))
    return [Cell(k, a, cell_max([e for _, e in g]), len(g), sum(not r.passed for r, _ in g),
                 cell_max([r.margin for r, _ in g]))
            for (k, a), g in sorted(groups.items())]


def pairs_present(rows: Sequence[Row]) -> list[str]:
    """The oracle pairs that at least one check reports, in the canonical order."""
    return [p for p in ORACLE_PAIRS + SECOND_ORDER_PAIRS if any(r.errors.get(p) is not None for r in rows)]


# -- summary ------------------------------------------------------------------------------------------
def summarize(rows: list[Row]) -> dict[str, Any]:
    """Counts, the worst error per oracle pair (and which check), tolerances per dtype, oracle status."""
    worst = {}
    for p in pairs_present(rows):
        have = [(r, e) for r in rows if (e := r.errors.get(p)) is not None]
        w, value = max(have, key=lambda item: (math.isnan(item[1]), item[1]))
        worst[p] = {"value": value, "check": w.name, "anchor": w.anchor}
    tolerances = {}
    for dt in sorted({r.dtype for r in rows}):
        tols = [r.tolerance for r in rows if r.dtype == dt and math.isfinite(r.tolerance)]
        if tols:
            tolerances[dt] = {"min": min(tols), "max": max(tols)}
    symbolic = Counter(_symbolic_kind(r.symbolic_status) for r in rows)
    cells = {(r.activation, r.loss) for r in rows if r.activation is not None}
    worst_by_dtype, margins = {}, {}
    for dt in sorted({r.dtype for r in rows}, key=lambda t: (t != "float64", t)):  # float64 first
        mine = [r for r in rows if r.dtype == dt]
        w = max(mine, key=lambda r: _nan_worst(r.max_rel_error))
        worst_by_dtype[dt] = {"value": w.max_rel_error, "check": w.name, "anchor": w.anchor}
        ms = sorted(r.margin for r in mine if not math.isnan(r.margin))
        if ms:
            margins[dt] = {"median": ms[(len(ms) - 1) // 2], "max": cell_max([r.margin for r in mine])}
    closest = None
    if rows:
        c = max(rows, key=lambda r: _nan_worst(r.margin))
        el = c.closest or {}
        closest = {"margin": c.margin, "check": c.name, "anchor": c.anchor, "element": element_label(el),
                   "rel_error": el.get("rel_error"), "tolerance": el.get("tolerance"), "dtype": c.dtype}
    failed = sum(not r.passed for r in rows)
    return {
        "verdict": "no checks" if not rows else ("failed" if failed else "passed"),
        "checks": len(rows),
        "passed": sum(r.passed for r in rows),
        "failed": failed,
        "closest": closest,
        "worst_by_dtype": worst_by_dtype,
        "margins": margins,
        "combinations": len(cells),
        "structures": len({json.dumps(r.data.get("spec"), sort_keys=True) for r in rows if r.data.get("spec")}),
        "worst": worst,
        "tolerances": tolerances,
        "kinks": sum(r.n_kinks for r in rows),
        "dtypes": dict(sorted(Counter(r.dtype for r in rows).items())),
        "symbolic": dict(sorted(symbolic.items())),
        "seconds": sum(r.seconds for r in rows if math.isfinite(r.seconds)),
    }


def _nan_worst(x: float | None) -> tuple[bool, float]:
    """Sort key: nan is the worst outcome (a broken check), then larger is worse."""
    if x is None:
        return (False, -math.inf)
    return (math.isnan(x), -math.inf if math.isnan(x) else x)


def _symbolic_kind(status: str | None) -> str:
    if status is None:
        return "not run"
    if status == "ok":
        return "ok"
    return "unavailable" if status.startswith("unavailable") else "skipped"


# -- environment and the JSON document ---------------------------------------------------------------------
def environment() -> dict[str, str]:
    """Versions of Python and the libraries the verdicts depend on (read without importing them)."""
    from importlib import metadata  # noqa: PLC0415

    from gradcheck import __version__  # noqa: PLC0415

    env = {"gradcheck": __version__, "python": platform.python_version(),
           "platform": f"{platform.system()} {platform.machine()}"}
    for pkg in ("numpy", "sympy", "hypothesis", "matplotlib", "jinja2"):
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env[pkg] = "not installed"
    return env


def document(results: list[dict[str, Any]], *, title: str, meta: Mapping[str, Any] | None,
             env: Mapping[str, str], summary: Mapping[str, Any]) -> dict[str, Any]:
    """The ``gradcheck.json`` document (see ``schema.json``)."""
    return {"schema": SCHEMA_ID, "title": title, "meta": jsonable(dict(meta or {})),
            "environment": dict(env), "summary": jsonable(summary), "results": results}


def check_document(doc: Any, source: str = "document") -> dict[str, Any]:
    """Structural validation of a loaded document (without the optional ``jsonschema`` package)."""
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(doc).__name__}")
    schema = doc.get("schema")
    if not isinstance(schema, str) or not schema.startswith(SCHEMA_NAME + "/"):
        raise ValueError(f"{source}: schema={schema!r}; expected {SCHEMA_ID!r} (a file written by "
                         "gradcheck.report.write)")
    try:
        major = int(schema.split("/", 1)[1].split(".")[0])
    except ValueError:
        raise ValueError(f"{source}: schema={schema!r} has no version number") from None
    if major not in READABLE_MAJORS:
        raise ValueError(f"{source}: schema={schema!r} is version {major}; this gradcheck reads "
                         f"versions {', '.join(map(str, READABLE_MAJORS))} and writes {SCHEMA_ID!r}")
    results = doc.get("results")
    if not isinstance(results, list):
        raise ValueError(f"{source}: 'results' must be a list, got {type(results).__name__}")
    for i, r in enumerate(results):
        result_dict(r, f"{source}: results[{i}]")
    if not isinstance(doc.get("meta", {}), dict):
        raise ValueError(f"{source}: 'meta' must be an object")
    return doc
