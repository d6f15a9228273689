"""The structure-aware oracle (gradcheck.structured): its batched finite differences must equal
black-box central differences of the same loss within their error bounds, its loss values must
reproduce the reference network for every registry entry, and a spec that does not describe fn
must fail the check instead of producing gradients of some other function."""
from __future__ import annotations

import numpy as np
import pytest

import gradcheck
from gradcheck import numerical, structured
from gradcheck.compare import SAFETY
from gradcheck.spec import Layer, NetworkSpec
from reference.activations import ACTIVATIONS
from reference.losses import LOSSES
from reference.network import Network
from tests.checker_models import functional_batch, functional_mlp, functional_params


def targets(loss: str, batch: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A valid y for ``loss`` (its registry entry says which targets it reads)."""
    kind = LOSSES[loss].target
    if kind == "class":
        return rng.integers(0, k, batch)
    if kind == "binary":
        return rng.integers(0, 2, (batch, k)).astype(float)
    if kind == "probability":
        return rng.uniform(0.05, 0.95, (batch, k))
    if kind == "sign":
        return rng.choice([-1.0, 1.0], (batch, k))
    if kind == "count":
        return rng.poisson(2.0, (batch, k)).astype(float)
    if kind == "distribution":
        return rng.dirichlet(np.ones(k), batch)
    return rng.standard_normal((batch, k))


def case(spec: NetworkSpec, seed: int = 0):
    net = Network(spec)
    rng = np.random.default_rng(seed + 100)
    X = rng.standard_normal((spec.batch, spec.input_dim)).astype(spec.dtype)
    y = targets(spec.loss, spec.batch, spec.output_dim, rng)
    if y.dtype.kind == "f":
        y = y.astype(spec.dtype)
    return net, net.init_params(), X, y


def last_activation(loss: str) -> str:
    return {"probability": "sigmoid", "distribution": "softmax"}.get(LOSSES[loss].output, "identity")


SPECS = [
    NetworkSpec(3, (Layer(4, "tanh"), Layer(2, "identity")), "mse", batch=5),
    NetworkSpec(3, (Layer(4, "sigmoid"), Layer(4, "softplus", bias=False), Layer(3, "identity")),
                "softmax_cross_entropy", batch=6),
    NetworkSpec(4, (Layer(4, "gelu"), Layer(4, "silu"), Layer(4, "tanh"), Layer(2, "sigmoid")), "bce",
                batch=3, skips=((0, 2), (1, 3))),
    NetworkSpec(3, (Layer(5, "elu"), Layer(3, "softmax")), "categorical_cross_entropy", batch=4),
    NetworkSpec(3, (Layer(5, "tanh"), Layer(5, "softmax"), Layer(2, "identity", bias=False)), "huber", batch=4),
    NetworkSpec(3, (Layer(5, "mish", bias=False), Layer(5, "sin"), Layer(5, "identity")), "mse", batch=4,
                dtype="float32", skips=((1, 3),)),
    NetworkSpec(2, (Layer(6, "gelu_tanh"), Layer(3, "softsign")), "kl_div", batch=5, dtype="float32"),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.label())
@pytest.mark.parametrize("scheme", ["central", "central4"])
def test_structured_gradient_equals_black_box_differences(spec, scheme):
    """Same steps and formulas, computed two ways: the estimates may differ only by rounding, so
    |structured - black box| must stay within SAFETY x (sum of both error bounds), the tolerance a
    verdict uses, plus a few ulps of the tensor's scale."""
    net, params, X, y = case(spec)
    black_box = numerical.estimate(lambda w: net.loss(w, X, y), params, scheme=scheme)
    fast = structured.gradient(spec, params, X, y, scheme=scheme)
    eps = np.finfo(spec.dtype).eps
    for k in params:
        a, b = fast.grad[k].astype(np.float64), black_box.grad[k].astype(np.float64)
        bound = SAFETY * (fast.error[k] + black_box.error[k]) + 16 * eps * np.max(np.abs(b))
        assert np.all(np.abs(a - b) <= bound), (k, np.max(np.abs(a - b) / bound))
        assert np.array_equal(fast.step[k], black_box.step[k])


def test_chunking_does_not_change_the_values():
    """A 1 KiB budget forces one perturbation per chunk; the values must be identical."""
    spec = SPECS[2]
    net, params, X, y = case(spec)
    big = structured.gradient(spec, params, X, y)
    small = structured.gradient(spec, params, X, y, max_bytes=1024)
    for k in params:
        np.testing.assert_array_equal(big.grad[k], small.grad[k])


@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if a != "softmax"])
def test_every_activation_value_matches_the_reference(activation):
    spec = NetworkSpec(3, (Layer(4, activation), Layer(3, activation), Layer(2, "identity")), "mse", batch=4)
    net, params, X, y = case(spec)
    oracle = structured.oracle_loss(spec, params, X, y, expected=net.loss(params, X, y))  # raises if not
    assert abs(oracle.offset) <= 1e-12 * max(1.0, abs(net.loss(params, X, y)))


@pytest.mark.parametrize("loss", list(LOSSES))
def test_every_loss_value_matches_the_reference(loss):
    spec = NetworkSpec(3, (Layer(4, "tanh"), Layer(3, last_activation(loss))), loss, batch=5)
    net, params, X, y = case(spec)
    oracle = structured.oracle_loss(spec, params, X, y, expected=net.loss(params, X, y))
    assert abs(oracle.offset) <= 1e-12 * max(1.0, abs(net.loss(params, X, y)))


def test_check_with_structured_oracle_passes_user_code_it_describes():
    """Hand-written code (not the reference) described by a spec: tanh, sigmoid, identity, MSE."""
    spec = NetworkSpec(4, (Layer(3, "tanh"), Layer(3, "sigmoid"), Layer(2, "identity")), "mse", batch=5)
    params = functional_params()
    X, y = functional_batch()
    result = gradcheck.check(functional_mlp(), params, X, y, spec=spec, oracle="structured", symbolic=False)
    assert result.passed, str(result)
    assert result.scheme == "central"


@pytest.mark.parametrize("bug", ["missing_mean", "sigmoid_of_pre", "bias_one_sample"])
def test_check_with_structured_oracle_catches_planted_bugs_like_black_box(bug):
    spec = NetworkSpec(4, (Layer(3, "tanh"), Layer(3, "sigmoid"), Layer(2, "identity")), "mse", batch=5)
    params = functional_params()
    X, y = functional_batch()
    fast = gradcheck.check(functional_mlp(bug), params, X, y, spec=spec, oracle="structured", symbolic=False)
    slow = gradcheck.check(functional_mlp(bug), params, X, y, symbolic=False, scheme="central")
    assert not fast.passed and not slow.passed
    assert fast.worst_param == slow.worst_param


def test_single_wrong_element_found_by_structured_oracle():
    """One element of W2 off by 1e-4 relative (float64): found, with its index."""
    spec = NetworkSpec(5, (Layer(8, "tanh"), Layer(8, "tanh"), Layer(3, "identity")), "mse", batch=8)
    net, params, X, y = case(spec)

    def fn(p, X, y):
        loss, g = net(p, X, y)
        g = dict(g)
        g["W2"] = g["W2"].copy()
        g["W2"][3, 5] *= 1 + 1e-4
        return loss, g

    result = gradcheck.check(fn, params, X, y, spec=spec, oracle="structured", symbolic=False)
    assert not result.passed
    assert result.worst_param == "W2" and result.worst.index == [3, 5]


def test_spec_that_does_not_describe_fn_fails_with_a_clear_problem():
    """fn is a tanh network; the spec says sigmoid: its gradients would be of another function."""
    spec = NetworkSpec(3, (Layer(4, "tanh"), Layer(2, "identity")), "mse", batch=5)
    net, params, X, y = case(spec)
    wrong = spec.replace(layers=[{"width": 4, "activation": "sigmoid", "bias": True},
                                 {"width": 2, "activation": "identity", "bias": True}])
    result = gradcheck.check(net, params, X, y, spec=wrong, oracle="structured", symbolic=False)
    assert not result.passed
    assert [p.kind for p in result.problems] == ["spec_mismatch"]
    assert "spec does not describe fn" in str(result)


def test_structured_oracle_misuse_raises():
    spec = SPECS[0]
    net, params, X, y = case(spec)
    with pytest.raises(ValueError, match="needs spec"):
        gradcheck.check(net, params, X, y, oracle="structured")
    with pytest.raises(ValueError, match="oracle="):
        gradcheck.check(net, params, X, y, spec=spec, oracle="symbolic-ish")
    with pytest.raises(ValueError, match="complex"):
        gradcheck.check(net, params, X, y, spec=spec, oracle="structured", scheme="complex")
    with pytest.raises(ValueError, match="does not fit params"):
        gradcheck.check(net, {"W1": params["W1"]}, X, y, spec=spec, oracle="structured")
    with pytest.raises(TypeError, match="NetworkSpec"):
        gradcheck.check(net, params, X, y, spec=spec.to_dict(), oracle="structured")


def test_structured_oracle_serves_fast_mode_too():
    """mode="fast" with oracle="structured": the directions are evaluated by the spec's network."""
    spec = NetworkSpec(5, (Layer(8, "tanh"), Layer(8, "tanh"), Layer(3, "identity")), "mse", batch=8)
    net, params, X, y = case(spec)
    assert gradcheck.check(net, params, X, y, spec=spec, oracle="structured", mode="fast", symbolic=False).passed


# -- where the values come from: the registry (activations), batched loss forms equal to it --------
def test_activation_values_are_the_registrys():
    """One place to add an activation: the structured oracle evaluates the registry's own ``f``."""
    spec = SPECS[2]
    oracle = structured.StructuredLoss(spec, np.zeros((1, spec.input_dim)), np.zeros((1, spec.output_dim)))
    assert [f.__self__ for f in oracle.acts] == [ACTIVATIONS[layer.activation] for layer in spec.layers]
    with pytest.raises(ValueError, match="registry's activations"):
        structured.StructuredLoss(SPECS[0].replace(layers=[Layer(4, "nope"), Layer(2, "identity")]),
                                  np.zeros((1, 3)), np.zeros((1, 2)))


@pytest.mark.parametrize("loss", list(LOSSES))
def test_batched_loss_form_equals_the_registry_value_per_pass(loss):
    """BATCHED_LOSS_VALUES evaluates stacked passes (R, batch, k) at once: each value must be the
    registry's Loss.value of that pass, to a few ulps (same formula, summation order aside)."""
    rng = np.random.default_rng(7)
    k = max(2, LOSSES[loss].min_outputs)
    out = rng.standard_normal((6, 5, k))
    if LOSSES[loss].output == "probability":
        out = rng.uniform(0.01, 0.99, out.shape)
    elif LOSSES[loss].output == "distribution":
        out = rng.dirichlet(np.ones(k), (6, 5))
    y = targets(loss, 5, k, rng)
    batched = structured.loss_value_function(loss)(out, y)
    per_pass = np.array([LOSSES[loss].value(o, y) for o in out])
    assert batched.shape == (6,)
    np.testing.assert_allclose(batched, per_pass, rtol=64 * np.finfo(float).eps, atol=0)


def test_loss_without_a_batched_form_falls_back_to_the_registry(monkeypatch):
    """A new registry loss works before anyone writes its batched form: same estimate, slower."""
    spec = SPECS[0]
    net, params, X, y = case(spec)
    fast = structured.gradient(spec, params, X, y)
    monkeypatch.delitem(structured.BATCHED_LOSS_VALUES, spec.loss)
    slow = structured.gradient(spec, params, X, y)
    for k in params:
        np.testing.assert_allclose(slow.grad[k], fast.grad[k], rtol=1e-6, atol=1e-9)
    assert gradcheck.check(net, params, X, y, spec=spec, oracle="structured", symbolic=False).passed
    with pytest.raises(ValueError, match="registry's losses"):
        structured.loss_value_function("nope")
