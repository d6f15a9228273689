"""micrograd 0.1.0 adapter: ``nn.MLP`` and hand-written ``_backward`` closures.

micrograd 0.1.0 has ``relu`` but no ``tanh`` on ``Value``, so the custom ops here are written the
way its engine writes its own (a new ``Value`` with a ``_backward`` closure). Verdicts are
gradcheck's own computed tolerances (no rtol).
"""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

pytest.importorskip("micrograd", reason="micrograd is not installed (pip install 'gradcheck[micrograd]')")

from micrograd import nn
from micrograd.engine import Value

import gradcheck
from gradcheck.adapters import micrograd as adapter


def tanh(v: Value, bug: str | None = None) -> Value:
    t = math.tanh(v.data)
    out = Value(t, (v,), "tanh")

    def _backward():
        slope = (1 - t) if bug == "slope" else (1 - t ** 2)  # planted: d tanh = 1 - t, not 1 - t^2
        v.grad += slope * out.grad

    out._backward = _backward
    return out


def leaky_relu(v: Value, leak: float) -> Value:
    """A ReLU whose hand-written backward lets ``leak`` of the gradient through at x < 0 (should be 0)."""
    out = Value(max(v.data, 0.0), (v,), "relu")

    def _backward():
        v.grad += (1.0 if v.data > 0 else leak) * out.grad

    out._backward = _backward
    return out


class TanhNet(nn.Module):
    """2 -> 3 (custom tanh) -> 1, built from micrograd's Layers."""

    def __init__(self, bug=None, sign_bug=False):
        self.layers = [nn.Layer(2, 3, nonlin=False), nn.Layer(3, 1, nonlin=False)]
        self.bug, self.sign_bug = bug, sign_bug

    def __call__(self, x):
        h = [tanh(v, self.bug) for v in self.layers[0](x)]
        return self.layers[1](h)

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]


class ReluNet(TanhNet):
    def __init__(self, leak):
        super().__init__()
        self.leak = leak

    def __call__(self, x):
        return self.layers[1]([leaky_relu(v, self.leak) for v in self.layers[0](x)])


def mean_squared(model, X, y):
    total = sum(((model(x) - t[0]) ** 2 for x, t in zip(X, y)), Value(0.0))
    return total * (1.0 / len(X))


def hinge_sign_bug(model, X, y):
    """A loss written with a custom op whose backward has the wrong sign."""
    total = Value(0.0)
    for x, t in zip(X, y):
        d = model(x) - t[0]
        sq = Value(d.data ** 2, (d,), "sq")

        def _backward(d=d, sq=sq):
            d.grad += -2 * d.data * sq.grad  # planted: wrong sign
        sq._backward = _backward
        total = total + sq
    return total


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, 2)), rng.standard_normal((6, 1))


def _model(cls=TanhNet, **kw):
    random.seed(1)
    return cls(**kw)


def test_mlp_passes_and_names_follow_the_structure(batch):
    X, y = batch
    random.seed(0)
    model = nn.MLP(2, [4, 1])
    fn, params = adapter.as_fn(model, mean_squared)
    assert {k: v.shape for k, v in params.items()} == {"layers.0.w": (4, 2), "layers.0.b": (4,),
                                                       "layers.1.w": (1, 4), "layers.1.b": (1,)}
    result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
    assert result.passed, str(result)


def test_custom_backward_passes(batch):
    X, y = batch
    fn, params = adapter.as_fn(_model(), mean_squared)
    result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
    assert result.passed and result.max_rel_error < 1e-7, str(result)


@pytest.mark.parametrize("model_kw, loss, corrupted", [
    ({"bug": "slope"}, mean_squared, {"layers.0.w", "layers.0.b"}),
    ({"cls": ReluNet, "leak": 0.01}, mean_squared, {"layers.0.w", "layers.0.b"}),
    ({}, hinge_sign_bug, None),
], ids=["wrong-tanh-derivative", "leaking-relu-slope", "wrong-sign"])
def test_planted_backward_bugs_name_the_parameter(batch, model_kw, loss, corrupted):
    X, y = batch
    fn, params = adapter.as_fn(_model(**model_kw), loss)
    result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
    assert not result.passed, str(result)
    failing = {k for k, t in result.tensors.items() if not t.passed}
    if corrupted is None:  # a wrong sign in the loss flips every gradient
        assert failing == set(params) and result.diagnosis.pattern == "sign_flip", str(result)
    else:
        assert failing == corrupted and result.worst_param in corrupted, str(result)


def test_values_and_grads_are_restored(batch):
    X, y = batch
    model = _model()
    model.parameters()[0].grad = 3.5  # a stale gradient: the adapter must zero it, not add to it
    before = [(p.data, p.grad) for p in model.parameters()]
    fn, params = adapter.as_fn(model, mean_squared)
    result = gradcheck.check(fn, {k: v + 0.1 for k, v in params.items()}, X, y)
    assert result.passed, str(result)
    after = [(p.data, p.grad) for p in model.parameters()]
    assert after == before and type(model.layers[0].neurons[0].b.data) is int  # micrograd's Value(0)


def test_argument_errors():
    with pytest.raises(TypeError, match="micrograd Module"):
        adapter.as_fn(object(), mean_squared)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        adapter.as_fn(_model(), None)
    fn, params = adapter.as_fn(_model(), lambda m, X, y: 1.0)
    result = gradcheck.check(fn, params, np.zeros((1, 2)), np.zeros((1, 1)))
    assert not result.passed and "must return a micrograd Value" in str(result)
