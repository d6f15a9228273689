"""Property tests of the layer-kind strategies (``gradcheck.strategies.layer_specs`` / ``layer_cases``):
valid networks by construction, every kind reachable, shrinking to the smallest network, a printed
repr that rebuilds the failing network, and argument errors that name the argument."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis.errors import InvalidArgument

import gradcheck
from gradcheck import spec as spec_module
from gradcheck import strategies as gst
from gradcheck.spec import Conv2d, Flatten, Layer, NetworkSpec
from reference.layers import LAYERS
from reference.layers.base import LayerKind
from reference.losses import LOSSES
from reference.network import Network

FEW = settings(max_examples=30, deadline=None, database=None)
SHRINK = settings(database=None, max_examples=300, derandomize=True)


@FEW
@given(gst.layer_cases())
def test_generated_cases_are_valid_and_round_trip(case):
    spec = case.spec
    assert spec.layers[-1].kind == "dense" and spec.output_dim >= LOSSES[spec.loss].min_outputs
    assert NetworkSpec.from_json(spec.to_json()) == spec
    assert eval(repr(spec), vars(spec_module)) == spec
    assert case.X.shape == (spec.batch, *spec.input_shape)
    assert case.X.dtype.kind == ("i" if spec.input_is_integer else "f")
    assert set(case.params) == set(spec.param_shapes())
    loss, grads = Network(spec)(case.params, case.X, case.y)
    assert math.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads.values())


@pytest.mark.parametrize("kind", gst.LAYER_KINDS)
def test_every_kind_is_generated_and_its_smallest_network_is_small(kind):
    """find() with an always-true condition returns the shrunk (simplest) network of the kind."""
    spec = find(gst.layer_specs(kind=kind, activation="tanh", loss="mse"), lambda s: True, settings=SHRINK)
    assert kind in spec.layer_kinds
    assert spec.batch == 1 and spec.n_params <= 40, repr(spec)


def test_a_failing_network_shrinks_to_a_small_one_whose_repr_rebuilds_it():
    """A conv backward that doubles dW: the smallest failing network Hypothesis finds is a one-channel
    convolution with a kernel of 1, and its printed repr rebuilds it exactly."""
    right = LAYERS["conv2d"]

    def backward(node, params, cache, dy):
        dx, grads = right.backward(node, params, cache, dy)
        return dx, {**grads, "W": 2 * grads["W"]}

    buggy = LayerKind("conv2d", right.init, right.forward, backward)

    def fails(case) -> bool:
        """Cheap while shrinking: the claimed dW against a central difference along dW itself
        (float64, h = 1e-6: error ~1e-9 of the slope; the bug doubles it)."""
        net = Network(case.spec, layers={"conv2d": buggy})
        _, grads = net(case.params, case.X, case.y)
        d = grads["conv1.W"]
        if not np.any(d):
            return False
        h = 1e-6 / np.linalg.norm(d)
        moved = [{**case.params, "conv1.W": case.params["conv1.W"] + s * h * d} for s in (1, -1)]
        slope = (net.loss(moved[0], case.X, case.y) - net.loss(moved[1], case.X, case.y)) / (2 * h)
        return abs(np.sum(d * d) - slope) > 0.25 * abs(slope)

    case = find(gst.layer_cases(kind="conv2d", activation="tanh", loss="mse", dtypes=("float64",)), fails,
                settings=SHRINK)
    # the full check agrees that the shrunk network fails, and localizes it to the convolution
    result = gradcheck.check(Network(case.spec, layers={"conv2d": buggy}), case.params, case.X, case.y)
    assert not result.passed and result.worst_param == "conv1.W"
    conv = case.spec.layers[0]
    assert isinstance(conv, Conv2d) and conv.channels == 1 and conv.kernel == 1 and case.spec.batch == 1
    assert eval(repr(case.spec), vars(spec_module)) == case.spec
    assert isinstance(case.spec.layers[-2], Flatten | Layer)


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "conv3d"}, "kind='conv3d': expected names among conv1d, conv2d"),
    ({"kind": ()}, "kind=(): expected names among"),
    ({"activation": "swish"}, "'swish' is not one of the known activations"),
    ({"dtypes": ("float16",)}, "dtypes=('float16',): expected names among float64, float32"),
    ({"max_batch": 0}, "max_batch=0: expected an integer >= 1"),
])
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        gst.layer_specs(**kwargs).example()
