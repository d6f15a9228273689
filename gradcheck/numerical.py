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
truncation where it has been estimated (two step sizes: ``|D(h) - D(h/2)|``). :func:`refine`
re-evaluates chosen elements at ``h/2`` to estimate truncation, extrapolate (Richardson), and tell
a non-differentiable point (one-sided differences that disagree and do not shrink with ``h``) from
a smooth one. Perturbations are made in place on private copies and undone after each element.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

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
    """Numerical gradient: per tensor the estimate, its absolute error bound and the step used.

    ``kink`` marks elements found to sit at (or within one step of) a non-differentiable point;
    ``refined`` marks elements re-evaluated at a second step. ``calls`` counts evaluations of f.
    """

    grad: dict[str, Array]
    error: dict[str, Array]
    step: dict[str, Array]
    scheme: str
    noise: float
    f0: float
    calls: int = 0
    kink: dict[str, Array] = field(default_factory=dict)
    refined: dict[str, Array] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _as_float(value: Any) -> float:
    """A scalar loss as a Python float (0-d or size-1 arrays, numpy scalars, anything with __float__)."""
    a = np.asarray(value)
    if a.size != 1:
        raise FunctionFault(f"the loss has shape {a.shape}; expected a scalar")
    if a.dtype.kind == "c":
        return float(a.real.reshape(()))
    return float(a.reshape(()))


@functools.lru_cache(maxsize=None)
def _eps_of_dtype(dt: np.dtype) -> float:
    return float(np.finfo(dt).eps) if dt.kind in "fc" else float(np.finfo(np.float64).eps)


def machine_eps(dtype: Any) -> float:
    """Machine epsilon of a floating (or complex) dtype; float64's for anything else."""
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
    ``params`` is restored before returning. Never below half an ulp of ``f0``.
    """
    rng = np.random.default_rng(seed)
    base = {k: v.copy() for k, v in params.items()}
    floor = 0.5 * machine_eps(next(iter(params.values())).dtype) * abs(f0)
    calls = 0
    sigmas = []
    try:
        for _ in range(directions):
            dirs = {k: rng.standard_normal(v.shape) * np.maximum(1.0, np.abs(v)) for k, v in params.items()}
            norm = math.sqrt(sum(float(np.sum(d * d)) for d in dirs.values())) or 1.0
            unit = {k: (machine_eps(v.dtype) ** (1 / 3) / 4 / norm) * dirs[k] for k, v in params.items()}
            values = [f0]
            for j in range(1, points + 1):
                for k, v in params.items():
                    np.add(base[k], j * unit[k], out=v, casting="unsafe")
                values.append(_as_float(loss(params)))
                calls += 1
            f = np.array(values)
            if not np.all(np.isfinite(f)):
                continue
            estimates = []
            diff = f
            for k in range(1, points + 1):
                diff = np.diff(diff)
                gamma = math.factorial(k) ** 2 / math.factorial(2 * k)
                estimates.append(math.sqrt(gamma * float(np.mean(diff ** 2))))
            # orders 4..6 pooled: their smooth parts (f^(k) step^k, step^4 ~ eps^(4/3)) vanish
            usable = estimates[3:6] if len(estimates) > 3 else estimates
            sigmas.append(math.sqrt(float(np.mean(np.square(usable)))))
    except Exception:
        pass  # the element-by-element pass will meet the same fault and name the element
    finally:
        for k, v in params.items():
            np.copyto(v, base[k])
    # pooled over directions, unless one direction is 10x noisier than the other: then its probe
    # crossed a kink, and the quieter one is the function's rounding noise
    if not sigmas:
        sigma = floor
    elif max(sigmas) > 10 * min(sigmas):
        sigma = min(sigmas)
    else:
        sigma = math.sqrt(float(np.mean(np.square(sigmas))))
    return max(sigma, floor, np.finfo(np.float64).tiny), calls


def _evaluate(loss: LossFn, work: dict[str, Array], name: str, points: list[Array]) -> Array:
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
        return values.reshape(work[name].size, len(points))
    flat = work[name].reshape(-1)
    if not np.shares_memory(flat, work[name]):
        raise RuntimeError("private parameter copies must be contiguous")  # pragma: no cover
    n, m = flat.size, len(points)
    cols = [np.empty(n) for _ in range(m)]
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
    return np.stack(cols, axis=1)


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
             names: list[str] | None = None) -> Estimate:
    """Numerical gradient of ``loss(params) -> scalar`` with an error bound for every element.

    ``params`` is copied; ``loss`` receives the private copies (perturbed in place, restored after
    each element). ``noise`` (sd of f's rounding) and ``f0`` are measured when not given. Raises
    :class:`FunctionFault` if ``loss`` raises; non-finite values give non-finite estimates.
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
            x = real[name].reshape(-1)
            h = steps(x, "complex", 0.0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with np.errstate(all="ignore"):
                    d = _complex_evaluate(loss, work, name, h)
            calls += x.size
            shape = real[name].shape
            est.grad[name] = d.reshape(shape)
            # complex step has no cancellation: rounding of the derivative itself, relative
            est.error[name] = (np.abs(d) * machine_eps(real[name].dtype) * 4).reshape(shape)
            est.step[name] = h.reshape(shape)
        est.calls = calls
        return est

    for name in names:
        x = real[name].reshape(-1)
        dt = real[name].dtype
        e = effective_eps(dt, noise, f0) if eps is None else eps
        h = steps(x, scheme, e)
        pts = [(x + o * h).astype(dt) for o in OFFSETS[scheme]]
        values = _evaluate(loss, real, name, pts)
        calls += values.shape[0] * values.shape[1]
        shape = real[name].shape
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
        est.kink[name] = np.zeros(shape, bool)
        est.refined[name] = np.zeros(shape, bool) if scheme != "richardson" else np.ones(shape, bool)
    est.calls = calls
    return est


@dataclass
class Refinement:
    """Second look at one element: Richardson estimate, its error bound, and whether it is a kink."""

    value: float
    error: float
    kink: bool
    one_sided: tuple[float, float]
    calls: int


def refine_element(loss: LossFn, work: dict[str, Array], name: str, index: int, h: float,
                   f0: float, noise: float, *, scheme: str = "central",
                   first: float | None = None) -> Refinement:
    """Re-evaluate element ``index`` of ``work[name]`` at x +- h and x +- h/2 (4 calls; h is the
    scheme's step).

    * ``central``: Richardson ``D = (4 D(h/2) - D(h)) / 3``, error
      ``3 x rounding(h) + |D(h) - D(h/2)| / 3``.
    * ``central4`` (``first`` = D4(h) from the first pass): ``D4(h/2)`` from the four points, with
      the error bound ``rounding(h/2) + |D4(h) - D4(h/2)|``. No extrapolation and no ``/15``: that
      assumes fifth-order smoothness, which huber, log_cosh, elu or softsign networks lack (it
      false-alarmed there); the plain difference bounds the error of D4(h/2) whenever the stencil
      converges at least linearly.
    * Kink test: one-sided differences ``D+ - D-`` shrink in proportion to h where f is smooth
      (their gap is about ``f'' h``). If the gap is significant (beyond 8 sd of its rounding) and
      does not halve when h halves, a non-differentiable point lies within h of x: the element
      has no single derivative to compare with.
    """
    flat = work[name].reshape(-1)
    x = flat[index]
    dt = flat.dtype
    xs = [dt.type(x + o * h) for o in (1.0, -1.0, 0.5, -0.5)]
    vals = []
    try:
        for p in xs:
            flat[index] = p
            vals.append(_as_float(loss(work)))
    except FunctionFault:
        raise
    except Exception as exc:
        where = np.unravel_index(index, work[name].shape)
        raise FunctionFault(f"fn raised {type(exc).__name__}: {exc} (while {name}"
                            f"{list(map(int, where))} was perturbed)", name,
                            tuple(int(v) for v in where)) from exc
    finally:
        flat[index] = x
    fp, fm, fp2, fm2 = vals
    hp, hm, hp2, hm2 = (float(p) - float(x) for p in xs)
    if scheme == "central4" and first is not None:
        value = (-fp + 8 * fp2 - 8 * fm2 + fm) / (6 * h)
        error = NOISE_GAIN["central4"] * noise / (h / 2) + abs(first - value)
    else:
        d1 = (fp - fm) / (hp - hm)
        d2 = (fp2 - fm2) / (hp2 - hm2)
        value = (4 * d2 - d1) / 3
        error = 3 * NOISE_GAIN["central"] * noise / h + abs(d1 - d2) / 3
    sp, sm = (fp - f0) / hp, (f0 - fm) / -hm
    sp2, sm2 = (fp2 - f0) / hp2, (f0 - fm2) / -hm2
    gap1, gap2 = abs(sp - sm), abs(sp2 - sm2)
    gap_sd = 2 * math.sqrt(2) * noise / h          # rounding sd of gap1; gap2's is twice that
    significant = gap1 > 8 * gap_sd
    ratio = gap2 / gap1 if gap1 > 0 else 0.5
    # smooth: ratio = 0.5 up to gap2's rounding (2 gap_sd / gap1 in ratio units); demand a departure
    # of at least 0.2 and 4 sd of that noise before calling it a kink
    kink = bool(significant and abs(ratio - 0.5) > max(0.2, 4 * 2 * gap_sd / gap1))
    return Refinement(value, error, kink, (sp2, sm2), 4)


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
            fp = _as_float(loss(work))
            flat[index] = dt.type(x - h)
            fm = _as_float(loss(work))
            curve.append((h, (fp - fm) / (2 * h)))
    except Exception:
        pass  # a curve is an illustration; a failure here is reported elsewhere
    finally:
        flat[index] = x
    return curve
