"""SymPy forward of every layer kind: the values only, written anew from :mod:`gradcheck.layerspec`.

Each kind of :data:`gradcheck.layerspec.NODE_TYPES` has one function here, ``f(node, p, x, ctx)
-> out``, that computes the layer's op (before its activation and residual edges) on *one
example* ``x``, a numpy object array of SymPy expressions shaped like the per-example input
(``(C, H, W)``, ``(T, D)``, ...), with ``p`` the layer's parameters as object arrays of symbols
by local name (``W``, ``gamma``, ``Wq`` ...). The exception is :func:`batchnorm`, whose
statistics couple the samples: it takes the whole batch ``(batch,) + shape``. Nothing here knows a
derivative: :mod:`gradcheck.symbolic.network` differentiates what these functions build (and never
imports the reference package; neither does this module).

The maths, per kind (the docstrings of :mod:`gradcheck.layerspec`):

* dense ``a @ W + b`` on the last axis; conv1d/conv2d cross-correlation with zero padding, stride
  and dilation, ``W`` ``(out, in, k[, k])``; avgpool the window mean; maxpool the first maximum of
  the window in row-major order, selected by piecewise-constant indicators (so the gradient goes
  to the first maximum, also at a tie); batchnorm per feature (axis 0 of the example) over the
  batch and the other axes, biased variance, ``gamma * (x - mu) / sqrt(var + eps) + beta``;
  layernorm the same over the last axis of each example; embedding ``sum_v E[v, :] * [x == v]`` (the indicator a ``Piecewise`` on
  ``Eq``, evaluated by the compiled code; repeated indices add up by construction); attention
  ``softmax(Q K^T / sqrt(D/heads)) V`` per head with the plain ``exp(s) / sum exp(s)``, causal
  positions ``u <= t`` only, heads concatenated, ``@ Wo``; RNN ``h_t = tanh(x_t Wx + h_{t-1} Wh +
  b)``; LSTM gates ``i f g o`` with the sigmoid ``1 / (1 + exp(-z))``; dropout ``x * m / (1 -
  rate)`` with ``m`` the 0/1 mask; flatten row-major.

The dropout mask is *data*, not structure: one input symbol ``m{i}_{k}`` per masked element,
whose 0/1 value :func:`data_rows` computes from the rule of :class:`~gradcheck.layerspec.Dropout`
(:func:`dropout_mask`, this module's own code). So the compiled gradient serves every seed and
batch size, like ``X``.

Named intermediates. With ``named=True`` (the graph method) every layer's pre-activation element
is a symbol ``L{i}_z_{b}_{idx}`` defined once, and so are the inner quantities that are used
many times (batchnorm/layernorm mean, variance and ``1/sqrt``; attention ``Q``, ``K``, ``V``,
scores, softmax denominators and weights, head outputs; RNN/LSTM pre-activations, cells and
hidden states): the expression stays a DAG of moderate size instead of nested copies.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from gradcheck.layerspec import BatchNorm, Dropout, Node
from gradcheck.spec import NetworkSpec
from gradcheck.symbolic.primitives import WEIGHT, Z, get_activation_def, get_loss_def, vector_symbols

Obj = np.ndarray  # object arrays of SymPy expressions


def _obj(shape: tuple[int, ...]) -> Obj:
    return np.empty(shape, dtype=object)


def _exact(value: float) -> sp.Rational:
    """A float field (eps, rate) as the exact rational of its shortest decimal repr."""
    return sp.Rational(repr(float(value)))


# --------------------------------------------------------------------------------------------
# the builder: naming and progress
# --------------------------------------------------------------------------------------------
#: seconds of building before the total time is extrapolated from the terms built so far
EXTRAPOLATE_AFTER = 1.0


@dataclass
class Builder:
    """Names intermediates (when ``named``), counts the terms built and checks the deadline.

    ``deadline`` is duck-typed (``elapsed``, ``check(stage, predicted_total)``): the network
    module's cooperative time limit. ``expected`` is :func:`estimate_terms`, from which the
    build extrapolates its own duration."""

    named: bool
    deadline: Any = None
    expected: int = 0
    definitions: list[tuple[sp.Symbol, sp.Expr]] = field(default_factory=list)
    terms: int = 0
    stage: str = ""
    _names: set[str] = field(default_factory=set)

    def name(self, tag: str, value: sp.Expr) -> sp.Expr:
        """``value``, or a symbol ``tag`` defined as ``value`` (atoms are never named)."""
        value = sp.sympify(value)
        if not self.named or value.is_Atom:
            return value
        if tag in self._names:  # two definitions of one symbol would silently mix values
            raise AssertionError(f"intermediate {tag!r} named twice")
        self._names.add(tag)
        sym = sp.Symbol(tag, real=True)
        self.definitions.append((sym, value))
        return sym

    def name_all(self, tag: str, arr: Obj) -> Obj:
        out = _obj(arr.shape)
        for idx in np.ndindex(arr.shape):
            out[idx] = self.name(f"{tag}_{'_'.join(map(str, idx))}", arr[idx])
        return out

    def progress(self, terms: int) -> None:
        """``terms`` more terms built: check the deadline, extrapolating from the estimate."""
        self.terms += terms
        if self.deadline is None:
            return
        elapsed = self.deadline.elapsed
        predicted = None
        # extrapolated only after a second of work: terms cost unevenly, and a stall of a few tenths
        # early on (a busy CI worker) once predicted 19 s for a 0.6 s build and refused it
        if elapsed > EXTRAPOLATE_AFTER and self.expected and self.terms:
            predicted = elapsed * max(self.expected / self.terms, 1.0)
        self.deadline.check(self.stage, predicted)


@dataclass
class LayerContext:
    """What a layer function may need beyond its input: the builder, the layer's 1-based
    ``index``, a ``tag`` unique to this layer and sample (the prefix of its intermediates' names)
    and, for dropout, the mask symbols of this example."""

    builder: Builder
    index: int
    tag: str
    mask: Obj | None = None

    def name(self, what: str, value: sp.Expr) -> sp.Expr:
        return self.builder.name(f"{self.tag}_{what}", value)

    def progress(self, terms: int) -> None:
        self.builder.progress(terms)


# --------------------------------------------------------------------------------------------
# one function per kind
# --------------------------------------------------------------------------------------------
def _matmul(x: Obj, W: Obj, ctx: LayerContext, b: Obj | None = None) -> Obj:
    """``x @ W (+ b)`` on the last axis of ``x`` (unnamed sums)."""
    fan_in, width = W.shape
    out = _obj(x.shape[:-1] + (width,))
    for lead in np.ndindex(x.shape[:-1]):
        row = x[lead]
        for c in range(width):
            terms = [row[r] * W[r, c] for r in range(fan_in)]
            if b is not None:
                terms.append(b[c])
            out[lead + (c,)] = sp.Add(*terms)
        ctx.progress(fan_in * width)
    return out


def dense(node: Node, p: Mapping[str, Obj], x: Obj, ctx: LayerContext) -> Obj:
    """``x @ W + b`` on the last axis (any leading axes)."""
    return _matmul(x, p["W"], ctx, p.get("b"))


def conv1d(node: Any, p: Mapping[str, Obj], x: Obj, ctx: LayerContext) -> Obj:
    """``out[o, i] = b[o] + sum_{c,k} W[o, c, k] x[c, i*stride + k*dilation - padding]`` (zero outside)."""
    W, b = p["W"], p.get("b")
    C, L = x.shape
    out = _obj(node.out_shape(x.shape))
    for o in range(out.shape[0]):
        for i in range(out.shape[1]):
            terms = []
            for c in range(C):
                for k in range(node.kernel):
                    pos = i * node.stride + k * node.dilation - node.padding
                    if 0 <= pos < L:
                        terms.append(W[o, c, k] * x[c, pos])
            if b is not None:
                terms.append(b[o])
            out[o, i] = sp.Add(*terms)
            ctx.progress(len(terms))
    return out


def conv2d(node: Any, p: Mapping[str, Obj], x: Obj, ctx: LayerContext) -> Obj:
    """``out[o, i, j] = b[o] + sum_{c,k,l} W[o, c, k, l] x[c, i*s + k*d - pad, j*s + l*d - pad]``."""
    W, b = p["W"], p.get("b")
    C, H, Wd = x.shape
    s, d, pad, K = node.stride, node.dilation, node.padding, node.kernel
    out = _obj(node.out_shape(x.shape))
    for o in range(out.shape[0]):
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                terms = []
                for c in range(C):
                    for k in range(K):
                        r = i * s + k * d - pad
                        if not 0 <= r < H:
                            continue
                        for l in range(K):
                            q = j * s + l * d - pad
                            if 0 <= q < Wd:
                                terms.append(W[o, c, k, l] * x[c, r, q])
                if b is not None:
                    terms.append(b[o])
                out[o, i, j] = sp.Add(*terms)
                ctx.progress(len(terms))
    return out


def _windows(node: Any, x: Obj):
    """``(c, i, j), [window elements in row-major order]`` for every output of a pool."""
    out_shape = node.out_shape(x.shape)
    step, size = node.step, node.size
    for c, i, j in np.ndindex(out_shape):
        yield (c, i, j), [x[c, i * step + k, j * step + l] for k in range(size) for l in range(size)]


def first_max(values: list[sp.Expr]) -> sp.Expr:
    """The maximum of ``values``, taking the *first* maximal one (``np.argmax``'s rule):
    ``sum_k values[k] * [k is the first maximum]``, the indicator a ``Piecewise((1, cond), (0,
    True))`` with ``cond`` = ``values[k] > values[j]`` for every earlier ``j`` and ``>=`` for every
    later one (exactly one holds). The indicator is piecewise constant, so SymPy's derivative
    sends the gradient to that element, ties included.

    (One ``Piecewise`` with a branch per element would be the same function, but ``sympy.diff``
    of it merges the branches' conditions with logic simplification: minutes for a 3x3 window.)"""
    if len(values) == 1:
        return values[0]
    terms = []
    for k, v in enumerate(values):
        cond = sp.And(*[sp.StrictGreaterThan(v, w) for w in values[:k]],
                      *[sp.GreaterThan(v, w) for w in values[k + 1:]])
        terms.append(v * sp.Piecewise((sp.Integer(1), cond), (sp.Integer(0), sp.true)))
    return sp.Add(*terms)


def maxpool2d(node: Any, p: Mapping[str, Obj], x: Obj, ctx: LayerContext) -> Obj:
    """The first maximum of each ``size x size`` window (see :func:`first_max`)."""
    out = _obj(node.out_shape(x.shape))
    for idx, window in _windows(node, x):
        out[idx] = first_max(window)
        ctx.progress(len(window) ** 2)
    return out


def avgpool2d(node: Any, p: Mapping[str, Obj], x: Obj, ctx: LayerContext) -> Obj:
    """The mean of each ``size x size`` window."""
    out = _obj(node.out_shape(x.shape))
    for idx, window in _windows(node, x):
        out[idx] = sp.Add(*window) / len(window)
        ctx.progress(len(window))
    return out


def _normalize(values: list[sp.Expr], eps: sp.Expr, ctx: LayerContext, what: str) -> list[sp.Expr]:
    """``(v - mu) / sqrt(var + eps)`` over ``values`` (biased variance), mean and scale named."""
    n = len(values)
    mu = ctx.name(f"mu{what}", sp.Add(*values) / n)
    dev = [v - mu for v in values]
    var = ctx.name(f"var{what}", sp.Add(*[d**2 for d in dev]) / n)
    inv = ctx.name(f"inv{what}", 1 / sp.sqrt(var + eps))
    ctx.progress(3 * n)
    return [d * inv for d in dev]


def batchnorm(node: Any, p: Mapping[str, Obj], xb: Obj, ctx: LayerContext) -> Obj:
    """Training-mode batch normalization of the whole batch ``xb`` ``(batch, F, ...)``: feature
    ``f`` (axis 1 of the batch array) over the batch and every further axis."""
    gamma, beta, eps = p["gamma"], p["beta"], _exact(node.eps)
    out = _obj(xb.shape)
    for f in range(xb.shape[1]):
        idx = [(b, f) + rest for b in range(xb.shape[0]) for rest in np.ndindex(xb.shape[2:])]
        for i, xhat in zip(idx, _normalize([xb[i] for i in idx], eps, ctx, f"_{f}")):
            out[i] = gamma[f] * xhat + beta[f]
    return out


def layernorm(node: Any, p: Mapping[str, Obj], x: Obj, ctx: LayerContext) -> Obj:
    """Normalization over the last axis of the example, then ``gamma * xhat + beta``."""
    gamma, beta, eps = p["gamma"], p["beta"], _exact(node.eps)
    out = _obj(x.shape)
    for lead in np.ndindex(x.shape[:-1]):
        tag = "_" + "_".join(map(str, lead)) if lead else ""
        for k, xhat in enumerate(_normalize(list(x[lead]), eps, ctx, tag)):
            out[lead + (k,)] = gamma[k] * xhat + beta[k]
    return out


def embedding(node: Any, p: Mapping[str, Obj], x: Obj, ctx: LayerContext) -> Obj:
    """``out[t, j] = sum_v E[v, j] * [x_t == v]``: the row of index ``x_t`` (a number at evaluation)."""
    E = p["E"]
    vocab, dim = E.shape
    out = _obj((x.shape[0], dim))
    for t in range(x.shape[0]):
        hit = [sp.Piecewise((sp.Integer(1), sp.Eq(x[t], v)), (sp.Integer(0), sp.true)) for v in range(vocab)]
        for j in range(dim):
            out[t, j] = sp.Add(*[E[v, j] * hit[v] for v in range(vocab)])
        ctx.progress(vocab * dim)
    return out


def attention(node: Any, p: Mapping[str, Obj], x: Obj, ctx: LayerContext) -> Obj:
    """Multi-head scaled dot-product self-attention over ``(T, D)`` (optionally causal)."""
    T, D = x.shape
    dh = D // node.heads
    scale = 1 / sp.sqrt(dh)
    name_all = ctx.builder.name_all
    Q = name_all(f"{ctx.tag}_q", _matmul(x, p["Wq"], ctx))
    K = name_all(f"{ctx.tag}_k", _matmul(x, p["Wk"], ctx))
    V = name_all(f"{ctx.tag}_v", _matmul(x, p["Wv"], ctx))
    heads = _obj((T, D))
    for h in range(node.heads):
        cols = range(h * dh, (h + 1) * dh)
        for t in range(T):
            seen = range(t + 1) if node.causal else range(T)
            scores = [ctx.name(f"s{h}_{t}_{u}", sp.Add(*[Q[t, j] * K[u, j] for j in cols]) * scale) for u in seen]
            ex = [sp.exp(s) for s in scores]
            den = ctx.name(f"den{h}_{t}", sp.Add(*ex))
            weights = [ctx.name(f"p{h}_{t}_{u}", e / den) for u, e in zip(seen, ex)]
            for j in cols:
                heads[t, j] = ctx.name(f"o_{t}_{j}", sp.Add(*[w * V[u, j] for u, w in zip(seen, weights)]))
            ctx.progress(3 * len(seen) * dh)
    return _matmul(heads, p["Wo"], ctx)


def rnn(node: Any, p: Mapping[str, Obj], x: Obj, ctx: LayerContext) -> Obj:
    """``h_t = tanh(x_t Wx + h_{t-1} Wh + b)``, ``h_0 = 0``; every ``h_t``."""
    Wx, Wh, b = p["Wx"], p["Wh"], p["b"]
    T, H = x.shape[0], node.hidden
    out = _obj((T, H))
    for t in range(T):
        for c in range(H):
            terms = [x[t, r] * Wx[r, c] for r in range(x.shape[1])] + [b[c]]
            if t:
                terms += [out[t - 1, r] * Wh[r, c] for r in range(H)]
            pre = ctx.name(f"pre_{t}_{c}", sp.Add(*terms))
            out[t, c] = ctx.name(f"h_{t}_{c}", sp.tanh(pre))
            ctx.progress(len(terms))
    return out


def _sigmoid(z: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-z))


def lstm(node: Any, p: Mapping[str, Obj], x: Obj, ctx: LayerContext) -> Obj:
    """LSTM, gates ``i f g o`` (torch's order) along ``4 * hidden``, ``h_0 = c_0 = 0``; every ``h_t``."""
    Wx, Wh, b = p["Wx"], p["Wh"], p["b"]
    T, H = x.shape[0], node.hidden
    out = _obj((T, H))
    cell: list[sp.Expr] = [sp.Integer(0)] * H
    for t in range(T):
        gates = []
        for g in range(4 * H):
            terms = [x[t, r] * Wx[r, g] for r in range(x.shape[1])] + [b[g]]
            if t:
                terms += [out[t - 1, r] * Wh[r, g] for r in range(H)]
            gates.append(ctx.name(f"gate_{t}_{g}", sp.Add(*terms)))
            ctx.progress(len(terms))
        for c in range(H):
            i, f, g, o = (gates[k * H + c] for k in range(4))
            cell[c] = ctx.name(f"c_{t}_{c}", _sigmoid(f) * cell[c] + _sigmoid(i) * sp.tanh(g))
            out[t, c] = ctx.name(f"h_{t}_{c}", _sigmoid(o) * sp.tanh(cell[c]))
    return out


def dropout(node: Any, p: Mapping[str, Obj], x: Obj, ctx: LayerContext) -> Obj:
    """Inverted dropout: ``x * m / (1 - rate)``, ``m`` the 0/1 mask symbols of this example."""
    assert ctx.mask is not None and ctx.mask.shape == x.shape
    scale = 1 / (1 - _exact(node.rate))
    out = _obj(x.shape)
    for idx in np.ndindex(x.shape):
        out[idx] = x[idx] * ctx.mask[idx] * scale
    ctx.progress(x.size)
    return out


def flatten(node: Any, p: Mapping[str, Obj], x: Obj, ctx: LayerContext) -> Obj:
    """Every axis into one, row-major."""
    return x.reshape(-1).copy()


#: the SymPy forward of every layer kind, by kind name
LAYER_FUNCTIONS: Mapping[str, Callable[[Any, Mapping[str, Obj], Obj, LayerContext], Obj]] = {
    "dense": dense, "conv1d": conv1d, "conv2d": conv2d, "maxpool2d": maxpool2d, "avgpool2d": avgpool2d,
    "batchnorm": batchnorm, "layernorm": layernorm, "embedding": embedding, "attention": attention,
    "rnn": rnn, "lstm": lstm, "dropout": dropout, "flatten": flatten,
}
#: kinds whose function takes the whole batch (their statistics couple the samples)
BATCH_KINDS = frozenset({"batchnorm"})


# --------------------------------------------------------------------------------------------
# the network: symbols, data, the loss
# --------------------------------------------------------------------------------------------
def couples_batch(spec: NetworkSpec) -> bool:
    """Whether the samples of a batch are coupled (batch normalization): then the unit the oracle
    builds is the whole batch of ``spec.batch`` samples, not one sample."""
    return any(isinstance(layer, BatchNorm) for layer in spec.layers)


def unit_batch(spec: NetworkSpec) -> int:
    """Samples per built expression: ``spec.batch`` for a coupled spec, 1 otherwise."""
    return spec.batch if couples_batch(spec) else 1


def _taps(node: Any, size: int, n_out: int) -> int:
    """Kernel taps inside the input (not in the zero padding), summed over the outputs of one axis."""
    return sum(1 for i in range(n_out) for k in range(node.kernel)
               if 0 <= i * node.stride + k * node.dilation - node.padding < size)


def estimate_terms(spec: NetworkSpec) -> int:
    """A rough count of the terms the forward expression will hold (products in sums, relations
    of the max-pool indicators, ...; measured at 1-3.5x below the loss DAG size on small specs),
    to refuse a too-large spec before building anything."""
    shapes = spec.shapes
    total = 0
    for i, layer in enumerate(spec.layers):
        sin, sout = shapes[i], shapes[i + 1]
        n_out = math.prod(sout)
        kind = layer.kind
        if kind == "dense":
            total += n_out * sin[-1]
        elif kind == "conv1d":
            total += sout[0] * sin[0] * _taps(layer, sin[1], sout[1])
        elif kind == "conv2d":
            total += sout[0] * sin[0] * _taps(layer, sin[1], sout[1]) * _taps(layer, sin[2], sout[2])
        elif kind == "maxpool2d":
            total += n_out * layer.size ** 4  # type: ignore[attr-defined]
        elif kind == "avgpool2d":
            total += n_out * layer.size ** 2  # type: ignore[attr-defined]
        elif kind == "embedding":
            total += n_out * layer.vocab  # type: ignore[attr-defined]
        elif kind == "attention":
            T, D = sin
            total += 4 * T * D * D + 3 * T * T * D
        elif kind in ("rnn", "lstm"):
            total += n_out * (4 if kind == "lstm" else 1) * (sin[1] + sout[1])
        else:  # normalizations, dropout, flatten
            total += 3 * n_out
    return total * unit_batch(spec)


def dropout_mask(rate: float, shape: tuple[int, ...], seed: int, index: int) -> np.ndarray:
    """The kept elements (True) of dropout layer ``index`` (1-based) for the batch input ``shape``
    and the spec's ``seed``: the rule stated in :class:`gradcheck.layerspec.Dropout`."""
    key = zlib.crc32(repr((int(seed), int(index), tuple(int(n) for n in shape))).encode())
    return np.random.default_rng(key).random(shape) >= rate


def _dropout_layers(spec: NetworkSpec) -> list[tuple[int, Dropout, tuple[int, ...]]]:
    shapes = spec.shapes
    return [(i, layer, shapes[i - 1]) for i, layer in enumerate(spec.layers, start=1) if isinstance(layer, Dropout)]


def data_symbols(spec: NetworkSpec) -> tuple[Obj, dict[int, Obj], Obj]:
    """The symbols of one unit (a sample, or the batch of a coupled spec), with a leading axis
    of :func:`unit_batch` samples: inputs ``x_0..`` shaped ``(n,) + input_shape``, the masks of
    each dropout layer ``m{i}_0..`` shaped ``(n,) + its input shape``, targets ``y_0..`` ``(n, k)``."""
    n = unit_batch(spec)
    shape = (n,) + spec.input_shape
    xs = np.array(vector_symbols("x", math.prod(shape)), dtype=object).reshape(shape)
    masks = {}
    for i, _, s in _dropout_layers(spec):
        mshape = (n,) + s
        masks[i] = np.array(vector_symbols(f"m{i}", math.prod(mshape)), dtype=object).reshape(mshape)
    ys = np.array(vector_symbols("y", n * spec.output_dim), dtype=object).reshape(n, spec.output_dim)
    return xs, masks, ys


def data_rows(spec: NetworkSpec, X: np.ndarray) -> np.ndarray:
    """The numbers of :func:`data_symbols`' inputs and masks, one row per unit: for a batch
    ``X`` ``(B,) + input_shape`` (float64), each sample's flattened ``x`` then its masks
    (``B`` rows), or for a coupled spec (``B == spec.batch``) the whole batch's in one row."""
    B = X.shape[0]
    parts = [X.reshape(B, -1)]
    for i, layer, s in _dropout_layers(spec):
        parts.append(dropout_mask(layer.rate, (B,) + s, spec.seed, i).reshape(B, -1).astype(np.float64))
    if couples_batch(spec):
        return np.concatenate([part.reshape(1, -1) for part in parts], axis=1)
    return np.concatenate(parts, axis=1)


def _activate(act: Any, z: Obj) -> Obj:
    """The activation elementwise, or a row-wise one (softmax) along the last axis."""
    if act.name == "identity":
        return z
    out = _obj(z.shape)
    if act.rowwise:
        for lead in np.ndindex(z.shape[:-1]):
            out[lead] = act.value(list(z[lead]))
        return out
    f = act.value(Z, **{k: _exact(v) for k, v in act.params.items()})
    for idx in np.ndindex(z.shape):
        out[idx] = f.xreplace({Z: z[idx]})
    return out


def network_loss(spec: NetworkSpec, theta: Mapping[str, list[sp.Symbol]], *, named: bool,
                 deadline: Any = None) -> tuple[sp.Expr, list[sp.Symbol], list[sp.Symbol],
                                                list[tuple[sp.Symbol, sp.Expr]]]:
    """The weighted loss ``sum_b w * loss(net(x_b), y_b)`` of one unit (a sample; the batch of a
    coupled spec) of a spec of any layer kinds, as SymPy.

    ``theta``: the parameter symbols by network name, row-major (see
    :func:`gradcheck.symbolic.network.param_symbols`). Returns ``(loss, data, ys, definitions)``:
    ``data`` the input symbols then the dropout masks' (the order of :func:`data_rows`),
    ``definitions`` the named intermediates in order (empty unless ``named``)."""
    loss_def = get_loss_def(spec.loss)
    acts = []
    for i, layer in enumerate(spec.layers):
        try:
            acts.append(get_activation_def(layer.activation))
        except ValueError as e:
            raise ValueError(f"NetworkSpec.layers[{i}].activation={layer.activation!r}: {e}") from None
    builder = Builder(named, deadline, estimate_terms(spec))
    xs, masks, ys = data_symbols(spec)
    n = xs.shape[0]
    in_shapes = spec.shapes
    skips_into: dict[int, list[int]] = {}
    for s, t in spec.skips:
        skips_into.setdefault(t, []).append(s)
    outputs: list[Obj] = [xs]
    a = xs
    for i, (layer, act) in enumerate(zip(spec.layers, acts), start=1):
        builder.stage = f"building layer {i} ({layer.kind})"
        p = {local: np.array(theta[name], dtype=object).reshape(shape)
             for (local, name), shape in zip(spec.param_names(i).items(),
                                             layer.param_shapes(in_shapes[i - 1]).values())}
        fn = LAYER_FUNCTIONS[layer.kind]
        if layer.kind in BATCH_KINDS:
            z = fn(layer, p, a, LayerContext(builder, i, f"L{i}"))
        else:
            z = _obj((n,) + in_shapes[i])
            for b in range(n):
                mask = masks[i][b] if i in masks else None
                z[b] = fn(layer, p, a[b], LayerContext(builder, i, f"L{i}" if n == 1 else f"L{i}s{b}", mask))
        for s in skips_into.get(i, ()):
            z = z + outputs[s]
        z = builder.name_all(f"L{i}_z", z)
        a = _activate(act, z)
        outputs.append(a)
        builder.progress(z.size)
    loss = sp.Add(*[WEIGHT * loss_def.per_sample(list(a[b]), list(ys[b])) for b in range(n)])
    data = list(xs.reshape(-1)) + [m for i in sorted(masks) for m in masks[i].reshape(-1)]
    return loss, data, list(ys.reshape(-1)), builder.definitions
