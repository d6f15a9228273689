"""Fast mode: random directional derivatives, then bisection to localize a mismatch.

``check(..., mode="fast")`` compares the claimed gradient ``c`` with the loss along a few random
directions ``v`` instead of element by element:

1. **Detect** (a constant number of calls): for each direction, ``D(v)``, the Richardson-extrapolated
   central difference of the loss along ``v`` (steps ``h`` and ``h/2``: 4 calls), against ``c . v``.
   ``v_i = +-max(1, |x_i|)`` (random signs, rounded to a power of two): each element moves by its
   own central-difference step, and a single wrong element contributes its whole error ``+-e_i`` to
   the mismatch, never a randomly small share of it (as a Gaussian direction would). The verdict
   goes through :func:`gradcheck.compare.compare` with the estimate's error bound (rounding from
   the measured noise, truncation from the two steps) plus the claimed projection's own rounding.
2. **Localize** (O(log P) calls): on a mismatch, bisect the concatenated parameter elements. The
   mismatch is linear in the direction, so measuring one half (2 calls) gives the other half by
   subtraction; follow the larger. The last element left is re-examined on its own
   (:func:`gradcheck.numerical.refine_element`: a ladder of steps, Richardson value, error bound,
   kink test; 6 calls when the first three steps settle it).

Cost: 2 validation calls + 6 (noise) + 4 per direction + 2 ceil(log2 P) + 6, within
``22 + 2 log2(P)`` for a detected single wrong element (the budget of issue 11 was 20 + 2 log2(P)
with a 4-call second look; the ladder's third step, which tells a kink crossed by the step from a
smooth point, costs 2 more). It is **not a per-element verdict**: errors
below the directional resolution (spread over many elements or hidden in one small one) can pass.
Never the default; ``mode="full"`` is.

Memory: besides the private copy of the parameters that the loss is evaluated at, a direction
holds one byte per element (its signs) and the parameters two (the exponents of ``|v_i|``); the
perturbed points and displacements are computed in blocks of :data:`BLOCK` elements whenever a
range is measured (elementwise, so the values are the same as if they were stored; a projection
``c . u`` over more than one block is the ``math.fsum`` of the blocks' dot products), and the
originals are read from the checker's frozen parameters. Peak: about 4 parameter vectors, in the
noise probe (it was ~18 with stored points); the time is what it was.
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcheck import numerical
from gradcheck.compare import ANALYTIC_ULPS, SAFETY, claimed_eps, compare
from gradcheck.result import Element, Problem, Result, TensorReport, fmt_index

Array = np.ndarray

#: random directions tried before passing (each one alone misses a mismatch only by bad luck)
DIRECTIONS = 2
#: points of the noise probe, along one direction (a probe that crosses a kink overestimates the
#: noise: a looser tolerance, never a false alarm)
NOISE_POINTS = 6
#: kinks (non-differentiable elements) set aside before fast mode gives up and says so
MAX_KINK_ROUNDS = 3
#: elements per block when points, displacements and projections are computed (bounds the memory)
BLOCK = 1 << 16
#: random signs are drawn in blocks of this many (the same stream as one draw of the whole tensor)
SIGN_BLOCK = 1 << 16
NOT_PER_ELEMENT = ("fast mode: random directional derivatives, not a per-element verdict (an error "
                   "spread thinly or in one tiny element can pass); use mode='full' for the verdict")


class _Params:
    """The parameters as one concatenated vector of elements, perturbed in place on private copies.
    ``x0``: the original values, flat views of ``params`` (the checker's frozen copies, which no
    one writes to) where they are contiguous, so no second copy is held."""

    def __init__(self, params: Mapping[str, Array]) -> None:
        self.work = {k: np.array(v, copy=True, order="C") for k, v in params.items()}
        self.names = list(self.work)
        self.flat = [self.work[k].reshape(-1) for k in self.names]
        self.x0 = [np.ascontiguousarray(params[k]).reshape(-1) for k in self.names]
        # log2 of each element's scale max(1, |x|), rounded: |v_i| = 2**e_i in every direction
        # (0..1024, two bytes per element; computed once instead of per block and direction)
        self.exponent = []
        for x0 in self.x0:
            e = np.empty(x0.size, np.int16)
            for lo in range(0, x0.size, BLOCK):
                x = x0[lo:lo + BLOCK].astype(np.float64)
                e[lo:lo + BLOCK] = np.round(np.log2(np.maximum(1.0, np.abs(x))))
            self.exponent.append(e)
        sizes = [f.size for f in self.flat]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.size = int(self.starts[-1])

    def locate(self, i: int) -> tuple[int, int]:
        """Tensor number and flat index within it of concatenated element ``i``."""
        t = int(np.searchsorted(self.starts, i, side="right") - 1)
        return t, i - int(self.starts[t])

    def segments(self, lo: int, hi: int):
        """``(tensor number, a, b)`` for the part of ``[lo, hi)`` that lies in each tensor."""
        for t in range(len(self.names)):
            a, b = max(lo, self.starts[t]), min(hi, self.starts[t + 1])
            if a < b:
                yield t, int(a - self.starts[t]), int(b - self.starts[t])


def _signs(rng: np.random.Generator, n: int) -> Array:
    """``n`` random signs as booleans (True: +1), drawn in blocks: the same values as
    ``rng.integers(0, 2, size=n)`` in one draw, without its int64 array."""
    out = np.empty(n, bool)
    for a in range(0, n, SIGN_BLOCK):
        b = min(n, a + SIGN_BLOCK)
        out[a:b] = rng.integers(0, 2, size=b - a)
    return out


class _Direction:
    """One random direction ``v_i = +-max(1, |x_i|)`` (rounded to a power of two; 0 where a kink is
    set aside): its signs are stored, everything else is recomputed per block (:meth:`blocks`)."""

    def __init__(self, p: _Params, rng: np.random.Generator, h: float, kinks: list[list[int]]) -> None:
        self.h, self.p = h, p
        self.signs = [_signs(rng, x.size) for x in p.x0]
        self.kinks = [np.array(sorted(k), dtype=np.intp) for k in kinks]

    def step_v(self, step: float, t: int, lo: int, hi: int) -> Array:
        """``step * v`` for elements ``[lo, hi)`` of tensor ``t`` (``v = sign * 2**e``, the same
        values as ``sign * pow2(max(1, |x|))``, times 0 at kinks set aside)."""
        v = np.where(self.signs[t][lo:hi], 1.0, -1.0)
        v *= np.exp2(self.p.exponent[t][lo:hi].astype(np.float64))
        kinks = self.kinks[t]
        if kinks.size:
            inside = kinks[(kinks >= lo) & (kinks < hi)] - lo
            v[inside] *= 0.0
        v *= step
        return v


class _Probe:
    """Directional differences of the loss over a range of concatenated elements."""

    def __init__(self, loss: Callable[[dict], Any], p: _Params, claimed: list[Array]) -> None:
        self.loss, self.p, self.claimed = loss, p, claimed
        self.scales = [float(np.max(np.abs(c))) if c.size else 0.0 for c in claimed]  # max_tensor |c|
        self.calls = 0

    def difference(self, d: _Direction, step: float, lo: int, hi: int,
                   allowance: bool = False) -> tuple[float, float, float]:
        """``(D, C, A)``: the central difference of the loss along ``d`` restricted to ``[lo, hi)``,
        the claimed gradient's projection on the same realized displacement, and (``allowance``)
        ``sum_i |u_i| (|c_i| + max_tensor |c|)`` for :func:`_claimed_rounding`, else 0. Each block's
        points are computed on the way out (plus, with the projection) and again on the way back
        (minus): nothing of parameter size is stored."""
        segs = list(self.p.segments(lo, hi))
        values = []
        dots: list[float] = []
        total = 0.0
        try:
            for side in (1.0, -1.0):
                for t, a, b in segs:
                    x0, flat, c = self.p.x0[t], self.p.flat[t], self.claimed[t]
                    for bl in range(a, b, BLOCK):
                        bh = min(b, bl + BLOCK)
                        x = x0[bl:bh]
                        v = d.step_v(step, t, bl, bh)
                        minus = (x - v).astype(x.dtype)
                        if side > 0:
                            plus = (x + v).astype(x.dtype)
                            flat[bl:bh] = plus
                            # the realized displacement per unit step (x +- step*v is rounded to the dtype)
                            u = (plus.astype(np.float64) - minus.astype(np.float64)) / (2 * step)
                            cb = c[bl:bh].astype(np.float64, copy=False)
                            dots.append(float(np.dot(cb, u)))
                            if allowance:
                                total += float(np.dot(np.abs(u), np.abs(cb) + self.scales[t]))
                        else:
                            flat[bl:bh] = minus
                self.calls += 1
                try:
                    values.append(numerical._as_float(self.loss(self.p.work)))
                except numerical.FunctionFault:
                    raise
                except Exception as exc:  # the one call into user code here
                    raise numerical.FunctionFault(f"fn raised {type(exc).__name__}: {exc} (while the "
                                                  "parameters were moved along a random direction)") from exc
        finally:
            for t, a, b in segs:
                self.p.flat[t][a:b] = self.p.x0[t][a:b]
        return (values[0] - values[1]) / (2 * step), math.fsum(dots), total


def _claimed_rounding(total: float, eps_c: float) -> float:
    """The analytic allowance of :mod:`gradcheck.compare` summed along the direction:
    ``ANALYTIC_ULPS * eps * sum_i |u_i| (|c_i| + max_tensor |c|)`` (``total``, the sum, from
    :meth:`_Probe.difference` at step ``h``)."""
    return ANALYTIC_ULPS * eps_c * total


def run(loss_of: Callable[[dict], Any], params: Mapping[str, Array], claimed: Mapping[str, Array], *,
        loss: float, t0: float, calls: int, notes: list[str], rtol: float | None = None, seed: int = 0,
        name: str | None = None, scheme: str = "auto", dtype: str = "float64", spec: dict | None = None,
        directions: int = DIRECTIONS) -> Result:
    """Fast-mode check of ``claimed`` against ``loss_of`` (see the module docstring).

    Called by :func:`gradcheck.check` after it validated fn (its two calls are in ``calls``);
    ``params`` are the frozen parameters (copied here), ``loss`` fn's loss at them.
    """
    notes = list(notes) + [NOT_PER_ELEMENT]
    if scheme not in ("auto", "central"):
        notes.append(f"scheme={scheme!r} not used: fast mode takes central directional differences")
    p = _Params(params)
    c_list = [np.ascontiguousarray(claimed[k]).reshape(-1) for k in p.names]  # float64 per block
    eps_c = max(claimed_eps(claimed[k], params[k]) for k in p.names)
    probe = _Probe(loss_of, p, c_list)
    base: dict[str, Any] = dict(name=name, scheme="fast", dtype=dtype, spec=spec, mode="fast", rtol=rtol, loss=loss, notes=notes)

    def finish(**fields: Any) -> Result:
        fields.setdefault("tensors", _tensor_reports(p, claimed, {}))
        return Result(calls=calls + probe.calls, seconds=time.perf_counter() - t0, **base, **fields)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            noise, n = numerical.noise_level(loss_of, p.work, loss, points=NOISE_POINTS, directions=1,
                                              seed=seed)
            calls += n
            base["noise"] = noise
            p_dtype = min((v.dtype for v in p.work.values()), key=lambda d: d.itemsize)
            eff = numerical.effective_eps(p_dtype, noise, loss)
            h = float(numerical.pow2(np.array([eff ** (1 / 3)]))[0])
            rng = np.random.default_rng(seed + 7)
            set_aside: list[list[int]] = [[] for _ in p.flat]     # kinks, per tensor
            kinks: list[Element] = []
            worst_rel, worst_tol = 0.0, math.nan
            for _ in range(directions):
                for _round in range(MAX_KINK_ROUNDS + 1):
                    d = _Direction(p, rng, h, set_aside)
                    verdict = _directional_verdict(probe, d, noise, eps_c, rtol)
                    if verdict["rel"] >= worst_rel or math.isnan(worst_tol):
                        worst_rel, worst_tol = verdict["rel"], verdict["tol"]
                    if verdict["passed"]:
                        break
                    outcome = _localize(probe, d, verdict["mismatch_h"], noise, loss, eff, claimed, rtol, eps_c)
                    if outcome.kink:
                        kinks.append(outcome.element)
                        t, i = p.locate(outcome.index)
                        set_aside[t].append(i)
                        continue
                    return _failure(finish, p, claimed, verdict, outcome, kinks, notes)
                else:
                    prob = Problem("fast_inconclusive",
                                   f"fast mode found a directional mismatch but localized it only to "
                                   f"non-differentiable points ({', '.join(e.label() for e in kinks)}); "
                                   "run mode='full' for a verdict")
                    return finish(passed=False, max_rel_error=worst_rel, worst_param=kinks[-1].param,
                                  tolerance=worst_tol, kinks=kinks, problems=[prob])
    except numerical.FunctionFault as f:  # only fn's faults: a harness bug keeps its traceback
        return finish(passed=False, max_rel_error=math.inf, worst_param=f.param,
                      problems=[Problem("raised", str(f), f.param, list(f.index) if f.index else None)])
    if kinks:
        notes.append(f"{len(kinks)} non-differentiable element(s) left out of the directions")
    return finish(passed=True, max_rel_error=worst_rel, worst_param=None, tolerance=worst_tol, kinks=kinks,
                  oracles={"analytic_vs_numerical": worst_rel})


def _directional_verdict(probe: _Probe, d: _Direction, noise: float, eps_c: float,
                         rtol: float | None) -> dict[str, Any]:
    """Compare ``c . v`` with the Richardson directional derivative (4 calls)."""
    P = probe.p.size
    D1, C1, along = probe.difference(d, d.h, 0, P, allowance=True)
    D2, C2, _ = probe.difference(d, d.h / 2, 0, P)
    r1, r2 = D1 - C1, D2 - C2
    D = (4 * D2 - D1) / 3
    C = (4 * C2 - C1) / 3
    # Richardson's rounding (sd of (4 D(h/2) - D(h)) / 3) and the truncation seen between the steps
    rounding = numerical.NOISE_GAIN["central"] * noise / d.h * math.sqrt(65) / 3
    error = rounding + abs(r1 - r2) / 3
    allowance = _claimed_rounding(along, eps_c)
    cmp = compare(np.array([C]), np.array([D]), np.array([error + allowance / SAFETY]),
                  claimed_eps=eps_c, rtol=rtol)
    return {"passed": bool(cmp.passed[0]), "rel": float(cmp.rel[0]), "tol": float(cmp.tol[0]),
            "numerical": D, "claimed": C, "error": error, "mismatch_h": r1}


class _Outcome:
    def __init__(self, index: int, element: Element, passed: bool, kink: bool) -> None:
        self.index, self.element, self.passed, self.kink = index, element, passed, kink


def _localize(probe: _Probe, d: _Direction, mismatch: float, noise: float, f0: float, eff: float,
              claimed: Mapping[str, Array], rtol: float | None, eps_c: float) -> _Outcome:
    """Bisect ``[0, P)`` following the larger mismatch (2 calls a level), then look at the last
    element on its own (a ladder of steps: 6 calls or more)."""
    p = probe.p
    lo, hi = 0, p.size
    while hi - lo > 1:
        mid = (lo + hi) // 2
        D, C, _ = probe.difference(d, d.h, lo, mid)
        left = D - C
        right = mismatch - left
        if abs(left) >= abs(right):
            hi, mismatch = mid, left
        else:
            lo, mismatch = mid, right
    t, i = p.locate(lo)
    k = p.names[t]
    x = p.x0[t][i:i + 1]
    h = float(numerical.steps(x, "central", eff)[0])
    ref = numerical.refine_element(probe.loss, p.work, k, i, h, f0, noise)
    probe.calls += ref.calls
    c = np.asarray(claimed[k], dtype=np.float64).reshape(-1)
    num = c.copy()
    num[i] = ref.value
    err = np.zeros_like(c)
    err[i] = ref.error
    # the other elements' claimed values stand in for the tensor's scale (the floor of the metric)
    cmp = compare(c, num, err, claimed_eps=eps_c, rtol=rtol)
    index = [int(v) for v in np.unravel_index(i, claimed[k].shape)]
    element = Element(k, index, float(c[i]), float(ref.value), float(cmp.rel[i]), float(cmp.tol[i]),
                      float(ref.error), h, note=ref.status if ref.status != "smooth" else "localized by bisection")
    # a kink or an estimate that did not settle is no verdict on this element
    return _Outcome(lo, element, bool(cmp.passed[i]), ref.status != "smooth")


def _failure(finish, p: _Params, claimed, verdict: dict, outcome: _Outcome, kinks: list[Element],
             notes: list[str]) -> Result:
    e = outcome.element
    where = fmt_index(e.param, e.index)
    notes.append(f"directional derivative along a random direction: claimed {verdict['claimed']:.12g}, "
                 f"numerical {verdict['numerical']:.12g}, relative error {verdict['rel']:.2e} > tolerance "
                 f"{verdict['tol']:.2e}; bisection localized the largest share of the mismatch to {where}")
    problems = []
    if outcome.passed:
        problems.append(Problem(
            "spread_mismatch",
            f"the claimed gradient disagrees with the directional derivative (relative error "
            f"{verdict['rel']:.2e} > tolerance {verdict['tol']:.2e}), but {where}, where bisection led, is "
            "within its own tolerance: the error is spread over many elements (e.g. a whole tensor off by a "
            f"tiny factor) around {e.param}; run mode='full' to see the elements", e.param, e.index))
    reports = _tensor_reports(p, claimed, {e.param: e}, failing={e.param})
    return finish(passed=False, max_rel_error=max(verdict["rel"], e.rel_error), worst_param=e.param,
                  tolerance=e.tolerance if not outcome.passed else verdict["tol"], worst=e,
                  failures=[] if outcome.passed else [e], kinks=kinks, problems=problems, tensors=reports,
                  oracles={"analytic_vs_numerical": max(verdict["rel"], e.rel_error)})


def _tensor_reports(p: _Params, claimed: Mapping[str, Array], found: dict[str, Element],
                    failing: frozenset[str] | set[str] = frozenset()) -> dict[str, TensorReport]:
    """Per-tensor records: fast mode measures no per-tensor error (nan) except where it localized;
    ``failing`` are the tensors bisection led to."""
    reports = {}
    for k in p.names:
        e = found.get(k)
        failed = k in failing
        reports[k] = TensorReport(
            name=k, shape=list(p.work[k].shape), dtype=str(np.asarray(claimed[k]).dtype),
            max_rel_error=e.rel_error if e else math.nan, tolerance=e.tolerance if e else math.nan,
            passed=not failed, worst_index=e.index if e else None, n_elements=int(p.work[k].size),
            n_failed=int(e is not None and e.rel_error > e.tolerance), step=e.step if e else 0.0)
    return reports
