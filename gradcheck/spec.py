"""``NetworkSpec``: a pure, immutable, JSON-serializable description of a network and its batch.

A spec holds no arrays and no functions, so it crosses processes and files, and its ``repr`` is
Python that rebuilds it (``from gradcheck.spec import NetworkSpec, Layer`` in scope). It knows the
structure (names and shapes of the parameters) but not the activation or loss formulas: names are
checked against a registry by whoever builds the network.

Layer ``i`` (1-based) computes ``z_i = a_{i-1} @ W_i + b_i (+ a_s for each skip (s, i))`` and
``a_i = act_i(z_i)``, with ``a_0 = X``; ``W_i`` is ``(fan_in, width)`` and ``b_i`` is ``(width,)``.
A skip ``(s, i)`` adds the output of layer ``s`` (0 = the input) to layer ``i``'s pre-activation and
needs equal widths; it must point forward (``s < i - 1``: ``s = i - 1`` would be the plain path).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

DTYPES = ("float64", "float32")
INITS = ("normal", "xavier", "he", "uniform")


def _fail(field_name: str, value: Any, expected: str) -> None:
    raise ValueError(f"NetworkSpec.{field_name}={value!r}: expected {expected}")


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        _fail(name, value, f"an integer >= {low}")


@dataclass(frozen=True)
class Layer:
    """One dense layer: output ``width``, ``activation`` name, and whether it has a bias."""

    width: int
    activation: str
    bias: bool = True


@dataclass(frozen=True)
class NetworkSpec:
    """A dense network, its loss and its batch (see the module docstring for the maths).

    ``init`` is the parameter initialisation: ``normal`` (N(0, 1/fan_in) weights), ``xavier``
    (N(0, 2/(fan_in+fan_out))), ``he`` (N(0, 2/fan_in)), all with N(0, 0.1^2) biases drawn from
    ``numpy.random.default_rng(seed)``; or ``uniform``: the origin document's ``np.random.rand``
    draws from the legacy ``RandomState(seed)``, every weight matrix first, then every bias, in
    layer order.
    """

    input_dim: int
    layers: tuple[Layer, ...]
    loss: str
    batch: int = 4
    dtype: str = "float64"
    init: str = "normal"
    seed: int = 0
    skips: tuple[tuple[int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        # normalise lists (e.g. from JSON) to tuples so the spec is hashable and immutable
        layers = tuple(Layer(**l) if isinstance(l, dict) else
                       Layer(*l) if isinstance(l, (list, tuple)) else l for l in self.layers)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "skips", tuple(tuple(s) for s in self.skips))
        self._validate()

    def _validate(self) -> None:
        _check_int("input_dim", self.input_dim, 1)
        if not self.layers:
            _fail("layers", self.layers, "at least one Layer")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                _fail(f"layers[{i}]", layer, "a Layer(width, activation, bias)")
            _check_int(f"layers[{i}].width", layer.width, 1)
            if not isinstance(layer.activation, str) or not layer.activation:
                _fail(f"layers[{i}].activation", layer.activation, "an activation name")
            if not isinstance(layer.bias, bool):
                _fail(f"layers[{i}].bias", layer.bias, "True or False")
        if not isinstance(self.loss, str) or not self.loss:
            _fail("loss", self.loss, "a loss name")
        _check_int("batch", self.batch, 1)
        if self.dtype not in DTYPES:
            _fail("dtype", self.dtype, f"one of {DTYPES}")
        if self.init not in INITS:
            _fail("init", self.init, f"one of {INITS}")
        _check_int("seed", self.seed, 0)
        widths = (self.input_dim,) + tuple(l.width for l in self.layers)
        for k, skip in enumerate(self.skips):
            if len(skip) != 2 or not all(isinstance(v, int) for v in skip):
                _fail(f"skips[{k}]", skip, "a pair (source, target) of layer indices")
            s, t = skip
            if not (0 <= s < t - 1 and t <= len(self.layers)):
                _fail(f"skips[{k}]", skip, f"0 <= source < target - 1 and target <= {len(self.layers)}")
            if widths[s] != widths[t]:
                _fail(f"skips[{k}]", skip, f"equal widths, got {widths[s]} (source) and {widths[t]} (target)")
        if len(set(self.skips)) != len(self.skips):
            _fail("skips", self.skips, "no repeated skip")

    # -- structure --------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def output_dim(self) -> int:
        return self.layers[-1].width

    @property
    def widths(self) -> tuple[int, ...]:
        """``(input_dim, width_1, ..., width_L)``."""
        return (self.input_dim,) + tuple(l.width for l in self.layers)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names and shapes, in layer order: ``W1, b1, W2, ...`` (no ``b`` without bias)."""
        shapes: dict[str, tuple[int, ...]] = {}
        widths = self.widths
        for i, layer in enumerate(self.layers, start=1):
            shapes[f"W{i}"] = (widths[i - 1], layer.width)
            if layer.bias:
                shapes[f"b{i}"] = (layer.width,)
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
        """A short human name, e.g. ``2-4(tanh)-1(sigmoid) mse b4 float64``."""
        parts = [str(self.input_dim)] + [
            f"{l.width}({l.activation}{'' if l.bias else ',nobias'})" for l in self.layers]
        skips = "".join(f" skip{s}->{t}" for s, t in self.skips)
        return f"{'-'.join(parts)}{skips} {self.loss} b{self.batch} {self.dtype}"

    # -- serialization ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain builtins (JSON-ready)."""
        d = asdict(self)
        d["layers"] = [dict(l) for l in d["layers"]]
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
