"""Checking within a budget: a stratified sample of elements, plus random directions over all.

``check(..., budget=SECONDS)`` (or ``max_calls=N``) first estimates what the full check costs
(the calls of :func:`gradcheck.estimating.expected_calls` times the time per call measured at
the start). When that fits, the ordinary full check runs unchanged and the result says it was
complete. When it does not:

1. **Noise and scheme** as in the full check (the loss's rounding noise, complex step or central).
2. **Random directions over all elements** (:func:`gradcheck.fastmode.run`: up to
   :data:`DIRECTIONS` directions, 4 calls each; a failing direction is localized by bisection).
3. **A stratified sample of elements in every tensor** (:func:`select`): always the tensor's
   largest-|param| and largest-|claimed| entries, then one element drawn uniformly from each of
   ``k - 2`` equal strata of the remaining flat index range (every region of the tensor is
   represented). The tensors share the sample in proportion to their sizes (:func:`allocate`),
   so a single wrong element at a random place is in the sample with probability ``k_t / n_t``
   (about the same in every tensor; see docs/checker.md, "Checking within a budget").
4. **The sample is estimated and judged with the full check's error model**: the same steps,
   error bounds, tolerance, claimed-gradient rounding probe, second look on the step ladder, kink
   handling (:func:`gradcheck.numerical.estimate` with ``index=``, :class:`SampledJudge`).

A sampled check can only say "no error found in what was covered": it passes when every sampled
element and every direction passes, and ``result.coverage`` states exactly what was covered.
Where a failing direction's bisection ends joins the sample; when that element passes there, the
mismatch counts only if fresh directions at smaller steps confirm it
(:func:`confirm_directions`: kinks crossed by a step that moves every element at once are not a
wrong gradient).
With a time budget the sample is estimated in rounds, its size re-estimated after each from the
measured time per element: cut when the rounds run slower than planned (what was done is judged,
and the result says so), extended (up to 4x) when faster. Nothing exceeds the budget silently: an
overrun (a tiny ``max_calls``, a failure's explanation) is noted.
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck import contract, numerical, progress
from gradcheck.compare import ANALYTIC_ULPS, SAFETY, claimed_eps, compare
from gradcheck.contract import Fault, Frozen, Tally
from gradcheck.estimating import Estimated, noise_and_scheme
from gradcheck.explaining import explain_failure
from gradcheck.judging import Judge
from gradcheck.numerical import FunctionFault
from gradcheck.options import Labels, Options
from gradcheck.result import Element, Problem, Result, TensorReport, coverage_text, fmt_index

Array = np.ndarray
LossOf = Callable[[dict], Any]

#: random directions over all elements (fewer when they would take more than DIRECTION_SHARE)
DIRECTIONS = 16
#: at least this many directions, whatever the budget
MIN_DIRECTIONS = 2
#: share of the calls left after the noise probe that the directions may take
DIRECTION_SHARE = 0.2
#: share of the calls kept back for the judging after the sample (rounding probe, second looks)
RESERVE_SHARE = 0.1
#: the full check runs when its estimated cost fits in this share of what is left
FIT_SHARE = 0.85
#: the sample is estimated in about this many rounds (a time budget is checked between them)
ROUNDS = 10
#: elements in the smallest round
MIN_ROUND = 8
#: calls of the loss an element's second look costs on average (a ladder of 3 rungs, sometimes more)
SECOND_LOOK_CALLS = 8
#: calls of fn (with its backward) a second look adds where the element still fails smoothly: its
#: gradient just beside x on either side (:meth:`gradcheck.judging.Judge.code_kink_along`)
COORDINATE_PROBE_CALLS = 2
#: calls of fn the claimed-gradient rounding probe makes at most (before any second look)
ROUNDING_CALLS = 28
#: calls of the loss a failure's explanation makes (the worst element's step-size curve)
STEP_CURVE_CALLS = 46
#: calls kept back besides RESERVE_SHARE: the rounding probe, the step-size curve, a little more
RESERVE_CALLS = ROUNDING_CALLS + STEP_CURVE_CALLS + 6
#: fresh directions that must confirm a mismatch the sample does not explain (4 calls each)
CONFIRM_DIRECTIONS = 2
#: calls of the noise probe and of the complex-step test before the element-by-element pass
NOISE_CALLS, COMPLEX_TEST_CALLS = 16, 5


@dataclass(frozen=True)
class Allowance:
    """What a check may spend, counted from its start ``t0``: seconds and/or calls of fn."""

    budget: float | None
    max_calls: int | None
    t0: float

    def calls_left(self, calls: int, per_call: float) -> float:
        """Calls of fn (or loss_fn) still allowed after ``calls``, at ``per_call`` seconds each."""
        left = math.inf
        if self.max_calls is not None:
            left = float(self.max_calls - calls)
        if self.budget is not None:
            seconds = self.budget - (time.perf_counter() - self.t0)
            left = min(left, seconds / max(per_call, 1e-9))
        return max(left, 0.0)

    def seconds_left(self) -> float:
        """Seconds of the budget still left (inf without a time budget)."""
        if self.budget is None:
            return math.inf
        return max(0.0, self.budget - (time.perf_counter() - self.t0))

    def exceeded(self, calls: int) -> str | None:
        """What was exceeded so far, in words, or None."""
        spent = time.perf_counter() - self.t0
        over = []
        if self.budget is not None and spent > self.budget:
            over.append(f"took {spent:.3g} s, over the budget of {self.budget:g} s")
        if self.max_calls is not None and calls > self.max_calls:
            over.append(f"made {calls:,} calls, over max_calls={self.max_calls:,}")
        return "; ".join(over) or None


def per_element_calls(scheme: str) -> int:
    """Calls of the loss one element costs with ``scheme`` (``auto``: central, the dearer choice)."""
    if scheme in ("complex", "forward"):
        return 1
    return len(numerical.OFFSETS.get(scheme, numerical.OFFSETS["central"]))


@dataclass(frozen=True)
class FullCost:
    """The full check's estimated cost, and whether it fits in the allowance."""

    calls: int
    seconds: float
    fits: bool


def full_cost(scheme: str, size: int, calls: int, per_call: float, allowance: Allowance) -> FullCost:
    """Estimate the full check's cost from ``expected_calls`` and the measured time per call; it
    fits when that is at most :data:`FIT_SHARE` of what is left (the rest for second looks)."""
    more = NOISE_CALLS + (COMPLEX_TEST_CALLS if scheme in ("auto", "complex") else 0) + per_element_calls(scheme) * size
    left = allowance.calls_left(calls, per_call)
    return FullCost(calls + more, more * per_call, more <= FIT_SHARE * left)


# -- the sample ---------------------------------------------------------------------------------------
def largest(p: Array, c: Array) -> list[int]:
    """Flat indices of the largest-|param| and the largest-|claimed| entry (one when they coincide)."""
    with np.errstate(all="ignore"):
        first = int(np.argmax(np.abs(p.reshape(-1))))
        second = int(np.argmax(np.nan_to_num(np.abs(np.asarray(c, dtype=np.float64).reshape(-1)), nan=np.inf)))
    return [first] if first == second else [first, second]


def allocate(sizes: Mapping[str, int], mandatory: Mapping[str, int], total: int) -> dict[str, int]:
    """Elements per tensor for a sample of ``total``: each tensor its ``mandatory`` largest entries,
    the rest shared in proportion to the elements left in each tensor (largest remainders), so every
    element has about the same chance ``total / sum(sizes)`` of being sampled. Never more than a
    tensor has; the mandatory entries even when ``total`` is smaller than their number."""
    counts = {k: min(mandatory[k], n) for k, n in sizes.items()}
    rest = {k: n - counts[k] for k, n in sizes.items()}
    extra = min(total - sum(counts.values()), sum(rest.values()))
    if extra <= 0:
        return counts
    pool = sum(rest.values())
    shares = {k: extra * r / pool for k, r in rest.items()}
    floors = {k: int(math.floor(s)) for k, s in shares.items()}
    left = extra - sum(floors.values())
    for k in sorted(shares, key=lambda k: floors[k] - shares[k])[:left]:  # largest remainders first
        floors[k] += 1
    return {k: counts[k] + min(floors[k], rest[k]) for k in sizes}


def select(p: Array, c: Array, k: int, rng: np.random.Generator) -> Array:
    """The flat indices of a stratified sample of ``k`` elements of one tensor, in the order they
    are estimated: the largest-|param| and largest-|claimed| entries first, then one element drawn
    uniformly from each of ``k - m`` equal strata of the remaining flat index range, in a random
    order (any prefix of it is still spread over the whole tensor). An element outside the
    mandatory ``m`` is sampled with probability 1 / (its stratum's size), so an element at a
    uniformly random place is sampled with probability exactly ``k / n``."""
    n = p.size
    first = largest(p, c)[: max(k, 0)]
    if k >= n:
        others = np.setdiff1d(np.arange(n), first)
        return np.concatenate([np.array(first, dtype=np.intp), rng.permutation(others).astype(np.intp)])
    r = k - len(first)
    if r <= 0:
        return np.array(first, dtype=np.intp)
    others = np.delete(np.arange(n, dtype=np.intp), first)
    bounds = np.linspace(0, others.size, r + 1).astype(np.intp)
    widths = bounds[1:] - bounds[:-1]
    picks = others[bounds[:-1] + np.floor(rng.random(r) * widths).astype(np.intp)]
    return np.concatenate([np.array(first, dtype=np.intp), rng.permutation(picks)])


def sample(params: Mapping[str, Array], claimed: Mapping[str, Array], total: int, seed: int) -> dict[str, Array]:
    """The stratified sample of about ``total`` elements over all tensors (:func:`allocate`,
    :func:`select`): per tensor its flat indices in estimation order. Deterministic for a seed."""
    sizes = {k: int(v.size) for k, v in params.items()}
    mandatory = {k: len(largest(v, claimed[k])) for k, v in params.items()}
    counts = allocate(sizes, mandatory, total)
    out = {}
    for t, (k, v) in enumerate(params.items()):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 9371, t])
        out[k] = select(v, claimed[k], counts[k], rng)
    return out


# -- judging a sample ---------------------------------------------------------------------------------
class SampledJudge(Judge):
    """:class:`~gradcheck.judging.Judge` on a sample: the estimate's arrays (and the claimed
    gradient's measured rounding) are 1-d, one entry per sampled element ``index[k][j]``; the
    second looks perturb the real element. :meth:`report` maps the verdict back to the tensors."""

    def __init__(self, loss_of: LossOf, work: dict[str, Array], loss: float, estimated: Estimated,
                 tally: Tally, *, rtol: float | None, detect_kinks: bool, index: dict[str, Array],
                 full: Mapping[str, Array]) -> None:
        super().__init__(loss_of, work, loss, estimated, tally, rtol=rtol, detect_kinks=detect_kinks)
        self.index, self.full = index, full

    def measured(self, rounding: numerical.ClaimedRounding) -> None:
        def cut(arrays: Mapping[str, Array]) -> dict[str, Array]:
            return {k: np.asarray(a).reshape(-1)[self.index[k]] for k, a in arrays.items() if k in self.index}
        super().measured(numerical.ClaimedRounding(cut(rounding.sd), cut(rounding.jump), rounding.calls,
                                                   [cut(line) for line in rounding.limits], rounding.grad_at))

    def code_kink_along(self, k: str, flat_i: int, value: float, tol_abs: float, *, wide: bool = False) -> bool:
        return super().code_kink_along(k, int(self.index[k][flat_i]), value, tol_abs, wide=wide)

    def second_look(self, k: str, p: Array, flat_i: int) -> numerical.Refinement:
        return super().second_look(k, self.full[k], int(self.index[k][flat_i]))

    def wider_look(self, k: str, p: Array, flat_i: int) -> numerical.Refinement | None:
        return super().wider_look(k, self.full[k], int(self.index[k][flat_i]))

    def _fourth_order(self, k: str, p: Array, flat_i: int, first: float, h4: float,
                      ref: numerical.Refinement) -> tuple[float, float, float]:
        return super()._fourth_order(k, self.full[k], int(self.index[k][flat_i]), first, h4, ref)

    def failing(self, k: str, c: Array) -> Array:
        """Margins of the sampled elements of ``k`` that fail the first comparison (0 where they pass)."""
        p = self.full[k].reshape(-1)[self.index[k]]
        cmp = compare(c, self.est.grad[k], self.est.error[k], claimed_eps=claimed_eps(c, p), rtol=self.rtol,
                      global_scale=self.global_scale, claimed_noise=self.claimed_noise.get(k),
                      term_scale=self.term_scale)
        assert cmp.margin is not None
        return np.where(cmp.passed, 0.0, np.where(np.isnan(cmp.margin), np.inf, cmp.margin))

    def keep(self, k: str, where: Array) -> None:
        """Keep only the sampled elements ``where`` (a bool mask over the sample) of tensor ``k``."""
        self.index[k] = self.index[k][where]
        for arrays in (self.est.grad, self.est.error, self.est.step, self.claimed_noise, self.jumps, *self.limits):
            if k in arrays:
                arrays[k] = arrays[k][where]

    def judge_tensor(self, k: str, c_full: Array) -> None:
        """Judge the sampled elements of ``k`` and map what was found back onto the tensor."""
        full = self.full[k]
        idx = self.index[k]
        p, c = full.reshape(-1)[idx], np.asarray(c_full).reshape(-1)[idx]
        bad = ~np.isfinite(self.est.grad[k])
        if bad.any():  # named with its real index (Judge would name its place in the sample)
            i = [int(v) for v in np.unravel_index(int(idx[np.argmax(bad)]), full.shape)]
            raise Fault(Problem("numerical_non_finite",
                                f"the loss became non-finite when {fmt_index(k, i)} was perturbed by "
                                f"{float(self.est.step[k][np.argmax(bad)]):.3g}: fn overflows or divides by "
                                "zero next to these parameters", k, i))
        n_failures, n_kinks, closest = len(self.failures), len(self.kinks), self.closest
        self.tensor(k, p, c)

        def real(e: Element) -> None:
            e.index = [int(v) for v in np.unravel_index(int(idx[e.index[0]]), full.shape)]
        for e in self.failures[n_failures:] + self.kinks[n_kinks:]:
            real(e)
        if self.closest is not None and self.closest is not closest:
            real(self.closest)
        t = self.tensors[k]
        self.tensors[k] = _spread(t, idx, full.shape, np.asarray(c_full))


def _spread(t: TensorReport, idx: Array, shape: tuple[int, ...], claimed: Array) -> TensorReport:
    """A sampled tensor's report on the whole tensor: its real shape, size and worst index; the
    arrays full-sized (``claimed`` everywhere, the others nan where not sampled)."""
    def full(a: Array | None, fill: Any, dtype: Any = np.float64) -> Array | None:
        if a is None:
            return None
        out = np.full(int(np.prod(shape)), fill, dtype=dtype)
        out[idx] = np.asarray(a).reshape(-1)
        return out.reshape(shape)
    t.shape, t.n_elements = list(shape), int(np.prod(shape))
    if t.worst_index is not None:
        t.worst_index = [int(v) for v in np.unravel_index(int(idx[t.worst_index[0]]), shape)]
    t.claimed = claimed.astype(np.float64)
    t.numerical, t.error, t.rel = full(t.numerical, np.nan), full(t.error, np.nan), full(t.rel, np.nan)
    t.kink = full(t.kink, False, bool)
    return t


# -- the sampled check ----------------------------------------------------------------------------------
def _estimate_sample(loss_of: LossOf, work: dict[str, Array], loss: float, noise: float, used: str,
                     order: dict[str, Array], planned: int, tally: Tally, deadline: float, *,
                     retarget: Callable[[int], None] | None = None) -> tuple[numerical.Estimate, bool, float]:
    """Estimate the first ``planned`` elements of the sample in rounds (a prefix of every tensor's
    order, in proportion to its length: a prefix of each tensor's random order of strata is still
    spread over the tensor, and keeps the chance ``prefix / n`` for every element). With a
    ``deadline`` the target is re-estimated after each round from the measured time per element:
    cut when the rounds run slower than planned, extended up to the whole of ``order`` when faster.
    Returns the estimate over what was done (``order`` cut to it), whether it fell short of
    ``planned``, and the seconds a call took (nan when none was made). ``retarget(elements)`` is
    told each new target (the progress display)."""
    capacity = {k: int(v.size) for k, v in order.items()}
    room = sum(capacity.values())
    # never less than each tensor's head: its largest entries (and where bisection led)
    target = max(min(planned, room), sum(min(c, 3) for c in capacity.values()))
    done = dict.fromkeys(order, 0)
    parts: dict[str, list[tuple[Array, Array, Array]]] = {k: [] for k in order}
    started, rate, calls = time.perf_counter(), math.nan, tally.calls
    while sum(done.values()) < target:
        n_done = sum(done.values())
        size = max(MIN_ROUND, math.ceil(target / ROUNDS))
        if math.isfinite(rate):  # near the deadline the rounds shrink: half the time left each
            size = min(size, max(MIN_ROUND, int((deadline - time.perf_counter()) / rate / 2)))
        fraction = min(target, n_done + size) / room
        # the largest entries (and where bisection led: first in each order, at most 3) in the first round
        ends = {k: min(capacity[k], max(done[k], min(capacity[k], 3), int(fraction * capacity[k]))) for k in order}
        if ends == done:  # the floors rounded this round away: one element where most is due
            k = max(order, key=lambda k: fraction * capacity[k] - done[k])
            ends[k] = min(capacity[k], done[k] + 1)
        chunk = {k: order[k][done[k]: ends[k]] for k in order}
        names = [k for k, v in chunk.items() if v.size]
        if not names:
            break
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = numerical.estimate(loss_of, work, scheme=used, noise=noise, f0=loss, names=names,
                                         index=chunk)
        except FunctionFault as f:
            raise Fault.from_function_fault(f) from None
        tally.calls += est.calls
        for k in names:
            parts[k].append((est.grad[k], est.error[k], est.step[k]))
            done[k] += int(chunk[k].size)
        if math.isfinite(deadline):
            now, n_done = time.perf_counter(), sum(done.values())
            if now >= deadline:
                break
            rate = max((now - started) / n_done, 1e-9)
            target = min(room, n_done + int((deadline - now) / rate))
            if retarget is not None:
                retarget(target)
    for k in order:
        order[k] = order[k][: done[k]]
    est = numerical.Estimate({}, {}, {}, used, noise, loss)
    for k in order:
        cols = list(zip(*parts[k])) if parts[k] else [[np.empty(0)]] * 3
        est.grad[k], est.error[k], est.step[k] = (np.concatenate(c) for c in cols)
    per_call = (time.perf_counter() - started) / (tally.calls - calls) if tally.calls > calls else math.nan
    return est, sum(done.values()) < min(planned, room), per_call


def sampled(fn: Any, loss_of: LossOf, frozen: Frozen, claimed: dict[str, Array], loss: float, options: Options,
            labels: Labels, tally: Tally, per_call: float, cost: FullCost, allowance: Allowance,
            claimed_rounding: Callable[..., numerical.ClaimedRounding | None], fn_call: float | None = None) -> Result:
    """The sampled check (module docstring): noise and scheme, directions over all elements, the
    stratified sample estimated and judged with the full check's error model, the coverage.
    ``per_call`` and ``fn_call`` (default: the same) are the seconds a call of the loss and of fn
    (with its backward) took at the start: the time kept back for the judging is counted in both."""
    from gradcheck import fastmode  # noqa: PLC0415 - the directions, imported on use

    work = contract.snapshot(frozen.params)
    total = sum(int(v.size) for v in work.values())
    started, before = time.perf_counter(), tally.calls
    noise, used = noise_and_scheme(loss_of, work, loss, labels.scheme, options.seed, tally)
    if tally.calls > before:  # the probe's calls time a call better than the first call of all
        per_call = (time.perf_counter() - started) / (tally.calls - before)
    # the plan: directions, sample, reserve, in calls
    fn_call = per_call if fn_call is None else fn_call
    left = allowance.calls_left(tally.calls, per_call)
    directions = int(min(DIRECTIONS, max(MIN_DIRECTIONS, DIRECTION_SHARE * left // 4)))
    reserve = RESERVE_SHARE * left + RESERVE_CALLS
    # in seconds, the rounding probe's calls of fn counted at fn's own cost (with its backward
    # it is dearer than the loss alone)
    reserve_seconds = (RESERVE_SHARE * left + STEP_CURVE_CALLS) * per_call + ROUNDING_CALLS * max(fn_call, per_call)
    for_sample = left - reserve - 4 * directions - fastmode.NOISE_POINTS
    planned = int(max(0, for_sample) // per_element_calls(used))
    # with a time budget the sample may grow when the calls run faster than planned (up to 4x),
    # never beyond max_calls' plan; under max_calls alone it is exactly the plan (deterministic)
    room = planned if allowance.budget is None or allowance.max_calls is not None else 4 * planned + 64
    order = sample(frozen.params, claimed, room, options.seed)
    planned = min(planned, sum(int(v.size) for v in order.values()))

    fast = fastmode.run(loss_of, frozen.params, claimed, loss=loss, t0=labels.t0, calls=0, notes=[],
                        rtol=options.rtol, seed=options.seed, name=labels.name, scheme="central",
                        dtype=labels.dtype, spec=labels.spec, directions=directions)
    tally.calls += fast.calls
    led = fast.failures[0] if fast.failures else fast.worst if not fast.passed else None
    if led is not None and led.param in order:  # where bisection led joins the sample, judged like it
        flat = int(np.ravel_multi_index(tuple(led.index), frozen.params[led.param].shape))
        if flat not in set(order[led.param].tolist()):
            order[led.param] = np.concatenate([np.array([flat], dtype=np.intp), order[led.param]])
            planned += 1

    deadline = (allowance.t0 + allowance.budget - reserve_seconds) if allowance.budget is not None else math.inf
    calls_per_element = per_element_calls(used)
    shown = progress.start(planned * calls_per_element, per_call, quiet=options.quiet,
                           label=f"a sample of {planned:,} of {total:,} elements", faster=[])

    def retarget(elements: int) -> None:  # the sample grew or shrank with the measured pace
        if shown is not None:
            shown.retarget(elements * calls_per_element, f"a sample of {elements:,} of {total:,} elements")
    try:
        est, cut, measured = _estimate_sample(shown.counting(loss_of) if shown is not None else loss_of, work, loss,
                                              noise, used, order, planned, tally, deadline, retarget=retarget)
    finally:
        if shown is not None:
            shown.close()
    loss_call = measured if math.isfinite(measured) else per_call
    judge = SampledJudge(loss_of, work, loss, Estimated(est, noise, used), tally, rtol=options.rtol,
                         detect_kinks=options.detect_kinks, index=order, full=frozen.params)
    sub = {k: np.asarray(claimed[k]).reshape(-1)[order[k]] for k in order}
    if not all(judge.first_look(k, frozen.params[k].reshape(-1)[order[k]], sub[k]) for k in order):
        started, before = time.perf_counter(), tally.calls
        rounding = claimed_rounding(fn, frozen, claimed, tally, options.seed)
        if rounding is not None:
            judge.measured(judge.wider_rounding(rounding, claimed))
        if tally.calls > before:  # fn's calls, timed where they were made
            fn_call = (time.perf_counter() - started) / (tally.calls - before)
    dropped = _limit_second_looks(judge, sub, allowance, tally, loss_call, led, fn_call=max(fn_call, loss_call))
    for k in order:
        judge.judge_tensor(k, claimed[k])
    result = judge.result(labels)
    if options.runs_symbolic:
        tally.note("symbolic oracle not run: a sampled check compares the sampled elements with the "
                   "numerical oracle only")
    confirmed = None  # a mismatch the sample does not explain (it passed) must be confirmed
    if not fast.passed and result.passed and not ({p.kind for p in fast.problems} & {"raised", "fast_inconclusive"}):
        confirmed = confirm_directions(loss_of, work, claimed, loss, noise, options.seed, options.rtol, tally)
    _merge_directions(result, fast, led, confirmed)
    result.notes = list(tally.notes)
    if not result.passed:
        explain_failure(result, loss_of, work, labels.spec, frozen.X)
        if result.diagnosis is not None:
            result.diagnosis.message += " (read from the sampled elements only)"
    checked = {k: int(v.size) for k, v in order.items()}
    result.coverage = {
        "complete": sum(checked.values()) == total, "checked": sum(checked.values()), "total": total,
        "tensors": len(order), "per_tensor": {k: [checked[k], int(frozen.params[k].size)] for k in order},
        "directions": directions,
        "budget": allowance.budget, "max_calls": allowance.max_calls, "planned": planned,
        "not_reexamined": dropped, "cut": cut, "overrun": False,
        "full_calls": cost.calls, "full_seconds": cost.seconds,
        "direction_tolerance": fast.tolerance if math.isfinite(fast.tolerance) else None,
    }
    result.calls = tally.calls
    if cut:
        result.notes.append(f"the sample ran slower than planned: {result.coverage['checked']:,} of the "
                            f"{planned:,} planned elements were checked within the budget")
    if dropped:
        result.notes.append(f"{dropped} sampled element(s) failed the first comparison but could not be "
                            "re-examined on the step ladder within the budget: left out of the verdict")
    if result.passed:
        result.notes.append("a sampled check: no error found in what was covered, which proves nothing "
                            "about the elements left out (see the coverage line)")
    finish(result, allowance)
    return result


def _limit_second_looks(judge: SampledJudge, sub: Mapping[str, Array], allowance: Allowance, tally: Tally,
                        per_call: float, led: Element | None = None, *, fn_call: float | None = None) -> int:
    """Keep only as many first-look failures as the budget can give a second look (round-robin
    over tensors, largest margin first, where a direction's bisection ``led`` before all; at least
    one per tensor); drop the others from the sample. A look costs :data:`SECOND_LOOK_CALLS` calls
    of the loss (``per_call`` seconds each) and :data:`COORDINATE_PROBE_CALLS` of fn (``fn_call``
    seconds each, default ``per_call``). Returns how many were dropped."""
    margins = {k: judge.failing(k, c) for k, c in sub.items()}
    if led is not None and led.param in margins:
        at = np.flatnonzero(judge.index[led.param] == np.ravel_multi_index(tuple(led.index), judge.full[led.param].shape))
        if at.size and margins[led.param][at[0]] > 0:
            margins[led.param][at[0]] = np.inf
    failing = {k: np.flatnonzero(m > 0) for k, m in margins.items()}
    n_failing = sum(v.size for v in failing.values())
    if not n_failing:
        return 0
    room = int(affordable_looks(allowance, tally.calls, per_call, per_call if fn_call is None else fn_call))
    if n_failing <= max(room, sum(1 for v in failing.values() if v.size)):
        return 0
    ranked = {k: v[np.argsort(-margins[k][v], kind="stable")] for k, v in failing.items() if v.size}
    quota = share_looks({k: int(v.size) for k, v in ranked.items()}, room)
    kept = {k: [int(i) for i in v[: quota[k]]] for k, v in ranked.items()}
    dropped = 0
    for k, v in ranked.items():
        keep = np.ones(sub[k].size, bool)
        keep[np.setdiff1d(v, kept[k])] = False
        dropped += int((~keep).sum())
        judge.keep(k, keep)
        sub[k] = sub[k][keep]  # type: ignore[index]
    return dropped


def confirm_directions(loss_of: LossOf, work: dict[str, Array], claimed: Mapping[str, Array], loss: float,
                       noise: float, seed: int, rtol: float | None, tally: Tally, *,
                       directions: int = CONFIRM_DIRECTIONS) -> tuple[bool, str]:
    """Is a directional mismatch real? Fresh sign directions (as fast mode's) at steps 4x and 8x
    smaller than fast mode's: a wrong gradient's mismatch (``delta u_i``, ``r g . u``) does not
    depend on the step, while what kinks crossed by a step that moves every element at once add
    falls with it (fewer units crossed, each by less). Returns (confirmed, what was seen)."""
    names = list(work)
    c = [np.asarray(claimed[k], dtype=np.float64).reshape(-1) for k in names]
    x0 = [work[k].reshape(-1).copy() for k in names]
    dt = min((work[k].dtype for k in names), key=lambda d: d.itemsize)
    eps_c = max(claimed_eps(np.asarray(claimed[k]), work[k]) for k in names)
    h = float(numerical.pow2(np.array([numerical.effective_eps(dt, noise, loss) ** (1 / 3)]))[0]) / 4
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 4057])
    seen = ""
    for _ in range(directions):
        v = [np.where(rng.integers(0, 2, size=x.size) == 1, 1.0, -1.0)
             * numerical.pow2(np.maximum(1.0, np.abs(x.astype(np.float64)))) for x in x0]
        rows = []
        for step in (h, h / 2):
            plus = [(x + step * d).astype(x.dtype) for x, d in zip(x0, v)]
            minus = [(x - step * d).astype(x.dtype) for x, d in zip(x0, v)]
            u = [(a.astype(np.float64) - b.astype(np.float64)) / (2 * step) for a, b in zip(plus, minus)]
            values = []
            try:
                for side in (plus, minus):
                    for k, point in zip(names, side):
                        work[k].reshape(-1)[:] = point
                    values.append(numerical._as_float(loss_of(work)))
            except Exception as exc:  # fn's fault: the direction proves nothing either way
                return False, f"fn raised {type(exc).__name__} along a confirming direction"
            finally:
                for k, x in zip(names, x0):
                    work[k].reshape(-1)[:] = x
                tally.calls += len(values)
            rows.append(((values[0] - values[1]) / (2 * step),
                         math.fsum(float(np.dot(ci, ui)) for ci, ui in zip(c, u)), u))
        (D1, C1, u1), (D2, C2, _) = rows
        D, C = (4 * D2 - D1) / 3, (4 * C2 - C1) / 3
        rounding = numerical.NOISE_GAIN["central"] * noise / h * math.sqrt(65) / 3
        error = rounding + abs((D1 - C1) - (D2 - C2)) / 3
        ulps = ANALYTIC_ULPS * eps_c * sum(float(np.dot(np.abs(ui), np.abs(ci) + (np.max(np.abs(ci)) if ci.size else 0.0)))
                                           for ci, ui in zip(c, u1))
        cmp = compare(np.array([C]), np.array([D]), np.array([error + ulps / SAFETY]), claimed_eps=eps_c, rtol=rtol)
        seen = (f"claimed {C:.12g}, numerical {D:.12g} along a fresh direction at step {h:.3g}: relative error "
                f"{float(cmp.rel[0]):.2e}, tolerance {float(cmp.tol[0]):.2e}")
        if not cmp.passed[0]:
            return True, seen
    return False, seen


def _merge_directions(result: Result, fast: Result, led: Element | None,
                      confirmed: tuple[bool, str] | None = None) -> None:
    """The random directions' verdict joins the sample's: a direction that fails (localized by
    bisection to an element, or spread over many) fails the check; one localized only to
    non-differentiable points is inconclusive, and noted. The element bisection ``led`` to was
    estimated and judged with the sample: where it fails there, that verdict (the full check's
    error model) stands for it; else the mismatch counts only when ``confirmed``
    (:func:`confirm_directions`)."""
    if led is not None and any(f.param == led.param and f.index == led.index for f in result.failures):
        for f in result.failures:
            if f.param == led.param and f.index == led.index:
                f.note = f.note or "found by a random direction (bisection led to it)"
        result.notes.extend(n for n in fast.notes if n.startswith("directional derivative"))
        return
    if fast.passed:
        if fast.kinks:
            result.notes.append(f"the random directions left {len(fast.kinks)} non-differentiable element(s) out")
        return
    kinds = {p.kind for p in fast.problems}
    if kinds == {"fast_inconclusive"}:
        result.notes.append("the random directions were inconclusive (a mismatch that bisection led only to "
                            "non-differentiable points); the verdict rests on the sampled elements")
        return
    if not result.passed and "raised" not in kinds:  # the sample's failure stands; the direction agrees
        result.notes.extend(n for n in fast.notes if n.startswith("directional derivative"))
        return
    if confirmed is not None and not confirmed[0]:
        result.notes.append("a random direction disagreed (" + "; ".join(n for n in fast.notes if n.startswith(
            "directional derivative")) + ") but neither the sample nor fresh directions at 4x smaller steps "
            f"confirm it ({confirmed[1]}): kinks crossed by a step that moves every element at once, not "
            "counted as a failure")
        return
    if confirmed is not None:
        result.notes.append(f"the directional mismatch is confirmed by a fresh direction at 4x smaller steps "
                            f"({confirmed[1]})")
    sample_failed = not result.passed
    result.passed = False
    result.problems.extend(fast.problems)
    e = fast.failures[0] if fast.failures else None
    if e is not None:
        e.note = "localized by bisection along a random direction"
        if not any(f.param == e.param and f.index == e.index for f in result.failures):
            result.failures.append(e)
        t = result.tensors.get(e.param)
        if t is not None:
            t.passed = False
            t.n_failed += 1
            if e.rel_error > t.max_rel_error:
                t.max_rel_error, t.worst_index, t.tolerance = e.rel_error, list(e.index), e.tolerance
    if not sample_failed:
        where = e if e is not None else fast.worst
        result.worst = e
        result.worst_param = where.param if where is not None else fast.worst_param
        result.max_rel_error = max(result.max_rel_error, fast.max_rel_error)
        result.oracles["analytic_vs_numerical"] = max(result.oracles.get("analytic_vs_numerical", 0.0),
                                                      fast.max_rel_error)
        result.tolerance = e.tolerance if e is not None else fast.tolerance
        if e is not None:
            result.failures.sort(key=lambda f: -f.rel_error)
    result.notes.extend(n for n in fast.notes if n.startswith("directional derivative"))


def complete(params: Mapping[str, Array], cost: FullCost, allowance: Allowance,
             not_reexamined: Mapping[str, int] | None = None, notes: list[str] | None = None) -> dict[str, Any]:
    """The coverage of a full check run under a budget (it fit): every element, less those that
    failed but got no second look within the budget (``not_reexamined`` per tensor,
    :func:`plan_looks`; then not complete, and ``notes`` says so)."""
    total = sum(int(v.size) for v in params.values())
    left = {k: int((not_reexamined or {}).get(k, 0)) for k in params}
    dropped = sum(left.values())
    if dropped and notes is not None:
        notes.append(f"{dropped} element(s) failed the first comparison but could not be re-examined "
                     "on the step ladder within the budget: left out of the verdict")
    return {"complete": not dropped, "checked": total - dropped, "total": total, "tensors": len(params),
            "per_tensor": {k: [int(v.size) - left[k], int(v.size)] for k, v in params.items()}, "directions": 0,
            "budget": allowance.budget, "max_calls": allowance.max_calls, "planned": total,
            "not_reexamined": dropped, "cut": False, "overrun": False, "full_calls": cost.calls,
            "full_seconds": cost.seconds, "direction_tolerance": None}


def affordable_looks(allowance: Allowance, calls: int, per_call: float, fn_call: float) -> float:
    """Second looks the rest of the allowance pays for: each :data:`SECOND_LOOK_CALLS` loss calls
    (``per_call`` seconds) and :data:`COORDINATE_PROBE_CALLS` calls of fn (``fn_call``), after a
    quarter kept for the rest (a failure's step-size curve, the diagnosis)."""
    looks = math.inf
    if allowance.max_calls is not None:  # calls are calls, whichever function makes them
        looks = (0.75 * (allowance.max_calls - calls) - STEP_CURVE_CALLS) / (SECOND_LOOK_CALLS + COORDINATE_PROBE_CALLS)
    if allowance.budget is not None:
        left_s = 0.75 * allowance.seconds_left() - STEP_CURVE_CALLS * per_call
        looks = min(looks, left_s / (SECOND_LOOK_CALLS * per_call + COORDINATE_PROBE_CALLS * fn_call))
    return max(0.0, looks)


def share_looks(failing: Mapping[str, int], room: int) -> dict[str, int]:
    """``room`` second looks shared over the tensors' ``failing`` counts round-robin (equal shares,
    none more than it has; every failing tensor at least one)."""
    room = max(room, sum(1 for n in failing.values() if n))
    quota = dict.fromkeys(failing, 0)
    while sum(quota.values()) < room and any(quota[k] < n for k, n in failing.items()):
        for k, n in failing.items():
            if quota[k] < n and sum(quota.values()) < room:
                quota[k] += 1
    return quota


def plan_looks(judge: Judge, allowance: Allowance, tally: Tally, per_call: float, fn_call: float) -> None:
    """The full check under a budget, once its first looks failed somewhere: cap each tensor's second
    looks at its share of what the budget still pays for (:func:`affordable_looks`,
    :func:`share_looks`), fn's calls priced at what the validation calls took (a tensor not in
    the first looks' record keeps every look)."""
    failing = judge.first_failing()
    room = affordable_looks(allowance, tally.calls, per_call, max(fn_call, per_call))
    if sum(failing.values()) > room:
        judge.refine_quota = share_looks(failing, int(room))


def finish(result: Result, allowance: Allowance) -> None:
    """Say so when the check went over its budget (never silently), and write the coverage line."""
    assert result.coverage is not None
    over = allowance.exceeded(result.calls)
    if over:
        result.coverage["overrun"] = True
        result.notes.append(f"over budget: {over} (the claimed gradient's rounding probe, second looks at "
                            "failing elements and a failure's explanation finish once started)")
    result.coverage["text"] = coverage_text(result.coverage)
