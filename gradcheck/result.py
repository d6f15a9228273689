"""``Result``: what a check found, as plain data (JSON-ready via :meth:`Result.to_dict`), and the
human explanation (``str(result)``)."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from gradcheck.tolerance import MODEL

#: names of the oracle pairs a result can report on
ORACLE_PAIRS = ("analytic_vs_numerical", "analytic_vs_symbolic", "numerical_vs_symbolic")
#: second-order pairs (``check_hvp``, ``gradcheck sweep --order 2``): the claimed Hessian-vector
#: product against differences of the gradient, and against SymPy's exact second derivatives
SECOND_ORDER_PAIRS = ("hvp_vs_numerical", "hvp_vs_symbolic")


def _num(x: Any) -> Any:
    """A JSON-safe number: floats stay floats, except nan/inf which become strings."""
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _unnum(x: Any) -> Any:
    if isinstance(x, str) and x in ("nan", "inf", "-inf"):
        return float(x)
    return x


def fmt_index(name: str, index: Any) -> str:
    if index is None:
        return name
    return f"{name}[{', '.join(str(int(i)) for i in index)}]"


@dataclass
class Problem:
    """A fault of the function under test found before or while comparing gradients."""

    kind: str
    message: str
    param: str | None = None
    index: list[int] | None = None


@dataclass
class Element:
    """One element of one tensor: the claimed and numerical values and how far apart they are."""

    param: str
    index: list[int]
    claimed: float
    numerical: float
    rel_error: float
    tolerance: float
    error_bound: float = 0.0
    step: float = 0.0
    symbolic: float | None = None
    note: str = ""
    #: measured rounding (sd) of the claimed entry; 0 where not measured
    claimed_noise: float = 0.0
    #: error / tolerance (< 1 passes)
    margin: float = 0.0
    #: the estimate resolves it: relative tolerance at most eps^(1/3) (counts towards the headline)
    resolved: bool = True
    #: operator checks (:mod:`gradcheck.operators`): the output element and the input this entry
    #: relates, the cotangent or tangent it was seen under, and how it reads (``d y[1] / d x[0, 2]``)
    output: str | None = None
    output_index: list[int] | None = None
    input: str | None = None
    cotangent: int | None = None
    display: str | None = None
    #: operator checks: the gradient scale of the sub-check that judged this entry (a row's or a
    #: cotangent's), which its tolerance used; the result's own scale is the largest of them
    scale: float | None = None

    def label(self) -> str:
        return self.display or fmt_index(self.param, self.index)


@dataclass
class TensorReport:
    """Per-tensor verdict. The arrays (claimed, numerical, ...) are kept in memory for diagnosis
    and reports but left out of :meth:`Result.to_dict` unless asked for."""

    name: str
    shape: list[int]
    dtype: str
    max_rel_error: float
    tolerance: float
    passed: bool
    worst_index: list[int] | None
    n_elements: int
    n_failed: int = 0
    n_kinks: int = 0
    n_refined: int = 0
    step: float = 0.0
    floor: float = 0.0
    symbolic_max_rel_error: float | None = None
    #: elements whose estimate did not settle on the step ladder (left out, like kinks)
    n_unsettled: int = 0
    #: largest error / tolerance over the judged elements (< 1 passes)
    margin: float = 0.0
    #: ||claimed - numerical|| / ||numerical|| over the judged elements (the floor keeps it finite)
    normwise: float = 0.0
    #: entries too small for the estimate to resolve: judged on absolute agreement, not in the headline
    n_below_resolution: int = 0
    #: largest measured rounding (sd) of the claimed entries, when measured
    claimed_noise: float | None = None
    claimed: np.ndarray | None = field(default=None, repr=False)
    numerical: np.ndarray | None = field(default=None, repr=False)
    error: np.ndarray | None = field(default=None, repr=False)
    rel: np.ndarray | None = field(default=None, repr=False)
    kink: np.ndarray | None = field(default=None, repr=False)
    symbolic: np.ndarray | None = field(default=None, repr=False)

    _ARRAYS = ("claimed", "numerical", "error", "rel", "kink", "symbolic")


@dataclass
class Diagnosis:
    """A named bug pattern with its evidence; ``pattern`` is a stable identifier."""

    pattern: str
    message: str
    confidence: str = "medium"
    params: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """The outcome of :func:`gradcheck.check`. ``str(result)`` explains it."""

    passed: bool
    max_rel_error: float
    worst_param: str | None
    name: str | None = None
    scheme: str = "central"
    dtype: str = "float64"
    tolerance: float = math.nan
    rtol: float | None = None
    tensors: dict[str, TensorReport] = field(default_factory=dict)
    worst: Element | None = None
    failures: list[Element] = field(default_factory=list)
    kinks: list[Element] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    oracles: dict[str, float] = field(default_factory=dict)
    symbolic_status: str | None = None
    diagnosis: Diagnosis | None = None
    notes: list[str] = field(default_factory=list)
    calls: int = 0
    seconds: float = 0.0
    noise: float = 0.0
    loss: float | None = None
    spec: dict | None = None
    step_curve: list[list[float]] = field(default_factory=list)
    mode: str = "full"
    #: the check's gradient scale S = max(largest |numerical|, |loss| / max(1, rms |params|))
    scale: float = 0.0
    #: the largest error / tolerance ratio over every judged element (< 1 passes): how close it came
    margin: float = 0.0
    #: the largest per-tensor normwise relative error ||claimed - numerical|| / ||numerical||
    normwise: float = 0.0
    #: entries below the estimate's resolution (judged on absolute agreement, not in max_rel_error)
    n_below_resolution: int = 0
    #: the element with the largest margin (the closest call)
    closest: Element | None = None
    #: operator checks only (:func:`gradcheck.check_vjp`, ...): what was checked and how
    operator: dict | None = None
    #: a check under ``budget=``/``max_calls=`` only (:mod:`gradcheck.budget`): what was covered
    #: (``complete``, ``checked`` of ``total`` elements in ``tensors``, ``per_tensor``
    #: ``[checked, size]``, random ``directions`` over all, ``budget``, ``max_calls``, ``text``, ...)
    coverage: dict | None = None

    # -- explanation --------------------------------------------------------------------------
    def __str__(self) -> str:
        return explain(self)

    def __bool__(self) -> bool:
        """``passed``: ``assert gradcheck.check(fn, ...)`` fails on a wrong gradient, as it does with
        ``torch.autograd.gradcheck`` (which returns a bool); the message is ``str(result)``."""
        return bool(self.passed)

    def _repr_html_(self) -> str:
        """Jupyter's display: the result card (:func:`gradcheck.report.card.render_card`)."""
        from gradcheck.report.card import render_card  # noqa: PLC0415 - Jinja2 only when displayed

        return render_card(self)

    @property
    def n_elements(self) -> int:
        return sum(t.n_elements for t in self.tensors.values())

    # -- serialization ------------------------------------------------------------------------
    def to_dict(self, arrays: bool = False) -> dict[str, Any]:
        """Plain builtins; nan/inf as the strings ``"nan"``/``"inf"``; arrays only if asked."""
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "tensors":
                d["tensors"] = {k: _tensor_dict(t, arrays) for k, t in v.items()}
            elif f.name in ("worst", "closest", "diagnosis") and v is not None:
                d[f.name] = _clean(_compact(asdict(v)))
            elif f.name in ("failures", "kinks", "problems"):
                d[f.name] = [_clean(_compact(asdict(x))) for x in v]
            elif f.name == "oracles":
                d[f.name] = {k: _num(x) for k, x in v.items()}
            elif f.name == "step_curve":
                d[f.name] = [[_num(a), _num(b)] for a, b in v]
            elif f.name in ("spec", "operator"):  # already plain JSON (spec's "loss" is a name, not a float)
                d[f.name] = json.loads(json.dumps(v)) if v is not None else None
                if f.name == "spec" and isinstance(v, dict) and isinstance(v.get("layers"), list):
                    d["layers"] = layer_kinds(v)
            else:
                d[f.name] = _clean(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        """Inverse of :meth:`to_dict` (arrays restored when present)."""
        d = dict(d)
        spec = d.pop("spec", None)
        d.pop("layers", None)  # derived from the spec
        operator = d.pop("operator", None)
        tensors = {}
        for k, t in d.pop("tensors", {}).items():
            t = _unclean(t)  # only the float fields: names and dtypes stay strings
            for a in TensorReport._ARRAYS:
                if t.get(a) is not None:
                    t[a] = np.asarray(_unclean_nested(t[a]), dtype=bool if a == "kink" else float)
            tensors[k] = TensorReport(**t)
        worst = d.pop("worst", None)
        closest = d.pop("closest", None)
        diagnosis = d.pop("diagnosis", None)
        out = cls(**{k: (_unnum(v) if k in _FLOAT_FIELDS else v) for k, v in d.items()
                     if k not in ("failures", "kinks", "problems", "oracles", "step_curve")},
                  tensors=tensors, spec=spec, operator=operator)
        out.worst = Element(**_unclean(worst)) if worst else None
        out.closest = Element(**_unclean(closest)) if closest else None
        out.diagnosis = Diagnosis(**diagnosis) if diagnosis else None
        out.failures = [Element(**_unclean(e)) for e in d.get("failures", [])]
        out.kinks = [Element(**_unclean(e)) for e in d.get("kinks", [])]
        out.problems = [Problem(**p) for p in d.get("problems", [])]
        out.oracles = {k: _unnum(v) for k, v in d.get("oracles", {}).items()}
        out.step_curve = [[_unnum(a), _unnum(b)] for a, b in d.get("step_curve", [])]
        return out


#: Element fields only operator checks fill: left out of the JSON when None
_OPERATOR_FIELDS = ("output", "output_index", "input", "cotangent", "display", "scale")


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not (k in _OPERATOR_FIELDS and v is None)}


_FLOAT_FIELDS = {"max_rel_error", "tolerance", "rel_error", "claimed", "numerical", "error_bound",
                 "step", "symbolic", "floor", "symbolic_max_rel_error", "rtol", "seconds", "noise",
                 "loss", "margin", "claimed_noise", "scale", "normwise"}


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: (_num(x) if k in _FLOAT_FIELDS and x is not None else _clean(x)) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return _num(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    return v


def _unclean(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: (_unnum(x) if k in _FLOAT_FIELDS else x) for k, x in v.items()}
    return _unnum(v)


def layer_kinds(spec: dict[str, Any]) -> list[str]:
    """The layer kinds of a spec dict, in first-seen order (a layer without ``kind`` is dense)."""
    kinds = [str(layer.get("kind", "dense")) if isinstance(layer, dict) else "dense" for layer in spec.get("layers", [])]
    return list(dict.fromkeys(kinds))


def _tensor_dict(t: TensorReport, arrays: bool) -> dict[str, Any]:
    d = {f.name: getattr(t, f.name) for f in fields(t) if f.name not in TensorReport._ARRAYS}
    d = _clean(d)
    if arrays:
        for a in TensorReport._ARRAYS:
            v = getattr(t, a)
            if v is None:
                d[a] = None
            elif a == "kink":
                d[a] = np.asarray(v, bool).tolist()
            else:
                d[a] = _clean_nested(np.asarray(v, float).tolist())
    return d


def _clean_nested(v: Any) -> Any:
    if isinstance(v, list):
        return [_clean_nested(x) for x in v]
    return _num(v)


def _unclean_nested(v: Any) -> Any:
    if isinstance(v, list):
        return [_unclean_nested(x) for x in v]
    return _unnum(v)


# -- the explanation -------------------------------------------------------------------------------
SCHEME_NAMES = {"central": "central differences", "forward": "forward differences",
                "central4": "4th-order central differences", "richardson": "Richardson extrapolation",
                "complex": "complex step", "fast": "random directional derivatives"}


def fmt_error(x: float | None, missing: str = "-") -> str:
    """An error as ``1.23e-09``; nan and +-inf spelled out; ``missing`` when absent."""
    if x is None:
        return missing
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.2e}"


_e = fmt_error


def _v(x: float | None) -> str:
    return "-" if x is None else f"{float(x):.9g}"


def _bound_text(r: Result, w: Element) -> str:
    """What the numerical estimate's error bound of element ``w`` is made of."""
    if w.note == "float64":
        return ("the loss evaluated with float64 parameters on a ladder of steps (its own rounding noise "
                "over the step, plus the truncation seen between steps): the check's dtype was too coarse here")
    if w.note == "central":
        return (f"central differences, which overruled the complex step here: rounding noise {_e(r.noise)} "
                "of the loss over the step, plus the truncation seen between h and h/2")
    if r.scheme == "complex":
        return ("a few ulps of the derivative: complex step has no cancellation"
                + ("; central differences at this element agree with it" if w.note == "refined" else ""))
    if w.note == "refined":
        return (f"rounding noise {_e(r.noise)} of the loss over the step, plus the truncation seen "
                "between steps h and h/2")
    if r.scheme == "richardson":
        return f"rounding noise {_e(r.noise)} of the loss over the step, plus the truncation seen between h and h/2"
    return f"rounding noise {_e(r.noise)} of the loss over the step h"


def _margin(x: float) -> str:
    """A margin (error / tolerance) as 0.02, 0.5, 3.1, 1.2e+05."""
    if not math.isfinite(x):
        return "inf" if x > 0 else "nan"
    return f"{x:.2g}" if x < 100 else f"{x:.1e}"


def _listed(elements: list[Element], total: int) -> str:
    shown = ", ".join(e.label() for e in elements[:5])
    return shown + (f" and {total - 5} more" if total > 5 else "")


def tolerance_text(r: Result, w: Element) -> str:
    """What element ``w``'s tolerance is made of, term by term (constants from the one table), and
    which term dominates."""
    eps = float(np.finfo(np.dtype(r.dtype)).eps) if np.dtype(r.dtype).kind == "f" else 2.220446049250313e-16
    k, u = MODEL.safety, MODEL.analytic_ulps
    terms = [(k * w.error_bound, f"{k:g} x the estimate's error bound {_e(w.error_bound)} ({_bound_text(r, w)})",
              "the numerical estimate's error")]
    if w.claimed_noise > 0:
        terms.append((k * w.claimed_noise, f"{k:g} x your gradient's own rounding, measured, {_e(w.claimed_noise)}",
                      "your gradient's own rounding"))
    scale = r.scale if w.scale is None else w.scale
    terms.append((u * eps * (abs(w.numerical) + scale),
                  f"{u:g} ulp of {r.dtype} x (|numerical| + the check's gradient scale {_e(scale)})",
                  "the ulp floor"))
    largest = max(terms, key=lambda t: t[0])
    return (" + ".join(t[1] for t in terms) + ", over max(|numerical|, floor)"
            + f"; largest term: {largest[2]} ({_e(largest[0])} absolute)"
            + (f"; at least rtol={r.rtol:g}" if r.rtol else ""))


def explain(r: Result) -> str:
    """The human explanation of a result (what ``str(result)`` prints)."""
    title = f" {r.name}" if r.name else ""
    scheme = SCHEME_NAMES.get(r.scheme, r.scheme)
    lines = []
    if r.passed:
        where = f" in {r.worst_param}" if r.worst_param and r.max_rel_error > 0 else ""
        closest = f" at {r.closest.label()}" if r.closest is not None else ""
        lines.append(f"gradcheck passed{title}: max relative error {_e(r.max_rel_error)}{where} "
                     f"(normwise {_e(r.normwise)}), margin {_margin(r.margin)}{closest}; {len(r.tensors)} tensors, "
                     f"{r.n_elements} elements, {scheme}, {r.dtype}, {r.calls} calls, {r.seconds:.2f} s")
        if r.n_below_resolution:
            lines.append(f"  {r.n_below_resolution} entr{'y' if r.n_below_resolution == 1 else 'ies'} below the "
                         "estimate's resolution, all within bound (judged on absolute agreement, not in the "
                         "max relative error)")
    else:
        if r.worst is not None and (r.failures or not r.problems):
            lines.append(f"gradcheck FAILED{title}: {r.worst.param} is off by a relative error of "
                         f"{_e(r.worst.rel_error)} (tolerance {_e(r.worst.tolerance)})")
            other = max(r.tensors.values(), key=lambda t: t.max_rel_error) if r.tensors else None
            if r.max_rel_error > r.worst.rel_error and other is not None and other.name != r.worst.param:
                lines.append(f"  (the largest relative error, {_e(r.max_rel_error)}, is in {other.name}, within "
                             "the looser tolerance of that entry)")
        elif r.problems:
            lines.append(f"gradcheck FAILED{title}: {r.problems[0].message}")
        else:
            where = f" in {r.worst_param}" if r.worst_param else ""
            lines.append(f"gradcheck FAILED{title}: max relative error {_e(r.max_rel_error)}{where}")
    if r.operator:
        lines.append(f"  {operator_text(r.operator)}")
    if r.coverage:
        lines.extend(f"  {line}" for line in coverage_lines(r.coverage))
    shown_first = not r.passed and bool(r.problems) and not (r.worst is not None and r.failures)
    for p in r.problems[1 if shown_first else 0:]:
        lines.append(f"  problem: {p.message}")
    w = r.worst if not r.passed and (r.failures or not r.problems) else None
    if w is not None:
        sym = f", symbolic {_v(w.symbolic)}" if w.symbolic is not None else ""
        lines.append(f"  worst element {w.label()}: claimed {_v(w.claimed)}, numerical {_v(w.numerical)}"
                     f"{sym} ({scheme}, h={w.step:.3g})")
        lines.append(f"  error |claimed - numerical| / max(|numerical|, floor) = {_e(w.rel_error)} > "
                     f"tolerance {_e(w.tolerance)}")
        lines.append(f"  tolerance = {tolerance_text(r, w)}")
        if len(r.failures) > 1:
            others = ", ".join(f"{e.label()} ({_e(e.rel_error)})" for e in r.failures[1:6])
            more = len(r.failures) - 6
            lines.append(f"  also failing: {others}" + (f" and {more} more listed" if more > 0 else ""))
    if r.tensors and (not r.passed or len(r.tensors) <= 12):
        parts = []
        for t in r.tensors.values():
            status = "ok" if t.passed else f"FAILED ({t.n_failed} of {t.n_elements})"
            kinks = f", {t.n_kinks} kink" if t.n_kinks else ""
            parts.append(f"{t.name} {_e(t.max_rel_error)} {status}{kinks}")
        lines.append("  per tensor: " + " | ".join(parts))
    if r.diagnosis is not None:
        lines.append(f"  likely bug: {r.diagnosis.message} (confidence {r.diagnosis.confidence})")
    elif not r.passed and r.failures:
        lines.append("  likely bug: no known pattern in the errors")
    kinked = [e for e in r.kinks if e.note not in ("unsettled", "jump")]
    jumps = [e for e in r.kinks if e.note == "jump"]
    unsettled = [e for e in r.kinks if e.note == "unsettled"]
    if jumps:
        lines.append(f"  kinks in your code's path: {len(jumps)} element(s) left out of the verdict "
                     f"({_listed(jumps, len(jumps))}): your gradient jumps exactly at these parameters "
                     "(a convention such as relu'(0) taken where a pre-activation is exactly 0), so its "
                     "value there is a subgradient choice, not a limit")
    if kinked:
        n = (sum(t.n_kinks for t in r.tensors.values()) - len(jumps)) or len(kinked)
        lines.append(f"  kinks: {n} element(s) left out of the verdict ({_listed(kinked, n)}): "
                     "one-sided differences disagree and do not shrink with the step, so the loss is not "
                     "differentiable there and any subgradient is acceptable")
    if unsettled:
        n = sum(t.n_unsettled for t in r.tensors.values()) or len(unsettled)
        lines.append(f"  not differentiable within the step: {n} element(s) left out of the verdict "
                     f"({_listed(unsettled, n)}): the estimate did not settle on steps h to "
                     f"h/{2 ** (MODEL.ladder_rungs - 1)} (kinks of several units within the step, or too "
                     "noisy to tell); never counted as failures")
    if r.oracles:
        lines.append("  oracles: " + ", ".join(f"{k.replace('_', ' ')} {_e(v)}" for k, v in r.oracles.items()))
    if r.symbolic_status and r.symbolic_status != "ok":
        lines.append(f"  symbolic oracle: {r.symbolic_status}")
    for note in r.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def coverage_text(c: dict[str, Any]) -> str:
    """What a check under a budget covered, in one line: ``checked 2,048 of 1,000,000 elements in
    8 tensors, plus 16 directions over all (budget 30 s)``."""
    total, n = int(c.get("total") or 0), int(c.get("tensors") or 0)
    limits = ", ".join(([f"budget {float(c['budget']):g} s"] if c.get("budget") is not None else [])
                       + ([f"max_calls {int(c['max_calls']):,}"] if c.get("max_calls") is not None else []))
    tensors = f"{n} tensor{'' if n == 1 else 's'}"
    if c.get("complete") and not c.get("directions"):
        return f"checked all {total:,} elements in {tensors}" + (f" ({limits}: the full check fit)" if limits else "")
    dirs = int(c.get("directions") or 0)
    return (f"checked {int(c.get('checked') or 0):,} of {total:,} elements in {tensors}"
            + (f", plus {dirs} direction{'' if dirs == 1 else 's'} over all" if dirs else "")
            + (f" ({limits})" if limits else ""))


def coverage_lines(c: dict[str, Any]) -> list[str]:
    """The coverage line, and for a sample the chance it had of holding a single wrong element."""
    lines = [f"coverage: {coverage_text(c)}"]
    per = {k: v for k, v in (c.get("per_tensor") or {}).items() if isinstance(v, (list, tuple)) and v[1]}
    if not c.get("complete") and per:
        low = min(per, key=lambda k: per[k][0] / per[k][1])
        high = max(per, key=lambda k: per[k][0] / per[k][1])
        chance = f"{100 * per[low][0] / per[low][1]:.3g}% ({low})"
        if per[high][0] / per[high][1] > per[low][0] / per[low][1]:
            chance += f" to {100 * per[high][0] / per[high][1]:.3g}% ({high})"
        lines.append(f"sampled: a single wrong element at a random place was in the sample with probability "
                     f"{chance}; the random directions catch one only if it is large enough "
                     "(docs/checker.md, \"Checking within a budget\")")
    return lines


def operator_text(op: dict[str, Any]) -> str:
    """What an operator check covered, in one line."""
    outputs = ", ".join(f"{k} {tuple(v)}" for k, v in op.get("outputs", {}).items()) or "?"
    inputs = ", ".join(f"{k} {tuple(v)}" for k, v in op.get("inputs", {}).items())
    rows = sum(int(np.prod(v)) for v in op.get("outputs", {}).values())
    cols = sum(int(np.prod(v)) for v in op.get("inputs", {}).values())
    if op.get("kind") == "vjp":
        how = (f"the full Jacobian ({rows} rows, one unit cotangent each) plus 1 dense random cotangent"
               if op.get("mode") == "jacobian" else f"{op.get('cotangents')} random cotangents")
        derivative = "f_vjp"
    elif op.get("kind") == "hvp":
        how = (f"the full Hessian ({cols} columns, one unit direction each)" if op.get("mode") == "jacobian"
               else "a random direction per tensor and one over all, against differences of fn's gradient")
        derivative = "hvp"
    else:
        how = (f"the full Jacobian ({cols} columns, one unit tangent each)" if op.get("mode") == "jacobian"
               else "a random tangent per input and one over all inputs")
        derivative = "f_jvp"
    constants = f"; constants {', '.join(op['constants'])}" if op.get("constants") else ""
    return (f"{op.get('kind')} check of outputs {outputs} w.r.t. inputs {inputs}{constants}: {how}; "
            f"{op.get('f_calls')} calls of {'fn' if derivative == 'hvp' else 'f'}, "
            f"{op.get('derivative_calls')} of {derivative}")


# -- the one-line summary of a failure ------------------------------------------------------------
#: a few words per diagnosis pattern for the one-line summary
HINTS = {
    "sign_flip": "wrong sign?", "factor_two": "2x too large?", "factor_half": "half the true value?",
    "missing_mean": "missing 1/N of a mean?", "extra_mean": "extra 1/N?",
    "constant_factor": "off by a constant factor?", "zero_gradient": "zero gradient?",
    "transposed": "transposed?", "weight_decay": "weight-decay term?",
    "bias_one_sample": "bias from one sample?", "unused_parameter": "unused parameter?",
    "per_tensor": "a different factor per tensor?", "one_element": "one element wrong?",
    "bias_reduction": "bias reduction?", "weights_only": "weights wrong, biases right?",
    "hidden_layer_derivative": "activation derivative?", "one_layer": "one layer wrong?",
    "output_gradient": "output gradient?", "input_gradient": "a layer's input gradient (dx)?",
}


def _sci(x: Any) -> str:
    """``3.2e-01``; nan and inf spelled out."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.1e}"


def element_label(param: Any, index: Any) -> str:
    """``W1[0, 1]`` (``W1`` without an index)."""
    if not index and index != 0:
        return str(param)
    index = index if isinstance(index, (list, tuple)) else [index]
    return f"{param}[{', '.join(str(int(i)) for i in index)}]"


def failure_line(result: Result) -> str:
    """The first line of a failed check's test failure, which pytest's ``-ra`` short summary shows:
    where, how far off, against which tolerance, and the likely bug in a few words, e.g.
    ``gradient check failed: W1[0, 1] rel error 3.2e-01 > tol 1.0e-06 (wrong sign?); check 'mlp'``.
    A fault of the function (it raised, a nan, a wrong shape) gives its own message instead:
    ``gradient check failed (shape): grads['W'] has shape (2, 3), expected (3, 2) ...``."""
    named = f"; check {result.name!r}" if result.name else ""
    w = result.worst
    if w is not None and (result.failures or not result.problems):
        diag = result.diagnosis
        hint = ""
        if diag is not None:
            hint = f" ({HINTS.get(diag.pattern, diag.pattern.replace('_', ' ') + '?')})"
        where = w.display or element_label(w.param, w.index)
        return (f"gradient check failed: {where} rel error {_sci(w.rel_error)} > "
                f"tol {_sci(w.tolerance)}{hint}{named}")
    if result.problems:
        p = result.problems[0]
        message = (p.message.splitlines() or [""])[0]
        return f"gradient check failed ({p.kind}): {message}{named}"
    where = f" in {result.worst_param}" if result.worst_param else ""
    return f"gradient check failed: max rel error {_sci(result.max_rel_error)}{where}{named}"
