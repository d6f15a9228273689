"""The numpy reference of attention, RNN and LSTM (reference/layers/attention.py, recurrent.py):
parity with torch in float64, float32 behaviour, the hand-written backward against finite
differences (gradcheck.check_vjp), planted backward bugs caught, purity and overflow safety.

Tolerances: parity with torch is float64 against float64 with the same maths in a different
order of operations (torch's fused matmuls, its own softmax and gate kernels): the differences are
a few ulps per operation, ~1e-15 relative after the few dozen operations of T <= 5 steps, so
rtol 1e-10 leaves five orders of magnitude of margin and still catches any real formula
difference (a wrong term changes values at 1e-2 or more). atol 1e-12 covers elements that are
zero in exact arithmetic but computed as a rounding residue on one side (e.g. dQ/dK when T = 1,
where the softmax is constant and our row-sum cancels exactly while torch's leaves ~1e-16).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from gradcheck import check_vjp
from gradcheck.layerspec import LSTM as LSTMNode
from gradcheck.layerspec import RNN as RNNNode
from gradcheck.layerspec import Attention
from reference.layers import recurrent
from reference.layers.attention import ATTENTION
from reference.layers.base import Context
from reference.layers.recurrent import LSTM, RNN

RTOL, ATOL = 1e-10, 1e-12
CTX = Context(seed=0, index=1)


def make(kind, node, batch, steps, features, dtype=np.float64, seed=0, scheme="xavier"):
    """x (batch, steps, features) ~ N(0, 1) and the kind's own init, in ``dtype``."""
    rng = np.random.default_rng(seed)
    params = kind.init(node, (steps, features), rng, scheme, np.dtype(dtype))
    x = rng.standard_normal((batch, steps, features)).astype(dtype)
    return x, params


def run(kind, node, x, params, dy):
    y, cache = kind.forward(node, params, x, CTX)
    dx, grads = kind.backward(node, params, cache, dy)
    return y, dx, grads


# -- torch references ------------------------------------------------------------------------------
def torch_attention(node, x, params):
    """Our maths with torch ops: projections, then torch's own scaled_dot_product_attention per head."""
    import torch.nn.functional as F

    b, t, d = x.shape
    dh = d // node.heads

    def heads(a):
        return a.reshape(b, t, node.heads, dh).transpose(1, 2)

    q, k, v = (heads(x @ params[n]) for n in ("Wq", "Wk", "Wv"))
    o = F.scaled_dot_product_attention(q, k, v, is_causal=node.causal)  # scale 1/sqrt(dh) by default
    return o.transpose(1, 2).reshape(b, t, d) @ params["Wo"]


def torch_parity(kind, node, x, params, module_fn):
    """Forward values and every gradient (random cotangent) of ours against torch's."""
    import torch

    tx = torch.tensor(x, requires_grad=True)
    tparams, ty = module_fn(tx)
    rng = np.random.default_rng(99)
    y, cache = kind.forward(node, params, x, CTX)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    dx, grads = kind.backward(node, params, cache, dy)
    names = list(tparams)
    tgrads = torch.autograd.grad(ty, [tx] + [tparams[n][0] for n in names], grad_outputs=torch.tensor(dy))
    np.testing.assert_allclose(dx, tgrads[0].numpy(), rtol=RTOL, atol=ATOL, err_msg="dx")
    for name, tg in zip(names, tgrads[1:]):
        as_ours = tparams[name][1](tg.numpy())
        np.testing.assert_allclose(grads[name], as_ours, rtol=RTOL, atol=ATOL, err_msg=name)
    assert set(grads) == set(params)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads", [1, 2])
def test_attention_matches_torch_float64(heads, causal, steps):
    torch = pytest.importorskip("torch")
    node = Attention(heads=heads, causal=causal)
    x, params = make(ATTENTION, node, 3, steps, 4)

    def module_fn(tx):
        tp = {n: torch.tensor(p, requires_grad=True) for n, p in params.items()}
        return {n: (tp[n], lambda g: g) for n in tp}, torch_attention(node, tx, tp)

    torch_parity(ATTENTION, node, x, params, module_fn)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
def test_rnn_matches_torch_float64(steps):
    torch = pytest.importorskip("torch")
    node = RNNNode(hidden=4)
    x, params = make(RNN, node, 3, steps, 3)

    def module_fn(tx):
        rnn = torch.nn.RNN(3, 4, batch_first=True, nonlinearity="tanh", dtype=torch.float64)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(torch.tensor(params["Wx"].T))
            rnn.weight_hh_l0.copy_(torch.tensor(params["Wh"].T))
            rnn.bias_ih_l0.copy_(torch.tensor(params["b"]))
            rnn.bias_hh_l0.zero_()
        out, _ = rnn(tx)
        return {"Wx": (rnn.weight_ih_l0, np.transpose), "Wh": (rnn.weight_hh_l0, np.transpose),
                "b": (rnn.bias_ih_l0, lambda g: g)}, out

    torch_parity(RNN, node, x, params, module_fn)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
def test_lstm_matches_torch_float64(steps):
    torch = pytest.importorskip("torch")
    node = LSTMNode(hidden=4)
    x, params = make(LSTM, node, 3, steps, 3)

    def module_fn(tx):
        lstm = torch.nn.LSTM(3, 4, batch_first=True, dtype=torch.float64)  # gates i, f, g, o as ours
        with torch.no_grad():
            lstm.weight_ih_l0.copy_(torch.tensor(params["Wx"].T))
            lstm.weight_hh_l0.copy_(torch.tensor(params["Wh"].T))
            lstm.bias_ih_l0.copy_(torch.tensor(params["b"]))
            lstm.bias_hh_l0.zero_()
        out, _ = lstm(tx)
        return {"Wx": (lstm.weight_ih_l0, np.transpose), "Wh": (lstm.weight_hh_l0, np.transpose),
                "b": (lstm.bias_ih_l0, lambda g: g)}, out

    torch_parity(LSTM, node, x, params, module_fn)


# -- shapes, init, dtypes ------------------------------------------------------------------------------
CASES = [(ATTENTION, Attention(heads=2, causal=True), 4), (ATTENTION, Attention(heads=1), 4),
         (RNN, RNNNode(hidden=5), 3), (LSTM, LSTMNode(hidden=5), 3)]
IDS = ["attention-causal-2heads", "attention-1head", "rnn", "lstm"]


@pytest.mark.parametrize("kind, node, features", CASES, ids=IDS)
def test_init_follows_the_spec_shapes_and_output_shape(kind, node, features):
    x, params = make(kind, node, 2, 3, features, dtype=np.float32)
    shapes = node.param_shapes((3, features))
    assert list(params) == list(shapes)
    assert {n: p.shape for n, p in params.items()} == shapes
    assert all(p.dtype == np.float32 for p in params.values())
    y, _ = kind.forward(node, params, x, CTX)
    assert y.shape == (2,) + node.out_shape((3, features))


@pytest.mark.parametrize("kind, node, features", CASES, ids=IDS)
def test_float32_in_float32_out_close_to_float64(kind, node, features):
    # the same (float32-representable) inputs in both precisions: float32 rounds each operation at
    # eps32 ~ 6e-8; a few dozen operations of O(1) values over T = 4 steps accumulate to ~1e-6
    # relative, so 1e-5 (of the array's largest value, for elements near zero) bounds it with margin
    x32, p32 = make(kind, node, 2, 4, features, dtype=np.float32)
    dy32 = np.random.default_rng(5).standard_normal((2, 4) + node.out_shape((4, features))[1:]).astype(np.float32)
    y32, dx32, g32 = run(kind, node, x32, p32, dy32)
    p64 = {n: p.astype(np.float64) for n, p in p32.items()}
    y64, dx64, g64 = run(kind, node, x32.astype(np.float64), p64, dy32.astype(np.float64))
    assert y32.dtype == dx32.dtype == np.float32
    assert all(g.dtype == np.float32 for g in g32.values())
    for name, a, b in [("y", y32, y64), ("dx", dx32, dx64)] + [(n, g32[n], g64[n]) for n in g64]:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max(), err_msg=name)


# -- against finite differences ------------------------------------------------------------------------
def operator(kind, node, backward=None):
    """f and f_vjp for check_vjp over x and every parameter; ``backward`` replaces the kind's."""
    backward = backward or kind.backward

    def f(inp):
        params = {n: v for n, v in inp.items() if n != "x"}
        return kind.forward(node, params, inp["x"], CTX)[0]

    def f_vjp(inp, dy):
        params = {n: v for n, v in inp.items() if n != "x"}
        _, cache = kind.forward(node, params, inp["x"], CTX)
        dx, grads = backward(node, params, cache, dy)
        return {"x": dx, **grads}

    return f, f_vjp


def fd_check(kind, node, features, backward=None, steps=3, dtype=np.float64):
    x, params = make(kind, node, 2, steps, features, dtype=dtype, seed=3)
    f, f_vjp = operator(kind, node, backward)
    return check_vjp(f, f_vjp, {"x": x, **params})


@pytest.mark.parametrize("kind, node, features", CASES, ids=IDS)
def test_backward_agrees_with_finite_differences(kind, node, features):
    result = fd_check(kind, node, features)
    assert result.passed, str(result)
    # every formula is analytic (the sigmoid chooses its form on the real part, no abs): the
    # checker's auto scheme takes the complex step, exact to rounding, not central differences
    assert result.scheme == "complex"


@pytest.mark.parametrize("kind, node, features", CASES, ids=IDS)
def test_backward_agrees_with_finite_differences_float32(kind, node, features):
    result = fd_check(kind, node, features, dtype=np.float32)
    assert result.passed, str(result)


# -- planted bugs ----------------------------------------------------------------------------------
def test_attention_without_the_scale_on_dq_dk_is_caught():
    # dh = 2 (D = 4, 2 heads): the missing factor is 1/sqrt(2); with dh = 1 it would be invisible
    def backward(node, params, cache, dy):
        return ATTENTION.backward(node, params, {**cache, "scale": 1.0}, dy)  # the forward did scale

    node = Attention(heads=2, causal=True)
    assert fd_check(ATTENTION, node, 4).passed
    result = fd_check(ATTENTION, node, 4, backward)
    assert not result.passed
    assert result.worst.input in ("x", "Wq", "Wk")  # dV and dWo do not involve the scale


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_backward_without_the_row_sum_is_caught(monkeypatch, causal):
    from reference.layers import attention

    monkeypatch.setattr(attention, "_softmax_backward", lambda p, dp: p * dp)
    result = fd_check(ATTENTION, Attention(heads=2, causal=causal), 4)
    assert not result.passed
    assert result.worst.input in ("x", "Wq", "Wk")


def test_rnn_backward_that_forgets_the_next_step_is_caught(monkeypatch):
    step = recurrent._rnn_step_backward

    def truncated(dh, h, Wh):
        dz, dh_prev = step(dh, h, Wh)
        return dz, np.zeros_like(dh_prev)  # nothing flows from step t back to step t-1

    monkeypatch.setattr(recurrent, "_rnn_step_backward", truncated)
    result = fd_check(RNN, RNNNode(hidden=5), 3)
    assert not result.passed
    # with one step there is no next step to forget: the same bug passes
    assert fd_check(RNN, RNNNode(hidden=5), 3, steps=1).passed


def test_lstm_backward_without_the_forget_gate_on_dc_is_caught(monkeypatch):
    step = recurrent._lstm_step_backward

    def no_forget(dh, dc, a, c_prev, tc, Wh):
        dz, dh_prev, _ = step(dh, dc, a, c_prev, tc, Wh)
        o = np.split(a, 4, axis=1)[3]
        return dz, dh_prev, dc + dh * o * (1 - tc * tc)  # dc_{t-1} = dc_t, not dc_t * s(f)

    monkeypatch.setattr(recurrent, "_lstm_step_backward", no_forget)
    result = fd_check(LSTM, LSTMNode(hidden=5), 3)
    assert not result.passed
    assert fd_check(LSTM, LSTMNode(hidden=5), 3, steps=1).passed


# -- purity and numerics ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, node, features", CASES, ids=IDS)
def test_inputs_are_not_mutated(kind, node, features):
    x, params = make(kind, node, 2, 4, features)
    dy = np.random.default_rng(1).standard_normal((2, 4) + node.out_shape((4, features))[1:])
    before = {"x": x.copy(), "dy": dy.copy(), **{n: p.copy() for n, p in params.items()}}
    y, cache = kind.forward(node, params, x, CTX)
    y_copy = y.copy()
    kind.backward(node, params, cache, dy)
    kind.backward(node, params, cache, dy)  # the cache is reusable: backward writes nothing into it
    after = {"x": x, "dy": dy, **params}
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    np.testing.assert_array_equal(y, y_copy)
    _, dx1, g1 = run(kind, node, x, params, dy)
    _, dx2, g2 = run(kind, node, x, params, dy)
    np.testing.assert_array_equal(dx1, dx2)


@pytest.mark.parametrize("kind, node, features", CASES, ids=IDS)
def test_large_inputs_give_no_warning_in_float32(kind, node, features):
    x, params = make(kind, node, 2, 4, features, dtype=np.float32)
    x = x * np.float32(100)  # saturates the sigmoids and tanh, makes the softmax one-hot
    dy = np.ones((2, 4) + node.out_shape((4, features))[1:], dtype=np.float32)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        y, dx, grads = run(kind, node, x, params, dy)
    for a in (y, dx, *grads.values()):
        assert a.dtype == np.float32 and np.all(np.isfinite(a))


def test_causal_attention_ignores_the_future():
    node = Attention(heads=2, causal=True)
    x, params = make(ATTENTION, node, 1, 5, 4)
    y, _ = ATTENTION.forward(node, params, x, CTX)
    x2 = x.copy()
    x2[:, 3:] += 1.0  # change only positions 3 and 4
    y2, _ = ATTENTION.forward(node, params, x2, CTX)
    np.testing.assert_array_equal(y[:, :3], y2[:, :3])
    assert not np.allclose(y[:, 3:], y2[:, 3:])
