"""``check`` and ``assert_gradients``: compare a function's claimed gradient with the oracles.

The function under test is a black box ``fn(params, X, y) -> (loss, grads)``. It only ever sees
private copies of ``params``, ``X`` and ``y``: the caller's objects are never handed to it, so they
stay bit-for-bit unchanged whatever it does, and any writing into its inputs is detected and
reported. A fault of ``fn`` (raising, NaN, wrong shapes or keys, nondeterminism, mutation) gives
``passed=False`` with an explanation; only misuse of the harness itself raises.
"""
from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from gradcheck import contract, progress
from gradcheck.contract import Fault, Frozen, Tally
from gradcheck.crosscheck import add_symbolic
from gradcheck.estimating import expected_calls, numerical_estimate
from gradcheck.explaining import explain_failure
from gradcheck.judging import Judge
from gradcheck.numerical import ClaimedRounding, gradient_noise
from gradcheck.options import MODES, ORACLES, SCHEME_CHOICES, Labels, Options
from gradcheck.result import Problem, Result, failure_line

Array = np.ndarray
Fn = Callable[[dict, Any, Any], Any]

__all__ = ["check", "assert_gradients", "observers", "SCHEME_CHOICES", "MODES", "ORACLES"]


# -- observers ------------------------------------------------------------------------------------
class Observers:
    """Callables ``observer(result)`` told of every Result that :func:`check` returns (the pytest
    plugin's ``gradcheck`` marker records checks this way). Thread-safe and bounded: a program that
    keeps adding observers without removing them gets an error, not a slow leak."""

    LIMIT = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Callable[[Result], None]] = []

    def append(self, observer: Callable[[Result], None]) -> None:
        with self._lock:
            if len(self._items) >= self.LIMIT:
                raise RuntimeError(f"more than {self.LIMIT} gradcheck observers registered: remove the ones "
                                   "no longer needed (observers.remove)")
            self._items.append(observer)

    def remove(self, observer: Callable[[Result], None]) -> None:
        with self._lock:
            self._items.remove(observer)

    def __contains__(self, observer: object) -> bool:
        with self._lock:
            return observer in self._items

    def __iter__(self) -> Iterator[Callable[[Result], None]]:
        with self._lock:
            return iter(tuple(self._items))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


#: every :func:`check` result is handed to these (an observer must not raise)
observers = Observers()


def _observed(check_fn: Callable[..., Result]) -> Callable[..., Result]:
    @functools.wraps(check_fn)
    def observed_check(*args: Any, **kwargs: Any) -> Result:
        result = check_fn(*args, **kwargs)
        for observe in observers:
            observe(result)
        return result
    return observed_check


# -- the check ------------------------------------------------------------------------------------
@_observed
def check(fn: Fn, params: Mapping[str, Array], X: Any, y: Any, *, scheme: str = "auto",
          rtol: float | None = None, name: str | None = None, spec: Any = None,
          loss_fn: Callable[[dict, Any, Any], Any] | None = None, mode: str = "full",
          symbolic: bool | None = None, detect_kinks: bool = True, seed: int = 0,
          oracle: str = "numerical", quiet: bool | None = None, budget: float | None = None,
          max_calls: int | None = None) -> Result:
    """Compare ``fn``'s claimed gradient with a numerical (and, given a spec, symbolic) oracle.

    Parameters
    ----------
    fn : callable
        ``fn(params, X, y) -> (loss, grads)``: the code under test; ``grads`` must have the keys
        and shapes of ``params``.
    params : dict of str to floating numpy array
        The parameters the gradient is taken with respect to.
    X, y : any
        The batch, passed to ``fn`` as given (copies of them); ``X`` must not be None.
    scheme : str
        ``"auto"`` (complex step when fn is analytic in its parameters, else central
        differences), or one of ``forward``, ``central``, ``central4``, ``richardson``, ``complex``.
    rtol : float, optional
        A relative tolerance that loosens the computed one (never tightens it); finite.
    name : str, optional
        A label for reports.
    spec : NetworkSpec, optional
        A :class:`gradcheck.spec.NetworkSpec` describing fn's network: enables the symbolic
        oracle (three-way comparison) where the network is small enough.
    loss_fn : callable, optional
        ``loss_fn(params, X, y) -> loss`` computing only the loss (faster finite differences); it
        must agree with fn's loss.
    mode : str
        ``"full"`` (every element) or ``"fast"`` (random directions, then localization).
    symbolic : bool, optional
        Force the symbolic oracle on (True, needs ``spec``) or off (False); default: on when
        ``spec`` is given with ``oracle="numerical"`` (off with ``oracle="structured"``, the fast
        path); a spec over 2000 parameters is skipped without importing SymPy. Not with
        ``mode="fast"``.
    detect_kinks : bool
        Leave non-differentiable points out of the verdict (default True; ``mode="fast"`` always
        does).
    seed : int
        Seed of the checker's random probes (the verdict is deterministic for a given seed).
    oracle : str
        ``"numerical"`` (black-box finite differences of fn's loss) or ``"structured"``: the same
        finite differences computed from ``spec``'s network in batched, structure-aware passes
        (much faster for large networks; :mod:`gradcheck.structured`). fn's loss must match the
        spec's.
    quiet : bool, optional
        True: never show progress. Default: a check estimated to take more than a few seconds
        shows a progress bar on a terminal (a log line every 10 s otherwise) and names the faster
        paths; silent inside the pytest plugin unless pytest runs with ``-v``.
    budget : float, optional
        Wall-clock seconds the check may take (positive, finite). When the full check's estimated
        cost (calls x the time per call measured at the start) fits, it runs unchanged; else a
        stratified sample of elements in every tensor (each tensor's largest entries always) is
        checked with the same error model, plus random directions over all elements
        (:mod:`gradcheck.budget`). ``result.coverage`` says exactly what was covered.
    max_calls : int, optional
        The same bound in calls of fn (or ``loss_fn``): deterministic for a given seed.

    Returns
    -------
    Result
        Truthy exactly when the check passed; ``str(result)`` explains the verdict.
    """
    options = Options(scheme=scheme, rtol=rtol, name=name, spec=spec, loss_fn=loss_fn, mode=mode,
                      symbolic=symbolic, detect_kinks=detect_kinks, seed=seed, oracle=oracle,
                      quiet=quiet, budget=budget, max_calls=max_calls).validated(fn, params, X)
    frozen = Frozen.of(params, X, y)          # the caller's objects, frozen: fn only ever gets copies
    labels = _labels(options, params)
    tally = Tally()
    try:
        started = time.perf_counter()
        loss, claimed = contract.call_twice(fn, frozen, tally)
        per_call = fn_call = (time.perf_counter() - started) / 2   # seconds per call of fn, for progress
        started = time.perf_counter()
        loss_of = contract.loss_for_differences(fn, options.loss_fn, frozen, loss, tally)
        if options.loss_fn is not None:                    # differences call loss_fn instead
            per_call = time.perf_counter() - started
        if options.oracle == "structured":
            loss_of = _structured_loss(options, frozen, loss)
        if options.mode == "fast":
            result = _fast(loss_of, frozen, claimed, loss, options, labels, tally)
        elif options.budget is not None or options.max_calls is not None:
            result = _budgeted(fn, loss_of, frozen, claimed, loss, options, labels, tally, per_call, fn_call)
        else:
            result = _full(fn, loss_of, frozen, claimed, loss, options, labels, tally, per_call)
    except Fault as fault:
        result = _failed(fault.problem, labels, tally)
    result.seconds = time.perf_counter() - labels.t0
    _finish(result, frozen, params, X, y)
    return result


def _full(fn: Fn, loss_of: Callable[[dict], Any], frozen: Frozen, claimed: dict[str, Array], loss: float,
          options: Options, labels: Labels, tally: Tally, per_call: float,
          plan: Callable[[Judge], None] | None = None) -> Result:
    """Every element: estimate, judge (measuring the claimed gradient's rounding only if something
    fails as it stands), cross-check with the symbolic oracle, explain a failure. ``plan(judge)``,
    when something failed, may cap the second looks (a budget)."""
    work = contract.snapshot(frozen.params)
    watcher = _Watcher(options, labels, frozen, per_call)
    scheme = labels.scheme if options.oracle == "numerical" else _structured_scheme(options)
    try:
        estimated = numerical_estimate(loss_of, work, loss, scheme, options.seed, tally, watch=watcher.watch)
    finally:
        watcher.close()
    judge = Judge(loss_of, work, loss, estimated, tally, rtol=options.rtol, detect_kinks=options.detect_kinks)
    if not judge.first_looks(frozen.params, claimed):
        # something fails as it stands: measure the claimed gradient's own rounding before any
        # verdict (ill-conditioned but correct arithmetic is not a bug)
        rounding = _claimed_rounding(fn, frozen, claimed, tally, options.seed)
        if rounding is not None:
            judge.measured(judge.wider_rounding(rounding, claimed))
        if plan is not None:
            plan(judge)
    judge.tensors_all(frozen.params, claimed)
    result = judge.result(labels)
    if options.runs_symbolic:
        add_symbolic(result, options.spec, frozen.params, frozen.X, frozen.y, claimed, judge)
    if not all(t.passed for t in result.tensors.values()):
        explain_failure(result, loss_of, work, labels.spec, frozen.X)
    return result


def _budgeted(fn: Fn, loss_of: Callable[[dict], Any], frozen: Frozen, claimed: dict[str, Array], loss: float,
              options: Options, labels: Labels, tally: Tally, per_call: float, fn_call: float) -> Result:
    """Under ``budget=``/``max_calls=``: the full check when its estimated cost fits, else a
    stratified sample plus random directions (:mod:`gradcheck.budget`); either way a coverage.
    ``per_call``: seconds a call of the loss takes; ``fn_call``: a call of fn (with its backward)."""
    from gradcheck import budget  # noqa: PLC0415 - optional path, imported on use

    allowance = budget.Allowance(options.budget, options.max_calls, labels.t0)
    size = sum(int(v.size) for v in frozen.params.values())
    cost = budget.full_cost(options.scheme, size, tally.calls, per_call, allowance)
    if not cost.fits:
        return budget.sampled(fn, loss_of, frozen, claimed, loss, options, labels, tally, per_call, cost,
                              allowance, claimed_rounding=_claimed_rounding, fn_call=fn_call)
    judges: list[Judge] = []   # the judge that planned its looks, to read what it left out

    def plan(judge: Judge) -> None:
        judges.append(judge)
        budget.plan_looks(judge, allowance, tally, per_call, fn_call)
    result = _full(fn, loss_of, frozen, claimed, loss, options, labels, tally, per_call, plan=plan)
    result.coverage = budget.complete(frozen.params, cost, allowance,
                                      judges[0].not_reexamined if judges else None, result.notes)
    budget.finish(result, allowance)
    return result


def _fast(loss_of: Callable[[dict], Any], frozen: Frozen, claimed: dict[str, Array], loss: float,
          options: Options, labels: Labels, tally: Tally) -> Result:
    """Random directions, then bisection (:mod:`gradcheck.fastmode`)."""
    from gradcheck import fastmode  # noqa: PLC0415 - optional path, imported on use

    scheme = _structured_scheme(options) if options.oracle == "structured" else labels.scheme
    return fastmode.run(loss_of, frozen.params, claimed, loss=loss, t0=labels.t0, calls=tally.calls,
                        notes=tally.notes, rtol=options.rtol, seed=options.seed, name=labels.name,
                        scheme=scheme, dtype=labels.dtype, spec=labels.spec)


# -- small steps of a check ---------------------------------------------------------------------------
def _labels(options: Options, params: Mapping[str, Array]) -> Labels:
    spec = options.spec
    spec_dict = spec.to_dict() if spec is not None and hasattr(spec, "to_dict") else None
    dtype = str(min((v.dtype for v in params.values()), key=lambda dt: dt.itemsize))
    return Labels(name=options.name, scheme=options.scheme, dtype=dtype, spec=spec_dict)


def _structured_scheme(options: Options) -> str:
    """The structure-aware oracle takes central differences unless a scheme was named."""
    return "central" if options.scheme == "auto" else options.scheme


def _structured_loss(options: Options, frozen: Frozen, loss: float) -> Callable[[dict], Any]:
    """The spec's network, evaluated in batched structure-aware passes; it must match fn's loss."""
    from gradcheck import structured  # noqa: PLC0415 - optional path, imported on use
    try:
        return structured.oracle_loss(options.spec, frozen.params, frozen.fresh_X(), frozen.fresh_y(),
                                      expected=loss)
    except structured.SpecMismatch as exc:
        raise Fault(Problem("spec_mismatch", str(exc))) from None


def _claimed_rounding(fn: Fn, frozen: Frozen, claimed: dict[str, Array], tally: Tally,
                      seed: int) -> ClaimedRounding | None:
    """The claimed gradient's rounding, measured a few ulps away (:func:`gradient_noise`); a fault
    of fn there gives no measurement and a note saying why (the verdict goes on without it)."""
    try:
        return gradient_noise(contract.gradient_at(fn, frozen, tally), frozen.params, claimed, seed=seed)
    except Fault as fault:
        tally.note("your gradient's own rounding could not be measured: fn failed a few "
                   f"ulps from params ({fault.problem.message})")
        return None


class _Watcher:
    """Progress of the element-by-element pass once its scheme (and so its number of calls) is known."""

    def __init__(self, options: Options, labels: Labels, frozen: Frozen, per_call: float) -> None:
        self.options, self.labels, self.frozen, self.per_call = options, labels, frozen, per_call
        self.shown: progress.Progress | None = None

    def watch(self, scheme: str, loss_of: Callable[[dict], Any]) -> Callable[[dict], Any]:
        if hasattr(loss_of, "evaluate_points"):  # the structured oracle: batched passes, not one call
            return loss_of                       # per element, so fn's per-call time says nothing
        size = sum(v.size for v in self.frozen.params.values())
        total = expected_calls(scheme, size)
        self.shown = progress.start(total, self.per_call, quiet=self.options.quiet,
                                    label=self.labels.name or f"{size:,} parameters",
                                    faster=_faster_paths(self.options, size))
        return self.shown.counting(loss_of) if self.shown is not None else loss_of

    def close(self) -> None:
        if self.shown is not None:
            self.shown.close()


def _faster_paths(options: Options, size: int) -> list[str]:
    """What would make this check faster, in the order worth trying."""
    paths = []
    if options.loss_fn is None and options.oracle == "numerical":
        paths.append("loss_fn=<the loss alone> (finite differences then skip fn's backward pass)")
    if options.oracle == "numerical":
        paths.append("oracle='structured' with spec=<its NetworkSpec> (batched, recomputes from the "
                     "moved layer on)" if options.spec is None else
                     "oracle='structured' (the spec's network in batched passes)")
    paths.append(f"mode='fast' (random directions then bisection: about 22 + 2 log2(P) = "
                 f"{22 + 2 * max(1, size).bit_length()} calls, not a per-element verdict)")
    return paths


def _failed(problem: Problem, labels: Labels, tally: Tally) -> Result:
    return Result(passed=False, max_rel_error=float("inf"), worst_param=problem.param, problems=[problem],
                  calls=tally.calls, seconds=time.perf_counter() - labels.t0, notes=list(tally.notes),
                  **labels.fields())


def _finish(result: Result, frozen: Frozen, params: Mapping[str, Array], X: Any, y: Any) -> None:
    """Verify the caller's objects are bit-for-bit what they were (they were never handed out)."""
    changed = frozen.changes(dict(params), X, y)
    if changed:  # only another thread could do this; say so rather than hide it
        result.passed = False
        result.problems.append(Problem("mutates_input", f"{', '.join(c.label for c in changed)} changed during "
                                                        "the check (modified from outside gradcheck?)"))


def assert_gradients(fn: Fn, params: Mapping[str, Array], X: Any, y: Any, **options: Any) -> None:
    """``check(...)``; unless it passed, raise ``AssertionError`` with a one-line summary
    (:func:`gradcheck.result.failure_line`) followed by ``str(result)``."""
    result = check(fn, params, X, y, **options)
    if not result.passed:  # the first line is what pytest's -ra summary shows: where, how far, why
        raise AssertionError(f"{failure_line(result)}\n{result}")
