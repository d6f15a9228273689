"""gradcheck.adapters.jax.check_vjp / check_jvp: one jax function (``custom_vjp``, ``custom_jvp``,
plain jax) checked as an operator through ``jax.vjp`` / ``jax.jvp``, and with ``order=2`` the
derivative of its VJP (JVP) as well.

Verdicts are gradcheck's own computed tolerances (no rtol). Float64 arrays turn on JAX's x64 mode
for this process, as the adapter documents.
"""
from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="jax is not installed (pip install 'gradcheck[jax]')")
jnp = pytest.importorskip("jax.numpy")

import gradcheck
from gradcheck.adapters.jax import check_jvp, check_vjp

RNG = np.random.default_rng(3)
X = RNG.normal(size=(3, 4))
W = RNG.normal(size=(3, 4))


def make_softplus(bug: str | None = None):
    """softplus(x, beta) = log(1 + e^(beta x)) / beta with a hand-written vjp; ``bug`` plants one mistake."""
    @jax.custom_vjp
    def softplus(x, beta):
        return jnp.logaddexp(beta * x, 0.0) / beta

    def fwd(x, beta):
        return softplus(x, beta), (x, beta)

    def bwd(res, g):
        x, beta = res
        z = jax.lax.stop_gradient(beta * x) if bug == "stop_gradient" else beta * x
        s = jax.nn.sigmoid(z)            # with stop_gradient: right value, but d(grad)/dx is lost
        gx = g * s
        gbeta = jnp.sum(g * (x * s - softplus(x, beta)) / beta)
        if bug == "beta":
            gbeta = -gbeta
        return gx, gbeta

    softplus.defvjp(fwd, bwd)
    return softplus


def make_mul_sin(bug: str | None = None):
    """(x * w, x + sin(w)): two inputs, two outputs, hand-written vjp."""
    @jax.custom_vjp
    def mul_sin(x, w):
        return x * w, x + jnp.sin(w)

    def fwd(x, w):
        return mul_sin(x, w), (x, w)

    def bwd(res, g):
        (x, w), (g_prod, g_sum) = res, g
        gw = g_prod * x + g_sum * jnp.cos(w)
        if bug == "w":
            gw = g_prod * x + g_sum * jnp.sin(w)
        return g_prod * w + g_sum, gw

    mul_sin.defvjp(fwd, bwd)
    return mul_sin


def make_cube(factor: float = 3.0):
    """x^3 with a custom_jvp rule ``factor * x^2 * t`` (3 is right)."""
    @jax.custom_jvp
    def cube(x):
        return x ** 3

    @cube.defjvp
    def cube_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return cube(x), factor * x ** 2 * t

    return cube


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_correct_custom_vjp_passes_in_float64_and_float32(dtype):
    r = check_vjp(make_softplus(), X.astype(dtype), dtype(1.5))
    assert r.passed, str(r)
    assert r.dtype == np.dtype(dtype).name
    assert r.max_rel_error < (1e-7 if dtype == np.float64 else 1e-2)
    assert list(r.operator["inputs"]) == ["x", "beta"]                      # fun's parameter names
    r = check_vjp(make_mul_sin(), X.astype(dtype), W.astype(dtype))
    assert r.passed, str(r)
    assert {"dout0/dx", "dout0/dw", "dout1/dx", "dout1/dw"} <= set(r.tensors)


def test_wrong_bwd_fails_localized_to_the_input():
    r = check_vjp(make_mul_sin("w"), X, W)
    assert not r.passed
    assert r.worst.input == "w" and r.worst.output == "out1"
    assert r.tensors["dout0/dx"].passed and r.tensors["dout0/dw"].passed and r.tensors["dout1/dx"].passed
    r = check_vjp(make_softplus("beta"), X, 1.5 * np.ones(()))
    assert not r.passed and r.worst.input == "beta" and r.tensors["dout/dx"].passed


def test_custom_jvp_rule_checked_by_check_jvp():
    assert check_jvp(make_cube(), X).passed
    r = check_jvp(make_cube(2.0), X)
    assert not r.passed
    w = r.worst
    assert (w.output, w.input, w.param) == ("out", "x", "dout/dx") and w.output_index == w.index[2:]
    assert w.claimed == pytest.approx(2 / 3 * w.numerical, rel=1e-6)


def test_check_jvp_on_a_custom_vjp_function_says_forward_mode_is_unavailable():
    with pytest.raises(ValueError, match=r"softplus has no forward mode: it is \(or calls\) a jax.custom_vjp "
                                         r"function.*check_vjp"):
        check_jvp(make_softplus(), X, np.array(1.5))
    softplus = make_softplus()
    with pytest.raises(ValueError, match="custom_vjp"):     # also when the custom_vjp op is inside
        check_jvp(lambda x: jnp.tanh(softplus(x, 2.0)), X, order=2)


def test_order_2_passes_on_smooth_functions_both_modes():
    r = check_vjp(lambda x, w: jnp.tanh(x @ w.T), X, W, order=2)
    assert r.passed, str(r)
    assert r.name == "<lambda>, first and second order (vjp and vjp of the vjp)"
    assert {"dout/dx", "dgrad_x/dx", "dgrad_x/dw", "dgrad_w/dgrad_out"} <= set(r.tensors)
    r = check_vjp(make_softplus(), X, np.array(1.5), order=2, name="softplus")
    assert r.passed, str(r)
    r = check_jvp(make_cube(), X[:2], order=2)
    assert r.passed, str(r)
    assert {"dout/dx", "dtangent_out/dx", "dtangent_out/dtangent_x"} <= set(r.tensors)


def test_order_2_catches_a_bwd_that_is_not_differentiable_correctly():
    softplus = make_softplus("stop_gradient")
    assert check_vjp(softplus, X, np.array(1.5)).passed            # first order: the values are right
    r = check_vjp(softplus, X, np.array(1.5), order=2)
    assert not r.passed
    assert str(r).splitlines()[0].startswith("gradcheck FAILED softplus, second order (vjp of the vjp): "
                                             "dgrad_x/")
    # beta * x is held constant in bwd: the gradients' derivatives along x and beta lose that path
    assert r.worst.output == "grad_x" and r.worst.input in ("x", "beta")
    assert not r.tensors["dgrad_x/dx"].passed and not r.tensors["dgrad_x/dbeta"].passed
    assert r.tensors["dout/dx"].passed and r.tensors["dgrad_x/dgrad_out"].passed
    diag = r.tensors["dgrad_x/dx"]
    assert np.all(diag.claimed == 0) and np.any(diag.numerical != 0)
    assert r.operator["second_order"]["inputs"] == {"x": [3, 4], "beta": [], "grad_out": [3, 4]}


def test_wrong_jvp_rule_fails_order_2_at_first_order():
    # jax differentiates the (wrong) rule exactly: the jvp of the jvp is right, the first order is not
    r = check_jvp(make_cube(2.0), X[:1], order=2)
    assert not r.passed
    assert str(r).splitlines()[0].startswith("gradcheck FAILED cube, first order (jvp): dout/dx is off")
    assert "note: second order (jvp of the jvp): passed" in str(r)


def test_pytrees_integer_constants_python_numbers_and_tuple_outputs():
    def gather(p, idx, scale):
        return p["W"][idx] * scale + p["b"], idx

    p = {"W": RNG.normal(size=(5, 2)), "b": RNG.normal(size=2)}
    r = check_vjp(gather, p, np.array([0, 2, 2, 4]), 3.0, order=2)   # repeated index: gradients accumulate
    assert r.passed, str(r)
    assert list(r.operator["inputs"]) == ["p.W", "p.b"] and r.operator["constants"] == ["idx"]
    assert r.operator["outputs"] == {"out0": [4, 2], "out1": [4]}
    assert r.tensors["dout0/dp.W"].numerical[1, 0, 2, 0] == pytest.approx(3.0)
    r = check_vjp(gather, p, np.array([0, 2, 2, 4]), 3.0, wrt=["p.b"])
    assert r.passed and list(r.operator["inputs"]) == ["p.b"]


def test_python_control_flow_on_a_constant_falls_back_to_eager_calls():
    def repeated_sin(x, n):
        for _ in range(int(n)):      # a concrete integer argument: jax.jit cannot trace this
            x = jnp.sin(x)
        return x

    r = check_vjp(repeated_sin, X[:1, :3], np.array(2), order=2)
    assert r.passed, str(r)
    assert r.operator["constants"] == ["n"]
    assert check_jvp(repeated_sin, X[:1, :3], np.array(2)).passed


def test_faults_and_misuse():
    r = check_vjp(lambda x: jnp.log(x - 10.0), X, order=2)           # nan output: a failure, not a crash
    assert not r.passed and r.problems and np.isinf(r.max_rel_error)
    assert any(p.kind == "first_order_failed" for p in r.problems)
    with pytest.raises(ValueError, match="order=3"):
        check_vjp(jnp.sin, X, order=3)
    with pytest.raises(ValueError, match="nothing to differentiate"):
        check_vjp(lambda i: i * 2, np.arange(3))
    with pytest.raises(ValueError, match="'z' is not a floating array argument"):
        check_vjp(jnp.sin, X, wrt=["z"])
    seen = []
    gradcheck.checker.observers.append(seen.append)
    try:
        r = check_vjp(make_softplus(), X[:1], np.array(1.5), order=2)
    finally:
        gradcheck.checker.observers.remove(seen.append)
    assert seen == [r]                                                   # one result for both orders
