"""The SymPy oracle on every layer kind, against the numpy reference and against itself.

Each case is a small network with one layer kind (then ``Flatten()`` where needed, a dense layer
and a loss); its SymPy gradient (:func:`gradcheck.symbolic.network_gradient`: the forward written
anew in :mod:`gradcheck.symbolic.layers`, every derivative by SymPy) must agree with the
reference's hand-written backward (``reference.network.Network``).

Tolerance. Both are float64 evaluations of the same derivative in different operation orders, so
they differ by rounding only: measured at most ~1e-13 relative on these shapes (most entries
~1e-15; the worst are entries that are sums with cancellation, e.g. through a softmax). The error
is ``|symbolic - reference| / (|reference| + 1e-6 * max|reference|)``, the max over *all*
tensors in the floor (a gradient that is exactly zero in exact arithmetic, e.g. a conv bias
followed by batch normalization, is rounding noise ~1e-17 on both sides), and must be
``<= 1e-9``: four orders above the rounding measured, far below what a wrong derivative gives (a
sign, factor, missing term or mis-indexed window is off by 1e-3 or more). Against the mpmath
ground truth of the same SymPy expressions the float gradient must be within ``1e-12`` normwise.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from gradcheck.layerspec import NODE_TYPES
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
from gradcheck.symbolic import SymbolicSkipped, cache_info, compile_gradient, exact_gradient, network_gradient
from gradcheck.symbolic import layers as symbolic_layers
from gradcheck.symbolic.network import structure_key
from reference.network import Network

TOL = 1e-9


def rel_error(a: dict, b: dict) -> float:
    """max over entries of |a - b| / (|b| + 1e-6 max|b|), b the reference, the max over all tensors."""
    assert set(a) == set(b)
    top = max(float(np.max(np.abs(np.asarray(v, np.float64)))) for v in b.values())
    floor = 1e-6 * top + 1e-300
    worst = 0.0
    for k in b:
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        assert x.shape == y.shape, k
        worst = max(worst, float(np.max(np.abs(x - y) / (np.abs(y) + floor))))
    return worst


def normwise(a: dict, b: dict) -> float:
    num = sum(float(np.sum((np.asarray(a[k]) - np.asarray(b[k])) ** 2)) for k in b)
    den = sum(float(np.sum(np.asarray(b[k]) ** 2)) for k in b)
    return (num / den) ** 0.5


def batch_for(spec: NetworkSpec, seed: int = 0, batch: int | None = None):
    """Parameters (the reference's init, then perturbed so no bias is tiny), X and y."""
    rng = np.random.default_rng(seed)
    B = spec.batch if batch is None else batch
    params = {k: v + rng.normal(scale=0.1, size=v.shape) for k, v in Network(spec).init_params().items()}
    shape = (B,) + spec.input_shape
    if spec.input_is_integer:
        X = rng.integers(0, spec.layers[0].vocab, shape)
    else:
        X = rng.normal(size=shape)
    k = spec.output_dim
    if spec.loss == "mse":
        y = rng.normal(size=(B, k))
    else:  # class indices
        y = rng.integers(0, k, B)
    return params, X, y


def reference_gradient(spec: NetworkSpec, params, X, y) -> dict:
    _, grads = Network(spec).loss_and_grads(params, X, y)
    return grads


def head(k: int = 2, act: str = "identity") -> tuple:
    return (Flatten(), Layer(k, act))


CASES = {
    "conv2d": NetworkSpec((1, 4, 4), (Conv2d(2, 3, activation="tanh"),) + head(3), "mse", batch=3),
    "conv2d_stride_pad_dilation": NetworkSpec(
        (2, 6, 6), (Conv2d(2, 2, stride=2, padding=1, dilation=2, activation="relu"),) + head(), "mse", batch=3),
    "conv2d_nobias_pad": NetworkSpec(
        (2, 4, 4), (Conv2d(3, 3, padding=2, stride=3, bias=False),) + head(), "softmax_cross_entropy", batch=3),
    "conv1d": NetworkSpec((2, 7), (Conv1d(3, 3, stride=2, padding=1, dilation=2, activation="tanh"),) + head(),
                          "mse", batch=3),
    "maxpool2d": NetworkSpec((1, 5, 5), (Conv2d(2, 2, activation="relu"), MaxPool2d(2)) + head(), "mse", batch=3),
    "maxpool2d_overlapping": NetworkSpec((2, 4, 4), (Conv2d(1, 1), MaxPool2d(3, stride=1)) + head(), "mse", batch=3),
    "avgpool2d": NetworkSpec((1, 5, 5), (Conv2d(2, 2), AvgPool2d(2, stride=1)) + head(), "mse", batch=3),
    "batchnorm_chw": NetworkSpec((1, 4, 4), (Conv2d(2, 2), BatchNorm()) + head(2, "tanh"), "mse", batch=4),
    "batchnorm_vector": NetworkSpec(3, (Layer(4, "tanh"), BatchNorm(eps=1e-3), Layer(2, "identity")), "mse", batch=5),
    "layernorm_sequence": NetworkSpec((3, 4), (LayerNorm(),) + head(), "mse", batch=3),
    "layernorm_vector": NetworkSpec(4, (Layer(5, "tanh"), LayerNorm(), Layer(2, "identity")), "mse", batch=3),
    "embedding": NetworkSpec((4,), (Embedding(5, 3),) + head(3), "softmax_cross_entropy", batch=3),
    "attention_2heads_causal": NetworkSpec((3, 4), (Attention(heads=2, causal=True),) + head(), "mse", batch=3),
    "attention_1head": NetworkSpec((3, 4), (Attention(),) + head(), "mse", batch=3),
    "rnn": NetworkSpec((3, 2), (RNN(3),) + head(), "mse", batch=3),
    "lstm": NetworkSpec((3, 2), (LSTM(2),) + head(), "mse", batch=3),
    "dropout_vector": NetworkSpec(5, (Layer(4, "tanh"), Dropout(0.4), Layer(2, "identity")), "mse", batch=4, seed=7),
    "dropout_chw": NetworkSpec((1, 4, 4), (Conv2d(2, 3, padding=1, activation="tanh"), Dropout(0.3)) + head(),
                               "mse", batch=3, seed=3),
    "residual_conv": NetworkSpec(
        (2, 4, 4), (Conv2d(2, 3, padding=1, activation="tanh"), Conv2d(2, 3, padding=1, activation="tanh"),
                    Conv2d(2, 3, padding=1)) + head(), "mse", batch=2, skips=((1, 3),)),
    "residual_transformer_block": NetworkSpec(
        (3, 4), (Attention(2), LayerNorm(), Layer(4, "gelu"), Layer(4, "identity")) + head(), "mse", batch=3,
        skips=((0, 2), (2, 4))),
    "dense_on_sequence_softmax": NetworkSpec((3, 4), (Layer(3, "softmax"),) + head(), "mse", batch=3),
    "embedding_attention_lstm": NetworkSpec((4,), (Embedding(6, 4), Attention(2, causal=True), LSTM(2)) + head(),
                                            "softmax_cross_entropy", batch=3),
}


@pytest.mark.parametrize("name", list(CASES))
def test_symbolic_matches_reference(name):
    spec = CASES[name]
    params, X, y = batch_for(spec)
    # correctness, not the time limit (tested in test_symbolic_network.py): a busy CI worker must
    # not turn a 0.6 s build into a "too slow" refusal
    sym = network_gradient(spec, params, X, y, timeout=120)
    assert all(v.dtype == np.float64 and v.shape == params[k].shape for k, v in sym.items())
    err = rel_error(sym, reference_gradient(spec, params, X, y))
    assert err <= TOL, f"{name} ({spec.label()}): symbolic vs reference {err:.2e} > {TOL:g}"


def test_every_layer_kind_is_covered():
    assert set(symbolic_layers.LAYER_FUNCTIONS) == set(NODE_TYPES)
    assert {l.kind for s in CASES.values() for l in s.layers} == set(NODE_TYPES)


def test_embedding_repeated_indices_add_into_one_row():
    spec = CASES["embedding"]
    params, _, y = batch_for(spec)
    X = np.array([[1, 1, 3, 1], [0, 4, 4, 2], [2, 2, 2, 2]])
    sym = network_gradient(spec, params, X, y)
    assert rel_error(sym, reference_gradient(spec, params, X, y)) <= TOL
    assert np.all(sym["embed1.E"][1] != 0) and np.all(sym["embed1.E"][0] != 0)
    # a row no index picks gets no gradient
    X2 = np.array([[1, 1, 3, 1], [0, 4, 4, 1], [3, 3, 3, 3]])
    assert np.all(network_gradient(spec, params, X2, y)["embed1.E"][2] == 0)


def test_max_pool_tie_goes_to_the_first_maximum():
    # W = 0: every conv output is the bias, so every window is a tie
    spec = NetworkSpec((1, 4, 4), (Conv2d(1, 1), MaxPool2d(2)) + head(1), "mse", batch=2)
    params, X, y = batch_for(spec)
    params["conv1.W"][:] = 0.0
    sym = network_gradient(spec, params, X, y)
    # dL/dW = sum over samples and windows of dL/d(pooled) * x at the window's first element
    out = params["conv1.b"][0] * params["W4"][:, 0].sum() + params["b4"][0]
    g_out = 2 * (out - y[:, 0]) / len(X)  # mse: mean over batch of the sum over outputs
    expected = sum(g_out[b] * params["W4"][k, 0] * X[b, 0, 2 * (k // 2), 2 * (k % 2)]
                   for b in range(2) for k in range(4))
    assert sym["conv1.W"][0, 0, 0, 0] == pytest.approx(expected, rel=1e-12)
    assert rel_error(sym, reference_gradient(spec, params, X, y)) <= TOL


def test_dropout_mask_follows_the_documented_rule():
    from reference.layers.base import Context
    from reference.layers.reshape import dropout_mask
    for seed, index, shape, rate in [(0, 1, (4, 3), 0.5), (7, 2, (3, 2, 4, 4), 0.3), (123, 5, (1, 6), 0.0)]:
        ours = symbolic_layers.dropout_mask(rate, shape, seed, index)
        assert ours.dtype == bool and ours.shape == shape
        assert np.array_equal(ours, dropout_mask(rate, shape, Context(seed, index)))


def test_dropout_seed_and_batch_size_are_data_not_structure():
    spec = CASES["dropout_vector"]
    compile_gradient(spec)
    builds = cache_info().builds
    for seed, batch in [(1, 4), (2, 6), (7, 1)]:
        other = spec.replace(seed=seed, batch=batch)
        params, X, y = batch_for(other, seed=seed)
        assert rel_error(network_gradient(other, params, X, y), reference_gradient(other, params, X, y)) <= TOL
    assert cache_info().builds == builds  # one compilation served every seed and batch size


def test_batchnorm_unit_is_the_batch():
    spec = CASES["batchnorm_vector"]
    assert symbolic_layers.couples_batch(spec) and not symbolic_layers.couples_batch(CASES["layernorm_vector"])
    assert structure_key(spec) != structure_key(spec.replace(batch=3))
    assert structure_key(CASES["conv2d"]) == structure_key(CASES["conv2d"].replace(batch=9))
    # X's batch size decides the expression, whatever spec.batch says
    for B in (1, 2, 7):
        params, X, y = batch_for(spec, seed=B, batch=B)
        err = rel_error(network_gradient(spec, params, X, y), reference_gradient(spec, params, X, y))
        assert err <= TOL, (B, err)


#: small enough for ``sympy.diff`` on the whole expanded expression (the "diff" method)
DIFF_CASES = {
    "conv1d": CASES["conv1d"],
    "embedding": NetworkSpec((3,), (Embedding(4, 2),) + head(1), "mse", batch=3),
    "dropout": CASES["dropout_vector"],
    "maxpool2d": CASES["maxpool2d_overlapping"],
    "layernorm": NetworkSpec((2, 3), (LayerNorm(),) + head(1), "mse", batch=3),
    "rnn": NetworkSpec((2, 2), (RNN(2),) + head(1), "mse", batch=3),
}


@pytest.mark.parametrize("name", list(DIFF_CASES))
def test_graph_method_equals_sympy_diff(name):
    spec = DIFF_CASES[name]
    params, X, y = batch_for(spec)
    graph = network_gradient(spec, params, X, y, method="graph")
    diff = network_gradient(spec, params, X, y, method="diff", timeout=60)
    assert rel_error(graph, diff) <= 1e-12


@pytest.mark.parametrize("name", ["conv2d_stride_pad_dilation", "maxpool2d", "batchnorm_chw", "embedding",
                                  "attention_2heads_causal", "lstm", "dropout_chw"])
def test_exact_agrees_with_float_symbolic(name):
    spec = CASES[name]
    params, X, y = batch_for(spec)
    exact = exact_gradient(spec, params, X, y, dps=40)
    assert normwise(network_gradient(spec, params, X, y), exact) <= 1e-12


def test_small_conv_and_attention_compile_fast():
    # the sizes the oracle is meant for: well inside the default 10 s on a 2-core machine
    for spec in (NetworkSpec((1, 4, 4), (Conv2d(2, 3),) + head(), "mse"),
                 NetworkSpec((3, 4), (Attention(2),) + head(), "mse")):
        t0 = time.perf_counter()
        compile_gradient(spec.replace(loss="huber"))  # a structure no other test compiled
        assert time.perf_counter() - t0 < 5.0


def test_too_large_layered_spec_is_skipped_quickly():
    # few parameters, a huge expression: refused from the estimate, before anything is built
    big = NetworkSpec((1, 128, 128), (Conv2d(2, 3), MaxPool2d(16)) + head(1), "mse")
    assert big.n_params < 2000
    t0 = time.perf_counter()
    with pytest.raises(SymbolicSkipped, match="too large") as info:
        network_gradient(big, Network(big).init_params(), np.zeros((1, 1, 128, 128)), np.zeros((1, 1)))
    assert info.value.kind == "size"
    assert time.perf_counter() - t0 < 1.0
    # too many parameters
    wide = NetworkSpec((3, 8, 8), (Conv2d(8, 3),) + head(10), "mse")
    with pytest.raises(SymbolicSkipped, match="max_params"):
        compile_gradient(wide)
    # the time limit: a spec that fits the size limits but not a tiny timeout stops early
    slow = NetworkSpec((3, 8, 8), (Conv2d(4, 3, activation="relu"), MaxPool2d(2)) + head(3), "mse")
    t0 = time.perf_counter()
    with pytest.raises(SymbolicSkipped, match="too slow") as info:
        compile_gradient(slow, timeout=0.2)
    assert info.value.kind == "time"
    assert time.perf_counter() - t0 < 2.0


def test_invalid_inputs_raise_clear_errors():
    spec = CASES["conv2d"]
    params, X, y = batch_for(spec)
    with pytest.raises(ValueError, match=r"expected \(batch,\) \+ \(1, 4, 4\)"):
        network_gradient(spec, params, X.reshape(3, 16), y)
    emb = CASES["embedding"]
    params, X, y = batch_for(emb)
    with pytest.raises(ValueError, match="integer indices in"):
        network_gradient(emb, params, X + 5, y)
    with pytest.raises(ValueError, match="integer indices in"):
        network_gradient(emb, params, X + 0.5, y)
    # one example without its batch axis
    params, X, y = batch_for(spec)
    one = network_gradient(spec, params, X[0], y[:1])
    assert rel_error(one, reference_gradient(spec, params, X[:1], y[:1])) <= TOL
