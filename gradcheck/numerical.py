"""Finite-difference gradients of a black-box scalar function, with an error bound per element.

Schemes (``h`` per element, from the working precision ``eps`` and the element's magnitude,
rounded to a power of two so that ``x +- h`` is exact):

=============  ==============================================  =====================  ==========
scheme         estimate                                        step h                 calls
=============  ==============================================  =====================  ==========
``forward``    (f(x+h) - f(x)) / h                             eps^(1/2) max(1,|x|)   P
``central``    (f(x+h) - f(x-h)) / 2h                          eps^(1/3) max(1,|x|)   2P
``central4``   (-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)) / 12h  eps^(1/5) max(1,|x|)   4P
``richardson`` (4 D(h/2) - D(h)) / 3 from two central steps    eps^(1/3) max(1,|x|)   4P
``complex``    Im f(x + ih) / h  (fn must accept complex)       1e-20 max(1,|x|)       P
=============  ==============================================  =====================  ==========

``eps`` is the *effective* precision of the function: the larger of the parameters' machine
epsilon and the relative rounding noise of ``f`` measured by :func:`noise_level` (float32 code
behind float64 parameters is noisier than float64 arithmetic, and its optimal step is larger).

The error bound of each element is rounding (noise sigma / h times the scheme's noise gain) plus
truncation where it has been estimated (two step sizes: ``|D(h) - D(h/2)|``). :func:`refine_element`
re-evaluates a chosen element on a ladder of steps ``h, h/2, h/4, ...`` to estimate truncation,
extrapolate (Richardson), step over kinks of other units that a large step crosses, and tell a
non-differentiable point (one-sided differences that disagree and do not shrink with ``h``) from a
smooth one. :func:`gradient_noise` measures the rounding of a *claimed* gradient the same way the
loss's noise is measured. Perturbations are made in place on private copies and undone after each element.
"""
from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcheck.tolerance import MODEL

Array = np.ndarray
LossFn = Callable[[dict], Any]

SCHEMES = ("forward", "central", "central4", "richardson", "complex")
#: exponent of eps in the step rule, per scheme (the error-balancing choice for each order)
STEP_POWER = {"forward": 1 / 2, "central": 1 / 3, "central4": 1 / 5, "richardson": 1 / 3}
#: rounding noise gain: sd of the estimate's rounding error in units of (noise sd / h)
NOISE_GAIN = {"forward": math.sqrt(2), "central": math.sqrt(2) / 2,
              "central4": math.sqrt(130) / 12, "richardson": math.sqrt(2) * 3 / 2}
#: the offsets (in units of h) each scheme evaluates f at
OFFSETS = {"forward": (1.0,), "central": (1.0, -1.0), "central4": (2.0, 1.0, -1.0, -2.0),
           "richardson": (1.0, -1.0, 0.5, -0.5)}


class FunctionFault(Exception):
    """The function under test failed while being evaluated (raised, or gave a non-finite value)."""

    def __init__(self, message: str, param: str | None = None, index: tuple | None = None):
        super().__init__(message)
        self.param, self.index = param, index


@dataclass
class Estimate:
    """Numerical gradient: per tensor the estimate, its absolute error bound and the step used;
    ``calls`` counts evaluations of f. Kinks and second looks are the judge's business
    (:func:`refine_element`, :mod:`gradcheck.judging`), not recorded here."""

    grad: dict[str, Array]
    error: dict[str, Array]
    step: dict[str, Array]
    scheme: str
    noise: float
    f0: float
    calls: int = 0


_FLOAT_TYPES = (float, np.float64, np.float32, np.float16)


def _as_float(value: Any) -> float:
    """A scalar loss as a Python float (0-d or size-1 arrays, numpy scalars, anything with __float__)."""
    if type(value) in _FLOAT_TYPES:  # the usual case, directly
        return float(value)
    a = np.asarray(value)
    if a.size != 1:
        raise FunctionFault(f"the loss has shape {a.shape}; expected a scalar")
    if a.dtype.kind == "c":
        return float(a.real.reshape(()))
    return float(a.reshape(()))


@functools.lru_cache(maxsize=64)  # keyed by dtype: a handful of entries at most
def _eps_of_dtype(dt: np.dtype) -> float:
    return float(np.finfo(dt).eps) if dt.kind in "fc" else float(np.finfo(np.float64).eps)


def machine_eps(dtype: Any) -> float:
    """Machine epsilon of a floating (or complex) dtype; float64's for anything else. The one
    definition in the package (``gradcheck.compare.eps_of`` is this function)."""
    return _eps_of_dtype(np.dtype(dtype))


def pow2(h: Array) -> Array:
    """Round positive steps to the nearest power of two (so x + h and x - h are exact)."""
    return np.exp2(np.round(np.log2(h)))


def effective_eps(dtype: Any, noise: float, f0: float) -> float:
    """The precision that sets the step: machine epsilon of ``dtype`` or the loss's relative noise,
    whichever is larger (capped at 1e-3, beyond which a finite difference means little)."""
    e = machine_eps(dtype)
    if f0 != 0 and math.isfinite(f0):
        e = max(e, noise / abs(f0))
    return min(e, 1e-3)


def steps(x: Array, scheme: str, eps: float) -> Array:
    """Per-element steps for ``scheme``: ``eps**p * max(1, |x|)`` rounded to a power of two."""
    scale = np.maximum(1.0, np.abs(x.astype(np.float64)))
    if scheme == "complex":
        return 1e-20 * scale
    return pow2((eps ** STEP_POWER[scheme]) * scale)


def table_noise(f: Array) -> Array:
    """The rounding noise (sd) of values ``f[0..n]`` taken at equal steps (axis 0; further axes are
    independent series): difference tables of orders 4..6 pooled, ``var(Delta^k f) = C(2k, k)
    sigma^2`` (More & Wild, 2011); their smooth parts (f^(k) step^k) vanish at the probe's step."""
    estimates: list[Any] = []
    diff = np.asarray(f, dtype=np.float64)
    orders = len(diff) - 1
    first = 4 if orders > 3 else 1  # the orders pooled: 4..6 when there are that many, else all
    series = diff.ndim == 1
    for order in range(1, min(orders, 6) + 1 if orders > 3 else orders + 1):  # orders past 6: unused
        diff = diff[1:] - diff[:-1]  # np.diff along axis 0, without its overhead
        if order < first:
            continue
        gamma = math.factorial(order) ** 2 / math.factorial(2 * order)
        mean_square = np.add.reduce(diff ** 2, axis=0) / diff.shape[0]  # np.mean's sum / n
        # one series: the same IEEE operations on a Python float (no numpy scalar overhead)
        estimates.append(math.sqrt(gamma * float(mean_square)) if series else np.sqrt(gamma * mean_square))
    return np.sqrt(np.mean(np.square(estimates), axis=0))


def _probe_direction(rng: np.random.Generator, v: Array) -> Array:
    """``standard_normal * max(1, |v|)``, computed with one temporary (fast mode's memory bound)."""
    if np.ndim(v) == 0:  # a scalar parameter: standard_normal(()) is a float, nothing to reuse
        return rng.standard_normal(np.shape(v)) * np.maximum(1.0, np.abs(v))
    d = rng.standard_normal(v.shape)
    scale = np.abs(v)
    np.maximum(scale, 1.0, out=scale)
    d *= scale
    return d


#: dtypes whose values float64 holds exactly (their sums with float64 arrays are computed in float64)
_F64_EXACT = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
#: the noise probe moves at most this many elements through one concatenated vector
_FLAT_PROBE_MAX = 1 << 16


class _FlatProbe:
    """The noise probe's arithmetic on one concatenated float64 vector (parameters of float16/32/64,
    which float64 holds exactly and whose sums with float64 steps are computed in float64): a
    direction drawn at once (the generator's stream, split per tensor, is the same), scaled per
    tensor as :func:`noise_level` does, and each point two operations then a copy per tensor (the
    same roundings as the per-tensor sums) instead of two operations per tensor."""

    def __init__(self, base: Mapping[str, Array], params: Mapping[str, Array], points: int) -> None:
        self.base = np.concatenate([np.ravel(b) for b in base.values()], dtype=np.float64)
        self.params = params
        self.sizes = [int(v.size) for v in params.values()]
        self.point = np.empty_like(self.base)
        self.views, self.segments, a = [], [], 0
        for v, n in zip(params.values(), self.sizes):
            self.views.append((v, a, a + n, v.shape))
            self.segments.append((v, self.point[a:a + n].reshape(v.shape)))
            a += n
        self.factors = [machine_eps(v.dtype) ** (1 / 3) / 4 for v in params.values()]
        self.unit = self.base
        self.points = points
        self.rows: Array | None = None

    def direction(self, rng: np.random.Generator, shrink: float = 1.0) -> None:
        """:func:`_probe_direction` of every tensor, scaled to the probe's step (norm per tensor),
        ``shrink`` times shorter."""
        d = rng.standard_normal(self.base.size)
        # scaled by max(1, |x|) at the parameters as they stand (the previous direction's last point)
        scale = np.concatenate([np.ravel(v) for v in self.params.values()], dtype=np.float64)
        np.abs(scale, out=scale)
        np.maximum(scale, 1.0, out=scale)
        d *= scale
        dd = d * d
        norm = math.sqrt(sum(float(np.add.reduce(dd[a:b].reshape(shape), axis=None))
                             for _, a, b, shape in self.views)) or 1.0
        d *= np.repeat(np.array([f / norm / shrink for f in self.factors]), self.sizes)
        self.unit = d
        self.rows = None

    def move(self, j: int) -> None:
        """Every tensor to ``base + j * unit`` (in its dtype); the probe's points computed at the
        first move along a direction (``j = 1, 2, ...``: ``float(j) * unit``, then ``+ base``)."""
        if self.rows is None or j > len(self.rows):
            self.rows = np.multiply.outer(np.arange(1, max(j, self.points) + 1, dtype=np.float64), self.unit)
            self.rows += self.base
        self.point[...] = self.rows[j - 1]
        for v, segment in self.segments:
            v[...] = segment  # cast to v's dtype as np.copyto(casting="unsafe") does


def noise_level(loss: LossFn, params: dict[str, Array], f0: float, *, points: int = 8,
                directions: int = 2, seed: int = 0) -> tuple[float, int]:
    """Rounding noise (sd) of ``loss`` near ``params``, from difference tables (More & Wild, 2011).

    ``loss`` is evaluated at ``points`` steps along each of ``directions`` random unit directions
    (each element scaled by ``max(1, |x|)``). The step, ``eps^(1/3) / 4`` of the whole vector, is
    large enough that the rounding of every intermediate quantity decorrelates between points (a
    probe a few ulps wide sees a staircase of identical values and underestimates the noise of
    cancelling formulas by orders of magnitude) and small enough that the 4th-6th differences of
    the smooth part (~ f^(k) step^k) vanish, leaving rounding noise with
    ``var(Delta^k f) = C(2k, k) sigma^2``. The directions' estimates are pooled, unless one is 10x
    the other (its probe crossed a kink): then the smaller is kept. Returns ``(sigma, calls)``;
    ``params`` is restored before returning. Never below half an ulp of ``f0``; when no probe
    value differs from ``f0`` at all, half an ulp of ``max(|f0|, 1)`` (nothing was measured).

    A ``loss`` that knows its own structure may measure its noise itself: its method
    ``noise_level(params, f0, points=, directions=, seed=) -> (sigma, calls)`` is used instead
    (the JVP check's per-output steps: one probe call moves every output element at once).
    """
    own = getattr(loss, "noise_level", None)
    if own is not None:
        return own(params, f0, points=points, directions=directions, seed=seed)
    rng = np.random.default_rng(seed)
    base = {k: v.copy() for k, v in params.items()}
    eps = machine_eps(next(iter(params.values())).dtype)
    floor = 0.5 * eps * abs(f0)
    # small tensors of float16/32/64 (their sums with a float64 step are computed in float64): one
    # concatenated vector, each point one multiply and one add, then copied into the tensors (the
    # same roundings as the per-tensor sums; a long double tensor keeps its own precision)
    flat = (_FlatProbe(base, params, points) if len(params) > 1 and all(v.dtype in _F64_EXACT for v in params.values())
            and sum(v.size for v in params.values()) <= _FLAT_PROBE_MAX else None)
    try:
        probe = _probe(loss, params, base, f0, rng, flat, points, directions, 1.0)
        calls, sigma = probe.calls, probe.sigma(floor, eps, f0, directions)
        shrink = 1.0
        # far above the loss's own ulps: rounding of an ill-conditioned loss, or the smooth part of a
        # loss that curves on the probe's own scale (inputs ~1e3 from zero make the loss ~1e3 times
        # steeper in the weights than a step scaled to the weights assumes). Rounding does not depend
        # on the step and the smooth part falls as step^4..6: a probe SMOOTH_SHRINK times shorter
        # tells them apart, and its sigma is kept only if SMOOTH_DROP times smaller (a staircase of a
        # probe that became too short makes sigma smaller by far less, or 0: not kept)
        while (not probe.failed and shrink < SMOOTH_SHRINK ** 2 and sigma > SMOOTH_SUSPECT * eps * abs(f0)):
            shrink *= SMOOTH_SHRINK
            shorter = _probe(loss, params, base, f0, rng, flat, points, directions, shrink)
            calls += shorter.calls
            if shorter.failed or shorter.unmoved or not shorter.sigmas:
                break
            sigma_short = shorter.sigma(floor, eps, f0, directions)
            if not sigma_short * SMOOTH_DROP <= sigma:
                break
            sigma = sigma_short
    finally:
        for k, v in params.items():
            np.copyto(v, base[k])
    return max(sigma, floor, np.finfo(np.float64).tiny), calls


#: the noise probe is re-run this many times shorter when its sigma is suspiciously large ...
SMOOTH_SHRINK = 16.0
#: ... which is more than this many ulps of the loss ...
SMOOTH_SUSPECT = 64.0
#: ... and the shorter probe's sigma replaces it when at least this many times smaller
SMOOTH_DROP = 64.0


@dataclass
class _Probe:
    """The noise probe's values along its directions: per direction, the difference-table sigma."""

    sigmas: list[float]
    calls: int
    failed: bool       # fn raised at some point (the element-by-element pass names it)
    unmoved: bool      # every value equal to f0, bit for bit

    def sigma(self, floor: float, eps: float, f0: float, directions: int) -> float:
        """Pooled over directions, unless one direction is 10x noisier than the other: then its probe
        crossed a kink, and the quieter one is the function's rounding noise."""
        sigmas = self.sigmas
        if self.unmoved and len(sigmas) == directions:
            # not one bit moved at any point: no rounding was measured, which is not "none exists"
            # (O(1) terms cancelling to a loss of 0 whose changes all fall below an ulp of those
            # terms): half an ulp of max(|f0|, 1), the terms of a black-box loss taken as O(1)
            return 0.5 * eps * max(abs(f0), 1.0)
        if not sigmas:
            return floor
        if max(sigmas) > 10 * min(sigmas):
            return min(sigmas)
        return math.sqrt(float(np.mean(np.square(sigmas))))


def _probe(loss: LossFn, params: dict[str, Array], base: dict[str, Array], f0: float, rng: np.random.Generator,
           flat: _FlatProbe | None, points: int, directions: int, shrink: float) -> _Probe:
    """``points`` evaluations along each of ``directions`` random directions, ``shrink`` times
    shorter than the standard probe step (``params`` left at the last point; the caller restores)."""
    calls, sigmas, failed, unmoved = 0, [], False, True
    for _ in range(directions):
        if flat is not None:
            flat.direction(rng, shrink)
        else:
            dirs = {k: _probe_direction(rng, v) for k, v in params.items()}
            norm = math.sqrt(sum(float(np.add.reduce(d * d, axis=None)) for d in dirs.values())) or 1.0
            unit = dirs  # scaled in place (the same values): one direction-sized array, not two
            for k, v in params.items():
                unit[k] *= machine_eps(v.dtype) ** (1 / 3) / 4 / norm / shrink
        values = [f0]
        for j in range(1, points + 1):
            if flat is not None:
                flat.move(j)
            else:
                for k, v in params.items():
                    np.add(base[k], j * unit[k], out=v, casting="unsafe")
            calls += 1
            try:
                values.append(_as_float(loss(params)))
            except Exception:  # fn's fault: the element-by-element pass meets it and names the element
                failed = True
                break
        if failed:
            break
        f = np.array(values)
        if not np.all(np.isfinite(f)):
            continue
        unmoved = unmoved and bool(np.all(f == f0))
        sigmas.append(float(table_noise(f)))
    return _Probe(sigmas, calls, failed, unmoved)


def _evaluate(loss: LossFn, work: dict[str, Array], name: str, points: list[Array],
              out: Array | None = None) -> Array:
    """f at ``points[j][i]`` substituted for element i of ``work[name]``, one element at a time.

    Returns an array (size, len(points)) of raw float values. The tight loop is the cost floor
    of a black-box check; it allocates nothing per element (the points are read from Python
    lists and the values written into 1-d arrays: both about twice as fast as numpy scalar
    indexing). On an exception the element is restored and a :class:`FunctionFault` names it.

    A ``loss`` with an ``evaluate_points(work, name, points)`` method (the structure-aware oracle,
    :mod:`gradcheck.structured`) computes all the values at once instead; it must return the
    same ``(size, len(points))`` array.
    """
    batched = getattr(loss, "evaluate_points", None)
    if batched is not None:
        values = np.asarray(batched(work, name, points), dtype=np.float64)
        values = values.reshape(work[name].size, len(points))
        if out is not None:
            out[...] = values
        return values
    flat = work[name].reshape(-1)
    if not work[name].flags.c_contiguous and not np.shares_memory(flat, work[name]):
        raise RuntimeError("private parameter copies must be contiguous")  # pragma: no cover
    n, m = flat.size, len(points)
    # ``out`` (n, m): the values written straight into its columns (no stacking afterwards)
    cols = [np.empty(n) for _ in range(m)] if out is None else [out[:, j] for j in range(m)]
    x0: Any
    pts: list[Any]
    if flat.dtype.itemsize <= 8:  # Python floats hold float16/32/64 values exactly
        x0, pts = flat.tolist(), [np.asarray(p).tolist() for p in points]
    else:  # pragma: no cover - long double: keep numpy scalars
        x0, pts = flat.copy(), list(points)
    i = 0
    try:
        if m == 2:
            (p, q), (op, oq) = pts, cols
            for i in range(n):
                flat[i] = p[i]
                op[i] = loss(work)
                flat[i] = q[i]
                oq[i] = loss(work)
                flat[i] = x0[i]
        else:
            for i in range(n):
                for j in range(m):
                    flat[i] = pts[j][i]
                    cols[j][i] = loss(work)
                flat[i] = x0[i]
    except BaseException as exc:
        flat[i] = x0[i]
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        index = np.unravel_index(i, work[name].shape)
        raise FunctionFault(
            f"fn raised {type(exc).__name__}: {exc} (while {name}{list(map(int, index))} was perturbed)",
            name, tuple(int(v) for v in index)) from exc
    return np.stack(cols, axis=1) if out is None else out


def _evaluate_at(loss: LossFn, work: dict[str, Array], name: str, points: list[Array], at: Array) -> Array:
    """f at ``points[j][i]`` substituted for element ``at[i]`` (a flat index) of ``work[name]``, one
    element at a time: :func:`_evaluate` for a sample of the elements (complex points allowed when
    ``work[name]`` is complex). Returns an array (len(at), len(points)), complex when f is."""
    flat = work[name].reshape(-1)
    if not np.shares_memory(flat, work[name]):
        raise RuntimeError("private parameter copies must be contiguous")  # pragma: no cover
    out = np.empty((len(at), len(points)), dtype=np.complex128)
    i = 0
    try:
        for i, j in enumerate(at.tolist()):
            x0 = flat[j]
            try:
                for m, p in enumerate(points):
                    flat[j] = p[i]
                    out[i, m] = complex(np.asarray(loss(work)).reshape(()))
            finally:
                flat[j] = x0
    except Exception as exc:
        raise _fault(exc, name, int(at[i]), work[name].shape) from exc
    return out


def _complex_evaluate(loss: LossFn, work: dict[str, Array], name: str, h: Array) -> Array:
    flat = work[name].reshape(-1)
    x0 = flat.copy()
    out = np.empty(flat.size)
    for i in range(flat.size):
        flat[i] = x0[i] + 1j * h[i]
        value = np.asarray(loss(work))
        flat[i] = x0[i]
        out[i] = value.imag.reshape(()) if value.dtype.kind == "c" else 0.0
    return out / h


def estimate(loss: LossFn, params: Mapping[str, Array], *, scheme: str = "central",
             noise: float | None = None, f0: float | None = None, eps: float | None = None,
             names: list[str] | None = None, index: Mapping[str, Array] | None = None) -> Estimate:
    """Numerical gradient of ``loss(params) -> scalar`` with an error bound for every element.

    ``params`` is copied; ``loss`` receives the private copies (perturbed in place, restored after
    each element). ``noise`` (sd of f's rounding) and ``f0`` are measured when not given. Raises
    :class:`FunctionFault` if ``loss`` raises; non-finite values give non-finite estimates.
    ``index`` (a sampled check, :mod:`gradcheck.budget`): per name, the flat indices of the only
    elements to estimate, same steps and error bounds; the arrays are then 1-d, in that order.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r}: expected one of {SCHEMES}")
    real = {k: np.array(v, copy=True, order="C") for k, v in params.items()}
    names = list(real) if names is None else names
    calls = 0
    if f0 is None:
        f0 = _as_float(loss(real))
        calls += 1
    if noise is None:
        noise, n = noise_level(loss, real, f0)
        calls += n
    est = Estimate({}, {}, {}, scheme, noise, f0)
    if scheme == "complex":
        work = {k: v.astype(np.complex128) for k, v in real.items()}
        for name in names:
            at = None if index is None else np.asarray(index[name], dtype=np.intp)
            x = real[name].reshape(-1) if at is None else real[name].reshape(-1)[at]
            h = steps(x, "complex", 0.0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with np.errstate(all="ignore"):
                    d = (_complex_evaluate(loss, work, name, h) if at is None else
                         _evaluate_at(loss, work, name, [x + 1j * h], at)[:, 0].imag / h)
            calls += x.size
            shape = real[name].shape if at is None else x.shape
            est.grad[name] = d.reshape(shape)
            # complex step has no cancellation: rounding of the derivative itself, relative
            est.error[name] = (np.abs(d) * machine_eps(real[name].dtype) * 4).reshape(shape)
            est.step[name] = h.reshape(shape)
        est.calls = calls
        return est

    if (index is None and len(names) > 1 and all(real[k].dtype in _F64_EXACT for k in names)
            and sum(real[k].size for k in names) <= _FLAT_PROBE_MAX):
        est.calls = calls + _estimate_flat(loss, real, names, scheme, noise, f0, eps, est)
        return est
    for name in names:
        at = None if index is None else np.asarray(index[name], dtype=np.intp)
        x = real[name].reshape(-1) if at is None else real[name].reshape(-1)[at]
        dt = real[name].dtype
        e = effective_eps(dt, noise, f0) if eps is None else eps
        h = steps(x, scheme, e)
        pts = [(x + o * h).astype(dt) for o in OFFSETS[scheme]]
        values = _evaluate(loss, real, name, pts) if at is None else _evaluate_at(loss, real, name, pts, at).real
        calls += values.shape[0] * values.shape[1]
        shape = real[name].shape if at is None else x.shape
        dx = [(p.astype(np.float64) - x.astype(np.float64)) for p in pts]  # the exact offsets
        with np.errstate(all="ignore"):
            if scheme == "forward":
                d = (values[:, 0] - f0) / dx[0]
            elif scheme == "central":
                d = (values[:, 0] - values[:, 1]) / (dx[0] - dx[1])
            elif scheme == "central4":
                d = (-values[:, 0] + 8 * values[:, 1] - 8 * values[:, 2] + values[:, 3]) / (12 * h)
            else:  # richardson
                d1 = (values[:, 0] - values[:, 1]) / (dx[0] - dx[1])
                d2 = (values[:, 2] - values[:, 3]) / (dx[2] - dx[3])
                d = (4 * d2 - d1) / 3
        err = NOISE_GAIN[scheme] * noise / h
        if scheme == "richardson":
            err = err + np.abs(d2 - d1) / 3  # truncation bound of D(h/2); D is better than that
        est.grad[name] = d.reshape(shape)
        est.error[name] = err.reshape(shape)
        est.step[name] = h.reshape(shape)
    est.calls = calls
    return est


def _estimate_flat(loss: LossFn, real: dict[str, Array], names: list[str], scheme: str, noise: float,
                   f0: float, eps: float | None, est: Estimate) -> int:
    """:func:`estimate`'s arithmetic for small tensors of float16/32/64 on their elements
    concatenated (float64 holds them exactly; per tensor the same steps, points, estimates and
    bounds, element by element), the loss evaluated tensor by tensor in the same order. Fills
    ``est`` (each tensor's arrays are views of the concatenated ones); returns the calls made."""
    xs = [real[k].reshape(-1) for k in names]
    sizes = [x.size for x in xs]
    bounds = np.cumsum([0] + sizes).tolist()
    x = np.concatenate(xs, dtype=np.float64)
    power = STEP_POWER[scheme]
    coef = [(effective_eps(real[k].dtype, noise, f0) if eps is None else eps) ** power for k in names]
    h = pow2(np.repeat(np.array(coef), sizes) * np.maximum(1.0, np.abs(x)))  # steps(), per tensor's eps
    mixed = any(real[k].dtype != np.float64 for k in names)
    pts, dx = [], []
    for o in OFFSETS[scheme]:
        p = x + o * h
        if mixed:  # each tensor's points in its own dtype (exactly representable in float64)
            p = np.concatenate([p[a:b].astype(real[k].dtype) for k, a, b in zip(names, bounds, bounds[1:])],
                               dtype=np.float64)
        pts.append(p)
        dx.append(p - x)  # the exact offsets
    vals = np.empty((x.size, len(pts)))
    for k, a, b in zip(names, bounds, bounds[1:]):
        dt = real[k].dtype
        _evaluate(loss, real, k, [p[a:b] if dt == np.float64 else p[a:b].astype(dt) for p in pts], out=vals[a:b])
    calls = vals.size
    with np.errstate(all="ignore"):
        if scheme == "forward":
            d = (vals[:, 0] - f0) / dx[0]
        elif scheme == "central":
            d = (vals[:, 0] - vals[:, 1]) / (dx[0] - dx[1])
        elif scheme == "central4":
            d = (-vals[:, 0] + 8 * vals[:, 1] - 8 * vals[:, 2] + vals[:, 3]) / (12 * h)
        else:  # richardson
            d1 = (vals[:, 0] - vals[:, 1]) / (dx[0] - dx[1])
            d2 = (vals[:, 2] - vals[:, 3]) / (dx[2] - dx[3])
            d = (4 * d2 - d1) / 3
    err = NOISE_GAIN[scheme] * noise / h
    if scheme == "richardson":
        err = err + np.abs(d2 - d1) / 3  # truncation bound of D(h/2); D is better than that
    for k, a, b in zip(names, bounds, bounds[1:]):
        shape = real[k].shape
        est.grad[k], est.error[k], est.step[k] = d[a:b].reshape(shape), err[a:b].reshape(shape), h[a:b].reshape(shape)
    return calls


@dataclass
class Refinement:
    """Second look at one element: the estimate kept, its error bound, and what the ladder saw.

    ``status``: ``"smooth"`` (two successive Richardson estimates agree and the one-sided gap
    halves with the step: ``value`` is trustworthy), ``"kink"`` (the one-sided differences
    disagree by the same amount at three steps: a non-differentiable point within ``step`` of
    x), ``"unsettled"`` (neither settled within the ladder: not differentiable within the step,
    or too noisy to tell). ``one_sided`` are the one-sided differences at the last step tried.
    """

    value: float
    error: float
    kink: bool
    one_sided: tuple[float, float]
    calls: int
    status: str = "smooth"
    step: float = 0.0


def _fault(exc: Exception, name: str, index: int, shape: tuple) -> FunctionFault:
    where = np.unravel_index(index, shape)
    return FunctionFault(f"fn raised {type(exc).__name__}: {exc} (while {name}{list(map(int, where))} was "
                         "perturbed)", name, tuple(int(v) for v in where))


def _value_at(loss: LossFn, work: dict[str, Array], name: str, index: int) -> float:
    """``loss(work)`` as a float while element ``index`` of ``work[name]`` is moved. The one place
    here that calls into user code: whatever it raises becomes a :class:`FunctionFault` naming the
    element; the harness's own arithmetic around it is never wrapped (a bug there keeps its traceback)."""
    try:
        return _as_float(loss(work))
    except FunctionFault:
        raise
    except Exception as exc:
        raise _fault(exc, name, index, work[name].shape) from exc


def refine_element(loss: LossFn, work: dict[str, Array], name: str, index: int, h: float,
                   f0: float, noise: float, *, rungs: int | None = None) -> Refinement:
    """Re-estimate element ``index`` of ``work[name]`` on a ladder of central steps h, h/2, h/4, ...

    Each rung j costs 2 calls (x +- h_j) and gives the central difference ``D_j`` (rounding sd
    ``0.71 sigma / h_j``) and the signed one-sided gap ``g_j = D+ - D-`` (sd ``2.45 sigma / h_j``),
    which is ``f'' h_j + O(h_j^3)`` where f is smooth. Over three successive rungs j, j+1, j+2:

    * **smooth** when the gap halves at both steps (ratio within ``0.5 +- ladder_halving_band``),
      its departures from halving shrink at least 4x from one step to the next (8x where f is
      smooth: they are ``-3/8 b h^3`` for a gap ``a h + b h^3``), each within
      ``ladder_agreement_sd`` sd of the rounding, and the Richardson values
      ``R_j = (4 D_{j+1} - D_j) / 3`` and ``R_{j+1}`` agree within as many sd of theirs: the
      estimate is ``R_j`` with the error bound ``sd(R_j) + T`` plus the part of ``|R_j - R_{j+1}|``
      that one sd of rounding does not explain, where the truncation ``T`` is the smaller of
      ``|D_j - D_{j+1}| / 3`` (that of ``D_{j+1}``, which bounds the extrapolated value's; little
      rounding in it) and ``|R_j - R_{j+1}|`` (about R_j's own; tighter when the step is large).
      While truncation keeps the Richardson
      values apart the ladder goes on down (truncation falls 16x a rung, rounding grows 2x): a
      step far too large for the function settles a few rungs later;
    * **kink** when the gap is significant (beyond ``kink_gap_sd`` sd) at three rungs and keeps its
      size (within ``kink_ratio_band``): a non-differentiable point within ``h_{j+2}`` of x.

    A kink of *another* unit crossed at distance ``a`` (float32 steps are large) adds ``c (1 - a/h)``
    to the gaps of the rungs with ``h > a``: their departures from halving then jump instead of
    shrinking (and the Richardson values disagree), however large the smooth curvature; below
    ``a`` the rungs are smooth again, so the estimate kept never crossed it. Once a window has
    shown a significant gap that does not behave, a later window counts as smooth only where its
    gaps are significant too: a kink of one sample at x whose gap sinks into the growing rounding
    at small steps must not pass for a smooth point. After
    ``ladder_rungs`` rungs without a smooth window or a kink the element is ``unsettled``.
    """
    rungs = MODEL.ladder_rungs if rungs is None else rungs
    flat = work[name].reshape(-1)
    x = flat[index]
    xf = float(x)
    dt = flat.dtype
    D: list[float] = []
    sdD: list[float] = []
    gap: list[float] = []
    sdgap: list[float] = []
    hs: list[float] = []
    sided = (math.nan, math.nan)
    calls = 0
    agree, band = MODEL.ladder_agreement_sd, MODEL.kink_ratio_band
    suspect = False

    def halves(k: int) -> bool:
        residual = abs(gap[k + 1] - gap[k] / 2)
        return residual <= MODEL.ladder_halving_band * abs(gap[k]) + agree * math.hypot(sdgap[k + 1], sdgap[k] / 2)

    def smooth_gaps(k: int) -> bool:
        """Where f is smooth the gap is ``a h + b h^3``: the residuals ``r = g_{k+1} - g_k / 2``
        shrink 8x a rung (``-3/8 b h^3``). A kink at x keeps them (``g / 2``); a kink crossed at
        distance ``a`` makes them jump as the step passes ``a``. Demand at least a 4x decay."""
        r0, r1 = gap[k + 1] - gap[k] / 2, gap[k + 2] - gap[k + 1] / 2
        sd0, sd1 = math.hypot(sdgap[k + 1], sdgap[k] / 2), math.hypot(sdgap[k + 2], sdgap[k + 1] / 2)
        return abs(r1) <= abs(r0) / 4 + agree * math.hypot(sd1, sd0 / 4)

    def keeps(k: int) -> bool:
        return abs(gap[k + 1] - gap[k]) <= band * abs(gap[k]) + agree * math.hypot(sdgap[k + 1], sdgap[k])

    try:
        for j in range(rungs):
            hj = h / 2 ** j
            xp, xm = dt.type(x + hj), dt.type(x - hj)
            hp, hm = float(xp) - xf, xf - float(xm)
            if hp <= 0 or hm <= 0:
                break  # the step fell below the parameter's ulp
            flat[index] = xp
            fp = _value_at(loss, work, name, index)
            flat[index] = xm
            fm = _value_at(loss, work, name, index)
            flat[index] = x
            calls += 2
            D.append((fp - fm) / (hp + hm))
            sdD.append(math.sqrt(2) * noise / (hp + hm))
            sp, sm = (fp - f0) / hp, (f0 - fm) / hm
            sided = (sp, sm)
            gap.append(sp - sm)
            sdgap.append(math.sqrt(6) * noise / min(hp, hm))
            hs.append(hj)
            if j < 2:
                continue
            i = j - 2
            significant = all(abs(gap[k]) > MODEL.kink_gap_sd * sdgap[k] for k in (i, i + 1, i + 2))
            gaps_smooth = halves(i) and halves(i + 1) and smooth_gaps(i)
            if not gaps_smooth and any(abs(gap[k]) > MODEL.kink_gap_sd * sdgap[k] for k in (i, i + 1, i + 2)):
                suspect = True  # something non-smooth was seen: rounding must not hide it later
            if gaps_smooth and (significant or not suspect):
                r0 = (4 * D[i + 1] - D[i]) / 3
                r1 = (4 * D[i + 2] - D[i + 1]) / 3
                sd_diff = math.sqrt(25 * sdD[i + 1] ** 2 + sdD[i] ** 2 + 16 * sdD[i + 2] ** 2) / 3
                if abs(r0 - r1) <= agree * sd_diff:
                    # settled: R_j with its rounding, the truncation seen between D_j and D_{j+1},
                    # and whatever of |R_j - R_{j+1}| one sd of rounding does not explain (kinks of
                    # several units crossed at spread-out distances can shift both tests a little)
                    sd_r0 = math.hypot(4 * sdD[i + 1], sdD[i]) / 3
                    truncation = min(abs(D[i] - D[i + 1]) / 3, abs(r0 - r1))
                    # a jump of f' or f'' crossed by the step (elu's f'' at 0) shifts D by about half
                    # of what it adds to the gap: the gap's departure from halving beyond its
                    # rounding joins the bound (in float64 at the usual step it is rounding alone)
                    departure = max(abs(gap[k + 1] - gap[k] / 2) - agree * math.hypot(sdgap[k + 1], sdgap[k] / 2)
                                    for k in (i, i + 1))
                    error = sd_r0 + truncation + max(0.0, abs(r0 - r1) - sd_diff) + max(0.0, departure) / 2
                    return Refinement(r0, error, False, sided, calls, "smooth", hs[i])
            elif significant and keeps(i) and keeps(i + 1):
                return Refinement(D[j], sdD[j] + abs(gap[j]) / 2, True, sided, calls, "kink", hj)
    finally:
        flat[index] = x
    if len(D) >= 2:
        value = (4 * D[-1] - D[-2]) / 3
        error = math.hypot(4 * sdD[-1], sdD[-2]) / 3 + abs(D[-1] - D[-2])
    elif D:
        value, error = D[-1], sdD[-1]
    else:
        value, error = math.nan, math.inf
    return Refinement(value, error, False, sided, calls, "unsettled", hs[-1] if hs else h)


@dataclass
class ClaimedRounding:
    """What :func:`gradient_noise` measured: per tensor the rounding sd of each claimed entry and
    where the claimed gradient jumps at x itself; ``calls`` of the code under test."""

    sd: dict[str, Array]
    jump: dict[str, Array]
    calls: int
    #: per line, the claimed gradient extrapolated to x (its limit there from that side)
    limits: list[dict[str, Array]] = field(default_factory=list)
    #: the code's gradient at another point (what was probed), for the judge's probes along one
    #: element (:meth:`gradcheck.judging.Judge.code_kink_along`)
    grad_at: Callable[[dict[str, Array]], Mapping[str, Array]] | None = None


def gradient_noise(grad_at: Callable[[dict[str, Array]], Mapping[str, Array]], params: Mapping[str, Array],
                   base: Mapping[str, Array], *, seed: int = 0) -> ClaimedRounding:
    """The rounding (sd) of every element of a claimed gradient, measured.

    ``grad_at(p)`` returns the gradient at ``p`` (the code under test); ``base`` is its value at
    ``params``. Along each of ``claimed_probe_directions`` random directions, the gradient is
    evaluated at ``x + t_j u`` for ``t_j`` near ``1..claimed_probe_points`` (not at x itself, which may sit on
    a kink that every move crosses), where ``u`` moves each element
    by about ``claimed_probe_ulps`` ulps of ``max(|x|, rms of its tensor)`` (a random size and sign
    per element, deliberately not a multiple of the spacing: a step of whole multiples of 1024
    ulps leaves the low bits, and so the rounding of sums, unchanged). That re-draws the rounding
    of every intermediate quantity while the gradient changes smoothly by ~1e-13 (float64) or
    ~1e-4 (float32) relative, far from any kink; the points' own rounding (half an ulp of x) moves
    the gradient by what ulp-level changes of its inputs do, which is the conditioning that makes
    the claimed gradient's rounding in the first place. The points sit at irregular ``t_j`` (equal
    steps can alias with an intermediate's own float spacing); a least-squares cubic in ``t``
    absorbs the smooth change and its residuals are the rounding (:func:`_probe_lines`). In float64
    a second probe ``claimed_probe_wide_ulps`` wide re-draws saturated intermediates and counts
    where it looks like rounding. Per element the directions are pooled, unless one is 10x noisier
    than the other (a jump): then the quieter one; the tensor's median is a floor for each entry
    (the per-element estimate rests on few differences; a tensor's entries share one computation).
    Also marks the entries where ``g(x)`` itself departs from the lines' extrapolation to x: the
    code's gradient jumps exactly there (a subgradient convention on a path that crosses a kink at
    x, while the loss may even be smooth: two leaky ReLUs in a row at exactly 0).

    A ``grad_at`` with a method ``gradient_noise(params, base, seed=) -> ClaimedRounding`` measures
    itself (the JVP check: its entries live at different points, one call would be needed per
    entry; it probes all of them along the tangent at once).
    """
    own = getattr(grad_at, "gradient_noise", None)
    if own is not None:
        return own(params, base, seed=seed)
    rng = np.random.default_rng(seed + 7)
    m = int(MODEL.claimed_probe_points)
    per_direction, lines, calls = _probe_lines(grad_at, params, base, rng, MODEL.claimed_probe_ulps, m)
    wide: dict[str, Array] | None = None
    if all(np.asarray(v).dtype == np.float64 for v in params.values()):
        # a second, wider probe (float64 only: float32's narrow probe is already 1e-4 wide): an
        # intermediate whose value barely moves (tanh near 1: a 1024-ulp move of z changes a by less
        # than its ulp) keeps its rounding at every narrow point, so a formula like 1 - a^2 shows a
        # constant error the narrow probe cannot see; 2^20 ulps re-draw it
        wide_sd, _, n = _probe_lines(grad_at, params, base, rng, MODEL.claimed_probe_wide_ulps, m)
        calls += n
        wide = {k: _pooled(np.stack([d[k] for d in wide_sd])) for k in base}
    out = {}
    for k in base:
        per_element = _pooled(np.stack([d[k] for d in per_direction]))
        if wide is not None:
            # the wide probe's estimate counts where it looks like rounding: below sqrt(eps) of the
            # gradient's scale (a kink crossed within 2e-10 shows as an O(1) change, far above)
            g = np.abs(np.asarray(base[k], dtype=np.float64))
            rounding_like = wide[k] <= math.sqrt(machine_eps(np.float64)) * (g + float(np.max(g, initial=0.0)))
            per_element = np.where(rounding_like, np.fmax(per_element, wide[k]), per_element)
        # each element's estimate rests on a few differences (a chi-square of few degrees of
        # freedom: 3x low one time in a few hundred); the tensor's entries share one computation,
        # so the tensor's median stands as a floor for every entry (a median: a few elements whose
        # probe crossed a kink must not loosen the rest)
        finite = per_element[np.isfinite(per_element)]
        typical = float(np.median(finite)) if finite.size else 0.0
        out[k] = np.where(np.isfinite(per_element), np.maximum(per_element, typical), np.inf)
    # does the gradient jump at x itself? A quadratic through each line's points, extrapolated to
    # j = 0, against g(x): beyond that extrapolation's rounding, g(x) is a convention taken at an
    # exact kink of the code's path (relu'(0) of a pre-activation that is exactly 0), not a limit
    jump = {}
    limits: list[dict[str, Array]] = [{} for _ in lines]
    fits = []
    for t, _ in lines:  # per line: the weights giving a quadratic's value at t = 0 from the points
        weights = np.linalg.lstsq(np.vander(t, 3, increasing=True), np.eye(m), rcond=None)[0][0]
        fits.append((weights, float(np.sqrt(np.sum(weights ** 2)))))
    for k in base:
        g0 = np.asarray(base[k], dtype=np.float64)
        hits = np.zeros(g0.shape, bool)
        for line, (_, seq) in enumerate(lines):
            weights, gain = fits[line]
            allowed = MODEL.safety * (1 + gain) * out[k] + MODEL.analytic_ulps * machine_eps(np.float64) * np.abs(g0)
            with np.errstate(all="ignore"):
                predicted = np.tensordot(weights, np.stack([s[k] for s in seq]), axes=1)
                hits |= np.abs(g0 - predicted) > allowed
            limits[line][k] = predicted
        jump[k] = hits
    return ClaimedRounding(out, jump, calls, limits, grad_at=grad_at)


def _pooled(sds: Array) -> Array:
    """Per element, the directions' rounding estimates pooled, unless one is 10x the other (its
    line crossed a jump): then the quieter one."""
    lo, hi = sds.min(axis=0), sds.max(axis=0)
    pooled = np.sqrt(np.mean(sds * sds, axis=0))
    return np.where(hi > 10 * lo, lo, pooled)


def _probe_lines(grad_at: Callable[[dict[str, Array]], Mapping[str, Array]], params: Mapping[str, Array],
                 base: Mapping[str, Array], rng: np.random.Generator, ulps: float,
                 m: int) -> tuple[list[dict[str, Array]], list[tuple[Array, list[dict[str, Array]]]], int]:
    """The gradient along ``claimed_probe_directions`` random lines of ``m`` points each, every
    element moved by about ``ulps`` ulps a unit of ``t``: per direction the rounding sd of every
    entry, and each line's ``(t, values)``.

    The points sit at irregular ``t_j = j + U(-0.4, 0.4)``: with equal steps an intermediate that
    moves by a near-integer number of its own ulps per step (tanh near 1 in float32, moving
    exactly 2 ulps a point) keeps the same rounding error at every point and looks exact. The sd
    is the residual of a least-squares cubic in ``t`` (which absorbs the smooth change), with
    ``m - 4`` degrees of freedom per line."""
    per_direction: list[dict[str, Array]] = []
    lines: list[tuple[Array, list[dict[str, Array]]]] = []
    calls = 0
    first: dict[str, Array] = {}
    for direction in range(int(MODEL.claimed_probe_directions)):
        unit = {}
        for k, v in params.items():
            v64 = np.asarray(v, dtype=np.float64)
            rms = math.sqrt(float(np.mean(v64 * v64))) if v.size else 0.0
            ref = np.maximum(np.abs(v64), rms if rms > 0 else 1.0).astype(v.dtype)
            # a random size per element (not a multiple of the spacing): every low bit changes,
            # so the rounding of sums and differences is re-drawn at each point. The second
            # direction mirrors the first's signs with new sizes: a pre-activation exactly at a
            # kink then moves to one side along one line and to the other along the other, so a
            # convention taken at x differs from at least one of them (the jump test)
            size = rng.uniform(0.5, 1.5, size=v.shape)
            sign = rng.choice(np.array([-1.0, 1.0]), size=v.shape) if direction % 2 == 0 else -first[k]
            if direction % 2 == 0:
                first[k] = sign
            unit[k] = size * sign * ulps * np.spacing(ref).astype(np.float64)
        # the base point itself stays out: where x sits exactly on a kink (relu at 0) any move
        # crosses it, so g(x) holds one convention and g(x + j u), j >= 1, the other side's value
        t = np.arange(1.0, m + 1) + rng.uniform(-0.4, 0.4, size=m)
        seq = []
        for tj in t:
            point = {k: (np.asarray(v, dtype=np.float64) + tj * unit[k]).astype(v.dtype) for k, v in params.items()}
            got = grad_at(point)
            calls += 1
            seq.append({k: np.asarray(got[k], dtype=np.float64) for k in base})
        # residuals of a cubic fit as I - Q Q^T with Q an orthonormal basis of cubics in the centred,
        # scaled t (well conditioned: its rows sum to zero to ~eps, so the values' own size, far
        # above their rounding, does not leak in); the values are centred first for the same reason
        centred = (t - t.mean()) / t.std()
        q, _ = np.linalg.qr(np.vander(centred, 4, increasing=True))
        residual_maker = np.eye(m) - q @ q.T
        sd = {}
        for k in base:
            stack = np.stack([s[k] for s in seq]).reshape(m, -1)
            with np.errstate(all="ignore"):
                residuals = residual_maker @ (stack - stack.mean(axis=0))
                sd[k] = np.sqrt(np.sum(residuals * residuals, axis=0) / (m - 4)).reshape(np.shape(base[k]))
        per_direction.append(sd)
        lines.append((t, seq))
    return per_direction, lines, calls


def directional(loss: LossFn, params: dict[str, Array], direction: dict[str, Array], h: float) -> float:
    """Central difference of ``loss`` along ``direction`` (params restored afterwards)."""
    base = {k: v.copy() for k, v in params.items()}
    try:
        for k, v in params.items():
            np.copyto(v, (base[k] + h * direction[k]).astype(v.dtype), casting="unsafe")
        fp = _as_float(loss(params))
        for k, v in params.items():
            np.copyto(v, (base[k] - h * direction[k]).astype(v.dtype), casting="unsafe")
        fm = _as_float(loss(params))
    finally:
        for k, v in params.items():
            np.copyto(v, base[k])
    return (fp - fm) / (2 * h)


def step_curve(loss: LossFn, work: dict[str, Array], name: str, index: int,
               hs: Array | None = None) -> list[tuple[float, float]]:
    """Central differences of one element over a range of steps: ``[(h, D(h)), ...]``.

    The classic V-shaped picture: truncation error falls as h^2, rounding grows as 1/h.
    """
    hs = np.logspace(-1, -12, 23) if hs is None else hs
    flat = work[name].reshape(-1)
    x = flat[index]
    dt = flat.dtype
    curve = []
    try:
        for h in hs:
            h = float(pow2(np.array([h * max(1.0, abs(float(x)))]))[0])
            flat[index] = dt.type(x + h)
            fp = _value_at(loss, work, name, index)
            flat[index] = dt.type(x - h)
            fm = _value_at(loss, work, name, index)
            curve.append((h, (fp - fm) / (2 * h)))
    except FunctionFault:
        pass  # a curve is an illustration: fn failing at a large step ends it there
    finally:
        flat[index] = x
    return curve
