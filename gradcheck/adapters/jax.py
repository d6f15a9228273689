"""JAX adapter: ``loss_fn(params, X, y)`` over a pytree of arrays -> ``fn(params, X, y) -> (loss, grads)``.

Gradients come from ``jax.value_and_grad``, which runs reverse mode only, so functions with
``jax.custom_vjp`` rules (where ``jax.test_util.check_grads``'s default modes raise TypeError)
are checked through their own backward rule. The pytree is flattened to dotted names
(``{"dense": {"W": ...}}`` -> ``"dense.W"``; list items by index).

Float64 needs JAX's x64 mode: with ``dtype="float64"`` (the default) :func:`as_fn` calls
``jax.config.update("jax_enable_x64", True)``. That switch is global for the process (arrays
created afterwards default to 64 bits); pass ``dtype="float32"`` or ``None`` to leave it alone.

One function on its own (a ``jax.custom_vjp`` or ``jax.custom_jvp`` op, a layer) is checked as an
operator by :func:`check_vjp` (``jax.vjp``) and :func:`check_jvp` (``jax.jvp``), every output
against every floating array argument; ``order=2`` also checks the derivative of the VJP (JVP)
itself, like ``jax.test_util.check_grads(order=2)``:

>>> check_vjp(my_op, x, w, order=2)                           # doctest: +SKIP
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradcheck import operators
from gradcheck.adapters._common import (
    AdaptedFn,
    cast_data,
    combine_orders,
    float_dtype,
    numpy_leaf,
    reject_complex,
    require,
    second_order_result,
    tell_observers,
    unique_name,
    unobserved,
    widened,
)
from gradcheck.result import Result

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

    dtypes = {n: start[n].dtype for n in names}

    def wide(p: Mapping[str, Array]) -> bool:
        """The checker's float64 second opinion (:func:`widened`), computed in float64 when JAX's
        64-bit mode is on (without it float64 arrays become float32: the second opinion then sees
        no move and is not used)."""
        return bool(jax.config.jax_enable_x64) and widened(p, names, dtypes)

    def tree_of(p: Mapping[str, Array], wide: bool) -> Any:
        """numpy leaves (jit moves them to the device itself: cheaper than jnp.asarray per leaf)."""
        reject_complex(p, "jax")
        return jax.tree_util.tree_unflatten(
            treedef, [np.asarray(p[n], dtype=np.float64 if wide else dtypes[n]) for n in names])

    def run(kind: str, *args: Any) -> Any:
        try:
            return state[kind](*args)
        except concretization:
            if not jit or state[kind] is (vg_eager if kind == "vg" else loss_fn):
                raise
            state.update(vg=vg_eager, loss=loss_fn)  # Python control flow on values: no jit
            return state[kind](*args)

    def grad_fn(p, X, y):
        w = wide(p)
        ddt = np.dtype(np.float64) if w else dt
        tree, Xc, yc = tree_of(p, w), cast_data(X, ddt), cast_data(y, ddt)
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
        w = wide(p)
        ddt = np.dtype(np.float64) if w else dt
        return np.asarray(run("loss", tree_of(p, w), cast_data(X, ddt), cast_data(y, ddt))).copy()

    return AdaptedFn(grad_fn, loss_only, names, "jax", getattr(loss_fn, "__name__", "")), start


# -- one function as an operator: check_vjp, check_jvp -----------------------------------------------
#: order 2 of check_vjp: the VJP's result for input ``x`` is the output ``grad_x``, the cotangent of
#: output ``out`` is the input ``grad_out``
GRAD_PREFIX = "grad_"
#: order 2 of check_jvp: the tangent of input ``x`` is the input ``tangent_x``, output ``out``'s the
#: output ``tangent_out``
TANGENT_PREFIX = "tangent_"


def _arg_names(fun: Any, n: int) -> list[str]:
    """fun's positional parameter names; ``input{i}`` where there is none (``*args``)."""
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [params[i].name if i < len(params) and params[i].kind in positional else f"input{i}" for i in range(n)]
    return names if len(set(names)) == n else [f"input{i}" for i in range(n)]


class _Jitted:
    """``jax.jit(fn)``, falling back to ``fn`` itself for good when compiling fails (Python control
    flow on traced values) and the eager call works."""

    def __init__(self, jax: Any, fn: Callable[..., Any], jit: bool) -> None:
        self.eager = fn
        self.current = jax.jit(fn) if jit else fn

    def __call__(self, *args: Any) -> Any:
        if self.current is self.eager:
            return self.eager(*args)
        try:
            return self.current(*args)
        except Exception:
            out = self.eager(*args)   # fun's own error, if it has one, comes from here
            self.current = self.eager
            return out


class _Operator:
    """``fun(*args)`` with numpy in and out. The array leaves of the arguments (pytrees allowed) are
    the operator's inputs, named after fun's parameters and dotted into pytrees (``params.W``);
    other leaves (Python numbers, strings) are passed as given. Floating inputs (all, or ``wrt``)
    are differentiated, the others (integer indices) are constants."""

    def __init__(self, fun: Any, args: Sequence[Any], wrt: Sequence[str] | None, jit: bool) -> None:
        jax = require("jax", "jax")
        if not callable(fun):
            raise TypeError(f"fun must be callable as fun(*args), got {type(fun).__name__}")
        self.jax, self.jnp, self.fun = jax, require("jax.numpy", "jax"), fun
        self.label = str(getattr(fun, "__name__", None) or type(fun).__name__)
        self.template: list[tuple[Any, list[tuple[bool, Any]]]] = []
        self.arrays: dict[str, Array] = {}
        for argname, arg in zip(_arg_names(fun, len(args)), args):
            pairs, treedef = jax.tree_util.tree_flatten_with_path(arg)
            slots: list[tuple[bool, Any]] = []
            for path, leaf in pairs:
                if not isinstance(leaf, (np.ndarray, np.generic, jax.Array)):
                    slots.append((False, leaf))
                    continue
                name = ".".join([argname, *(_key_name(e) for e in path)])
                a = np.array(leaf, copy=True)
                if a.dtype.kind == "c":
                    raise TypeError(f"argument {name!r} is complex ({a.dtype}): the jax adapter checks real inputs only")
                if a.dtype.kind not in "fiub" or a.dtype.kind == "f" and a.dtype.itemsize < 2:
                    raise ValueError(f"argument {name!r} has dtype {a.dtype}, which gradcheck cannot difference; "
                                     "check it in float32 or float64")
                if name in self.arrays:
                    raise ValueError(f"two arguments are named {name!r}; rename a key")
                slots.append((True, name))
                self.arrays[name] = a
            self.template.append((treedef, slots))
        floating = [k for k, a in self.arrays.items() if a.dtype.kind == "f" and a.size]
        if wrt is None:
            self.wrt = floating
        else:
            if isinstance(wrt, str):
                raise TypeError(f"wrt={wrt!r}: expected a list of argument names")
            unknown = [k for k in wrt if k not in floating]
            if unknown:
                raise ValueError(f"wrt={list(wrt)!r}: {unknown[0]!r} is not a floating array argument (they are: "
                                 f"{', '.join(map(repr, floating))})")
            self.wrt = [k for k in floating if k in wrt]
        if not self.wrt:
            raise ValueError("no argument is a floating array: nothing to differentiate (Python numbers and integer "
                             "arrays are passed as constants)")
        if any(a.dtype == np.float64 for a in self.arrays.values()):
            enable_x64()  # float64 arrays would silently become float32 without it
        self.f_run = _Jitted(jax, lambda diff, const: self.apply(diff, const), jit)
        self.vjp_run = _Jitted(jax, self.vjp_core, jit)
        self.jvp_run = _Jitted(jax, self.jvp_core, jit)
        self.out_names: list[str] = []

    # -- pure jax functions of (the differentiated arrays, the constants, ...) ----------------------
    def apply(self, diff: Sequence[Any], const: Mapping[str, Any]) -> Any:
        values = {k: self.jnp.asarray(v) for k, v in const.items()}
        values.update((k, self.jnp.asarray(v)) for k, v in zip(self.wrt, diff))
        tu = self.jax.tree_util
        return self.fun(*[tu.tree_unflatten(td, [values[v] if is_input else v for is_input, v in slots])
                          for td, slots in self.template])

    def _floating(self, leaf: Any) -> bool:
        return bool(self.jnp.issubdtype(self.jnp.result_type(leaf), self.jnp.inexact))

    def vjp_core(self, diff: Sequence[Any], const: Mapping[str, Any], cts: Sequence[Any]) -> tuple:
        """jax.vjp's gradients for ``cts``, one cotangent per floating output leaf."""
        out, pullback = self.jax.vjp(lambda *d: self.apply(d, const), *diff)
        leaves, treedef = self.jax.tree_util.tree_flatten(out)
        given = iter(cts)
        full = [next(given) if self._floating(leaf) else np.zeros(np.shape(leaf), self.jax.dtypes.float0)
                for leaf in leaves]
        return tuple(pullback(self.jax.tree_util.tree_unflatten(treedef, full)))

    def jvp_core(self, diff: Sequence[Any], const: Mapping[str, Any], tans: Sequence[Any]) -> tuple:
        """jax.jvp's tangents of the floating output leaves."""
        out, tangent = self.jax.jvp(lambda *d: self.apply(d, const), tuple(diff), tuple(tans))
        leaves = self.jax.tree_util.tree_leaves(out)
        return tuple(t for leaf, t in zip(leaves, self.jax.tree_util.tree_leaves(tangent)) if self._floating(leaf))

    # -- numpy in and out ------------------------------------------------------------------------
    def split(self, values: Mapping[str, Array]) -> tuple[tuple, dict[str, Array]]:
        reject_complex({k: values[k] for k in self.arrays}, "jax")
        diff = tuple(np.asarray(values[k], self.arrays[k].dtype) for k in self.wrt)
        return diff, {k: np.asarray(values[k], self.arrays[k].dtype) for k in self.arrays if k not in self.wrt}

    def structure(self, out: Any) -> tuple[str, list[str], list[Any]]:
        """``(kind, names, leaves)`` of fun's output: one array (``out``), a flat tuple (``out0``,
        ``out1``, ...), or else a dict of dotted pytree paths (``out1.a`` under a tuple)."""
        pairs, _ = self.jax.tree_util.tree_flatten_with_path(out)
        leaves = [leaf for _, leaf in pairs]
        if len(pairs) == 1 and not pairs[0][0]:
            return "array", ["out"], leaves
        if isinstance(out, (tuple, list)) and all(len(path) == 1 for path, _ in pairs) and len(pairs) == len(out):
            return "tuple", [f"out{i}" for i in range(len(pairs))], leaves
        names = [".".join(_key_name(e) for e in path) for path, _ in pairs]
        if isinstance(out, (tuple, list)):
            names = [f"out{n}" for n in names]
        return "dict", names, leaves

    def numpy(self, kind: str, names: list[str], leaves: Sequence[Any]) -> Any:
        arrays = [np.zeros(np.shape(a), np.float64) if np.asarray(a).dtype == self.jax.dtypes.float0
                  else np.array(a, copy=True) for a in leaves]
        if kind == "array":
            return arrays[0]
        return tuple(arrays) if kind == "tuple" else dict(zip(names, arrays))

    def f(self, values: Mapping[str, Array]) -> Any:
        out = self.f_run(*self.split(values))
        kind, names, leaves = self.structure(out)
        self.out_names = names
        return self.numpy(kind, names, leaves)

    def cotangents(self, cotangents: Any, floating: Sequence[int], dtypes: Sequence[np.dtype]) -> tuple:
        """check_vjp's cotangents (fun's output structure, None for non-floating) as a tuple of the
        floating outputs' cotangents in leaf order."""
        if isinstance(cotangents, Mapping):
            listed = [cotangents[n] for n in self.out_names]
        elif isinstance(cotangents, tuple):
            listed = list(cotangents)
        else:
            listed = [cotangents]
        return tuple(np.asarray(listed[i], dtypes[i]) for i in floating)

    def f_vjp(self, values: Mapping[str, Array], cotangents: Any) -> dict[str, Any]:
        diff, const = self.split(values)
        out = self.f_run(diff, const)
        _, names, leaves = self.structure(out)
        self.out_names = names
        floating = [i for i, leaf in enumerate(leaves) if self._floating(leaf)]
        cts = self.cotangents(cotangents, floating, [np.asarray(leaf).dtype for leaf in leaves])
        grads = self.vjp_run(diff, const, cts)
        return {k: np.array(g, copy=True) for k, g in zip(self.wrt, grads)}

    def f_jvp(self, values: Mapping[str, Array], tangents: Mapping[str, Array]) -> Any:
        diff, const = self.split(values)
        tans = tuple(np.asarray(tangents[k], self.arrays[k].dtype) for k in self.wrt)
        out = self.f_run(diff, const)
        kind, names, leaves = self.structure(out)
        given = iter(self.jvp_run(diff, const, tans))
        tangent = [next(given) if self._floating(leaf) else np.zeros(np.shape(leaf)) for leaf in leaves]
        return self.numpy(kind, names, tangent)


def _seed(options: Mapping[str, Any]) -> int:
    seed = options.get("seed", 0)
    return int(seed) if isinstance(seed, (int, np.integer)) else 0


def check_vjp(fun: Callable[..., Any], *args: Any, order: int = 1, name: str | None = None, jit: bool = True,
              **options: Any) -> Result:
    """Check ``jax.vjp`` of ``fun`` (a ``jax.custom_vjp`` rule, a ``custom_jvp`` one transposed, or
    plain jax code) against finite differences of ``fun``, with :func:`gradcheck.check_vjp`.

    Parameters
    ----------
    fun : callable
        ``fun(*args) -> array, tuple or pytree of arrays``.
    *args
        Its arguments: arrays or pytrees of arrays. Floating array leaves are differentiated (or
        those named in ``wrt=[...]``); integer arrays and Python numbers are constants. Inputs are
        named after fun's parameters (``x``, ``params.W`` inside a pytree; ``input{i}`` for
        ``*args``), outputs ``out`` / ``out0, out1, ...`` / the pytree's dotted paths. Float64
        arrays turn on JAX's x64 mode (global: see the module docstring).
    order : int
        ``2``: also check the VJP itself, the operator ``(args, cotangents) -> gradients``, with
        its own VJP (``jax.vjp`` of the vjp), as ``jax.test_util.check_grads(order=2,
        modes=("rev",))``. One result for both (:func:`gradcheck.adapters.torch.check_function`'s
        layout): its name says which order failed; second-order blocks are ``dgrad_x/dx`` and
        ``dgrad_x/dgrad_out`` (``grad_out``: the cotangent of ``out``).
    jit : bool
        Compile fun, its VJP and JVP with ``jax.jit`` (falls back to eager calls by itself).
    **options
        :func:`gradcheck.check_vjp`'s: ``wrt``, ``mode``, ``cotangents``, ``max_rows``,
        ``nondet_tol``, ``scheme``, ``rtol``, ``detect_kinks``, ``seed``.
    """
    if order not in (1, 2):
        raise ValueError(f"order={order!r}: expected 1 or 2")
    op = _Operator(fun, args, options.pop("wrt", None), jit)
    if order == 1:
        return operators.check_vjp(op.f, op.f_vjp, op.arrays, wrt=op.wrt, name=name, **options)
    first = unobserved(operators.check_vjp)(op.f, op.f_vjp, op.arrays, wrt=op.wrt, **options)
    second = second_order_result(first, lambda: _vjp_of_vjp(op, options))
    return tell_observers(combine_orders(first, second, name or op.label, ("vjp", "vjp of the vjp")))


def _vjp_of_vjp(op: _Operator, options: dict[str, Any]) -> Result:
    """``(args, cotangents) -> gradients`` checked with its own VJP."""
    jax = op.jax
    base = op.f(op.arrays)
    structure = operators.Structure.of(base)
    floating = structure.floating()
    cot_names: list[str] = []
    for i in floating:
        cot_names.append(unique_name(GRAD_PREFIX + structure.names[i], [*op.arrays, *cot_names]))
    rng = np.random.default_rng(_seed(options))
    inputs = dict(op.arrays)
    for i, c in zip(floating, cot_names):
        inputs[c] = rng.standard_normal(structure.shapes[i]).astype(structure.dtypes[i])
    dtypes = [structure.dtypes[i] for i in floating]

    def split(values: Mapping[str, Array]) -> tuple[tuple, dict, tuple]:
        diff, const = op.split(values)
        return diff, const, tuple(np.asarray(values[c], d) for c, d in zip(cot_names, dtypes))

    def vjp2_core(diff: tuple, const: dict, cts: tuple, v: tuple) -> tuple:
        _, pullback = jax.vjp(lambda d, c: op.vjp_core(d, const, c), diff, cts)
        return pullback(v)

    vjp2_run = _Jitted(jax, vjp2_core, op.vjp_run.current is not op.vjp_run.eager)

    def h(values: Mapping[str, Array]) -> dict[str, Array]:
        grads = op.vjp_run(*split(values))
        return {GRAD_PREFIX + k: np.array(g, copy=True) for k, g in zip(op.wrt, grads)}

    def h_vjp(values: Mapping[str, Array], v: Mapping[str, Array]) -> dict[str, Any]:
        vs = tuple(np.asarray(v[GRAD_PREFIX + k], op.arrays[k].dtype) for k in op.wrt)
        d_diff, d_cts = vjp2_run(*split(values), vs)
        return {**{k: np.array(g, copy=True) for k, g in zip(op.wrt, d_diff)},
                **{c: np.array(g, copy=True) for c, g in zip(cot_names, d_cts)}}

    wrt2 = [*op.wrt, *cot_names]
    return unobserved(operators.check_vjp)(h, h_vjp, inputs, **{**options, "wrt": wrt2})


def check_jvp(fun: Callable[..., Any], *args: Any, order: int = 1, name: str | None = None, jit: bool = True,
              **options: Any) -> Result:
    """Check ``jax.jvp`` of ``fun`` (a ``jax.custom_jvp`` rule, or plain jax code) against
    directional differences of ``fun``, with :func:`gradcheck.check_jvp`; arguments and names as in
    :func:`check_vjp`. ``order=2`` also checks the JVP itself, ``(args, tangents) -> output
    tangents``, with its own JVP (second-order blocks ``dtangent_out/dx``, ``dtangent_out/dtangent_x``).

    A ``jax.custom_vjp`` function has no forward mode (jax raises ``TypeError: can't apply
    forward-mode autodiff (jvp) to a custom_vjp function``): this raises ``ValueError`` saying so;
    check it with :func:`check_vjp`. ``**options``: :func:`gradcheck.check_jvp`'s (``wrt``,
    ``mode``, ``max_rows``, ``scheme``, ``rtol``, ``detect_kinks``, ``seed``).
    """
    if order not in (1, 2):
        raise ValueError(f"order={order!r}: expected 1 or 2")
    op = _Operator(fun, args, options.pop("wrt", None), jit)
    try:
        op.f_jvp(op.arrays, {k: np.zeros_like(op.arrays[k]) for k in op.wrt})
    except TypeError as exc:
        if "custom_vjp" in str(exc):
            raise ValueError(f"{op.label} has no forward mode: it is (or calls) a jax.custom_vjp function, and jax "
                             f"raises TypeError: {str(exc).splitlines()[0]} Check its reverse mode with "
                             "gradcheck.adapters.jax.check_vjp instead.") from None
    except Exception:
        pass  # a fault of fun: the check reports it
    if order == 1:
        return operators.check_jvp(op.f, op.f_jvp, op.arrays, wrt=op.wrt, name=name, **options)
    first = unobserved(operators.check_jvp)(op.f, op.f_jvp, op.arrays, wrt=op.wrt, **options)
    second = second_order_result(first, lambda: _jvp_of_jvp(op, options))
    return tell_observers(combine_orders(first, second, name or op.label, ("jvp", "jvp of the jvp")))


def _jvp_of_jvp(op: _Operator, options: dict[str, Any]) -> Result:
    """``(args, tangents) -> output tangents`` checked with its own JVP."""
    jax = op.jax
    structure = operators.Structure.of(op.f(op.arrays))
    out_names = [TANGENT_PREFIX + structure.names[i] for i in structure.floating()]
    tan_names: list[str] = []
    for k in op.wrt:
        tan_names.append(unique_name(TANGENT_PREFIX + k, [*op.arrays, *tan_names]))
    rng = np.random.default_rng(_seed(options))
    inputs = dict(op.arrays)
    for k, t in zip(op.wrt, tan_names):
        inputs[t] = rng.standard_normal(op.arrays[k].shape).astype(op.arrays[k].dtype)

    def split(values: Mapping[str, Array]) -> tuple[tuple, dict, tuple]:
        diff, const = op.split(values)
        return diff, const, tuple(np.asarray(values[t], op.arrays[k].dtype) for k, t in zip(op.wrt, tan_names))

    def jvp2_core(diff: tuple, const: dict, tans: tuple, d_diff: tuple, d_tans: tuple) -> tuple:
        _, tangent = jax.jvp(lambda d, t: op.jvp_core(d, const, t), (diff, tans), (d_diff, d_tans))
        return tangent

    jvp2_run = _Jitted(jax, jvp2_core, op.jvp_run.current is not op.jvp_run.eager)

    def h(values: Mapping[str, Array]) -> dict[str, Array]:
        return {n: np.array(t, copy=True) for n, t in zip(out_names, op.jvp_run(*split(values)))}

    def h_jvp(values: Mapping[str, Array], t2: Mapping[str, Array]) -> dict[str, Array]:
        d_diff = tuple(np.asarray(t2[k], op.arrays[k].dtype) for k in op.wrt)
        d_tans = tuple(np.asarray(t2[t], op.arrays[k].dtype) for k, t in zip(op.wrt, tan_names))
        return {n: np.array(t, copy=True) for n, t in zip(out_names, jvp2_run(*split(values), d_diff, d_tans))}

    return unobserved(operators.check_jvp)(h, h_jvp, inputs, **{**options, "wrt": [*op.wrt, *tan_names]})


__all__ = ["as_fn", "dotted_names", "enable_x64", "check_vjp", "check_jvp", "GRAD_PREFIX", "TANGENT_PREFIX"]
