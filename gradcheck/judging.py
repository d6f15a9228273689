"""Judging: each tensor's claimed gradient against the numerical estimate, element by element.

A first comparison with the estimate as it stands (:func:`gradcheck.compare.compare`); elements
that fail it get a second look on a ladder of steps (truncation, Richardson, kinks of this element
or of other units crossed by the step; :func:`gradcheck.numerical.refine_element`). Kinks and
estimates that never settle are left out of the verdict and listed. The outcome is one
:class:`~gradcheck.result.Result`.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from gradcheck import numerical
from gradcheck.compare import ANALYTIC_ULPS, SAFETY, Comparison, Comparisons, claimed_eps, compare, compare_all, eps_of
from gradcheck.contract import Fault, Tally
from gradcheck.estimating import Estimated, term_scale
from gradcheck.numerical import FunctionFault
from gradcheck.options import Labels
from gradcheck.result import Element, Problem, Result, TensorReport, fmt_index
from gradcheck.tolerance import MODEL

Array = np.ndarray
LossOf = Callable[[dict], Any]

#: at most this many failing elements per check get a second look (h/2, kink test)
MAX_REFINE = 1024
#: failing elements listed on the result
MAX_LISTED = 50
#: at most this many elements per check get fn's gradient probed just beside x along the element
#: (2 calls each; :meth:`Judge.code_kink_along`)
MAX_COORDINATE_PROBES = 256
#: a narrow (float32/float16) check may judge a failing element against the loss evaluated with
#: float64 parameters only where that is at least this much quieter (:meth:`Judge.wider`)
WIDER_QUIETER = 64
#: ... and where its loss at the parameters is within this relative distance of the narrow one
#: (relative to max(|loss|, 1): a loss of 1e-7 from probabilities O(1) is off by their ulps)
WIDER_AGREE = 1e-2
#: the claimed gradient's rounding taken as |claimed - fn's float64 gradient| allows this many times it
WIDER_ROUNDING = 2.0


_confirm_complex: contextvars.ContextVar[bool] = contextvars.ContextVar("gradcheck_confirm_complex", default=False)


@contextlib.contextmanager
def complex_needs_confirmation() -> Iterator[None]:
    """Within this block, a check fails an element on the complex step only where central
    differences fail it too (:class:`Judge`). Operator checks use it: each of their sub-checks sees
    one Jacobian row or column, whose entries may all sit where code with ``abs`` or ``max``
    inside (a stable softplus) is not analytic, so the complex-step test of that sub-check cannot
    see the difference; a whole loss shows it at its other units, and keeps the complex step's
    full precision (which a budgeted check's sample relies on)."""
    token = _confirm_complex.set(True)
    try:
        yield
    finally:
        _confirm_complex.reset(token)


def _shaped(a: Array | None, shape: tuple) -> Array | None:
    return None if a is None else a.reshape(shape)


@functools.lru_cache(maxsize=64)  # a handful of dtypes; str(dtype) costs microseconds
def _dtype_name(dtype: np.dtype) -> str:
    return str(dtype)


def _median(a: Array) -> float:
    """``float(np.median(a))`` of a finite array, without its overhead: the middle value, or the
    mean of the two middle ones (their sum halved, as ``np.mean`` computes it)."""
    s = a.reshape(-1).copy()
    s.sort()
    n = s.size
    if n % 2:
        return float(s[n // 2])
    return float(np.add.reduce(s[n // 2 - 1: n // 2 + 1]) / 2)


class Judge:
    """Compares each tensor's claimed gradient with the estimate, then takes a second look at the
    elements that still fail: a ladder of steps h, h/2, h/4, ... (truncation, Richardson, kinks of
    this element or of other units crossed by the step; :func:`gradcheck.numerical.refine_element`)."""

    def __init__(self, loss_of: LossOf, work: dict[str, Array], loss: float, estimated: Estimated,
                 tally: Tally, *, rtol: float | None, detect_kinks: bool) -> None:
        self.loss_of, self.work, self.loss, self.tally = loss_of, work, loss, tally
        self.est, self.noise, self.used = estimated.estimate, estimated.noise, estimated.scheme
        self.rtol, self.detect_kinks = rtol, detect_kinks
        #: the claimed gradient's own rounding (sd per element), once measured (:meth:`measured`)
        self.claimed_noise: dict[str, Array] = {}
        self.probe_calls = 0
        #: where fn's gradient jumps at x itself (a convention at an exact kink of its code path)
        self.jumps: dict[str, Array] = {}
        #: per probe line, fn's gradient extrapolated to x from that side
        self.limits: list[dict[str, Array]] = []
        #: fn's gradient at another point, once the claimed rounding was measured (:meth:`measured`)
        self.grad_at: Callable[[dict[str, Array]], Any] | None = None
        self.coordinate_probes = 0
        #: the loss with float64 parameters (:meth:`wider`): not tried yet (None), unusable (False)
        self._wider: tuple[dict[str, Array], float, float] | bool | None = None
        #: elements judged against it (:meth:`wider_look`), and elements whose claimed rounding it
        #: widened (:meth:`wider_rounding`)
        self.widened = self.rounding_widened = 0
        #: of the widened elements, those that still failed against fn's float64 evaluation
        self.widened_failing = 0
        est = self.est
        with np.errstate(all="ignore"):
            self.global_scale = max(float(np.abs(g).max()) for g in est.grad.values())
        # T stands in only when every gradient is zero to working precision (below sqrt(eps) of
        # the loss's scale): otherwise the largest gradient G is the terms' scale, and a larger T
        # would only blunt the check (a 1e-13 planted error went unseen with it)
        t_scale = term_scale(loss, work)
        p_eps = max(eps_of(v.dtype) for v in work.values())
        self.term_scale = t_scale if self.global_scale < math.sqrt(p_eps) * t_scale else 0.0
        self.tensors: dict[str, TensorReport] = {}
        self.failures: list[Element] = []
        self.kinks: list[Element] = []
        self.closest: Element | None = None
        self.refined_total = 0
        self.complex_distrusted = 0
        #: failing elements that only the complex step failed (central differences passed them or
        #: could not settle): judged by central differences, or left out
        self.complex_alone = 0
        self.confirm_complex = _confirm_complex.get()
        #: under a budget (:func:`gradcheck.budget.plan_looks`): per tensor, how many failing elements
        #: get a second look, largest margins first; the others are left out of the verdict, counted
        self.refine_quota: dict[str, int] | None = None
        self.not_reexamined: dict[str, int] = {}
        #: the first look's comparison per tensor, reused by :meth:`tensor` when nothing changed
        #: in between (no claimed rounding measured): one comparison pass instead of two
        self._first: dict[str, Any] = {}
        #: every tensor's first-look comparison when every element passed (:meth:`tensors_all`)
        self._all_passed: Comparisons | None = None

    def measured(self, rounding: numerical.ClaimedRounding) -> None:
        """Take the claimed gradient's measured rounding into the tolerance (and its jumps at x)."""
        self.claimed_noise, self.jumps, self.limits = rounding.sd, rounding.jump, rounding.limits
        self.probe_calls, self.grad_at = rounding.calls, rounding.grad_at

    def first_look(self, k: str, p: Array, c: Array) -> bool:
        """Does every element of tensor ``k`` pass against the estimate as it stands?"""
        d = self.est.grad[k].astype(np.float64)
        if not np.all(np.isfinite(d)):
            return False
        cmp = compare(c, d, self.est.error[k], claimed_eps=claimed_eps(c, p), rtol=self.rtol,
                      global_scale=self.global_scale, term_scale=self.term_scale)
        if self.est.error[k].dtype == np.float64:  # the same inputs tensor() would compare
            self._first[k] = (c, cmp)
        return bool(cmp.passed.all())

    def first_looks(self, params: Mapping[str, Array], claimed: Mapping[str, Array]) -> bool:
        """:meth:`first_look` of every tensor, in one comparison pass over all of them
        (:func:`gradcheck.compare.compare_all`; the same numbers). Does every element pass?"""
        est = self.est
        if any(est.error[k].dtype != np.float64 for k in params):
            cmps = None
        else:
            cmps = compare_all([claimed[k] for k in params], [est.grad[k] for k in params],
                               [est.error[k] for k in params],
                               claimed_eps=[claimed_eps(claimed[k], p) for k, p in params.items()],
                               rtol=self.rtol, global_scale=self.global_scale, term_scale=self.term_scale)
        if cmps is None:
            return all(self.first_look(k, p, claimed[k]) for k, p in params.items())
        if bool(cmps.whole.passed.all()):
            self._all_passed = cmps
            return True
        for (k, p), cmp in zip(params.items(), cmps.each):  # for tensor(), as first_look leaves them
            shape = p.shape
            self._first[k] = (claimed[k], Comparison(
                cmp.rel.reshape(shape), cmp.tol.reshape(shape), cmp.passed.reshape(shape), cmp.floor,
                _shaped(cmp.margin, shape), _shaped(cmp.resolved, shape), _shaped(cmp.tol_abs, shape)))
        return False

    def first_failing(self) -> dict[str, int]:
        """Per tensor, how many elements failed the first look (after :meth:`first_looks` failed)."""
        return {k: int(np.count_nonzero(~cmp.passed)) for k, (_, cmp) in self._first.items()}

    def tensors_all(self, params: Mapping[str, Array], claimed: Mapping[str, Array]) -> None:
        """:meth:`tensor` of every tensor; when :meth:`first_looks` saw every element pass (nothing
        to re-examine, nothing left out), their reports in one pass over the concatenated arrays."""
        cmps, self._all_passed = self._all_passed, None
        if cmps is None or self.claimed_noise:
            for k, p in params.items():
                self.tensor(k, p, claimed[k])
            return
        self._passing_reports(params, claimed, cmps)

    def _passing_reports(self, params: Mapping[str, Array], claimed: Mapping[str, Array],
                         cmps: Comparisons) -> None:
        """The reports :meth:`tensor` makes when every element passed its first look: every element
        judged, none failed or left out, the headline over the resolved ones."""
        est = self.est
        whole, bounds, c, d, e = cmps.whole, cmps.bounds, cmps.claimed, cmps.numerical, cmps.error
        assert whole.margin is not None and whole.resolved is not None and whole.tol_abs is not None
        rel, margin, resolved, tol = whole.rel, whole.margin, whole.resolved, whole.tol
        starts = bounds[:-1]
        with np.errstate(all="ignore"):
            headline_rel = np.where(resolved, rel, 0.0)
            max_rel = np.maximum.reduceat(headline_rel, starts).tolist()
            max_margin = np.maximum.reduceat(margin, starts).tolist()
            n_resolved = np.add.reduceat(resolved.astype(np.intp), starts).tolist()
            squares = np.empty((3, d.size))  # rows: d^2, (c - d)^2, tol_abs^2, summed per tensor below
            np.multiply(d, d, out=squares[0])
            np.square(c - d, out=squares[1])  # what ** 2 computes
            np.square(whole.tol_abs, out=squares[2])
            left_out = np.zeros(rel.shape, bool)
            tiny = np.finfo(np.float64).tiny
            add = np.add.reduce
            for t, (k, p) in enumerate(params.items()):
                a, b = bounds[t], bounds[t + 1]
                n, shape, ck = b - a, p.shape, claimed[k]
                worst_flat = int((headline_rel[a:b] if n_resolved[t] else margin[a:b]).argmax())
                # each row's sum over the tensor's elements: pairwise over them as np.sum of the
                # tensor alone sums them; IEEE sqrt, as np.sqrt
                norm_d, norm_diff, norm_tol = map(math.sqrt, add(squares[:, a:b], axis=1).tolist())
                if norm_tol <= norm_d * claimed_eps(ck, p) ** MODEL.resolved_power:
                    normwise = norm_diff / max(norm_d, norm_tol, tiny)
                else:
                    normwise = 0.0
                self.tensors[k] = TensorReport(
                    name=k, shape=list(shape), dtype=_dtype_name(ck.dtype),
                    max_rel_error=max_rel[t] if n_resolved[t] else 0.0,
                    tolerance=float(tol[a + worst_flat]), passed=True,
                    worst_index=[int(v) for v in np.unravel_index(worst_flat, shape)],
                    n_elements=n, n_failed=0, n_kinks=0, n_refined=0, step=_median(est.step[k]),
                    floor=cmps.floors[t], n_unsettled=0, margin=max_margin[t],
                    normwise=normwise if math.isfinite(normwise) else math.inf,
                    n_below_resolution=n - n_resolved[t], claimed_noise=None,
                    claimed=c[a:b].reshape(shape), numerical=d[a:b].reshape(shape), error=e[a:b].reshape(shape),
                    rel=rel[a:b].reshape(shape), kink=left_out[a:b].reshape(shape))
        # the closest element: the first of the largest margin (tensor() keeps the first tensor's on ties)
        j = int(np.argmax(margin))
        t = int(np.searchsorted(bounds, j, side="right")) - 1
        k = list(params)[t]
        ix = np.unravel_index(j - bounds[t], params[k].shape)
        self.closest = Element(k, [int(v) for v in ix], float(claimed[k][ix]), float(d[j]), float(rel[j]),
                               float(tol[j]), float(e[j]), float(est.step[k][ix]),
                               note="", claimed_noise=0.0, margin=float(margin[j]), resolved=bool(resolved[j]))

    def tensor(self, k: str, p: Array, c: Array) -> None:
        est, tally = self.est, self.tally
        c_eps = claimed_eps(c, p)
        d = est.grad[k].astype(np.float64).copy()
        e = est.error[k].astype(np.float64).copy()
        h = est.step[k].astype(np.float64).copy()
        cn = self.claimed_noise.get(k)
        kink = np.zeros(p.shape, bool)
        jumped = np.zeros(p.shape, bool)  # kinks found by fn's gradient jumping at x
        unsettled = np.zeros(p.shape, bool)
        refined = np.zeros(p.shape, bool)
        by_central = np.zeros(p.shape, bool)  # complex step overruled by central differences
        widened = np.zeros(p.shape, bool)  # judged against the loss evaluated with float64 parameters
        nonfinite = ~np.isfinite(d)
        if nonfinite.any():
            i = tuple(int(v) for v in np.argwhere(nonfinite)[0])
            raise Fault(Problem("numerical_non_finite",
                                f"the loss became non-finite when {fmt_index(k, i)} was perturbed by "
                                f"{float(h[i]):.3g}: fn overflows or divides by zero next to these parameters",
                                k, list(i)))

        def judge():
            return compare(c, d, e, claimed_eps=c_eps, rtol=self.rtol, global_scale=self.global_scale,
                           claimed_noise=cn, term_scale=self.term_scale)

        first = self._first.pop(k, None)
        cmp = first[1] if first is not None and first[0] is c and cn is None else judge()
        bad = np.flatnonzero(~cmp.passed.reshape(-1))
        skipped = np.zeros(p.shape, bool)  # failing, but no second look within the budget
        if bad.size and self.refine_quota is not None and bad.size > self.refine_quota.get(k, bad.size):
            assert cmp.margin is not None
            margins = np.nan_to_num(cmp.margin.reshape(-1)[bad], nan=np.inf)
            ranked = bad[np.argsort(-margins, kind="stable")]
            quota = self.refine_quota[k]
            skipped.reshape(-1)[ranked[quota:]] = True
            self.not_reexamined[k] = int(ranked.size - quota)
            bad = np.sort(ranked[:quota])
        if bad.size:
            todo = bad[: max(0, MAX_REFINE - self.refined_total)]
            if todo.size < bad.size:
                tally.note(f"{k}: {bad.size - todo.size} failing elements not re-examined (limit {MAX_REFINE})")
            jumps = self.jumps.get(k)
            for flat_i in todo:
                i = np.unravel_index(flat_i, p.shape)
                e_first = float(e[i])
                ref = self.second_look(k, p, int(flat_i))
                refined[i] = True
                self.refined_total += 1
                if ref.status != "smooth" and p.dtype.itemsize < 8:
                    # a narrow loss too coarse to settle on: fn's float64 evaluation may settle (a
                    # real kink is a kink there too, so it does not)
                    wide = self._settled_wider(k, p, int(flat_i))
                    if wide is not None:
                        ref, widened[i] = wide, True
                if widened[i]:
                    d[i], e[i], h[i] = ref.value, ref.error, ref.step
                elif ref.status == "unsettled" and self.used == "complex":
                    # central differences could not settle: the complex step's value stands, unless
                    # it must be confirmed (operator checks: code not analytic everywhere, abs or
                    # max inside a stable softplus, passes a row's complex-step test yet is wrong
                    # at some entries): then a failure on it alone is no verdict, left out like any
                    # unsettled element
                    if self.confirm_complex and self.detect_kinks:
                        unsettled[i] = True
                        h[i] = ref.step
                        self.complex_alone += 1
                elif ref.status != "smooth":
                    if self.detect_kinks:  # no single derivative within the step: left out, listed
                        (kink if ref.status == "kink" else unsettled)[i] = True
                        h[i] = ref.step
                elif self.used == "complex":
                    # trust the complex step only where central differences agree with it, and fail
                    # on it only where central differences fail the claimed value too
                    if self.confirm_complex and (abs(float(c[i]) - ref.value)
                                                 <= float(cmp.tol_abs[i]) + SAFETY * (ref.error - e_first)):
                        self.complex_alone += 1
                        d[i], e[i], h[i] = ref.value, ref.error, ref.step
                        by_central[i] = True
                    elif abs(d[i] - ref.value) > SAFETY * ref.error + ANALYTIC_ULPS * c_eps * abs(ref.value):
                        self.complex_distrusted += 1
                        d[i], e[i], h[i] = ref.value, ref.error, ref.step
                        by_central[i] = True
                elif self.used == "central4":
                    d[i], e[i], h[i] = self._fourth_order(k, p, int(flat_i), float(d[i]), float(est.step[k][i]), ref)
                else:
                    d[i], e[i], h[i] = ref.value, ref.error, ref.step
                allowed = float(cmp.tol_abs[i]) + SAFETY * (float(e[i]) - e_first)
                if (ref.status == "smooth" and not widened[i] and abs(float(c[i]) - float(d[i])) > allowed
                        and p.dtype.itemsize < 8):
                    # still failing against the loss in its own (narrow) dtype: where fn also
                    # computes with float64 parameters, that loss is the same function without
                    # float32's coarseness (a log of a probability a few ulps from 1 is a
                    # staircase in float32); a wrong gradient is wrong against it as well
                    wide = self._settled_wider(k, p, int(flat_i))
                    if wide is not None:
                        d[i], e[i], h[i], widened[i] = wide.value, wide.error, wide.step, True
                        allowed = float(cmp.tol_abs[i]) + SAFETY * (float(e[i]) - e_first)
                if (self.detect_kinks and ref.status == "smooth" and jumps is not None and jumps[i]
                        and self._agrees_from_one_side(k, i, float(d[i]), allowed)):
                    # fn's own gradient jumps exactly at x, and from one side it agrees with the
                    # loss's derivative: its value at x is a convention on a path through an exact
                    # kink (the loss may be smooth there); left out like a kink. A wrong gradient
                    # agrees from no side, so noise that looks like a jump excuses no bug.
                    kink[i] = jumped[i] = True
                elif (self.detect_kinks and ref.status == "smooth" and abs(float(c[i]) - float(d[i])) > allowed
                        and self.code_kink_along(k, int(flat_i), float(d[i]), allowed, wide=bool(widened[i]))):
                    kink[i] = jumped[i] = True
            cmp = judge()
        left_out = kink | unsettled | skipped
        judged = ~left_out
        failed = judged & ~cmp.passed
        self.widened_failing += int(np.count_nonzero(widened & failed))
        # the headline: resolved elements (relative tolerance at most eps_c^(1/3))
        # and every failing one; entries below resolution are judged on absolute agreement only
        headline = (judged & cmp.resolved) | failed
        below = judged & ~headline
        rel = np.where(headline, cmp.rel, 0.0)
        margin = np.where(judged, cmp.margin, 0.0)
        worst_flat = int(np.argmax(rel)) if headline.any() else int(np.argmax(margin)) if judged.any() else None
        closest_flat = int(np.argmax(margin)) if judged.any() else None
        with np.errstate(all="ignore"):
            dj, cj = np.where(judged, d, 0.0), np.where(judged, c.astype(np.float64), 0.0)
            norm_d = float(np.sqrt(np.sum(dj * dj)))
            norm_diff = float(np.sqrt(np.sum((cj - dj) ** 2)))
            norm_tol = float(np.sqrt(np.sum(np.where(judged, cmp.tol_abs, 0.0) ** 2)))
            # relative to ||numerical|| where that is resolved; a tensor whose entries all sit below
            # the estimate's resolution (a zero gradient) has no relative error to speak of
            if norm_tol <= norm_d * c_eps ** MODEL.resolved_power or failed.any():
                normwise = norm_diff / max(norm_d, norm_tol, np.finfo(np.float64).tiny)
            else:
                normwise = 0.0
        self.tensors[k] = TensorReport(
            name=k, shape=list(p.shape), dtype=str(c.dtype),
            max_rel_error=float(rel.max()) if headline.any() else 0.0,
            tolerance=float(cmp.tol.reshape(-1)[worst_flat]) if worst_flat is not None else math.nan,
            passed=not failed.any(),
            worst_index=list(map(int, np.unravel_index(worst_flat, p.shape))) if worst_flat is not None else None,
            n_elements=int(p.size), n_failed=int(failed.sum()), n_kinks=int(kink.sum()),
            n_refined=int(refined.sum()), step=float(np.median(est.step[k])), floor=cmp.floor,
            n_unsettled=int(unsettled.sum()), margin=float(margin.max()) if judged.any() else 0.0,
            normwise=normwise if math.isfinite(normwise) else math.inf, n_below_resolution=int(below.sum()),
            claimed_noise=float(np.max(cn)) if cn is not None and cn.size else None,
            claimed=c.astype(np.float64), numerical=d, error=e, rel=cmp.rel, kink=left_out)

        def element(ix, note=""):
            return Element(k, [int(v) for v in ix], float(c[ix]), float(d[ix]), float(cmp.rel[ix]),
                           float(cmp.tol[ix]), float(e[ix]), float(h[ix]),
                           note=note or ("float64" if widened[ix] else "central" if by_central[ix]
                                         else "refined" if refined[ix] else ""),
                           claimed_noise=float(cn[ix]) if cn is not None else 0.0,
                           margin=float(cmp.margin[ix]), resolved=bool(cmp.resolved[ix]))
        if closest_flat is not None:
            ix = np.unravel_index(closest_flat, p.shape)
            if self.closest is None or margin[ix] > self.closest.margin:
                self.closest = element(ix)
        order = np.argsort(-np.where(failed, cmp.rel, -1).reshape(-1))[: int(failed.sum())]
        self.failures += [element(np.unravel_index(j, p.shape)) for j in order[:MAX_LISTED]]
        self.kinks += [element(tuple(ix), "jump" if jumped[tuple(ix)] else "kink" if kink[tuple(ix)] else "unsettled")
                       for ix in np.argwhere(left_out)[:MAX_LISTED]]

    def code_kink_along(self, k: str, flat_i: int, value: float, tol_abs: float, *, wide: bool = False) -> bool:
        """fn's gradient just beside x on either side along element ``flat_i`` (moved by the rounding
        probe's step, ``claimed_probe_ulps`` ulps of max(|x|, rms of its tensor)): when the mean of
        the two sides matches ``value``, the loss's difference quotient, within ``tol_abs`` while
        fn's value at x does not, fn's gradient jumps at x along this element: a convention taken
        where pre-activations sit exactly at a kink (zero inputs with zero biases put a unit of
        every layer there, and chained kinks give even a differentiable loss a convention value
        that is neither side's). Left out like a kink. A wrong gradient is wrong beside x as well,
        so it is never excused; 2 calls of fn, only once its rounding was measured. ``wide``: the
        element was judged on fn's float64 evaluation (:meth:`wider_look`), so is this probe, at
        float64's ulps (a float32 step of 1024 ulps biases the sides' mean by more than a float64
        estimate's tolerance where the curvature jumps at the kink, as selu's does)."""
        wider = self.wider() if wide else None
        if self.grad_at is None or self.coordinate_probes >= MAX_COORDINATE_PROBES or (wide and wider is None):
            return False
        self.coordinate_probes += 1
        work = wider[0] if wider is not None else self.work
        base = work[k]
        x = base.reshape(-1)[flat_i]
        with np.errstate(all="ignore"):
            rms = float(np.sqrt(np.mean(np.square(base, dtype=np.float64)))) if base.size else 0.0
        ref = max(abs(float(x)), rms if rms > 0 and math.isfinite(rms) else 1.0)
        delta = MODEL.claimed_probe_ulps * float(np.spacing(base.dtype.type(ref)))
        sides = []
        for sign in (1.0, -1.0):
            point = {name: v.copy() for name, v in work.items()}
            moved = base.dtype.type(float(x) + sign * delta)
            if moved == x or not np.isfinite(moved):
                return False
            point[k].reshape(-1)[flat_i] = moved
            grads = self.grad_at(point)
            sides.append(float(np.asarray(grads[k], dtype=np.float64).reshape(-1)[flat_i]))
        return bool(abs(0.5 * (sides[0] + sides[1]) - value) <= tol_abs)

    def wider(self) -> tuple[dict[str, Array], float, float] | None:
        """The loss evaluated with float64 copies of the parameters, when that is the same function
        computed more precisely: ``(the copies, the loss there, its rounding noise)``, else None.
        Usable when fn accepts float64 parameters (numpy code promotes), its loss there agrees
        with the narrow one within :data:`WIDER_AGREE`, it resolves moves far below the narrow
        dtype's ulp (central differences along a random sign direction at ``eps/64`` and
        ``eps/32`` relative agree within 10%: code that casts back to float32 inside sees no
        move at all), and its noise (measured as the check measures it) is at least
        :data:`WIDER_QUIETER` times smaller. Tried once per check (21 calls), only where an
        element narrower than float64 fails or the claimed gradient's rounding is measured."""
        if self._wider is None:
            self._wider = False
            narrow = [v.dtype for v in self.work.values() if v.dtype.itemsize < 8]
            if narrow and all(v.dtype.kind == "f" and v.dtype.itemsize <= 8 for v in self.work.values()):
                try:
                    with np.errstate(all="ignore"), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        self._wider = self._try_wider(max(eps_of(dt) for dt in narrow)) or False
                except Exception:  # fn refuses float64 (a fixed-dtype framework): not usable
                    self._wider = False
        return self._wider or None  # type: ignore[return-value]

    def _try_wider(self, eps: float) -> tuple[dict[str, Array], float, float] | None:
        """:meth:`wider`'s tests, in order of cost; whatever fn raises propagates (not usable)."""
        wide = {k: v.astype(np.float64) for k, v in self.work.items()}
        f64 = numerical._as_float(self.loss_of(wide))
        self.tally.calls += 1
        # the same function: within 1% (or sqrt(eps) of a coarser dtype) of max(|loss|, 1), loose on
        # purpose: where the narrow loss is coarse (the case at hand) it is off by many of its ulps
        agree = max(WIDER_AGREE, math.sqrt(eps))
        if not (math.isfinite(f64) and abs(f64 - self.loss) <= agree * max(abs(self.loss), abs(f64), 1.0)):
            return None
        rng = np.random.default_rng(20461)
        signs = {k: np.where(rng.random(v.shape) < 0.5, -1.0, 1.0) * np.maximum(1.0, np.abs(v)) for k, v in wide.items()}
        slopes = []
        for t in (eps / 64, eps / 32):
            sides = [numerical._as_float(self.loss_of({k: v + s * t * signs[k] for k, v in wide.items()}))
                     for s in (1.0, -1.0)]
            self.tally.calls += 2
            slopes.append((sides[0] - sides[1]) / (2 * t))
        if not (slopes[1] != 0 and math.isfinite(slopes[0]) and abs(slopes[0] - slopes[1]) <= 0.1 * abs(slopes[1])):
            return None
        noise, calls = numerical.noise_level(self.loss_of, wide, f64)
        self.tally.calls += calls
        if noise * WIDER_QUIETER > self.noise:
            return None
        return wide, f64, noise

    def wider_rounding(self, rounding: numerical.ClaimedRounding,
                       claimed: Mapping[str, Array]) -> numerical.ClaimedRounding:
        """``rounding`` (the claimed gradient's, measured a few ulps away) widened, per element, to
        :data:`WIDER_ROUNDING` x ``|claimed - fn's gradient with float64 parameters|`` where
        :meth:`wider` is usable (a realized error, not an sd): the
        same code without the narrow dtype's rounding, so their difference is that rounding,
        measured (``p - y`` of a probability a few ulps from 1 keeps one or two significant bits
        in float32, which a probe a few ulps wide does not move). A wrong gradient is wrong the
        same way in both and gains nothing. 1 call of fn."""
        if rounding.grad_at is None or self.wider() is None:
            return rounding
        wider = self.wider()
        assert wider is not None
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wide = rounding.grad_at({k: v.copy() for k, v in wider[0].items()})
                # a realized error, not an sd: the tolerance (SAFETY x the sd) allows twice it
                sd = {k: np.maximum(s, WIDER_ROUNDING / SAFETY * np.abs(
                    np.asarray(claimed[k], dtype=np.float64) - np.asarray(wide[k], dtype=np.float64)).reshape(s.shape))
                      for k, s in rounding.sd.items()}
        except Exception:  # fn's fault in float64 only (its faults in its own dtype are judged elsewhere)
            return rounding
        if not all(np.all(np.isfinite(v)) for v in sd.values()):
            return rounding
        self.rounding_widened = sum(int(np.count_nonzero(sd[k] > s)) for k, s in rounding.sd.items())
        return replace(rounding, sd=sd, calls=rounding.calls + 1)

    def _settled_wider(self, k: str, p: Array, flat_i: int) -> numerical.Refinement | None:
        """:meth:`wider_look` where it settles (counted in :attr:`widened`), else None."""
        wide = self.wider_look(k, p, flat_i)
        if wide is None or wide.status != "smooth":
            return None
        self.widened += 1
        return wide

    def wider_look(self, k: str, p: Array, flat_i: int) -> numerical.Refinement | None:
        """Element ``flat_i`` of ``k`` re-estimated on the ladder with the loss evaluated with float64
        parameters (:meth:`wider`), or None where that is not usable."""
        wider = self.wider()
        if wider is None:
            return None
        wide, f64, noise = wider
        x = wide[k].reshape(-1)[flat_i: flat_i + 1]
        h = float(numerical.steps(x, "central", numerical.effective_eps(np.float64, noise, f64))[0])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = numerical.refine_element(self.loss_of, wide, k, flat_i, h, f64, noise)
        except FunctionFault:  # fn fails beside x in float64 only: no second opinion
            return None
        self.tally.calls += ref.calls
        return ref

    def _agrees_from_one_side(self, k: str, i: tuple, value: float, tol_abs: float) -> bool:
        """Does fn's gradient, extrapolated to x along some probe line, match ``value`` (the
        loss's derivative) within ``tol_abs``?"""
        return any(abs(float(lim[k][i]) - value) <= tol_abs for lim in self.limits if k in lim)

    def second_look(self, k: str, p: Array, flat_i: int) -> numerical.Refinement:
        """The element on a ladder of central steps (every scheme: central Richardson needs only
        third-order smoothness, and its steps are small enough to step over other units' kinks)."""
        eps = numerical.effective_eps(p.dtype, self.noise, self.loss)
        x = np.array([p.reshape(-1)[flat_i]])
        try:
            ref = numerical.refine_element(self.loss_of, self.work, k, flat_i,
                                           float(numerical.steps(x, "central", eps)[0]), self.loss, self.noise)
        except FunctionFault as f:
            raise Fault.from_function_fault(f) from None
        self.tally.calls += ref.calls
        return ref

    def _fourth_order(self, k: str, p: Array, flat_i: int, first: float, h4: float,
                      ref: numerical.Refinement) -> tuple[float, float, float]:
        """central4's own precision, kept where the smooth ladder vouches for it: the 5-point
        stencil at h/2 (4 calls), its error bound "rounding at h/2 + |D4(h) - D4(h/2)|" (no /15,
        which would assume fifth-order smoothness) plus the part of its distance from the ladder's
        central estimate that the latter's bound does not explain; used only when within 10x that
        bound of it, else the ladder's estimate."""
        flat = self.work[k].reshape(-1)
        x = flat[flat_i]
        dt = flat.dtype
        half = h4 / 2
        values = []
        try:
            for offset in (2.0, 1.0, -1.0, -2.0):
                flat[flat_i] = dt.type(x + offset * half)
                values.append(float(np.asarray(self.loss_of(self.work)).real.reshape(())))
        except Exception as exc:
            where = np.unravel_index(flat_i, p.shape)
            raise Fault(Problem("raised", f"fn raised {type(exc).__name__}: {exc} (while "
                                          f"{fmt_index(k, where)} was perturbed)", k, [int(v) for v in where])) from None
        finally:
            flat[flat_i] = x
        self.tally.calls += 4
        f2, f1, m1, m2 = values
        d4 = (-f2 + 8 * f1 - 8 * m1 + m2) / (12 * half)
        # whatever of its distance from the ladder's estimate that one's bound does not explain
        # joins the bound too (a loss whose second derivative jumps, huber, bends a large stencil)
        gap = abs(d4 - ref.value)
        e4 = numerical.NOISE_GAIN["central4"] * self.noise / half + abs(first - d4) + max(0.0, gap - ref.error)
        if gap <= SAFETY * ref.error:
            return d4, e4, half
        return ref.value, ref.error, ref.step

    def result(self, labels: Labels) -> Result:
        """The verdict over every tensor judged so far."""
        tally = self.tally
        if self.complex_distrusted:
            tally.note(f"complex step disagreed with central differences at {self.complex_distrusted} "
                       "element(s) (non-analytic code, e.g. abs/max/comparisons): central differences "
                       "decided there")
        if self.complex_alone:
            tally.note(f"{self.complex_alone} element(s) failed against the complex step alone (central differences "
                       "passed them or could not settle there): judged by central differences or left out; the "
                       "complex step is exact only where the code is analytic (abs or max inside, e.g. a stable "
                       "softplus, can fool it)")
        if self.widened:
            wider = self.wider()
            assert wider is not None
            failing = self.widened_failing
            passing = self.widened - failing
            said = (f": {passing} {'passes' if passing == 1 else 'pass'} there (the {labels.dtype} loss is too "
                    "coarse there, e.g. the log of a probability within a few ulps of 1)" if passing else "")
            said += (f"{'; ' if passing else ': '}{failing} still {'fails' if failing == 1 else 'fail'} there (no "
                     f"{labels.dtype} coarseness explains {'it' if failing == 1 else 'them'})" if failing else "")
            tally.note(f"{self.widened} element(s) failed or did not settle against the loss computed in "
                       f"{labels.dtype} and were judged against the loss evaluated with float64 parameters (fn "
                       f"accepts them, and its rounding noise there, {wider[2]:.2e}, is far below "
                       f"{self.noise:.2e}){said}")
        if self.claimed_noise:
            more = (f", and with float64 parameters (1 call), which showed more rounding at {self.rounding_widened} "
                    "element(s)" if self.rounding_widened else "")
            tally.note("your gradient's own rounding was measured (some element failed the first "
                       f"comparison): {self.probe_calls} calls of fn a few ulps from params{more}")
        r = assemble(self.tensors, self.failures, self.kinks, labels=replace(labels, scheme=self.used),
                     rtol=self.rtol, tally=tally, noise=self.noise, loss=self.loss,
                     scale=max(self.global_scale, self.term_scale))
        r.closest = self.closest
        return r


def assemble(tensors: dict[str, TensorReport], failures: list[Element], kinks: list[Element], *,
             labels: Labels, rtol: float | None, tally: Tally, noise: float, loss: float,
             scale: float = 0.0) -> Result:
    """One :class:`Result` from the per-tensor reports and the failing and left-out elements."""
    failures.sort(key=lambda e: -e.rel_error)
    # the worst tensor: the failing one with the largest error (a passing tensor may show a larger
    # relative error where its tolerance is loose, e.g. tiny float32 entries); else the largest
    worst_t = max(tensors.values(), key=lambda t: (not t.passed, t.max_rel_error))
    passed = all(t.passed for t in tensors.values())
    if failures:
        w = failures[0]
    elif worst_t.worst_index is not None:
        ix = tuple(worst_t.worst_index)
        assert worst_t.claimed is not None and worst_t.numerical is not None  # set by Judge.tensor
        assert worst_t.rel is not None and worst_t.error is not None
        w = Element(worst_t.name, list(ix), float(worst_t.claimed[ix]), float(worst_t.numerical[ix]),
                    float(worst_t.rel[ix]), worst_t.tolerance, float(worst_t.error[ix]), worst_t.step,
                    resolved=worst_t.max_rel_error > 0)
    else:
        w = None
    r = Result(passed=passed, max_rel_error=max(t.max_rel_error for t in tensors.values()),
               worst_param=w.param if w else worst_t.name, tolerance=w.tolerance if w else math.nan,
               rtol=rtol, tensors=tensors, worst=w, failures=failures[:MAX_LISTED], kinks=kinks[:MAX_LISTED],
               calls=tally.calls, noise=noise, loss=loss, notes=tally.notes, scale=scale,
               margin=max(t.margin for t in tensors.values()),
               normwise=max(t.normwise for t in tensors.values()),
               n_below_resolution=sum(t.n_below_resolution for t in tensors.values()),
               oracles={"analytic_vs_numerical": max(t.max_rel_error for t in tensors.values())},
               seconds=time.perf_counter() - labels.t0, **labels.fields())
    return r
