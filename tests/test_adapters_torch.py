"""PyTorch adapter: custom ``autograd.Function`` backward code checked through ``as_fn``.

Verdicts are gradcheck's own computed tolerances (no rtol): float64 resolves the correct model to
~1e-9 or better, and each planted backward bug must fail with exactly the tensors it corrupts.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'gradcheck[torch]')")

import gradcheck
from gradcheck.adapters import torch as adapter


class LinearFn(torch.autograd.Function):
    """x @ W.T + b with a hand-written backward; ``bug`` plants one mistake."""

    @staticmethod
    def forward(ctx, x, weight, bias, bug):
        ctx.save_for_backward(x, weight)
        ctx.bug = bug
        return x @ weight.T + bias

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        grad_w = g.T @ x
        grad_b = g.sum(0)
        if ctx.bug == "sign":
            grad_w = -grad_w
        if ctx.bug == "factor":
            grad_b = g.mean(0)  # the batch-size factor is missing
        return g @ weight, grad_w, grad_b, None


class ReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, leak):
        ctx.save_for_backward(x)
        ctx.leak = leak
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        slope = torch.where(x > 0, torch.ones_like(x), torch.full_like(x, ctx.leak))  # leak should be 0
        return g * slope, None


class CustomLinear(torch.nn.Module):
    def __init__(self, n_in, n_out, bug=None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_out, n_in) / n_in ** 0.5)
        self.bias = torch.nn.Parameter(torch.randn(n_out) * 0.1)
        self.bug = bug

    def forward(self, x):
        return LinearFn.apply(x, self.weight, self.bias, self.bug)


class Net(torch.nn.Module):
    def __init__(self, fc1_bug=None, fc2_bug=None, leak=0.0):
        super().__init__()
        self.fc1 = CustomLinear(3, 5, fc1_bug)
        self.fc2 = CustomLinear(5, 2, fc2_bug)
        self.leak = leak

    def forward(self, x):
        return self.fc2(ReLUFn.apply(self.fc1(x), self.leak))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: intra-op threads only add scheduling latency (30-100x on a busy 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, 3)), rng.standard_normal((8, 2))


def _net(**bugs):
    torch.manual_seed(0)
    return Net(**bugs)


def test_correct_custom_function_model_passes(batch):
    X, y = batch
    fn, params = adapter.as_fn(_net(), torch.nn.MSELoss())
    assert list(params) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert all(v.dtype == np.float64 for v in params.values())
    result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
    assert result.passed and result.max_rel_error < 1e-7, str(result)
    # the same verdict when the finite differences go through fn itself (forward + backward)
    assert gradcheck.check(fn, params, X, y).passed


@pytest.mark.parametrize("bugs, corrupted", [
    ({"fc2_bug": "sign"}, {"fc2.weight"}),
    ({"fc1_bug": "factor"}, {"fc1.bias"}),
    ({"leak": 0.01}, {"fc1.weight", "fc1.bias"}),
], ids=["wrong-sign", "missing-factor", "leaking-relu-slope"])
def test_planted_backward_bugs_name_the_parameter(batch, bugs, corrupted):
    X, y = batch
    fn, params = adapter.as_fn(_net(**bugs), torch.nn.MSELoss())
    result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
    assert not result.passed, str(result)
    assert result.worst_param in corrupted, str(result)
    assert {k for k, t in result.tensors.items() if not t.passed} == corrupted, str(result)


def test_wrong_sign_is_diagnosed(batch):
    X, y = batch
    fn, params = adapter.as_fn(_net(fc2_bug="sign"), torch.nn.MSELoss())
    result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
    assert result.diagnosis is not None and result.diagnosis.pattern == "sign_flip", str(result)


def test_model_state_is_left_as_it_was(batch):
    """Parameters (values, dtype, identity), .grad (set and unset), buffers, mode, RNG: unchanged."""
    X, y = batch
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    model.train()
    model[0].weight.grad = torch.full_like(model[0].weight, 7.0)
    before = {n: (p, p.detach().clone(), p.dtype) for n, p in model.named_parameters()}
    grad_before = model[0].weight.grad
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    rng_state = torch.get_rng_state()

    fn, params = adapter.as_fn(model, torch.nn.MSELoss())
    result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
    assert result.passed, str(result)  # BatchNorm in training mode, float64

    for n, p in model.named_parameters():
        same, value, dtype = before[n]
        assert p is same and p.dtype == dtype == torch.float32 and torch.equal(p.detach(), value)
    assert model[0].weight.grad is grad_before and bool((grad_before == 7.0).all())
    assert all(p.grad is None for n, p in model.named_parameters() if n != "0.weight")
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())  # running stats untouched
    assert model.training and torch.equal(torch.get_rng_state(), rng_state)


def test_model_dtype_float32_is_checked_with_float32_tolerance(batch):
    X, y = batch
    fn, params = adapter.as_fn(_net(), torch.nn.MSELoss(), dtype=None)
    assert all(v.dtype == np.float32 for v in params.values())
    result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
    assert result.passed and result.dtype == "float32", str(result)
    fn_bad, params_bad = adapter.as_fn(_net(fc2_bug="sign"), torch.nn.MSELoss(), dtype=None)
    bad = gradcheck.check(fn_bad, params_bad, X, y, loss_fn=fn_bad.loss)
    assert not bad.passed and bad.worst_param == "fc2.weight", str(bad)


def _saturated_float32_torch():
    """tests/test_check_wider.py's saturated tanh 1-1-6-1 (output against its target 1) as a float32
    torch model: its float32 loss is a staircase no finite difference resolves."""
    from tests.test_check_wider import _saturated_at_target
    _, params, X, y = _saturated_at_target()
    model = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Tanh(), torch.nn.Linear(1, 6), torch.nn.Tanh(),
                                torch.nn.Linear(6, 1), torch.nn.Tanh())
    with torch.no_grad():
        for i, layer in zip((1, 2, 3), model[::2]):
            layer.weight.copy_(torch.from_numpy(params[f"W{i}"].T.copy()))
            layer.bias.copy_(torch.from_numpy(params[f"b{i}"]))
    return model, X, y


def test_a_float32_model_gets_the_float64_second_opinion():
    """Handed float64 arrays for a float32 model, the adapter runs the whole model in float64 (as
    numpy code promotes), so the checker's second opinion works for torch models too: the
    saturated network was a false alarm (2.weight off by 1.1e-2 against a tolerance of 1.1e-3) and
    passes; a 5% error in one entry is still caught, at that entry. The model is left in float32."""
    model, X, y = _saturated_float32_torch()
    fn, params = adapter.as_fn(model, torch.nn.MSELoss(), dtype=None)
    result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
    assert result.passed and result.dtype == "float32", str(result)
    assert any("judged against the loss evaluated with float64 parameters" in n for n in result.notes), result.notes

    def planted(p, X_, y_):
        loss, g = fn(p, X_, y_)
        g = dict(g, **{"2.weight": g["2.weight"].copy()})
        g["2.weight"][3, 0] *= 1.05
        return loss, g
    bad = gradcheck.check(planted, params, X, y, loss_fn=fn.loss)
    assert not bad.passed and bad.worst.label() == "2.weight[3, 0]", str(bad)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_a_widened_call_computes_in_float64_and_a_narrow_one_in_the_models_dtype(batch):
    X, y = batch
    fn, params = adapter.as_fn(_net(), torch.nn.MSELoss(), dtype=None)
    narrow_loss, narrow = fn(params, X.astype(np.float32), y.astype(np.float32))
    wide_loss, wide = fn({k: v.astype(np.float64) for k, v in params.items()}, X, y)
    assert narrow_loss.dtype == np.float32 and all(g.dtype == np.float32 for g in narrow.values())
    assert wide_loss.dtype == np.float64 and all(g.dtype == np.float64 for g in wide.values())
    assert abs(float(wide_loss) - float(narrow_loss)) <= 1e-5 * max(1.0, abs(float(wide_loss)))
    for k in narrow:  # the same function, computed more precisely
        np.testing.assert_allclose(wide[k], narrow[k], rtol=1e-3, atol=1e-5)
    mixed = dict(params, **{next(iter(params)): params[next(iter(params))].astype(np.float64)})
    assert fn.loss(mixed, X, y).dtype == np.float32  # only an all-float64 call is widened


def test_integer_class_labels_stay_integers():
    rng = np.random.default_rng(2)
    X, labels = rng.standard_normal((6, 3)), rng.integers(0, 3, 6)
    torch.manual_seed(0)
    fn, params = adapter.as_fn(torch.nn.Linear(3, 3), torch.nn.CrossEntropyLoss())
    result = gradcheck.check(fn, params, X, labels, loss_fn=fn.loss)
    assert result.passed, str(result)


def test_dropout_needs_a_seed(batch):
    X, y = batch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Dropout(0.5), torch.nn.Linear(6, 2)).train()
    fn, params = adapter.as_fn(model, torch.nn.MSELoss())
    unseeded = gradcheck.check(fn, params, X, y)
    assert not unseeded.passed and unseeded.problems[0].kind == "nondeterministic", str(unseeded)
    fn, params = adapter.as_fn(model, torch.nn.MSELoss(), seed=0)
    assert gradcheck.check(fn, params, X, y, loss_fn=fn.loss).passed


def test_per_sample_loss_is_reported_not_averaged(batch):
    X, y = batch
    fn, params = adapter.as_fn(_net(), torch.nn.MSELoss(reduction="none"))
    result = gradcheck.check(fn, params, X, y)
    assert not result.passed and result.problems[0].kind == "non_scalar_loss", str(result)


def test_function_of_tensors(batch):
    X, y = batch
    rng = np.random.default_rng(5)
    start = {"W": torch.tensor(rng.standard_normal((3, 2))), "b": np.zeros(2)}

    def loss(p, X, y, leak=0.0):
        out = ReLUFn.apply(X @ p["W"] + p["b"], leak)
        return ((out - y) ** 2).sum()

    fn, params = adapter.from_function(loss, start)
    assert set(params) == {"W", "b"} and isinstance(params["W"], np.ndarray)
    assert gradcheck.check(fn, params, X, y, loss_fn=fn.loss).passed
    fn_bad, _ = adapter.from_function(lambda p, X, y: loss(p, X, y, leak=0.2), start)
    bad = gradcheck.check(fn_bad, params, X, y, loss_fn=fn_bad.loss)
    assert not bad.passed and bad.worst_param in {"W", "b"}, str(bad)


def test_argument_errors():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        adapter.as_fn(lambda x: x, torch.nn.MSELoss())
    with pytest.raises(ValueError, match="dtype='int32'"):
        adapter.as_fn(torch.nn.Linear(2, 2), torch.nn.MSELoss(), dtype="int32")
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        adapter.as_fn(frozen, torch.nn.MSELoss())
    fn, params = adapter.as_fn(torch.nn.Linear(2, 2), torch.nn.MSELoss())
    with pytest.raises(KeyError, match="missing"):
        fn({"weight": params["weight"]}, np.zeros((1, 2)), np.zeros((1, 2)))


def test_cli_on_the_torch_example(capsys):
    """``gradcheck check`` on examples/torch_custom_function.py: the correct factory exits 0, the
    transposed weight gradient (silent in PyTorch for a square matrix) exits 1, named and diagnosed."""
    import json
    from pathlib import Path

    from gradcheck.cli import main

    example = Path(__file__).resolve().parents[1] / "examples" / "torch_custom_function.py"
    assert main(["check", f"{example}:factory"]) == 0
    assert "passed custom Linear" in capsys.readouterr().out
    assert main(["check", f"{example}:transposed", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["worst_param"] == "0.weight" and doc["diagnosis"]["pattern"] == "transposed"
