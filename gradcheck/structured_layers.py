"""Structure-aware finite differences for layered specs: conv, pooling, normalization, dropout.

:mod:`gradcheck.structured` batches the perturbed forward passes of a *dense* network; this module
does the same for a :class:`~gradcheck.spec.NetworkSpec` with other layer kinds (dense, conv1d,
conv2d, maxpool2d, avgpool2d, batchnorm, layernorm, dropout, flatten, with residual edges), e.g.
``Conv2d -> MaxPool2d -> BatchNorm -> Flatten -> Layer -> Layer``. ``check(..., oracle="structured")``
reaches it through :func:`gradcheck.structured.oracle_loss`, which dispatches non-dense specs here;
dense specs keep the dense path unchanged. Attention, RNN, LSTM and embedding layers are not
supported: :func:`validate` names them and points to ``oracle="numerical"``.

How a tensor of layer ``i`` is differentiated. Every supported parameter enters its layer's
pre-activation linearly, and one element moves one slice of it: ``W[j, k]`` of a dense layer
moves output column ``k`` by ``d * x[..., j]``; ``W[o, c, *i]`` of a convolution moves output
channel ``o`` by ``d`` times the input window element ``(c, *i)`` at every output position;
``gamma[c]`` / ``beta[c]`` of a batch norm move channel ``c`` by ``d * xhat[:, c]`` / ``d`` (the
batch statistics do not depend on gamma and beta); layernorm's ``gamma[k]`` / ``beta[k]`` move
the last-axis column ``k`` likewise; a bias moves its slice by ``d``. So the layers before ``i``
run once (at the base point), layer ``i``'s perturbed pre-activation is the base one plus ``d``
times that effect for ``K`` perturbations at once, stacked along a new leading axis
``(K, B, ...)``, and only layers ``i..L`` run on the stack. Per-example layers (dense, conv,
pooling, layernorm, flatten) run on the stack merged to ``(K * B, ...)``; batch norm, whose
statistics are over the batch, normalizes each pass's ``B`` examples separately (statistics over
axis 1 and the spatial axes of ``(K, B, C, ...)``); dropout applies the mask of the ``(B, ...)``
batch to every pass. The stack is processed in chunks of perturbations whose estimated working
set (every downstream activation, the im2col copies of convolutions, the window copies of
pooling, the loss's temporaries) stays under ``max_bytes`` and aims at :data:`CHUNK_BYTES`
(cache-sized chunks are faster than large ones).

Independence. This is a value oracle, like finite differences: it computes loss values only,
and the derivatives come from their differences. It never calls any backward or derivative code.
Values it takes from the reference: the *forward* functions of the layer registry
(``gradcheck_reference.layers.LAYERS[kind].forward`` for dense, conv1d/conv2d, the pools,
layernorm and flatten; the dropout mask rule ``dropout_mask``), the activations' ``Activation.f``
and the losses' values (as :mod:`gradcheck.structured`). Batch norm's forward (on stacked passes)
and the effects above (input windows, ``xhat``) are computed here from the formulas in
:mod:`gradcheck.layerspec`. As in the dense path, what makes the values trustworthy for a given
``fn`` is the run-time check of :func:`gradcheck.structured.oracle_loss`: the spec's loss at the
base point must reproduce fn's own loss to rounding (else ``SpecMismatch``), and the offset it
sets makes the value at the base point equal fn's loss exactly.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gradcheck.structured import MAX_BYTES, SpecMismatch, loss_value_function
from gradcheck_reference.activations import ACTIVATIONS
from gradcheck_reference.layers import LAYERS, Context
from gradcheck_reference.layers.reshape import dropout_mask

Array = np.ndarray

#: kinds whose forward is per example: run on the stack merged to (K * B, ...) by the registry's forward
PER_EXAMPLE = ("dense", "conv1d", "conv2d", "maxpool2d", "avgpool2d", "layernorm", "flatten")
#: kinds computed here on the stack (their values depend on the whole batch of one pass)
PER_PASS = ("batchnorm", "dropout")
#: every kind the layered structured oracle evaluates
SUPPORTED = PER_EXAMPLE + PER_PASS
#: working set aimed at per chunk (never above ``max_bytes``): cache-sized chunks were the fastest on
#: benchmarks/structured_cnn.py (flat from 0.5 to 4 MiB, 1.6x slower at 32 MiB)
CHUNK_BYTES = 4 * 2**20


def unsupported_layers(spec: Any) -> list[tuple[int, str]]:
    """``(index, kind)`` of every layer of ``spec`` this module cannot evaluate (0-based index)."""
    return [(i, layer.kind) for i, layer in enumerate(spec.layers) if layer.kind not in SUPPORTED]


def validate(spec: Any) -> None:
    """Raise ``ValueError`` unless every layer kind, activation and the loss of ``spec`` are known
    here; an unsupported kind is named, with its layers, and ``oracle='numerical'`` is suggested."""
    bad = unsupported_layers(spec)
    if bad:
        kinds = ", ".join(dict.fromkeys(kind for _, kind in bad))
        where = ", ".join(f"layers[{i}] is {kind}" for i, kind in bad)
        raise ValueError(
            f"oracle='structured' does not support {kinds} layers ({where}); it knows "
            f"{', '.join(SUPPORTED)}: use oracle='numerical' (the default) for this network")
    LayeredLoss(spec, np.zeros((1,) + tuple(spec.input_shape)), np.zeros((1, spec.output_dim)))


# -- forward values on stacked passes (K, B, ...) ------------------------------------------------------
def _normalize(x: Array, eps: float, axes: int | tuple[int, ...]) -> Array:
    """``(x - mean) / sqrt(var + eps)`` over ``axes``, biased variance, two passes (as the spec says)."""
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=axes, keepdims=True)
    return centered * (1.0 / np.sqrt(var + np.asarray(eps, dtype=x.dtype)))


def _batchnorm(node: Any, p: Mapping[str, Array], x: Array, ctx: Context) -> Array:
    """Training-mode batch norm of every pass separately: ``x`` is ``(K, B, C, ...)``; the statistics
    of channel ``c`` are over that pass's batch (axis 1) and the spatial axes."""
    axes = (1,) + tuple(range(3, x.ndim))
    shape = (1, 1, x.shape[2]) + (1,) * (x.ndim - 3)
    return p["gamma"].reshape(shape) * _normalize(x, node.eps, axes) + p["beta"].reshape(shape)


def _windows(node: Any, x: Array) -> Array:
    """``(B, C, *out, *kernel)``: the receptive field of every output position of a convolution
    (zero padding, stride, dilation; a view of the padded ``x``)."""
    n = x.ndim - 2
    p, s, d, k = node.padding, node.stride, node.dilation, node.kernel
    xp = np.pad(x, ((0, 0), (0, 0)) + ((p, p),) * n)
    win = sliding_window_view(xp, (d * (k - 1) + 1,) * n, axis=tuple(range(2, 2 + n)))
    return win[(slice(None), slice(None)) + (slice(None, None, s),) * n + (slice(None, None, d),) * n]


# -- the effect of one parameter element on its layer's pre-activation -------------------------------
# effect(node, local name, multi-index arrays (one per axis of the tensor, R entries each), the
# layer's base input (B, ...), a per-layer cache) -> (axis of the example the element moves a slice
# of, the slice positions (R,), the change per unit of the element (R, B, ...) or None for "1")
Effect = Callable[[Any, str, tuple[Array, ...], Array, dict], tuple[int, Array, Array | None]]


def _dense_effect(node, local, idx, x, cache):
    if local == "W":                          # z[..., k] += d * x[..., j]
        return -1, idx[1], np.moveaxis(x, -1, 0)[idx[0]]
    return -1, idx[0], None                   # b[k]


def _conv_effect(node, local, idx, x, cache):
    if local == "W":                          # z[:, o, *p] += d * window[:, c, *p, *i]
        if "windows" not in cache:            # (C, *kernel, B, *out): indexed by (c, *i)
            win = _windows(node, x)
            n = x.ndim - 2
            cache["windows"] = win.transpose((1, *range(2 + n, 2 + 2 * n), 0, *range(2, 2 + n)))
        return 0, idx[0], cache["windows"][idx[1:]]
    return 0, idx[0], None                    # b[o]


def _batchnorm_effect(node, local, idx, x, cache):
    if local == "gamma":                      # z[:, c] += d * xhat[:, c]
        if "xhat" not in cache:
            cache["xhat"] = np.moveaxis(_normalize(x, node.eps, (0,) + tuple(range(2, x.ndim))), 1, 0)
        return 0, idx[0], cache["xhat"][idx[0]]
    return 0, idx[0], None                    # beta[c]


def _layernorm_effect(node, local, idx, x, cache):
    if local == "gamma":                      # z[..., k] += d * xhat[..., k]
        if "xhat" not in cache:
            cache["xhat"] = np.moveaxis(_normalize(x, node.eps, -1), -1, 0)
        return -1, idx[0], cache["xhat"][idx[0]]
    return -1, idx[0], None                   # beta[k]


EFFECTS: dict[str, Effect] = {"dense": _dense_effect, "conv1d": _conv_effect, "conv2d": _conv_effect,
                              "batchnorm": _batchnorm_effect, "layernorm": _layernorm_effect}


# -- the layered structured loss ------------------------------------------------------------------------
class LayeredLoss:
    """``loss(params) -> float`` for the layered network of ``spec`` on ``(X, y)``, and
    :meth:`evaluate_points`, the batched evaluation :func:`gradcheck.numerical.estimate` uses.

    The same interface as :class:`gradcheck.structured.StructuredLoss` (``offset``, ``forward``,
    ``loss_value``, ``value``, ``__call__``), so :func:`gradcheck.structured.oracle_loss` checks it
    against fn's loss and sets its offset the same way.
    """

    def __init__(self, spec: Any, X: Any, y: Any, *, offset: float = 0.0, max_bytes: int = MAX_BYTES) -> None:
        bad = unsupported_layers(spec)
        if bad:
            raise ValueError(f"layer kind(s) {sorted({k for _, k in bad})} are not supported by the layered "
                             "structured oracle; use oracle='numerical'")
        for i, layer in enumerate(spec.layers):
            if layer.activation not in ACTIVATIONS:
                raise ValueError(f"spec.layers[{i}].activation={layer.activation!r}: the structured oracle "
                                 f"knows the registry's activations {sorted(ACTIVATIONS)}")
        self.loss_value = loss_value_function(spec.loss)
        if not (isinstance(max_bytes, int) and max_bytes > 0):
            raise ValueError(f"max_bytes={max_bytes!r}: expected a positive integer")
        self.spec = spec
        self.layers = tuple(spec.layers)
        self.shapes = tuple(tuple(s) for s in spec.shapes)
        X = np.asarray(X)
        if X.shape == self.shapes[0]:        # one example
            X = X[None]
        if X.shape[1:] != self.shapes[0]:
            raise SpecMismatch(f"X has shape {X.shape}; the spec's network takes (batch,) + {self.shapes[0]}")
        self.X = X
        self.y = np.asarray(y)
        self.offset = float(offset)
        self.max_bytes = max_bytes
        # forward values only: Activation.f (vectorized over leading axes; softmax on the last axis)
        self.acts = [None if layer.activation == "identity" else ACTIVATIONS[layer.activation].f
                     for layer in spec.layers]
        self.skips_into: dict[int, list[int]] = {}
        for s, t in spec.skips:
            self.skips_into.setdefault(t, []).append(s)
        self.sources = {s for s, _ in spec.skips}
        self.where: dict[str, tuple[int, str]] = {}   # network name -> (layer, local name)
        for i in range(1, len(self.layers) + 1):
            for local, full in spec.param_names(i).items():
                self.where[full] = (i, local)
        self.param_shapes = {k: tuple(v) for k, v in spec.param_shapes().items()}
        self._masks: dict[int, Array] = {}

    # -- one layer on stacked passes --------------------------------------------------------------
    def _dtype(self, params: Mapping[str, Array]) -> np.dtype:
        return np.result_type(*params.values())

    def _y(self, dt: np.dtype) -> Array:
        return self.y.astype(dt) if self.y.dtype.kind == "f" else self.y

    def _local(self, params: Mapping[str, Array], t: int) -> dict[str, Array]:
        return {k: params[n] for k, n in self.spec.param_names(t).items()}

    def _apply(self, params: Mapping[str, Array], t: int, x: Array) -> Array:
        """Layer ``t``'s op (no skip, no activation) on stacked passes ``x`` ``(K, B, ...)``."""
        node = self.layers[t - 1]
        ctx = Context(self.spec.seed, t)
        K, B = x.shape[:2]
        if node.kind == "batchnorm":
            return _batchnorm(node, self._local(params, t), x, ctx)
        if node.kind == "dropout":           # the mask of one pass's (B, ...) batch, on every pass
            if t not in self._masks:
                self._masks[t] = dropout_mask(node.rate, x.shape[1:], ctx)
            scale = 1.0 / (1.0 - node.rate)
            return np.where(self._masks[t], x * scale, 0).astype(x.dtype, copy=False)
        z, _ = LAYERS[node.kind].forward(node, self._local(params, t), x.reshape((K * B,) + x.shape[2:]), ctx)
        return z.reshape((K, B) + z.shape[1:])

    def _run(self, params: Mapping[str, Array], start: int, z: Array, base: list[Array],
             record: list[Array] | None = None) -> Array:
        """The network output ``(K, B, k)`` of stacked passes whose layer ``start`` has the
        pre-activation ``z`` ``(K, B, ...)``; ``base`` holds the base outputs ``a_0..a_{start-1}``
        (read by skips from before ``start``). ``record`` collects ``z_t``, ``a_t`` of each layer."""
        stacked: dict[int, Array] = {}
        t = start
        while True:
            act = self.acts[t - 1]
            a = z if act is None else act(z)
            if record is not None:
                record.extend((z, a))
            if t == len(self.layers):
                return a
            if t in self.sources:
                stacked[t] = a
            t += 1
            z = self._apply(params, t, a)
            for s in self.skips_into.get(t, ()):
                z = z + (stacked[s] if s >= start else base[s])

    # -- plain evaluation -------------------------------------------------------------------------
    def forward(self, params: Mapping[str, Array]) -> tuple[list[Array], list[Array]]:
        """Pre-activations ``[z_1..z_L]`` and outputs ``[a_0=X, a_1..a_L]`` at ``params`` (one pass)."""
        dt = self._dtype(params)
        x = self.X.astype(dt)
        record: list[Array] = []
        self._run(params, 1, self._apply(params, 1, x[None]), [x], record)
        return [z[0] for z in record[::2]], [x] + [a[0] for a in record[1::2]]

    def value(self, params: Mapping[str, Array]) -> float:
        """The spec's loss at ``params`` (without the offset)."""
        with np.errstate(all="ignore"):
            _, a = self.forward(params)
            return float(self.loss_value(a[-1], self._y(a[-1].dtype)))

    def __call__(self, params: Mapping[str, Array]) -> float:
        return self.value(params) + self.offset

    # -- batched evaluation -----------------------------------------------------------------------
    def _bytes_per_pass(self, start: int, itemsize: int) -> int:
        """Working set of one perturbed pass from layer ``start`` on: the perturbed pre-activation
        with its effect (x6), every later activation (x4 for temporaries) and its input, im2col
        copies of convolutions, window copies of pooling, skip sources kept, the loss's temporaries."""
        batch = self.X.shape[0]
        total = 6 * math.prod(self.shapes[start]) + 8 * math.prod(self.shapes[-1])
        for t in range(start + 1, len(self.layers) + 1):
            node, before, after = self.layers[t - 1], self.shapes[t - 1], self.shapes[t]
            total += 4 * math.prod(after) + math.prod(before)
            if node.kind in ("conv1d", "conv2d"):
                n = len(before) - 1
                total += before[0] * math.prod(after[1:]) * node.kernel ** n
                total += before[0] * math.prod(m + 2 * node.padding for m in before[1:])
            elif node.kind in ("maxpool2d", "avgpool2d"):
                total += math.prod(after) * node.size ** 2
        total += sum(math.prod(self.shapes[s]) for s in self.sources if s >= start)
        return batch * total * itemsize

    def evaluate_points(self, work: Mapping[str, Array], name: str, points: list[Array]) -> Array:
        """The loss with element ``e`` of ``work[name]`` replaced by ``points[j][e]``, for every
        element ``e`` and point ``j``: an array ``(size, len(points))`` (``work`` is not modified)."""
        if name not in self.where:
            raise KeyError(f"{name!r} is not a parameter of the spec's network ({', '.join(self.where)})")
        layer, local = self.where[name]
        node = self.layers[layer - 1]
        effect = EFFECTS[node.kind]
        shape = self.param_shapes[name]
        x = work[name].reshape(-1)
        dt = self._dtype(work)
        deltas = np.stack([np.asarray(p, dtype=dt).reshape(-1) - x.astype(dt) for p in points], axis=1)
        n, m = deltas.shape
        with np.errstate(all="ignore"):
            zs, a = self.forward(work)
        y = self._y(dt)
        z_base, x_in = zs[layer - 1], a[layer - 1]
        budget = min(self.max_bytes, CHUNK_BYTES)
        chunk = max(1, budget // (self._bytes_per_pass(layer, np.dtype(dt).itemsize) * m))
        cache: dict[str, Array] = {}
        out = np.empty((n, m))
        with np.errstate(all="ignore"):
            for start in range(0, n, chunk):
                e = np.arange(start, min(n, start + chunk))
                R = e.size * m
                idx = tuple(np.repeat(i, m) for i in np.unravel_index(e, shape))  # rows: element, then point
                d = deltas[e].reshape(-1)
                axis, pos, src = effect(node, local, idx, x_in, cache)
                z = np.empty((R,) + z_base.shape, dt)
                z[...] = z_base
                view = np.moveaxis(z, 2 + axis if axis >= 0 else axis, 1)   # (R, slice, B, ...)
                moved = view[np.arange(R), pos]                             # (R, B, ...): a copy
                d = d.reshape((R,) + (1,) * (moved.ndim - 1))
                view[np.arange(R), pos] = moved + (d if src is None else d * src)
                values = self.loss_value(self._run(work, layer, z, a), y)
                out[start:start + e.size] = np.asarray(values).reshape(e.size, m)
        return out + self.offset
