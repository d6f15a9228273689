"""Fast mode (check(..., mode="fast")): random directional derivatives detect a mismatch with a
constant number of calls, bisection localizes it in O(log P) more; never a per-element verdict.

The call budget is ``22 + 2 log2(P)`` calls of fn or loss_fn in total, counting the two validation
calls of check (issue 11's ``20 + 2 log2(P)`` plus the third step of the second look's ladder); the tests hold fast mode to it for a single wrong element with a
relative error of 1e-4 (a median-magnitude element: neither the largest, which is easy, nor one
too small to matter)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gradcheck
from gradcheck.spec import Layer, NetworkSpec
from reference.network import Network


def mlp(hidden: int, activation: str = "tanh", loss: str = "mse", dtype: str = "float64", seed: int = 0):
    out = 3
    spec = NetworkSpec(6, (Layer(hidden, activation), Layer(hidden, activation), Layer(out, "identity")),
                       loss, batch=16, dtype=dtype, seed=seed)
    net = Network(spec)
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((16, 6)).astype(dtype)
    y = rng.integers(0, out, 16) if loss == "softmax_cross_entropy" else rng.standard_normal((16, out)).astype(dtype)
    return spec, net, net.init_params(), X, y


def with_wrong_element(net, key: str, index: tuple, factor: float):
    def fn(p, X, y):
        loss, g = net(p, X, y)
        g = dict(g)
        g[key] = g[key].copy()
        g[key][index] *= factor
        return loss, g
    return fn


def median_element(g: np.ndarray) -> tuple:
    flat = int(np.argsort(np.abs(g).ravel())[g.size // 2])
    return tuple(int(v) for v in np.unravel_index(flat, g.shape))


@pytest.mark.parametrize("hidden,activation,loss", [(5, "tanh", "mse"), (24, "sigmoid", "softmax_cross_entropy"),
                                                    (24, "gelu", "mse")])
def test_correct_code_passes_with_a_constant_number_of_calls(hidden, activation, loss):
    spec, net, params, X, y = mlp(hidden, activation, loss)
    result = gradcheck.check(net, params, X, y, mode="fast")
    assert result.passed, str(result)
    assert result.mode == "fast" and result.scheme == "fast"
    assert any("not a per-element verdict" in n for n in result.notes)
    assert result.calls == 2 + 6 + 2 * 4  # validation, noise probe, two directions of 4 calls


@pytest.mark.parametrize("hidden", [5, 24])
@pytest.mark.parametrize("key", ["W1", "b1", "W2", "W3", "b3"])
def test_single_wrong_element_is_detected_and_localized_within_budget(hidden, key):
    spec, net, params, X, y = mlp(hidden)
    _, g = net(params, X, y)
    index = median_element(g[key])
    fn = with_wrong_element(net, key, index, 1 + 1e-4)
    result = gradcheck.check(fn, params, X, y, mode="fast", loss_fn=net.loss)
    P = spec.n_params
    assert not result.passed
    assert result.worst_param == key and tuple(result.worst.index) == index, str(result)
    assert result.calls <= 22 + 2 * math.log2(P), (result.calls, P)
    assert result.failures and result.failures[0].rel_error > result.failures[0].tolerance
    assert result.tensors[key].n_failed == 1


def test_single_wrong_element_float32_ten_percent():
    spec, net, params, X, y = mlp(12, dtype="float32")
    fn = with_wrong_element(net, "W2", (4, 7), 1.1)
    result = gradcheck.check(fn, params, X, y, mode="fast")
    assert not result.passed
    assert result.worst_param == "W2" and result.worst.index == [4, 7]


def test_correct_float32_code_passes():
    spec, net, params, X, y = mlp(12, dtype="float32")
    assert gradcheck.check(net, params, X, y, mode="fast").passed


def test_whole_tensor_sign_flip_is_localized_to_its_tensor():
    spec, net, params, X, y = mlp(10)

    def fn(p, X, y):
        loss, g = net(p, X, y)
        return loss, {**g, "W2": -g["W2"]}

    result = gradcheck.check(fn, params, X, y, mode="fast")
    assert not result.passed and result.worst_param == "W2"


def test_whole_tensor_scaled_by_one_plus_1e6_fails_in_its_tensor():
    spec, net, params, X, y = mlp(10)

    def fn(p, X, y):
        loss, g = net(p, X, y)
        return loss, {**g, "W2": g["W2"] * (1 + 1e-6)}

    result = gradcheck.check(fn, params, X, y, mode="fast")
    assert not result.passed and result.worst_param == "W2"


def test_mismatch_whose_localized_element_is_within_tolerance_is_reported_as_spread():
    """When the direction disagrees but the element bisection ends at agrees on its own, the
    error is spread thinly over many elements: still a failure, said so, in that tensor."""
    from gradcheck import fastmode
    from gradcheck.result import Element, Result

    params = {"W": np.ones((2, 3)), "b": np.ones(3)}
    p = fastmode._Params(params)
    element = Element("W", [1, 2], 0.5, 0.5, 1e-12, 1e-9, 1e-11, 1e-5, note="localized by bisection")
    outcome = fastmode._Outcome(5, element, passed=True, kink=False)
    verdict = {"rel": 3e-8, "tol": 1e-8, "claimed": 1.0, "numerical": 1.00000003}
    result = fastmode._failure(lambda **f: Result(**f), p, params, verdict, outcome, [], [])
    assert not result.passed and result.worst_param == "W"
    assert [q.kind for q in result.problems] == ["spread_mismatch"]
    assert "spread over many elements" in str(result)
    assert result.max_rel_error == 3e-8 and result.failures == []
    assert not result.tensors["W"].passed and result.tensors["b"].passed


def test_fn_raising_during_the_directions_gives_a_problem_not_an_exception():
    spec, net, params, X, y = mlp(5)
    seen = []

    def fn(p, X, y):
        seen.append(1)
        if len(seen) > 4:
            raise RuntimeError("boom")
        return net(p, X, y)

    result = gradcheck.check(fn, params, X, y, mode="fast")
    assert not result.passed
    assert result.problems and result.problems[0].kind == "raised" and "boom" in result.problems[0].message


def test_fast_mode_is_not_the_default():
    spec, net, params, X, y = mlp(5)
    assert gradcheck.check(net, params, X, y).mode == "full"


def test_fast_result_serializes():
    spec, net, params, X, y = mlp(5)
    fn = with_wrong_element(net, "W1", (2, 3), 1.01)
    result = gradcheck.check(fn, params, X, y, mode="fast")
    again = gradcheck.Result.from_dict(result.to_dict())
    assert again.worst.index == [2, 3] and again.mode == "fast" and not again.passed


def test_correct_relu_code_exactly_on_kinks_is_never_reported_as_a_wrong_element():
    """One sample sits exactly on every first-layer ReLU kink: the directions cross them. Fast
    mode must not blame an element: it passes, or says it is inconclusive and lists the kinks."""
    spec = NetworkSpec(4, (Layer(8, "relu"), Layer(8, "relu"), Layer(2, "identity")), "mae", batch=8)
    net = Network(spec)
    params = net.init_params()
    params["b1"][:] = 0.0
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 2))
    X[0] = 0.0
    result = gradcheck.check(net, params, X, y, mode="fast")
    assert result.failures == []
    if not result.passed:
        assert [p.kind for p in result.problems] == ["fast_inconclusive"] and result.kinks
        assert "mode='full'" in str(result)
    assert gradcheck.check(net, params, X, y).passed  # the full check decides
