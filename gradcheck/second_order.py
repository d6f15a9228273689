"""Second-order checks: Hessian-vector products against differences of fn's own gradient.

``check_hvp(fn, hvp, params, X, y)`` first checks fn's gradient (:func:`gradcheck.check`); only
when it passes is the gradient map ``g(params) = fn(params, X, y)[1]`` trusted as the function
whose directional derivative ``hvp(params, X, y, v)`` must be: a JVP check of ``g`` along ``v``
(:func:`gradcheck.check_jvp`, same error model, kinks and localization), on the full Hessian when
it is small and on random directions otherwise. With a ``spec`` the SymPy oracle joins: its exact
Hessian-vector products (:mod:`gradcheck.symbolic.second`) along random directions.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcheck import checker, operators
from gradcheck.result import Problem, Result

Array = np.ndarray
Fn = Callable[[dict, Any, Any], Any]
Hvp = Callable[[dict, Any, Any, dict], Mapping[str, Any]]

__all__ = ["check_hvp", "assert_hvp", "GRAD_PREFIX"]

#: the gradient of parameter ``W`` is the output ``grad_W`` of the operator checked
GRAD_PREFIX = "grad_"


def check_hvp(fn: Fn, hvp: Hvp, params: Mapping[str, Array], X: Any, y: Any, *, spec: Any = None,
              mode: str = "auto", max_rows: int = 64, scheme: str = "auto", rtol: float | None = None,
              detect_kinks: bool = True, seed: int = 0, name: str | None = None,
              directions: int = 3) -> Result:
    """Check ``hvp(params, X, y, v) -> dict`` (the Hessian of fn's loss times ``v``).

    Parameters
    ----------
    fn : callable
        ``fn(params, X, y) -> (loss, grads)``, the first-order code; checked first.
    hvp : callable
        ``hvp(params, X, y, v) -> dict`` with the keys and shapes of ``params``: ``H v``.
    spec : NetworkSpec, optional
        The network fn computes: adds the SymPy oracle (``directions`` random directions) where
        the network is small enough.
    mode, max_rows : str, int
        ``"jacobian"``: every Hessian column (a unit ``v`` per parameter element); ``"random"``:
        one random ``v`` per tensor and one over all; ``"auto"``: columns when P <= max_rows.
    scheme, rtol, detect_kinks, seed, name
        As in :func:`gradcheck.check`.

    Returns
    -------
    Result
        The second-order result (blocks ``dgrad_<a>/d<b>`` of the Hessian); if the first-order
        check fails, that result, with a problem saying the second order was not checked.
    """
    if not callable(hvp):
        raise TypeError(f"hvp must be callable as hvp(params, X, y, v) -> dict, got {type(hvp).__name__}")
    if not (isinstance(directions, int) and not isinstance(directions, bool) and directions >= 1):
        raise ValueError(f"directions={directions!r}: expected an int >= 1")
    t0 = time.perf_counter()
    first = checker.check.__wrapped__(fn, params, X, y, scheme=scheme, rtol=rtol, name=name,  # type: ignore[attr-defined]
                                      detect_kinks=detect_kinks, seed=seed, quiet=True, symbolic=False)
    if not first.passed:
        first.problems.append(Problem("first_order_failed", "second order not checked: fn's own gradient fails "
                                                            "(the Hessian-vector product is checked against it)"))
        return _observed(first)
    X_fixed, y_fixed = _copy(X), _copy(y)

    def gradient(inputs: dict) -> dict[str, Array]:
        grads = fn(inputs, _copy(X_fixed), _copy(y_fixed))[1]
        return {GRAD_PREFIX + k: grads[k] for k in params}

    def tangent(inputs: dict, v: dict) -> dict[str, Any]:
        out = hvp(inputs, _copy(X_fixed), _copy(y_fixed), v)
        if not isinstance(out, Mapping):
            raise TypeError(f"hvp must return a dict keyed like params, got {type(out).__name__}")
        missing = [k for k in params if k not in out]
        if missing:
            raise KeyError(f"hvp's result lacks {', '.join(map(repr, missing))}")
        return {GRAD_PREFIX + k: out[k] for k in params}

    result = operators.check_jvp.__wrapped__(gradient, tangent, dict(params), mode=mode,  # type: ignore[attr-defined]
                                             max_rows=max_rows, scheme=scheme, rtol=rtol,
                                             detect_kinks=detect_kinks, seed=seed, name=name)
    result.operator = {**(result.operator or {}), "kind": "hvp", "first_order": first.to_dict()["max_rel_error"]}
    result.oracles["hvp_vs_numerical"] = result.max_rel_error
    if spec is not None:
        _add_symbolic(result, spec, hvp, params, X_fixed, y_fixed, directions, seed)
    result.seconds = time.perf_counter() - t0
    return _observed(result)


def _add_symbolic(result: Result, spec: Any, hvp: Hvp, params: Mapping[str, Array], X: Any, y: Any,
                  directions: int, seed: int) -> None:
    """Compare hvp with SymPy's exact Hessian-vector products along ``directions`` random v."""
    from gradcheck.symbolic.network import SymbolicSkipped  # noqa: PLC0415 - SymPy on use only
    from gradcheck.symbolic.second import network_hvp  # noqa: PLC0415

    rng = np.random.default_rng(seed + 1)
    worst = 0.0
    eps = max(float(np.finfo(v.dtype).eps) for v in params.values())
    for _ in range(directions):
        v = {k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}
        try:
            exact = network_hvp(spec, params, X, y, v)
        except SymbolicSkipped as skip:
            result.symbolic_status = f"skipped: {skip}"
            return
        claimed = hvp({k: p.copy() for k, p in params.items()}, _copy(X), _copy(y), v)
        for k in params:
            c, e = np.asarray(claimed[k], np.float64), np.asarray(exact[k], np.float64)
            scale = max(float(np.max(np.abs(e))), 1e-300)
            worst = max(worst, float(np.max(np.abs(c - e))) / scale)
    result.oracles["hvp_vs_symbolic"] = worst
    result.symbolic_status = "ok"
    # the claimed product must match exact arithmetic to the dtype's rounding (a few hundred ulps
    # of the product's scale covers the network's accumulated rounding; a bug is O(1) off)
    limit = 1e3 * eps if eps < 1e-10 else 1e-2
    if not math.isfinite(worst) or worst > limit:
        result.passed = False
        result.problems.append(Problem("symbolic_disagrees", f"hvp differs from SymPy's exact Hessian-vector "
                                                             f"product by {worst:.2e} (normwise per tensor, > "
                                                             f"{limit:.1e})"))


def _copy(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, Mapping):
        return {k: _copy(v) for k, v in obj.items()}
    return obj


def _observed(result: Result) -> Result:
    for observe in checker.observers:
        observe(result)
    return result


def assert_hvp(fn: Fn, hvp: Hvp, params: Mapping[str, Array], X: Any, y: Any, **options: Any) -> None:
    """:func:`check_hvp`; unless it passed, raise ``AssertionError`` with the explanation."""
    from gradcheck.result import failure_line  # noqa: PLC0415

    result = check_hvp(fn, hvp, params, X, y, **options)
    if not result.passed:
        raise AssertionError(f"{failure_line(result)}\n{result}")
