"""Activation functions: one registry entry each, value ``f(z)``, hand-written ``df(z)`` and ``d2f(z)``.

``softmax`` is the one row-wise entry: it has ``vjp`` (vector-Jacobian product) instead of an
elementwise ``df``; :meth:`Activation.vjp` works for every entry and is what backward uses.

``df`` and ``d2f`` are the first and second derivatives with respect to the *pre-activation* ``z``
(not the output, unlike the origin document's ``x * (1 - x)`` which expects the sigmoid's output).
All are elementwise, accept arrays of any shape, return the input's floating dtype (integers
become float64) and stay finite without numpy warnings for ``|z|`` up to 1e3 in float32 and float64.

Second order (for Pearlmutter's R-operator, :meth:`reference.network.Network.hvp`):
:meth:`Activation.jvp` is the forward tangent of the output and :meth:`Activation.vjp_r` the
R-derivative of :meth:`Activation.vjp`; both work for every entry (elementwise from ``df``/``d2f``,
softmax by its own formulas). Away from kinks ``d2f`` is the second derivative of the piece (0 for
relu, leaky_relu, hard_tanh); the delta a kink would contribute is dropped. *At* a kink (and where
only ``d2f`` jumps) it takes the side ``df`` takes, stated in ``convention``: 0 for the
piecewise-linear ones, the left piece for elu and selu (``alpha``, ``scale * alpha``; elu with
``alpha = 1`` is C1 there), and softsign's ``d2f(0) = 0`` (``sign(0)``, the midpoint of +-2).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
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


def _sigmoid_d1(z: Array) -> Array:
    """sigmoid'(z) = s (1 - s) as e / (1 + e)^2, e = exp(-|z|): no cancellation in the tails."""
    e = np.exp(-np.abs(z))
    return e / (1 + e) ** 2


def _sech2(z: Array) -> Array:
    """1 - tanh(z)^2 = 4 e / (1 + e)^2, e = exp(-2|z|): accurate where 1 - tanh^2 rounds to 0."""
    e = np.exp(-2 * np.abs(z))
    return 4 * e / (1 + e) ** 2


# -- second derivatives (with respect to z) ----------------------------------------------------
def _zero_d2f(z: Array, **p: float) -> Array:
    """Piecewise-linear activations: 0 on every piece, and 0 at the kinks by convention."""
    return np.zeros_like(z)


def _sigmoid_d2f(z: Array) -> Array:
    # s (1 - s) (1 - 2 s), with 1 - 2 s = -tanh(z / 2)
    return -_sigmoid_d1(z) * np.tanh(z / 2)


def _tanh_d2f(z: Array) -> Array:
    return -2 * np.tanh(z) * _sech2(z)


def _elu_d2f(z: Array, alpha: float) -> Array:
    # 0 on the linear piece; alpha exp(z) on the other, which also holds at 0 (the left piece, like df)
    return np.where(z > 0, 0, alpha * np.exp(np.minimum(z, 0))).astype(z.dtype, copy=False)


def _softsign_d2f(z: Array) -> Array:
    # d/dz (1 + |z|)^-2 = -2 sign(z) (1 + |z|)^-3; sign(0) = 0: the midpoint of the one-sided limits
    return -2 * np.sign(z) / (1 + np.abs(z)) ** 3


def _silu_d2f(z: Array) -> Array:
    # (z s)'' = s' (2 + z (1 - 2 s)) = s' (2 - z tanh(z / 2))
    return _sigmoid_d1(z) * (2 - z * np.tanh(z / 2))


def _gelu_d2f(z: Array) -> Array:
    # (z Phi)'' = 2 phi + z phi' = phi (2 - z^2); in float64 (z^2 at 1e3 is 1e6: fine in float32 too)
    z64 = z.astype(np.float64)
    return (_gaussian_pdf(z64) * (2 - z64 * z64)).astype(z.dtype)


def _gelu_tanh_d2f(z: Array) -> Array:
    # f = z (1 + t) / 2, t = tanh(u): f'' = sech^2(u) (u' + z (u'' - 2 t u'^2) / 2)
    z64 = z.astype(np.float64)
    u = _GELU_C * (z64 + 0.044715 * z64**3)
    du = _GELU_C * (1 + 3 * 0.044715 * z64 * z64)
    d2u = _GELU_C * 6 * 0.044715 * z64
    t = np.tanh(u)
    return (_sech2(u) * (du + 0.5 * z64 * (d2u - 2 * t * du * du))).astype(z.dtype)


def _mish_d2f(z: Array) -> Array:
    # f = z t, t = tanh(softplus z), t' = (1 - t^2) s: f'' = (1 - t^2) s (2 + z (1 - s - 2 t s))
    sp = _softplus(z)
    t, s = np.tanh(sp), _sigmoid(z)
    return _sech2(sp) * s * (2 + z * (1 - s - 2 * t * s))


@dataclass(frozen=True)
class Activation:
    """An elementwise activation: value, first and second derivatives w.r.t. the pre-activation,
    and metadata.

    ``kinks`` lists the points where the function is not differentiable (the hand-written ``df``
    returns one subgradient there, documented in ``convention``, and ``d2f`` that side's); ``params``
    are the defaults of its parameters, bound into ``f``/``df``/``d2f`` (see :meth:`with_params`).
    Row-wise entries (softmax) set ``_vjp``, ``_jvp`` and ``_vjp_r`` instead of ``df``/``d2f``.
    An entry built without ``_d2f`` still works to first order; second order then raises.
    """

    name: str
    description: str
    _f: Callable[..., Array] = field(repr=False)
    _df: Callable[..., Array] = field(repr=False)
    params: Mapping[str, float] = field(default_factory=dict)
    _kinks: Callable[..., tuple[float, ...]] = field(default=lambda **p: (), repr=False)
    convention: str = ""
    _vjp: Callable[..., Array] | None = field(default=None, repr=False)
    _d2f: Callable[..., Array] | None = field(default=None, repr=False)
    _jvp: Callable[..., Array] | None = field(default=None, repr=False)
    _vjp_r: Callable[..., Array] | None = field(default=None, repr=False)

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

    def d2f(self, z) -> Array:
        """Second derivative with respect to ``z``, elementwise (at kinks: see ``convention``)."""
        z = _float(z)
        if self._d2f is None:
            raise NotImplementedError(f"activation {self.name!r} has no second derivative (d2f)")
        return np.asarray(self._d2f(z, **self.params), dtype=z.dtype)

    def jvp(self, z, v) -> Array:
        """Forward tangent of the output along ``v``: ``d/dt f(z + t v)`` at 0.

        Elementwise ``df(z) * v``; softmax (row-wise) ``s * (v - sum(s * v))``, ``s = softmax(z)``.
        In the R-operator this is ``R{a} = jvp(z, R{z})``.
        """
        z = _float(z)
        v = np.asarray(v, dtype=z.dtype)
        if self._jvp is not None:
            return np.asarray(self._jvp(z, v, **self.params), dtype=z.dtype)
        if self._vjp is not None:
            raise NotImplementedError(f"row-wise activation {self.name!r} has no jvp")
        return self.df(z) * v

    def vjp_r(self, z, g, Rz, Rg) -> Array:
        """R-derivative of :meth:`vjp`: ``d/dt vjp(z + t Rz, g + t Rg)`` at ``t = 0``.

        Elementwise ``Rg * df(z) + g * d2f(z) * Rz``. Softmax, with ``s = softmax(z)``,
        ``Rs = jvp(z, Rz)`` and ``vjp = s * (g - <g, s>)`` (``<.,.>`` per row):
        ``Rs * (g - <g, s>) + s * (Rg - <Rg, s> - <g, Rs>)``. This is the backward pass's R-step
        of Pearlmutter's R-operator: ``R{dL/dz}`` from ``R{z}`` and ``R{dL/da}``.
        """
        z = _float(z)
        g, Rz, Rg = (np.asarray(a, dtype=z.dtype) for a in (g, Rz, Rg))
        if self._vjp_r is not None:
            return np.asarray(self._vjp_r(z, g, Rz, Rg, **self.params), dtype=z.dtype)
        if self._vjp is not None:
            raise NotImplementedError(f"row-wise activation {self.name!r} has no vjp_r")
        return Rg * self.df(z) + g * self.d2f(z) * Rz

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
        return replace(self, params=MappingProxyType({**self.params, **params}))


def _entry(name, description, f, df, d2f, params=None, kinks=None, convention="", vjp=None, jvp=None,
           vjp_r=None):
    return name, Activation(name, description, f, df, MappingProxyType(dict(params or {})),
                            kinks or (lambda **p: ()), convention, vjp, d2f, jvp, vjp_r)


def _softmax(z: Array) -> Array:
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))  # shifted: no overflow
    return e / np.sum(e, axis=-1, keepdims=True)


def _softmax_vjp(z: Array, g: Array) -> Array:
    s = _softmax(z)
    return s * (g - np.sum(g * s, axis=-1, keepdims=True))


def _softmax_jvp(z: Array, v: Array) -> Array:
    s = _softmax(z)
    return s * (v - np.sum(s * v, axis=-1, keepdims=True))


def _softmax_vjp_r(z: Array, g: Array, Rz: Array, Rg: Array) -> Array:
    s = _softmax(z)
    Rs = s * (Rz - np.sum(s * Rz, axis=-1, keepdims=True))
    return (Rs * (g - np.sum(g * s, axis=-1, keepdims=True))
            + s * (Rg - np.sum(Rg * s, axis=-1, keepdims=True) - np.sum(g * Rs, axis=-1, keepdims=True)))


def _not_elementwise(z: Array) -> Array:
    raise TypeError("softmax is not elementwise: its derivative is a Jacobian; use vjp(z, g), "
                    "jvp(z, v) and vjp_r(z, g, Rz, Rg)")


def _at_zero(**p):
    return (0.0,)


ACTIVATIONS: Mapping[str, Activation] = MappingProxyType(dict([
    _entry("identity", "z",
           lambda z: z, lambda z: np.ones_like(z), _zero_d2f),
    _entry("sigmoid", "1 / (1 + exp(-z)), computed without overflow",
           _sigmoid, lambda z: _sigmoid(z) * (1 - _sigmoid(z)), _sigmoid_d2f),
    _entry("tanh", "tanh(z)",
           np.tanh, lambda z: 1 - np.tanh(z) ** 2, _tanh_d2f),
    _entry("relu", "max(z, 0)",
           lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype), _zero_d2f,
           kinks=_at_zero, convention="relu'(0) = 0; relu''(0) = 0"),
    _entry("leaky_relu", "z if z > 0 else alpha * z",
           lambda z, alpha: np.where(z > 0, z, alpha * z),
           lambda z, alpha: np.where(z > 0, 1, alpha), _zero_d2f,
           params={"alpha": 0.01}, kinks=_at_zero, convention="derivative at 0 is alpha; second derivative 0"),
    _entry("elu", "z if z > 0 else alpha * (exp(z) - 1)",
           _elu, _elu_df, _elu_d2f, params={"alpha": 1.0},
           kinks=lambda alpha: () if alpha == 1.0 else (0.0,),
           convention="derivative at 0 is alpha (the left limit); second derivative at 0 is alpha (the left limit)"),
    _entry("selu", "scale * elu(z, alpha) with the self-normalising constants",
           lambda z: _SELU_SCALE * _elu(z, _SELU_ALPHA),
           lambda z: _SELU_SCALE * _elu_df(z, _SELU_ALPHA),
           lambda z: _SELU_SCALE * _elu_d2f(z, _SELU_ALPHA),
           kinks=_at_zero, convention="derivatives at 0 are the left limits: scale * alpha (both)"),
    _entry("softplus", "log(1 + exp(z)), as logaddexp(0, z)",
           _softplus, _sigmoid, _sigmoid_d1),
    _entry("softsign", "z / (1 + |z|)",
           lambda z: z / (1 + np.abs(z)), lambda z: 1 / (1 + np.abs(z)) ** 2, _softsign_d2f),
    _entry("silu", "z * sigmoid(z) (swish)",
           lambda z: z * _sigmoid(z),
           lambda z: _sigmoid(z) * (1 + z * (1 - _sigmoid(z))), _silu_d2f),
    _entry("gelu", "z * Phi(z), Phi the standard normal CDF (exact, erf)",
           lambda z: z * _gaussian_cdf(z),
           lambda z: _gaussian_cdf(z) + z * _gaussian_pdf(z), _gelu_d2f),
    _entry("gelu_tanh", "0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))",
           lambda z: (lambda z64, t: 0.5 * z64 * (1 + t))(*_gelu_tanh_parts(z)),
           lambda z: (lambda z64, t: 0.5 * (1 + t)
                      + 0.5 * z64 * (1 - t * t) * _GELU_C * (1 + 3 * 0.044715 * z64 * z64)
                      )(*_gelu_tanh_parts(z)), _gelu_tanh_d2f),
    _entry("mish", "z * tanh(softplus(z))",
           lambda z: z * np.tanh(_softplus(z)),
           lambda z: (lambda t, s: t + z * (1 - t * t) * s)(*_mish_parts(z)), _mish_d2f),
    _entry("sin", "sin(z)",
           np.sin, np.cos, lambda z: -np.sin(z)),
    _entry("hard_tanh", "clip(z, -1, 1)",
           lambda z: np.clip(z, -1, 1), lambda z: (np.abs(z) < 1).astype(z.dtype), _zero_d2f,
           kinks=lambda **p: (-1.0, 1.0), convention="derivative at +-1 is 0; second derivative 0"),
    _entry("softmax", "exp(z) / sum(exp(z)) along the last axis (row-wise, shifted by the row max)",
           _softmax, _not_elementwise, _not_elementwise, vjp=_softmax_vjp, jvp=_softmax_jvp,
           vjp_r=_softmax_vjp_r),
]))


def get_activation(name: str) -> Activation:
    """The registry entry ``name``; a ValueError lists the known names."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None
