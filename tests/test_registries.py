"""The reference registries: every activation's df and every loss's grad against central
differences, and finite, warning-free values at extreme inputs.

Tolerance for the central-difference comparisons (float64): the difference quotient with step
h = 1e-5 has truncation error ~ |f'''| h^2 / 6 (<= ~1e-10 for these smooth functions on the
sampled range) and rounding error ~ eps |f| / h (~1e-11 for |f| <= 10), so agreement to
rtol 1e-6 + atol 1e-8 leaves a factor >100 of margin for correct code while a wrong derivative
(wrong sign, missing factor, wrong variable) is off by O(1).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from reference.activations import ACTIVATIONS, get_activation
from reference.losses import LOSSES, TARGETS, get_loss

H = 1e-5
RTOL, ATOL = 1e-6, 1e-8
RNG = np.random.default_rng(0)


def _away_from(z: np.ndarray, kinks, margin: float = 1e-3) -> np.ndarray:
    for k in kinks:
        z = np.where(np.abs(z - k) < margin, z + 2 * margin, z)
    return z


@pytest.mark.parametrize("name", [n for n, a in ACTIVATIONS.items() if a.elementwise])
def test_activation_df_matches_central_difference(name):
    act = ACTIVATIONS[name]
    z = _away_from(RNG.uniform(-6, 6, size=500), act.kinks)
    numeric = (act.f(z + H) - act.f(z - H)) / (2 * H)
    np.testing.assert_allclose(act.df(z), numeric, rtol=RTOL, atol=ATOL)


def test_softmax_vjp_matches_central_difference():
    act = ACTIVATIONS["softmax"]
    z = RNG.normal(size=(5, 4)) * 3
    g = RNG.normal(size=(5, 4))
    numeric = np.zeros_like(z)
    for i in np.ndindex(z.shape):  # d/dz_i of sum(g * softmax(z))
        zp, zm = z.copy(), z.copy()
        zp[i] += H
        zm[i] -= H
        numeric[i] = (np.sum(g * act.f(zp)) - np.sum(g * act.f(zm))) / (2 * H)
    np.testing.assert_allclose(act.vjp(z, g), numeric, rtol=RTOL, atol=ATOL)
    with pytest.raises(TypeError, match="not elementwise"):
        act.df(z)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_extreme_inputs_finite_without_warnings(name, dtype):
    act = ACTIVATIONS[name]
    z = np.array([-1e3, -50.0, -1.0, 0.0, 1.0, 50.0, 1e3], dtype=dtype).reshape(1, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow to 0 is fine
            value = act.f(z)
            grad = act.vjp(z, np.ones_like(z))
    assert value.dtype == dtype and grad.dtype == dtype
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "silu", "gelu", "mish", "softsign"])
def test_activation_extreme_values_are_right(name):
    """Not just finite: the limits are the mathematically right ones."""
    act = ACTIVATIONS[name]
    z = np.array([-1e3, 1e3])
    lim_f = {"sigmoid": [0, 1], "tanh": [-1, 1], "softplus": [0, 1e3], "silu": [0, 1e3],
             "gelu": [0, 1e3], "mish": [0, 1e3], "softsign": [-1 + 1 / 1001, 1 - 1 / 1001]}[name]
    np.testing.assert_allclose(act.f(z), lim_f, atol=1e-12)
    lim_df = {"sigmoid": [0, 0], "tanh": [0, 0], "softplus": [0, 1], "silu": [0, 1],
              "gelu": [0, 1], "mish": [0, 1], "softsign": [1 / 1001**2, 1 / 1001**2]}[name]
    np.testing.assert_allclose(act.df(z), lim_df, atol=1e-12)


def test_activation_dtype_shape_and_params():
    act = get_activation("leaky_relu")
    z = np.arange(-3, 3).reshape(2, 3)  # integers become float64
    assert act.f(z).dtype == np.float64 and act.f(z).shape == (2, 3)
    assert act.df(np.float32([-1.0]))[0] == np.float32(0.01)
    steep = act.with_params(alpha=0.2)
    assert steep.df(np.array([-1.0]))[0] == 0.2 and act.df(np.array([-1.0]))[0] == 0.01
    with pytest.raises(ValueError, match="has no parameter"):
        act.with_params(beta=1)
    with pytest.raises(ValueError, match="unknown activation 'swoosh'"):
        get_activation("swoosh")
    assert get_activation("relu").kinks == (0.0,)
    assert get_activation("elu").kinks == () and get_activation("elu").with_params(alpha=2.0).kinks == (0.0,)


@pytest.mark.parametrize("name", [n for n, a in ACTIVATIONS.items() if a.elementwise])
def test_activation_accepts_a_scalar(name):
    # 0-d input: gelu's object-dtype erf once returned a bare float there and .astype failed
    act = get_activation(name)
    z = np.array([0.7])
    assert act.f(0.7) == act.f(z)[0] and act.df(np.float64(0.7)) == act.df(z)[0]
    assert np.shape(act.f(0.7)) == ()


def _targets(loss, out):
    n, k = out.shape
    kind = loss.target
    if kind == "real":
        return RNG.normal(size=out.shape)
    if kind in ("binary",):
        return RNG.integers(0, 2, size=out.shape).astype(float)
    if kind == "probability":
        return RNG.uniform(0, 1, size=out.shape)
    if kind == "sign":
        return RNG.choice([-1.0, 1.0], size=out.shape)
    if kind == "count":
        return RNG.poisson(2.0, size=out.shape).astype(float)
    if kind in ("class", "one_hot"):
        return np.eye(k)[RNG.integers(0, k, size=n)]
    if kind == "distribution":
        p = RNG.uniform(0.1, 1, size=out.shape)
        return p / p.sum(axis=1, keepdims=True)
    raise AssertionError(kind)


def _outputs(loss, shape):
    if loss.output == "probability":
        return RNG.uniform(0.05, 0.95, size=shape)
    if loss.output == "distribution":
        p = RNG.uniform(0.1, 1, size=shape)
        return p / p.sum(axis=1, keepdims=True)
    return RNG.normal(size=shape)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_grad_matches_central_difference(name):
    loss = LOSSES[name]
    assert loss.target in TARGETS
    out = _outputs(loss, (6, 3))
    y = _targets(loss, out)
    if name == "mae":
        out = np.where(np.abs(out - y) < 1e-3, out + 0.01, out)
    if name == "hinge":
        out = np.where(np.abs(1 - y * out) < 1e-3, out + 0.01, out)
    numeric = np.zeros_like(out)
    for i in np.ndindex(out.shape):
        op, om = out.copy(), out.copy()
        op[i] += H
        om[i] -= H
        numeric[i] = (loss.value(op, y) - loss.value(om, y)) / (2 * H)
    grad = loss.grad(out, y)
    assert grad.shape == out.shape and grad.dtype == out.dtype
    np.testing.assert_allclose(grad, numeric, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "categorical_cross_entropy"])
def test_class_losses_accept_integer_targets(name):
    loss = LOSSES[name]
    out = _outputs(loss, (4, 3))
    idx = np.array([0, 2, 1, 2])
    hot = np.eye(3)[idx]
    assert loss.value(out, idx) == pytest.approx(loss.value(out, hot), rel=1e-15)
    np.testing.assert_array_equal(loss.grad(out, idx), loss.grad(out, hot))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_extreme_inputs_without_warnings(name, dtype):
    """At |out| = 1e3 (logits, errors) every loss is finite and warning-free, except poisson_nll,
    whose exp(out) honestly overflows to inf above log(max float) (documented), still silently."""
    loss = LOSSES[name]
    if loss.output in ("probability", "distribution"):
        out = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)  # clipped at the edges
    else:
        out = np.array([[-1e3, 1e3], [1e3, -1e3]], dtype=dtype)
    y = _targets(loss, out.astype(np.float64)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = loss.value(out, y)
        grad = loss.grad(out, y)
    assert grad.dtype == dtype
    if name == "poisson_nll":
        assert value == np.inf
        return
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_half_sse_is_the_origin_documents_loss():
    out, y = np.array([[0.2], [0.9]]), np.array([[0.0], [1.0]])
    assert LOSSES["half_sse"].value(out, y) == pytest.approx(0.5 * (0.04 + 0.01))
    np.testing.assert_allclose(LOSSES["half_sse"].grad(out, y), out - y)
    with pytest.raises(ValueError, match="unknown loss 'l3'"):
        get_loss("l3")
