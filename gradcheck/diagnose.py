"""Name the likely bug from the pattern of errors of a failing check.

``diagnose(result, spec, params=, X=)`` looks at the claimed and numerical gradients of the
tensors that failed and names a pattern only when the numbers support it; otherwise it returns
None ("no known pattern"). Every test is judged against the estimates' own resolution (each
element's error bound ``t.error`` and the claimed dtype's epsilon, with the safety factors of
:mod:`gradcheck.compare`), never against a fixed constant: a ratio of 1.1 is as clear in float32
as in float64, and noise is never read as a pattern.

Two kinds of pattern (``Diagnosis.pattern``):

* **specific** (a relation checked exactly): ``sign_flip``, ``factor_two``, ``factor_half``,
  ``missing_mean`` (x N), ``extra_mean`` (x 1/N), ``constant_factor``, ``zero_gradient``,
  ``transposed``, ``unused_parameter`` (numerical exactly 0, claimed not), ``weight_decay``
  (claimed - numerical = lambda * W, needs ``params``), ``bias_one_sample`` (bias gradient = the
  first sample's contribution, needs ``X``), ``per_tensor`` (different exact relations in different
  tensors). A relation is looked for over all failing tensors together first, then tensor by
  tensor; the message names the tensors and the ratio, and lists the ratio's usual causes, narrowed
  only by where it holds (a factor in every tensor is the loss gradient's; one only in layers 1..k
  is not, but may be a dropout's), never a single story for an ambiguous ratio such as 2;
* **location** (:data:`LOCATION_PATTERNS`: *where* the error enters, read off which tensors
  fail, for networks whose parameters are named per layer: ``W1, b1, ...`` or ``0.weight, ...``):
  ``one_element``, ``bias_reduction``, ``weights_only``, ``hidden_layer_derivative``,
  ``one_layer``, ``output_gradient``; and for networks with other layer kinds (``conv1.W``,
  ``bn2.gamma``, ``W3``, ...) ``input_gradient``: every parameter below some layer fails, every
  one from it on is right, so a layer in between passes a wrong gradient to its input.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck.compare import ANALYTIC_ULPS, SAFETY, eps_of
from gradcheck.result import Diagnosis, Result, TensorReport

#: patterns that say where the error enters the backward pass, not what it is
LOCATION_PATTERNS = frozenset({"one_element", "bias_reduction", "weights_only", "hidden_layer_derivative",
                               "one_layer", "output_gradient", "input_gradient"})
#: patterns that name a cause, each confirmed by an exact numerical relation
SPECIFIC_PATTERNS = frozenset({"sign_flip", "factor_two", "factor_half", "missing_mean", "extra_mean",
                               "constant_factor", "zero_gradient", "transposed", "weight_decay",
                               "bias_one_sample", "unused_parameter", "per_tensor"})
PATTERNS = LOCATION_PATTERNS | SPECIFIC_PATTERNS

_TINY = 1e-300


@dataclass
class _View:
    """One tensor as the rules see it: float64 arrays restricted to the judged (non-kink) elements."""

    name: str
    report: TensorReport
    c: np.ndarray        # claimed
    d: np.ndarray        # numerical
    e: np.ndarray        # the numerical estimate's error bound
    judged: np.ndarray   # bool mask: not a kink, all finite
    eps: float           # epsilon of the claimed dtype
    failed: bool
    layer: int | None = None
    kind: str | None = None  # "W" or "b"

    def slack(self, c: np.ndarray | None = None, scale: float | None = None) -> np.ndarray:
        """Absolute resolution of each element: SAFETY x error bound + ANALYTIC_ULPS ulps of the scale."""
        c = self.c if c is None else c
        scale = float(np.max(np.abs(c[self.judged]), initial=0.0)) if scale is None else scale
        return SAFETY * self.e + ANALYTIC_ULPS * self.eps * (np.abs(c) + scale)


def _views(result: Result) -> list[_View]:
    out = []
    for t in result.tensors.values():
        if t.claimed is None or t.numerical is None:
            continue
        c = np.asarray(t.claimed, dtype=np.float64)
        d = np.asarray(t.numerical, dtype=np.float64)
        e = np.asarray(t.error, dtype=np.float64) if t.error is not None else np.zeros_like(d)
        if c.shape != d.shape or e.shape != d.shape:
            continue
        judged = np.isfinite(c) & np.isfinite(d) & np.isfinite(e)
        if t.kink is not None and np.shape(t.kink) == d.shape:
            judged &= ~np.asarray(t.kink, dtype=bool)
        e = np.where(np.isfinite(e), np.abs(e), 0.0)
        layer = _layer_of(t.name)
        out.append(_View(t.name, t, c, d, e, judged, eps_of(t.dtype), not t.passed,
                         *(layer if layer else (None, None))))
    return out


# -- parameter names -> (layer, kind) ------------------------------------------------------------
_NAMED = [
    (re.compile(r"^(?:W|w|weights?|kernel)_?(\d+)$"), "W"),
    (re.compile(r"^(?:b|bias|biases)_?(\d+)$"), "b"),
]
_DOTTED = re.compile(r"(\d+)[._](weight|bias)$")


def _layer_of(name: str) -> tuple[int, str] | None:
    """``W2 -> (2, "W")``, ``b1 -> (1, "b")``, ``net.0.weight -> (0, "W")``; None if not per-layer."""
    for rx, kind in _NAMED:
        m = rx.match(name)
        if m:
            return int(m.group(1)), kind
    m = _DOTTED.search(name)
    if m:
        return int(m.group(1)), "W" if m.group(2) == "weight" else "b"
    return None


_LAYERED = re.compile(r"^(?:[A-Za-z]+?(\d+)\.\w+|[Wb](\d+))$")


def _spec_layer(name: str) -> int | None:
    """The 1-based layer of a layered network's parameter (``conv1.W -> 1``, ``W3 -> 3``), or None."""
    m = _LAYERED.match(name)
    if not m:
        return None
    return int(m.group(1) or m.group(2))


def _input_gradient(failed: list[_View], views: list[_View], spec: Mapping[str, Any] | None) -> Diagnosis | None:
    """Layered networks: the failing tensors are exactly every parameter of the layers below some
    layer, and every parameter from that layer on is right. Their parameter gradients being right,
    the layers in between compute their own backward right but pass a wrong gradient to their
    input (dx), or the last failing layer's backward is wrong inside, before its parameters."""
    parsed = {v.name: _spec_layer(v.name) for v in views}
    if any(i is None for i in parsed.values()) or not any("." in v.name for v in views):
        return None
    index: dict[str, int] = {name: i for name, i in parsed.items() if i is not None}
    order = sorted(set(index.values()))
    bad = sorted({index[v.name] for v in failed})
    if not bad or bad != order[: len(bad)] or len(bad) == len(order):
        return None
    if not all(v.failed for v in views if index[v.name] in bad):
        return None
    last_bad, first_good = bad[-1], order[len(bad)]
    layers = list((spec or {}).get("layers") or [])

    def named(i: int) -> str:
        """``layer 2 (conv2d)`` with a spec, ``layer 2`` without."""
        layer = layers[i - 1] if 0 < i <= len(layers) and isinstance(layers[i - 1], Mapping) else None
        return f"layer {i} ({layer.get('kind', 'dense')})" if layer is not None else f"layer {i}"

    between = [named(i) for i in range(last_bad + 1, first_good + 1)]
    wrong = [v.name for v in views if v.failed]
    right = [v.name for v in views if not v.failed]
    return Diagnosis(
        "input_gradient",
        f"{', '.join(wrong)} wrong, {', '.join(right)} right: the gradient reaching the output of {named(last_bad)} "
        f"is wrong while every parameter from layer {first_good} on is right, so the input "
        f"gradient (dx) that {' or '.join(between)} passes down is wrong (a window written with = instead of +=, "
        f"a stride or scale missing, a term of the chain rule dropped), or layer {last_bad}'s own backward is "
        "wrong before its parameter gradients",
        "medium", wrong, {"last_wrong_layer": int(last_bad), "first_right_layer": int(first_good)})


def _batch_size(spec: Mapping[str, Any] | None, X: Any) -> int | None:
    if spec and isinstance(spec.get("batch"), int):
        return int(spec["batch"])
    shape = getattr(X, "shape", None)
    if shape and len(shape) >= 1 and int(shape[0]) > 0:
        return int(shape[0])
    return None


# -- rule 1: exact ratios, over the failing tensors together and tensor by tensor -------------------
@dataclass
class _Fit:
    ratio: float
    sigma: float       # 1-sd uncertainty of the ratio, from the error bounds
    n_significant: int
    eps: float         # the coarsest epsilon of the claimed dtypes
    resolution: float  # median over the resolved elements of each one's relative resolution

    def matches(self, target: float) -> bool:
        """Is the ratio ``target`` to within what the estimates resolve?"""
        return abs(self.ratio - target) <= SAFETY * self.sigma + ANALYTIC_ULPS * self.eps * abs(target)


def _fit_ratio(views: list[_View]) -> _Fit | None:
    """The common ratio claimed/numerical, if every judged element agrees with it within resolution.

    Weighted least squares of ``c = r d`` (weights 1/sigma_i^2, sigma_i = error bound + 1 ulp of
    ``d``), written with ``c/sigma`` and ``d/sigma`` so that exact zeros and tiny bounds neither
    divide by zero nor underflow; elements with ``d = 0`` carry no information on ``r`` and are left
    out of the sums (not out of the residual test). Then every element must satisfy ``|c - r d| <=
    SAFETY |r| e + ANALYTIC_ULPS eps_c (|c| + max|c|)``, the same shape of tolerance as the verdict.
    Elements count as resolved when ``|d| > SAFETY e + ulps``; with a single one, only a named ratio
    (-1, 2, N, ...) pinned to 1e-3 or better is claimed (one element has an arbitrary ratio to anything).
    """
    num = den = 0.0
    rho: list[np.ndarray] = []
    for v in views:
        m = v.judged
        c, d, e = v.c[m], v.d[m], v.e[m]
        s = e + v.eps * np.abs(d)
        use = d != 0  # then s >= eps |d| > 0 and |d / s| <= 1 / eps
        with np.errstate(over="ignore", invalid="ignore"):  # huge |c| / s: caught as non-finite below
            u, w = c[use] / s[use], d[use] / s[use]
            num += float(np.sum(u * w))
            den += float(np.sum(w * w))
        resolved = np.abs(d) > SAFETY * e + ANALYTIC_ULPS * v.eps * np.abs(d)
        rho.append(SAFETY * e[resolved] / np.abs(d[resolved]) + ANALYTIC_ULPS * v.eps)
    rho_all = np.concatenate(rho) if rho else np.zeros(0)
    n_sig = int(rho_all.size)
    if n_sig < 1 or not (den > 0 and math.isfinite(den) and math.isfinite(num)):
        return None
    r = num / den
    if not math.isfinite(r):
        return None
    for v in views:
        m = v.judged
        c, d = v.c[m], v.d[m]
        scale = float(np.max(np.abs(c), initial=0.0))
        lim = SAFETY * abs(r) * v.e[m] + ANALYTIC_ULPS * v.eps * (np.abs(c) + scale)
        with np.errstate(over="ignore", invalid="ignore"):  # r d beyond float range: fails the test
            resid = np.abs(c - r * d)
        if not np.all(resid <= lim):
            return None
    return _Fit(r, 1.0 / math.sqrt(den), n_sig, max(v.eps for v in views), float(np.median(rho_all)))


@dataclass
class _Finding:
    """One exact relation between claimed and numerical, holding for ``views``."""

    pattern: str
    label: str            # which relation: "-1", "N", "2", "c", "zero", "transposed", ...
    views: list[_View]
    headline: str         # what the relation says, e.g. "sign flipped in W1"
    causes: list[str]     # usual causes, narrowed by where the relation holds
    confidence: str = "high"
    ratio: float | None = None
    evidence: dict[str, Any] | None = None

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.views]


#: usual causes of each relation, tagged with where such a cause shows: "all" scales every gradient
#: (the loss gradient), "below" exactly the tensors of layers 1..k under a right top layer (a dropout,
#: a delta passed down), "part" anything short of every tensor, "any" anywhere
_CAUSES: dict[str, list[tuple[str, str]]] = {
    "-1": [("a delta kept as y - out (the error, not dL/dout)", "all"),
           ("the ascent convention (W += lr * g) folded into the gradient", "any"),
           ("`-=` for `+=` where the gradient is accumulated", "any")],
    "N": [("the loss averages over the batch but backward sums (its 1/N missing)", "all"),
          ("a sum over the batch where a mean was meant", "part"),
          ("the delta taken before the 1/N was applied", "part")],
    "1/N": [("divided by N twice (in the loss gradient and again in a later mean)", "all"),
            ("a mean over the batch where the loss sums", "all"),
            ("a mean where a sum was meant (dz.mean(0) when dz already carries the 1/N)", "part"),
            ("an explicit / N repeated in this part of backward", "part")],
    "2": [("the 2 of d(x^2)/dx where the loss is 0.5 x^2 (a 1/2 convention dropped)", "all"),
          ("the 2 of d(x^2)/dx for a square that forward does not have, or halves", "part"),
          ("dropout's 1/keep_prob applied twice or in backward only, keep_prob = 0.5", "below"),
          ("a gradient added twice (two paths, += into a buffer that already held it)", "any")],
    "1/2": [("the 2 of d(x^2)/dx missing in a squared loss", "all"),
            ("a 1/2 convention (0.5 x^2) in backward but not in the loss", "all"),
            ("the 2 of d(x^2)/dx missing for a squared term (an x^2 activation, a parameter used squared)",
             "part"),
            ("dropout's 1/keep_prob forgotten in backward, keep_prob = 0.5", "below"),
            ("one of two equal contributions dropped (a tensor used twice in forward)", "any")],
    "N/(N-1)": [("divided by N - 1 instead of N", "any")],
    "-N": [("sign flipped and the 1/N of the mean missing", "any")],
    "-2": [("a sign flip together with one of the factor-2 causes", "any")],
    "-1/2": [("a sign flip together with one of the factor-2 causes", "any")],
    "zero": [("never computed (left at its initial zeros)", "any"),
             ("the delta does not reach it (a branch not backpropagated)", "any")],
    "transposed": [("a missing or extra .T (dz.T @ a instead of a.T @ dz), silent for square matrices", "any")],
    "unused": [("backward gives a gradient to a parameter forward does not use", "any"),
               ("forward cuts the path (dead units, a clipped, detached or masked branch)", "any")],
}


def _where(views: list[_View], all_views: list[_View]) -> set[str]:
    """Which kinds of cause (see :data:`_CAUSES`) fit the set of tensors a relation holds for."""
    names = {v.name for v in views}
    if names >= {v.name for v in all_views}:
        return {"all", "any"}
    kinds = {"part", "any"}
    layers = _by_layer(all_views)
    if layers is None:
        return kinds | {"below"}
    order = list(layers)
    for k in range(1, len(order)):  # layers 1..k exactly, the top one excluded: below a dropout
        if names == {v.name for i in order[:k] for v in layers[i].values()}:
            return kinds | {"below"}
    return kinds


def _causes(label: str, views: list[_View], all_views: list[_View], ratio: float | None,
            n: int | None) -> list[str]:
    """The usual causes of relation ``label`` that fit where it holds (several for an ambiguous ratio)."""
    where = _where(views, all_views)
    pool = list(_CAUSES.get(label, []))
    if n == 2 and label in ("N", "1/N"):  # N = 2 is also the factor 2
        pool += _CAUSES["2" if label == "N" else "1/2"]
    if label == "c" and ratio is not None:
        if 0.1 <= ratio < 1:
            pool.append((f"dropout's 1/keep_prob forgotten in backward, keep_prob = {ratio:.3g}", "below"))
        elif 1 < ratio <= 10:
            pool.append((f"dropout's 1/keep_prob applied in backward only, keep_prob = {1 / ratio:.3g}", "below"))
        if ratio > 0:
            pool.append(("a scale used in forward but not in backward, or the reverse (a temperature, "
                         "a loss weight)", "any"))
        else:
            pool.append(("a sign flip together with a wrong scale", "any"))
    out: list[str] = []
    for text, kind in pool:
        if kind in where and text not in out:
            out.append(text)
    return out or [text for text, _ in pool[:1]]


def _ratio_finding(views: list[_View], all_views: list[_View], n: int | None, *,
                   min_elements: int = 1) -> _Finding | None:
    """The exact ratio claimed/numerical shared by ``views``, named, or None."""
    fit = _fit_ratio(views)
    if fit is None or fit.n_significant < min_elements:
        return None
    r = fit.ratio
    # a factor is a claim about every element: each one (the typical one) must resolve r from 1 on its
    # own; an average of unresolved noise can be far from 1 in sigmas and still say nothing
    if abs(r - 1) <= max(SAFETY * fit.sigma, 2 * fit.resolution):
        return None
    single = fit.n_significant < 2
    if single and SAFETY * fit.sigma > 1e-3 * abs(r):
        return None
    named = _name_ratio(fit, n)
    if named is None:
        return None
    pattern, label = named
    names = _names(views, all_views)
    headline = {
        "-1": f"sign flipped in {names}",
        "N": f"N x too large in {names} (N = {n}, the batch size)",
        "1/N": f"1/N of the right size in {names} (N = {n}, the batch size)",
        "2": f"twice the right size in {names}",
        "1/2": f"half the right size in {names}",
        "N/(N-1)": f"N/(N-1) with N = {n} in {names}",
        "-N": f"-N with N = {n} in {names}: sign flipped and N x too large",
        "-2": f"sign flipped and twice the right size in {names}",
        "-1/2": f"sign flipped and half the right size in {names}",
        "c": f"a constant factor in {names}",
    }[label]
    confidence = "medium" if single or label in ("c", "-2", "-1/2") else "high"
    ev: dict[str, Any] = {"ratio": r, "ratio_uncertainty": fit.sigma, "elements": fit.n_significant}
    if n and n > 1:
        ev["batch"] = n
    if label != "c":
        ev["match"] = label
    causes = _causes(label, views, all_views, r, n)
    ev["causes"] = causes
    return _Finding(pattern, label, list(views), headline, causes, confidence, r, ev)


def _name_ratio(fit: _Fit, n: int | None) -> tuple[str, str] | None:
    """``(pattern, label)`` of a fitted ratio; None for a bare number resting on one or two elements."""
    if fit.matches(-1):
        return "sign_flip", "-1"
    if n and n > 1:
        if fit.matches(n):
            return "missing_mean", "N"
        if fit.matches(1 / n):
            return "extra_mean", "1/N"
    if fit.matches(0.5):
        return "factor_half", "1/2"
    if fit.matches(2):
        return "factor_two", "2"
    if fit.n_significant < 3:  # an unnamed ratio of one or two elements says nothing
        return None
    if n and n > 1:
        if fit.matches(n / (n - 1)):
            return "constant_factor", "N/(N-1)"
        if fit.matches(-n):
            return "constant_factor", "-N"
    if fit.matches(-2):
        return "constant_factor", "-2"
    if fit.matches(-0.5):
        return "constant_factor", "-1/2"
    return "constant_factor", "c"


def _names(views: list[_View], all_views: list[_View]) -> str:
    """``"W1, b1"``, or ``"every tensor"``."""
    if len(views) == len(all_views) and len(all_views) > 1:
        return "every tensor"
    return ", ".join(v.name for v in views)


def _fmt_ratio(r: float) -> str:
    return f"{r:.3f}" if 1e-3 <= abs(r) < 1e4 else f"{r:.4g}"


def _zero_finding(views: list[_View], all_views: list[_View]) -> _Finding | None:
    """Every judged claimed element exactly zero, where the numerical gradient is not."""
    for v in views:
        m = v.judged
        if not m.any() or np.any(v.c[m] != 0) or not np.any(np.abs(v.d[m]) > v.slack(v.d)[m]):
            return None
    names = _names(views, all_views)
    return _Finding("zero_gradient", "zero", list(views), f"{names} exactly zero where the numerical gradient "
                    "is not", _causes("zero", views, all_views, None, None))


def _unused_finding(views: list[_View], all_views: list[_View]) -> _Finding | None:
    """The numerical gradient is exactly zero (the loss does not move) but the claimed one is not."""
    for v in views:
        m = v.judged
        if not m.any() or np.any(v.d[m] != 0) or not np.any(np.abs(v.c[m]) > v.slack()[m]):
            return None
    names = ", ".join(v.name for v in views)
    if len(views) == len(all_views) and len(all_views) > 1:
        return _Finding("unused_parameter", "unused", list(views), "the loss does not depend on any parameter "
                        "(every numerical gradient is exactly 0) but the claimed gradients are not 0",
                        ["a constant or detached loss", "every unit dead (saturated or zero activations)"], "medium")
    return _Finding("unused_parameter", "unused", list(views), f"the loss does not depend on {names} (numerical "
                    "gradient exactly 0) but the claimed gradient is not 0",
                    _causes("unused", views, all_views, None, None), "medium")


def _transposed_finding(views: list[_View], all_views: list[_View]) -> _Finding | None:
    for v in views:
        if v.c.ndim != 2 or v.c.shape[0] != v.c.shape[1] or v.c.shape[0] < 2 or not v.judged.all():
            return None
        scale = float(np.max(np.abs(v.d)))
        lim = SAFETY * v.e + ANALYTIC_ULPS * v.eps * (np.abs(v.d) + scale)
        if np.any(np.abs(v.c.T - v.d) > lim):
            return None
    names = _names(views, all_views)
    return _Finding("transposed", "transposed", list(views), f"{names} = the numerical gradient transposed",
                    _causes("transposed", views, all_views, None, None))


def _scope(views: list[_View], all_views: list[_View]) -> str:
    if len(views) == len(all_views) and len(all_views) > 1:
        return "every gradient"
    names = [v.name for v in views]
    return f"grads[{names[0]!r}]" if len(names) == 1 else ", ".join(names)


def _text(f: _Finding, all_views: list[_View]) -> str:
    """``grads['W1'] = -1.000 x numerical: sign flipped in W1; usual causes: ...``"""
    scope = _scope(f.views, all_views)
    if f.ratio is not None:
        head = f"{scope} = {_fmt_ratio(f.ratio)} x numerical: {f.headline}"
    else:
        head = f.headline
    if len(f.causes) == 1:
        return f"{head}: {f.causes[0]}"
    return f"{head}; usual causes: " + "; ".join(f.causes)


def _diagnosis(f: _Finding, all_views: list[_View]) -> Diagnosis:
    return Diagnosis(f.pattern, _text(f, all_views), f.confidence, f.names, dict(f.evidence or {}))


def _together(failed: list[_View], views: list[_View], n: int | None) -> Diagnosis | None:
    """One relation shared by every failing tensor (the whole-check patterns)."""
    f = (_zero_finding(failed, views) or _unused_finding(failed, views) or _ratio_finding(failed, views, n)
         or _transposed_finding(failed, views))
    return _diagnosis(f, views) if f is not None else None


def _relation(vs: list[_View], views: list[_View], n: int | None) -> _Finding | None:
    """The exact relation ``vs`` share, tested tensor by tensor (a ratio needs two resolved elements)."""
    return (_zero_finding(vs, views) or _unused_finding(vs, views)
            or _ratio_finding(vs, views, n, min_elements=2) or _transposed_finding(vs, views))


def _per_tensor(failed: list[_View], views: list[_View], n: int | None) -> Diagnosis | None:
    """Exact relations tensor by tensor, when no single one holds for every failing tensor.

    Each failing tensor is tested alone (a ratio needs two resolved elements here, an unnamed one
    three); tensors with the same named ratio are reported together, as are tensors with constant
    ratios that one joint fit accepts. Named only when at least one tensor has an exact relation;
    the tensors without one are listed as wrong otherwise.
    """
    found: list[_Finding] = []
    rest: list[_View] = []
    for v in failed:
        f = _relation([v], views, n)
        if f is None:
            rest.append(v)
            continue
        for i, g in enumerate(found):  # same relation: one finding if it holds for both together
            joint = _relation(g.views + [v], views, n) if g.label == f.label else None
            if joint is not None and joint.label == g.label:
                found[i] = joint
                break
        else:
            found.append(f)
    if not found:
        return None
    tail = f". Also wrong, by no exact relation: {', '.join(v.name for v in rest)}" if rest else ""
    if len(found) == 1:
        f = found[0]
        d = _diagnosis(f, views)
        d.message += tail
        if rest:
            d.confidence = "medium"
            d.evidence["unexplained"] = [v.name for v in rest]
        return d
    parts = [_text(f, views) for f in found]
    params = [name for f in found for name in f.names]
    ev: dict[str, Any] = {"per_tensor": {name: {"pattern": f.pattern, "relation": f.label,
                                                **({"ratio": f.ratio} if f.ratio is not None else {})}
                                         for f in found for name in f.names}}
    if rest:
        ev["unexplained"] = [v.name for v in rest]
    return Diagnosis("per_tensor", "a different exact relation per tensor: " + " | ".join(parts) + tail,
                     "medium", params, ev)


# -- rule 3: weight decay -------------------------------------------------------------------------
def _weight_decay(failed: list[_View], views: list[_View], params: Mapping[str, Any] | None) -> Diagnosis | None:
    """claimed - numerical = lambda * param for every failing tensor, one lambda for all."""
    if not params or any(v.name not in params for v in failed):
        return None
    if all(v.kind == "b" for v in failed):  # decay is a weights' term; biases alone are something else
        return None
    ps = {}
    for v in failed:
        p = np.asarray(params[v.name], dtype=np.float64)
        if p.shape != v.c.shape:
            return None
        ps[v.name] = p
    num = den = 0.0
    n_sig = 0
    masks = {}
    for v in failed:
        m = masks[v.name] = v.judged & np.isfinite(ps[v.name])
        p, diff = ps[v.name][m], v.c[m] - v.d[m]
        s = v.e[m] + v.eps * (np.abs(v.c[m]) + np.abs(v.d[m]))
        use = (s > 0) & (p != 0)  # s = 0: c = d = 0 exactly, left to the residual test below
        with np.errstate(over="ignore", invalid="ignore"):  # huge |p| / s: caught as non-finite below
            q = p[use] / s[use]
            num += float(np.sum(diff[use] / s[use] * q))
            den += float(np.sum(q * q))
        n_sig += int(np.sum(p != 0))
    if n_sig < 2 or not (den > 0 and math.isfinite(den) and math.isfinite(num)):
        return None
    lam = num / den
    if not math.isfinite(lam) or lam == 0:
        return None
    resolved = total = 0
    for v in failed:
        m = masks[v.name]
        slack = v.slack()[m]
        with np.errstate(over="ignore", invalid="ignore"):  # lam p beyond float range: fails the test
            resid = np.abs(v.c[m] - v.d[m] - lam * ps[v.name][m])
        if not np.all(resid <= slack):
            return None
        resolved += int(np.sum(np.abs(lam * ps[v.name][m]) > 3 * slack))
        total += int(m.sum())
    # the term must stand out of the noise in most elements, not be fitted to one or two
    if resolved < max(3, total // 2):
        return None
    names = [v.name for v in failed]
    ev = {"lambda": lam}
    if lam < 0:
        text = (f"claimed - numerical = -{abs(lam):.4g} x params for {', '.join(names)}: the L2 weight-decay "
                f"term lambda * W (lambda = {abs(lam):.4g}) of the loss is missing from the gradient")
    else:
        text = (f"claimed - numerical = +{lam:.4g} x params for {', '.join(names)}: an extra L2 term lambda * W "
                f"(lambda = {lam:.4g}) that the loss does not have: weight decay added twice, or added to the "
                "gradient but not to the loss")
    return Diagnosis("weight_decay", text, "high", names, ev)


# -- location patterns need clear failures ---------------------------------------------------------------
#: a location pattern reads which tensors pass and which fail; that partition is evidence only when
#: the failing ones fail by this factor beyond what their estimates resolve (else the same small
#: error may sit just under the tolerance of the tensors that pass)
LOCATION_MARGIN = 10.0


def _margin(v: _View) -> float:
    """The largest ``|c - d|`` of the tensor over its resolution, element by element."""
    m = v.judged
    if not m.any():
        return 0.0
    scale = float(np.max(np.abs(v.d[m])))
    lim = SAFETY * v.e[m] + ANALYTIC_ULPS * v.eps * (np.abs(v.d[m]) + scale) + _TINY
    with np.errstate(over="ignore"):  # an error 1e300 x its resolution is simply clear (inf)
        return float(np.max(np.abs(v.c[m] - v.d[m]) / lim))


def _clear(failed: list[_View]) -> bool:
    return all(_margin(v) >= LOCATION_MARGIN for v in failed)


# -- rule 4: one element ----------------------------------------------------------------------------
def _one_element(failed: list[_View], result: Result) -> Diagnosis | None:
    if not all(v.report.n_failed == 1 and v.report.n_elements > 1 for v in failed):
        return None
    where = []
    zeros = 0
    for v in failed:
        e = next((f for f in result.failures if f.param == v.name), None)
        if e is None:
            return None
        where.append(e)
        zeros += e.claimed == 0
    labels = ", ".join(e.label() for e in where)
    left = " (claimed exactly 0: never computed)" if zeros == len(where) else ""
    if len(where) == 1:
        text = f"only {labels} is wrong (every other element agrees){left}: an indexing slip or a special case"
    else:
        text = (f"one element in each of {', '.join(v.name for v in failed)} is wrong ({labels}){left}; every "
                "other element agrees: a loop bound or an off-by-one index")
    return Diagnosis("one_element", text, "medium", [v.name for v in failed],
                     {"elements": [e.label() for e in where]})


# -- rule 5: bias gradients -------------------------------------------------------------------------
def _bias_rules(failed: list[_View], views: list[_View], X: Any) -> Diagnosis | None:
    if not failed or any(v.kind != "b" for v in failed):
        return None
    weights = [v for v in views if v.kind == "W"]
    if not weights or any(v.failed for v in weights):
        return None
    # "the weight gradients are right" is evidence about the deltas only where a weight gradient
    # is measurably non-zero (an all-zero input, e.g. X = 0, makes dW = 0 whatever the deltas)
    for b in failed:
        w = next((v for v in weights if v.layer is not None and v.layer == b.layer), None)
        if w is None or not np.any(np.abs(w.d[w.judged]) > w.slack()[w.judged]):
            return None
    names = [v.name for v in failed]
    sample = _bias_sample(views, X)
    if sample is not None:
        row, name, ev = sample
        which = "first" if row == 0 else "last"
        return Diagnosis("bias_one_sample",
                         f"grads[{name!r}] equals the {which} sample's contribution alone (the layer's deltas "
                         f"recovered from its weight gradient and X), every weight gradient is right: the sum over "
                         f"the batch is missing (dz[{row}] instead of dz.sum(axis=0))"
                         + (f"; {', '.join(n for n in names if n != name)} wrong as well" if len(names) > 1 else ""),
                         "high", names, ev)
    return Diagnosis("bias_reduction", f"only the bias gradients are wrong ({', '.join(names)}), every weight "
                     "gradient is right: the deltas are right, their reduction over the batch is not "
                     "(one sample, a mean instead of a sum, the wrong axis)", "medium", names)


def _bias_sample(views: list[_View], X: Any) -> tuple[int, str, dict] | None:
    """For the first layer (input X): recover the deltas dz from dW = X.T @ dz, then test whether the
    claimed bias gradient is one row of dz (the first or the last sample)."""
    if X is None:
        return None
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if X.ndim != 2 or not np.all(np.isfinite(X)):
        return None
    layers = sorted({v.layer for v in views if v.layer is not None})
    if not layers:
        return None
    first = {v.kind: v for v in views if v.layer == layers[0]}
    W, b = first.get("W"), first.get("b")
    if W is None or b is None or W.c.ndim != 2 or b.c.ndim != 1 or not (W.judged.all() and b.judged.all()):
        return None
    N, D = X.shape
    dW, eW = W.d, W.e
    if dW.shape == (D, b.c.size):
        pass
    elif dW.shape == (b.c.size, D):  # (out, in) convention: dW = dz.T @ X
        dW, eW = dW.T, eW.T
    else:
        return None
    if N > D or np.linalg.matrix_rank(X) < N:
        return None  # the deltas are not determined by dW
    P = np.linalg.pinv(X.T)                 # (N, D): dz = P @ dW
    dz = P @ dW
    dz_err = np.abs(P) @ eW + ANALYTIC_ULPS * W.eps * np.abs(P) @ np.abs(dW)
    # the recovery is real only if it reproduces dW (when over-determined) and the bias gradient
    scale = float(np.max(np.abs(dW)))
    if np.any(np.abs(X.T @ dz - dW) > SAFETY * eW + ANALYTIC_ULPS * W.eps * (np.abs(dW) + scale)):
        return None
    db = b.d
    if np.any(np.abs(dz.sum(axis=0) - db) > SAFETY * (dz_err.sum(axis=0) + b.e) + ANALYTIC_ULPS * b.eps
              * (np.abs(db) + float(np.max(np.abs(db))))):
        return None
    for row in (0, N - 1):
        lim = SAFETY * dz_err[row] + ANALYTIC_ULPS * b.eps * (np.abs(b.c) + float(np.max(np.abs(b.c))))
        if N > 1 and np.all(np.abs(b.c - dz[row]) <= lim) and np.any(np.abs(dz[row] - db) > lim):
            return row, b.name, {"sample": int(row), "batch": int(N), "verified_on": b.name}
    return None


# -- rule 6..9: where the error enters (per-layer parameter names) -----------------------------------
def _by_layer(views: list[_View]) -> dict[int, dict[str, _View]] | None:
    layers: dict[int, dict[str, _View]] = {}
    for v in views:
        if v.layer is None or v.kind is None:  # set together, by _layer_of
            return None
        group = layers.setdefault(v.layer, {})
        if v.kind in group:
            return None
        group[v.kind] = v
    if any("W" not in g for g in layers.values()):
        return None
    return dict(sorted(layers.items()))


def _layer_index(v: _View) -> int:
    """The layer of ``v``, one of the views :func:`_by_layer` accepted (every one has a layer)."""
    assert v.layer is not None
    return v.layer


def _layer_error(group: dict[str, _View]) -> float:
    return max(v.report.max_rel_error for v in group.values())


def _weights_only(failed: list[_View], layers: dict[int, dict[str, _View]]) -> Diagnosis | None:
    if any(v.kind != "W" for v in failed):
        return None
    for v in failed:
        b = layers[_layer_index(v)].get("b")
        if b is None or b.failed:
            return None
    names = [v.name for v in failed]
    return Diagnosis("weights_only", f"{', '.join(names)} wrong while every bias gradient is right: the deltas dz "
                     "are right, so in dW = a_prev.T @ dz the layer input a_prev is not (a wrong cache entry, an "
                     "off-by-one layer index) or a term only the weights have is off", "medium", names)


def _hidden_prefix(failed: list[_View], layers: dict[int, dict[str, _View]]) -> Diagnosis | None:
    order = list(layers)
    bad = [i for i in order if any(v.failed for v in layers[i].values())]
    if len(order) < 2 or not bad or bad != order[: len(bad)] or bad[-1] == order[-1]:
        return None
    k = bad[-1]
    if not all(v.failed for v in layers[k].values()):  # where it enters, both W and b see the wrong delta
        return None
    if not all(layers[i]["W"].failed for i in bad):
        return None
    errs = {layers[i]["W"].name: _layer_error(layers[i]) for i in bad}
    grows = all(_layer_error(layers[a]) <= _layer_error(layers[b]) for a, b in zip(bad[1:], bad[:-1]))
    right = [v.name for i in order for v in layers[i].values() if not v.failed]
    wrong = [v.name for i in bad for v in layers[i].values() if v.failed]
    per_layer = ", ".join(f"{n} {x:.2e}" for n, x in reversed(errs.items()))
    above = layers[order[order.index(k) + 1]]["W"].name
    trend = (f"; the error grows toward the input ({per_layer})" if grows and len(bad) > 1
             else f"; max errors {per_layer}")
    return Diagnosis("hidden_layer_derivative",
                     f"only {', '.join(wrong)} wrong ({', '.join(right)} right): the delta reaching hidden layer {k} "
                     f"is wrong: its activation derivative, or the delta passed back through {above} (transposed, "
                     f"stale, or another layer's weights){trend}",
                     "medium", wrong, {"entry_layer": int(k), "per_layer": errs, "grows_toward_input": bool(grows)})


def _one_layer(failed: list[_View], layers: dict[int, dict[str, _View]]) -> Diagnosis | None:
    order = list(layers)
    bad = sorted({_layer_index(v) for v in failed})
    if len(bad) != 1 or bad[0] == order[0]:
        return None
    k = bad[0]
    names = [v.name for v in failed]
    return Diagnosis("one_layer", f"only layer {k}'s gradients are wrong ({', '.join(names)}) and the layers below "
                     "it are right, so the delta it passes down is right: the error is in that layer's own "
                     "gradient formula", "medium", names)


def _output(failed: list[_View], layers: dict[int, dict[str, _View]]) -> Diagnosis | None:
    if not all(g["W"].failed for g in layers.values()):
        return None
    names = [v.name for v in failed]
    out = layers[list(layers)[-1]]
    text = ("every layer's gradient is wrong, the output layer's included, by ratios that vary: the error "
            "enters at the top of the backward pass (the loss gradient dL/dout, the output activation's "
            "derivative, or the cached forward values they read)")
    ev: dict[str, Any] = {}
    if _shift_invariance_broken(out):
        ev["shift_invariance"] = "broken"
        text += ("; the loss does not change when one constant is added to every output (its numerical "
                 "output-bias gradient sums to zero, as a softmax's does) but the claimed one does not sum to "
                 "zero: is the softmax missing from the cross-entropy gradient (z - y instead of p - y)?")
    return Diagnosis("output_gradient", text, "low", names, ev)


def _shift_invariance_broken(group: dict[str, _View]) -> bool:
    b = group.get("b")
    if b is None or b.c.ndim != 1 or b.c.size < 2 or not b.judged.all():
        return False
    tol = float(np.sum(SAFETY * b.e)) + ANALYTIC_ULPS * b.eps * float(np.sum(np.abs(b.d)))
    return abs(float(np.sum(b.d))) <= tol and abs(float(np.sum(b.c))) > SAFETY * tol + _TINY


# -- the entry point ----------------------------------------------------------------------------------
def diagnose(result: Result, spec: Mapping[str, Any] | None = None, *, params: Mapping[str, Any] | None = None,
             X: Any = None) -> Diagnosis | None:
    """A :class:`Diagnosis` for a failing result with per-element data, or None (no known pattern).

    ``spec`` (a NetworkSpec dict) gives the batch size; ``params`` (the checked parameters) enable
    the weight-decay test; ``X`` (the input batch) the bias-from-one-sample test. All optional.
    """
    views = _views(result)
    failed = [v for v in views if v.failed]
    if not failed:
        return None
    n = _batch_size(spec, X)
    for rule in (lambda: _together(failed, views, n),
                 lambda: _weight_decay(failed, views, params),
                 lambda: _per_tensor(failed, views, n)):
        d = rule()
        if d is not None:
            return d
    if not _clear(failed):
        return None
    for rule in (lambda: _one_element(failed, result),
                 lambda: _bias_rules(failed, views, X)):
        d = rule()
        if d is not None:
            return d
    layers = _by_layer(views)
    if layers is None:
        return _input_gradient(failed, views, spec)
    for layer_rule in (_weights_only, _hidden_prefix, _one_layer, _output):
        d = layer_rule(failed, layers)
        if d is not None:
            return d
    return None


__all__ = ["diagnose", "LOCATION_PATTERNS", "SPECIFIC_PATTERNS", "PATTERNS"]
