"""Layer kinds as pure data: one frozen dataclass per kind, with its shape rule and parameter shapes.

A :class:`~gradcheck.spec.NetworkSpec` is a sequence of these nodes (plus residual edges). Each
node knows what it does to a *per-example* shape (the batch axis is never written) and which
parameters it owns; it knows no formula: the numpy reference (``reference/layers/``) and the
SymPy oracle (``gradcheck/symbolic/layers.py``) implement each kind independently.

Shapes per example: dense ``(..., D)`` (acts on the last axis), conv1d ``(C, L)``, conv2d and the
pools ``(C, H, W)``, sequences (attention, RNN, LSTM) ``(T, D)``, embedding ``(T,)`` integer
indices in, ``(T, dim)`` out. Parameter layouts follow ``torch.nn.functional`` where it has one
(conv weights ``(out, in, k[, k])``), and ``x @ W`` for matrices (``W`` is ``(fan_in, fan_out)``).

Parameter names: dense layer ``i`` (1-based) owns ``W{i}``/``b{i}`` as in the origin document;
every other kind ``{prefix}{i}.{name}``, e.g. ``conv1.W``, ``bn2.gamma``, ``lstm3.Wh``.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

Shape = tuple[int, ...]


class LayerShapeError(ValueError):
    """A node that cannot take the shape it is given; the message names the field and the value."""


def _positive(node: Any, name: str, low: int = 1) -> None:
    value = getattr(node, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{type(node).__name__}.{name}={value!r}: expected an integer >= {low}")


def _flag(node: Any, name: str) -> None:
    if not isinstance(getattr(node, name), bool):
        raise ValueError(f"{type(node).__name__}.{name}={getattr(node, name)!r}: expected True or False")


def _activation(node: Any) -> None:
    if not isinstance(node.activation, str) or not node.activation:
        raise ValueError(f"{type(node).__name__}.activation={node.activation!r}: expected an activation name")


def _rank(node: Any, shape: Shape, rank: int, what: str) -> None:
    if len(shape) != rank:
        raise LayerShapeError(f"{node.kind} takes {what} per example, got shape {shape}")


def _conv_out(node: Any, size: int, axis: str) -> int:
    span = node.dilation * (node.kernel - 1) + 1
    padded = size + 2 * node.padding
    if span > padded:
        raise LayerShapeError(
            f"{type(node).__name__}.kernel={node.kernel}: the kernel spans {span} (dilation {node.dilation}), "
            f"larger than the padded input {axis} {padded} ({size} + 2 x padding {node.padding})")
    return (padded - span) // node.stride + 1


class Node:
    """Base of every layer kind: ``kind`` (registry name), ``prefix`` (parameter names), shapes."""

    kind: ClassVar[str]
    prefix: ClassVar[str]

    activation: str = "identity"

    def validate(self) -> None:
        """Field checks that need no input shape (raise ValueError naming the field)."""

    def out_shape(self, in_shape: Shape) -> Shape:
        raise NotImplementedError

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        """Local parameter names (``W``, ``gamma``, ...) and their shapes, in a fixed order."""
        return {}

    def options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def short(self) -> str:
        """A compact label for :meth:`NetworkSpec.label`: required fields by value, the others
        only where they differ from their default, e.g. ``conv2d(2,3,padding=1,relu)``."""
        parts = []
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "activation":
                continue
            if f.default is MISSING:
                parts.append(str(value))
            elif value != f.default:
                parts.append(f"{f.name}={value}")
        if self.activation != "identity":
            parts.append(self.activation)
        return f"{self.kind}({','.join(parts)})" if parts else self.kind


@dataclass(frozen=True)
class Layer(Node):
    """A dense layer on the last axis: ``z = a @ W + b``; ``width`` outputs, then ``activation``."""

    kind: ClassVar[str] = "dense"
    prefix: ClassVar[str] = ""
    width: int
    activation: str
    bias: bool = True

    def validate(self) -> None:
        _positive(self, "width")
        _activation(self)
        _flag(self, "bias")

    def out_shape(self, in_shape: Shape) -> Shape:
        if not in_shape:
            raise LayerShapeError("dense takes at least one axis per example")
        return in_shape[:-1] + (self.width,)

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {"W": (in_shape[-1], self.width)}
        if self.bias:
            shapes["b"] = (self.width,)
        return shapes

    def short(self) -> str:
        return f"{self.width}({self.activation}{'' if self.bias else ',nobias'})"


@dataclass(frozen=True)
class Conv1d(Node):
    """Cross-correlation over ``(C, L)`` as ``torch.nn.functional.conv1d``; W ``(channels, C, kernel)``."""

    kind: ClassVar[str] = "conv1d"
    prefix: ClassVar[str] = "conv"
    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    bias: bool = True
    activation: str = "identity"

    def validate(self) -> None:
        for name in ("channels", "kernel", "stride", "dilation"):
            _positive(self, name)
        _positive(self, "padding", 0)
        _flag(self, "bias")
        _activation(self)

    def out_shape(self, in_shape: Shape) -> Shape:
        _rank(self, in_shape, 2, "(channels, length)")
        return (self.channels, _conv_out(self, in_shape[1], "length"))

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {"W": (self.channels, in_shape[0], self.kernel)}
        if self.bias:
            shapes["b"] = (self.channels,)
        return shapes


@dataclass(frozen=True)
class Conv2d(Node):
    """Cross-correlation over ``(C, H, W)`` as ``torch.nn.functional.conv2d`` (square kernel, same
    stride/padding/dilation on both axes); W ``(channels, C, kernel, kernel)``."""

    kind: ClassVar[str] = "conv2d"
    prefix: ClassVar[str] = "conv"
    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    bias: bool = True
    activation: str = "identity"

    def validate(self) -> None:
        Conv1d.validate(self)  # type: ignore[arg-type]  # the same fields

    def out_shape(self, in_shape: Shape) -> Shape:
        _rank(self, in_shape, 3, "(channels, height, width)")
        return (self.channels, _conv_out(self, in_shape[1], "height"), _conv_out(self, in_shape[2], "width"))

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {"W": (self.channels, in_shape[0], self.kernel, self.kernel)}
        if self.bias:
            shapes["b"] = (self.channels,)
        return shapes


@dataclass(frozen=True)
class _Pool2d(Node):
    size: int = 2
    stride: int | None = None  # None: the window size (non-overlapping windows)

    def validate(self) -> None:
        _positive(self, "size")
        if self.stride is not None:
            _positive(self, "stride")

    @property
    def step(self) -> int:
        return self.size if self.stride is None else self.stride

    def out_shape(self, in_shape: Shape) -> Shape:
        _rank(self, in_shape, 3, "(channels, height, width)")
        c, h, w = in_shape
        if self.size > min(h, w):
            raise LayerShapeError(f"{type(self).__name__}.size={self.size}: larger than the input {h}x{w}")
        return (c, (h - self.size) // self.step + 1, (w - self.size) // self.step + 1)


@dataclass(frozen=True)
class MaxPool2d(_Pool2d):
    """Maximum over each ``size x size`` window (no padding). A tie sends the gradient to the first
    maximum in row-major window order (as ``np.argmax``; torch may pick another)."""

    kind: ClassVar[str] = "maxpool2d"
    prefix: ClassVar[str] = "pool"


@dataclass(frozen=True)
class AvgPool2d(_Pool2d):
    """Mean over each ``size x size`` window (no padding: every window holds ``size**2`` elements)."""

    kind: ClassVar[str] = "avgpool2d"
    prefix: ClassVar[str] = "pool"


@dataclass(frozen=True)
class BatchNorm(Node):
    """Training-mode batch normalization: per feature (axis 0 of the example: the channel of a
    ``(C, ...)`` input, the feature of a ``(D,)`` one) over the batch and every other axis, biased
    variance, then ``gamma * xhat + beta``. Running statistics (``momentum``: torch's rule,
    ``running = (1 - momentum) * running + momentum * batch``, unbiased variance) are state of the
    reference network, updated by training steps only: never by a gradient check, never in the loss."""

    kind: ClassVar[str] = "batchnorm"
    prefix: ClassVar[str] = "bn"
    eps: float = 1e-5
    momentum: float = 0.1

    def validate(self) -> None:
        if not isinstance(self.eps, (int, float)) or isinstance(self.eps, bool) or not self.eps > 0:
            raise ValueError(f"BatchNorm.eps={self.eps!r}: expected a number > 0")
        if not isinstance(self.momentum, (int, float)) or isinstance(self.momentum, bool) or not 0 < self.momentum <= 1:
            raise ValueError(f"BatchNorm.momentum={self.momentum!r}: expected a number in (0, 1]")

    def out_shape(self, in_shape: Shape) -> Shape:
        if not in_shape:
            raise LayerShapeError("batchnorm takes at least one axis per example")
        return in_shape

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        return {"gamma": (in_shape[0],), "beta": (in_shape[0],)}


@dataclass(frozen=True)
class LayerNorm(Node):
    """Normalization over the last axis of each example (biased variance), then ``gamma * xhat + beta``."""

    kind: ClassVar[str] = "layernorm"
    prefix: ClassVar[str] = "ln"
    eps: float = 1e-5

    def validate(self) -> None:
        if not isinstance(self.eps, (int, float)) or isinstance(self.eps, bool) or not self.eps > 0:
            raise ValueError(f"LayerNorm.eps={self.eps!r}: expected a number > 0")

    def out_shape(self, in_shape: Shape) -> Shape:
        if not in_shape:
            raise LayerShapeError("layernorm takes at least one axis per example")
        return in_shape

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        return {"gamma": (in_shape[-1],), "beta": (in_shape[-1],)}


@dataclass(frozen=True)
class Embedding(Node):
    """Rows of ``E`` (``(vocab, dim)``) picked by integer indices ``(T,)``; first layer only.
    Repeated indices add their gradients into the same row."""

    kind: ClassVar[str] = "embedding"
    prefix: ClassVar[str] = "embed"
    vocab: int
    dim: int

    def validate(self) -> None:
        _positive(self, "vocab")
        _positive(self, "dim")

    def out_shape(self, in_shape: Shape) -> Shape:
        _rank(self, in_shape, 1, "(length,) integer indices")
        return (in_shape[0], self.dim)

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        return {"E": (self.vocab, self.dim)}


@dataclass(frozen=True)
class Attention(Node):
    """Multi-head scaled dot-product self-attention over ``(T, D)``: ``Q = x Wq``, ``K = x Wk``,
    ``V = x Wv`` split into ``heads`` of ``D / heads``; ``softmax(Q K^T / sqrt(D / heads)) V`` per
    head (``causal``: position t sees positions <= t), heads concatenated, then ``@ Wo``."""

    kind: ClassVar[str] = "attention"
    prefix: ClassVar[str] = "attn"
    heads: int = 1
    causal: bool = False

    def validate(self) -> None:
        _positive(self, "heads")
        _flag(self, "causal")

    def out_shape(self, in_shape: Shape) -> Shape:
        _rank(self, in_shape, 2, "(length, features)")
        if in_shape[1] % self.heads:
            raise LayerShapeError(f"Attention.heads={self.heads}: does not divide the {in_shape[1]} features")
        return in_shape

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        d = in_shape[1]
        return {"Wq": (d, d), "Wk": (d, d), "Wv": (d, d), "Wo": (d, d)}


@dataclass(frozen=True)
class _Recurrent(Node):
    """A recurrent layer over ``(T, D)`` that outputs every ``h_t``, ``(T, hidden)``; ``gates``
    pre-activations of width ``hidden`` per step (``Wx``, ``Wh``, ``b`` hold them side by side)."""

    gates: ClassVar[int] = 1
    hidden: int

    def validate(self) -> None:
        _positive(self, "hidden")

    def out_shape(self, in_shape: Shape) -> Shape:
        _rank(self, in_shape, 2, "(length, features)")
        return (in_shape[0], self.hidden)

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        h = self.gates * self.hidden
        return {"Wx": (in_shape[1], h), "Wh": (self.hidden, h), "b": (h,)}


@dataclass(frozen=True)
class RNN(_Recurrent):
    """Vanilla RNN over ``(T, D)``: ``h_t = tanh(x_t Wx + h_{t-1} Wh + b)``, ``h_0 = 0``; outputs
    every ``h_t``, ``(T, hidden)``."""

    kind: ClassVar[str] = "rnn"
    prefix: ClassVar[str] = "rnn"


@dataclass(frozen=True)
class LSTM(_Recurrent):
    """LSTM over ``(T, D)``, gates in torch's order ``i, f, g, o`` along the ``4 * hidden`` axis:
    ``[i f g o] = x_t Wx + h_{t-1} Wh + b``, ``c_t = s(f) c_{t-1} + s(i) tanh(g)``,
    ``h_t = s(o) tanh(c_t)`` (s the sigmoid), ``h_0 = c_0 = 0``; outputs every ``h_t``."""

    kind: ClassVar[str] = "lstm"
    prefix: ClassVar[str] = "lstm"
    gates: ClassVar[int] = 4


@dataclass(frozen=True)
class Dropout(Node):
    """Inverted dropout with a mask fixed by the spec's seed and the layer's index (the same mask
    on every call, so the loss is a deterministic function): kept elements scaled by ``1/(1-rate)``.

    The mask, exactly: for the layer's *batch* input shape ``shape = (batch,) + per-example
    shape`` (a tuple of Python ints), the spec's ``seed`` and the layer's 1-based ``index``,
    ``key = zlib.crc32(repr((seed, index, shape)).encode())`` (e.g. ``repr((0, 2, (4, 3)))`` is
    ``"(0, 2, (4, 3))"``), and the kept elements are ``numpy.random.default_rng(key).random(shape)
    >= rate`` (float64 draws, row-major). Sample ``b`` uses row ``b`` of that mask, so a sample's
    mask depends on the batch size. Every implementation (numpy reference, SymPy oracle) computes
    it with its own code from this rule."""

    kind: ClassVar[str] = "dropout"
    prefix: ClassVar[str] = "drop"
    rate: float = 0.5

    def validate(self) -> None:
        if not isinstance(self.rate, (int, float)) or isinstance(self.rate, bool) or not 0 <= self.rate < 1:
            raise ValueError(f"Dropout.rate={self.rate!r}: expected a number in [0, 1)")

    def out_shape(self, in_shape: Shape) -> Shape:
        return in_shape


@dataclass(frozen=True)
class Flatten(Node):
    """Every axis of an example into one: ``(C, H, W) -> (C*H*W,)``, row-major."""

    kind: ClassVar[str] = "flatten"
    prefix: ClassVar[str] = "flat"

    def out_shape(self, in_shape: Shape) -> Shape:
        return (math.prod(in_shape),)


NODE_TYPES: dict[str, type[Node]] = {cls.kind: cls for cls in (
    Layer, Conv1d, Conv2d, MaxPool2d, AvgPool2d, BatchNorm, LayerNorm, Embedding, Attention, RNN, LSTM,
    Dropout, Flatten)}
"""Every layer kind, by name (``dense`` is :class:`Layer`)."""

LAYER_KINDS: tuple[str, ...] = tuple(NODE_TYPES)


def node_from_dict(d: dict[str, Any], where: str) -> Node:
    """A node from its JSON form: ``{"kind": ..., fields}``; no ``kind`` means dense."""
    d = dict(d)
    kind = d.pop("kind", "dense")
    if kind not in NODE_TYPES:
        raise ValueError(f"NetworkSpec.{where}.kind={kind!r}: expected one of {LAYER_KINDS}")
    cls = NODE_TYPES[kind]
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    extra = set(d) - known
    if extra:
        raise ValueError(f"NetworkSpec.{where}: unknown field(s) {sorted(extra)} for {kind}; known: {sorted(known)}")
    try:
        return cls(**d)
    except TypeError as e:
        raise ValueError(f"NetworkSpec.{where}: {e}") from None


def node_to_dict(node: Node) -> dict[str, Any]:
    """The JSON form; dense layers keep their historical form (no ``kind`` key)."""
    d = node.options()
    if node.kind != "dense":
        d = {"kind": node.kind, **d}
    return d
