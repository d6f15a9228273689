"""Second derivatives derived by SymPy: the oracle for the reference's hand-written second order.

Three functions, each checking one hand-written piece of :mod:`reference` (``Activation.d2f``,
``Loss.hvp``, ``Network.hvp``) without sharing any of its derivative code: the values are the
SymPy definitions of :mod:`.primitives` and the whole-network loss of :mod:`.network`, and every
derivative comes from ``sympy.diff``.

* :func:`activation_second_derivative` -- ``f''(z)``, SymPy's ``diff(f, z, 2)``; for the
  row-wise softmax the tensor ``d^2 s_i / dz_j dz_k``.
* :func:`loss_hvp` -- ``H(out) v``, ``H`` SymPy's Hessian of the loss with respect to ``out``.
* :func:`network_hvp` -- ``H(theta) v`` of a whole :class:`~gradcheck.spec.NetworkSpec`: the
  gradient of one sample's loss by reverse accumulation (:mod:`.network`'s ``"graph"`` method,
  every local partial from ``sympy.diff``), its directional derivative ``sum_i v_i dL/dtheta_i``,
  then the gradient of that (``H v = grad (grad L . v)``, reverse over reverse), CSE, lambdify.

Kinks. The second derivative of ``Max``, ``Min``, ``Abs`` (``Heaviside'``, ``sign'``) is a
``DiracDelta``: it is dropped (0), i.e. the second derivative of the piece, which is what the
reference's conventions are away from kinks (at a kink both sides state a convention; compare
away from them). The stable forms of :mod:`.primitives` write smooth functions with ``Abs``
(``log_cosh``, ``bce_with_logits``); their ``sign(x)**2`` is 1 except at ``x = 0`` exactly, where
that fake kink would give 0: even powers of ``sign`` are therefore set to 1 (the continuous value).

Numbers: float64, results in the input's floating dtype for the primitives and float64 for
networks; a non-finite result from finite inputs is redone with mpmath (30 digits), as in
:mod:`.primitives` and :mod:`.network`. Bounds: :func:`network_hvp` raises
:class:`~gradcheck.symbolic.network.SymbolicSkipped` for specs beyond the limits of
:func:`~gradcheck.symbolic.network.network_gradient` (same defaults).
"""
from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np
import sympy as sp

from gradcheck.spec import NetworkSpec
from gradcheck.symbolic.network import (
    CACHE_SIZE,
    DEFAULT_MAX_PARAMS,
    DEFAULT_MAX_TERMS,
    DEFAULT_TIMEOUT,
    SymbolicSkipped,
    _as_spec,
    _Deadline,
    _grad_graph,
    _inputs,
    _unflatten,
    conditions_as_numbers,
    dag_size,
    sample_loss,
    structure_key,
)
from gradcheck.symbolic.primitives import (
    EPS,
    SHIFT,
    WEIGHT,
    Z,
    _check_activation_call,
    _elementwise_eval,
    _float_array,
    _mpf,
    _prepare_loss,
    _rows,
    _to_dtype,
    get_activation_def,
    get_loss_def,
    lambdify_mpmath,
    lambdify_numpy,
    reduction_weight,
    vector_symbols,
)

Array = np.ndarray

__all__ = ["activation_second_derivative", "loss_hvp", "network_hvp", "compile_hvp", "CompiledHVP",
           "clear_cache"]


# --------------------------------------------------------------------------------------------
# second derivatives of expressions
# --------------------------------------------------------------------------------------------
def _rewrite(exprs: Sequence[sp.Expr], rule: Callable[[sp.Basic], sp.Basic | None]) -> list[sp.Expr]:
    """Apply ``rule`` (a node -> its replacement, or None to keep it) bottom-up over the DAG of
    ``exprs``, each distinct node once: ``Basic.replace`` and ``xreplace`` walk the *tree*,
    exponential in depth for the shared subexpressions of a network's derivatives."""
    memo: dict[sp.Basic, sp.Basic] = {}

    def visit(e: sp.Basic) -> sp.Basic:
        hit = memo.get(e)
        if hit is not None:
            return hit
        new = rule(e)
        if new is None:
            args = [visit(a) for a in e.args]
            new = e.func(*args) if any(a is not b for a, b in zip(args, e.args)) else e
        memo[e] = new
        return new

    return [visit(e) for e in exprs]


def _kink_rule(e: sp.Basic) -> sp.Basic | None:
    """``DiracDelta`` -> 0 and ``sign(x)**(2k)`` -> 1 (module doc, "Kinks"); no ``Derivative`` left."""
    if isinstance(e, sp.DiracDelta):
        return sp.Integer(0)
    if isinstance(e, sp.Pow) and isinstance(e.base, sp.sign) and e.exp.is_even is True:
        return sp.Integer(1)
    if isinstance(e, sp.Derivative):
        raise RuntimeError(f"SymPy left an unevaluated derivative: {e}")
    return None


def _away_from_kinks(expr: sp.Expr) -> sp.Expr:
    """The second derivative of each piece: see the module doc, "Kinks"."""
    return _rewrite([expr], _kink_rule)[0]


def _second(expr: sp.Expr, a: sp.Symbol, b: sp.Symbol) -> sp.Expr:
    return _away_from_kinks(sp.diff(expr, a, b))


# --------------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------------
@functools.cache
def _compiled_activation_d2(name: str) -> tuple[Callable, Callable]:
    """numpy and mpmath ``f''`` of an elementwise activation (stable form), parameters as arguments."""
    d = get_activation_def(name)
    ps = [sp.Symbol(p, real=True) for p in d.params]
    form = d.stable if d.stable is not None else d.value
    d2 = _second(form(Z, **dict(zip(d.params, ps))), Z, Z)
    return lambdify_numpy([Z, *ps], d2), lambdify_mpmath([Z, *ps], d2)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compiled_softmax_d2(n: int) -> tuple[Callable, Callable]:
    """numpy and mpmath ``T[i][j][k] = d^2 s_i / dz_j dz_k`` of the shifted softmax of ``n`` entries."""
    d = get_activation_def("softmax")
    assert d.stable is not None  # softmax is registered with its shifted form
    zs = vector_symbols("z", n)
    s = d.stable(zs, SHIFT)
    T = [[[_second(si, zj, zk) for zk in zs] for zj in zs] for si in s]
    return lambdify_numpy([zs, SHIFT], T), lambdify_mpmath([zs, SHIFT], T)


def _softmax_second(z: Array) -> Array:
    rows, shape = _rows(z)
    n, m = shape[-1], rows.shape[0]
    fn, mp_fn = _compiled_softmax_d2(n)
    with np.errstate(all="ignore"):
        entries = fn(list(rows.T), rows.max(axis=1))
    T = np.empty((m, n, n, n))
    for i, j, k in np.ndindex(n, n, n):
        T[:, i, j, k] = np.broadcast_to(entries[i][j][k], (m,))
    bad = ~np.isfinite(T).all(axis=(1, 2, 3)) & np.isfinite(rows).all(axis=1)
    for r in np.nonzero(bad)[0]:
        with mpmath.workdps(30):
            T[r] = np.array(mp_fn([_mpf(v) for v in rows[r]], _mpf(rows[r].max())), dtype=np.float64)
    return T.reshape(shape + (n, n))


def activation_second_derivative(name: str, z: Any, **params: float) -> Array:
    """``f''(z)`` of activation ``name``: SymPy's ``diff(f, z, 2)``, evaluated elementwise.

    Same shape and floating dtype as ``z`` (integers become float64); parameters default as in
    the registry (``leaky_relu``: ``alpha=0.01``). ``DiracDelta`` terms are dropped: the value on
    each piece, 0 for piecewise-linear activations. For the row-wise ``softmax`` the result is
    the tensor ``T[..., i, j, k] = d^2 softmax_i / dz_j dz_k``, shaped ``z.shape + (n, n)``.
    """
    d, pvals = _check_activation_call(name, params)
    za = _float_array(z, "z")
    if d.rowwise:
        return _to_dtype(_softmax_second(za), za.dtype)
    fn, mp_fn = _compiled_activation_d2(name)
    return _to_dtype(_elementwise_eval(fn, mp_fn, za, pvals), za.dtype)


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=CACHE_SIZE)
def _compiled_loss_hvp(name: str, n: int) -> tuple[Callable, Callable]:
    """numpy and mpmath ``(o, y, v, eps, w, c) -> [sum_k d^2 (w loss) / do_j do_k v_k for j]``."""
    d = get_loss_def(name)
    os, ys, vs = vector_symbols("o", n), vector_symbols("y", n), vector_symbols("v", n)
    if d.stable is not None:
        expr = d.stable(os, ys, SHIFT) if d.rowwise else d.stable(os, ys)
    else:
        expr = d.per_sample(os, ys)
    expr = WEIGHT * expr
    grads = [sp.diff(expr, o) for o in os]
    hvp = [sp.Add(*[_away_from_kinks(sp.diff(g, ok)) * vk for ok, vk in zip(os, vs)]) for g in grads]
    args = [os, ys, vs, EPS, WEIGHT, SHIFT]
    return lambdify_numpy(args, hvp), lambdify_mpmath(args, hvp)


def loss_hvp(name: str, out: Any, y: Any, v: Any) -> Array:
    """``H v`` with ``H`` SymPy's Hessian of loss ``name`` with respect to ``out``: ``d/dt
    grad(out + t v, y)`` at 0, shaped and typed like ``out``.

    Batch reduction, clip level (``eps`` of ``out``'s dtype) and targets (integer class indices
    where the registry accepts them) as in :func:`~gradcheck.symbolic.primitives.loss_gradient`.
    ``DiracDelta`` terms are dropped: 0 for ``mae`` and ``hinge``, the branch's curvature elsewhere
    (at a kink or clip the value is SymPy's branch choice, see :mod:`.primitives`).
    """
    d, o, yy, dtype, eps, batch = _prepare_loss(name, out, y)
    shape = np.shape(out)
    va = np.asarray(v, dtype=np.float64)
    if va.size != o.size:
        raise ValueError(f"v has shape {va.shape}; expected {shape}")
    va = va.reshape(o.shape)
    w = float(reduction_weight(name, batch))
    if d.rowwise:
        n = o.shape[1]
        ocols, ycols, vcols, shift = list(o.T), list(yy.T), list(va.T), o.max(axis=1)
        rows = o.shape[0]
    else:
        n = 1
        ocols, ycols, vcols, shift = [o.reshape(-1)], [yy.reshape(-1)], [va.reshape(-1)], np.zeros(o.size)
        rows = o.size
    fn, mp_fn = _compiled_loss_hvp(name, n)
    with np.errstate(all="ignore"):
        res = np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), (rows,))
                        for c in fn(ocols, ycols, vcols, eps, w, shift)], axis=-1)
    finite = np.all([np.isfinite(c) for c in (*ocols, *ycols, *vcols)], axis=0)
    bad = ~np.isfinite(res).all(axis=1) & finite
    if bad.any():
        with mpmath.workdps(30):
            for r in np.nonzero(bad)[0]:
                oa = [_mpf(c[r]) for c in ocols]
                vals = mp_fn(oa, [_mpf(c[r]) for c in ycols], [_mpf(c[r]) for c in vcols],
                             _mpf(eps), _mpf(w), max(oa))
                res[r] = [float(x) for x in vals]
    return _to_dtype(res.reshape(shape), dtype)


# --------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------
@dataclass
class CompiledHVP:
    """The Hessian-vector product of one structure, compiled (see :func:`network_hvp`)."""

    key: str
    n_params: int
    n_cse: int
    build_seconds: float
    _numpy: Callable = field(repr=False)
    _symbols: tuple = field(repr=False)
    _replacements: list = field(repr=False)
    _reduced: list = field(repr=False)
    _mpmath: Callable | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def per_sample(self, theta: Array, v: Array, X: Array, Y: Array, eps: float, w: float) -> Array:
        """``(P, batch)`` float64: each sample's weighted-loss Hessian times ``v``."""
        B = X.shape[0]
        with np.errstate(all="ignore"):
            cols = self._numpy(list(theta), list(v), list(X.T), list(Y.T), eps, w)
        return np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), (B,)) for c in cols])

    def mpmath_function(self) -> Callable:
        """The same expressions lambdified for mpmath (compiled on first use)."""
        with self._lock:
            if self._mpmath is None:
                repl, red = self._replacements, self._reduced
                self._mpmath = lambdify_mpmath(list(self._symbols), red, cse=lambda exprs: (repl, red))
            return self._mpmath


#: compiled products per structure, least recently used first (guarded by _LOCK)
_COMPILED: OrderedDict[str, CompiledHVP] = OrderedDict()
_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget the compiled primitives and network Hessian-vector products of this module."""
    with _LOCK:
        _COMPILED.clear()
    _compiled_activation_d2.cache_clear()
    _compiled_softmax_d2.cache_clear()
    _compiled_loss_hvp.cache_clear()


def _freeze(exprs: Sequence[sp.Expr]) -> tuple[list[sp.Expr], dict[sp.Symbol, sp.Expr]]:
    """``Heaviside`` and ``sign`` as constant symbols: their derivative (a delta) is dropped."""
    frozen: dict[sp.Expr, sp.Symbol] = {}

    def symbol(e: sp.Expr) -> sp.Symbol:
        if e not in frozen:
            frozen[e] = sp.Symbol(f"_step{len(frozen)}", real=True)
        return frozen[e]

    out = _rewrite(exprs, lambda x: symbol(x) if isinstance(x, (sp.Heaviside, sp.sign)) else None)
    return out, {s: e for e, s in frozen.items()}


def _build(spec: NetworkSpec, key: str, max_terms: int, timeout: float) -> CompiledHVP:
    t0 = time.perf_counter()
    P = spec.n_params
    deadline = _Deadline(timeout, f"P={P}, Hessian-vector product")
    built = sample_loss(spec, deadline, named=True)
    definitions = dict(built.definitions)
    theta = [t for name in built.theta for t in built.theta[name]]
    size = dag_size([built.loss] + list(definitions.values()), limit=max_terms)
    if size > max_terms:
        raise SymbolicSkipped(f"too large (P={P}, loss expression > {max_terms} nodes, limit max_terms={max_terms})")
    deadline.check("building the expression")
    grad = _grad_graph(built.loss, theta, deadline, definitions)
    grad, steps = _freeze(grad)
    vs = [sp.Symbol(f"v_{t.name}", real=True) for t in theta]
    directional = sp.Add(*[v * g for v, g in zip(vs, grad)])  # dL/dt along v, as a function of theta
    hv = _grad_graph(directional, theta, deadline, definitions)
    hv = _rewrite(_rewrite(hv, steps.get), _kink_rule)
    hsize = dag_size(hv, limit=8 * max_terms)
    if hsize > 8 * max_terms:
        raise SymbolicSkipped(f"too large (P={P}, Hessian-vector expressions > {8 * max_terms} nodes, "
                              f"limit 8 x max_terms={8 * max_terms})")
    deadline.check("differentiation", deadline.elapsed + hsize * 3e-5)  # cse ~ 30 us per node
    repl, reduced = sp.cse(hv, order="none", postprocess=conditions_as_numbers)
    repl = list(built.definitions) + repl
    if len(repl) > max_terms:
        raise SymbolicSkipped(f"too large (P={P}, {len(repl)} CSE terms, limit max_terms={max_terms})")
    deadline.check("common-subexpression elimination", deadline.elapsed + len(repl) * 1e-4)
    symbols = (theta, vs, built.xs, built.ys, EPS, WEIGHT)
    fn = lambdify_numpy(list(symbols), reduced, cse=lambda exprs: (repl, reduced))
    deadline.check("lambdify")
    return CompiledHVP(key, P, len(repl), time.perf_counter() - t0, fn, symbols, repl, reduced)


def compile_hvp(spec: Any, *, max_params: int = DEFAULT_MAX_PARAMS, max_terms: int = DEFAULT_MAX_TERMS,
                timeout: float = DEFAULT_TIMEOUT) -> CompiledHVP:
    """The compiled SymPy Hessian-vector product of ``spec``'s structure; raises
    :class:`SymbolicSkipped` beyond ``max_params`` parameters, ``max_terms`` nodes or ``timeout`` s.

    Successful builds are cached per structure (LRU, ``CACHE_SIZE``); refusals are not remembered.
    """
    spec = _as_spec(spec)
    for name, value in (("max_params", max_params), ("max_terms", max_terms)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an integer >= 1")
    if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0):
        raise ValueError(f"timeout={timeout!r}: expected a positive number of seconds")
    if spec.n_params > max_params:
        raise SymbolicSkipped(f"too large (P={spec.n_params}, limit max_params={max_params})")
    key = structure_key(spec)
    with _LOCK:
        hit = _COMPILED.get(key)
        if hit is not None:
            _COMPILED.move_to_end(key)
            return hit
    compiled = _build(spec, key, max_terms, float(timeout))  # outside the lock: seconds of SymPy
    with _LOCK:
        _COMPILED[key] = compiled
        while len(_COMPILED) > CACHE_SIZE:
            _COMPILED.popitem(last=False)
    return compiled


def _flat_direction(spec: NetworkSpec, v: Mapping[str, Any]) -> Array:
    shapes = spec.param_shapes()
    if not isinstance(v, Mapping) or set(v) != set(shapes):
        raise ValueError(f"v: keys {sorted(v) if isinstance(v, Mapping) else v!r} do not match the spec's {list(shapes)}")
    flat = []
    for name, shape in shapes.items():
        a = np.asarray(v[name], dtype=np.float64)
        if a.shape != shape:
            raise ValueError(f"v[{name!r}] has shape {a.shape}; the spec says {shape}")
        flat.append(a.reshape(-1))
    return np.concatenate(flat)


def network_hvp(spec: Any, params: Mapping[str, Any], X: Any, y: Any, v: Mapping[str, Any], *,
                max_params: int = DEFAULT_MAX_PARAMS, max_terms: int = DEFAULT_MAX_TERMS,
                timeout: float = DEFAULT_TIMEOUT) -> dict[str, Array]:
    """``H v``: the Hessian of ``spec``'s loss at ``params`` for the batch ``(X, y)`` times the
    direction ``v`` (a dict like ``params``), i.e. ``d/dt grad(params + t v)`` at 0, by SymPy.

    float64 arrays keyed and shaped like ``params``, whatever the spec's dtype (only the clip
    level of ``bce``/``categorical_cross_entropy`` follows it). Compiled once per structure and
    cached; summed over the batch's samples. Raises :class:`SymbolicSkipped` with the limits and
    defaults of :func:`~gradcheck.symbolic.network.network_gradient` (a build differentiates
    twice, so it reaches them sooner). At a kink the value is SymPy's branch choice (module doc).
    """
    spec = _as_spec(spec)
    theta, Xa, Y, eps, w = _inputs(spec, params, X, y)
    direction = _flat_direction(spec, v)
    compiled = compile_hvp(spec, max_params=max_params, max_terms=max_terms, timeout=timeout)
    per = compiled.per_sample(theta, direction, Xa, Y, eps, w)
    bad = ~np.isfinite(per).all(axis=0) & np.isfinite(Xa).all(axis=1) & np.isfinite(Y).all(axis=1)
    if bad.any() and np.isfinite(theta).all() and np.isfinite(direction).all():
        fn = compiled.mpmath_function()  # float64 overflowed inside an expression: those samples exactly
        with mpmath.workdps(30):
            th, dv = [_mpf(t) for t in theta], [_mpf(t) for t in direction]
            wm = 1 / mpmath.mpf(round(1 / w))
            for b in np.nonzero(bad)[0]:
                vals = fn(th, dv, [_mpf(t) for t in Xa[b]], [_mpf(t) for t in Y[b]], _mpf(eps), wm)
                per[:, b] = [float(x) for x in vals]
    return _unflatten(spec, per.sum(axis=1))
