"""Correct code at non-differentiable points passes whatever subgradient it uses; the kink
elements are listed; a real bug elsewhere in the same tensor still fails."""
from __future__ import annotations

import numpy as np
import pytest

import gradcheck


def relu_net(convention: float, bug_at=None):
    """One relu layer + linear output, MSE; relu'(0) = ``convention``."""
    def fn(params, X, y):
        W1, W2 = params["W1"], params["W2"]
        z = X @ W1 + params["b1"]
        a = np.maximum(z, 0)
        out = a @ W2
        n = len(X)
        loss = np.sum((out - y) ** 2) / n
        d_out = 2 * (out - y) / n
        gW2 = a.T @ d_out
        dz = (d_out @ W2.T) * np.where(z > 0, 1.0, np.where(z < 0, 0.0, convention))
        gW1 = X.T @ dz
        if bug_at is not None:
            gW1 = gW1.copy()
            gW1[bug_at] *= 1.05
        return loss, {"W1": gW1, "b1": dz.sum(axis=0), "W2": gW2}
    return fn


def kink_inputs():
    """Samples 0 and 1 sit exactly at z = 0 for every hidden unit, on opposite sides of W1[0, :]:
    x0 = (1, 0), x1 = (-1, 0) with W1[0, :] = 0 and b1 = 0. Perturbing W1[0, j] up activates
    sample 0, down activates sample 1, so neither one-sided derivative equals relu'(0)=0 or 1."""
    params = {"W1": np.array([[0.0, 0.0, 0.0], [0.5, -0.8, 1.1]]), "b1": np.zeros(3),
              "W2": np.array([[0.7], [-1.3], [0.4]])}
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.3, 0.9], [-0.4, 0.6]])
    # targets chosen so the two kinks do not cancel (with y1 = -y0 the loss happens to be smooth
    # along W1[0, :], and then only the true derivative is right)
    y = np.array([[1.0], [0.3], [0.5], [2.0]])
    return params, X, y


@pytest.mark.parametrize("convention", [0.0, 1.0, 0.5])
def test_relu_at_zero_passes_with_any_convention(convention):
    params, X, y = kink_inputs()
    result = gradcheck.check(relu_net(convention), params, X, y)
    assert result.passed, str(result)
    assert {e.param for e in result.kinks} <= {"W1", "b1"}
    if convention != 0.5:  # 0.5 happens to equal the central difference for b1 and W1
        assert result.kinks, "the kink elements should be listed"
        assert "kink" in str(result)


def test_bug_elsewhere_in_the_same_tensor_still_fails():
    params, X, y = kink_inputs()
    result = gradcheck.check(relu_net(0.0, bug_at=(1, 2)), params, X, y)
    assert not result.passed and result.worst_param == "W1" and result.worst.index == [1, 2], str(result)


def test_l1_loss_at_zero_residual_passes():
    """mae with out == y exactly for some samples, sign(0) = 0."""
    def fn(params, X, y):
        out = X @ params["w"]
        r = out - y
        return np.sum(np.abs(r)) / len(X), {"w": X.T @ np.sign(r) / len(X)}

    X = np.array([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0]])
    w = np.array([[0.25], [0.5]])
    y = X @ w
    y[2] += 0.7  # one sample off the kink, two exactly on it
    result = gradcheck.check(fn, {"w": w}, X, y)
    assert result.passed, str(result)


@pytest.mark.parametrize("route", ["first", "last"])
def test_max_with_ties_passes(route):
    """max over pairs with exact ties, the gradient routed to the first (or last) of the tie."""
    def fn(params, X, y):
        v = params["v"].reshape(-1, 2)
        m = v.max(axis=1)
        loss = np.sum(m * X[: len(m)])
        g = np.zeros_like(v)
        pick = np.argmax(v, axis=1) if route == "first" else 1 - np.argmax(v[:, ::-1], axis=1)
        g[np.arange(len(m)), pick] = X[: len(m)]
        return loss, {"v": g.reshape(-1)}

    params = {"v": np.array([1.0, 1.0, 0.5, -0.5, 2.0, 2.0, -1.0, 3.0])}
    result = gradcheck.check(fn, params, np.array([1.5, -0.5, 2.0, 1.0]), None)
    assert result.passed, str(result)
    assert len(result.kinks) >= 2


def test_relu_in_float32_passes():
    params, X, y = kink_inputs()
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    result = gradcheck.check(relu_net(1.0), p32, X.astype(np.float32), y.astype(np.float32))
    assert result.passed, str(result)


def test_kink_detection_can_be_turned_off():
    params, X, y = kink_inputs()
    result = gradcheck.check(relu_net(0.0), params, X, y, detect_kinks=False, scheme="central")
    assert not result.passed and not result.kinks


# -- chained kinks: zero inputs with zero biases put a unit of every layer exactly at its kink ------
def _chained(activation: str, dtype: str, seed: int):
    """A reference network as users initialize it (biases zero) on a batch where some inputs are 0:
    for those samples every unit of every layer sits exactly on its kink, so backprop's convention
    (act'(0)) is chained through the layers. Two leaky ReLUs in a row make even a loss that is
    differentiable along a bias give a convention value that matches neither side there."""
    from gradcheck.spec import Layer, NetworkSpec
    from gradcheck_reference.network import Network

    spec = NetworkSpec(1, (Layer(9, activation, bias=False), Layer(7, activation), Layer(5, activation),
                           Layer(2, activation, bias=False)), "huber", batch=8, dtype=dtype)
    net = Network(spec)
    rng = np.random.default_rng(seed)
    params = {k: (rng.normal(0, 1.0, v.shape) if k.startswith("W") else np.zeros(v.shape)).astype(dtype)
              for k, v in net.init_params().items()}
    X = np.abs(rng.normal(size=(8, 1))).astype(dtype)
    X[rng.permutation(8)[:4]] = 0.0                          # half the samples: every unit on its kink
    y = rng.normal(size=(8, 2)).astype(dtype)
    return net, params, X, y


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "selu", "elu"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_chained_kinks_at_zero_inputs_are_left_out_not_failed(activation, dtype):
    """Correct backprop at chained exact kinks: no false alarm. Before fn's gradient was probed just
    beside x along the failing element (Judge.code_kink_along), 5 of these 32 checks failed (max
    relative errors 0.4 to 3, float32 and float64 alike) while the code is right."""
    for seed in range(4):
        net, params, X, y = _chained(activation, dtype, seed)
        r = gradcheck.check(net, params, X, y, quiet=True)
        assert r.passed, f"{activation} {dtype} seed {seed}: {r}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("tensor", ["W2", "W3"])
def test_a_wrong_gradient_at_chained_kinks_is_still_caught(dtype, tensor):
    """The probe beside x excuses a value that only x itself has; a bug is wrong beside x as well.
    (Elements that are themselves kinks, here every entry of b2 and b3, are left out whatever
    their value: docs/checker.md, Known limits.)"""
    net, params, X, y = _chained("leaky_relu", dtype, 1)

    def halved(p, X, y):
        loss, grads = net(p, X, y)
        grads = dict(grads)
        grads[tensor] = grads[tensor] * 0.5
        return loss, grads

    r = gradcheck.check(halved, params, X, y, quiet=True)
    assert not r.passed and r.worst_param == tensor
