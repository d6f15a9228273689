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


def _saturated_tanh(p, X, y):
    """tests/test_check_wider.py's saturated tanh 1-1-6-1 (output against its target 1)."""
    a = X
    for i in (1, 2, 3):
        a = anp.tanh(anp.dot(a, p[f"W{i}"]) + p[f"b{i}"])
    return anp.mean((a - y) ** 2)


def test_a_float32_check_gets_the_float64_second_opinion_from_fn_too():
    """Handed all-float64 parameters for a float32 check, the adapter computes the loss AND the
    gradient in float64, so the checker can measure the float32 gradient's own rounding against it.
    Without a ``loss_fn`` the saturated network was a false alarm (W2 off by 251x its tolerance:
    the float64 gradient came back cast to float32); a 5% error in one entry is still caught."""
    from tests.test_check_wider import _saturated_at_target
    _, params, X, y = _saturated_at_target()
    fn, p = adapter.as_fn(_saturated_tanh, params, dtype=None)
    loss, grads = fn({k: v.astype(np.float64) for k, v in p.items()}, X, y)
    assert np.asarray(loss).dtype == np.float64 and all(g.dtype == np.float64 for g in grads.values())
    assert all(g.dtype == np.float32 for g in fn(p, X, y)[1].values())
    result = gradcheck.check(fn, p, X, y)
    assert result.passed, str(result)

    def planted(q, X_, y_):
        value, g = fn(q, X_, y_)
        g = dict(g, W2=g["W2"].copy())
        g["W2"][0, 3] *= 1.05
        return value, g
    bad = gradcheck.check(planted, p, X, y)
    assert not bad.passed and bad.worst.label() == "W2[0, 3]", str(bad)
