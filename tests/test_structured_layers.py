"""The structure-aware oracle on layered specs (gradcheck.structured_layers): conv1d/conv2d, pooling,
batch and layer normalization, dropout, flatten and dense layers, with residual edges.

What is compared with what, and the tolerance. ``structured.gradient`` and black-box
``numerical.estimate`` of the reference network's loss use the same steps (asserted bit for bit)
and the same formulas on the same function, so their estimates may differ only by the rounding of
the loss values. Each estimate's error bound covers that rounding (the measured noise sd / h
times the scheme's noise gain), so ``|structured - black box| <= SAFETY x (sum of both bounds)``
plus 16 ulps of the tensor's largest entry -- the tolerance a verdict uses and the one of
tests/test_structured.py for dense specs.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import gradcheck
from gradcheck import numerical, structured, structured_layers
from gradcheck.compare import SAFETY
from gradcheck.spec import (
    LSTM,
    RNN,
    Attention,
    AvgPool2d,
    BatchNorm,
    Conv1d,
    Conv2d,
    Dropout,
    Embedding,
    Flatten,
    Layer,
    LayerNorm,
    MaxPool2d,
    NetworkSpec,
)
from reference.layers import get_layer
from reference.layers.base import LayerKind
from reference.network import Network

CNN = NetworkSpec((2, 7, 7), (
    Conv2d(3, 3, stride=2, padding=1, activation="tanh"), MaxPool2d(2), BatchNorm(), Flatten(),
    Layer(5, "tanh"), Layer(3, "identity")), "softmax_cross_entropy", batch=4)
CONV1D_LN = NetworkSpec((2, 9), (
    Conv1d(4, 3, padding=1, dilation=2, activation="gelu"), LayerNorm(),
    Conv1d(3, 3, padding=1, bias=False, activation="tanh"), Flatten(), Layer(2, "identity")), "mse", batch=5)
DENSE_LN = NetworkSpec(6, (
    Layer(8, "tanh"), LayerNorm(), Layer(6, "sigmoid"), Layer(2, "identity")), "mse", batch=5)
# the other parameter-free kinds, batch norm of vectors and of maps, and residual edges
MIXED = NetworkSpec((2, 6, 6), (
    Conv2d(2, 3, padding=1, activation="softplus"), AvgPool2d(2, stride=1), Dropout(0.3),
    Conv2d(2, 1, bias=False), BatchNorm(), Flatten(), Layer(6, "tanh"), BatchNorm(), Dropout(0.25),
    Layer(6, "silu"), Layer(3, "softmax")), "categorical_cross_entropy", batch=6, skips=((2, 4), (7, 10)))
SPECS = [CNN, CONV1D_LN, DENSE_LN, MIXED]


def case(spec: NetworkSpec, seed: int = 0, layers=None):
    net = Network(spec, layers=layers)
    rng = np.random.default_rng(seed + 100)
    X = rng.standard_normal((spec.batch,) + spec.input_shape).astype(spec.dtype)
    if spec.loss == "mse":
        y = rng.standard_normal((spec.batch, spec.output_dim)).astype(spec.dtype)
    else:
        y = rng.integers(0, spec.output_dim, spec.batch)
    return net, net.init_params(), X, y


def estimates(spec: NetworkSpec, scheme: str = "central") -> tuple[numerical.Estimate, numerical.Estimate]:
    """(structured, black box) estimates of the reference network's gradient. The structured one
    takes the black box's measured noise, so that both take the same steps: two noise probes of
    the same float32 loss can differ by 3x (a handful of ulps, quantized), and the step follows."""
    net, params, X, y = case(spec)
    slow = numerical.estimate(lambda w: net.loss(w, X, y), params, scheme=scheme)
    oracle = structured.oracle_loss(spec, params, X, y, expected=slow.f0)
    fast = numerical.estimate(oracle, params, scheme=scheme, noise=slow.noise, f0=slow.f0)
    return fast, slow


def assert_estimates_agree(fast: numerical.Estimate, slow: numerical.Estimate, dtype: str) -> None:
    eps = np.finfo(dtype).eps
    for k in slow.grad:
        a, b = fast.grad[k].astype(np.float64), slow.grad[k].astype(np.float64)
        bound = SAFETY * (fast.error[k] + slow.error[k]) + 16 * eps * np.max(np.abs(b))
        assert np.all(np.abs(a - b) <= bound), (k, np.max(np.abs(a - b) / bound))
        assert np.array_equal(fast.step[k], slow.step[k]), k


# -- (1) correct networks: the structured estimate is the black-box one, and the check passes ----------
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.label())
@pytest.mark.parametrize("scheme", ["central", "central4"])
def test_structured_gradient_equals_black_box_differences(spec, scheme):
    assert_estimates_agree(*estimates(spec, scheme), spec.dtype)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.label())
def test_check_passes_and_agrees_with_the_numerical_oracle(spec):
    """Both checks pass the reference network; their numerical gradients (after any second look)
    agree within SAFETY x (sum of the two checks' error bounds) + 16 ulps of the largest entry."""
    net, params, X, y = case(spec)
    fast = gradcheck.check(net, params, X, y, spec=spec, oracle="structured", symbolic=False, quiet=True)
    slow = gradcheck.check(net, params, X, y, spec=spec, oracle="numerical", symbolic=False, scheme="central",
                           quiet=True)
    assert fast.passed, str(fast)
    assert slow.passed, str(slow)
    assert fast.scheme == "central"
    eps = np.finfo(spec.dtype).eps
    for k in params:
        f, s = fast.tensors[k], slow.tensors[k]
        bound = SAFETY * (f.error + s.error) + 16 * eps * np.max(np.abs(s.numerical))
        assert np.all(np.abs(f.numerical - s.numerical) <= bound), k


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.label())
def test_values_reproduce_the_reference_at_each_perturbed_point(spec):
    """evaluate_points against the reference network's loss with the element really replaced: for
    one tensor of every parametrized layer. Batch norm downstream (or perturbed) must normalize each
    stacked pass over its own batch; pooled statistics would be off by far more than rounding."""
    net, params, X, y = case(spec)
    oracle = structured.oracle_loss(spec, params, X, y, expected=net.loss(params, X, y))
    rng = np.random.default_rng(3)
    for name, value in params.items():
        points = [value + 1e-3 * rng.standard_normal(value.shape).astype(value.dtype),
                  value - 1e-3 * np.abs(value).astype(value.dtype)]
        got = oracle.evaluate_points(params, name, points)
        flat = [p.reshape(-1) for p in points]
        for e, j in itertools.product(range(value.size), range(len(points))):
            work = {k: v.copy() for k, v in params.items()}
            work[name].reshape(-1)[e] = flat[j][e]
            want = net.loss(work, X, y)
            assert abs(got[e, j] - want) <= 64 * np.finfo(spec.dtype).eps * max(1.0, abs(want)), (name, e, j)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.label())
def test_the_base_value_is_fns_loss(spec):
    net, params, X, y = case(spec)
    loss = net.loss(params, X, y)
    oracle = structured.oracle_loss(spec, params, X, y, expected=loss)
    assert isinstance(oracle, structured_layers.LayeredLoss)
    assert oracle(params) == loss                     # the offset trick: exactly fn's loss
    assert abs(oracle.offset) <= 1e-13 * max(1.0, abs(loss))


def test_dense_specs_keep_the_dense_path():
    spec = NetworkSpec(3, (Layer(4, "tanh"), Layer(2, "identity")), "mse", batch=5)
    net = Network(spec)
    params = net.init_params()
    X, y = np.ones((5, 3)), np.zeros((5, 2))
    assert type(structured.oracle_loss(spec, params, X, y, expected=net.loss(params, X, y))) is structured.StructuredLoss


def test_chunking_does_not_change_the_values():
    """A 1 KiB budget forces one element per chunk; the estimates must agree to rounding of the
    stacked arithmetic (a few ulps of the loss over the step)."""
    net, params, X, y = case(MIXED)
    big = structured.gradient(MIXED, params, X, y)
    small = structured.gradient(MIXED, params, X, y, max_bytes=1024)
    for k in params:
        np.testing.assert_allclose(small.grad[k], big.grad[k], rtol=0, atol=float(np.max(big.error[k])))


def test_spec_that_does_not_describe_fn_fails_with_a_clear_problem():
    net, params, X, y = case(CNN)
    wrong = CNN.replace(layers=[CNN.to_dict()["layers"][0], {"kind": "avgpool2d"}, *CNN.to_dict()["layers"][2:]])
    result = gradcheck.check(net, params, X, y, spec=wrong, oracle="structured", symbolic=False, quiet=True)
    assert not result.passed
    assert [p.kind for p in result.problems] == ["spec_mismatch"]


def test_structured_oracle_serves_fast_mode_on_layered_specs():
    net, params, X, y = case(CNN)
    assert gradcheck.check(net, params, X, y, spec=CNN, oracle="structured", mode="fast", quiet=True).passed


# -- (2) planted bugs: caught, and localized to the tensors the black-box check blames ----------------
def _bn_constant_statistics() -> LayerKind:
    """A batch norm whose backward treats the batch mean and variance as constants."""
    right = get_layer("batchnorm")

    def backward(node, p, cache, dy):
        _, grads = right.backward(node, p, cache, dy)
        _, inv_std, _ = cache
        return dy * p["gamma"].reshape(inv_std.shape[:2] + (1,) * (dy.ndim - 2)) * inv_std, grads
    return LayerKind("batchnorm", right.init, right.forward, backward)


def _conv_without_accumulation(kind: str) -> LayerKind:
    """A convolution whose input gradient assigns (=) where overlapping windows must add (+=)."""
    right = get_layer(kind)

    def backward(node, params, cache, dy):
        _, grads = right.backward(node, params, cache, dy)
        x_shape, _ = cache
        n, p, s, d = len(x_shape) - 2, node.padding, node.stride, node.dilation
        dx_pad = np.zeros(x_shape[:2] + tuple(m + 2 * p for m in x_shape[2:]), dtype=dy.dtype)
        for offset in itertools.product(range(node.kernel), repeat=n):
            w_i = params["W"][(slice(None), slice(None)) + offset]
            contrib = np.moveaxis(np.tensordot(dy, w_i, axes=([1], [0])), -1, 1)
            where = tuple(slice(i * d, i * d + s * (m - 1) + 1, s) for i, m in zip(offset, dy.shape[2:]))
            dx_pad[(slice(None), slice(None)) + where] = contrib          # the bug: = instead of +=
        dx = dx_pad[(slice(None), slice(None)) + tuple(slice(p, p + m) for m in x_shape[2:])]
        return np.ascontiguousarray(dx), grads
    return LayerKind(kind, right.init, right.forward, backward)


@pytest.mark.parametrize("spec, kind, bug, blamed", [
    (CNN, "batchnorm", _bn_constant_statistics(), {"conv1.W", "conv1.b"}),
    (CONV1D_LN, "conv1d", _conv_without_accumulation("conv1d"), {"conv1.W", "conv1.b", "ln2.gamma", "ln2.beta"}),
], ids=["batchnorm-constant-statistics", "conv1d-no-accumulation"])
def test_planted_layer_bug_is_caught_and_localized(spec, kind, bug, blamed):
    """The bug corrupts the input gradient of one layer, so only the tensors before it can fail;
    the structured check fails exactly where the black-box check does."""
    net, params, X, y = case(spec, layers={kind: bug})
    fast = gradcheck.check(net, params, X, y, spec=spec, oracle="structured", symbolic=False, quiet=True)
    slow = gradcheck.check(net, params, X, y, symbolic=False, scheme="central", quiet=True)
    assert not fast.passed and not slow.passed
    failing = {t.name for t in fast.tensors.values() if not t.passed}
    assert failing and failing <= blamed, failing
    assert failing == {t.name for t in slow.tensors.values() if not t.passed}
    assert fast.worst_param == slow.worst_param


@pytest.mark.parametrize("name, index", [("conv1.W", (1, 0, 2, 1)), ("bn3.gamma", (2,))])
def test_single_wrong_element_found_with_its_index(name, index):
    """One element off by 1e-4 relative (float64) in a conv weight or a batch-norm scale: found."""
    net, params, X, y = case(CNN)

    def fn(p, X, y):
        loss, g = net(p, X, y)
        g = dict(g)
        g[name] = g[name].copy()
        g[name][index] *= 1 + 1e-4
        return loss, g

    result = gradcheck.check(fn, params, X, y, spec=CNN, oracle="structured", symbolic=False, quiet=True)
    assert not result.passed
    assert result.worst_param == name and tuple(result.worst.index) == index


# -- (3) unsupported kinds: a specific error before fn is called -------------------------------------
@pytest.mark.parametrize("spec, kind", [
    (NetworkSpec((4, 6), (Attention(2), Flatten(), Layer(2, "identity")), "mse", batch=3), "attention"),
    (NetworkSpec((4, 3), (RNN(3), Flatten(), Layer(2, "identity")), "mse", batch=3), "rnn"),
    (NetworkSpec((4, 3), (LayerNorm(), LSTM(2), Flatten(), Layer(2, "identity")), "mse", batch=3), "lstm"),
    (NetworkSpec((5,), (Embedding(7, 3), Flatten(), Layer(2, "identity")), "mse", batch=3), "embedding"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_unsupported_kinds_raise_naming_them(spec, kind):
    net = Network(spec)
    params = net.init_params()
    X = np.zeros((3,) + spec.input_shape, dtype=int if spec.input_is_integer else float)

    def fn(*args):
        raise AssertionError("fn must not be called")

    with pytest.raises(ValueError) as info:
        gradcheck.check(fn, params, X, np.zeros((3, 2)), spec=spec, oracle="structured")
    message = str(info.value)
    assert f"does not support {kind} layers" in message
    assert "use oracle='numerical'" in message
    with pytest.raises(ValueError, match=f"does not support {kind}"):
        structured.validate(spec, params)


def test_misuse_on_layered_specs_raises():
    net, params, X, y = case(CNN)
    with pytest.raises(ValueError, match="complex"):
        gradcheck.check(net, params, X, y, spec=CNN, oracle="structured", scheme="complex")
    with pytest.raises(ValueError, match="does not fit params"):
        gradcheck.check(net, {"conv1.W": params["conv1.W"]}, X, y, spec=CNN, oracle="structured")
    bad = CNN.replace(layers=[{**CNN.to_dict()["layers"][0], "activation": "nope"}, *CNN.to_dict()["layers"][1:]])
    with pytest.raises(ValueError, match="registry's activations"):
        structured.validate(bad, params)


# -- (4) float32 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [CNN.replace(dtype="float32"), MIXED.replace(dtype="float32")],
                         ids=lambda s: s.label())
def test_float32_specs(spec):
    net, params, X, y = case(spec)
    assert all(v.dtype == np.float32 for v in params.values())
    assert_estimates_agree(*estimates(spec), "float32")
    result = gradcheck.check(net, params, X, y, spec=spec, oracle="structured", symbolic=False, quiet=True)
    assert result.passed, str(result)
    assert result.dtype == "float32"
