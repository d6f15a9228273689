"""NetworkSpec with layer kinds beyond dense: shapes, parameter names, JSON/repr round trips,
validation that names the layer, field and value; and the reference network's graph path."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import gradcheck
from gradcheck import spec as spec_module
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
from reference.network import Network

CNN = NetworkSpec(input_dim=(1, 6, 6), layers=(
    Conv2d(2, 3, padding=1, activation="relu"), MaxPool2d(2), BatchNorm(), Flatten(), Layer(3, "identity")),
    loss="softmax_cross_entropy", batch=3)
SEQ = NetworkSpec(input_dim=(5,), layers=(
    Embedding(7, 4), Attention(2, causal=True), LayerNorm(), LSTM(3), Flatten(), Layer(2, "identity")),
    loss="mse", skips=((1, 3),))


def test_shapes_and_readable_parameter_names():
    assert CNN.shapes == ((1, 6, 6), (2, 6, 6), (2, 3, 3), (2, 3, 3), (18,), (3,))
    assert CNN.param_shapes() == {"conv1.W": (2, 1, 3, 3), "conv1.b": (2,), "bn3.gamma": (2,), "bn3.beta": (2,),
                                  "W5": (18, 3), "b5": (3,)}
    assert list(SEQ.param_shapes()) == ["embed1.E", "attn2.Wq", "attn2.Wk", "attn2.Wv", "attn2.Wo", "ln3.gamma",
                                        "ln3.beta", "lstm4.Wx", "lstm4.Wh", "lstm4.b", "W6", "b6"]
    assert SEQ.param_shapes()["lstm4.Wx"] == (4, 12) and SEQ.output_dim == 2
    assert CNN.layer_kinds == ("conv2d", "maxpool2d", "batchnorm", "flatten", "dense")
    assert not CNN.is_dense and SEQ.input_is_integer and not CNN.input_is_integer
    assert CNN.label() == "1x6x6-conv2d(2,3,padding=1,relu)-maxpool2d-batchnorm-flatten-3(identity) softmax_cross_entropy b3 float64"


@pytest.mark.parametrize("spec", [CNN, SEQ, NetworkSpec(input_dim=(2, 7), layers=(
    Conv1d(3, 2, stride=2, padding=1, dilation=2, bias=False), RNN(2), Dropout(0.25), AvgPool2d if False else Flatten(),
    Layer(1, "sigmoid")), loss="bce", dtype="float32", init="he", seed=5)])
def test_json_and_repr_round_trip(spec):
    assert NetworkSpec.from_json(spec.to_json()) == spec
    assert eval(repr(spec), vars(spec_module)) == spec
    assert hash(spec) == hash(NetworkSpec.from_dict(spec.to_dict()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.layers[0].kind = "x"  # type: ignore[misc]


def test_dense_json_keeps_its_historical_form():
    dense = NetworkSpec(2, (Layer(3, "tanh"), Layer(1, "identity")), "mse")
    assert dense.to_dict()["layers"] == [{"width": 3, "activation": "tanh", "bias": True},
                                         {"width": 1, "activation": "identity", "bias": True}]
    assert dense.to_dict()["input_dim"] == 2 and dense.is_dense and dense.widths == (2, 3, 1)
    assert NetworkSpec((2,), dense.layers, "mse") == dense  # a one-axis shape is the dense width


@pytest.mark.parametrize("layers, input_dim, message", [
    ((Conv2d(2, 9), Flatten(), Layer(1, "identity")), (1, 6, 6),
     "NetworkSpec.layers[0]: Conv2d.kernel=9: the kernel spans 9 (dilation 1), larger than the padded input "
     "height 6 (6 + 2 x padding 0) (input shape (1, 6, 6))"),
    ((Conv2d(2, 3, dilation=3), Flatten(), Layer(1, "identity")), (1, 6, 6),
     "NetworkSpec.layers[0]: Conv2d.kernel=3: the kernel spans 7 (dilation 3)"),
    ((Conv2d(0, 3), Flatten(), Layer(1, "identity")), (1, 6, 6),
     "NetworkSpec.layers[0]: Conv2d.channels=0: expected an integer >= 1"),
    ((Conv2d(2, 3),), (1, 6, 6),
     "NetworkSpec.layers[0]=Conv2d(channels=2, kernel=3, stride=1, padding=0, dilation=1, bias=True, "
     "activation='identity'): expected a vector per example for the loss, got shape (2, 4, 4)"),
    ((Flatten(), Embedding(3, 2), Flatten(), Layer(1, "identity")), (4,),
     "NetworkSpec.layers[1]=Embedding(vocab=3, dim=2): expected an Embedding only as the first layer"),
    ((Attention(3), Flatten(), Layer(1, "identity")), (2, 4),
     "NetworkSpec.layers[0]: Attention.heads=3: does not divide the 4 features"),
    ((Conv1d(2, 2), Flatten(), Layer(1, "identity")), (1, 2, 6),
     "NetworkSpec.layers[0]: conv1d takes (channels, length) per example, got shape (1, 2, 6)"),
    ((MaxPool2d(4), Flatten(), Layer(1, "identity")), (1, 3, 5),
     "NetworkSpec.layers[0]: MaxPool2d.size=4: larger than the input 3x5"),
    ((Dropout(1.0), Layer(1, "identity")), 3, "NetworkSpec.layers[0]: Dropout.rate=1.0: expected a number in [0, 1)"),
    ((BatchNorm(eps=0), Layer(1, "identity")), 3, "NetworkSpec.layers[0]: BatchNorm.eps=0: expected a number > 0"),
    ((Layer(2, "tanh"),), (0, 2), "NetworkSpec.input_dim[0]=0: expected an integer >= 1"),
])
def test_validation_names_layer_field_and_value(layers, input_dim, message):
    with pytest.raises(ValueError) as info:
        NetworkSpec(input_dim=input_dim, layers=layers, loss="mse")
    assert str(info.value).startswith(message)


def test_skips_need_equal_shapes_and_uniform_init_is_dense_only():
    with pytest.raises(ValueError, match=r"skips\[0\]=\(0, 2\): expected equal shapes, got \(3, 4\) \(source\) "
                                         r"and \(3, 2\) \(target\)"):
        NetworkSpec((3, 4), (Layer(4, "tanh"), Layer(2, "tanh"), Flatten(), Layer(1, "identity")), "mse",
                    skips=((0, 2),))
    with pytest.raises(ValueError, match="init='uniform': expected normal, xavier or he"):
        CNN.replace(init="uniform")
    with pytest.raises(ValueError, match=r"layers\[2\]\.kind='conv3d': expected one of"):
        NetworkSpec.from_dict({**CNN.to_dict(), "layers": [*CNN.to_dict()["layers"][:2], {"kind": "conv3d"},
                                                            *CNN.to_dict()["layers"][3:]]})
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['size'\] for batchnorm"):
        NetworkSpec.from_dict({**CNN.to_dict(), "layers": [*CNN.to_dict()["layers"][:2], {"kind": "batchnorm", "size": 2},
                                                            *CNN.to_dict()["layers"][3:]]})
    with pytest.raises(ValueError, match="only dense networks have widths"):
        _ = CNN.widths


# -- the reference network's graph path ---------------------------------------------------------------
def test_graph_path_equals_dense_path_on_dense_layers():
    """A dense network with a rate-0 dropout appended runs the layer-registry path; its loss and
    gradients must equal the dense path's: the same arithmetic, so to the last bit (or ~1 ulp)."""
    dense = NetworkSpec(3, (Layer(4, "tanh"), Layer(4, "relu"), Layer(4, "tanh"), Layer(2, "identity")), "mse",
                        batch=5, skips=((1, 3),))
    graph = dense.replace(layers=[*dense.to_dict()["layers"], {"kind": "dropout", "rate": 0.0}])
    params = Network(dense).init_params()
    assert {k: v.tolist() for k, v in params.items()} == {k: v.tolist() for k, v in Network(graph).init_params().items()}
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    (l1, g1), (l2, g2) = Network(dense)(params, X, y), Network(graph)(params, X, y)
    assert l1 == pytest.approx(l2, rel=1e-15)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-14, atol=1e-15)


def test_graph_network_is_pure_and_checks_its_input():
    net = Network(CNN)
    params = net.init_params()
    X = np.random.default_rng(1).standard_normal((3, 1, 6, 6))
    y = np.array([0, 2, 1])
    before = {k: v.copy() for k, v in params.items()}, X.copy()
    loss1, grads1 = net(params, X, y)
    loss2, grads2 = net(params, X, y)
    assert loss1 == loss2 and all(np.array_equal(grads1[k], grads2[k]) for k in grads1)
    assert all(np.array_equal(before[0][k], params[k]) for k in params) and np.array_equal(before[1], X)
    with pytest.raises(ValueError, match=r"X has shape \(3, 36\); expected \(batch,\) \+ \(1, 6, 6\)"):
        net(params, X.reshape(3, 36), y)
    seq = Network(SEQ)
    with pytest.raises(ValueError, match="takes integer indices"):
        seq(seq.init_params(), np.zeros((4, 5)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="second order is implemented for dense networks"):
        net.hvp(params, X, y, params)


def test_checker_passes_a_correct_cnn_and_catches_a_planted_layer_bug():
    """Black-box check of the reference CNN (float64: the default error model), then the same
    network with a batchnorm backward that treats mean and variance as constants: caught in the
    parameters before the batchnorm (conv1.W, conv1.b), not in W5."""
    from reference.layers import get_layer
    from reference.layers.base import LayerKind

    net = Network(CNN)
    params = net.init_params()
    X = np.random.default_rng(2).standard_normal((3, 1, 6, 6))
    y = np.array([0, 2, 1])
    assert gradcheck.check(net, params, X, y).passed
    right = get_layer("batchnorm")

    def backward(node, p, cache, dy):  # dx as if mean and variance were constants
        _, grads = right.backward(node, p, cache, dy)
        xhat, inv_std, axes = cache
        return dy * p["gamma"].reshape(inv_std.shape[:2] + (1,) * (dy.ndim - 2)) * inv_std, grads

    buggy = LayerKind("batchnorm", right.init, right.forward, backward)
    result = gradcheck.check(Network(CNN, layers={"batchnorm": buggy}), params, X, y, spec=CNN)
    assert not result.passed
    failing = {t.name for t in result.tensors.values() if not t.passed}
    assert failing and failing <= {"conv1.W", "conv1.b"}
    if failing == {"conv1.W", "conv1.b"}:  # every parameter below the batchnorm, none from it on
        assert result.diagnosis is not None and result.diagnosis.pattern == "input_gradient"
        assert result.diagnosis.evidence == {"last_wrong_layer": 1, "first_right_layer": 3}
        assert "layer 2 (maxpool2d) or layer 3 (batchnorm)" in result.diagnosis.message


def test_input_gradient_is_not_claimed_when_the_wrong_layer_is_not_below_the_right_ones():
    """A conv backward whose own dW is 1.5x off (its dx right): conv1.W fails while conv1.b and
    every later layer pass, which is not "everything below a layer": no input_gradient."""
    from reference.layers import get_layer
    from reference.layers.base import LayerKind

    right = get_layer("conv2d")

    def backward(node, p, cache, dy):
        dx, grads = right.backward(node, p, cache, dy)
        return dx, {**grads, "W": 1.5 * grads["W"]}

    net = Network(CNN, layers={"conv2d": LayerKind("conv2d", right.init, right.forward, backward)})
    params = net.init_params()
    X = np.random.default_rng(2).standard_normal((3, 1, 6, 6))
    result = gradcheck.check(net, params, X, np.array([0, 2, 1]))
    assert not result.passed and result.worst_param == "conv1.W"
    assert result.diagnosis is None or result.diagnosis.pattern != "input_gradient"


def test_batchnorm_running_statistics_are_left_alone_by_checks_and_follow_torch_in_training():
    """A gradient check (``loss_and_grads``) never moves the running statistics; a training step
    updates them with torch's rule (momentum 0.1, unbiased variance), and evaluation mode uses them.
    Compared with ``torch.nn.functional.batch_norm`` in float64 to 1e-12 (the same few operations)."""
    torch = pytest.importorskip("torch")
    from reference.train import train

    spec = NetworkSpec((2, 3, 3), (BatchNorm(momentum=0.25), Flatten(), Layer(2, "identity")), "mse", batch=4)
    net = Network(spec)
    params = net.init_params()
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((4, 2, 3, 3)) * 2 + 1, rng.standard_normal((4, 2))
    before = {k: v.copy() for k, v in net.running.items()}
    assert gradcheck.check(net, params, X, y).passed
    assert all(np.array_equal(before[k], net.running[k]) for k in before)  # untouched by the check
    train(net, params, X, y, lr=0.0, epochs=1)  # lr 0: only the statistics move
    rm, rv = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    torch.nn.functional.batch_norm(torch.from_numpy(X), rm, rv, training=True, momentum=0.25)
    np.testing.assert_allclose(net.running["bn1.running_mean"], rm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(net.running["bn1.running_var"], rv.numpy(), rtol=1e-12)
    expected = torch.nn.functional.batch_norm(torch.from_numpy(X), rm, rv, torch.from_numpy(params["bn1.gamma"]),
                                              torch.from_numpy(params["bn1.beta"]), training=False)
    flat = expected.numpy().reshape(4, -1) @ params["W3"] + params["b3"]
    np.testing.assert_allclose(net.predict(params, X, training=False), flat, rtol=1e-12)
