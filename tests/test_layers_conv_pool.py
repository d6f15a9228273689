"""The numpy reference of conv1d, conv2d, maxpool2d and avgpool2d (``reference/layers/conv.py``,
``reference/layers/pool.py``): forward values and hand-written gradients against torch, float32
behaviour, the backward against finite differences (``gradcheck.check_vjp``), planted backward bugs
caught, the max-pool tie rule, and inputs left alone.

Tolerances. Against torch in float64 (rtol 1e-10, atol 1e-12): both sides compute the same sums of
products (a convolution or a window sum/max) and differ only in the order of summation (torch's
im2col/GEMM or direct kernels against numpy's tensordot and the per-offset scatter), so a few ulps
(~1e-16) times the number of terms (at most a few dozen here), far below 1e-10; atol covers
elements that are nearly zero (a partial cancellation), where relative agreement means nothing. A
max is exact, an average one rounding. float32 against float64 (~1e-5 relative to the largest
element): float32 rounds at 6e-8 (the inputs are rounded to float32 first), sums of a few dozen
terms amplify that by at most about one order of magnitude.
"""
from __future__ import annotations

import numpy as np
import pytest

from gradcheck import check_vjp
from gradcheck.layerspec import AvgPool2d, Conv1d, Conv2d, MaxPool2d
from reference.layers.base import Context
from reference.layers.conv import CONV1D, CONV2D
from reference.layers.pool import AVGPOOL2D, MAXPOOL2D

CTX = Context()
F64 = dict(rtol=1e-10, atol=1e-12)

CONV2D_CASES = [   # (node, x shape (B, C, H, W))
    (Conv2d(channels=2, kernel=3), (2, 1, 5, 5)),
    (Conv2d(channels=3, kernel=3, stride=2, padding=1), (2, 3, 7, 6)),
    (Conv2d(channels=2, kernel=3, padding=2, dilation=2), (1, 2, 8, 7)),
    (Conv2d(channels=1, kernel=2, stride=2, padding=1, dilation=2, bias=False), (3, 2, 6, 9)),
    (Conv2d(channels=3, kernel=1), (2, 3, 4, 5)),
    (Conv2d(channels=2, kernel=5, padding=2), (2, 2, 4, 5)),             # kernel wider than the input
    (Conv2d(channels=2, kernel=3, stride=3), (1, 2, 8, 10)),             # trailing rows/columns unread
]
CONV1D_CASES = [   # (node, x shape (B, C, L))
    (Conv1d(channels=2, kernel=3), (2, 1, 9)),
    (Conv1d(channels=3, kernel=3, stride=2, padding=1), (3, 3, 10)),
    (Conv1d(channels=1, kernel=4, padding=2, dilation=2, bias=False), (2, 2, 11)),
    (Conv1d(channels=2, kernel=2, stride=3), (1, 2, 8)),
]
POOL_CASES = [     # (node, x shape (B, C, H, W)), for both pools
    (2, None, (2, 1, 4, 6)),
    (3, 2, (2, 3, 7, 7)),      # overlapping windows
    (2, 1, (1, 2, 5, 4)),      # overlapping windows
    (3, 3, (2, 2, 7, 8)),      # trailing rows/columns unread
    (2, 3, (1, 2, 7, 9)),      # gaps between windows
]


def _conv_id(case):
    node, shape = case
    return f"{node.short()}-{'x'.join(map(str, shape))}"


def _pool_id(case):
    size, stride, shape = case
    return f"size{size}-stride{stride}-{'x'.join(map(str, shape))}"


def _params(kind, node, x_shape, dtype=np.float64, seed=0):
    return kind.init(node, x_shape[1:], np.random.default_rng(seed), "normal", np.dtype(dtype))


def _x(shape, dtype=np.float64, seed=1):
    # continuous values: no ties in a max-pool window (almost surely)
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _run(kind, node, x, params, seed=2):
    y, cache = kind.forward(node, params, x, CTX)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    dx, grads = kind.backward(node, params, cache, dy)
    return y, dy, dx, grads


def _against_torch(torch, kind, node, x, params, torch_fn):
    """Our forward and gradients for a random dy against ``torch_fn(x, **params)``'s."""
    y, dy, dx, grads = _run(kind, node, x, params)
    names = list(params)
    leaves = [torch.tensor(a, requires_grad=True) for a in (x, *params.values())]
    ty = torch_fn(leaves[0], **dict(zip(names, leaves[1:])))
    tgrads = torch.autograd.grad(ty, leaves, grad_outputs=torch.from_numpy(dy))
    assert y.shape == tuple(ty.shape) and y.shape[1:] == node.out_shape(x.shape[1:])
    np.testing.assert_allclose(y, ty.detach().numpy(), **F64)
    np.testing.assert_allclose(dx, tgrads[0].numpy(), **F64)
    assert sorted(grads) == sorted(names)
    for name, tg in zip(names, tgrads[1:]):
        np.testing.assert_allclose(grads[name], tg.numpy(), **F64)


# -- parity with torch (float64) ------------------------------------------------------------------
@pytest.mark.parametrize(("node", "shape"), CONV2D_CASES, ids=map(_conv_id, CONV2D_CASES))
def test_conv2d_matches_torch(node, shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    def conv(x, W, b=None):
        return F.conv2d(x, W, b, stride=node.stride, padding=node.padding, dilation=node.dilation)
    _against_torch(torch, CONV2D, node, _x(shape), _params(CONV2D, node, shape), conv)


@pytest.mark.parametrize(("node", "shape"), CONV1D_CASES, ids=map(_conv_id, CONV1D_CASES))
def test_conv1d_matches_torch(node, shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    def conv(x, W, b=None):
        return F.conv1d(x, W, b, stride=node.stride, padding=node.padding, dilation=node.dilation)
    _against_torch(torch, CONV1D, node, _x(shape), _params(CONV1D, node, shape), conv)


@pytest.mark.parametrize(("size", "stride", "shape"), POOL_CASES, ids=map(_pool_id, POOL_CASES))
def test_maxpool2d_matches_torch(size, stride, shape):
    torch = pytest.importorskip("torch")
    node = MaxPool2d(size=size, stride=stride)
    _against_torch(torch, MAXPOOL2D, node, _x(shape), {},
                   lambda x: torch.nn.functional.max_pool2d(x, size, stride=node.step))


@pytest.mark.parametrize(("size", "stride", "shape"), POOL_CASES, ids=map(_pool_id, POOL_CASES))
def test_avgpool2d_matches_torch(size, stride, shape):
    torch = pytest.importorskip("torch")
    node = AvgPool2d(size=size, stride=stride)
    _against_torch(torch, AVGPOOL2D, node, _x(shape), {},
                   lambda x: torch.nn.functional.avg_pool2d(x, size, stride=node.step))


# -- float32 ----------------------------------------------------------------------------------------
F32_CASES = [(CONV2D, *CONV2D_CASES[1]), (CONV2D, *CONV2D_CASES[3]), (CONV1D, *CONV1D_CASES[2]),
             (MAXPOOL2D, MaxPool2d(size=3, stride=2), (2, 3, 7, 7)),
             (AVGPOOL2D, AvgPool2d(size=3, stride=2), (2, 3, 7, 7))]


def _close(a32, a64):
    # relative to the array's largest element: an element near zero has no relative accuracy
    np.testing.assert_allclose(a32, a64, rtol=1e-5, atol=1e-5 * np.abs(a64).max())


@pytest.mark.parametrize(("kind", "node", "shape"), F32_CASES, ids=[f"{k.name}-{_conv_id(c)}" for k, *c in F32_CASES])
def test_float32_in_float32_out_and_close_to_float64(kind, node, shape):
    p64 = _params(kind, node, shape)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    x64 = _x(shape)
    y32, _, dx32, g32 = _run(kind, node, x64.astype(np.float32), p32)
    y64, _, dx64, g64 = _run(kind, node, x64.astype(np.float32).astype(np.float64),
                             {k: v.astype(np.float64) for k, v in p32.items()})
    for a in (y32, dx32, *g32.values()):
        assert a.dtype == np.float32
    _close(y32, y64)
    _close(dx32, dx64)
    assert sorted(g32) == sorted(g64)
    for name in g64:
        _close(g32[name], g64[name])


def test_init_shapes_dtypes_and_scale():
    rng = np.random.default_rng(0)
    for kind, node, in_shape in [(CONV2D, Conv2d(channels=4, kernel=3), (3, 8, 8)),
                                 (CONV2D, Conv2d(channels=2, kernel=2, bias=False), (1, 5, 5)),
                                 (CONV1D, Conv1d(channels=3, kernel=5), (2, 9))]:
        p = kind.init(node, in_shape, rng, "he", np.dtype(np.float32))
        assert {k: v.shape for k, v in p.items()} == node.param_shapes(in_shape)
        assert all(v.dtype == np.float32 for v in p.values())
    for kind, node in [(MAXPOOL2D, MaxPool2d()), (AVGPOOL2D, AvgPool2d())]:
        assert kind.init(node, (2, 4, 4), rng, "normal", np.dtype(np.float64)) == {}
    # fan_in = C * k * k: "normal" draws N(0, 1 / fan_in)
    W = CONV2D.init(Conv2d(channels=64, kernel=3), (8, 5, 5), rng, "normal", np.dtype(np.float64))["W"]
    assert abs(W.std() * np.sqrt(8 * 9) - 1) < 0.05


def test_registry_holds_the_four_kinds():
    from reference.layers import get_layer
    for kind in (CONV1D, CONV2D, MAXPOOL2D, AVGPOOL2D):
        assert get_layer(kind.name) is kind and kind.conventions


# -- finite differences ---------------------------------------------------------------------------
def _op(kind, node):
    """f and f_vjp for check_vjp: the input and the layer's parameters all differentiated."""
    def f(inp):
        params = {k: v for k, v in inp.items() if k != "x"}
        return kind.forward(node, params, inp["x"], CTX)[0]

    def f_vjp(inp, dy):
        params = {k: v for k, v in inp.items() if k != "x"}
        _, cache = kind.forward(node, params, inp["x"], CTX)
        dx, grads = kind.backward(node, params, cache, dy)
        return {**grads, "x": dx}
    return f, f_vjp


def _inputs(kind, node, shape):
    return {"x": _x(shape), **_params(kind, node, shape)}


FD_CASES = [(CONV2D, Conv2d(channels=2, kernel=3, padding=1), (1, 2, 5, 5)),                 # overlapping
            (CONV2D, Conv2d(channels=2, kernel=2, stride=2, padding=1, dilation=2), (2, 1, 6, 5)),
            (CONV1D, Conv1d(channels=2, kernel=3, stride=2, padding=2, dilation=2), (2, 2, 9)),
            (CONV1D, Conv1d(channels=3, kernel=2, bias=False), (2, 2, 6)),
            (MAXPOOL2D, MaxPool2d(size=3, stride=2), (1, 2, 7, 7)),                        # overlapping
            (MAXPOOL2D, MaxPool2d(size=2), (2, 2, 5, 4)),
            (AVGPOOL2D, AvgPool2d(size=3, stride=2), (1, 2, 7, 7)),                        # overlapping
            (AVGPOOL2D, AvgPool2d(size=2, stride=3), (2, 1, 7, 8))]


@pytest.mark.parametrize(("kind", "node", "shape"), FD_CASES,
                         ids=[f"{k.name}-{_conv_id(c)}" for k, *c in FD_CASES])
def test_backward_passes_finite_differences(kind, node, shape):
    inputs = _inputs(kind, node, shape)
    assert sum(v.size for v in inputs.values()) <= 150
    f, f_vjp = _op(kind, node)
    r = check_vjp(f, f_vjp, inputs, name=kind.name)
    assert r.passed, str(r)
    assert r.operator["mode"] == "jacobian"   # small enough for every row of the Jacobian


# -- planted bugs ---------------------------------------------------------------------------------
def _conv2d_vjp_col2im(node, accumulate):
    """A conv2d f_vjp whose dx is the textbook col2im: the window gradients
    ``dcols[b, c, oh, ow, i, j] = sum_o dy[b, o, oh, ow] W[o, c, i, j]`` written back to
    ``xpad[b, c, oh*s + i*d, ow*s + j*d]`` by fancy indexing, with ``np.add.at`` (right) or ``=``
    (wrong: where windows overlap the last write wins); dW and db from the reference."""
    _, f_vjp = _op(CONV2D, node)
    s, d, p = node.stride, node.dilation, node.padding

    def vjp(inp, dy):
        grads = f_vjp(inp, dy)
        x, W = inp["x"], inp["W"]
        (ho, wo), k = dy.shape[2:], node.kernel
        dcols = np.einsum("bohw,ocij->bchwij", dy, W)
        rows = (np.arange(ho)[:, None, None, None] * s + np.arange(k)[None, None, :, None] * d)
        cols = (np.arange(wo)[None, :, None, None] * s + np.arange(k)[None, None, None, :] * d)
        dx_pad = np.zeros(x.shape[:2] + (x.shape[2] + 2 * p, x.shape[3] + 2 * p))
        if accumulate:
            np.add.at(dx_pad, (slice(None), slice(None), rows, cols), dcols)
        else:
            dx_pad[:, :, rows, cols] = dcols
        grads["x"] = dx_pad[:, :, p:p + x.shape[2], p:p + x.shape[3]]
        return grads
    return vjp


def test_conv2d_assigning_overlapping_windows_is_caught():
    node = Conv2d(channels=2, kernel=3, padding=1)   # stride 1 < kernel 3: windows overlap
    f, _ = _op(CONV2D, node)
    inputs = _inputs(CONV2D, node, (1, 2, 5, 5))
    assert check_vjp(f, _conv2d_vjp_col2im(node, accumulate=True), inputs).passed   # the only bug is `=`
    r = check_vjp(f, _conv2d_vjp_col2im(node, accumulate=False), inputs)
    assert not r.passed
    assert r.worst.input == "x"


def test_avgpool2d_dividing_by_size_instead_of_its_square_is_caught():
    node = AvgPool2d(size=3, stride=2)
    f, f_vjp = _op(AVGPOOL2D, node)

    def vjp_by_size(inp, dy):   # the backward divides by size, the forward (rightly) by size**2
        return {"x": f_vjp(inp, dy)["x"] * node.size}
    r = check_vjp(f, vjp_by_size, _inputs(AVGPOOL2D, node, (1, 2, 7, 7)))
    assert not r.passed
    assert r.worst.input == "x"


def test_maxpool2d_assigning_overlapping_windows_is_caught():
    node = MaxPool2d(size=2, stride=1)
    f, _ = _op(MAXPOOL2D, node)
    x = _x((1, 1, 4, 4))
    x[0, 0, 1, 2] = 5.0   # the maximum of four overlapping windows

    def vjp_assign(inp, dy):   # the window's gradient written to its maximum, last write wins
        _, (_, _, first) = MAXPOOL2D.forward(node, {}, inp["x"], CTX)
        dx = np.zeros_like(inp["x"])
        oh, ow = np.indices(first.shape[2:])
        dx[0, 0, oh + first[0, 0] // node.size, ow + first[0, 0] % node.size] = dy[0, 0]
        return {"x": dx}
    r = check_vjp(f, vjp_assign, {"x": x})
    assert not r.passed
    assert r.worst.input == "x"


# -- the max-pool tie rule and overlapping maxima ---------------------------------------------------
def test_maxpool2d_tie_sends_the_gradient_to_the_first_maximum():
    node = MaxPool2d(size=2)
    x = np.array([[[[1.0, 3.0, 0.0, 0.0],
                    [3.0, 3.0, 0.0, 0.0]]]])   # window 1: three tied maxima; window 2: all equal
    y, cache = MAXPOOL2D.forward(node, {}, x, CTX)
    dx, grads = MAXPOOL2D.backward(node, {}, cache, np.array([[[[10.0, 20.0]]]]))
    np.testing.assert_array_equal(y, [[[[3.0, 0.0]]]])
    # the first maximum in row-major window order: (0, 1) of the first window, (0, 0) of the second
    np.testing.assert_array_equal(dx, [[[[0.0, 10.0, 20.0, 0.0],
                                         [0.0, 0.0, 0.0, 0.0]]]])
    assert grads == {}
    assert "first maximum" in MAXPOOL2D.conventions


def test_maxpool2d_overlapping_maxima_accumulate():
    node = MaxPool2d(size=2, stride=1)
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    x[0, 0, 1, 1] = 100.0   # the maximum of all four windows
    y, cache = MAXPOOL2D.forward(node, {}, x, CTX)
    dy = np.array([[[[1.0, 2.0], [4.0, 8.0]]]])
    dx, _ = MAXPOOL2D.backward(node, {}, cache, dy)
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), 100.0))
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 15.0
    np.testing.assert_array_equal(dx, expected)


def test_avgpool2d_overlap_counts_each_window():
    node = AvgPool2d(size=2, stride=1)
    x = np.zeros((1, 1, 3, 3))
    _, cache = AVGPOOL2D.forward(node, {}, x, CTX)
    dx, _ = AVGPOOL2D.backward(node, {}, cache, np.ones((1, 1, 2, 2)))
    # how many of the four windows cover each element, over size**2 = 4
    np.testing.assert_array_equal(dx[0, 0], np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4)


# -- purity -----------------------------------------------------------------------------------------
PURE_CASES = [(CONV2D, *CONV2D_CASES[1]), (CONV1D, *CONV1D_CASES[1]),
              (MAXPOOL2D, MaxPool2d(size=3, stride=2), (2, 2, 7, 7)),
              (AVGPOOL2D, AvgPool2d(size=3, stride=2), (2, 2, 7, 7))]


@pytest.mark.parametrize(("kind", "node", "shape"), PURE_CASES,
                         ids=[f"{k.name}-{_conv_id(c)}" for k, *c in PURE_CASES])
def test_forward_and_backward_leave_inputs_alone(kind, node, shape):
    params, x = _params(kind, node, shape), _x(shape)
    y, cache = kind.forward(node, params, x, CTX)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    before = [a.copy() for a in (x, dy, *params.values())]
    y, cache = kind.forward(node, params, x, CTX)
    dx, grads = kind.backward(node, params, cache, dy)
    for a, b in zip((x, dy, *params.values()), before):
        np.testing.assert_array_equal(a, b)
    for out in (y, dx, *grads.values()):
        assert out.flags.writeable
        assert not any(np.shares_memory(out, a) for a in (x, dy, *params.values()))
