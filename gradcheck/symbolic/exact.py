"""Ground truth: the SymPy network gradient evaluated with mpmath at high precision.

The same CSE-reduced gradient expressions as :func:`~gradcheck.symbolic.network.network_gradient`
are lambdified for mpmath and evaluated sample by sample with every input converted exactly
(each float64 is an mpf), at ``dps`` significant digits, then summed over the batch in mpf and
rounded once to float64. At 50 digits the rounding of the final float64 is the only error that
matters: this is the reference against which analytic, finite-difference and float SymPy
gradients are measured (``benchmarks/bench_accuracy.py``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mpmath
import numpy as np

from gradcheck.symbolic.network import (
    DEFAULT_MAX_PARAMS,
    DEFAULT_MAX_TERMS,
    DEFAULT_TIMEOUT,
    _as_spec,
    _inputs,
    _mp_samples,
    _unflatten,
    compile_gradient,
)

Array = np.ndarray
MIN_DPS = 20


def exact_gradient(spec: Any, params: Mapping[str, Any], X: Any, y: Any, dps: int = 50, *,
                   return_mpf: bool = False, max_params: int = DEFAULT_MAX_PARAMS,
                   max_terms: int = DEFAULT_MAX_TERMS, timeout: float = DEFAULT_TIMEOUT,
                   method: str = "graph") -> dict[str, Array] | tuple[dict[str, Array], dict[str, Array]]:
    """The gradient of ``spec``'s loss at ``(params, X, y)`` computed with mpmath at ``dps`` digits.

    Returns float64 arrays (each the correctly rounded high-precision value) keyed and shaped like
    ``params``; with ``return_mpf=True`` also a second dict of object arrays of ``mpmath.mpf``.
    Same bounds as :func:`network_gradient` (raises :class:`SymbolicSkipped`). Cost: one mpmath
    evaluation of the compiled gradient per sample (about ``batch x CSE terms`` mpf operations).
    """
    if not isinstance(dps, int) or isinstance(dps, bool) or dps < MIN_DPS:
        raise ValueError(f"dps={dps!r}: expected an integer >= {MIN_DPS} (ground truth needs more digits "
                         "than float64's 16)")
    spec = _as_spec(spec)
    theta, Xa, Y, eps, w = _inputs(spec, params, X, y)
    compiled = compile_gradient(spec, max_params=max_params, max_terms=max_terms, timeout=timeout,
                                method=method)
    per_sample = _mp_samples(compiled, theta, Xa, Y, eps, w, dps)
    with mpmath.workdps(dps):
        total = [mpmath.fsum(col) for col in zip(*per_sample)] if per_sample else []
    mp_flat = np.empty(len(theta), dtype=object)
    mp_flat[:] = total if total else [mpmath.mpf(0)] * len(theta)
    as_float = np.array([float(v) for v in mp_flat], dtype=np.float64)
    floats = _unflatten(spec, as_float)
    if return_mpf:
        return floats, _unflatten(spec, mp_flat)
    return floats
