"""The symbolic cross-check: the SymPy oracle beside the numerical one, each checking the other.

Given a :class:`~gradcheck.spec.NetworkSpec` small enough for SymPy, the exact gradient joins the
result (analytic vs symbolic, numerical vs symbolic), and the two oracles must agree within the
numerical estimate's bound: a disagreement fails the check as a harness problem, never silently.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcheck.compare import eps_of, pair_error
from gradcheck.judging import MAX_REFINE, Judge
from gradcheck.result import Element, Problem, Result, TensorReport, fmt_index
from gradcheck.tolerance import MODEL

Array = np.ndarray


#: the symbolic oracle's parameter limit (``gradcheck.symbolic.network.DEFAULT_MAX_PARAMS``; a test
#: keeps the two equal): known from the spec, so a larger network is refused without SymPy
SYMBOLIC_MAX_PARAMS = 2000
#: digits of the symbolic oracle's ground-truth evaluation, asked for when its float64 one disagrees
EXACT_DPS = 50


def size_refusal(spec: Any) -> str | None:
    """The symbolic oracle's refusal of ``spec`` for its parameter count, worded as its own
    ``SymbolicSkipped`` message, or None when the count is within the limit (the oracle may still
    refuse later for expression size or time)."""
    P = getattr(spec, "n_params", None)
    if isinstance(P, int) and P > SYMBOLIC_MAX_PARAMS:
        return f"skipped: too large (P={P}, limit max_params={SYMBOLIC_MAX_PARAMS})"
    return None


def add_symbolic(result: Result, spec: Any, params: Mapping[str, Array], X: Any, y: Any,
                 claimed: Mapping[str, Array], judge: Judge | None) -> None:
    """Add the SymPy oracle: analytic vs symbolic and numerical vs symbolic errors, then the
    cross-check of the two oracles (:func:`_oracle_disagreement`)."""
    tensors = result.tensors
    too_large = size_refusal(spec)
    if too_large is not None:  # decided from the spec alone: SymPy (~1 s to import) is not loaded
        result.symbolic_status = too_large
        return
    try:
        from gradcheck import symbolic as sym  # noqa: PLC0415 - SymPy is slow to import; only on use
        exact = sym.network_gradient(spec, params, X, y)
    except Exception as exc:  # SymbolicSkipped, or the oracle itself failed
        kind = type(exc).__name__
        result.symbolic_status = str(exc) if kind == "SymbolicSkipped" else f"unavailable ({kind}: {exc})"
        return
    result.symbolic_status = "ok"
    for t in tensors.values():
        t.symbolic = np.asarray(exact[t.name], dtype=np.float64)
    def symbolic_at(k: str, flat_i: int, delta: float) -> float:
        """The symbolic gradient's element with that one parameter moved by ``delta``."""
        moved = {name: np.array(v, dtype=np.float64, copy=True) for name, v in params.items()}
        moved[k].reshape(-1)[flat_i] += delta
        return float(np.asarray(sym.network_gradient(spec, moved, X, y)[k], dtype=np.float64).reshape(-1)[flat_i])

    high_precision: dict[str, Array] = {}

    def at_50_digits() -> dict[str, Array]:
        """The same expressions at 50 digits (mpmath), computed once on first need."""
        if not high_precision:
            floats = sym.exact_gradient(spec, params, X, y, dps=EXACT_DPS)
            assert isinstance(floats, dict)  # without return_mpf: the float64 arrays alone
            high_precision.update(floats)
        return high_precision

    disagreement = oracle_disagreement(result, judge, params, symbolic_at, at_50_digits)
    a_vs_s, n_vs_s = 0.0, 0.0
    for k, t in tensors.items():
        exact_k = np.asarray(t.symbolic, dtype=np.float64)
        numerical_k = np.asarray(t.numerical, dtype=np.float64)
        error_k = np.asarray(t.error, dtype=np.float64)
        judged = ~np.asarray(t.kink, bool) if t.kink is not None else np.ones(exact_k.shape, bool)
        # like the headline: only entries the numerical estimate resolves (|symbolic| clearly above
        # the bound the cross-check allows); the rest were judged on absolute agreement
        with np.errstate(all="ignore"):
            allowed = MODEL.safety * error_k + MODEL.oracle_ulps * eps_of(np.float64) * (np.abs(exact_k) + result.scale)
        judged = judged & (allowed <= np.abs(exact_k) * eps_of(np.float64) ** MODEL.resolved_power)
        eps = eps_of(t.dtype)
        t.symbolic_max_rel_error = pair_error(claimed[k], exact_k, eps=eps, error=error_k, scale=result.scale,
                                              where=judged)
        a_vs_s = max(a_vs_s, t.symbolic_max_rel_error)
        n_vs_s = max(n_vs_s, pair_error(numerical_k, exact_k, eps=eps, error=error_k, scale=result.scale,
                                        where=judged))
    result.oracles["analytic_vs_symbolic"] = a_vs_s
    result.oracles["numerical_vs_symbolic"] = n_vs_s
    for e in [result.worst, *result.failures, *result.kinks]:
        exact_e = tensors[e.param].symbolic if e is not None else None
        if e is not None and exact_e is not None:
            e.symbolic = float(exact_e[tuple(e.index)])
    if disagreement is not None:
        result.passed = False
        result.problems.append(disagreement)


def leave_out(result: Result, t: TensorReport, i: tuple, numerical_value: float, error: float,
               step: float) -> None:
    """No single derivative at this element: not the oracles' quarrel; listed as a kink."""
    assert t.kink is not None and t.claimed is not None  # set by the judge before the cross-check
    t.kink[i] = True
    t.n_kinks += 1
    result.kinks.append(Element(t.name, [int(v) for v in i], float(t.claimed[i]), numerical_value, 0.0,
                                math.nan, error, step, note="kink"))


def _bound(error: Array, symbolic: Array, scale: float) -> Array:
    """What the cross-check allows between the oracles: the numerical estimate's bound (``safety x
    E``) plus ``oracle_ulps`` of float64 for the symbolic evaluation's own rounding."""
    with np.errstate(all="ignore"):
        return MODEL.safety * error + MODEL.oracle_ulps * eps_of(np.float64) * (np.abs(symbolic) + scale)


def _excess(numerical: Array, symbolic: Array, bound: Array, left_out: Array) -> Array:
    """``|numerical - symbolic| / bound`` per element: 0 where left out, inf where undefined."""
    with np.errstate(all="ignore"):
        excess = np.where(left_out, 0.0, np.abs(numerical - symbolic) / bound)
    return np.where(np.isnan(excess), np.inf, excess)


def oracle_disagreement(result: Result, judge: Judge | None, params: Mapping[str, Array],
                         symbolic_at: Callable[[str, int, float], float] | None = None,
                         exact: Callable[[], Mapping[str, Array]] | None = None) -> Problem | None:
    """The oracles cross-check each other: numerical vs symbolic beyond the numerical estimate's
    bound (``safety x E``) plus ``oracle_ulps`` of float64 (the symbolic evaluation's own rounding),
    on every element with a derivative. An element beyond that first gets the second look (the
    step ladder): a kink there (SymPy picks one branch, e.g. Heaviside(0) = 1/2) is left out and
    listed like any kink; a settled estimate is compared again. Where the symbolic value at x is
    a branch convention (a pre-activation exactly on a kink whose effect the loss does not feel,
    e.g. a chain of dead ReLUs), the symbolic gradient 64 ulps to either side tells: if
    those two differ, or both agree with the numerical estimate, x sits on a branch point of the
    expression and the element is left out as a kink. A wrong oracle inside a passing run
    is the worst outcome, so what remains fails the check, naming the pair and the element.

    Before failing, the symbolic side is evaluated again at 50 digits (``exact``, mpmath): its
    float64 evaluation rounds every intermediate, and where terms of O(1) cancel to a tiny
    gradient (a softmax of equal logits minus its target) that rounding is far above the few ulps
    of the result the bound allows. The high-precision values replace the float64 ones for the
    tensor (for every later comparison too); a disagreement with them stands."""
    worst: tuple[float, str, tuple, float, float, float] | None = None
    for k, t in result.tensors.items():
        if t.symbolic is None or t.numerical is None or t.error is None:
            continue
        s, d = t.symbolic, np.array(t.numerical, dtype=np.float64)  # a copy: refined values stay here
        left_out = np.asarray(t.kink, bool) if t.kink is not None else np.zeros(d.shape, bool)
        e = np.array(t.error, dtype=np.float64)  # a copy: refined bounds stay here
        t.kink = left_out
        bound = _bound(e, s, result.scale)
        excess = _excess(d, s, bound, left_out)
        for flat_i in np.flatnonzero(excess.reshape(-1) > 1)[:MAX_REFINE]:
            i = np.unravel_index(int(flat_i), d.shape)
            if judge is None:
                continue
            ref = judge.second_look(k, params[k], int(flat_i))
            if ref.status != "smooth":
                leave_out(result, t, i, float(d[i]), float(t.error[i]), ref.step)
                excess[i] = 0.0
                continue
            b_i = float(_bound(np.float64(ref.error), s[i], result.scale))
            excess[i] = abs(ref.value - s[i]) / b_i if b_i > 0 else math.inf
            d[i], e[i], bound[i] = ref.value, ref.error, b_i
            if excess[i] > 1 and symbolic_at is not None:
                try:
                    # a few ulps to either side: the branch is decided there, the smooth change is not seen
                    delta = 64 * eps_of(np.float64) * max(1.0, abs(float(params[k].reshape(-1)[flat_i])))
                    above, below = (symbolic_at(k, int(flat_i), sign * delta) for sign in (1.0, -1.0))
                except Exception:  # the oracle could not evaluate there: keep the disagreement
                    continue
                branch = abs(above - below) > b_i or (abs(above - ref.value) <= b_i and abs(below - ref.value) <= b_i)
                if branch:
                    leave_out(result, t, i, float(d[i]), float(t.error[i]), ref.step)
                    excess[i] = 0.0
        if exact is not None and excess.size and float(excess.max()) > 1:
            try:
                s = np.asarray(exact()[k], dtype=np.float64).reshape(d.shape)
            except Exception:  # no ground truth (mpmath failed or refused): keep the float64 verdict
                pass
            else:
                beyond = int(np.count_nonzero(excess > 1))
                t.symbolic = s
                bound = _bound(e, s, result.scale)
                excess = _excess(d, s, bound, left_out)
                result.notes.append(f"the symbolic oracle's float64 evaluation of {k} was beyond the bound at "
                                    f"{beyond} element(s) (its intermediates round): {k} re-evaluated with mpmath "
                                    f"at {EXACT_DPS} digits, whose values are used")
        if excess.size and float(excess.max()) > 1:
            i = np.unravel_index(int(np.argmax(excess)), d.shape)
            if worst is None or excess[i] > worst[0]:
                worst = (float(excess[i]), k, i, float(d[i]), float(s[i]), float(bound[i]))
    if worst is None:
        return None
    ratio, k, i, d_i, s_i, b_i = worst
    return Problem("oracle_disagreement",
                   f"the oracles disagree: numerical vs symbolic at {fmt_index(k, i)}: numerical {d_i:.9g}, "
                   f"symbolic {s_i:.9g}, {ratio:.3g} x beyond their combined bound {b_i:.2e}. One of the "
                   "oracles is wrong here (a harness problem, not a verdict on fn): please report it",
                   k, [int(v) for v in i])
