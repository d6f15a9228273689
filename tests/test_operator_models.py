"""Self-consistency of gradcheck/teach/operators.py, without gradcheck: every operator's VJP and JVP
against plain central differences, the adjoint identity between them, dtype preservation, no
mutation of arguments; every planted bug visible on exactly the inputs it names.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from gradcheck.teach.operators import BUGS, MAXPOOL_GAP, OPERATORS, _windows

SEEDS = (0, 1, 2)
H = 1e-6
# Central differences at h = 1e-6 in float64: truncation ~ h^2 |f'''| ~ 1e-12, rounding
# ~ eps |f| / h ~ 1e-10 for O(1) outputs and cotangents. So 1e-6 relative leaves a wide margin
# while any real bug (>= 1e-3 relative) fails by orders of magnitude. Relative error has no scale
# for components whose gradient is ~0 (an unused embedding row, a non-maximal pooled element,
# a dead relu), hence the floor: below |g| = 0.1 the test is absolute, 1e-7.
RTOL, FLOOR = 1e-6, 0.1


def floating(inputs):
    return [k for k, v in inputs.items() if np.issubdtype(v.dtype, np.floating)]


def leaves(out):
    """The arrays of an output structure, in a fixed order."""
    if isinstance(out, np.ndarray):
        return [out]
    if isinstance(out, tuple):
        return list(out)
    assert isinstance(out, dict), type(out)
    return [out[k] for k in sorted(out)]


def flat(out):
    return np.concatenate([a.ravel() for a in leaves(out)])


def random_like(out, rng):
    if isinstance(out, np.ndarray):
        return rng.standard_normal(out.shape).astype(out.dtype)
    if isinstance(out, tuple):
        return tuple(random_like(a, rng) for a in out)
    return {k: random_like(v, rng) for k, v in out.items()}


def same_structure(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(same_structure(x, y) for x, y in zip(a, b))
    return isinstance(b, dict) and a.keys() == b.keys() and all(same_structure(a[k], b[k]) for k in a)


def shifted(inputs, direction, step):
    return {k: v + step * direction[k] if k in direction else v for k, v in inputs.items()}


def numerical_vjp(f, inputs, cot):
    c = flat(cot)
    grads = {}
    for k in floating(inputs):
        g = np.zeros_like(inputs[k])
        for i in range(g.size):
            e = np.zeros_like(g)
            e.flat[i] = 1
            g.flat[i] = c @ (flat(f(shifted(inputs, {k: e}, H))) - flat(f(shifted(inputs, {k: e}, -H)))) / (2 * H)
        grads[k] = g
    return grads


def assert_close(got, want, what):
    err = np.abs(got - want) / np.maximum(np.abs(want), FLOOR)
    assert err.max() <= RTOL, f"{what}: worst error {err.max():.2e} (tolerance {RTOL:g})"


def case(name, seed, dtype=np.float64):
    op = OPERATORS[name]
    rng = np.random.default_rng(seed)
    inputs = op.make_inputs(rng, dtype)
    cot = random_like(op.f(inputs), rng)
    tan = {k: rng.standard_normal(inputs[k].shape).astype(dtype) for k in floating(inputs)}
    return op, inputs, cot, tan


def test_catalog():
    assert set(OPERATORS) >= {"linear", "softmax", "conv2d", "conv2d_overlap", "maxpool2d", "avgpool2d", "batchnorm",
                              "layernorm", "attention", "attention_causal", "embedding", "lstm_step", "rnn",
                              "relu_layer", "tanh_layer_grad"}
    for name, op in OPERATORS.items():
        assert op.name == name and op.description
        inputs = op.make_inputs(np.random.default_rng(0))
        out = op.f(inputs)
        assert sum(v.size for v in inputs.values()) <= 150, name
        assert flat(out).size <= 100, name
    for name, bug in BUGS.items():
        assert bug.name == name and bug.operator in OPERATORS and bug.wrong_inputs and bug.description
        assert set(bug.wrong_inputs) <= set(floating(OPERATORS[bug.operator].make_inputs(np.random.default_rng(0))))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_operator(name, seed):
    op, inputs, cot, tan = case(name, seed)
    saved = copy.deepcopy((inputs, cot, tan))

    out = op.f(inputs)
    vjp = op.vjp(inputs, cot)
    jvp = op.jvp(inputs, tan)
    # nothing mutated: inputs, cotangents, tangents
    for before, after in zip(saved, (inputs, cot, tan)):
        for a, b in zip(leaves(before), leaves(after)):
            np.testing.assert_array_equal(a, b)
    # results are fresh arrays, never views of the arguments
    args = list(inputs.values()) + leaves(cot) + list(tan.values())
    for result in leaves(out) + list(vjp.values()) + leaves(jvp):
        assert not any(np.shares_memory(result, a) for a in args), name
    assert set(vjp) == set(floating(inputs))
    assert all(vjp[k].shape == inputs[k].shape for k in vjp)
    assert same_structure(out, jvp)

    want = numerical_vjp(op.f, inputs, cot)
    for k in want:
        assert_close(vjp[k], want[k], f"{name} vjp[{k}]")

    fd = (flat(op.f(shifted(inputs, tan, H))) - flat(op.f(shifted(inputs, tan, -H)))) / (2 * H)
    assert_close(flat(jvp), fd, f"{name} jvp")

    # adjoint identity: <cotangent, J t> == <J^T cotangent, t>
    lhs = flat(cot) @ flat(jvp)
    rhs = sum(np.sum(vjp[k] * tan[k]) for k in vjp)
    scale = np.abs(flat(cot) * flat(jvp)).sum()
    assert abs(lhs - rhs) <= 1e-10 * scale, (lhs, rhs)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_float32_in_float32_out(name):
    op, inputs, cot, tan = case(name, 0, np.float32)
    out = op.f(inputs)
    assert all(a.dtype == np.float32 for a in leaves(out))
    assert all(a.dtype == np.float32 for a in leaves(op.jvp(inputs, tan)))
    assert all(g.dtype == np.float32 for g in op.vjp(inputs, cot).values())
    op64, inputs64, _, _ = case(name, 0)
    np.testing.assert_allclose(flat(out), flat(op64.f(inputs64)), rtol=1e-4, atol=1e-5)


def test_inputs_away_from_kinks():
    """No maxpool ties (each window's maximum clear by MAXPOOL_GAP); no relu pre-activation at 0."""
    for seed in SEEDS:
        x = OPERATORS["maxpool2d"].make_inputs(np.random.default_rng(seed))["x"]
        top2 = np.sort(_windows(x), axis=-1)[..., -2:]
        assert (top2[..., 1] - top2[..., 0]).min() >= MAXPOOL_GAP * (1 - 1e-9)
        inp = OPERATORS["relu_layer"].make_inputs(np.random.default_rng(seed))
        z = inp["x"] @ inp["W"] + inp["b"]
        assert np.abs(z).min() > 1e-4 and (z < 0).any() and (z > 0).any()
    idx = OPERATORS["embedding"].make_inputs(np.random.default_rng(0))["idx"]
    assert np.issubdtype(idx.dtype, np.integer) and np.unique(idx).size < idx.size


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bug_name", sorted(BUGS))
def test_bug_visible_on_exactly_its_inputs(bug_name, seed):
    bug = BUGS[bug_name]
    op, inputs, cot, _ = case(bug.operator, seed)
    saved = copy.deepcopy((inputs, cot))
    good, bad = op.vjp(inputs, cot), bug.vjp(inputs, cot)
    for before, after in zip(saved, (inputs, cot)):
        for a, b in zip(leaves(before), leaves(after)):
            np.testing.assert_array_equal(a, b)
    assert set(bad) == set(good)
    for k in good:
        rel = np.linalg.norm(bad[k] - good[k]) / np.linalg.norm(good[k])
        if k in bug.wrong_inputs:
            assert rel > 1e-3, f"{bug_name}: {k} off by only {rel:.1e}"
        else:
            assert rel <= 1e-12, f"{bug_name}: {k} off by {rel:.1e} but not listed"


@pytest.mark.parametrize("seed", SEEDS)
def test_tanh_layer_grad_is_a_first_order_vjp_and_its_bug_is_a_detach(seed):
    """tanh_layer_grad's f is the VJP of g(x, W) = tanh(x @ W) under the cotangent v (compared with
    central differences of <v, g>), so its vjp is double backward. Its planted bug is exactly the
    double backward of the first backward with h = tanh(x @ W) detached: the VJP (computed here by
    central differences) of the same formula with 1 - h**2 frozen at the current point."""
    op, inputs, cot, _ = case("tanh_layer_grad", seed)
    x, W, v = inputs["x"], inputs["W"], inputs["v"]
    first = numerical_vjp(lambda p: np.tanh(p["x"] @ p["W"]), {"x": x, "W": W}, v)
    got = op.f(inputs)
    assert_close(got["gx"], first["x"], "tanh_layer_grad f: gx")
    assert_close(got["gW"], first["W"], "tanh_layer_grad f: gW")

    s_frozen = 1 - np.tanh(x @ W) ** 2

    def detached(p):
        u = p["v"] * s_frozen
        return {"gx": u @ p["W"].T, "gW": p["x"].T @ u}
    want = numerical_vjp(detached, inputs, cot)
    bad = BUGS["tanh_layer_grad_detached"].vjp(inputs, cot)
    for k in want:
        assert_close(bad[k], want[k], f"tanh_layer_grad_detached vjp[{k}]")
