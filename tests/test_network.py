"""The reference network: gradients against central differences, purity, init, validation."""
from __future__ import annotations

import numpy as np
import pytest

import gradcheck
from gradcheck.spec import Layer, NetworkSpec
from reference.network import Network

SPECS = [
    NetworkSpec(2, (Layer(1, "sigmoid"),), "mse", batch=1),
    NetworkSpec(3, (Layer(4, "tanh"), Layer(2, "identity")), "mse", batch=5),
    NetworkSpec(3, (Layer(4, "softplus", bias=False), Layer(3, "gelu"), Layer(3, "identity")),
                "softmax_cross_entropy", batch=6, init="xavier"),
    NetworkSpec(2, (Layer(5, "silu"), Layer(5, "mish"), Layer(5, "sin", bias=False), Layer(1, "sigmoid")),
                "bce", batch=3, init="he", skips=((1, 3),)),
    NetworkSpec(4, (Layer(3, "tanh"), Layer(3, "softsign"), Layer(3, "softmax")), "categorical_cross_entropy",
                batch=4, seed=3),
    NetworkSpec(2, (Layer(3, "elu"), Layer(2, "identity", bias=False)), "half_sse", batch=4, init="uniform"),
]


def make_batch(spec: NetworkSpec, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(spec.batch, spec.input_dim))
    k = spec.output_dim
    loss = spec.loss
    if loss in ("softmax_cross_entropy", "categorical_cross_entropy"):
        y = np.eye(k)[rng.integers(0, k, size=spec.batch)]
    elif loss == "bce":
        y = rng.integers(0, 2, size=(spec.batch, k)).astype(float)
    else:
        y = rng.normal(size=(spec.batch, k))
    return X.astype(spec.dtype), y.astype(spec.dtype)


def central_gradient(net: Network, params, X, y, h: float = 1e-6):
    grads = {}
    for name, p in params.items():
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][i] += h
            minus[name][i] -= h
            g[i] = (net.loss(plus, X, y) - net.loss(minus, X, y)) / (2 * h)
        grads[name] = g
    return grads


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.label())
def test_gradients_match_central_differences_float64(spec):
    """Plain central differences, h = 1e-6: truncation ~1e-12 |f'''|, rounding ~1e-16/1e-6 = 1e-10
    per unit loss, so rtol 1e-5 with atol 1e-8 is a >100x margin for correct code."""
    net = Network(spec)
    params = net.init_params()
    X, y = make_batch(spec)
    loss, grads = net.loss_and_grads(params, X, y)
    assert isinstance(loss, float) and set(grads) == set(params)
    numeric = central_gradient(net, params, X, y)
    for name in params:
        assert grads[name].shape == params[name].shape and grads[name].dtype == params[name].dtype
        np.testing.assert_allclose(grads[name], numeric[name], rtol=1e-5, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.label())
def test_gradients_pass_the_checker_in_float32_and_float64(spec):
    """The harness's own dtype-aware tolerance (see gradcheck.compare) in both precisions."""
    for dtype in ("float64", "float32"):
        s = spec.replace(dtype=dtype)
        net = Network(s)
        X, y = make_batch(s, seed=1)
        result = gradcheck.check(net, net.init_params(), X, y, scheme="central")
        assert result.passed, str(result)


def test_loss_and_grads_does_not_mutate_its_inputs():
    spec = SPECS[3]
    net = Network(spec)
    params = net.init_params()
    X, y = make_batch(spec)
    before = ({k: v.copy() for k, v in params.items()}, X.copy(), y.copy())
    net.loss_and_grads(params, X, y)
    for k in params:
        assert params[k].tobytes() == before[0][k].tobytes()
    assert X.tobytes() == before[1].tobytes() and y.tobytes() == before[2].tobytes()


def test_init_is_deterministic_and_follows_the_scheme():
    spec = SPECS[1]
    a, b = Network(spec).init_params(), Network(spec).init_params()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = Network(spec.replace(seed=1)).init_params()
    assert not np.array_equal(a["W1"], c["W1"])
    uniform = Network(spec.replace(init="uniform", seed=42)).init_params()
    rs = np.random.RandomState(42)  # the origin document's order: all weights, then all biases
    np.testing.assert_array_equal(uniform["W1"], rs.rand(3, 4))
    np.testing.assert_array_equal(uniform["W2"], rs.rand(4, 2))
    np.testing.assert_array_equal(uniform["b1"], rs.rand(4))
    assert Network(spec.replace(dtype="float32")).init_params()["W1"].dtype == np.float32


@pytest.mark.parametrize("spec, message", [
    (NetworkSpec(2, (Layer(2, "swoosh"),), "mse"), "NetworkSpec.layers[0].activation='swoosh': unknown activation"),
    (NetworkSpec(2, (Layer(2, "tanh"),), "l3"), "NetworkSpec.loss='l3': unknown loss"),
    (NetworkSpec(2, (Layer(1, "identity"),), "softmax_cross_entropy"), "NetworkSpec.layers[-1].width=1: loss"),
    (NetworkSpec(2, (Layer(1, "tanh"),), "bce"), "NetworkSpec.layers[-1].activation='tanh': loss 'bce' reads probability"),
])
def test_invalid_combinations_name_the_field(spec, message):
    with pytest.raises(ValueError) as info:
        Network(spec)
    assert str(info.value).startswith(message)


def test_replacing_a_registry_entry_changes_backward_only():
    """Network(spec, activations=...) is how planted bugs are made without editing files."""
    from reference.activations import ACTIVATIONS, Activation
    tanh = ACTIVATIONS["tanh"]
    wrong = Activation("tanh", "tanh with df = 1 - z (a bug)", tanh._f, lambda z: 1 - z)
    spec = SPECS[1]
    good, bad = Network(spec), Network(spec, activations={"tanh": wrong})
    params = good.init_params()
    X, y = make_batch(spec)
    assert good.loss(params, X, y) == bad.loss(params, X, y)
    result = gradcheck.check(bad, params, X, y)
    assert not result.passed and result.worst_param in ("W1", "b1")
