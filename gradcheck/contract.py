"""The contract with the function under test: how it is called, what it must return, its faults.

``fn(params, X, y) -> (loss, grads)`` only ever sees private copies of the caller's objects
(:class:`Frozen`), so they stay bit-for-bit unchanged whatever it does. Everything fn can do wrong
(raise, return the wrong structure, shapes, keys or dtypes, NaN, mutate its inputs, differ between
two identical calls) becomes a :class:`Fault` carrying a :class:`~gradcheck.result.Problem`: the
check ends with ``passed=False`` and that explanation. Only the calls into user code are wrapped:
an exception anywhere else is a harness bug and propagates with its traceback.
"""
from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcheck.compare import eps_of
from gradcheck.numerical import FunctionFault, _as_float
from gradcheck.result import Problem, fmt_index
from gradcheck.tolerance import MODEL

Array = np.ndarray
Fn = Callable[[dict, Any, Any], Any]
LossFn = Callable[[dict, Any, Any], Any]


class Fault(Exception):
    """A fault of the code under test: the check ends with this problem."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem

    @classmethod
    def from_function_fault(cls, fault: FunctionFault) -> Fault:
        """The numerical oracle's report of fn failing at a perturbed point, as a problem."""
        return cls(Problem("raised", str(fault), fault.param, list(fault.index) if fault.index else None))


@dataclass
class Tally:
    """What one check counts as it goes: calls of fn (or loss_fn) and notes for the result."""

    calls: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


# -- private copies --------------------------------------------------------------------------------
def snapshot(obj: Any) -> Any:
    """A deep, independent copy (arrays copied with their dtype and layout)."""
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, Mapping):
        return {k: snapshot(v) for k, v in obj.items()}
    return copy.deepcopy(obj)


def same(a: Any, b: Any) -> bool:
    """Bit-for-bit equality (dtype, shape, bytes; dict keys)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return (isinstance(a, Mapping) and isinstance(b, Mapping) and list(a) == list(b)
                and all(same(a[k], b[k]) for k in a))
    try:
        return bool(a == b)
    except Exception:  # objects without a usable ==: compare their reprs
        return repr(a) == repr(b)


@dataclass(frozen=True)
class Change:
    """One input found modified: its label (``params['W1']``, ``X``) and the parameter, if any."""

    label: str
    param: str | None = None


def mutated(before: Mapping[str, Array], given: Mapping[str, Any], X0: Any, X: Any,
            y0: Any, y: Any) -> list[Change]:
    """What differs between the frozen inputs and what fn (or someone) was given."""
    what = []
    if list(given) != list(before):
        what.append(Change("params (keys added or removed)"))
    for k in before:
        if k in given and not same(before[k], given[k]):
            what.append(Change(f"params[{k!r}]", k))
    if not same(X0, X):
        what.append(Change("X"))
    if not same(y0, y):
        what.append(Change("y"))
    return what


@dataclass(frozen=True)
class Frozen:
    """Private copies of the caller's params, X and y (never handed to fn) and fresh copies of them."""

    params: dict[str, Array]
    X: Any
    y: Any

    @classmethod
    def of(cls, params: Mapping[str, Array], X: Any, y: Any) -> Frozen:
        return cls(snapshot(dict(params)), snapshot(X), snapshot(y))

    def fresh(self) -> tuple[dict[str, Array], Any, Any]:
        return snapshot(self.params), self.fresh_X(), self.fresh_y()

    def fresh_X(self) -> Any:
        return snapshot(self.X)

    def fresh_y(self) -> Any:
        return snapshot(self.y)

    def changes(self, params: Mapping[str, Any], X: Any, y: Any) -> list[Change]:
        """How the given objects differ from these copies."""
        return mutated(self.params, params, self.X, X, self.y, y)

    @property
    def eps(self) -> float:
        """The finest machine epsilon among the parameters."""
        return min(eps_of(v.dtype) for v in self.params.values())


# -- reading what fn returned ---------------------------------------------------------------------
def read_output(out: Any, params: Mapping[str, Array]) -> tuple[float, dict[str, Array]]:
    """Validate ``(loss, grads)``; raise :class:`Fault` naming what is wrong. Reading touches only
    fn's objects (their ``len``, ``__getitem__``, ``__array__``): whatever they raise is fn's fault."""
    try:
        return _read_output(out, params)
    except Fault:
        raise
    except Exception as exc:
        raise Fault(Problem("bad_return", f"fn's output could not be read: {type(exc).__name__}: {exc}")) from None


def _read_output(out: Any, params: Mapping[str, Array]) -> tuple[float, dict[str, Array]]:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        length = f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""
        raise Fault(Problem("bad_return", f"fn must return (loss, grads); it returned {type(out).__name__}{length}"))
    loss, grads = out
    try:
        a = np.asarray(loss)
    except Exception as exc:
        raise Fault(Problem("bad_loss", f"the loss ({type(loss).__name__}) is not a number: {exc}")) from None
    if a.dtype.kind not in "fiuc":
        raise Fault(Problem("bad_loss", f"the loss must be a number, got {type(loss).__name__} of dtype {a.dtype}"))
    if a.size != 1:
        raise Fault(Problem("non_scalar_loss",
                            f"the loss has shape {a.shape}, not a scalar: a per-sample vector? Return its "
                            "mean or sum (gradcheck never reduces it for you, the gradient depends on which)"))
    value = float(a.real.reshape(()))
    if not math.isfinite(value):
        raise Fault(Problem("non_finite_loss", f"the loss is {value}"))
    if not isinstance(grads, Mapping):
        raise Fault(Problem("bad_grads", f"grads must be a dict with the keys of params, got {type(grads).__name__}"))
    missing = [k for k in params if k not in grads]
    extra = [k for k in grads if k not in params]
    if missing:
        raise Fault(Problem("missing_key", f"grads lacks {', '.join(map(repr, missing))} "
                                           f"(params has {', '.join(map(repr, params))})", missing[0]))
    if extra:
        raise Fault(Problem("extra_key", f"grads has key(s) {', '.join(map(repr, extra))} that params does not have",
                            str(extra[0])))
    out_grads = {}
    for k, p in params.items():
        try:
            g = np.asarray(grads[k])
        except Exception as exc:
            raise Fault(Problem("bad_grads", f"grads[{k!r}] ({type(grads[k]).__name__}) cannot be read as "
                                             f"an array: {exc}", k)) from None
        if g.dtype.kind not in "f":
            raise Fault(Problem("dtype", f"grads[{k!r}] has dtype {g.dtype}; expected a floating dtype "
                                         f"like params[{k!r}] ({p.dtype})", k))
        if g.shape != p.shape:
            hint = ""
            if g.shape == p.shape[::-1] and len(p.shape) == 2:
                hint = " (transposed?)"
            elif g.size == p.size:
                hint = " (same size, different shape: reshape it)"
            raise Fault(Problem("shape", f"grads[{k!r}] has shape {g.shape}, expected {p.shape} "
                                         f"(the shape of params[{k!r}]){hint}", k))
        if not np.isfinite(g).all():
            bad = ~np.isfinite(g)
            where = np.argwhere(bad)[0]
            raise Fault(Problem("non_finite_grad", f"grads[{k!r}] is {g[tuple(where)]} at "
                                                   f"{fmt_index(k, where)} ({int(bad.sum())} non-finite element(s))",
                                k, [int(i) for i in where]))
        out_grads[k] = np.array(g, copy=True)
    return value, out_grads


def nondeterminism(g1: dict[str, Array], g2: dict[str, Array], l1: float, l2: float,
                   eps: float) -> Problem | None:
    """Two calls with identical inputs: differences beyond rounding are a fault of fn."""
    ulps = MODEL.nondeterminism_ulps
    if not _all_within(g1, g2, ulps * eps):
        problem = _gradient_difference(g1, g2, ulps, eps)
        if problem is not None:
            return problem
    if abs(l1 - l2) > ulps * eps * max(abs(l1), abs(l2)):
        return Problem("nondeterministic", f"fn is not deterministic: two calls with identical inputs gave "
                                           f"loss {l1:.12g} and {l2:.12g} (beyond rounding)")
    return None


def _all_within(g1: dict[str, Array], g2: dict[str, Array], ulps_eps: float) -> bool:
    """Is every element of every tensor within ``ulps_eps * (|a| + the tensor's max |a|)`` of the
    other call's? One pass over all tensors concatenated (the same comparisons as
    :func:`_gradient_difference` makes tensor by tensor); False also when it cannot tell (then
    the tensors are looked at one by one)."""
    sizes = [int(g1[k].size) for k in g1]
    if not sizes or min(sizes) == 0 or any(g2[k].size != g1[k].size for k in g1):
        return False
    a = np.concatenate([np.ravel(g1[k]) for k in g1], dtype=np.float64)
    b = np.concatenate([np.ravel(g2[k]) for k in g1], dtype=np.float64)
    absa = np.abs(a)
    scale = np.repeat(np.maximum.reduceat(absa, np.cumsum([0] + sizes[:-1])), sizes)
    return not bool(np.any(np.abs(a - b) > ulps_eps * (absa + scale)))


def _gradient_difference(g1: dict[str, Array], g2: dict[str, Array], ulps: float, eps: float) -> Problem | None:
    """The first tensor whose two calls differ beyond rounding, as a problem."""
    for k in g1:
        # in place where it can be (no copy of float64 gradients): two temporaries per tensor at most
        a, b = g1[k].astype(np.float64, copy=False), g2[k].astype(np.float64, copy=False)
        limit = np.abs(a, out=np.empty_like(a))          # (out=: arrays even for 0-d gradients)
        scale = float(np.max(limit)) if a.size else 0.0
        diff = np.subtract(a, b, out=np.empty_like(a))
        np.abs(diff, out=diff)
        limit += scale
        limit *= ulps * eps
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
    return None


# -- the calls ---------------------------------------------------------------------------------------
def call_twice(fn: Fn, frozen: Frozen, tally: Tally) -> tuple[float, dict[str, Array]]:
    """Two calls with identical fresh inputs: validate the output, detect mutation and
    nondeterminism. Returns the first call's ``(loss, grads)``."""
    outputs = []
    for _ in range(2):
        p, Xc, yc = frozen.fresh()
        tally.calls += 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                out = fn(p, Xc, yc)
            except Exception as exc:
                raise Fault(Problem("raised", f"fn raised {type(exc).__name__}: {exc}")) from None
        for w in caught[:3]:
            tally.note(f"fn warned: {w.category.__name__}: {w.message}")
        outputs.append(read_output(out, frozen.params))
        changed = frozen.changes(p, Xc, yc)
        if changed:
            raise Fault(Problem("mutates_input",
                                f"fn modified {', '.join(c.label for c in changed)} in place; it must leave "
                                "what it is given unchanged (e.g. no `W += ...` weight update inside fn). "
                                "The caller's arrays are untouched: gradcheck only passed it copies",
                                changed[0].param))
    (loss, claimed), (loss2, claimed2) = outputs
    g_eps = max(eps_of(g.dtype) for g in claimed.values())
    problem = nondeterminism(claimed, claimed2, loss, loss2, max(g_eps, frozen.eps))
    if problem is not None:
        raise Fault(problem)
    return loss, claimed


def loss_for_differences(fn: Fn, loss_fn: LossFn | None, frozen: Frozen, loss: float,
                         tally: Tally) -> Callable[[dict], Any]:
    """The scalar function finite differences evaluate: fn's loss, or the given loss-only function
    (checked to agree with fn's loss at the base point)."""
    work_X, work_y = frozen.fresh_X(), frozen.fresh_y()
    if loss_fn is None:
        def loss_of(w: dict) -> Any:
            return fn(w, work_X, work_y)[0]
        return loss_of

    def loss_only(w: dict) -> Any:
        return loss_fn(w, work_X, work_y)
    for hook in ("noise_level", "probe_direction"):  # a structured loss's own probes (JVP checks):
        if hasattr(loss_fn, hook):                   # numerical.noise_level, estimating.complex_ok
            setattr(loss_only, hook, getattr(loss_fn, hook))
    tally.calls += 1
    try:
        value = loss_only(snapshot(frozen.params))
    except Exception as exc:
        raise Fault(Problem("raised", f"loss_fn raised {type(exc).__name__}: {exc}")) from None
    try:
        alt = _as_float(value)
    except FunctionFault as exc:
        raise Fault(Problem("raised", f"loss_fn returned no scalar: {exc}")) from None
    if abs(alt - loss) > MODEL.nondeterminism_ulps * frozen.eps * max(abs(loss), abs(alt), 1e-300):
        raise Fault(Problem("loss_fn_mismatch", f"loss_fn gives {alt:.12g} but fn's loss is {loss:.12g}: "
                                                "they must compute the same function"))
    return loss_only


def gradient_at(fn: Fn, frozen: Frozen, tally: Tally) -> Callable[[dict[str, Array]], dict[str, Array]]:
    """fn's gradient at another point (a few ulps from params: the rounding probe), faults as usual."""
    def grad_at(point: dict[str, Array]) -> dict[str, Array]:
        tally.calls += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = fn(point, frozen.fresh_X(), frozen.fresh_y())
            except Exception as exc:
                raise Fault(Problem("raised", f"fn raised {type(exc).__name__}: {exc} (at a point a few ulps "
                                              "from params, while measuring the rounding of its gradient)")) from None
        return read_output(out, frozen.params)[1]
    if hasattr(fn, "gradient_noise"):  # measures its own rounding (numerical.gradient_noise)
        grad_at.gradient_noise = fn.gradient_noise  # type: ignore[attr-defined]
    return grad_at
