"""JAX adapter: ``loss_fn(params, X, y)`` over a pytree of arrays -> ``fn(params, X, y) -> (loss, grads)``.

Gradients come from ``jax.value_and_grad``, which runs reverse mode only, so functions with
``jax.custom_vjp`` rules (where ``jax.test_util.check_grads``'s default modes raise TypeError)
are checked through their own backward rule. The pytree is flattened to dotted names
(``{"dense": {"W": ...}}`` -> ``"dense.W"``; list items by index).

Float64 needs JAX's x64 mode: with ``dtype="float64"`` (the default) :func:`as_fn` calls
``jax.config.update("jax_enable_x64", True)``. That switch is global for the process (arrays
created afterwards default to 64 bits); pass ``dtype="float32"`` or ``None`` to leave it alone.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcheck.adapters._common import AdaptedFn, cast_data, float_dtype, numpy_leaf, reject_complex, require

Array = np.ndarray


def _key_name(entry: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def dotted_names(tree: Any) -> tuple[list[str], list[Any], Any]:
    """``(names, leaves, treedef)`` of a pytree; names join the key path with dots."""
    jax = require("jax", "jax")
    pairs, treedef = jax.tree_util.tree_flatten_with_path(tree)
    names = [".".join(_key_name(e) for e in path) or "param" for path, _ in pairs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"params: two leaves flatten to the same name {dup!r}; rename a key")
    return names, [leaf for _, leaf in pairs], treedef


def enable_x64() -> None:
    """Turn on JAX's 64-bit mode (global to the process) unless it is on already."""
    jax = require("jax", "jax")
    if not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def as_fn(loss_fn: Callable[[Any, Any, Any], Any], params: Any, *, dtype: Any = "float64",
          jit: bool = True) -> tuple[AdaptedFn, dict[str, Array]]:
    """Wrap ``loss_fn(params, X, y) -> scalar`` (a JAX-traceable function of a pytree ``params``).

    Parameters
    ----------
    loss_fn : callable
        The loss as a function of the parameter pytree and the batch.
    params : pytree
        Dicts, lists, tuples, registered nodes of floating arrays: names and values.
    dtype : str, dtype or None
        ``"float64"`` (default), another floating dtype, or ``None`` to keep each leaf's dtype.
        Floating ``X``/``y`` are cast too. Float64 leaves enable x64 (global, see the module
        docstring).
    jit : bool
        Compile ``value_and_grad(loss_fn)`` once with ``jax.jit`` (fast finite differences).
        Code with Python control flow on traced values falls back to eager calls by itself.

    Returns
    -------
    (fn, params)
        ``params`` is a flat dict of numpy copies keyed by dotted name.
    """
    jax = require("jax", "jax")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(params, X, y), got {type(loss_fn).__name__}")
    dt = float_dtype(dtype)
    names, leaves, treedef = dotted_names(params)
    if not leaves:
        raise ValueError("params has no array leaves: nothing to check")
    start = {n: numpy_leaf(n, leaf, dt, "params") for n, leaf in zip(names, leaves)}
    if any(v.dtype == np.float64 for v in start.values()):
        enable_x64()  # float64 arrays would silently become float32 without it
    vg_eager = jax.value_and_grad(loss_fn)
    state = {"vg": jax.jit(vg_eager) if jit else vg_eager, "loss": jax.jit(loss_fn) if jit else loss_fn}
    concretization = tuple(getattr(jax.errors, n) for n in ("ConcretizationTypeError", "TracerBoolConversionError",
                                                            "TracerIntegerConversionError") if hasattr(jax.errors, n))

    def tree_of(p: Mapping[str, Array]) -> Any:
        """numpy leaves (jit moves them to the device itself: cheaper than jnp.asarray per leaf)."""
        reject_complex(p, "jax")
        return jax.tree_util.tree_unflatten(treedef, [np.asarray(p[n], dtype=start[n].dtype) for n in names])

    def run(kind: str, *args: Any) -> Any:
        try:
            return state[kind](*args)
        except concretization:
            if not jit or state[kind] is (vg_eager if kind == "vg" else loss_fn):
                raise
            state.update(vg=vg_eager, loss=loss_fn)  # Python control flow on values: no jit
            return state[kind](*args)

    def grad_fn(p, X, y):
        tree, Xc, yc = tree_of(p), cast_data(X, dt), cast_data(y, dt)
        try:
            value, grads = run("vg", tree, Xc, yc)
        except TypeError:
            value = np.asarray(run("loss", tree, Xc, yc))
            if value.size != 1:  # let the checker explain the per-sample vector (it never reduces it)
                return value, {}
            raise
        g_leaves = jax.tree_util.tree_leaves(grads)  # the structure of params: same order as names
        return np.asarray(value).copy(), {n: np.array(g, copy=True) for n, g in zip(names, g_leaves)}

    def loss_only(p, X, y):
        return np.asarray(run("loss", tree_of(p), cast_data(X, dt), cast_data(y, dt))).copy()

    return AdaptedFn(grad_fn, loss_only, names, "jax", getattr(loss_fn, "__name__", "")), start


__all__ = ["as_fn", "dotted_names", "enable_x64"]
