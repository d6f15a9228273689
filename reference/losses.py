"""Loss functions: one registry entry each, ``value(out, y)``, hand-written ``grad(out, y)`` and
hand-written ``hvp(out, y, v)`` (Hessian-vector product with respect to ``out``).

Reduction (all losses except ``half_sse``): the per-sample loss is the sum over output features,
and the loss is the **mean over the batch** (axis 0). ``half_sse`` is the origin document's
``0.5 * sum((y - out)**2)`` over everything, with no batch mean. ``grad`` is dL/dout, shaped like
``out`` and of its dtype. ``out`` is ``(batch, outputs)``.

``hvp(out, y, v)`` is ``d/dt grad(out + t v, y)`` at ``t = 0``, shaped and typed like ``out``.
Where the second derivative jumps it takes one side, by convention: ``mae`` and ``hinge`` are
piecewise linear, so 0 everywhere (the delta at the kink is dropped); ``huber`` takes the
quadratic branch at ``|out - y| == 1`` (as its value does) and ``squared_hinge`` the flat one at
``y out == 1``; the clipped ``bce`` and ``categorical_cross_entropy`` are 0 wherever ``grad`` is 0
(at and beyond the clip, where the clipped loss is constant) and the curvature of the log, e.g.
``y/p^2 + (1-y)/(1-p)^2``, strictly inside it.

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
    """A loss: ``value(out, y) -> float``, ``grad(out, y) -> dL/dout``, ``hvp(out, y, v)`` (its
    Hessian with respect to ``out`` times ``v``) and what it expects. Built without ``_hvp``, a
    loss still works to first order; :meth:`hvp` then raises."""

    name: str
    description: str
    _value: Callable[[Array, Array], Array]
    _grad: Callable[[Array, Array], Array]
    target: str
    output: str = "real"
    min_outputs: int = 1
    kinks: str = ""
    reduction: str = "mean over the batch of the per-sample sum"
    _hvp: Callable[[Array, Array, Array], Array] | None = None

    def value(self, out, y) -> float:
        """The loss, a Python float."""
        out, y = _prepare(out, y)
        return float(self._value(out, y))

    def grad(self, out, y) -> Array:
        """dL/dout, same shape and dtype as ``out``."""
        out, y = _prepare(out, y)
        return np.asarray(self._grad(out, y), dtype=out.dtype).reshape(out.shape)

    def hvp(self, out, y, v) -> Array:
        """``d/dt grad(out + t v, y)`` at 0: the Hessian w.r.t. ``out`` times ``v``; like ``out``."""
        if self._hvp is None:
            raise NotImplementedError(f"loss {self.name!r} has no Hessian-vector product (hvp)")
        out, y = _prepare(out, y)
        v = np.broadcast_to(np.asarray(v, dtype=out.dtype), out.shape)
        return np.asarray(self._hvp(out, y, v), dtype=out.dtype).reshape(out.shape)


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


def _bce_hvp(p, y, v):
    # -(y log q + (1-y) log(1-q))'' = y / q^2 + (1-y) / (1-q)^2 inside the clip; 0 outside (constant)
    q, inside = _bce_clip(p)
    return np.where(inside, y / (q * q) + (1 - y) / ((1 - q) * (1 - q)), 0) * v / _n(p)


def _cce_value(p, y):
    y = _one_hot(y, p)
    q = np.maximum(p, _clip_eps(p))
    return -np.sum(y * np.log(q)) / _n(p)


def _cce_grad(p, y):
    y = _one_hot(y, p)
    eps = _clip_eps(p)
    return np.where(p > eps, -y / np.maximum(p, eps), 0) / _n(p)


def _cce_hvp(p, y, v):
    # (-y log p)'' = y / p^2 where grad is live (p > eps); 0 on the clipped side
    y = _one_hot(y, p)
    eps = _clip_eps(p)
    q = np.maximum(p, eps)
    return np.where(p > eps, y / (q * q), 0) * v / _n(p)


def _softmax_hvp(z, y, v):
    """softmax_cross_entropy and kl_div: grad = (s * sum(y) - y) / n, so hvp = sum(y) * J_s v / n."""
    s = np.exp(_log_softmax(z))
    total = np.sum(y, axis=-1, keepdims=True)
    return total * s * (v - np.sum(s * v, axis=-1, keepdims=True)) / _n(z)


def _huber(delta: float) -> tuple[Callable[[Array, Array], Array], Callable[[Array, Array], Array]]:
    def value(out, y):
        r = np.abs(out - y)
        return np.sum(np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta))) / _n(out)

    def grad(out, y):
        return np.clip(out - y, -delta, delta) / _n(out)

    return value, grad


def _huber_hvp(delta: float) -> Callable[[Array, Array, Array], Array]:
    def hvp(out, y, v):  # 1 on the quadratic branch (|r| <= delta, as in the value), 0 on the linear
        return np.where(np.abs(out - y) <= delta, v, 0) / _n(out)

    return hvp


def _log_cosh(out, y):
    r = np.abs(out - y)  # log(cosh r) = r + log1p(exp(-2r)) - log 2, finite for any r
    return np.sum(r + np.log1p(np.exp(-2 * r)) - np.log(2.0)) / _n(out)


def _poisson_value(z, y):
    with np.errstate(over="ignore"):  # exp(z) is inf beyond log(max float): the honest value
        return np.sum(np.exp(z) - y * z) / _n(z)


def _poisson_grad(z, y):
    with np.errstate(over="ignore"):
        return (np.exp(z) - y) / _n(z)


def _log_cosh_hvp(out, y, v):
    r = np.abs(out - y)  # log(cosh r)'' = sech(r)^2 = 4 e / (1 + e)^2, e = exp(-2|r|): no overflow
    e = np.exp(-2 * r)
    return 4 * e / (1 + e) ** 2 * v / _n(out)


def _logits_hvp(z, y, v):
    e = np.exp(-np.abs(z))  # sigmoid'(z) = e / (1 + e)^2, e = exp(-|z|)
    return e / (1 + e) ** 2 * v / _n(z)


def _poisson_hvp(z, y, v):
    with np.errstate(over="ignore", invalid="ignore"):  # exp(z) = inf beyond log(max float), as grad
        return np.exp(z) * v / _n(z)


def _entry(name, description, value, grad, target, hvp, **kw):
    return name, Loss(name, description, value, grad, target, _hvp=hvp, **kw)


LOSSES: Mapping[str, Loss] = MappingProxyType(dict([
    _entry("mse", "squared error", lambda o, y: np.sum((o - y) ** 2) / _n(o),
           lambda o, y: 2 * (o - y) / _n(o), "real",
           lambda o, y, v: 2 * v / _n(o)),
    _entry("mae", "absolute error", lambda o, y: np.sum(np.abs(o - y)) / _n(o),
           lambda o, y: np.sign(o - y) / _n(o), "real",
           lambda o, y, v: np.zeros_like(o),
           kinks="not differentiable where out == y (grad uses sign(0) = 0; hvp 0 everywhere)"),
    _entry("huber", "Huber loss, delta = 1 (quadratic inside, linear outside)",
           *_huber(1.0), "real", _huber_hvp(1.0)),
    _entry("log_cosh", "log(cosh(out - y)), overflow-free",
           _log_cosh, lambda o, y: np.tanh(o - y) / _n(o), "real", _log_cosh_hvp),
    _entry("bce", "binary cross-entropy on probabilities, clipped to [eps, 1 - eps]",
           _bce_value, _bce_grad, "probability", _bce_hvp, output="probability",
           kinks="gradient and hvp 0 where the probability is clipped"),
    _entry("bce_with_logits", "binary cross-entropy on logits, max(z,0) - z y + log1p(exp(-|z|))",
           lambda z, y: np.sum(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))) / _n(z),
           lambda z, y: (_sigmoid(z) - y) / _n(z), "probability", _logits_hvp),
    _entry("softmax_cross_entropy", "cross-entropy of softmax(logits), via log-sum-exp",
           lambda z, y: -np.sum(_one_hot(y, z) * _log_softmax(z)) / _n(z),
           lambda z, y: (np.exp(_log_softmax(z)) * np.sum(_one_hot(y, z), axis=-1, keepdims=True)
                         - _one_hot(y, z)) / _n(z),
           "class", lambda z, y, v: _softmax_hvp(z, _one_hot(y, z), v), output="logits", min_outputs=2),
    _entry("categorical_cross_entropy", "-sum y log p on probabilities (p clipped at eps)",
           _cce_value, _cce_grad, "class", _cce_hvp, output="distribution", min_outputs=2),
    _entry("kl_div", "KL(y || softmax(logits)) = sum y (log y - log_softmax(z)), 0 log 0 = 0",
           lambda z, y: np.sum(_xlogx_ratio(y) - y * _log_softmax(z)) / _n(z),
           lambda z, y: (np.exp(_log_softmax(z)) * np.sum(y, axis=-1, keepdims=True) - y) / _n(z),
           "distribution", _softmax_hvp, output="logits", min_outputs=2),
    _entry("hinge", "max(0, 1 - y out) for y in {-1, +1}",
           lambda o, y: np.sum(np.maximum(0, 1 - y * o)) / _n(o),
           lambda o, y: np.where(1 - y * o > 0, -y, 0) / _n(o), "sign",
           lambda o, y, v: np.zeros_like(o),
           kinks="not differentiable where y * out == 1 (grad 0 there; hvp 0 everywhere)"),
    _entry("squared_hinge", "max(0, 1 - y out)^2 for y in {-1, +1}",
           lambda o, y: np.sum(np.maximum(0, 1 - y * o) ** 2) / _n(o),
           lambda o, y: -2 * y * np.maximum(0, 1 - y * o) / _n(o), "sign",
           lambda o, y, v: np.where(1 - y * o > 0, 2 * y * y, 0) * v / _n(o)),
    _entry("poisson_nll", "Poisson negative log-likelihood on log-rates, exp(z) - y z (no log y!)",
           _poisson_value, _poisson_grad, "count", _poisson_hvp, output="log_rate"),
    _entry("half_sse", "the origin document's 0.5 * sum((y - out)^2), no batch mean",
           lambda o, y: 0.5 * np.sum((y - o) ** 2), lambda o, y: o - y, "real",
           lambda o, y, v: v.copy(), reduction="sum over everything (no batch mean)"),
]))


def get_loss(name: str) -> Loss:
    """The registry entry ``name``; a ValueError lists the known names."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}") from None
