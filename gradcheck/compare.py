"""The error metric and the tolerance model, defined once.

For each element ``i`` of a tensor ``t`` with claimed gradient ``c_i``, numerical estimate ``D_i``
and the estimate's absolute error bound ``E_i`` (rounding + truncation, see
:mod:`gradcheck.numerical`)::

    floor_t   = max( max_i E_i , eps_c * max_i |D_i| )          # the tensor's resolvable scale
    rel_i     = |c_i - D_i| / max(|D_i|, floor_t)               # the reported relative error
    tol_abs_i = SAFETY * E_i + ANALYTIC_ULPS * eps_c * (|D_i| + G)
    tol_i     = tol_abs_i / max(|D_i|, floor_t)                 # the same tolerance, relative
    passed_i  = rel_i <= max(tol_i, rtol)                       # rtol: optional user override

``eps_c`` is the machine epsilon of the claimed gradient's dtype; ``G`` is the largest ``|D|``
over all tensors of the check (an entry that is a sum of large cancelling terms, e.g. a bias
gradient summed over the batch, carries rounding of the size of those terms, which the tensor's
own small entries do not show; the network's largest gradient is the available proxy). The floor keeps tiny true
gradients (|D| far below what the estimate resolves) from producing huge relative errors on
correct code, without a magic constant. Per tensor the metric is the max over its elements
(kink elements left out); per check, the max over tensors.

``SAFETY = 10``: ``E_i`` is a one-sd rounding estimate (plus a truncation estimate where refined);
10 sd leaves a false-alarm probability far below 1e-12 per element for Gaussian-like rounding and
still covers a 3x misestimate of the noise. ``ANALYTIC_ULPS = 16``: the claimed gradient has its
own rounding, a few ulps of the gradient's scale per layer of backprop. This term matters where
the estimate itself is nearly exact (complex step); for finite differences ``E`` dominates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Array = np.ndarray

SAFETY = 10.0
ANALYTIC_ULPS = 16.0


@dataclass
class Comparison:
    """Elementwise comparison of one tensor (arrays shaped like the parameter)."""

    rel: Array
    tol: Array
    passed: Array
    floor: float


def eps_of(dtype) -> float:
    dt = np.dtype(dtype)
    return float(np.finfo(dt).eps) if dt.kind == "f" else float(np.finfo(np.float64).eps)


def compare(claimed: Array, numerical: Array, error: Array, *, claimed_eps: float,
            rtol: float | None = None, global_scale: float = 0.0) -> Comparison:
    """Relative error and tolerance of every element (see the module docstring).

    ``global_scale``: the largest numerical gradient entry over all tensors of the check."""
    c = np.asarray(claimed, dtype=np.float64)
    d = np.asarray(numerical, dtype=np.float64)
    e = np.asarray(error, dtype=np.float64)
    with np.errstate(all="ignore"):
        scale = float(np.max(np.abs(d))) if d.size else 0.0
        floor = max(float(np.max(e)) if e.size else 0.0, claimed_eps * scale, np.finfo(np.float64).tiny)
        denom = np.maximum(np.abs(d), floor)
        diff = np.abs(c - d)
        rel = diff / denom
        tol_abs = SAFETY * e + ANALYTIC_ULPS * claimed_eps * (np.abs(d) + max(scale, global_scale))
        tol = tol_abs / denom
        limit = tol if rtol is None else np.maximum(tol, rtol)
        passed = rel <= limit
    rel = np.where(np.isnan(rel), np.inf, rel)
    return Comparison(rel, tol, passed & np.isfinite(rel), floor)


def pair_error(a: Array, b: Array, *, floor_ulps: float = ANALYTIC_ULPS, eps: float = 2.220446049250313e-16,
               error: Array | None = None) -> float:
    """Max relative error of ``a`` against reference ``b``, with the same kind of floor as
    :func:`compare`: ``max(error bound, floor_ulps * eps * max|b|)``. Used to report how far two
    gradients (e.g. two oracles) are apart; not a verdict."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    with np.errstate(all="ignore"):
        scale = float(np.max(np.abs(b)))
        floor = max(floor_ulps * eps * scale, float(np.max(error)) if error is not None else 0.0, 1e-300)
        r = np.abs(a - b) / np.maximum(np.abs(b), floor)
    r = np.where(np.isnan(r), np.inf, r)
    return float(np.max(r))
