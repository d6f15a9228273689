"""check_function: one torch function or custom ``autograd.Function`` checked as an operator, first
order (``torch.autograd.grad``) and, with ``gradgrad=True``, its double backward.

Verdicts are gradcheck's own computed tolerances (no rtol): a correct backward passes in float64 and
float32, and each planted bug fails at the order, the Jacobian block and the input it corrupts.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'gradcheck[torch]')")
F = pytest.importorskip("torch.nn.functional")

import gradcheck
from gradcheck.adapters.torch import check_function, check_function_jvp
from gradcheck.result import Result

DTYPES = [torch.float64, torch.float32]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops: intra-op threads only cost time on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tensor(*shape, dtype=torch.float64, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)


# -- custom Functions: one input, and two inputs with two outputs -----------------------------------
class Cubic(torch.autograd.Function):
    """scale * x^3 with a hand-written, differentiable backward; ``scale`` is a Python number."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return scale * x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * ctx.scale * x ** 2, None


class CubicNoGrad(Cubic):
    """Right first derivative, computed under no_grad: the double backward sees a constant."""

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        with torch.no_grad():
            return grad * 3 * ctx.scale * x ** 2, None


class CubicDetached(Cubic):
    """Right first derivative, but one factor of x is detached: half of d(grad)/dx is missing."""

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * ctx.scale * x.detach() * x, None


class CubicOnce(Cubic):
    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * ctx.scale * x ** 2, None


class MulSin(torch.autograd.Function):
    """(x * w, x + sin(w)) with a hand-written backward; ``bug`` plants one mistake."""

    @staticmethod
    def forward(ctx, x, w, bug=None):
        ctx.save_for_backward(x, w)
        ctx.bug = bug
        return x * w, x + torch.sin(w)

    @staticmethod
    def backward(ctx, g_prod, g_sum):
        x, w = ctx.saved_tensors
        grad_x = g_prod * w + g_sum
        grad_w = g_prod * x + g_sum * torch.cos(w)
        if ctx.bug == "w":
            grad_w = g_prod * x - g_sum * torch.cos(w)   # sign of the sin path flipped
        return grad_x, grad_w, None


class SoftplusJvp(torch.autograd.Function):
    """log(1 + e^x) with a backward and a forward-mode jvp (new-style: setup_context)."""

    @staticmethod
    def forward(x, bug):
        return F.softplus(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, bug = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        ctx.bug = bug

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x), None

    @staticmethod
    def jvp(ctx, x_t, _):
        (x,) = ctx.saved_tensors
        slope = torch.sigmoid(x) if ctx.bug is None else torch.sigmoid(2 * x)
        return x_t * slope


@pytest.mark.parametrize("dtype", DTYPES)
def test_correct_custom_functions_pass_in_float64_and_float32(dtype):
    x, w = tensor(3, 4, dtype=dtype), tensor(3, 4, dtype=dtype, seed=1)
    r = check_function(Cubic.apply, x, 2.0)
    assert r.passed, str(r)
    assert r.max_rel_error < (1e-7 if dtype == torch.float64 else 1e-2)
    assert r.dtype == str(dtype).replace("torch.", "")
    assert list(r.operator["inputs"]) == ["x"] and list(r.operator["outputs"]) == ["out"]   # forward's names
    r = check_function(MulSin.apply, x, w)
    assert r.passed, str(r)
    assert {"dout0/dx", "dout0/dw", "dout1/dx", "dout1/dw"} <= set(r.tensors)
    assert r.tensors["dout0/dx"].shape == [3, 4, 3, 4]


def test_wrong_input_gradient_is_localized_to_that_input():
    r = check_function(MulSin.apply, tensor(2, 3), tensor(2, 3, seed=1), "w")
    assert not r.passed
    assert r.worst.input == "w" and r.worst.output == "out1"
    assert r.tensors["dout0/dx"].passed and r.tensors["dout0/dw"].passed and r.tensors["dout1/dx"].passed
    assert not r.tensors["dout1/dw"].passed
    assert str(r).startswith("gradcheck FAILED: dout1/dw is off")


def test_backward_under_no_grad_passes_first_order_and_fails_gradgrad_as_not_differentiable():
    x = tensor(3, 4)
    assert check_function(CubicNoGrad.apply, x, 2.0).passed
    r = check_function(CubicNoGrad.apply, x, 2.0, gradgrad=True)
    assert not r.passed
    problem = r.problems[0]
    assert problem.kind == "not_differentiable" and problem.param == "x"
    assert "not differentiable" in problem.message and "no_grad" in problem.message
    first = str(r).splitlines()[0]
    assert first.startswith("gradcheck FAILED CubicNoGrad, second order (double backward): the backward is not "
                            "differentiable")
    assert r.tensors["dout/dx"].passed    # the first order's blocks are in the result, and passed


def test_once_differentiable_backward_fails_gradgrad_with_the_same_explanation():
    r = check_function(CubicOnce.apply, tensor(4), 1.5, gradgrad=True)
    assert not r.passed and r.problems[0].kind == "not_differentiable"
    assert "once_differentiable" in r.problems[0].message


def test_detached_intermediate_in_backward_fails_gradgrad_localized():
    x = tensor(3, 4)
    r = check_function(CubicDetached.apply, x, 2.0, gradgrad=True)
    assert not r.passed and not r.problems
    assert str(r).splitlines()[0].startswith("gradcheck FAILED CubicDetached, second order (double backward): "
                                             "dgrad_x/dx is off")
    w = r.worst
    assert (w.output, w.input, w.param) == ("grad_x", "x", "dgrad_x/dx")
    assert w.output_index == w.index[2:]                       # the diagonal: grad_x[i] depends on x[i] only
    assert w.claimed == pytest.approx(0.5 * w.numerical, rel=1e-6)
    assert r.tensors["dout/dx"].passed and r.tensors["dgrad_x/dgrad_out"].passed
    assert not r.tensors["dgrad_x/dx"].passed
    assert r.operator["second_order"]["inputs"] == {"x": [3, 4], "grad_out": [3, 4]}


def test_correct_function_passes_gradgrad_in_float64_and_float32():
    r = check_function(Cubic.apply, tensor(3, 4), 2.0, gradgrad=True)
    assert r.passed, str(r)
    assert r.name == "Cubic, first and second order (backward and double backward)"
    assert {"dout/dx", "dgrad_x/dx", "dgrad_x/dgrad_out"} <= set(r.tensors)
    # both orders' random-cotangent checks of x are kept, the second renamed
    assert {"x (cotangent 0)", "x (second order, cotangent 0)", "grad_out (cotangent 0)"} <= set(r.tensors)
    assert r.operator["kind"] == "vjp" and r.operator["second_order"]["outputs"] == {"grad_x": [3, 4]}
    back = Result.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.passed and back.name == r.name and set(back.tensors) == set(r.tensors)
    r = check_function(MulSin.apply, tensor(2, 3, dtype=torch.float32), tensor(2, 3, dtype=torch.float32, seed=1),
                       gradgrad=True, name="mulsin")
    assert r.passed, str(r)
    assert r.name.startswith("mulsin, ")


def test_first_order_failure_is_named_in_the_first_line():
    # the double backward differentiates the (wrong) backward code exactly: only the first order fails
    r = check_function(MulSin.apply, tensor(2, 3), tensor(2, 3, seed=1), "w", gradgrad=True)
    assert not r.passed
    assert str(r).splitlines()[0].startswith("gradcheck FAILED MulSin, first order (backward): dout1/dw is off")
    assert r.worst.input == "w"
    assert "note: second order (double backward): passed" in str(r)


def test_torch_functional_ops_pass_including_gradgrad():
    x, w, b = tensor(1, 2, 5, 5), tensor(3, 2, 3, 3, seed=1), tensor(3, seed=2)
    r = check_function(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), x, w, b, gradgrad=True)
    assert r.passed, str(r)
    assert r.operator["outputs"] == {"out": [1, 3, 3, 3]}
    assert r.operator["second_order"]["inputs"]["grad_out"] == [1, 3, 3, 3]
    # a builtin without a signature: inputs are input0, input1; stride and padding are constants
    r = check_function(F.conv2d, x, w, None, 2, 1)
    assert r.passed, str(r)
    assert list(r.operator["inputs"]) == ["input0", "input1"]
    # layer_norm: normalized_shape and eps are non-tensor constants; bias does not require grad
    x, weight, bias = tensor(3, 5), tensor(5, seed=1), tensor(5, seed=2, grad=False)
    r = check_function(F.layer_norm, x, (5,), weight, bias, 1e-5, gradgrad=True)
    assert r.passed, str(r)
    assert list(r.operator["inputs"]) == ["input", "weight"] and r.operator["constants"] == ["bias"]


def test_non_tensor_args_int_tensors_and_no_grad_tensors_are_constants():
    x, idx = tensor(5, 2), torch.tensor([0, 2, 2, 4])
    scale = tensor(2, seed=3, grad=False)
    r = check_function(lambda x, idx, scale, power: x[idx] ** power * scale, x, idx, scale, 2)
    assert r.passed, str(r)
    assert list(r.operator["inputs"]) == ["x"] and r.operator["constants"] == ["idx", "scale"]
    # the constants are used as given: a wrong power in the backward would fail
    assert r.tensors["dout/dx"].numerical[1, 0, 2, 0] == pytest.approx(2 * float(x.detach()[2, 0]) * float(scale[0]))


def test_caller_tensors_are_left_unchanged():
    x, w = tensor(2, 3), tensor(2, 3, seed=1)
    x0, w0 = x.detach().clone(), w.detach().clone()

    def clobber(x, w):
        out = x * w
        if not x.requires_grad:   # the plain forward: writes into the check's own copy only
            x.mul_(0)
        return out

    r = check_function(clobber, x, w, gradgrad=True)
    assert r.passed, str(r)
    assert torch.equal(x, x0) and torch.equal(w, w0)
    assert x.requires_grad and w.requires_grad and x.grad is None and w.grad is None


def test_forward_mode_jvp_rule_is_checked_and_a_missing_one_is_explained():
    x = tensor(2, 3)
    assert check_function_jvp(SoftplusJvp.apply, x, None).passed
    r = check_function_jvp(SoftplusJvp.apply, x, "slope")
    assert not r.passed and r.worst.input == "x" and r.worst.output == "out"
    with pytest.raises(ValueError, match="Cubic has no forward-mode derivative.*jvp"):
        check_function_jvp(Cubic.apply, x, 2.0)


def test_misuse_raises_clear_errors():
    with pytest.raises(ValueError, match="requires_grad=True"):
        check_function(Cubic.apply, tensor(3, grad=False), 2.0)
    with pytest.raises(TypeError, match="requires_grad=False on the others"):
        check_function(Cubic.apply, tensor(3), 2.0, wrt=["x"])
    with pytest.raises(TypeError, match="complex"):
        check_function(torch.sin, torch.randn(3, dtype=torch.complex128, requires_grad=True))


def test_faults_of_fn_are_failures_not_crashes_and_one_result_is_observed():
    seen = []
    gradcheck.checker.observers.append(seen.append)
    try:
        r = check_function(lambda x: torch.full((2,), float("nan")) * x.sum(), tensor(3), gradgrad=True)
    finally:
        gradcheck.checker.observers.remove(seen.append)
    assert not r.passed and r.problems and seen == [r]
    assert str(r).splitlines()[0].startswith("gradcheck FAILED <lambda>, first and second order")
    assert any(p.kind == "first_order_failed" for p in r.problems)
    r = check_function(lambda x: (_ for _ in ()).throw(RuntimeError("boom")), tensor(3))
    assert not r.passed and "boom" in str(r)
    assert np.isinf(r.max_rel_error)
