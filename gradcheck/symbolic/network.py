"""Whole-network gradients derived by SymPy: the loss of a spec as one expression, differentiated.

For a :class:`~gradcheck.spec.NetworkSpec` we build, once per *structure*, the weighted loss of
one sample, ``w * loss(net(x; theta), y)``, as a SymPy expression in one symbol per scalar
parameter (``W1_r_c``, ``b1_c``, ...), the input symbols ``x_0..``, the target symbols ``y_0..``,
the reduction weight ``w`` and the clip level ``epsilon``. Its gradient with respect to every
parameter symbol is taken by SymPy, reduced by common-subexpression elimination
(:func:`sympy.cse`; a shared condition is named as a 0/1 number, never as a bare symbol, see
:func:`conditions_as_numbers`) and lambdified. ``X``, ``y`` and the parameters are *arguments* of
the compiled function, so one compilation serves every batch, batch size and parameter value of
the structure.

Batch. The batch loss is ``sum_b w * loss_b`` (``w = 1/batch``, or 1 for ``half_sse``); sample
``b``'s term is the only one that involves ``x_b, y_b``, so the gradient of the batch loss is the
sum over samples of the SymPy gradient of ``w * loss_b``: the compiled function is evaluated with
numpy on all samples at once (``x_k`` is a column of ``X``) and summed. Differentiation is linear,
so this is the derivative of the batch expression, at a cost independent of the batch size.

Methods. ``"diff"`` calls ``sympy.diff(loss, theta_i)`` for every parameter: SymPy's own chain
rule on the whole expression; its cost grows like ``P x size`` (P = 121 takes ~5 s).
``"graph"`` (default) walks the expression DAG once from the loss down (reverse accumulation),
multiplying at every node the local partial derivatives that ``sympy.diff`` gives for that node's
operation (applied to fresh symbols): every derivative still comes from SymPy, the walk is generic
in the expression (it knows nothing of layers, activations or losses), and it is 10-50x faster.
The tests check that both methods give the same gradient.

Bounds. Too many parameters (``max_params``), too large an expression or compiled code
(``max_terms`` nodes of the loss DAG, or CSE assignments), or a build that would exceed
``timeout`` seconds raise :class:`SymbolicSkipped` quickly. The time limit is *cooperative*: a
deadline object is checked between units of work (every column of every layer while the
expression is built, every parameter of ``"diff"``, every 64 nodes of the ``"graph"`` walk,
before and after CSE and lambdify), and the build extrapolates its own progress and stops as soon
as the limit is clearly going to be exceeded. No signal handler, timer or thread is involved, so
the limit works in any thread and never touches a host program's ``SIGALRM``. A single SymPy call
(one ``sympy.cse``, one ``lambdify``, one ``sympy.diff``) is not interrupted; its size is bounded
instead (``max_terms``; CSE and lambdify are skipped beforehand when their predicted cost, from
the expression's size, would pass 1.5 x the limit), so a build may overrun ``timeout`` by about
one such call. The limit is approximate by nature and depends on the machine's load.

Caches (module state, all behind one lock, each an LRU of :data:`CACHE_SIZE` entries): compiled
gradients per (structure, method); and refusals for *size* per (structure, method, limits), which
are deterministic. A refusal for *time* is never remembered: it depends on the machine's load at
the moment, and remembering it would make a later check's result depend on that history (the
price: asking again for a structure that is too slow pays the extrapolated build again, which
stops early, not the full ``timeout``). :func:`cache_info` reports hits and builds;
:func:`clear_cache` empties both caches.

Other layer kinds (conv1d/conv2d, max/avg pooling, batch/layer normalization, embedding,
attention, RNN, LSTM, dropout, flatten; :mod:`gradcheck.layerspec`). :func:`sample_loss`
dispatches a spec that is not ``is_dense`` to :func:`gradcheck.symbolic.layers.network_loss`,
which builds each layer's op anew in SymPy from the maths of the layerspec docstrings (one
function per kind), then the skips and the activation as above; every layer's pre-activation
element is named (``L{i}_z_...``) like the dense ``z{i}_{c}``, as are the intermediates used many
times inside a layer. Differentiation, CSE, lambdify, caches and bounds are the same. Per example
the input symbols ``x_0..`` are the flattened example (``X`` is ``(batch,) + input_shape``;
embedding indices are passed as numbers and selected by ``Piecewise``/``Eq`` in the compiled
code); each dropout layer adds 0/1 mask symbols ``m{i}_..``, passed as data like ``X`` (the mask
is computed from the documented rule of :class:`~gradcheck.layerspec.Dropout`, seed and batch
shape included, by this package's own code). Batch normalization couples the samples: for a spec
with a ``BatchNorm`` the unit of the expression is the whole batch of ``spec.batch`` samples
(``x_0..`` run over the flattened batch; the structure key then includes the batch size, and
:func:`network_gradient` compiles for the batch size of the ``X`` it is given). Before building,
a spec whose estimated expression (:func:`gradcheck.symbolic.layers.estimate_terms`) exceeds
``max_terms`` is refused for size at once.

Numbers: float64 throughout (whatever the spec's dtype); only the clip level of ``bce`` and
``categorical_cross_entropy`` follows the spec's dtype (its machine epsilon, as the registry).
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import mpmath
import numpy as np
import sympy as sp
from sympy.logic.boolalg import ITE

from gradcheck.spec import NetworkSpec
from gradcheck.symbolic import layers as _layers
from gradcheck.symbolic.primitives import (
    EPS,
    WEIGHT,
    Z,
    get_activation_def,
    get_loss_def,
    lambdify_mpmath,
    lambdify_numpy,
    vector_symbols,
)

Array = np.ndarray

#: default bounds (see docs/symbolic.md for what they mean in seconds on a 2-core machine)
DEFAULT_MAX_PARAMS = 2000
DEFAULT_MAX_TERMS = 200_000
DEFAULT_TIMEOUT = 10.0
METHODS = ("diff", "graph")


class SymbolicSkipped(Exception):
    """The symbolic oracle declined a spec: too large or too slow. ``str()`` says why.

    ``kind`` is ``"size"`` (a limit on parameters or expression size: deterministic, remembered)
    or ``"time"`` (the time limit: depends on the machine's load, never remembered).
    """

    def __init__(self, reason: str, kind: str | None = None) -> None:
        self.reason = reason
        self.kind = kind or ("time" if reason.startswith("too slow") else "size")
        super().__init__(f"skipped: {reason}")

    def __reduce__(self) -> tuple:  # pickles (e.g. across worker processes) with reason and kind
        return (type(self), (self.reason, self.kind))


# --------------------------------------------------------------------------------------------
# the expression of one sample's loss
# --------------------------------------------------------------------------------------------
def _as_spec(spec: Any) -> NetworkSpec:
    if isinstance(spec, NetworkSpec):
        return spec
    if isinstance(spec, dict):
        return NetworkSpec.from_dict(spec)
    if isinstance(spec, str):
        return NetworkSpec.from_json(spec)
    raise TypeError(f"spec={spec!r}: expected a NetworkSpec, its dict or its JSON")


def structure_key(spec: NetworkSpec) -> str:
    """What the compiled gradient depends on: layers, skips, loss, input size (not batch, dtype,
    seed, init: those are only numbers passed to the compiled function; the batch size is kept
    for a spec whose batch normalization couples the samples: its expression is the whole batch)."""
    d = spec.to_dict()
    for k in ("seed", "init", "batch", "dtype"):
        if k == "batch" and _layers.couples_batch(spec):
            continue
        d.pop(k, None)
    return json.dumps(d, sort_keys=True)


def param_symbols(spec: NetworkSpec) -> dict[str, list[sp.Symbol]]:
    """One real symbol per scalar parameter, per tensor in row-major order: ``W1_r_c``, ``b1_c``,
    ``conv1_W_o_c_k_l`` (a ``.`` of the network name becomes ``_``: symbols are identifiers)."""
    out: dict[str, list[sp.Symbol]] = {}
    for name, shape in spec.param_shapes().items():
        stem = name.replace(".", "_")
        out[name] = [sp.Symbol(f"{stem}_" + "_".join(map(str, idx)), real=True) for idx in np.ndindex(shape)]
    return out


@dataclass
class SampleLoss:
    """One sample's weighted loss as SymPy: ``loss`` in the parameter, input and target symbols.

    For a spec with other layer kinds, ``xs`` also holds the dropout masks' symbols after the
    inputs, and for a spec with batch normalization the "sample" is the whole batch (see the
    module doc).

    With ``named`` pre-activations, ``definitions`` lists ``(z_i_c, expression)`` in order and
    ``loss`` refers to the symbols ``z_i_c``; substituting them back (last first) gives the
    single expression that ``named=False`` builds directly.
    """

    loss: sp.Expr
    theta: dict[str, list[sp.Symbol]]
    xs: list[sp.Symbol]
    ys: list[sp.Symbol]
    definitions: list[tuple[sp.Symbol, sp.Expr]]

    def expanded(self) -> sp.Expr:
        """The loss with every named intermediate substituted: one expression."""
        e = self.loss
        for sym, value in reversed(self.definitions):
            e = e.xreplace({sym: value})
        return e


def sample_loss(spec: Any, deadline: _Deadline | None = None, *, named: bool = False) -> SampleLoss:
    """One sample's weighted loss ``w * loss(net(x; theta), y)`` of ``spec`` as SymPy.

    Built from the canonical SymPy values of the activations (default parameters) and the loss.
    ``named=True`` gives every pre-activation a symbol ``z{i}_{c}`` (see :class:`SampleLoss`):
    the same function as a DAG with named nodes, which keeps SymPy from folding nested
    ``Piecewise`` conditions (exponential in depth) and lets the graph method share them.
    """
    spec = _as_spec(spec)
    if not spec.is_dense:
        theta = param_symbols(spec)
        loss, data, outs, named_defs = _layers.network_loss(spec, theta, named=named, deadline=deadline)
        return SampleLoss(loss, theta, data, outs, named_defs)
    loss_def = get_loss_def(spec.loss)
    acts = []
    for i, layer in enumerate(spec.layers):
        try:
            acts.append(get_activation_def(layer.activation))
        except ValueError as e:
            raise ValueError(f"NetworkSpec.layers[{i}].activation={layer.activation!r}: {e}") from None
    theta = param_symbols(spec)
    xs = vector_symbols("x", spec.input_dim)
    ys = vector_symbols("y", spec.output_dim)
    definitions: list[tuple[sp.Symbol, sp.Expr]] = []
    skips_into: dict[int, list[int]] = {}
    for s, t in spec.skips:
        skips_into.setdefault(t, []).append(s)
    outputs: list[list[sp.Expr]] = [list(xs)]
    a: list[sp.Expr] = list(xs)
    for i, (layer, act) in enumerate(zip(spec.layers, acts), start=1):
        fan_in, width = len(a), layer.width
        W = theta[f"W{i}"]
        z = []
        for c in range(width):
            terms = [a[r] * W[r * width + c] for r in range(fan_in)]
            if layer.bias:
                terms.append(theta[f"b{i}"][c])
            terms.extend(outputs[s][c] for s in skips_into.get(i, ()))
            value = sp.Add(*terms)
            if named:
                sym = sp.Symbol(f"z{i}_{c}", real=True)
                definitions.append((sym, value))
                value = sym
            z.append(value)
            if deadline is not None:
                deadline.check(f"building layer {i}")
        if act.rowwise:
            a = list(act.value(z))
        else:
            f = act.value(Z, **{k: sp.Rational(repr(float(v))) for k, v in act.params.items()})
            a = [f.xreplace({Z: zc}) for zc in z]
        outputs.append(a)
        if deadline is not None:
            deadline.check(f"building layer {i}")
    return SampleLoss(WEIGHT * loss_def.per_sample(a, ys), theta, xs, ys, definitions)


def dag_size(expr: sp.Basic | list, limit: int | None = None) -> int:
    """Number of distinct nodes of an expression (or a list of them); stops counting at ``limit``."""
    seen: set = set()
    stack = list(expr) if isinstance(expr, (list, tuple)) else [expr]
    while stack:
        e = stack.pop()
        if e in seen:
            continue
        seen.add(e)
        if limit is not None and len(seen) > limit:
            break
        stack.extend(e.args)
    return len(seen)


# --------------------------------------------------------------------------------------------
# differentiation
# --------------------------------------------------------------------------------------------
#: the clock of the time limit (a module attribute so that tests can drive it)
_clock: Callable[[], float] = time.perf_counter


class _Deadline:
    """Cooperative time limit of one build: ``check`` raises SymbolicSkipped once ``timeout`` has
    passed. Local to the build (no global state, no signals): safe in any thread."""

    def __init__(self, timeout: float, what: str) -> None:
        self.start = _clock()
        self.timeout = timeout
        self.what = what

    @property
    def elapsed(self) -> float:
        return _clock() - self.start

    def check(self, stage: str, predicted_total: float | None = None, margin: float = 1.5) -> None:
        """Raise once past the limit, or when ``predicted_total`` exceeds ``margin`` x the limit."""
        elapsed = self.elapsed
        if elapsed > self.timeout:
            raise SymbolicSkipped(f"too slow ({self.what}: {stage} passed the time limit {self.timeout:g} s)",
                                  kind="time")
        if predicted_total is not None and predicted_total > margin * self.timeout:
            raise SymbolicSkipped(f"too slow ({self.what}: {stage} would take ~{predicted_total:.0f} s, "
                                  f"limit {self.timeout:g} s)", kind="time")


def _grad_diff(loss: sp.Expr, theta: list[sp.Symbol], deadline: _Deadline) -> list[sp.Expr]:
    """``sympy.diff(loss, t)`` for every parameter; stops early when the limit will clearly be passed."""
    grads = []
    for k, t in enumerate(theta, start=1):
        grads.append(sp.diff(loss, t))
        el = deadline.elapsed
        # the first parameters (layer 1, the deepest paths) cost the most: a generous margin
        deadline.check(f"differentiating ({k}/{len(theta)} parameters)",
                       el / k * len(theta) if el > 0.2 else None, margin=3.0)
    return grads


def _children(e: sp.Basic, definitions: Mapping[sp.Basic, sp.Expr]) -> tuple:
    """The arguments a node is differentiated through: a named intermediate's definition; a
    Piecewise's branch values (not its conditions: SymPy differentiates a Piecewise branch by
    branch); every argument otherwise."""
    if e in definitions:
        return (definitions[e],)
    if isinstance(e, sp.Piecewise):
        return tuple(pair.expr for pair in e.args)
    return e.args


def _local_partials(e: sp.Basic, definitions: Mapping[sp.Basic, sp.Expr], cache: dict) -> list[sp.Expr]:
    """``d e / d child_i`` for each child of node ``e``: ``sympy.diff`` of the node's operation
    applied to fresh symbols (cached per operation and arity), evaluated at the actual children.
    A named intermediate is its definition: partial 1."""
    if e in definitions:
        return [sp.Integer(1)]
    children = _children(e, definitions)
    if isinstance(e, sp.Piecewise):
        key: tuple = (sp.Piecewise, tuple(pair.cond for pair in e.args))
    else:
        key = (e.func, len(children))
    if key not in cache:
        us = [sp.Dummy(f"u{i}", real=True) for i in range(len(children))]
        if isinstance(e, sp.Piecewise):
            local = sp.Piecewise(*[(u, pair.cond) for u, pair in zip(us, e.args)])
        else:
            local = e.func(*us)
        cache[key] = (us, [sp.diff(local, u) for u in us])
    us, partials = cache[key]
    sub = dict(zip(us, children))
    return [p.xreplace(sub) for p in partials]


def _grad_graph(loss: sp.Expr, theta: list[sp.Symbol], deadline: _Deadline,
                definitions: Mapping[sp.Basic, sp.Expr] | None = None, *,
                adjoints: list[tuple[sp.Symbol, sp.Expr]] | None = None) -> list[sp.Expr]:
    """Reverse accumulation over the expression DAG: adjoint(child) += adjoint(node) * d node/d
    child, the local partials from :func:`_local_partials` (``sympy.diff``); returns the
    adjoints of the parameter symbols, i.e. dloss/dtheta_i.

    With a list ``adjoints``, the adjoint of every named intermediate becomes a symbol
    ``bar_{name}``, appended to ``adjoints`` with its value (parents first), and the returned
    expressions refer to these symbols: the gradient as a program whose size grows like the
    forward's, instead of expressions with the adjoints inlined into every use (what the other
    layer kinds use; the dense path keeps them inlined)."""
    defs = dict(definitions or {})
    wanted = set(theta)
    # post-order: every node after its children; depends[e]: e involves a parameter
    depends: dict[sp.Basic, bool] = {}
    order: list[sp.Basic] = []
    stack: list[tuple[sp.Basic, bool]] = [(loss, False)]
    steps = 0
    while stack:
        e, expanded = stack.pop()
        steps += 1
        if steps % 4096 == 0:
            deadline.check("ordering the expression")
        if e in depends:
            continue
        if expanded:
            depends[e] = e in wanted or any(depends[a] for a in _children(e, defs))
            order.append(e)
        else:
            stack.append((e, True))
            stack.extend((a, False) for a in _children(e, defs) if a not in depends)
    adjoint: dict[sp.Basic, list[sp.Expr]] = {loss: [sp.Integer(1)]}
    cache: dict = {}
    done = 0
    for e in reversed(order):  # parents before children
        if e in wanted or not depends[e] or e not in adjoint:
            continue
        bar = sp.Add(*adjoint.pop(e))
        if adjoints is not None and e in defs and not bar.is_Atom:
            sym = sp.Symbol(f"bar_{e}", real=True)
            adjoints.append((sym, bar))
            bar = sym
        for a, p in zip(_children(e, defs), _local_partials(e, defs, cache)):
            if depends[a]:
                adjoint.setdefault(a, []).append(bar * p)
        done += 1
        if done % 64 == 0:  # a node costs ~0.1-1 ms: checks a few ms apart
            deadline.check("reverse accumulation")
    return [sp.Add(*adjoint.get(t, [sp.Integer(0)])) for t in theta]


def _dependency_order(assignments: list[tuple[sp.Symbol, sp.Expr]]) -> list[tuple[sp.Symbol, sp.Expr]]:
    """``assignments`` reordered so that each comes after those whose symbols it uses (a stable
    depth-first topological order: the given order wherever it is already valid)."""
    index = {sym: k for k, (sym, _) in enumerate(assignments)}
    deps = [sorted(index[f] for f in value.free_symbols if f in index) for _, value in assignments]
    state = [0] * len(assignments)  # 0 unseen, 1 on the stack, 2 placed
    out = []
    for root in range(len(assignments)):
        if state[root]:
            continue
        state[root] = 1
        stack = [(root, iter(deps[root]))]
        while stack:
            node, pending = stack[-1]
            for d in pending:
                if state[d] == 0:
                    state[d] = 1
                    stack.append((d, iter(deps[d])))
                    break
                if state[d] == 1:
                    raise AssertionError(f"cyclic assignments at {assignments[d][0]}")
            else:
                stack.pop()
                state[node] = 2
                out.append(assignments[node])
    return out


# --------------------------------------------------------------------------------------------
# common-subexpression elimination without placeholder conditions
# --------------------------------------------------------------------------------------------
def is_condition(value: sp.Basic) -> bool:
    """True for a truth-valued expression (``z > 0``, ``Eq(r, 1)``, ``And(...)``): what a
    ``Piecewise`` branch is chosen by."""
    return isinstance(value, (sp.core.relational.Relational, sp.logic.boolalg.BooleanFunction))


def conditions_as_numbers(replacements: list[tuple[sp.Symbol, sp.Expr]],
                          reduced: list[sp.Expr]) -> tuple[list[tuple[sp.Symbol, sp.Expr]], list[sp.Expr]]:
    """``sympy.cse`` postprocessor: a condition that CSE named becomes a 0/1 number, tested by a
    relation, so no placeholder ever stands where SymPy expects a condition.

    CSE names a shared ``z1_0 > 0`` with a plain Symbol ``x0`` and writes ``Piecewise((z1_0, x0),
    ...)``. SymPy reads a Symbol in a condition as a real *variable* (``x0.as_set()`` is the
    universal set), so any later rewrite is unsound: lambdify printed ``Heaviside(1 -
    y*Piecewise((z1_0, x0), (exp(z1_0) - 1, True)))`` through ``rewrite(Piecewise)``, which folds the
    inner Piecewise into ITE conditions and, taking ``x0`` to cover every real, dropped the
    ``exp(z1_0) - 1`` branch. Here ``x0`` becomes the real number ``Piecewise((1, z1_0 > 0), (0,
    True))`` and each use the relation ``x0 > 0``: still computed once (inlining the condition
    instead would copy the large folded conditions of nested Piecewise networks into every use).
    """
    as_relation: dict[sp.Symbol, sp.Basic] = {}
    out: list[tuple[sp.Symbol, sp.Expr]] = []
    for sym, value in replacements:
        if as_relation:
            value = value.xreplace(as_relation)
        if is_condition(value):
            # same name: the plain placeholder only ever stood in truth-valued positions, all of
            # which now read `number > 0`, so it appears nowhere any more
            number = sp.Symbol(sym.name, real=True)
            as_relation[sym] = sp.StrictGreaterThan(number, 0)
            # ITE as and/or of relations: the numpy printer would otherwise run simplify_logic on it
            value = value.replace(lambda e: isinstance(e, ITE), lambda e: e.to_nnf(simplify=False))
            out.append((number, sp.Piecewise((sp.Integer(1), value), (sp.Integer(0), True))))
        else:
            out.append((sym, value))
    if as_relation:
        reduced = [e.xreplace(as_relation) for e in reduced]
    return out, reduced


# --------------------------------------------------------------------------------------------
# compiled gradient of a structure
# --------------------------------------------------------------------------------------------
@dataclass
class CompiledGradient:
    """The gradient of one structure, compiled: call it with numbers (see :func:`network_gradient`)."""

    key: str
    names: list[str]
    shapes: dict[str, tuple[int, ...]]
    n_params: int
    loss_dag_size: int
    n_cse: int
    method: str
    build_seconds: dict[str, float]
    _numpy: Callable = field(repr=False)
    _symbols: tuple = field(repr=False)
    _replacements: list = field(repr=False)
    _reduced: list = field(repr=False)
    _mpmath: Callable | None = field(default=None, repr=False)
    _mpmath_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def per_sample(self, theta: Array, X: Array, Y: Array, eps: float, w: float) -> Array:
        """``(P, batch)`` float64: the gradient of each sample's weighted loss."""
        B = X.shape[0]
        with np.errstate(all="ignore"):
            cols = self._numpy(list(theta), list(X.T), list(Y.T), eps, w)
        return np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), (B,)) for c in cols])

    def mpmath_function(self) -> Callable:
        """The same CSE-reduced expressions lambdified for mpmath (compiled on first use)."""
        with self._mpmath_lock:  # one compilation even when threads share this cached object
            if self._mpmath is None:
                repl, red = self._replacements, self._reduced
                self._mpmath = lambdify_mpmath(list(self._symbols), red, cse=lambda exprs: (repl, red))
            return self._mpmath


#: entries of each cache below (a sweep meets a few hundred structures at most)
CACHE_SIZE = 256
#: compiled gradients per (structure, method), least recently used first
_COMPILED: OrderedDict[tuple[str, str], CompiledGradient] = OrderedDict()
#: reasons of *size* refusals per (structure, method, limits), least recently used first; time
#: refusals are never stored (they depend on the machine's load, see the module doc)
_REFUSED: OrderedDict[tuple, str] = OrderedDict()
#: hits of either cache and builds started, since the last clear_cache()
_STATS = {"hits": 0, "builds": 0}
#: guards _COMPILED, _REFUSED and _STATS (every read and write); never held during a build
_LOCK = threading.Lock()


class CacheInfo(NamedTuple):
    """What :func:`cache_info` reports."""

    hits: int          #: calls answered from a cache (a compiled gradient or a remembered refusal)
    builds: int        #: builds started (each one a fresh SymPy derivation, successful or not)
    compiled: int      #: compiled gradients held
    refused: int       #: size refusals held
    maxsize: int       #: the bound of each cache


def cache_info() -> CacheInfo:
    """Counters of the caches of compiled gradients and of size refusals."""
    with _LOCK:
        return CacheInfo(_STATS["hits"], _STATS["builds"], len(_COMPILED), len(_REFUSED), CACHE_SIZE)


def _lru_get(cache: OrderedDict, key: Any) -> Any:
    """The entry of ``key`` or None, marked as most recently used; the caller holds ``_LOCK``."""
    value = cache.get(key)
    if value is not None:
        cache.move_to_end(key)
        _STATS["hits"] += 1
    return value


def _lru_put(cache: OrderedDict, key: Any, value: Any) -> None:
    """Store ``value``, dropping the least recently used entries beyond CACHE_SIZE; caller holds ``_LOCK``."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)


def _limits_reason(spec: NetworkSpec, max_params: int) -> str | None:
    P = spec.n_params
    if P > max_params:
        return f"too large (P={P}, limit max_params={max_params})"
    return None


def compile_gradient(spec: Any, *, max_params: int = DEFAULT_MAX_PARAMS, max_terms: int = DEFAULT_MAX_TERMS,
                     timeout: float = DEFAULT_TIMEOUT, method: str = "graph") -> CompiledGradient:
    """The compiled SymPy gradient of ``spec``'s structure; raises SymbolicSkipped.

    Cached per (structure, method); a size refusal is cached per (structure, method,
    ``max_params``, ``max_terms``); a time refusal is not (see the module doc, "Caches")."""
    spec = _as_spec(spec)
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    for name, value in (("max_params", max_params), ("max_terms", max_terms)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an integer >= 1")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout={timeout!r}: expected a positive number of seconds")
    reason = _limits_reason(spec, max_params)
    if reason:
        raise SymbolicSkipped(reason)
    key = structure_key(spec)
    refused_key = (key, method, max_params, max_terms)  # size refusals do not depend on the timeout
    with _LOCK:
        hit = _lru_get(_COMPILED, (key, method))
        refused = _lru_get(_REFUSED, refused_key) if hit is None else None
        if hit is None and refused is None:
            _STATS["builds"] += 1
    if hit is not None:
        return hit
    if refused is not None:
        raise SymbolicSkipped(refused, kind="size")
    try:
        # outside the lock: a build takes seconds; two threads may build the same structure at
        # once (the second result replaces the first, both correct)
        compiled = _build(spec, key, max_terms, float(timeout), method)
    except SymbolicSkipped as e:
        if e.kind == "size":
            with _LOCK:
                _lru_put(_REFUSED, refused_key, e.reason)
        raise
    with _LOCK:
        _lru_put(_COMPILED, (key, method), compiled)
    return compiled


def _build(spec: NetworkSpec, key: str, max_terms: int, timeout: float, method: str) -> CompiledGradient:
    P = spec.n_params
    if not spec.is_dense:
        estimate = _layers.estimate_terms(spec)
        if estimate > max_terms:
            raise SymbolicSkipped(f"too large (P={P}, loss expression ~{estimate} nodes estimated, "
                                  f"limit max_terms={max_terms})")
    deadline = _Deadline(timeout, f"P={P}")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    built = sample_loss(spec, deadline, named=method == "graph")
    loss, theta_by_name, xs, ys, definitions = built.loss, built.theta, built.xs, built.ys, built.definitions
    theta = [t for name in theta_by_name for t in theta_by_name[name]]
    size = dag_size([loss] + [d for _, d in definitions], limit=max_terms)
    if size > max_terms:
        raise SymbolicSkipped(f"too large (P={P}, loss expression > {max_terms} nodes, limit max_terms={max_terms})")
    times["expression"] = time.perf_counter() - t0
    deadline.check("building the expression")

    t0 = time.perf_counter()
    # other layer kinds: the adjoints of the named intermediates are named too (their gradient
    # sums run over whole feature maps and batches: inlined, CSE would spend seconds sorting them)
    adjoints: list[tuple[sp.Symbol, sp.Expr]] | None = None if spec.is_dense else []
    if method == "diff":
        grads = _grad_diff(loss, theta, deadline)
    else:
        grads = _grad_graph(loss, theta, deadline, dict(definitions), adjoints=adjoints)
    adjoints = adjoints or []
    times["differentiate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gsize = dag_size(grads + [v for _, v in adjoints], limit=4 * max_terms)
    if gsize > 4 * max_terms:
        raise SymbolicSkipped(f"too large (P={P}, gradient expressions > {4 * max_terms} nodes, "
                              f"limit 4 x max_terms={4 * max_terms})")
    deadline.check("differentiation", deadline.elapsed + gsize * 3e-5)  # cse ~ 30 us per node
    if adjoints:  # one CSE over adjoints and gradients; then every assignment after what it uses
        repl, reduced = sp.cse([v for _, v in adjoints] + grads, order="none", postprocess=conditions_as_numbers)
        repl = _dependency_order(repl + [(sym, v) for (sym, _), v in zip(adjoints, reduced)])
        reduced = reduced[len(adjoints):]
    else:
        repl, reduced = sp.cse(grads, order="none", postprocess=conditions_as_numbers)
    repl = list(definitions) + repl  # the named pre-activations are computed first
    times["cse"] = time.perf_counter() - t0
    if len(repl) > max_terms:
        raise SymbolicSkipped(f"too large (P={P}, {len(repl)} CSE terms, limit max_terms={max_terms})")
    deadline.check("common-subexpression elimination", deadline.elapsed + len(repl) * 1e-4)

    t0 = time.perf_counter()
    symbols = (theta, xs, ys, EPS, WEIGHT)
    fn = lambdify_numpy(list(symbols), reduced, cse=lambda exprs: (repl, reduced))
    times["lambdify"] = time.perf_counter() - t0
    deadline.check("lambdify")
    names = list(theta_by_name)
    return CompiledGradient(key, names, spec.param_shapes(), P, size, len(repl), method, times,
                            fn, symbols, repl, reduced)


# --------------------------------------------------------------------------------------------
# numbers in, gradient out
# --------------------------------------------------------------------------------------------
def _inputs(spec: NetworkSpec, params: Mapping[str, Any], X: Any, y: Any) -> tuple[Array, Array, Array, float, float]:
    """Validated float64 ``theta`` (flat, spec order), ``X`` (batch, d), ``Y`` (batch, k), eps, w."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
    shapes = spec.param_shapes()
    missing, extra = set(shapes) - set(params), set(params) - set(shapes)
    if missing or extra:
        raise ValueError(f"params: keys {sorted(params)} do not match the spec's {list(shapes)}")
    flat = []
    for name, shape in shapes.items():
        a = np.asarray(params[name], dtype=np.float64)
        if a.shape != shape:
            raise ValueError(f"params[{name!r}] has shape {a.shape}; the spec says {shape}")
        flat.append(a.reshape(-1))
    theta = np.concatenate(flat) if flat else np.zeros(0)
    if not spec.is_dense:
        return _layered_inputs(spec, theta, X, y)
    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim == 1:
        Xa = Xa.reshape(1, -1)
    if Xa.ndim != 2 or Xa.shape[1] != spec.input_dim:
        raise ValueError(f"X has shape {np.shape(X)}; expected (batch, {spec.input_dim})")
    B, k = Xa.shape[0], spec.output_dim
    ya = np.asarray(y)
    loss_def = get_loss_def(spec.loss)
    if loss_def.class_targets and ya.shape != (B, k) and ya.size == B:
        idx = ya.reshape(-1).astype(np.int64)
        if idx.min(initial=0) < 0 or idx.max(initial=0) >= k:
            raise ValueError(f"y: class indices out of range [0, {k})")
        ya = np.eye(k)[idx]
    if ya.size != B * k:
        raise ValueError(f"y has shape {np.shape(y)}; expected ({B}, {k})")
    Y = ya.astype(np.float64).reshape(B, k)
    eps = float(np.finfo(np.dtype(spec.dtype)).eps)
    w = 1.0 / B if loss_def.reduction == "mean" else 1.0
    return theta, Xa, Y, eps, w


def _targets(spec: NetworkSpec, y: Any, B: int) -> Array:
    """``y`` as float64 ``(B, k)`` (class indices shaped ``(B,)`` become one-hot rows), as in
    :func:`_inputs`."""
    k = spec.output_dim
    ya = np.asarray(y)
    loss_def = get_loss_def(spec.loss)
    if loss_def.class_targets and ya.shape != (B, k) and ya.size == B:
        idx = ya.reshape(-1).astype(np.int64)
        if idx.min(initial=0) < 0 or idx.max(initial=0) >= k:
            raise ValueError(f"y: class indices out of range [0, {k})")
        ya = np.eye(k)[idx]
    if ya.size != B * k:
        raise ValueError(f"y has shape {np.shape(y)}; expected ({B}, {k})")
    return ya.astype(np.float64).reshape(B, k)


def _layered_inputs(spec: NetworkSpec, theta: Array, X: Any, y: Any) -> tuple[Array, Array, Array, float, float]:
    """:func:`_inputs` for other layer kinds: ``X`` is ``(batch,) + input_shape`` (or one example);
    the rows are those of :func:`gradcheck.symbolic.layers.data_rows` (inputs, then dropout masks;
    one row for the whole batch of a coupled spec, whose ``spec.batch`` must be the batch of ``X``)."""
    shape = spec.input_shape
    Xr = np.asarray(X)
    if Xr.shape == shape:
        Xr = Xr[None]
    if Xr.shape[1:] != shape:
        raise ValueError(f"X has shape {np.shape(X)}; expected (batch,) + {shape}")
    if Xr.dtype.kind not in "biuf":
        raise TypeError(f"X: expected a real numeric array, got dtype {Xr.dtype}")
    Xa = Xr.astype(np.float64)
    if spec.input_is_integer:
        vocab = spec.layers[0].vocab  # type: ignore[attr-defined]
        if not (np.all(Xa == np.round(Xa)) and np.all((Xa >= 0) & (Xa < vocab))):
            raise ValueError(f"X: an Embedding first layer takes integer indices in [0, {vocab})")
    B = Xa.shape[0]
    if _layers.couples_batch(spec) and B != spec.batch:
        raise ValueError(f"X has batch {B}; this spec's batch normalization couples the samples and its "
                         f"expression is built for spec.batch={spec.batch} (use spec.replace(batch={B}))")
    Y = _targets(spec, y, B)
    rows = _layers.data_rows(spec, Xa)
    if rows.shape[0] != B:  # the whole batch is one unit
        Y = Y.reshape(1, -1)
    eps = float(np.finfo(np.dtype(spec.dtype)).eps)
    w = 1.0 / B if get_loss_def(spec.loss).reduction == "mean" else 1.0
    return theta, rows, Y, eps, w


def _unflatten(spec: NetworkSpec, flat: Array) -> dict[str, Array]:
    out, i = {}, 0
    for name, shape in spec.param_shapes().items():
        n = math.prod(shape)
        out[name] = flat[i:i + n].reshape(shape)
        i += n
    return out


def network_gradient(spec: Any, params: Mapping[str, Any], X: Any, y: Any, *,
                     max_params: int = DEFAULT_MAX_PARAMS, max_terms: int = DEFAULT_MAX_TERMS,
                     timeout: float = DEFAULT_TIMEOUT, method: str = "graph") -> dict[str, Array]:
    """Gradient of ``spec``'s loss at ``params`` for the batch ``(X, y)``, derived by SymPy.

    Returns float64 arrays keyed and shaped like ``params`` (``W1, b1, ...``; ``conv1.W``, ...),
    computed in float64 whatever the spec's dtype. The compiled gradient is cached per structure
    (layers, skips, loss, input size), so later calls with other numbers or batch sizes only
    evaluate it (with batch normalization the batch size is part of the structure). ``X`` is
    ``(batch, input_dim)``, or ``(batch,) + spec.input_shape`` for other layer kinds (integer
    indices for an embedding); a single example may omit the batch axis.

    Raises :class:`SymbolicSkipped` (message ``"skipped: too large (P=..., limit ...)"`` or
    ``"skipped: too slow (...)"``) when the spec exceeds ``max_params`` scalar parameters,
    ``max_terms`` expression nodes / CSE terms, or would take longer than ``timeout`` seconds to
    build. ``method``: ``"diff"`` (``sympy.diff`` per parameter) or ``"graph"`` (see module doc).
    """
    spec = _as_spec(spec)
    if _layers.couples_batch(spec):  # the expression is the whole batch: compile for X's batch size
        B = np.shape(X)[0] if np.ndim(X) > len(spec.input_shape) else 1
        if B != spec.batch:
            spec = spec.replace(batch=B)
    theta, Xa, Y, eps, w = _inputs(spec, params, X, y)
    compiled = compile_gradient(spec, max_params=max_params, max_terms=max_terms, timeout=timeout, method=method)
    per = compiled.per_sample(theta, Xa, Y, eps, w)
    grad = per.sum(axis=1)
    if not np.isfinite(grad).all() and np.isfinite(theta).all() and np.isfinite(Xa).all() and np.isfinite(Y).all():
        # float64 overflowed inside an expression (e.g. exp of a large logit): redo those samples exactly
        bad = ~np.isfinite(per).all(axis=0)
        exact = _mp_samples(compiled, theta, Xa[bad], Y[bad], eps, w, dps=30)
        per[:, bad] = np.array([[float(v) for v in col] for col in exact]).T
        grad = per.sum(axis=1)
    return _unflatten(spec, grad)


def _mp_samples(compiled: CompiledGradient, theta: Array, X: Array, Y: Array, eps: float, w: float,
                dps: int) -> list[list[mpmath.mpf]]:
    """Per sample, the P gradient entries as mpf at ``dps`` digits (inputs converted exactly)."""
    fn = compiled.mpmath_function()
    out = []
    with mpmath.workdps(dps):
        th = [mpmath.mpf(float(v)) for v in theta]
        em = mpmath.mpf(eps)
        wm = 1 / mpmath.mpf(round(1 / w))  # w is 1/batch or 1: exactly, not its float rounding
        for xrow, yrow in zip(X, Y):
            vals = fn(th, [mpmath.mpf(float(v)) for v in xrow], [mpmath.mpf(float(v)) for v in yrow], em, wm)
            out.append([v if isinstance(v, mpmath.mpf) else mpmath.mpf(v) for v in vals])
    return out


def clear_cache() -> None:
    """Forget compiled gradients and remembered refusals, and reset :func:`cache_info`'s counters."""
    with _LOCK:
        _COMPILED.clear()
        _REFUSED.clear()
        _STATS.update(hits=0, builds=0)
