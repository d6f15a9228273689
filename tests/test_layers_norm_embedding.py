"""The numpy reference of batchnorm, layernorm and embedding (``reference/layers/norm.py``,
``reference/layers/embedding.py``): forward values and hand-written gradients against torch, float32
behaviour, the backward against finite differences (``gradcheck.check_vjp``), planted backward bugs
caught, inputs left alone, and the embedding's index errors.

Tolerances. Against torch in float64 (rtol 1e-10, atol 1e-12): both sides compute the same
formulas in a different order (torch's fused batch-norm kernel, Welford or one-pass statistics,
its own reduction order), so they differ by rounding only: a few ulps (~1e-16) times the
conditioning of the normalization (1/std of a standard-normal batch, and the cancellation in
``dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)``), far below 1e-10; atol covers the elements
that are nearly zero, where relative agreement means nothing. float32 against float64 (~1e-5
relative to the largest element): float32 rounds at 6e-8 (the inputs themselves are rounded to
float32 first); the reductions over a few dozen elements and the same cancellation amplify that by
one or two orders of magnitude at most, not to 1e-5 (observed: about 1e-7 on these shapes).
"""
from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_vjp
from gradcheck.layerspec import BatchNorm, Embedding, LayerNorm
from reference.layers.base import Context
from reference.layers.embedding import EMBEDDING
from reference.layers.norm import BATCHNORM, LAYERNORM

CTX = Context()
BN_SHAPES = [(5, 3), (4, 3, 6), (3, 2, 4, 5)]     # (B, C), (B, C, L), (B, C, H, W)
LN_SHAPES = [(5, 7), (3, 4, 6)]                   # (B, D), (B, T, D)
F64 = dict(rtol=1e-10, atol=1e-12)


def _params(kind, node, x_shape, dtype=np.float64, seed=0):
    return kind.init(node, x_shape[1:], np.random.default_rng(seed), "normal", np.dtype(dtype))


def _x(shape, dtype=np.float64, seed=1):
    # mean 0.5, std 2: the statistics are neither 0 nor 1, so forgetting either shows
    return (0.5 + 2.0 * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def _torch_grads(torch, out, leaves, dy):
    return torch.autograd.grad(out, leaves, grad_outputs=torch.from_numpy(dy))


# -- parity with torch (float64) ------------------------------------------------------------------
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batchnorm_matches_torch(shape):
    torch = pytest.importorskip("torch")
    node = BatchNorm(eps=1e-3)
    params, x = _params(BATCHNORM, node, shape), _x(shape)
    dy = np.random.default_rng(2).standard_normal(shape)
    y, cache = BATCHNORM.forward(node, params, x, CTX)
    dx, grads = BATCHNORM.backward(node, params, cache, dy)

    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, params["gamma"], params["beta"]))
    ty = torch.nn.functional.batch_norm(tx, None, None, tg, tb, training=True, eps=node.eps)
    tdx, tdg, tdb = _torch_grads(torch, ty, (tx, tg, tb), dy)
    np.testing.assert_allclose(y, ty.detach().numpy(), **F64)
    np.testing.assert_allclose(dx, tdx.numpy(), **F64)
    np.testing.assert_allclose(grads["gamma"], tdg.numpy(), **F64)
    np.testing.assert_allclose(grads["beta"], tdb.numpy(), **F64)
    assert sorted(grads) == ["beta", "gamma"]


@pytest.mark.parametrize("shape", LN_SHAPES, ids=str)
def test_layernorm_matches_torch(shape):
    torch = pytest.importorskip("torch")
    node = LayerNorm(eps=1e-3)
    params, x = _params(LAYERNORM, node, shape), _x(shape)
    dy = np.random.default_rng(2).standard_normal(shape)
    y, cache = LAYERNORM.forward(node, params, x, CTX)
    dx, grads = LAYERNORM.backward(node, params, cache, dy)

    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, params["gamma"], params["beta"]))
    ty = torch.nn.functional.layer_norm(tx, (shape[-1],), tg, tb, eps=node.eps)
    tdx, tdg, tdb = _torch_grads(torch, ty, (tx, tg, tb), dy)
    np.testing.assert_allclose(y, ty.detach().numpy(), **F64)
    np.testing.assert_allclose(dx, tdx.numpy(), **F64)
    np.testing.assert_allclose(grads["gamma"], tdg.numpy(), **F64)
    np.testing.assert_allclose(grads["beta"], tdb.numpy(), **F64)


def test_embedding_matches_torch_with_repeated_indices():
    torch = pytest.importorskip("torch")
    node = Embedding(vocab=6, dim=4)
    E = _params(EMBEDDING, node, (3, 5))["E"]
    idx = np.array([[0, 2, 2, 5, 2], [1, 0, 0, 3, 5], [2, 2, 4, 4, 0]])  # repeats within and across rows
    dy = np.random.default_rng(2).standard_normal(idx.shape + (node.dim,))
    y, cache = EMBEDDING.forward(node, {"E": E}, idx, CTX)
    dx, grads = EMBEDDING.backward(node, {"E": E}, cache, dy)

    tE = torch.tensor(E, requires_grad=True)
    ty = torch.nn.functional.embedding(torch.from_numpy(idx), tE)
    (tdE,) = _torch_grads(torch, ty, (tE,), dy)
    assert y.shape == (3, 5, 4) and dx is None
    np.testing.assert_array_equal(y, ty.detach().numpy())   # a copy of rows: exact
    np.testing.assert_allclose(grads["E"], tdE.numpy(), **F64)
    np.testing.assert_allclose(grads["E"][2], dy[idx == 2].sum(axis=0), **F64)   # five positions add up


# -- float32 ----------------------------------------------------------------------------------------
CASES = [(BATCHNORM, BatchNorm(), s) for s in BN_SHAPES] + [(LAYERNORM, LayerNorm(), s) for s in LN_SHAPES]


def _ids(cases):
    return [f"{kind.name}-{'x'.join(map(str, shape))}" for kind, _, shape in cases]


def _run(kind, node, shape, dtype):
    params, x = _params(kind, node, shape, dtype), _x(shape, dtype)
    dy = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    y, cache = kind.forward(node, params, x, CTX)
    dx, grads = kind.backward(node, params, cache, dy)
    return y, dx, grads


def _close(a32, a64):
    # relative to the array's largest element: an element near zero has no relative accuracy
    np.testing.assert_allclose(a32, a64, rtol=1e-5, atol=1e-5 * np.abs(a64).max())


@pytest.mark.parametrize(("kind", "node", "shape"), CASES, ids=_ids(CASES))
def test_float32_in_float32_out_and_close_to_float64(kind, node, shape):
    y32, dx32, g32 = _run(kind, node, shape, np.float32)
    y64, dx64, g64 = _run(kind, node, shape, np.float64)
    for a in (y32, dx32, *g32.values()):
        assert a.dtype == np.float32
    _close(y32, y64)
    _close(dx32, dx64)
    for name in g64:
        _close(g32[name], g64[name])


def test_embedding_float32():
    node = Embedding(vocab=5, dim=3)
    E = _params(EMBEDDING, node, (2, 4), np.float32)["E"]
    idx = np.array([[0, 1, 1, 4], [4, 4, 2, 0]], dtype=np.int32)
    y, cache = EMBEDDING.forward(node, {"E": E}, idx, CTX)
    _, grads = EMBEDDING.backward(node, {"E": E}, cache, np.ones(y.shape, np.float32))
    assert y.dtype == np.float32 and grads["E"].dtype == np.float32
    np.testing.assert_array_equal(grads["E"][:, 0], [2, 2, 1, 0, 3])   # how often each row was picked


def test_init_shapes_dtypes_and_spread():
    rng = np.random.default_rng(0)
    for kind, node, in_shape in [(BATCHNORM, BatchNorm(), (3, 4, 4)), (LAYERNORM, LayerNorm(), (4, 6))]:
        p = kind.init(node, in_shape, rng, "he", np.dtype(np.float32))
        assert {k: v.shape for k, v in p.items()} == node.param_shapes(in_shape)
        assert all(v.dtype == np.float32 for v in p.values())
        assert not np.all(p["gamma"] == 1) and not np.all(p["beta"] == 0)
        assert np.all(np.abs(p["gamma"] - 1) < 0.6) and np.all(np.abs(p["beta"]) < 0.6)
    big = EMBEDDING.init(Embedding(vocab=200, dim=50), (7,), rng, "normal", np.dtype(np.float64))["E"]
    assert big.shape == (200, 50) and abs(big.std() - 1) < 0.05   # N(0, 1) as torch.nn.Embedding


# -- finite differences ---------------------------------------------------------------------------
def _op(kind, node, dx_key="x"):
    """f and f_vjp for check_vjp: the input and the layer's parameters all differentiated."""
    def f(inp):
        params = {k: v for k, v in inp.items() if k != dx_key}
        return kind.forward(node, params, inp[dx_key], CTX)[0]

    def f_vjp(inp, dy):
        params = {k: v for k, v in inp.items() if k != dx_key}
        _, cache = kind.forward(node, params, inp[dx_key], CTX)
        dx, grads = kind.backward(node, params, cache, dy)
        return grads if dx is None else {**grads, dx_key: dx}   # integer indices: no gradient
    return f, f_vjp


def _inputs(kind, node, shape):
    return {"x": _x(shape), **_params(kind, node, shape)}


FD_CASES = [(BATCHNORM, BatchNorm(), (4, 3)), (BATCHNORM, BatchNorm(), (3, 2, 4)),
            (BATCHNORM, BatchNorm(), (2, 2, 3, 2)), (LAYERNORM, LayerNorm(), (4, 5)),
            (LAYERNORM, LayerNorm(), (2, 3, 4))]


@pytest.mark.parametrize(("kind", "node", "shape"), FD_CASES, ids=_ids(FD_CASES))
def test_norm_backward_passes_finite_differences(kind, node, shape):
    f, f_vjp = _op(kind, node)
    r = check_vjp(f, f_vjp, _inputs(kind, node, shape), name=kind.name)
    assert r.passed, str(r)
    assert r.operator["mode"] == "jacobian"   # small enough for every row of the Jacobian


def _embedding_inputs():
    node = Embedding(vocab=5, dim=3)
    idx = np.array([[0, 2, 2, 4], [2, 1, 0, 2]])
    return node, {"idx": idx, **_params(EMBEDDING, node, idx.shape)}


def test_embedding_backward_passes_finite_differences():
    node, inputs = _embedding_inputs()
    f, f_vjp = _op(EMBEDDING, node, "idx")
    r = check_vjp(f, f_vjp, inputs, name="embedding")
    assert r.passed, str(r)


# -- planted bugs ---------------------------------------------------------------------------------
def test_batchnorm_with_constant_statistics_is_caught():
    node = BatchNorm()
    f, f_vjp = _op(BATCHNORM, node)

    def vjp_constant_stats(inp, dy):   # mean and variance treated as constants of x
        grads = f_vjp(inp, dy)
        _, (_, inv_std, _) = BATCHNORM.forward(node, {"gamma": inp["gamma"], "beta": inp["beta"]}, inp["x"], CTX)
        grads["x"] = dy * inp["gamma"].reshape(1, -1, 1) * inv_std
        return grads
    inputs = _inputs(BATCHNORM, node, (3, 2, 4))
    assert check_vjp(f, f_vjp, inputs).passed
    r = check_vjp(f, vjp_constant_stats, inputs)
    assert not r.passed
    assert r.worst.input == "x"


def test_layernorm_reduced_over_the_batch_axis_is_caught():
    node = LayerNorm()
    f, f_vjp = _op(LAYERNORM, node)

    def vjp_batch_axis(inp, dy):   # the backward's means over the batch instead of the features
        grads = f_vjp(inp, dy)
        _, (xhat, inv_std) = LAYERNORM.forward(node, {"gamma": inp["gamma"], "beta": inp["beta"]}, inp["x"], CTX)
        dxhat = dy * inp["gamma"]
        grads["x"] = inv_std * (dxhat - dxhat.mean(axis=0, keepdims=True)
                                - xhat * (dxhat * xhat).mean(axis=0, keepdims=True))
        return grads
    inputs = _inputs(LAYERNORM, node, (4, 5))
    r = check_vjp(f, vjp_batch_axis, inputs)
    assert not r.passed
    assert r.worst.input == "x"


def test_embedding_assigning_instead_of_accumulating_is_caught():
    node, inputs = _embedding_inputs()
    f, _ = _op(EMBEDDING, node, "idx")

    def vjp_assign(inp, dy):   # the last of repeated indices wins
        dE = np.zeros_like(inp["E"])
        dE[inp["idx"]] = dy
        return {"E": dE}
    r = check_vjp(f, vjp_assign, inputs)
    assert not r.passed
    assert r.worst.input == "E" and r.worst.index[0] in (0, 2)   # the repeated rows


# -- purity and errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "node", "shape"), CASES[1:2] + CASES[-1:], ids=_ids(CASES[1:2] + CASES[-1:]))
def test_norm_leaves_inputs_alone(kind, node, shape):
    params, x = _params(kind, node, shape), _x(shape)
    dy = np.random.default_rng(2).standard_normal(shape)
    before = [a.copy() for a in (x, dy, *params.values())]
    y, cache = kind.forward(node, params, x, CTX)
    kind.backward(node, params, cache, dy)
    for a, b in zip((x, dy, *params.values()), before):
        np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(y, x)


def test_embedding_leaves_inputs_alone():
    node, inputs = _embedding_inputs()
    before = {k: v.copy() for k, v in inputs.items()}
    y, cache = EMBEDDING.forward(node, {"E": inputs["E"]}, inputs["idx"], CTX)
    dy = np.ones(y.shape)
    EMBEDDING.backward(node, {"E": inputs["E"]}, cache, dy)
    y[...] = 7.0   # the output is a copy: writing into it leaves E alone
    for k, v in inputs.items():
        np.testing.assert_array_equal(v, before[k])
    np.testing.assert_array_equal(dy, 1.0)


@pytest.mark.parametrize(("idx", "message"), [
    (np.array([[0, 1], [5, 2]]), r"embedding index 5 at position \[1, 0\] is out of range \[0, 5\)"),
    (np.array([[0, -1], [2, 7]]), r"embedding index -1 at position \[0, 1\] is out of range \[0, 5\).*2 index"),
    (np.array([[0.0, 1.0]]), r"embedding takes integer indices, got dtype float64"),
    (np.array([[True, False]]), r"embedding takes integer indices, got dtype bool"),
], ids=["too-large", "negative", "float", "bool"])
def test_embedding_rejects_bad_indices(idx, message):
    node = Embedding(vocab=5, dim=2)
    with pytest.raises(ValueError, match=message):
        EMBEDDING.forward(node, _params(EMBEDDING, node, (2, 2)), idx, CTX)


def test_norm_rejects_integer_or_rank_one_input():
    params = {"gamma": np.ones(3), "beta": np.zeros(3)}
    with pytest.raises(ValueError, match="floating input"):
        BATCHNORM.forward(BatchNorm(), params, np.ones((2, 3), dtype=int), CTX)
    with pytest.raises(ValueError, match=r"rank >= 2.*\(3,\)"):
        LAYERNORM.forward(LayerNorm(), params, np.ones(3), CTX)
