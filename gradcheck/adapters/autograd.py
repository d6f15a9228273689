"""HIPS autograd adapter: ``loss_fn(params, X, y)`` written with ``autograd.numpy`` ->
``fn(params, X, y) -> (loss, grads)`` through ``autograd.value_and_grad``.

``params`` may be an array or nested dicts/lists/tuples of arrays (flattened to dotted names).
Primitives with hand-written derivatives (``autograd.extend.primitive`` + ``defvjp``) are
checked through their own vjp. ``fn.loss`` calls ``loss_fn`` on plain numpy arrays, which also
accept complex input, so the checker can use the complex step (error ~1e-16) on analytic code.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gradcheck.adapters._common import (
    AdaptedFn,
    cast_data,
    flatten,
    float_dtype,
    numpy_leaf,
    reject_complex,
    require,
    unflatten,
    unique_names,
    widened,
)

Array = np.ndarray


def as_fn(loss_fn: Callable[[Any, Any, Any], Any], params: Any, *,
          dtype: Any = "float64") -> tuple[AdaptedFn, dict[str, Array]]:
    """Wrap ``loss_fn(params, X, y) -> scalar`` (differentiable by autograd in ``params``).

    ``dtype``: the parameters' dtype in the check (default float64; None keeps each leaf's);
    floating ``X``/``y`` are cast to it. Returns ``(fn, params)`` with numpy copies.
    """
    autograd = require("autograd", "autograd")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(params, X, y), got {type(loss_fn).__name__}")
    dt = float_dtype(dtype)
    pairs = flatten(params)
    unique_names(pairs, "params")
    start = {n: numpy_leaf(n, leaf, dt, "params") for n, leaf in pairs}
    names = list(start)
    value_and_grad = autograd.value_and_grad(loss_fn)

    dtypes = {n: start[n].dtype for n in names}

    def compute_dtype(p) -> tuple[dict[str, np.dtype], np.dtype | None]:
        """The parameters' and the data's dtypes for this call: float64 throughout when the checker
        asks for its float64 second opinion (:func:`widened`), else the check's."""
        if widened(p, names, dtypes):
            return dict.fromkeys(names, np.dtype(np.float64)), np.dtype(np.float64)
        return dtypes, dt

    def grad_fn(p, X, y):
        reject_complex(p, "autograd (value_and_grad)")
        leaf_dtypes, data_dt = compute_dtype(p)
        tree = unflatten(params, {n: np.array(p[n], dtype=leaf_dtypes[n]) for n in names})
        Xc, yc = cast_data(X, data_dt), cast_data(y, data_dt)
        try:
            value, grads = value_and_grad(tree, Xc, yc)
        except TypeError:
            value = np.asarray(loss_fn(tree, Xc, yc))
            if value.size != 1:  # let the checker explain the per-sample vector (it never reduces it)
                return value, {}
            raise
        return np.asarray(value).copy(), {n: np.array(g, copy=True) for n, g in flatten(grads)}

    def loss_only(p, X, y):
        _, data_dt = compute_dtype(p)
        tree = unflatten(params, {n: np.array(p[n]) for n in names})
        return np.asarray(loss_fn(tree, cast_data(X, data_dt), cast_data(y, data_dt))).copy()

    return AdaptedFn(grad_fn, loss_only, names, "autograd", getattr(loss_fn, "__name__", "")), start


__all__ = ["as_fn"]
