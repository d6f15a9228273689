"""JAX adapter: ``custom_vjp`` rules checked through ``value_and_grad``, pytrees as dotted names.

Verdicts are gradcheck's own computed tolerances (no rtol); the adapter enables x64 (global to
this test process, as documented) so the checks run in float64.
"""
from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="jax is not installed (pip install 'gradcheck[jax]')")
jnp = pytest.importorskip("jax.numpy")

import gradcheck
from gradcheck.adapters import jax as adapter


def make_relu(leak: float):
    """ReLU whose custom backward lets ``leak`` of the gradient through where x < 0 (should be 0)."""
    @jax.custom_vjp
    def relu(x):
        return jnp.maximum(x, 0.0)

    def fwd(x):
        return relu(x), x

    def bwd(x, g):
        return (jnp.where(x > 0, g, leak * g),)

    relu.defvjp(fwd, bwd)
    return relu


def make_dense(bug: str | None):
    """x @ W + b with a hand-written vjp; ``bug`` plants one mistake."""
    @jax.custom_vjp
    def dense(W, b, x):
        return x @ W + b

    def fwd(W, b, x):
        return dense(W, b, x), (W, x)

    def bwd(res, g):
        W, x = res
        gW, gb = x.T @ g, g.sum(0)
        if bug == "sign":
            gW = -gW
        if bug == "factor":
            gb = g.mean(0)  # the batch-size factor is missing
        return gW, gb, g @ W.T

    dense.defvjp(fwd, bwd)
    return dense


def make_loss(hidden_bug=None, out_bug=None, leak=0.0):
    hidden, out, relu = make_dense(hidden_bug), make_dense(out_bug), make_relu(leak)

    def loss(p, X, y):
        h = relu(hidden(p["hidden"]["W"], p["hidden"]["b"], X))
        pred = out(p["out"][0], p["out"][1], h)
        return jnp.mean((pred - y) ** 2)

    return loss


@pytest.fixture
def case():
    rng = np.random.default_rng(0)
    params = {"hidden": {"W": rng.standard_normal((3, 5)) / 2, "b": rng.standard_normal(5) * 0.1},
              "out": [rng.standard_normal((5, 2)) / 2, np.zeros(2)]}
    return params, rng.standard_normal((8, 3)), rng.standard_normal((8, 2))


def test_custom_vjp_model_passes_in_float64(case):
    params, X, y = case
    fn, flat = adapter.as_fn(make_loss(), params)
    assert list(flat) == ["hidden.W", "hidden.b", "out.0", "out.1"]
    assert jax.config.jax_enable_x64 and all(v.dtype == np.float64 for v in flat.values())
    result = gradcheck.check(fn, flat, X, y, loss_fn=fn.loss)
    assert result.passed and result.max_rel_error < 1e-7 and result.dtype == "float64", str(result)


@pytest.mark.parametrize("bugs, corrupted", [
    ({"out_bug": "sign"}, {"out.0"}),
    ({"hidden_bug": "factor"}, {"hidden.b"}),
    ({"leak": 0.01}, {"hidden.W", "hidden.b"}),
], ids=["wrong-sign", "missing-factor", "leaking-relu-slope"])
def test_planted_vjp_bugs_name_the_parameter(case, bugs, corrupted):
    params, X, y = case
    fn, flat = adapter.as_fn(make_loss(**bugs), params)
    result = gradcheck.check(fn, flat, X, y, loss_fn=fn.loss)
    assert not result.passed and result.worst_param in corrupted, str(result)
    assert {k for k, t in result.tensors.items() if not t.passed} == corrupted, str(result)


def test_jax_own_checker_raises_on_custom_vjp_where_the_adapter_works(case):
    """What the adapter adds: check_grads' default modes include forward mode, unavailable here."""
    from jax.test_util import check_grads

    params, X, y = case
    loss = make_loss()
    with pytest.raises(TypeError):
        check_grads(lambda p: loss(p, X, y), (jax.tree_util.tree_map(jnp.asarray, params),), order=1)


def test_eager_fallback_for_python_control_flow(case):
    params, X, y = case

    def loss(p, X, y):
        out = X @ p["hidden"]["W"]
        if jnp.sum(out) > 1e9:  # Python control flow on a value: not jit-traceable
            out = out * 0
        return jnp.sum(out ** 2)

    fn, flat = adapter.as_fn(loss, {"hidden": {"W": params["hidden"]["W"]}})
    result = gradcheck.check(fn, flat, X, y, loss_fn=fn.loss)
    assert result.passed, str(result)


def test_float32_leaves_keep_their_dtype(case):
    params, X, y = case
    p32 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), params)
    fn, flat = adapter.as_fn(make_loss(), p32, dtype=None)
    assert all(v.dtype == np.float32 for v in flat.values())
    result = gradcheck.check(fn, flat, X.astype(np.float32), y.astype(np.float32), loss_fn=fn.loss)
    assert result.passed and result.dtype == "float32", str(result)


def test_an_all_float64_call_of_a_float32_check_computes_in_float64(case):
    """The checker's float64 second opinion: with x64 on (this process has it, as any float64 JAX
    check turns it on), a call whose parameters are all float64 runs loss and gradient in float64;
    any other call keeps the check's float32."""
    adapter.enable_x64()
    params, X, y = case
    p32 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), params)
    fn, flat = adapter.as_fn(make_loss(), p32, dtype=None)
    X32, y32 = X.astype(np.float32), y.astype(np.float32)  # a float32 check's data, for both calls
    loss, grads = fn({k: v.astype(np.float64) for k, v in flat.items()}, X32, y32)
    assert np.asarray(loss).dtype == np.float64 and all(g.dtype == np.float64 for g in grads.values())
    narrow_loss, narrow = fn(flat, X32, y32)
    assert np.asarray(narrow_loss).dtype == np.float32 and all(g.dtype == np.float32 for g in narrow.values())
    assert fn.loss(flat, X32, y32).dtype == np.float32
    for k in narrow:  # the same function, computed more precisely
        np.testing.assert_allclose(grads[k], narrow[k], rtol=1e-3, atol=1e-5)


def test_caller_pytree_untouched_and_per_sample_loss_reported(case):
    params, X, y = case
    before = jax.tree_util.tree_map(np.copy, params)
    fn, flat = adapter.as_fn(lambda p, X, y: (X @ p["hidden"]["W"]).sum(1), {"hidden": {"W": params["hidden"]["W"]}})
    result = gradcheck.check(fn, flat, X, y)
    assert not result.passed and result.problems[0].kind == "non_scalar_loss", str(result)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(before)))


def test_argument_errors():
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        adapter.as_fn(None, {"W": np.zeros(2)})
    with pytest.raises(ValueError, match="no array leaves"):
        adapter.as_fn(lambda p, X, y: 0.0, {})
    with pytest.raises(ValueError, match="dtype='float8'"):
        adapter.as_fn(lambda p, X, y: 0.0, {"W": np.zeros(2)}, dtype="float8")
