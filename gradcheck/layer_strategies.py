"""Hypothesis strategies for networks with layer kinds beyond dense (conv, pooling, normalization,
embedding, attention, recurrence, dropout, residual edges).

A generated network is one *block* of the chosen kind on a small input of the shape that kind
reads, then ``Flatten()`` where needed, a dense hidden layer with the cell's activation and the
output layer the loss needs: ``[block] -> Flatten -> Layer(h, activation) -> Layer(k, last)``.
Shapes are valid by construction (every draw is bounded by what the shape rules allow), every
choice shrinks towards the smallest network (one channel, kernel 1, length 1, batch 1), and the
printed ``NetworkSpec`` repr rebuilds the failing network. Cases are drawn in the realistic mode
(ordinary init, normal inputs, kinks wherever they fall): the checker's kink handling decides.

``layer_specs(kind=..., activation=..., loss=...)`` and ``layer_cases(...)`` are re-exported by
:mod:`gradcheck.strategies`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from gradcheck.layerspec import (
    LAYER_KINDS,
    LSTM,
    RNN,
    Attention,
    AvgPool2d,
    BatchNorm,
    Conv1d,
    Conv2d,
    Dropout,
    Embedding,
    Flatten,
    Layer,
    LayerNorm,
    MaxPool2d,
    Node,
)
from gradcheck.spec import DTYPES, NetworkSpec

#: every kind the strategies generate (``dense`` is the plain dense network of ``specs()``)
KINDS = tuple(k for k in LAYER_KINDS if k != "dense")
#: the kinds a block may add a residual edge around (their output keeps their input's shape)
_SHAPE_KEEPING = {"batchnorm", "layernorm", "attention", "dropout"}


def _kind_block(draw, kind: str, activation: str) -> tuple[tuple[int, ...], list[Node], list[tuple[int, int]]]:
    """``(input_shape, layers, skips)`` of one block of ``kind`` (layer indices 1-based)."""
    ints = st.integers
    if kind in ("conv2d", "maxpool2d", "avgpool2d", "flatten"):
        c, h, w = draw(ints(1, 2)), draw(ints(2, 5)), draw(ints(2, 5))
        if kind == "conv2d":
            padding = draw(ints(0, 1))
            dilation = draw(ints(1, 2))
            fit = min(h, w) + 2 * padding
            kmax = max(1, (fit - 1) // dilation + 1)
            kernel = draw(ints(1, min(3, kmax)))
            stride = draw(ints(1, 2))
            node: Node = Conv2d(draw(ints(1, 3)), kernel, stride, padding, dilation, draw(st.booleans()), activation)
            return (c, h, w), [node], []
        if kind == "flatten":
            return (c, h, w), [], []
        size = draw(ints(1, min(3, h, w)))
        stride = draw(st.one_of(st.none(), ints(1, 2)))
        pool = MaxPool2d(size, stride) if kind == "maxpool2d" else AvgPool2d(size, stride)
        return (c, h, w), [pool], []
    if kind == "conv1d":
        c, length = draw(ints(1, 2)), draw(ints(2, 8))
        padding, dilation = draw(ints(0, 2)), draw(ints(1, 2))
        kmax = max(1, (length + 2 * padding - 1) // dilation + 1)
        node = Conv1d(draw(ints(1, 3)), draw(ints(1, min(3, kmax))), draw(ints(1, 2)), padding, dilation,
                      draw(st.booleans()), activation)
        return (c, length), [node], []
    if kind == "batchnorm":
        if draw(st.booleans()):  # after a convolution, per channel over batch and space
            shape = (draw(ints(1, 2)), draw(ints(2, 4)), draw(ints(2, 4)))
            return shape, [Conv2d(draw(ints(1, 2)), 1, activation=activation), BatchNorm()], []
        d = draw(ints(1, 5))
        return (d,), [Layer(draw(ints(1, 5)), activation), BatchNorm()], []
    if kind == "layernorm":
        t, d = draw(ints(1, 4)), draw(ints(2, 5))
        residual = draw(st.booleans())
        return (t, d), [Layer(d, activation), LayerNorm()], [(0, 2)] if residual else []
    if kind == "embedding":
        t, vocab, dim = draw(ints(1, 5)), draw(ints(2, 6)), draw(ints(1, 4))
        return (t,), [Embedding(vocab, dim)], []
    if kind == "attention":
        t, heads = draw(ints(1, 4)), draw(ints(1, 2))
        d = heads * draw(ints(1, 3))
        layers: list[Node] = [Attention(heads, draw(st.booleans()))]
        skips: list[tuple[int, int]] = []
        if draw(st.booleans()):  # a transformer sub-block: x + LayerNorm(attention(x))
            layers.append(LayerNorm())
            skips.append((0, 2))
        return (t, d), layers, skips
    if kind in ("rnn", "lstm"):
        t, d, hidden = draw(ints(1, 4)), draw(ints(1, 3)), draw(ints(1, 3))
        return (t, d), [RNN(hidden) if kind == "rnn" else LSTM(hidden)], []
    if kind == "dropout":
        d = draw(ints(1, 5))
        rate = draw(st.sampled_from((0.5, 0.25, 0.0)))
        return (d,), [Layer(draw(ints(1, 5)), activation), Dropout(rate)], []
    raise InvalidArgument(f"kind={kind!r}: expected one of {KINDS}")


@st.composite
def _layer_spec(draw, kinds: tuple[str, ...], activation, loss, dtypes: tuple[str, ...], max_batch: int) -> NetworkSpec:
    from gradcheck.strategies import OUTPUT_ACTIVATION, _registries  # noqa: PLC0415 - one home for the tables

    _, LOSSES = _registries()
    kind = draw(st.sampled_from(kinds))
    act = draw(activation) if isinstance(activation, SearchStrategy) else activation
    loss_name = draw(loss) if isinstance(loss, SearchStrategy) else loss
    entry = LOSSES[loss_name]
    input_shape, layers, skips = _kind_block(draw, kind, act)
    hidden = draw(st.integers(1, 4))
    out = draw(st.integers(entry.min_outputs, max(entry.min_outputs, 3)))
    tail: list[Node] = []
    probe = NetworkSpec(input_dim=input_shape, layers=tuple(layers) + (Flatten(), Layer(1, "identity")), loss="mse")
    if len(probe.shapes[len(layers)]) != 1 or kind == "flatten":
        tail.append(Flatten())
    last = OUTPUT_ACTIVATION.get(entry.output, act)
    tail += [Layer(hidden, act), Layer(out, last)]
    return NetworkSpec(input_dim=input_shape, layers=tuple(layers) + tuple(tail), loss=loss_name,
                       batch=draw(st.integers(1, max_batch)), dtype=draw(st.sampled_from(dtypes)),
                       init=draw(st.sampled_from(("xavier", "he", "normal"))), seed=draw(st.integers(0, 2**32 - 1)),
                       skips=tuple(skips))


def _names(name: str, value: Any, known: tuple[str, ...]) -> tuple[str, ...]:
    values = (value,) if isinstance(value, str) else tuple(value)
    bad = [v for v in values if v not in known]
    if bad or not values:
        raise InvalidArgument(f"{name}={value!r}: expected names among {', '.join(known)}")
    return values


def layer_specs(*, kind: Any = None, activation: Any = None, loss: Any = None, dtypes: Any = DTYPES,
                max_batch: int = 4) -> SearchStrategy[NetworkSpec]:
    """Networks built around one layer kind (see the module docstring).

    Parameters
    ----------
    kind : name or names, optional
        Layer kinds to draw from (default: every kind in :data:`KINDS`).
    activation, loss : name, names or strategy, optional
        The hidden activation (also that of convolutions and the dense layers of a block) and the
        loss (default: every registered one). The output layer gets what the loss reads.
    dtypes : names, default both
    max_batch : int, default 4
    """
    from gradcheck.strategies import _names_strategy, _registries  # noqa: PLC0415

    ACTIVATIONS, LOSSES = _registries()
    kinds = KINDS if kind is None else _names("kind", kind, KINDS)
    acts = _names_strategy("activation", activation, ACTIVATIONS, "activations")
    losses = _names_strategy("loss", loss, LOSSES, "losses")
    dts = _names("dtypes", dtypes, DTYPES)
    if not isinstance(max_batch, int) or max_batch < 1:
        raise InvalidArgument(f"max_batch={max_batch!r}: expected an integer >= 1")
    return _layer_spec(kinds, acts, losses, dts, max_batch)


def layer_inputs(spec: NetworkSpec, rng: np.random.Generator) -> np.ndarray:
    """A batch for ``spec``: standard normal floats in its dtype, or integer indices (with repeats
    likely) below the embedding's vocabulary."""
    shape = (spec.batch,) + spec.input_shape
    if spec.input_is_integer:
        vocab = spec.layers[0].vocab  # type: ignore[attr-defined]
        return rng.integers(0, vocab, size=shape)
    return rng.standard_normal(shape).astype(spec.dtype)


@st.composite
def _layer_case(draw, spec_strategy):
    from gradcheck.strategies import Case, targets  # noqa: PLC0415
    from gradcheck_reference.network import Network  # noqa: PLC0415 - the reference, imported when drawn

    spec = draw(spec_strategy)
    net = Network(spec)
    params = net.init_params()
    X = layer_inputs(spec, np.random.default_rng([spec.seed, 0x1A7E5]))
    y = draw(targets(spec))
    return Case(spec, params, X, y)


def layer_cases(*, kind: Any = None, activation: Any = None, loss: Any = None, dtypes: Any = DTYPES,
                max_batch: int = 4) -> SearchStrategy[Any]:
    """Whole problems :class:`gradcheck.strategies.Case` for :func:`layer_specs` networks: the
    spec's initial parameters, normal inputs (integer indices for an embedding), valid targets."""
    return _layer_case(layer_specs(kind=kind, activation=activation, loss=loss, dtypes=dtypes,
                                   max_batch=max_batch))
