"""A dense network written the way a course writes it, the base every lesson's mutant changes.

``MLP(spec)`` is ``fn(params, X, y) -> (loss, grads)`` for a :class:`gradcheck.spec.NetworkSpec`
(parameters ``W1, b1, W2, ...`` with ``W_i`` of shape ``(fan_in, fan_out)``, ``z_i = a_{i-1} @ W_i
+ b_i``, ``a_i = f_i(z_i)``, the loss a mean over the batch). Forward keeps a cache; backward
walks the layers down, and each step of it is one short method, so that a lesson's mutant is a
subclass that replaces exactly one of them. Values and derivatives come from the reference
registries (``reference.activations``, ``reference.losses``): this is a driver, not an oracle.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcheck.spec import NetworkSpec
from gradcheck_reference.activations import get_activation
from gradcheck_reference.losses import get_loss
from gradcheck_reference.network import Network

Array = np.ndarray


@dataclass
class Cache:
    """What forward leaves for backward: ``z[i]`` and ``a[i]`` of layer ``i`` (``a[0]`` is X)."""

    z: list[Any]
    a: list[Array]
    mask: dict[int, Array] = field(default_factory=dict)


def sigmoid(z: Array) -> Array:
    """1 / (1 + exp(-z)) without overflow."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(np.result_type(z), copy=False)


def softmax(z: Array) -> Array:
    """Row-wise softmax, shifted by the row max."""
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


class MLP:
    """The textbook network of ``spec``; call it as ``fn(params, X, y)``."""

    def __init__(self, spec: NetworkSpec) -> None:
        if not spec.is_dense or any(not getattr(layer, "bias", True) for layer in spec.layers) or spec.skips:
            raise ValueError(f"spec={spec.label()!r}: the textbook network is dense, with a bias in every layer "
                             "and no skips")
        self.spec = spec
        self.depth = spec.depth
        self.dtype = np.dtype(spec.dtype)
        self.act = [get_activation(layer.activation) for layer in spec.layers]
        self.loss_entry = get_loss(spec.loss)

    def init_params(self) -> dict[str, Array]:
        """The reference network's deterministic initialisation for ``spec``."""
        return Network(self.spec).init_params()

    # -- forward ------------------------------------------------------------------------------
    def forward(self, params: Mapping[str, Array], X: Any) -> Cache:
        c = Cache(z=[None], a=[np.asarray(X, dtype=self.dtype)])
        for i in range(1, self.depth + 1):
            c.z.append(c.a[i - 1] @ params[f"W{i}"] + params[f"b{i}"])
            c.a.append(self.act[i - 1].f(c.z[i]))
        return c

    def loss_value(self, params: Mapping[str, Array], c: Cache, y: Any) -> float:
        return self.loss_entry.value(c.a[-1], y)

    def loss(self, params: Mapping[str, Array], X: Any, y: Any) -> float:
        """The loss alone."""
        return self.loss_value(params, self.forward(params, X), y)

    def __call__(self, params: Mapping[str, Array], X: Any, y: Any) -> tuple[float, dict[str, Array]]:
        c = self.forward(params, X)
        return self.loss_value(params, c, y), self.backward(params, c, y)

    # -- backward: the chain rule, one step per method -------------------------------------------
    def backward(self, params: Mapping[str, Array], c: Cache, y: Any) -> dict[str, Array]:
        grads: dict[str, Array] = {}
        dz = self.output_delta(c, y)
        for i in range(self.depth, 0, -1):
            grads[f"W{i}"] = self.weight_grad(i, params, c, dz)
            grads[f"b{i}"] = self.bias_grad(i, c, dz)
            if i > 1:
                dz = self.delta_down(i, params, c, dz) * self.derivative(i - 1, c)
        return grads

    def output_delta(self, c: Cache, y: Any) -> Array:
        """dL/dz of the last layer: the loss gradient pulled back through the output activation."""
        return self.act[-1].vjp(c.z[-1], self.loss_entry.grad(c.a[-1], y))

    def weight_grad(self, i: int, params: Mapping[str, Array], c: Cache, dz: Array) -> Array:
        """dL/dW_i = a_{i-1}.T @ dz_i."""
        return c.a[i - 1].T @ dz

    def bias_grad(self, i: int, c: Cache, dz: Array) -> Array:
        """dL/db_i: the deltas summed over the batch."""
        return dz.sum(axis=0)

    def delta_down(self, i: int, params: Mapping[str, Array], c: Cache, dz: Array) -> Array:
        """dL/da_{i-1}: the delta of layer i passed back through its weights."""
        return dz @ params[f"W{i}"].T

    def derivative(self, i: int, c: Cache) -> Array:
        """f_i'(z_i) of hidden layer i, elementwise."""
        z, a = c.z[i], c.a[i]
        return self.act[i - 1].df(z)


def batch(spec: NetworkSpec, *, seed: int = 0, target: str = "real") -> tuple[Array, Array]:
    """A deterministic batch ``(X, y)`` for ``spec``: standard normal inputs; targets of the kind asked."""
    rng = np.random.default_rng(1000 + seed)
    X = rng.standard_normal((spec.batch, *spec.input_shape))
    shape = (spec.batch, spec.output_dim)
    if target == "real":
        y = rng.standard_normal(shape)
    elif target == "binary":
        y = (rng.random(shape) < 0.5).astype(np.float64)
    elif target == "one_hot":
        y = np.eye(spec.output_dim)[rng.integers(0, spec.output_dim, spec.batch)]
    else:
        raise ValueError(f"target={target!r}: expected 'real', 'binary' or 'one_hot'")
    return X.astype(spec.dtype), y.astype(spec.dtype)
