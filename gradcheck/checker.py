"""``check`` and ``assert_gradients``: compare a function's claimed gradient with the oracles.

The function under test is a black box ``fn(params, X, y) -> (loss, grads)``. It only ever sees
private copies of ``params``, ``X`` and ``y``: the caller's objects are never handed to it, so they
stay bit-for-bit unchanged whatever it does, and any writing into its inputs is detected and
reported. A fault of ``fn`` (raising, NaN, wrong shapes or keys, nondeterminism, mutation) gives
``passed=False`` with an explanation; only misuse of the harness itself raises.
"""
from __future__ import annotations

import copy
import functools
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from gradcheck import numerical
from gradcheck.compare import ANALYTIC_ULPS, SAFETY, compare, eps_of, pair_error
from gradcheck.numerical import FunctionFault, _as_float
from gradcheck.result import Element, Problem, Result, TensorReport, fmt_index
from gradcheck.tolerance import MODEL

Array = np.ndarray
Fn = Callable[[dict, Any, Any], Any]

SCHEME_CHOICES = ("auto",) + numerical.SCHEMES
MODES = ("full", "fast")
ORACLES = ("numerical", "structured")
#: calls with identical inputs may differ by this many ulps of the tensor's scale (summation order)
NONDETERMINISM_ULPS = 1024
#: at most this many failing elements per check get a second look (h/2, kink test)
MAX_REFINE = 1024
#: failing elements listed on the result
MAX_LISTED = 50


# -- input validation (misuse of the harness raises) ---------------------------------------------
def _validate_params(params: Any) -> None:
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of str -> numpy array, got {type(params).__name__}")
    if not params:
        raise ValueError("params is empty: there is no gradient to check")
    for k, v in params.items():
        if not isinstance(k, str):
            raise TypeError(f"params keys must be str, got {k!r} ({type(k).__name__})")
        if not isinstance(v, np.ndarray):
            raise TypeError(f"params[{k!r}] must be a numpy array, got {type(v).__name__}"
                            + (" (use np.asarray)" if isinstance(v, (list, tuple, float, int)) else ""))
        if v.dtype.kind != "f":
            raise ValueError(f"params[{k!r}] has dtype {v.dtype}; finite differences need a floating "
                             f"dtype (e.g. params[{k!r}].astype(np.float64))")
        if v.size == 0:
            raise ValueError(f"params[{k!r}] is empty (shape {v.shape})")
        if not np.all(np.isfinite(v)):
            bad = np.argwhere(~np.isfinite(v))[0]
            raise ValueError(f"params[{k!r}] has a non-finite value at {fmt_index(k, bad)}")


def _snapshot(obj: Any) -> Any:
    """A deep, independent copy (arrays copied with their dtype and layout)."""
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, Mapping):
        return {k: _snapshot(v) for k, v in obj.items()}
    return copy.deepcopy(obj)


def _same(a: Any, b: Any) -> bool:
    """Bit-for-bit equality (dtype, shape, bytes; dict keys)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return (isinstance(a, Mapping) and isinstance(b, Mapping) and list(a) == list(b)
                and all(_same(a[k], b[k]) for k in a))
    try:
        return bool(a == b)
    except Exception:  # objects without a usable ==: compare their reprs
        return repr(a) == repr(b)


def _mutated(snapshot: dict, given: dict, X0: Any, X: Any, y0: Any, y: Any) -> list[str]:
    what = []
    if list(given) != list(snapshot):
        what.append("params (keys added or removed)")
    for k in snapshot:
        if k in given and not _same(snapshot[k], given[k]):
            what.append(f"params[{k!r}]")
    if not _same(X0, X):
        what.append("X")
    if not _same(y0, y):
        what.append("y")
    return what


# -- reading what fn returned ---------------------------------------------------------------------
class _Fault(Exception):
    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


def _read_output(out: Any, params: Mapping[str, Array]) -> tuple[float, dict[str, Array]]:
    """Validate ``(loss, grads)``; raise :class:`_Fault` naming what is wrong."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise _Fault(Problem("bad_return", f"fn must return (loss, grads); it returned "
                                           f"{type(out).__name__}" + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")))
    loss, grads = out
    try:
        a = np.asarray(loss)
    except Exception as exc:
        raise _Fault(Problem("bad_loss", f"the loss ({type(loss).__name__}) is not a number: {exc}"))
    if a.dtype.kind not in "fiuc":
        raise _Fault(Problem("bad_loss", f"the loss must be a number, got {type(loss).__name__} of dtype {a.dtype}"))
    if a.size != 1:
        raise _Fault(Problem("non_scalar_loss",
                             f"the loss has shape {a.shape}, not a scalar: a per-sample vector? Return its "
                             "mean or sum (gradcheck never reduces it for you, the gradient depends on which)"))
    value = float(a.real.reshape(()))
    if not math.isfinite(value):
        raise _Fault(Problem("non_finite_loss", f"the loss is {value}"))
    if not isinstance(grads, Mapping):
        raise _Fault(Problem("bad_grads", f"grads must be a dict with the keys of params, got {type(grads).__name__}"))
    missing = [k for k in params if k not in grads]
    extra = [k for k in grads if k not in params]
    if missing:
        raise _Fault(Problem("missing_key", f"grads lacks {', '.join(map(repr, missing))} "
                                            f"(params has {', '.join(map(repr, params))})", missing[0]))
    if extra:
        raise _Fault(Problem("extra_key", f"grads has key(s) {', '.join(map(repr, extra))} that params does not have",
                             str(extra[0])))
    out_grads = {}
    for k, p in params.items():
        try:
            g = np.asarray(grads[k])
        except Exception as exc:
            raise _Fault(Problem("bad_grads", f"grads[{k!r}] ({type(grads[k]).__name__}) cannot be read as "
                                              f"an array: {exc}", k))
        if g.dtype.kind not in "f":
            raise _Fault(Problem("dtype", f"grads[{k!r}] has dtype {g.dtype}; expected a floating dtype "
                                          f"like params[{k!r}] ({p.dtype})", k))
        if g.shape != p.shape:
            hint = ""
            if g.shape == p.shape[::-1] and len(p.shape) == 2:
                hint = " (transposed?)"
            elif g.size == p.size:
                hint = " (same size, different shape: reshape it)"
            raise _Fault(Problem("shape", f"grads[{k!r}] has shape {g.shape}, expected {p.shape} "
                                          f"(the shape of params[{k!r}]){hint}", k))
        bad = ~np.isfinite(g)
        if bad.any():
            where = np.argwhere(bad)[0]
            raise _Fault(Problem("non_finite_grad", f"grads[{k!r}] is {g[tuple(where)]} at "
                                                    f"{fmt_index(k, where)} ({int(bad.sum())} non-finite element(s))",
                                 k, [int(i) for i in where]))
        out_grads[k] = np.array(g, copy=True)
    return value, out_grads


def _failed(problem: Problem, *, name, scheme, dtype, t0, calls, notes=None, spec=None) -> Result:
    return Result(passed=False, max_rel_error=math.inf, worst_param=problem.param, name=name,
                  scheme=scheme, dtype=dtype, problems=[problem], calls=calls,
                  seconds=time.perf_counter() - t0, notes=list(notes or []), spec=spec)


def _nondeterminism(g1: dict[str, Array], g2: dict[str, Array], l1: float, l2: float,
                    eps: float) -> Problem | None:
    """Two calls with identical inputs: differences beyond rounding are a fault of fn."""
    for k in g1:
        a, b = g1[k].astype(np.float64), g2[k].astype(np.float64)
        scale = float(np.max(np.abs(a))) if a.size else 0.0
        diff = np.abs(a - b)
        limit = NONDETERMINISM_ULPS * eps * (np.abs(a) + scale)
        if np.any(diff > limit):
            i = np.unravel_index(int(np.argmax(diff - limit)), a.shape)
            with np.errstate(all="ignore"):
                ratio = b / a
            finite = ratio[np.isfinite(ratio) & (np.abs(a) > scale * 1e-6)]
            if finite.size and np.allclose(finite, 2.0, rtol=1e-6):
                msg = (f"gradients accumulate across calls: the second call with the same inputs returned "
                       f"2.000 x the first grads[{k!r}] (gradients added to a stored .grad and never "
                       "reset: a forgotten zero_grad?)")
                return Problem("accumulating", msg, k, [int(v) for v in i])
            msg = (f"fn is not deterministic: two calls with identical inputs gave {fmt_index(k, i)} = "
                   f"{a[i]:.9g} and {b[i]:.9g} (beyond rounding). A fresh random mask per call (dropout?), "
                   "state kept between calls, or an unseeded RNG; fix the randomness inside fn to check it")
            return Problem("nondeterministic", msg, k, [int(v) for v in i])
    if abs(l1 - l2) > NONDETERMINISM_ULPS * eps * max(abs(l1), abs(l2)):
        return Problem("nondeterministic", f"fn is not deterministic: two calls with identical inputs gave "
                                           f"loss {l1:.12g} and {l2:.12g} (beyond rounding)")
    return None


# -- the check ------------------------------------------------------------------------------------
#: callables ``observer(result)`` told of every Result that :func:`check` returns (the pytest
#: plugin's ``gradcheck`` marker records checks this way); an observer must not raise
observers: list[Callable[[Result], None]] = []


def _observed(check_fn: Callable[..., Result]) -> Callable[..., Result]:
    @functools.wraps(check_fn)
    def observed_check(*args: Any, **kwargs: Any) -> Result:
        result = check_fn(*args, **kwargs)
        for observe in tuple(observers):
            observe(result)
        return result
    return observed_check


@_observed
def check(fn: Fn, params: Mapping[str, Array], X: Any, y: Any, *, scheme: str = "auto",
          rtol: float | None = None, name: str | None = None, spec: Any = None,
          loss_fn: Callable[[dict, Any, Any], Any] | None = None, mode: str = "full",
          symbolic: bool | None = None, detect_kinks: bool = True, seed: int = 0,
          oracle: str = "numerical") -> Result:
    """Compare ``fn``'s claimed gradient with a numerical (and, given a spec, symbolic) oracle.

    Parameters
    ----------
    fn : callable ``fn(params, X, y) -> (loss, grads)``
        The code under test; ``grads`` must have the keys and shapes of ``params``.
    params : dict of str -> floating numpy array
    X, y : the batch, passed to ``fn`` as given (copies of them); ``X`` must not be None.
    scheme : ``"auto"`` (complex step when fn is analytic in its parameters, else central
        differences), or one of ``forward``, ``central``, ``central4``, ``richardson``, ``complex``.
    rtol : optional relative tolerance that loosens the computed one (never tightens it).
    name : a label for reports.
    spec : a :class:`gradcheck.spec.NetworkSpec` describing fn's network: enables the symbolic
        oracle (three-way comparison) where the network is small enough.
    loss_fn : optional ``loss_fn(params, X, y) -> loss`` computing only the loss (faster finite
        differences); it must agree with fn's loss.
    mode : ``"full"`` (every element) or ``"fast"`` (random directions, then localization).
    symbolic : force the symbolic oracle on (True) or off (False); default: on when ``spec`` given.
    detect_kinks : leave non-differentiable points out of the verdict (default True).
    oracle : ``"numerical"`` (black-box finite differences of fn's loss) or ``"structured"``: the
        same finite differences computed from ``spec``'s network in batched, structure-aware passes
        (much faster for large networks; :mod:`gradcheck.structured`). fn's loss must match the spec's.
    """
    t0 = time.perf_counter()
    _validate_options(fn, params, X, scheme, mode, oracle, spec, rtol, loss_fn)
    spec_dict = spec.to_dict() if spec is not None and hasattr(spec, "to_dict") else None
    dtype = min((str(v.dtype) for v in params.values()), key=lambda s: np.dtype(s).itemsize)
    # the caller's objects, frozen; fn only ever gets copies of these
    frozen = _Frozen(_snapshot(dict(params)), _snapshot(X), _snapshot(y))
    run = _Run(t0, dict(name=name, scheme=scheme, dtype=dtype, spec=spec_dict))
    try:
        loss, claimed = _call_twice(fn, frozen, run)
        loss_of = _loss_for_differences(fn, loss_fn, frozen, loss, run)
        if oracle == "structured":  # the spec's network, evaluated in batched structure-aware passes
            from gradcheck import structured  # noqa: PLC0415 - optional path, imported on use
            try:
                loss_of = structured.oracle_loss(spec, frozen.params, frozen.fresh_X(), frozen.fresh_y(),
                                                 expected=loss)
            except structured.SpecMismatch as exc:
                raise _Stop(Problem("spec_mismatch", str(exc))) from None
            scheme = "central" if scheme == "auto" else scheme
        if mode == "fast":
            from gradcheck import fastmode  # noqa: PLC0415 - optional path, imported on use
            result = fastmode.run(loss_of, frozen.params, claimed, loss=loss, t0=t0, calls=run.calls,
                                  notes=run.notes, rtol=rtol, seed=seed, **run.common)
        else:
            work = _snapshot(frozen.params)
            est, noise = _numerical_estimate(loss_of, work, loss, scheme, seed, run)
            judge = _Judge(loss_of, work, loss, noise, est, run, rtol=rtol, detect_kinks=detect_kinks)
            if not all(judge.first_look(k, p, claimed[k]) for k, p in frozen.params.items()):
                # something fails as it stands: measure the claimed gradient's own rounding before
                # any verdict (ill-conditioned but correct arithmetic is not a bug)
                try:
                    measured = _claimed_noise(fn, frozen, claimed, run, seed)
                    judge.claimed_noise, judge.jumps, judge.limits = measured.sd, measured.jump, measured.limits
                except _Stop as stop:  # fn failed a few ulps away: no measurement; the verdict says why
                    run.notes.append("your gradient's own rounding could not be measured: fn failed a few "
                                     f"ulps from params ({stop.problem.message})")
            for k, p in frozen.params.items():
                judge.tensor(k, p, claimed[k])
            result = judge.result(rtol=rtol)
            if spec is not None and symbolic is not False or symbolic:
                _symbolic(result, spec, frozen.params, frozen.X, frozen.y, claimed, judge)
            if not all(t.passed for t in result.tensors.values()):
                _explain_failure(result, loss_of, work, spec_dict, frozen.X)
    except _Stop as stop:
        result = run.failed(stop.problem)
    result.seconds = time.perf_counter() - t0
    _finish(result, frozen.params, params, frozen.X, X, frozen.y, y)
    return result


# -- the phases of a check --------------------------------------------------------------------------
class _Stop(Exception):
    """A fault of the code under test: the check ends with this problem."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


@dataclass
class _Frozen:
    """Private copies of the caller's params, X and y (never handed to fn) and fresh copies of them."""

    params: dict[str, Array]
    X: Any
    y: Any

    def fresh(self) -> tuple[dict[str, Array], Any, Any]:
        return _snapshot(self.params), self.fresh_X(), self.fresh_y()

    def fresh_X(self) -> Any:
        return _snapshot(self.X)

    def fresh_y(self) -> Any:
        return _snapshot(self.y)


@dataclass
class _Run:
    """What the phases of one check share: the clock, the call count, notes, the result's labels."""

    t0: float
    common: dict[str, Any]
    calls: int = 0
    notes: list[str] = field(default_factory=list)

    def failed(self, problem: Problem) -> Result:
        return _failed(problem, t0=self.t0, calls=self.calls, notes=self.notes, **self.common)


def _validate_options(fn, params, X, scheme, mode, oracle, spec, rtol, loss_fn) -> None:
    """Misuse of the harness raises, naming the argument."""
    if not callable(fn):
        raise TypeError(f"fn must be callable as fn(params, X, y) -> (loss, grads), got {type(fn).__name__}")
    _validate_params(params)
    if X is None:
        raise ValueError("X is None: pass the input batch that fn(params, X, y) expects")
    if scheme not in SCHEME_CHOICES:
        raise ValueError(f"scheme={scheme!r}: expected one of {SCHEME_CHOICES}")
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    if oracle not in ORACLES:
        raise ValueError(f"oracle={oracle!r}: expected one of {ORACLES}")
    if oracle == "structured":
        from gradcheck import structured  # noqa: PLC0415 - optional path, imported on use
        structured.validate(spec, params, scheme)
    if rtol is not None and not (isinstance(rtol, (int, float)) and rtol >= 0):
        raise ValueError(f"rtol={rtol!r}: expected a number >= 0 or None")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(params, X, y) -> loss, got {type(loss_fn).__name__}")


def _call_twice(fn: Fn, frozen: _Frozen, run: _Run) -> tuple[float, dict[str, Array]]:
    """Two calls with identical fresh inputs: validate the output, detect mutation and
    nondeterminism. Returns the first call's ``(loss, grads)``."""
    outputs = []
    for _ in range(2):
        p, Xc, yc = frozen.fresh()
        run.calls += 1
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = fn(p, Xc, yc)
            for w in caught[:3]:
                note = f"fn warned: {w.category.__name__}: {w.message}"
                if note not in run.notes:
                    run.notes.append(note)
            outputs.append(_read_output(out, frozen.params))
        except _Fault as f:
            raise _Stop(f.problem) from None
        except Exception as exc:
            raise _Stop(Problem("raised", f"fn raised {type(exc).__name__}: {exc}")) from None
        changed = _mutated(frozen.params, p, frozen.X, Xc, frozen.y, yc)
        if changed:
            raise _Stop(Problem("mutates_input",
                                f"fn modified {', '.join(changed)} in place; it must leave what it is given "
                                "unchanged (e.g. no `W += ...` weight update inside fn). The caller's arrays "
                                "are untouched: gradcheck only passed it copies",
                                changed[0][8:-2] if changed[0].startswith("params[") else None))
    (loss, claimed), (loss2, claimed2) = outputs
    p_eps = min(eps_of(v.dtype) for v in frozen.params.values())
    g_eps = max(eps_of(g.dtype) for g in claimed.values())
    prob = _nondeterminism(claimed, claimed2, loss, loss2, max(g_eps, p_eps))
    if prob is not None:
        raise _Stop(prob)
    return loss, claimed


def _loss_for_differences(fn: Fn, loss_fn, frozen: _Frozen, loss: float, run: _Run) -> Callable[[dict], Any]:
    """The scalar function finite differences evaluate: fn's loss, or the given loss-only function
    (checked to agree with fn's loss at the base point)."""
    work_X, work_y = frozen.fresh_X(), frozen.fresh_y()
    if loss_fn is None:
        def loss_of(w):
            return fn(w, work_X, work_y)[0]
        return loss_of

    def loss_of(w):
        return loss_fn(w, work_X, work_y)
    run.calls += 1
    try:
        alt = _as_float(loss_of(_snapshot(frozen.params)))
    except Exception as exc:
        raise _Stop(Problem("raised", f"loss_fn raised {type(exc).__name__}: {exc}")) from None
    p_eps = min(eps_of(v.dtype) for v in frozen.params.values())
    if abs(alt - loss) > NONDETERMINISM_ULPS * p_eps * max(abs(loss), abs(alt), 1e-300):
        raise _Stop(Problem("loss_fn_mismatch", f"loss_fn gives {alt:.12g} but fn's loss is {loss:.12g}: "
                                                "they must compute the same function"))
    return loss_of


def _claimed_noise(fn: Fn, frozen: _Frozen, claimed: dict[str, Array], run: _Run,
                   seed: int) -> numerical.ClaimedRounding:
    """Rounding (sd) of each claimed entry, measured by calling fn a few ulps away
    (:func:`gradcheck.numerical.gradient_noise`); fn's faults there end the check as usual."""
    def grad_at(point: dict[str, Array]) -> dict[str, Array]:
        run.calls += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = fn(point, frozen.fresh_X(), frozen.fresh_y())
            return _read_output(out, frozen.params)[1]
        except _Fault as f:
            raise _Stop(f.problem) from None
        except Exception as exc:
            raise _Stop(Problem("raised", f"fn raised {type(exc).__name__}: {exc} (at a point a few ulps "
                                          "from params, while measuring the rounding of its gradient)")) from None

    return numerical.gradient_noise(grad_at, frozen.params, claimed, seed=seed)


def _claimed_eps(c: Array, p: Array) -> float:
    """Precision of a claimed gradient: its dtype's, or the parameter's when that is coarser
    (a float64 gradient of float32 parameters carries float32 rounding)."""
    return eps_of(c.dtype) if c.dtype.itemsize <= p.dtype.itemsize else eps_of(p.dtype)


def term_scale(loss: float, params: Mapping[str, Array]) -> float:
    """``T`` of the tolerance model: the loss's magnitude per unit of parameter, the size of the
    terms a gradient entry is made of when they cancel to (nearly) zero."""
    total = sum(float(np.sum(np.square(v, dtype=np.float64))) for v in params.values())
    count = sum(v.size for v in params.values())
    rms = math.sqrt(total / count) if count else 0.0
    return abs(loss) / max(1.0, rms) if math.isfinite(loss) else 0.0


def _numerical_estimate(loss_of, work: dict[str, Array], loss: float, scheme: str, seed: int,
                        run: _Run) -> tuple[numerical.Estimate, float]:
    """Noise level, the scheme (complex step where fn is analytic, for ``auto``), the estimate."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            noise, n = numerical.noise_level(loss_of, work, loss, seed=seed)
            run.calls += n
            used = scheme
            if scheme in ("auto", "complex"):
                ok, why, n = _complex_ok(loss_of, work, loss, noise, seed)
                run.calls += n
                # central, not central4, even for float32: its smaller step crosses fewer kinks
                used = "complex" if ok else "central"
                if not ok and scheme == "complex":
                    run.notes.append(f"complex step not usable ({why}); used central differences")
            est = numerical.estimate(loss_of, work, scheme=used, noise=noise, f0=loss)
            run.calls += est.calls
    except FunctionFault as f:
        raise _Stop(Problem("raised", str(f), f.param, list(f.index) if f.index else None)) from None
    run.common["scheme"] = used
    return est, noise


class _Judge:
    """Compares each tensor's claimed gradient with the estimate, then takes a second look at the
    elements that still fail: a ladder of steps h, h/2, h/4, ... (truncation, Richardson, kinks of
    this element or of other units crossed by the step; :func:`gradcheck.numerical.refine_element`)."""

    def __init__(self, loss_of, work, loss, noise, est, run: _Run, *, rtol, detect_kinks,
                 claimed_noise: Mapping[str, Array] | None = None):
        self.loss_of, self.work, self.loss, self.noise, self.est, self.run = loss_of, work, loss, noise, est, run
        self.rtol, self.detect_kinks = rtol, detect_kinks
        self.claimed_noise = claimed_noise or {}
        #: where fn's gradient jumps at x itself (a convention at an exact kink of its code path)
        self.jumps: dict[str, Array] = {}
        #: per probe line, fn's gradient extrapolated to x from that side
        self.limits: list[dict[str, Array]] = []
        self.used = run.common["scheme"]
        with np.errstate(all="ignore"):
            self.global_scale = max(float(np.max(np.abs(g))) for g in est.grad.values())
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

    def first_look(self, k: str, p: Array, c: Array) -> bool:
        """Does every element of tensor ``k`` pass against the estimate as it stands?"""
        d = self.est.grad[k].astype(np.float64)
        if not np.all(np.isfinite(d)):
            return False
        cmp = compare(c, d, self.est.error[k], claimed_eps=_claimed_eps(c, p), rtol=self.rtol,
                      global_scale=self.global_scale, term_scale=self.term_scale)
        return bool(cmp.passed.all())

    def tensor(self, k: str, p: Array, c: Array) -> None:
        est, run = self.est, self.run
        c_eps = _claimed_eps(c, p)
        d = est.grad[k].astype(np.float64).copy()
        e = est.error[k].astype(np.float64).copy()
        h = est.step[k].astype(np.float64).copy()
        cn = self.claimed_noise.get(k)
        kink = np.zeros(p.shape, bool)
        jumped = np.zeros(p.shape, bool)  # kinks found by fn's gradient jumping at x
        unsettled = np.zeros(p.shape, bool)
        refined = np.zeros(p.shape, bool)
        by_central = np.zeros(p.shape, bool)  # complex step overruled by central differences
        nonfinite = ~np.isfinite(d)
        if nonfinite.any():
            i = tuple(int(v) for v in np.argwhere(nonfinite)[0])
            raise _Stop(Problem("numerical_non_finite",
                                f"the loss became non-finite when {fmt_index(k, i)} was perturbed by "
                                f"{float(h[i]):.3g}: fn overflows or divides by zero next to these parameters",
                                k, list(i)))

        def judge():
            return compare(c, d, e, claimed_eps=c_eps, rtol=self.rtol, global_scale=self.global_scale,
                           claimed_noise=cn, term_scale=self.term_scale)

        cmp = judge()
        bad = np.flatnonzero(~cmp.passed.reshape(-1))
        if bad.size:
            todo = bad[: max(0, MAX_REFINE - self.refined_total)]
            if todo.size < bad.size:
                run.notes.append(f"{k}: {bad.size - todo.size} failing elements not re-examined (limit {MAX_REFINE})")
            jumps = self.jumps.get(k)
            for flat_i in todo:
                i = np.unravel_index(flat_i, p.shape)
                e_first = float(e[i])
                ref = self._second_look(k, p, int(flat_i))
                refined[i] = True
                self.refined_total += 1
                if ref.status == "unsettled" and self.used == "complex":
                    pass  # central differences could not settle: the complex step's value stands
                elif ref.status != "smooth":
                    if self.detect_kinks:  # no single derivative within the step: left out, listed
                        (kink if ref.status == "kink" else unsettled)[i] = True
                        h[i] = ref.step
                elif self.used == "complex":
                    # trust the complex step only where central differences agree with it
                    if abs(d[i] - ref.value) > SAFETY * ref.error + ANALYTIC_ULPS * c_eps * abs(ref.value):
                        self.complex_distrusted += 1
                        d[i], e[i], h[i] = ref.value, ref.error, ref.step
                        by_central[i] = True
                elif self.used == "central4":
                    d[i], e[i], h[i] = self._fourth_order(k, p, int(flat_i), float(d[i]), float(est.step[k][i]), ref)
                else:
                    d[i], e[i], h[i] = ref.value, ref.error, ref.step
                if (self.detect_kinks and ref.status == "smooth" and jumps is not None and jumps[i]
                        and self._agrees_from_one_side(k, i, float(d[i]),
                                                       float(cmp.tol_abs[i]) + SAFETY * (float(e[i]) - e_first))):
                    # fn's own gradient jumps exactly at x, and from one side it agrees with the
                    # loss's derivative: its value at x is a convention on a path through an exact
                    # kink (the loss may be smooth there); left out like a kink. A wrong gradient
                    # agrees from no side, so noise that looks like a jump excuses no bug.
                    kink[i] = jumped[i] = True
            cmp = judge()
        left_out = kink | unsettled
        judged = ~left_out
        failed = judged & ~cmp.passed
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
                           note=note or ("central" if by_central[ix] else "refined" if refined[ix] else ""),
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

    def _agrees_from_one_side(self, k: str, i: tuple, value: float, tol_abs: float) -> bool:
        """Does fn's gradient, extrapolated to x along some probe line, match ``value`` (the
        loss's derivative) within ``tol_abs``?"""
        return any(abs(float(lim[k][i]) - value) <= tol_abs for lim in self.limits if k in lim)

    def _second_look(self, k: str, p: Array, flat_i: int) -> numerical.Refinement:
        """The element on a ladder of central steps (every scheme: central Richardson needs only
        third-order smoothness, and its steps are small enough to step over other units' kinks)."""
        eps = numerical.effective_eps(p.dtype, self.noise, self.loss)
        x = np.array([p.reshape(-1)[flat_i]])
        try:
            ref = numerical.refine_element(self.loss_of, self.work, k, flat_i,
                                           float(numerical.steps(x, "central", eps)[0]), self.loss, self.noise)
        except FunctionFault as f:
            raise _Stop(Problem("raised", str(f), f.param, list(f.index) if f.index else None)) from None
        self.run.calls += ref.calls
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
            raise _Stop(Problem("raised", f"fn raised {type(exc).__name__}: {exc} (while "
                                          f"{fmt_index(k, where)} was perturbed)", k, [int(v) for v in where])) from None
        finally:
            flat[flat_i] = x
        self.run.calls += 4
        f2, f1, m1, m2 = values
        d4 = (-f2 + 8 * f1 - 8 * m1 + m2) / (12 * half)
        # whatever of its distance from the ladder's estimate that one's bound does not explain
        # joins the bound too (a loss whose second derivative jumps, huber, bends a large stencil)
        gap = abs(d4 - ref.value)
        e4 = numerical.NOISE_GAIN["central4"] * self.noise / half + abs(first - d4) + max(0.0, gap - ref.error)
        if gap <= SAFETY * ref.error:
            return d4, e4, half
        return ref.value, ref.error, ref.step

    def result(self, *, rtol) -> Result:
        if self.complex_distrusted:
            self.run.notes.append(f"complex step disagreed with central differences at {self.complex_distrusted} "
                                  "element(s) (non-analytic code, e.g. abs/max/comparisons): central differences "
                                  "decided there")
        run = self.run
        if self.claimed_noise:
            run.notes.append("your gradient's own rounding was measured (some element failed the first "
                             f"comparison): {int(MODEL.claimed_probe_directions * MODEL.claimed_probe_points)} "
                             "calls of fn a few ulps from params")
        r = _assemble(self.tensors, self.failures, self.kinks, used=self.used, rtol=rtol, notes=run.notes,
                      calls=run.calls, noise=self.noise, loss=self.loss, t0=run.t0, common=run.common,
                      scale=max(self.global_scale, self.term_scale))
        r.closest = self.closest
        return r


def _assemble(tensors, failures, kinks, *, used, rtol, notes, calls, noise, loss, t0, common,
              scale=0.0) -> Result:
    failures.sort(key=lambda e: -e.rel_error)
    # the worst tensor: the failing one with the largest error (a passing tensor may show a larger
    # relative error where its tolerance is loose, e.g. tiny float32 entries); else the largest
    worst_t = max(tensors.values(), key=lambda t: (not t.passed, t.max_rel_error))
    passed = all(t.passed for t in tensors.values())
    if failures:
        w = failures[0]
    elif worst_t.worst_index is not None:
        ix = tuple(worst_t.worst_index)
        w = Element(worst_t.name, list(ix), float(worst_t.claimed[ix]), float(worst_t.numerical[ix]),
                    float(worst_t.rel[ix]), worst_t.tolerance, float(worst_t.error[ix]), worst_t.step,
                    resolved=worst_t.max_rel_error > 0)
    else:
        w = None
    common = {**common, "scheme": used}
    r = Result(passed=passed, max_rel_error=max(t.max_rel_error for t in tensors.values()),
               worst_param=w.param if w else worst_t.name, tolerance=w.tolerance if w else math.nan,
               rtol=rtol, tensors=tensors, worst=w, failures=failures[:MAX_LISTED], kinks=kinks[:MAX_LISTED],
               calls=calls, noise=noise, loss=loss, notes=notes, scale=scale,
               margin=max(t.margin for t in tensors.values()),
               normwise=max(t.normwise for t in tensors.values()),
               n_below_resolution=sum(t.n_below_resolution for t in tensors.values()),
               oracles={"analytic_vs_numerical": max(t.max_rel_error for t in tensors.values())},
               seconds=time.perf_counter() - t0, **common)
    return r


def _complex_ok(loss_of, work, f0, noise, seed) -> tuple[bool, str, int]:
    """Does fn evaluate with complex parameters and give the analytic derivative?

    One complex call along a random direction, compared with a central difference along the same
    direction. Non-analytic code (abs, max, comparisons, casts to float) fails this test or the
    later per-element cross-check; either way central differences decide.
    """
    rng = np.random.default_rng(seed + 1)
    direction = {k: rng.standard_normal(v.shape) for k, v in work.items()}
    cw = {k: v.astype(np.complex128) for k, v in work.items()}
    h = 1e-20
    for k in cw:
        cw[k] += 1j * h * direction[k]
    try:
        with np.errstate(all="ignore"):
            val = np.asarray(loss_of(cw))
    except Exception as exc:
        return False, f"fn raised {type(exc).__name__} on complex input", 1
    if val.dtype.kind != "c" or val.size != 1:
        return False, "fn returned a real loss for complex input", 1
    dc = float(val.imag.reshape(())) / h
    hc = numerical.effective_eps(next(iter(work.values())).dtype, noise, f0) ** (1 / 3)
    try:
        d1 = numerical.directional(loss_of, work, direction, hc)
        d2 = numerical.directional(loss_of, work, direction, hc / 2)
    except Exception as exc:
        return False, f"fn raised {type(exc).__name__}", 5
    dr = (4 * d2 - d1) / 3
    # Richardson's error bound: rounding (3 x 0.7 noise / h) plus the truncation seen between steps
    tol = 10 * (2.1 * noise / hc + abs(d1 - d2) / 3) + 1e-9 * abs(dr)
    if not math.isfinite(dc) or abs(dc - dr) > tol:
        return False, "complex-step and central directional derivatives disagree (non-analytic code)", 5
    return True, "", 5


def _symbolic(result: Result, spec, params, X, y, claimed, judge: _Judge | None) -> None:
    """Add the SymPy oracle: analytic vs symbolic and numerical vs symbolic errors, then the
    cross-check of the two oracles (:func:`_oracle_disagreement`)."""
    tensors = result.tensors
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

    disagreement = _oracle_disagreement(result, judge, params, symbolic_at)
    a_vs_s, n_vs_s = 0.0, 0.0
    for k, t in tensors.items():
        judged = ~np.asarray(t.kink, bool) if t.kink is not None else np.ones(t.symbolic.shape, bool)
        # like the headline: only entries the numerical estimate resolves (|symbolic| clearly above
        # the bound the cross-check allows); the rest were judged on absolute agreement
        with np.errstate(all="ignore"):
            allowed = MODEL.safety * np.asarray(t.error, dtype=np.float64) + MODEL.oracle_ulps * eps_of(
                np.float64) * (np.abs(t.symbolic) + result.scale)
        judged = judged & (allowed <= np.abs(t.symbolic) * eps_of(np.float64) ** MODEL.resolved_power)
        eps = eps_of(t.dtype)
        t.symbolic_max_rel_error = pair_error(claimed[k], t.symbolic, eps=eps, error=t.error, scale=result.scale,
                                              where=judged)
        a_vs_s = max(a_vs_s, t.symbolic_max_rel_error)
        n_vs_s = max(n_vs_s, pair_error(t.numerical, t.symbolic, eps=eps, error=t.error, scale=result.scale,
                                        where=judged))
    result.oracles["analytic_vs_symbolic"] = a_vs_s
    result.oracles["numerical_vs_symbolic"] = n_vs_s
    for e in [result.worst, *result.failures, *result.kinks]:
        if e is not None and tensors[e.param].symbolic is not None:
            e.symbolic = float(tensors[e.param].symbolic[tuple(e.index)])
    if disagreement is not None:
        result.passed = False
        result.problems.append(disagreement)


def _leave_out(result: Result, t: TensorReport, i: tuple, numerical_value: float, error: float,
               step: float) -> None:
    """No single derivative at this element: not the oracles' quarrel; listed as a kink."""
    t.kink[i] = True
    t.n_kinks += 1
    result.kinks.append(Element(t.name, [int(v) for v in i], float(t.claimed[i]), numerical_value, 0.0,
                                math.nan, error, step, note="kink"))


def _oracle_disagreement(result: Result, judge: _Judge | None, params: Mapping[str, Array],
                         symbolic_at: Callable[[str, int, float], float] | None = None) -> Problem | None:
    """The oracles cross-check each other: numerical vs symbolic beyond the numerical estimate's
    bound (``safety x E``) plus ``oracle_ulps`` of float64 (the symbolic evaluation's own rounding),
    on every element with a derivative. An element beyond that first gets the second look (the
    step ladder): a kink there (SymPy picks one branch, e.g. Heaviside(0) = 1/2) is left out and
    listed like any kink; a settled estimate is compared again. Where the symbolic value at x is
    a branch convention (a pre-activation exactly on a kink whose effect the loss does not feel,
    e.g. a chain of dead ReLUs), the symbolic gradient 64 ulps to either side tells: if
    those two differ, or both agree with the numerical estimate, x sits on a branch point of the
    expression and the element is left out as a kink. A wrong oracle inside a passing run
    is the worst outcome, so what remains fails the check, naming the pair and the element."""
    worst: tuple[float, str, tuple, float, float, float] | None = None
    for k, t in result.tensors.items():
        if t.symbolic is None or t.numerical is None or t.error is None:
            continue
        s, d = t.symbolic, np.array(t.numerical, dtype=np.float64)  # a copy: refined values stay here
        left_out = np.asarray(t.kink, bool) if t.kink is not None else np.zeros(d.shape, bool)
        e = np.asarray(t.error, dtype=np.float64)
        t.kink = left_out
        with np.errstate(all="ignore"):
            bound = MODEL.safety * e + MODEL.oracle_ulps * eps_of(np.float64) * (np.abs(s) + result.scale)
            excess = np.where(left_out, 0.0, np.abs(d - s) / bound)
        excess = np.where(np.isnan(excess), np.inf, excess)
        for flat_i in np.flatnonzero(excess.reshape(-1) > 1)[:MAX_REFINE]:
            i = np.unravel_index(int(flat_i), d.shape)
            if judge is None:
                continue
            ref = judge._second_look(k, params[k], int(flat_i))
            if ref.status != "smooth":
                _leave_out(result, t, i, float(d[i]), float(e[i]), ref.step)
                excess[i] = 0.0
                continue
            b_i = MODEL.safety * ref.error + MODEL.oracle_ulps * eps_of(np.float64) * (abs(s[i]) + result.scale)
            excess[i] = abs(ref.value - s[i]) / b_i if b_i > 0 else math.inf
            d[i], bound[i] = ref.value, b_i
            if excess[i] > 1 and symbolic_at is not None:
                try:
                    # a few ulps to either side: the branch is decided there, the smooth change is not seen
                    delta = 64 * eps_of(np.float64) * max(1.0, abs(float(params[k].reshape(-1)[flat_i])))
                    above, below = (symbolic_at(k, int(flat_i), sign * delta) for sign in (1.0, -1.0))
                except Exception:  # the oracle could not evaluate there: keep the disagreement
                    continue
                branch = abs(above - below) > b_i or (abs(above - ref.value) <= b_i and abs(below - ref.value) <= b_i)
                if branch:
                    _leave_out(result, t, i, float(d[i]), float(e[i]), ref.step)
                    excess[i] = 0.0
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


def _explain_failure(result: Result, loss_of, work, spec_dict, X=None) -> None:
    """Diagnosis and step-size curve for a failing result."""
    try:
        from gradcheck import diagnose  # noqa: PLC0415
        result.diagnosis = diagnose.diagnose(result, spec=spec_dict, params=work, X=X)
    except Exception as exc:  # a diagnosis is advice: never let it break the verdict
        result.notes.append(f"diagnosis unavailable ({type(exc).__name__}: {exc})")
    w = result.worst
    if w is not None and w.param in work:
        flat_i = int(np.ravel_multi_index(tuple(w.index), work[w.param].shape))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            curve = numerical.step_curve(loss_of, work, w.param, flat_i)
        floor = result.tensors[w.param].floor
        result.step_curve = [[h, abs(w.claimed - dh) / max(abs(dh), floor)] for h, dh in curve]
        result.calls += 2 * len(curve)


def _finish(result: Result, frozen_p, params, frozen_X, X, frozen_y, y) -> None:
    """Verify the caller's objects are bit-for-bit what they were (they were never handed out)."""
    changed = _mutated(frozen_p, dict(params), frozen_X, X, frozen_y, y)
    if changed:  # only another thread could do this; say so rather than hide it
        result.passed = False
        result.problems.append(Problem("mutates_input", f"{', '.join(changed)} changed during the check "
                                                        "(modified from outside gradcheck?)"))


def assert_gradients(fn: Fn, params: Mapping[str, Array], X: Any, y: Any, **options: Any) -> None:
    """``check(...)``; raise ``AssertionError(str(result))`` unless it passed."""
    result = check(fn, params, X, y, **options)
    if not result.passed:
        raise AssertionError(str(result))
