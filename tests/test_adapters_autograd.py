"""HIPS autograd adapter: primitives with hand-written vjps (``defvjp``) checked through
``value_and_grad``. Verdicts are gradcheck's own computed tolerances (no rtol)."""
from __future__ import annotations

import numpy as np
import pytest

autograd = pytest.importorskip("autograd", reason="autograd is not installed (pip install 'gradcheck[autograd]')")

import autograd.numpy as anp
from autograd.extend import defvjp, primitive

import gradcheck
from gradcheck.adapters import autograd as adapter


def make_primitives(bug=None, leak=0.0):
    """A dense layer and a ReLU as autograd primitives with hand-written vjps; ``bug`` plants one."""
    @primitive
    def dense(W, b, x):
        return x @ W + b

    def vjp_W(ans, W, b, x):
        return lambda g: -(x.T @ g) if bug == "sign" else x.T @ g

    def vjp_b(ans, W, b, x):
        return lambda g: g.mean(0) if bug == "factor" else g.sum(0)

    defvjp(dense, vjp_W, vjp_b, lambda ans, W, b, x: lambda g: g @ W.T)

    @primitive
    def relu(x):
        return np.maximum(x, 0.0)

    defvjp(relu, lambda ans, x: lambda g: np.where(x > 0, g, leak * g))
    return dense, relu


def make_loss(hidden_bug=None, out_bug=None, leak=0.0):
    hidden, relu = make_primitives(hidden_bug, leak)
    out, _ = make_primitives(out_bug)

    def loss(p, X, y):
        h = relu(hidden(p["hidden"]["W"], p["hidden"]["b"], X))
        return anp.mean((out(p["out"]["W"], p["out"]["b"], h) - y) ** 2)

    return loss


@pytest.fixture
def case():
    rng = np.random.default_rng(0)
    params = {"hidden": {"W": rng.standard_normal((3, 5)) / 2, "b": rng.standard_normal(5) * 0.1},
              "out": {"W": rng.standard_normal((5, 2)) / 2, "b": np.zeros(2)}}
    return params, rng.standard_normal((8, 3)), rng.standard_normal((8, 2))


def test_defvjp_model_passes(case):
    params, X, y = case
    fn, flat = adapter.as_fn(make_loss(), params)
    assert list(flat) == ["hidden.W", "hidden.b", "out.W", "out.b"]
    result = gradcheck.check(fn, flat, X, y, loss_fn=fn.loss)
    assert result.passed and result.max_rel_error < 1e-7, str(result)


@pytest.mark.parametrize("bugs, corrupted", [
    ({"out_bug": "sign"}, {"out.W"}),
    ({"hidden_bug": "factor"}, {"hidden.b"}),
    ({"leak": 0.01}, {"hidden.W", "hidden.b"}),
], ids=["wrong-sign", "missing-factor", "leaking-relu-slope"])
def test_planted_vjp_bugs_name_the_parameter(case, bugs, corrupted):
    params, X, y = case
    fn, flat = adapter.as_fn(make_loss(**bugs), params)
    result = gradcheck.check(fn, flat, X, y, loss_fn=fn.loss)
    assert not result.passed and result.worst_param in corrupted, str(result)
    assert {k for k, t in result.tensors.items() if not t.passed} == corrupted, str(result)


def test_analytic_loss_gets_the_complex_step(case):
    """fn.loss runs the user's function on plain numpy, so an analytic loss (tanh, no max) is
    differentiated by the complex step and correct vjps agree to ~1e-15."""
    params, X, y = case

    def loss(p, X, y):
        return anp.sum(anp.tanh(X @ p["hidden"]["W"] + p["hidden"]["b"]) ** 2)

    fn, flat = adapter.as_fn(loss, {"hidden": params["hidden"]})
    result = gradcheck.check(fn, flat, X, y, loss_fn=fn.loss)
    assert result.passed and result.scheme == "complex" and result.max_rel_error < 1e-12, str(result)


def test_inputs_untouched_lists_and_errors(case):
    params, X, y = case
    before = {k: {j: a.copy() for j, a in v.items()} for k, v in params.items()}
    fn, flat = adapter.as_fn(lambda p, X, y: anp.sum((X @ p[0] + p[1]) ** 2), [params["hidden"]["W"], params["hidden"]["b"]])
    assert list(flat) == ["0", "1"]
    assert gradcheck.check(fn, flat, X, y, loss_fn=fn.loss).passed
    assert all(np.array_equal(before[k][j], params[k][j]) for k in params for j in params[k])
    vector = adapter.as_fn(lambda p, X, y: (X @ p["W"]).sum(1), {"W": params["hidden"]["W"]})
    result = gradcheck.check(*vector, X, y)
    assert not result.passed and result.problems[0].kind == "non_scalar_loss", str(result)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        adapter.as_fn("loss", params)
    with pytest.raises(ValueError, match="same name 'a.b'"):
        adapter.as_fn(lambda p, X, y: 0.0, {"a.b": np.zeros(1), "a": {"b": np.zeros(1)}})
