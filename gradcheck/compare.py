"""The error metric and the tolerance model, defined once (constants: :mod:`gradcheck.tolerance`).

For each element ``i`` of a tensor ``t`` with claimed gradient ``c_i``, numerical estimate ``D_i``,
the estimate's absolute error bound ``E_i`` (rounding + truncation, see :mod:`gradcheck.numerical`)
and the claimed gradient's own rounding ``N_i`` (measured, see :func:`gradcheck.numerical.gradient_noise`;
0 where not measured)::

    S         = G, or T where G < sqrt(eps) T                   # the check's gradient scale
    tol_abs_i = safety * (E_i + N_i) + analytic_ulps * eps_c * (|D_i| + S)
    floor_t   = max( max_i E_i , eps_c * max_i |D_i| )          # the tensor's resolvable scale
    rel_i     = |c_i - D_i| / max(|D_i|, floor_t)               # the reported relative error
    tol_i     = tol_abs_i / max(|D_i|, floor_t)                 # the same tolerance, relative
    passed_i  = rel_i <= max(tol_i, rtol)                       # rtol: optional user override
    margin_i  = rel_i / max(tol_i, rtol)                        # < 1 passes
    resolved_i = tol_i <= eps_c ** resolved_power               # the headline's elements

``eps_c`` is the machine epsilon of the claimed gradient's dtype. ``G`` is the largest ``|D|`` over
all tensors of the check: an entry that is a sum of large cancelling terms (a bias gradient summed
over the batch) carries rounding of the size of those terms, which its own small value does not
show. ``T`` is the scale of the terms when every gradient is zero to working precision (``G <
sqrt(eps) T``): the loss's magnitude per unit of parameter, ``|f| / max(1, rms |x|)``
(``softmax(z).sum()`` has a zero gradient made of terms of size ~1). ``N_i`` is what the user's
arithmetic actually produces (ill-conditioned but
correct code: batchnorm of inputs far from zero, confident softmax), measured rather than assumed.
The floor keeps tiny true gradients (|D| far below what the estimate resolves) from producing huge
relative errors on correct code, without a magic constant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck.numerical import machine_eps
from gradcheck.tolerance import MODEL

Array = np.ndarray

#: re-exported for the modules that build on the metric (values from :data:`gradcheck.tolerance.MODEL`)
SAFETY = MODEL.safety
ANALYTIC_ULPS = MODEL.analytic_ulps


@dataclass
class Comparison:
    """Elementwise comparison of one tensor (arrays shaped like the parameter)."""

    rel: Array
    tol: Array
    passed: Array
    floor: float
    #: error / tolerance, per element (< 1 passes)
    margin: Array | None = None
    #: tolerance, relative, at most eps_c^(1/3): the estimate resolves it (the headline's elements)
    resolved: Array | None = None
    #: absolute tolerance, per element
    tol_abs: Array | None = None


#: machine epsilon of a floating dtype, float64's for anything else (one definition:
#: :func:`gradcheck.numerical.machine_eps`)
eps_of = machine_eps


def claimed_eps(claimed: Array, param: Array) -> float:
    """Precision of a claimed gradient: its dtype's, or the parameter's when that is coarser
    (a float64 gradient of float32 parameters carries float32 rounding)."""
    coarser = claimed.dtype if claimed.dtype.itemsize <= param.dtype.itemsize else param.dtype
    return machine_eps(coarser)


def _smallest_normal(eps: float) -> float:
    """The smallest normal number of the floating type whose machine epsilon is ``eps``."""
    for t in (np.float16, np.float32, np.float64):
        if eps >= float(np.finfo(t).eps):
            return float(np.finfo(t).tiny)
    return float(np.finfo(np.longdouble).tiny)


def compare(claimed: Array, numerical: Array, error: Array, *, claimed_eps: float,
            rtol: float | None = None, global_scale: float = 0.0, claimed_noise: Array | None = None,
            term_scale: float = 0.0) -> Comparison:
    """Relative error, tolerance and margin of every element (see the module docstring).

    ``global_scale``: the largest numerical gradient entry over all tensors of the check;
    ``claimed_noise``: the measured rounding (sd) of each claimed entry; ``term_scale``: ``T``."""
    c = np.asarray(claimed, dtype=np.float64)
    d = np.asarray(numerical, dtype=np.float64)
    e = np.asarray(error, dtype=np.float64)
    with np.errstate(all="ignore"):
        scale = float(np.max(np.abs(d))) if d.size else 0.0
        floor = max(float(np.max(e)) if e.size else 0.0, claimed_eps * scale, np.finfo(np.float64).tiny)
        own = e if claimed_noise is None else e + np.asarray(claimed_noise, dtype=np.float64)
        rel, tol, passed, margin, resolved, tol_abs = _elementwise(
            c, d, own, floor, *_tensor_constants(claimed_eps, scale, global_scale, term_scale), rtol)
    return Comparison(rel, tol, passed, floor, margin, resolved, tol_abs)


def _tensor_constants(claimed_eps: float, scale: float, global_scale: float,
                      term_scale: float) -> tuple[float, float, float, float]:
    """One tensor's scalars of the model: ``analytic_ulps * eps_c``, the scale ``S`` added to
    ``|D_i|``, the smallest normal number of the claimed precision (below it a value has no
    relative precision left: such differences are never a verdict) and ``eps_c ** resolved_power``."""
    return (MODEL.analytic_ulps * claimed_eps, max(scale, global_scale, term_scale),
            _smallest_normal(claimed_eps), claimed_eps ** MODEL.resolved_power)


def _elementwise(c: Array, d: Array, own: Array, floor: Any, ulps_eps: Any, big: Any, smallest: Any,
                 resolved_limit: Any, rtol: float | None) -> tuple[Array, Array, Array, Array, Array, Array]:
    """The model's per-element arithmetic (float64 arrays; the per-tensor constants as scalars, or
    as arrays repeating each tensor's value over its elements: the same operations either way)."""
    absd = np.abs(d)
    denom = np.maximum(absd, floor)
    rel = np.abs(c - d) / denom
    tol_abs = MODEL.safety * own + ulps_eps * (absd + big) + smallest
    tol = tol_abs / denom
    limit = tol if rtol is None else np.maximum(tol, rtol)
    passed = rel <= limit
    margin = np.where(limit > 0, rel / limit, np.where(rel > 0, np.inf, 0.0))
    resolved = (absd > 0) & (tol <= resolved_limit)
    rel = np.where(np.isnan(rel), np.inf, rel)
    margin = np.where(np.isnan(margin), np.inf, margin)
    return rel, tol, passed & np.isfinite(rel), margin, resolved, tol_abs


@dataclass
class Comparisons:
    """:func:`compare_all`'s answer: the comparison's arrays over all tensors concatenated, the
    concatenated float64 inputs, and each tensor's :class:`Comparison` on demand (flat views)."""

    whole: Comparison
    claimed: Array
    numerical: Array
    error: Array
    #: tensor t is elements ``bounds[t]:bounds[t + 1]``
    bounds: list[int]
    #: each tensor's floor
    floors: list[float]

    @property
    def each(self) -> list[Comparison]:
        """Each tensor's comparison (flat views of the whole arrays)."""
        w, out = self.whole, []
        for t, floor in enumerate(self.floors):
            a, b = self.bounds[t], self.bounds[t + 1]
            rel, tol, passed, margin, resolved, tol_abs = (
                None if x is None else x[a:b] for x in (w.rel, w.tol, w.passed, w.margin, w.resolved, w.tol_abs))
            assert rel is not None and tol is not None and passed is not None
            out.append(Comparison(rel, tol, passed, floor, margin, resolved, tol_abs))
        return out


def compare_all(claimed: list[Array], numerical: list[Array], error: list[Array], *,
                claimed_eps: list[float], rtol: float | None = None, global_scale: float = 0.0,
                term_scale: float = 0.0) -> Comparisons | None:
    """:func:`compare` of several tensors at once (no claimed noise): one pass over all their
    elements concatenated, each tensor's floor and scale repeated over its elements; the same
    numbers as one :func:`compare` per tensor. ``None`` (compare them one by one) when a tensor is
    empty or an estimate is not finite. Each Comparison holds flat views of the shared arrays."""
    sizes = [int(np.size(d)) for d in numerical]
    if not sizes or min(sizes) == 0:
        return None
    d = np.concatenate([np.ravel(x) for x in numerical], dtype=np.float64)
    if not np.isfinite(d).all():
        return None
    c = np.concatenate([np.ravel(x) for x in claimed], dtype=np.float64)
    e = np.concatenate([np.ravel(x) for x in error], dtype=np.float64)
    starts = np.cumsum([0] + sizes[:-1])
    with np.errstate(all="ignore"):
        absd_max = np.maximum.reduceat(np.abs(d), starts).tolist()
        e_max = np.maximum.reduceat(e, starts).tolist()
    tiny = np.finfo(np.float64).tiny
    floors, constants = [], []
    for ceps, scale, em in zip(claimed_eps, absd_max, e_max):
        floors.append(max(em, ceps * scale, tiny))
        constants.append(_tensor_constants(ceps, scale, global_scale, term_scale))
    per = np.repeat(np.array([floors, *zip(*constants)], dtype=np.float64), sizes, axis=1)
    with np.errstate(all="ignore"):
        floor_, ulps_eps, big, smallest, resolved_limit = per  # each tensor's value over its elements
        arrays = _elementwise(c, d, e, floor_, ulps_eps, big, smallest, resolved_limit, rtol)
    rel, tol, passed, margin, resolved, tol_abs = arrays
    return Comparisons(Comparison(rel, tol, passed, math.nan, margin, resolved, tol_abs), c, d, e,
                       np.cumsum([0] + sizes).tolist(), floors)


def pair_error(a: Array, b: Array, *, floor_ulps: float = ANALYTIC_ULPS, eps: float = 2.220446049250313e-16,
               error: Array | None = None, scale: float = 0.0, where: Array | None = None) -> float:
    """Max relative error of ``a`` against reference ``b`` over the elements ``where`` selects, with
    the same kind of floor as :func:`compare`: ``max(error bound, floor_ulps * eps * max(max|b|,
    scale))`` (``scale``: the check's gradient scale, which keeps an exactly-zero gradient from
    reading as a huge relative error). How far two gradients (e.g. two oracles) are apart; not a
    verdict."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if where is not None:
        a, b = a[where], b[where]
        error = np.asarray(error)[where] if error is not None else None
    if a.size == 0:
        return 0.0
    with np.errstate(all="ignore"):
        big = max(float(np.max(np.abs(b))), scale)
        floor = max(floor_ulps * eps * big, float(np.max(error)) if error is not None and error.size else 0.0,
                    np.finfo(np.float64).tiny)
        r = np.abs(a - b) / np.maximum(np.abs(b), floor)
    r = np.where(np.isnan(r), np.inf, r)
    return float(np.max(r))
