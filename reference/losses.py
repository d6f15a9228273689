"""Loss functions: one registry entry each, ``value(out, y)`` and hand-written ``grad(out, y)``.

Reduction (all losses except ``half_sse``): the per-sample loss is the sum over output features,
and the loss is the **mean over the batch** (axis 0). ``half_sse`` is the origin document's
``0.5 * sum((y - out)**2)`` over everything, with no batch mean. ``grad`` is dL/dout, shaped like
``out`` and of its dtype. ``out`` is ``(batch, outputs)``.

Each entry says which targets are valid (``target``) and which network outputs it expects
(``output``), so generators can build valid cases.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

Array = np.ndarray

#: target kinds: what ``y`` must look like
TARGETS = {
    "real": "any real numbers, shaped like out",
    "binary": "0 or 1, shaped like out",
    "probability": "numbers in [0, 1], shaped like out",
    "sign": "-1 or +1, shaped like out",
    "count": "non-negative integers (as floats), shaped like out",
    "class": "one-hot rows shaped like out, or integer class indices shaped (batch,)",
    "one_hot": "one-hot rows, shaped like out",
    "distribution": "non-negative rows summing to 1, shaped like out",
}

#: output kinds: what ``out`` must look like (the last layer's activation has to deliver it)
OUTPUTS = {
    "real": "any real numbers",
    "probability": "numbers in (0, 1), e.g. a sigmoid output",
    "logits": "any real numbers, read as unnormalised log-probabilities (at least 2 columns)",
    "distribution": "positive rows summing to 1 (at least 2 columns)",
    "log_rate": "any real numbers, read as log of a Poisson rate",
}


def _n(out: Array) -> int:
    return out.shape[0] if out.ndim else 1


def _sigmoid(z: Array) -> Array:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def _log_softmax(z: Array) -> Array:
    m = np.max(z, axis=-1, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))


def _one_hot(y: Array, out: Array) -> Array:
    """Integer class indices (batch,) or (batch, 1) -> one-hot like ``out``; one-hot passes through."""
    y = np.asarray(y)
    if y.shape == out.shape:
        return y.astype(out.dtype, copy=False)
    idx = y.reshape(-1).astype(np.int64)
    if idx.shape[0] != out.shape[0]:
        raise ValueError(f"y has shape {y.shape}; expected one-hot {out.shape} or indices ({out.shape[0]},)")
    hot = np.zeros_like(out)
    hot[np.arange(idx.shape[0]), idx] = 1
    return hot


def _xlogx_ratio(y: Array) -> Array:
    """y * log(y) with 0 * log 0 = 0."""
    safe = np.where(y > 0, y, 1)
    return np.where(y > 0, y * np.log(safe), 0)


def _clip_eps(out: Array) -> float:
    return float(np.finfo(out.dtype).eps)


@dataclass(frozen=True)
class Loss:
    """A loss: ``value(out, y) -> float``, ``grad(out, y) -> dL/dout`` and what it expects."""

    name: str
    description: str
    _value: Callable[[Array, Array], Array]
    _grad: Callable[[Array, Array], Array]
    target: str
    output: str = "real"
    min_outputs: int = 1
    kinks: str = ""
    reduction: str = "mean over the batch of the per-sample sum"

    def value(self, out, y) -> float:
        """The loss, a Python float."""
        out, y = _prepare(out, y)
        return float(self._value(out, y))

    def grad(self, out, y) -> Array:
        """dL/dout, same shape and dtype as ``out``."""
        out, y = _prepare(out, y)
        return np.asarray(self._grad(out, y), dtype=out.dtype).reshape(out.shape)


def _prepare(out, y):
    out = np.asarray(out)
    if out.dtype.kind != "f":
        out = out.astype(np.float64)
    y = np.asarray(y)
    if y.dtype.kind == "f" and y.dtype != out.dtype:
        y = y.astype(out.dtype)
    return out, y


def _bce_clip(p: Array):
    eps = _clip_eps(p)
    inside = (p > eps) & (p < 1 - eps)
    return np.clip(p, eps, 1 - eps), inside


def _bce_value(p, y):
    q, _ = _bce_clip(p)
    return -np.sum(y * np.log(q) + (1 - y) * np.log1p(-q)) / _n(p)


def _bce_grad(p, y):
    q, inside = _bce_clip(p)
    return np.where(inside, (q - y) / (q * (1 - q)), 0) / _n(p)


def _cce_value(p, y):
    y = _one_hot(y, p)
    q = np.maximum(p, _clip_eps(p))
    return -np.sum(y * np.log(q)) / _n(p)


def _cce_grad(p, y):
    y = _one_hot(y, p)
    eps = _clip_eps(p)
    return np.where(p > eps, -y / np.maximum(p, eps), 0) / _n(p)


def _huber(delta: float) -> tuple[Callable[[Array, Array], Array], Callable[[Array, Array], Array]]:
    def value(out, y):
        r = np.abs(out - y)
        return np.sum(np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta))) / _n(out)

    def grad(out, y):
        return np.clip(out - y, -delta, delta) / _n(out)

    return value, grad


def _log_cosh(out, y):
    r = np.abs(out - y)  # log(cosh r) = r + log1p(exp(-2r)) - log 2, finite for any r
    return np.sum(r + np.log1p(np.exp(-2 * r)) - np.log(2.0)) / _n(out)


def _poisson_value(z, y):
    with np.errstate(over="ignore"):  # exp(z) is inf beyond log(max float): the honest value
        return np.sum(np.exp(z) - y * z) / _n(z)


def _poisson_grad(z, y):
    with np.errstate(over="ignore"):
        return (np.exp(z) - y) / _n(z)


def _entry(name, description, value, grad, target, **kw):
    return name, Loss(name, description, value, grad, target, **kw)


LOSSES: Mapping[str, Loss] = MappingProxyType(dict([
    _entry("mse", "squared error", lambda o, y: np.sum((o - y) ** 2) / _n(o),
           lambda o, y: 2 * (o - y) / _n(o), "real"),
    _entry("mae", "absolute error", lambda o, y: np.sum(np.abs(o - y)) / _n(o),
           lambda o, y: np.sign(o - y) / _n(o), "real",
           kinks="not differentiable where out == y (grad uses sign(0) = 0)"),
    _entry("huber", "Huber loss, delta = 1 (quadratic inside, linear outside)",
           *_huber(1.0), "real"),
    _entry("log_cosh", "log(cosh(out - y)), overflow-free",
           _log_cosh, lambda o, y: np.tanh(o - y) / _n(o), "real"),
    _entry("bce", "binary cross-entropy on probabilities, clipped to [eps, 1 - eps]",
           _bce_value, _bce_grad, "probability", output="probability",
           kinks="gradient 0 where the probability is clipped"),
    _entry("bce_with_logits", "binary cross-entropy on logits, max(z,0) - z y + log1p(exp(-|z|))",
           lambda z, y: np.sum(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))) / _n(z),
           lambda z, y: (_sigmoid(z) - y) / _n(z), "probability"),
    _entry("softmax_cross_entropy", "cross-entropy of softmax(logits), via log-sum-exp",
           lambda z, y: -np.sum(_one_hot(y, z) * _log_softmax(z)) / _n(z),
           lambda z, y: (np.exp(_log_softmax(z)) * np.sum(_one_hot(y, z), axis=-1, keepdims=True)
                         - _one_hot(y, z)) / _n(z),
           "class", output="logits", min_outputs=2),
    _entry("categorical_cross_entropy", "-sum y log p on probabilities (p clipped at eps)",
           _cce_value, _cce_grad, "class", output="distribution", min_outputs=2),
    _entry("kl_div", "KL(y || softmax(logits)) = sum y (log y - log_softmax(z)), 0 log 0 = 0",
           lambda z, y: np.sum(_xlogx_ratio(y) - y * _log_softmax(z)) / _n(z),
           lambda z, y: (np.exp(_log_softmax(z)) * np.sum(y, axis=-1, keepdims=True) - y) / _n(z),
           "distribution", output="logits", min_outputs=2),
    _entry("hinge", "max(0, 1 - y out) for y in {-1, +1}",
           lambda o, y: np.sum(np.maximum(0, 1 - y * o)) / _n(o),
           lambda o, y: np.where(1 - y * o > 0, -y, 0) / _n(o), "sign",
           kinks="not differentiable where y * out == 1 (grad 0 there)"),
    _entry("squared_hinge", "max(0, 1 - y out)^2 for y in {-1, +1}",
           lambda o, y: np.sum(np.maximum(0, 1 - y * o) ** 2) / _n(o),
           lambda o, y: -2 * y * np.maximum(0, 1 - y * o) / _n(o), "sign"),
    _entry("poisson_nll", "Poisson negative log-likelihood on log-rates, exp(z) - y z (no log y!)",
           _poisson_value, _poisson_grad, "count", output="log_rate"),
    _entry("half_sse", "the origin document's 0.5 * sum((y - out)^2), no batch mean",
           lambda o, y: 0.5 * np.sum((y - o) ** 2), lambda o, y: o - y, "real",
           reduction="sum over everything (no batch mean)"),
]))


def get_loss(name: str) -> Loss:
    """The registry entry ``name``; a ValueError lists the known names."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}") from None
