"""``NetworkSpec``: a pure, immutable, JSON-serializable description of a network and its batch.

A spec holds no arrays and no functions, so it crosses processes and files, and its ``repr`` is
Python that rebuilds it (``from gradcheck.spec import NetworkSpec, Layer`` in scope). It knows the
structure (names and shapes of the parameters) but not the activation or loss formulas: names are
checked against a registry by whoever builds the network.

Layer ``i`` (1-based) computes ``z_i = a_{i-1} @ W_i + b_i (+ a_s for each skip (s, i))`` and
``a_i = act_i(z_i)``, with ``a_0 = X``; ``W_i`` is ``(fan_in, width)`` and ``b_i`` is ``(width,)``.
A skip ``(s, i)`` adds the output of layer ``s`` (0 = the input) to layer ``i``'s pre-activation and
needs equal widths; it must point forward (``s < i - 1``: ``s = i - 1`` would be the plain path).

Beyond dense layers (:mod:`gradcheck.layerspec`): ``layers`` may hold any layer kind (``Conv2d``,
``MaxPool2d``, ``BatchNorm``, ``LayerNorm``, ``Embedding``, ``Attention``, ``RNN``, ``LSTM``,
``Dropout``, ``Flatten``, ...) and ``input_dim`` may be a per-example shape such as ``(1, 6, 6)``.
Layer ``i`` then computes ``a_i = act_i(op_i(a_{i-1}) + sum of a_s over skips (s, i))`` (``act``
is the identity for kinds without an ``activation``); a skip needs equal shapes. The last layer
must give a vector per example (the losses read ``(batch, k)``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from .layerspec import (
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
    LayerShapeError,
    MaxPool2d,
    Node,
    node_from_dict,
    node_to_dict,
)

__all__ = ["NetworkSpec", "Layer", "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm", "LayerNorm",
           "Embedding", "Attention", "RNN", "LSTM", "Dropout", "Flatten", "Node", "DTYPES", "INITS"]

DTYPES = ("float64", "float32")
INITS = ("normal", "xavier", "he", "uniform")


def _fail(field_name: str, value: Any, expected: str) -> None:
    raise ValueError(f"NetworkSpec.{field_name}={value!r}: expected {expected}")


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        _fail(name, value, f"an integer >= {low}")


@dataclass(frozen=True)
class NetworkSpec:
    """A network, its loss and its batch (see the module docstring for the maths).

    ``init`` is the parameter initialisation: ``normal`` (N(0, 1/fan_in) weights), ``xavier``
    (N(0, 2/(fan_in+fan_out))), ``he`` (N(0, 2/fan_in)), all with N(0, 0.1^2) biases drawn from
    ``numpy.random.default_rng(seed)``; or ``uniform``: the origin document's ``np.random.rand``
    draws from the legacy ``RandomState(seed)``, every weight matrix first, then every bias, in
    layer order (dense networks only).
    """

    input_dim: int | tuple[int, ...]
    layers: tuple[Node, ...]
    loss: str
    batch: int = 4
    dtype: str = "float64"
    init: str = "normal"
    seed: int = 0
    skips: tuple[tuple[int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        # normalise lists (e.g. from JSON) to tuples so the spec is hashable and immutable
        layers = self.layers
        if isinstance(layers, (list, tuple)):
            layers = tuple(node_from_dict(l, f"layers[{i}]") if isinstance(l, dict) else
                           Layer(*l) if isinstance(l, (list, tuple)) else l for i, l in enumerate(layers))
        object.__setattr__(self, "layers", layers)
        if isinstance(self.input_dim, list):
            object.__setattr__(self, "input_dim", tuple(self.input_dim))
        if isinstance(self.input_dim, tuple) and len(self.input_dim) == 1 and not self._has_embedding():
            object.__setattr__(self, "input_dim", self.input_dim[0])  # (D,) is the dense D
        object.__setattr__(self, "skips", tuple(tuple(s) for s in self.skips))
        self._validate()

    def _has_embedding(self) -> bool:
        return isinstance(self.layers, tuple) and any(isinstance(l, Embedding) for l in self.layers)

    def _validate(self) -> None:
        if isinstance(self.input_dim, tuple):
            if not self.input_dim:
                _fail("input_dim", self.input_dim, "an integer >= 1 or a non-empty shape")
            for k, d in enumerate(self.input_dim):
                _check_int(f"input_dim[{k}]", d, 1)
        else:
            _check_int("input_dim", self.input_dim, 1)
        if not isinstance(self.layers, tuple) or not self.layers:
            _fail("layers", self.layers, "at least one Layer")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Node):
                _fail(f"layers[{i}]", layer, "a Layer(width, activation, bias) or another layer kind")
            try:
                layer.validate()
            except ValueError as e:
                text = str(e)
                if isinstance(layer, Layer):  # the historical form: NetworkSpec.layers[i].field=...
                    text = text.replace("Layer.", f"NetworkSpec.layers[{i}].", 1)
                    raise ValueError(text) from None
                raise ValueError(f"NetworkSpec.layers[{i}]: {text}") from None
            if isinstance(layer, Embedding) and i:
                _fail(f"layers[{i}]", layer, "an Embedding only as the first layer (it reads integer indices)")
        if not isinstance(self.loss, str) or not self.loss:
            _fail("loss", self.loss, "a loss name")
        _check_int("batch", self.batch, 1)
        if self.dtype not in DTYPES:
            _fail("dtype", self.dtype, f"one of {DTYPES}")
        if self.init not in INITS:
            _fail("init", self.init, f"one of {INITS}")
        if self.init == "uniform" and not self.is_dense:
            _fail("init", self.init, "normal, xavier or he for networks with other layer kinds than dense")
        _check_int("seed", self.seed, 0)
        shapes = self.shapes  # runs each layer's shape rule
        if len(shapes[-1]) != 1:
            _fail(f"layers[{len(self.layers) - 1}]", self.layers[-1],
                  f"a vector per example for the loss, got shape {shapes[-1]}: end with Flatten() and a dense Layer")
        for k, skip in enumerate(self.skips):
            if len(skip) != 2 or not all(isinstance(v, int) for v in skip):
                _fail(f"skips[{k}]", skip, "a pair (source, target) of layer indices")
            s, t = skip
            if not (0 <= s < t - 1 and t <= len(self.layers)):
                _fail(f"skips[{k}]", skip, f"0 <= source < target - 1 and target <= {len(self.layers)}")
            if shapes[s] != shapes[t]:
                if len(shapes[s]) == len(shapes[t]) == 1:
                    _fail(f"skips[{k}]", skip, f"equal widths, got {shapes[s][0]} (source) and {shapes[t][0]} (target)")
                _fail(f"skips[{k}]", skip, f"equal shapes, got {shapes[s]} (source) and {shapes[t]} (target)")
            if s == 0 and isinstance(self.layers[0], Embedding):
                _fail(f"skips[{k}]", skip, "a floating source (not the integer indices of an embedding)")
        if len(set(self.skips)) != len(self.skips):
            _fail("skips", self.skips, "no repeated skip")

    # -- structure --------------------------------------------------------------------------
    @property
    def is_dense(self) -> bool:
        """Only dense layers on a vector input: what the dense-only tools (SymPy network oracle,
        structure-aware oracle, second order, lessons) accept."""
        return isinstance(self.input_dim, int) and all(type(l) is Layer for l in self.layers)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The per-example input shape: ``(input_dim,)`` or the ``input_dim`` tuple."""
        return self.input_dim if isinstance(self.input_dim, tuple) else (self.input_dim,)

    @property
    def input_is_integer(self) -> bool:
        """Whether X holds integer indices (an Embedding first)."""
        return isinstance(self.layers[0], Embedding)

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """Per-example shapes ``(input, out_1, ..., out_L)``; a shape error names the layer and field."""
        out = [self.input_shape]
        for i, layer in enumerate(self.layers):
            try:
                out.append(layer.out_shape(out[-1]))
            except LayerShapeError as e:
                raise ValueError(f"NetworkSpec.layers[{i}]: {e} (input shape {out[-1]})") from None
        return tuple(out)

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def output_dim(self) -> int:
        return self.shapes[-1][0]

    @property
    def widths(self) -> tuple[int, ...]:
        """``(input_dim, width_1, ..., width_L)`` (dense networks only)."""
        if not self.is_dense:
            raise ValueError(f"NetworkSpec.widths: only dense networks have widths; this one has "
                             f"{', '.join(self.layer_kinds)} layers (use .shapes)")
        return (cast(int, self.input_dim),) + tuple(cast(Layer, l).width for l in self.layers)

    @property
    def layer_kinds(self) -> tuple[str, ...]:
        """The kinds present, in first-seen order (e.g. ``("conv2d", "maxpool2d", "flatten", "dense")``)."""
        return tuple(dict.fromkeys(l.kind for l in self.layers))

    def param_names(self, i: int) -> dict[str, str]:
        """Layer ``i`` (1-based): local parameter name -> network name (``W`` -> ``conv1.W``)."""
        layer = self.layers[i - 1]
        local = layer.param_shapes(self.shapes[i - 1])
        if isinstance(layer, Layer):
            return {k: f"{k}{i}" for k in local}
        return {k: f"{layer.prefix}{i}.{k}" for k in local}

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names and shapes, in layer order: ``W1, b1, W2, ...`` (no ``b`` without bias)."""
        shapes: dict[str, tuple[int, ...]] = {}
        all_shapes = self.shapes
        for i, layer in enumerate(self.layers, start=1):
            names = self.param_names(i)
            for local, shape in layer.param_shapes(all_shapes[i - 1]).items():
                shapes[names[local]] = shape
        return shapes

    @property
    def n_params(self) -> int:
        """Total number of scalar parameters P."""
        total = 0
        for shape in self.param_shapes().values():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total

    def structure_key(self) -> str:
        """The structure without the numbers that do not change the maths (seed, init), as text."""
        d = self.to_dict()
        d.pop("seed")
        d.pop("init")
        return json.dumps(d, sort_keys=True)

    def replace(self, **changes: Any) -> NetworkSpec:
        """A copy with some fields changed (validated)."""
        d = {**self.to_dict(), **changes}
        return NetworkSpec.from_dict(d)

    def label(self) -> str:
        """A short human name, e.g. ``2-4(tanh)-1(sigmoid) mse b4 float64`` or
        ``1x6x6-conv2d(channels2,kernel3,...,relu)-flatten-3(softmax) cross_entropy b4 float64``."""
        parts = ["x".join(map(str, self.input_shape))] + [l.short() for l in self.layers]
        skips = "".join(f" skip{s}->{t}" for s, t in self.skips)
        return f"{'-'.join(parts)}{skips} {self.loss} b{self.batch} {self.dtype}"

    # -- serialization ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain builtins (JSON-ready)."""
        d = asdict(self)
        d["layers"] = [node_to_dict(l) for l in self.layers]
        if isinstance(self.input_dim, tuple):
            d["input_dim"] = list(self.input_dim)
        d["skips"] = [list(s) for s in self.skips]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkSpec:
        if not isinstance(d, dict):
            raise TypeError(f"NetworkSpec.from_dict expects a dict, got {type(d).__name__}")
        known = {"input_dim", "layers", "loss", "batch", "dtype", "init", "seed", "skips"}
        extra = set(d) - known
        if extra:
            raise ValueError(f"NetworkSpec: unknown field(s) {sorted(extra)}; known: {sorted(known)}")
        missing = {"input_dim", "layers", "loss"} - set(d)
        if missing:
            raise ValueError(f"NetworkSpec: missing field(s) {sorted(missing)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NetworkSpec:
        return cls.from_dict(json.loads(text))
