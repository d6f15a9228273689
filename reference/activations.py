"""Activation functions: one registry entry each, value ``f(z)`` and hand-written ``df(z)``.

``softmax`` is the one row-wise entry: it has ``vjp`` (vector-Jacobian product) instead of an
elementwise ``df``; :meth:`Activation.vjp` works for every entry and is what backward uses.

``df`` is the derivative with respect to the *pre-activation* ``z`` (not the output, unlike the
origin document's ``x * (1 - x)`` which expects the sigmoid's output). Both are elementwise, accept
arrays of any shape, return the input's floating dtype (integers become float64) and stay finite
without numpy warnings for ``|z|`` up to 1e3 in float32 and float64.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

Array = np.ndarray


def _float(z) -> Array:
    """``z`` as a floating array (ints become float64; float dtypes are kept)."""
    z = np.asarray(z)
    return z if z.dtype.kind == "f" else z.astype(np.float64)


def _sigmoid(z: Array) -> Array:
    # exp(-|z|) never overflows; the two branches are the same function written two ways
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


_erf = np.frompyfunc(math.erf, 1, 1)


def _gaussian_cdf(z: Array) -> Array:
    # asarray, not .astype: for a 0-d z the object ufunc returns a bare Python float
    return (0.5 * (1 + np.asarray(_erf(z / math.sqrt(2)), dtype=np.float64))).astype(z.dtype)


def _gaussian_pdf(z: Array) -> Array:
    zz = z.astype(np.float64)
    return (np.exp(-0.5 * zz * zz) / math.sqrt(2 * math.pi)).astype(z.dtype)


_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805
_GELU_C = math.sqrt(2 / math.pi)


def _gelu_tanh_parts(z: Array):
    z64 = z.astype(np.float64)  # z**3 at |z|=1e3 is fine in float32 too, but keep one code path
    u = _GELU_C * (z64 + 0.044715 * z64**3)
    return z64, np.tanh(u)


def _elu(z: Array, alpha: float) -> Array:
    neg = np.minimum(z, 0)  # expm1 only of non-positive numbers: no overflow
    return np.where(z > 0, z, alpha * np.expm1(neg)).astype(z.dtype, copy=False)


def _elu_df(z: Array, alpha: float) -> Array:
    neg = np.minimum(z, 0)
    return np.where(z > 0, 1, alpha * np.exp(neg)).astype(z.dtype, copy=False)


def _softplus(z: Array) -> Array:
    return np.logaddexp(np.zeros((), z.dtype), z)


def _mish_parts(z: Array):
    t = np.tanh(_softplus(z))
    return t, _sigmoid(z)


@dataclass(frozen=True)
class Activation:
    """An elementwise activation: value, derivative w.r.t. the pre-activation, and metadata.

    ``kinks`` lists the points where the function is not differentiable (the hand-written ``df``
    returns one subgradient there, documented in ``convention``); ``params`` are the defaults of
    its parameters, bound into ``f``/``df`` (see :meth:`with_params`).
    """

    name: str
    description: str
    _f: Callable[..., Array] = field(repr=False)
    _df: Callable[..., Array] = field(repr=False)
    params: Mapping[str, float] = field(default_factory=dict)
    _kinks: Callable[..., tuple[float, ...]] = field(default=lambda **p: (), repr=False)
    convention: str = ""
    _vjp: Callable[..., Array] | None = field(default=None, repr=False)

    @property
    def elementwise(self) -> bool:
        """False for row-wise activations (softmax), whose derivative is a Jacobian, not ``df``."""
        return self._vjp is None

    def vjp(self, z, g) -> Array:
        """``g`` (dL/da) pulled back through the activation: dL/dz. ``g * df(z)`` when elementwise."""
        z = _float(z)
        g = np.asarray(g, dtype=z.dtype)
        if self._vjp is not None:
            return np.asarray(self._vjp(z, g, **self.params), dtype=z.dtype)
        return g * self.df(z)

    def f(self, z) -> Array:
        """Value at ``z``, elementwise."""
        z = _float(z)
        return np.asarray(self._f(z, **self.params), dtype=z.dtype)

    def df(self, z) -> Array:
        """Derivative with respect to the pre-activation ``z``, elementwise."""
        z = _float(z)
        return np.asarray(self._df(z, **self.params), dtype=z.dtype)

    @property
    def kinks(self) -> tuple[float, ...]:
        """Points of ``z`` where the activation is not differentiable."""
        return tuple(self._kinks(**self.params))

    def with_params(self, **params: float) -> Activation:
        """A copy with some parameters changed, e.g. ``ACTIVATIONS['leaky_relu'].with_params(alpha=0.2)``."""
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(
                f"activation {self.name!r} has no parameter(s) {sorted(unknown)}; "
                f"its parameters are {sorted(self.params) or 'none'}"
            )
        return Activation(self.name, self.description, self._f, self._df,
                          MappingProxyType({**self.params, **params}), self._kinks, self.convention,
                          self._vjp)


def _entry(name, description, f, df, params=None, kinks=None, convention="", vjp=None):
    return name, Activation(name, description, f, df, MappingProxyType(dict(params or {})),
                            kinks or (lambda **p: ()), convention, vjp)


def _softmax(z: Array) -> Array:
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))  # shifted: no overflow
    return e / np.sum(e, axis=-1, keepdims=True)


def _softmax_vjp(z: Array, g: Array) -> Array:
    s = _softmax(z)
    return s * (g - np.sum(g * s, axis=-1, keepdims=True))


def _not_elementwise(z: Array) -> Array:
    raise TypeError("softmax is not elementwise: its derivative is a Jacobian; use vjp(z, g)")


def _at_zero(**p):
    return (0.0,)


ACTIVATIONS: Mapping[str, Activation] = MappingProxyType(dict([
    _entry("identity", "z",
           lambda z: z, lambda z: np.ones_like(z)),
    _entry("sigmoid", "1 / (1 + exp(-z)), computed without overflow",
           _sigmoid, lambda z: _sigmoid(z) * (1 - _sigmoid(z))),
    _entry("tanh", "tanh(z)",
           np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    _entry("relu", "max(z, 0)",
           lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype),
           kinks=_at_zero, convention="relu'(0) = 0"),
    _entry("leaky_relu", "z if z > 0 else alpha * z",
           lambda z, alpha: np.where(z > 0, z, alpha * z),
           lambda z, alpha: np.where(z > 0, 1, alpha),
           params={"alpha": 0.01}, kinks=_at_zero, convention="derivative at 0 is alpha"),
    _entry("elu", "z if z > 0 else alpha * (exp(z) - 1)",
           _elu, _elu_df, params={"alpha": 1.0},
           kinks=lambda alpha: () if alpha == 1.0 else (0.0,),
           convention="derivative at 0 is alpha (the left limit)"),
    _entry("selu", "scale * elu(z, alpha) with the self-normalising constants",
           lambda z: _SELU_SCALE * _elu(z, _SELU_ALPHA),
           lambda z: _SELU_SCALE * _elu_df(z, _SELU_ALPHA),
           kinks=_at_zero, convention="derivative at 0 is scale * alpha (the left limit)"),
    _entry("softplus", "log(1 + exp(z)), as logaddexp(0, z)",
           _softplus, _sigmoid),
    _entry("softsign", "z / (1 + |z|)",
           lambda z: z / (1 + np.abs(z)), lambda z: 1 / (1 + np.abs(z)) ** 2),
    _entry("silu", "z * sigmoid(z) (swish)",
           lambda z: z * _sigmoid(z),
           lambda z: _sigmoid(z) * (1 + z * (1 - _sigmoid(z)))),
    _entry("gelu", "z * Phi(z), Phi the standard normal CDF (exact, erf)",
           lambda z: z * _gaussian_cdf(z),
           lambda z: _gaussian_cdf(z) + z * _gaussian_pdf(z)),
    _entry("gelu_tanh", "0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))",
           lambda z: (lambda z64, t: 0.5 * z64 * (1 + t))(*_gelu_tanh_parts(z)),
           lambda z: (lambda z64, t: 0.5 * (1 + t)
                      + 0.5 * z64 * (1 - t * t) * _GELU_C * (1 + 3 * 0.044715 * z64 * z64)
                      )(*_gelu_tanh_parts(z))),
    _entry("mish", "z * tanh(softplus(z))",
           lambda z: z * np.tanh(_softplus(z)),
           lambda z: (lambda t, s: t + z * (1 - t * t) * s)(*_mish_parts(z))),
    _entry("sin", "sin(z)",
           np.sin, np.cos),
    _entry("hard_tanh", "clip(z, -1, 1)",
           lambda z: np.clip(z, -1, 1), lambda z: (np.abs(z) < 1).astype(z.dtype),
           kinks=lambda **p: (-1.0, 1.0), convention="derivative at +-1 is 0"),
    _entry("softmax", "exp(z) / sum(exp(z)) along the last axis (row-wise, shifted by the row max)",
           _softmax, _not_elementwise, vjp=_softmax_vjp),
]))


def get_activation(name: str) -> Activation:
    """The registry entry ``name``; a ValueError lists the known names."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None
