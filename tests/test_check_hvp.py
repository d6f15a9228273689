"""check_hvp and ``gradcheck sweep --order 2``: second-order checks of the reference's exact
Hessian-vector products (Pearlmutter's R-operator) against differences of the (checked) gradient
and SymPy's exact second derivatives; planted wrong second derivatives are caught and named.

The verdicts use the checker's own per-element tolerances; the SymPy comparison is normwise per
tensor against 1e3 float64 ulps (exact arithmetic against a few hundred roundings of the network's
products; a wrong second derivative is off by O(1)).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import gradcheck
from gradcheck.spec import Layer, NetworkSpec
from gradcheck.sweep import SweepConfig, run_sweep, summarize
from reference.activations import ACTIVATIONS, get_activation
from reference.losses import LOSSES
from reference.network import Network


def case(spec: NetworkSpec, batch: int = 3, seed: int = 0):
    net = Network(spec)
    params = net.init_params()
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, spec.input_dim)).astype(spec.dtype)
    if spec.loss in ("softmax_cross_entropy",):
        y = rng.integers(0, spec.output_dim, size=batch)
    elif spec.loss in ("bce", "categorical_cross_entropy", "kl_div"):
        y = rng.dirichlet(np.ones(spec.output_dim), size=batch) if spec.loss != "bce" else \
            rng.uniform(0.1, 0.9, size=(batch, spec.output_dim))
    elif spec.loss in ("hinge", "squared_hinge"):
        y = rng.choice([-1.0, 1.0], size=(batch, spec.output_dim))
    elif spec.loss == "poisson_nll":
        y = rng.poisson(2.0, size=(batch, spec.output_dim)).astype(float)
    else:
        y = rng.standard_normal((batch, spec.output_dim))
    return net, params, X, y


def flipped(name: str):
    """The activation ``name`` with its second derivative's sign flipped (first order intact)."""
    act = get_activation(name)
    return dataclasses.replace(act, _d2f=lambda z, **p: -act.d2f(z))


TANH = NetworkSpec(input_dim=3, layers=(Layer(4, "tanh"), Layer(2, "identity")), loss="mse", seed=1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_reference_hvp_passes_with_both_oracles(dtype):
    spec = dataclasses.replace(TANH, dtype=dtype)
    net, params, X, y = case(spec)
    r = gradcheck.check_hvp(net, net.hvp, params, X, y, spec=spec if dtype == "float64" else None)
    assert r.passed, str(r)
    assert r.operator["kind"] == "hvp" and r.operator["mode"] == "jacobian"   # P = 26: the full Hessian
    assert "hvp_vs_numerical" in r.oracles
    if dtype == "float64":
        assert r.oracles["hvp_vs_symbolic"] < 1e-12
    assert "full Hessian" in str(r)


def test_wrong_second_derivative_is_caught_and_localized():
    net, params, X, y = case(TANH)
    bad = Network(TANH, activations={"tanh": flipped("tanh")})
    r = gradcheck.check_hvp(net, bad.hvp, params, X, y, spec=TANH)
    assert not r.passed
    # the hidden layer's curvature is wrong: blocks into W1/b1; the identity output layer's
    # own block d grad_W2 / d W2 has no curvature from tanh and stays right
    assert r.worst.output in ("grad_W1", "grad_b1") and r.worst.input in ("W1", "b1")
    assert r.tensors["dgrad_W2/dW2"].passed
    assert r.oracles["hvp_vs_symbolic"] > 1e-3
    assert any(p.kind == "symbolic_disagrees" for p in r.problems)


def test_first_order_failure_stops_before_second_order():
    net, params, X, y = case(TANH)

    def wrong_first(p, X, y):
        loss, grads = net(p, X, y)
        return loss, {**grads, "b2": -grads["b2"]}
    r = gradcheck.check_hvp(wrong_first, net.hvp, params, X, y)
    assert not r.passed and r.problems[-1].kind == "first_order_failed"
    assert r.worst.param == "b2"


def test_hvp_faults_are_failures_with_a_message():
    net, params, X, y = case(TANH)
    r = gradcheck.check_hvp(net, lambda p, X, y, v: {"W1": np.zeros(3)}, params, X, y, mode="random")
    assert not r.passed and "lacks" in str(r)
    with pytest.raises(TypeError, match="hvp must be callable"):
        gradcheck.check_hvp(net, None, params, X, y)


def smallest(activation: str, loss: str) -> NetworkSpec | None:
    """The one-hidden-unit network of a registry pair (None if the pair is not buildable)."""
    out_act = {"bce": "sigmoid", "categorical_cross_entropy": "softmax", "kl_div": "softmax"}.get(loss, "identity")
    width = 2 if out_act == "softmax" or loss == "softmax_cross_entropy" else 1
    spec = NetworkSpec(input_dim=2, layers=(Layer(2, activation), Layer(width, out_act)), loss=loss, seed=3)
    try:
        Network(spec)
    except ValueError:
        return None
    return spec


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_activation_and_loss_has_second_order_agreeing_with_sympy(loss):
    """Every activation x loss of the registries: check_hvp with the SymPy oracle on a small network."""
    for activation in sorted(ACTIVATIONS):
        spec = smallest(activation, loss)
        if spec is None:
            continue
        net, params, X, y = case(spec, batch=2, seed=5)
        r = gradcheck.check_hvp(net, net.hvp, params, X, y, spec=spec)
        assert r.passed, f"{activation} x {loss}: {r}"
        assert r.symbolic_status == "ok", f"{activation} x {loss}: {r.symbolic_status}"


def test_order_2_sweep_names_a_planted_wrong_second_derivative():
    cfg = SweepConfig(activations=("tanh", "sigmoid"), losses=("mse",), dtypes=("float64",), examples=1,
                      layers=("dense",), out=None, order=2, quiet=True)
    good = run_sweep(cfg, progress=False)
    assert good.passed
    assert all("hvp_vs_numerical" in r.oracles for r in good.results)
    bad = run_sweep(cfg, overrides={"tanh": flipped("tanh")}, progress=False)
    assert not bad.passed
    failed = {r.name.split(" x ")[0] for r in bad.failed}
    assert failed == {"tanh"}
    assert all(any(p.kind == "second_order" for p in r.problems) for r in bad.failed)
    text = summarize(bad, cfg)
    assert "failing activations: tanh" in text and "hvp vs numerical" in text
