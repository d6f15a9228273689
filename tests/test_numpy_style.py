"""The numpy-style adapters: layer classes with forward/backward, and the origin document's
``W += lr * ...`` training step (examples/origin_xor_step.py) read as ``grads = -(new - old) / lr``.

Every verdict here is gradcheck's own (its computed tolerance, no rtol override): correct code
passes at float64 resolution, and each planted mistake fails with the parameter it corrupts named.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import gradcheck
from gradcheck.adapters import numpy_style

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "origin_xor_step.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("origin_xor_step_under_test", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ex = _load_example()
sig, dsig = ex.sigmoid, ex.sigmoid_derivative


def _check(step, **kw):
    case = ex.factory(step)
    return gradcheck.check(case["fn"], case["params"], case["X"], case["y"], loss_fn=case["loss_fn"], **kw)


# -- the origin document's step ---------------------------------------------------------------------
def test_origin_step_passes_at_full_float64_resolution():
    result = _check(ex.train_step)
    assert result.passed, str(result)
    # complex step (the step is analytic numpy) agrees to a few ulps: the update extraction with
    # lr = 2**20 loses nothing
    assert result.max_rel_error < 1e-13, str(result)
    assert set(result.tensors) == {"weights_input_hidden", "weights_hidden_output", "bias_hidden", "bias_output"}


def test_origin_example_trains_like_the_document():
    """The example's loop is the document's algorithm: the reference reproduction of the
    document's run (reference/train.py) gives the same final outputs."""
    from reference.train import reproduce_origin_xor

    _, out = ex.train(epochs=2000)
    np.testing.assert_allclose(out, reproduce_origin_xor(epochs=2000), rtol=1e-12, atol=1e-14)


def _hidden_delta_from_pre_activation(w, X, y, learning_rate):
    hidden_input = np.dot(X, w["weights_input_hidden"]) + w["bias_hidden"]
    hidden_output = sig(hidden_input)
    final_output = sig(np.dot(hidden_output, w["weights_hidden_output"]) + w["bias_output"])
    d_output = (y - final_output) * dsig(final_output)
    d_hidden = d_output.dot(w["weights_hidden_output"].T) * dsig(hidden_input)  # mistake: z, not sigmoid(z)
    w["weights_hidden_output"] += hidden_output.T.dot(d_output) * learning_rate
    w["bias_output"] += np.sum(d_output, axis=0, keepdims=True) * learning_rate
    w["weights_input_hidden"] += X.T.dot(d_hidden) * learning_rate
    w["bias_hidden"] += np.sum(d_hidden, axis=0) * learning_rate


def _output_delta_from_pre_activation(w, X, y, learning_rate):
    hidden_output = sig(np.dot(X, w["weights_input_hidden"]) + w["bias_hidden"])
    final_input = np.dot(hidden_output, w["weights_hidden_output"]) + w["bias_output"]
    final_output = sig(final_input)
    d_output = (y - final_output) * dsig(final_input)  # mistake: z, not sigmoid(z)
    d_hidden = d_output.dot(w["weights_hidden_output"].T) * dsig(hidden_output)
    w["weights_hidden_output"] += hidden_output.T.dot(d_output) * learning_rate
    w["bias_output"] += np.sum(d_output, axis=0, keepdims=True) * learning_rate
    w["weights_input_hidden"] += X.T.dot(d_hidden) * learning_rate
    w["bias_hidden"] += np.sum(d_hidden, axis=0) * learning_rate


def _transposed_input_weights(w, X, y, learning_rate):
    hidden_output, final_output = ex.forward(w, X)
    d_output = (y - final_output) * dsig(final_output)
    d_hidden = d_output.dot(w["weights_hidden_output"].T) * dsig(hidden_output)
    w["weights_hidden_output"] += hidden_output.T.dot(d_output) * learning_rate
    w["bias_output"] += np.sum(d_output, axis=0, keepdims=True) * learning_rate
    w["weights_input_hidden"] += d_hidden.T.dot(X) * learning_rate  # mistake: (X.T d)^T; silent for 2x2
    w["bias_hidden"] += np.sum(d_hidden, axis=0) * learning_rate


def _bias_output_wrong_sign(w, X, y, learning_rate):
    hidden_output, final_output = ex.forward(w, X)
    d_output = (y - final_output) * dsig(final_output)
    d_hidden = d_output.dot(w["weights_hidden_output"].T) * dsig(hidden_output)
    w["weights_hidden_output"] += hidden_output.T.dot(d_output) * learning_rate
    w["bias_output"] -= np.sum(d_output, axis=0, keepdims=True) * learning_rate  # mistake: -=
    w["weights_input_hidden"] += X.T.dot(d_hidden) * learning_rate
    w["bias_hidden"] += np.sum(d_hidden, axis=0) * learning_rate


def _output_weights_updated_first(w, X, y, learning_rate):
    hidden_output, final_output = ex.forward(w, X)
    d_output = (y - final_output) * dsig(final_output)
    w["weights_hidden_output"] += hidden_output.T.dot(d_output) * learning_rate
    # mistake: the hidden delta is computed through the already-updated output weights
    d_hidden = d_output.dot(w["weights_hidden_output"].T) * dsig(hidden_output)
    w["bias_output"] += np.sum(d_output, axis=0, keepdims=True) * learning_rate
    w["weights_input_hidden"] += X.T.dot(d_hidden) * learning_rate
    w["bias_hidden"] += np.sum(d_hidden, axis=0) * learning_rate


MISTAKES = [
    # (step, the tensors it corrupts, the diagnosis pattern gradcheck should name or None)
    (_hidden_delta_from_pre_activation, {"weights_input_hidden", "bias_hidden"}, None),
    (_output_delta_from_pre_activation, None, None),  # every tensor is downstream of d_output
    (_transposed_input_weights, {"weights_input_hidden"}, "transposed"),
    (_bias_output_wrong_sign, {"bias_output"}, "sign_flip"),
    (_output_weights_updated_first, {"weights_input_hidden", "bias_hidden"}, None),
]


@pytest.mark.parametrize("step, corrupted, pattern", MISTAKES, ids=[m[0].__name__.strip("_") for m in MISTAKES])
def test_classic_mistakes_fail_naming_the_parameter(step, corrupted, pattern):
    result = _check(step)
    assert not result.passed, str(result)
    failing = {k for k, t in result.tensors.items() if not t.passed}
    if corrupted is None:
        assert failing == set(result.tensors), str(result)
    else:
        assert failing == corrupted, str(result)
        assert result.worst_param in corrupted, str(result)
    if pattern is not None:
        assert result.diagnosis is not None and result.diagnosis.pattern == pattern, str(result)
    # the explanation names the worst tensor
    assert result.worst_param in str(result)


def test_update_before_delta_is_reported_as_not_a_gradient_step():
    result = _check(_output_weights_updated_first)
    assert any("not linear in the learning rate" in n for n in result.notes), str(result)
    assert not any("not linear" in n for n in _check(ex.train_step).notes)


def test_the_documents_own_learning_rate_would_lose_digits():
    """Why the default lr is 2**20: with the document's lr = 0.1, new - old cancels ~12 digits of
    the update and the implied gradient is off by ~1e-12, far above what the complex step resolves."""
    fn, params = numpy_style.from_update_step(ex.train_step, ex.half_squared_error, ex.initial_weights(), lr=0.1)
    coarse = gradcheck.check(fn, params, ex.X, ex.y, loss_fn=fn.loss)
    assert coarse.max_rel_error > 1e-13
    assert _check(ex.train_step).max_rel_error < 1e-13


def test_update_step_leaves_its_inputs_alone_and_validates():
    fn, params = numpy_style.from_update_step(ex.train_step, ex.half_squared_error, ex.initial_weights())
    before = {k: v.copy() for k, v in params.items()}
    loss, grads = fn(params, ex.X, ex.y)
    assert all(np.array_equal(before[k], params[k]) for k in params)
    assert set(grads) == set(params) and np.isfinite(float(loss))
    with pytest.raises(ValueError, match="lr=0"):
        numpy_style.from_update_step(ex.train_step, ex.half_squared_error, params, lr=0)
    with pytest.raises(TypeError, match="step must be callable"):
        numpy_style.from_update_step(None, ex.half_squared_error, params)
    with pytest.raises(KeyError, match="missing"):
        fn({"weights_input_hidden": params["weights_input_hidden"]}, ex.X, ex.y)


def test_a_step_that_broadcasts_a_bias_fails_with_the_shape_named():
    def broadcasting(w, X, y, learning_rate):
        hidden_output, final_output = ex.forward(w, X)
        d_output = (y - final_output) * dsig(final_output)
        w["bias_output"] = w["bias_output"] + d_output * learning_rate  # (1, 1) + (4, 1): no sum over the batch
    result = _check(broadcasting)
    assert not result.passed and "shape of params['bias_output']" in str(result)


# -- layer classes with forward/backward ----------------------------------------------------------------
class Dense:
    """x @ W + b; backward leaves dW, db and returns the input gradient."""

    def __init__(self, n_in, n_out, rng, bias_mean=False, transpose_dW=False):
        self.W = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
        self.b = rng.standard_normal(n_out) * 0.1
        self.bias_mean, self.transpose_dW = bias_mean, transpose_dW

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, g):
        self.dW = (g.T @ self.x) if self.transpose_dW else self.x.T @ g
        self.db = g.mean(axis=0) if self.bias_mean else g.sum(axis=0)  # planted: mean = missing factor N
        return g @ self.W.T


class Tanh:
    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, g):
        return g * (1 - self.out ** 2)


class DictDense:
    """The params/grads dict convention (cs231n-style)."""

    def __init__(self, n_in, n_out, rng):
        self.params = {"weight": rng.standard_normal((n_in, n_out)), "bias": np.zeros(n_out)}
        self.grads = {}

    def forward(self, x):
        self.cache = x
        return x @ self.params["weight"] + self.params["bias"]

    def backward(self, g):
        self.grads = {"weight": self.cache.T @ g, "bias": g.sum(axis=0)}
        return g @ self.params["weight"].T


@pytest.fixture
def batch():
    rng = np.random.default_rng(3)
    return rng.standard_normal((6, 3)), rng.standard_normal((6, 2))


def _net(**bugs):
    rng = np.random.default_rng(7)
    return [Dense(3, 4, rng), Tanh(), Dense(4, 2, rng, **bugs)]


def test_layer_classes_pass(batch):
    X, y = batch
    fn, params = numpy_style.as_fn(_net(), "mse")
    assert list(params) == ["0.W", "0.b", "2.W", "2.b"]
    result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
    assert result.passed and result.max_rel_error < 1e-12, str(result)


def test_layer_bias_mean_instead_of_sum_is_named(batch):
    X, y = batch
    fn, params = numpy_style.as_fn(_net(bias_mean=True), "mse")
    result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
    assert not result.passed and result.worst_param == "2.b", str(result)
    assert {k for k, t in result.tensors.items() if not t.passed} == {"2.b"}


def test_layer_transposed_weight_gradient_is_a_shape_fault(batch):
    X, y = batch
    fn, params = numpy_style.as_fn(_net(transpose_dW=True), "mse")
    result = gradcheck.check(fn, params, X, y)
    assert not result.passed and result.worst_param == "2.W" and "transposed?" in str(result), str(result)


def test_params_dict_convention_and_loss_object(batch):
    X, y = batch

    class HalfSSE:
        def forward(self, out, t):
            self.diff = out - t
            return 0.5 * np.sum(self.diff ** 2)

        def backward(self):
            return self.diff

    rng = np.random.default_rng(1)
    net = [DictDense(3, 4, rng), Tanh(), DictDense(4, 2, rng)]
    fn, params = numpy_style.as_fn(net, HalfSSE())
    assert list(params) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
    assert result.passed, str(result)


def test_layer_state_is_restored_after_every_call(batch):
    X, y = batch
    net = _net()
    net[0].forward(X)  # a cache from earlier use
    W, cache = net[0].W, net[0].x
    W_bytes = W.tobytes()
    fn, params = numpy_style.as_fn(net, "mse", params=["W", "b"])
    params = {k: v + 0.5 for k, v in params.items()}
    fn(params, X[:2], y[:2])
    assert net[0].W is W and W.tobytes() == W_bytes
    assert net[0].x is cache and not hasattr(net[0], "dW") and not hasattr(net[2], "x")


def test_caches_taken_for_parameters_get_a_clear_error(batch):
    X, y = batch
    net = _net()
    net[0].forward(X)  # leaves a float array attribute `x`, which discovery cannot tell from a parameter
    fn, params = numpy_style.as_fn(net, "mse")
    assert "0.x" in params
    result = gradcheck.check(fn, params, X, y)
    assert not result.passed and "params=[...]" in str(result), str(result)


def test_layer_argument_errors():
    with pytest.raises(TypeError, match=r"layers\[1\] \(object\) has no forward"):
        numpy_style.as_fn([Tanh(), object()])
    with pytest.raises(ValueError, match="loss='huber'"):
        numpy_style.as_fn([Tanh()], "huber")
    with pytest.raises(ValueError, match="no parameters found"):
        numpy_style.as_fn([Tanh()])
