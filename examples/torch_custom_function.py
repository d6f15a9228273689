"""A PyTorch model whose linear layers use a hand-written ``torch.autograd.Function``.

    gradcheck check examples/torch_custom_function.py:factory        # passes
    gradcheck check examples/torch_custom_function.py:transposed     # the first layer's weight
                                                                      # gradient is transposed

The transposed gradient is the classic silent bug: for a square weight matrix the shapes agree,
so PyTorch accepts it and training just goes wrong. Needs ``pip install 'gradcheck[torch]'``.
"""
from __future__ import annotations

import numpy as np
import torch

from gradcheck.adapters.torch import as_fn


class LinearFunction(torch.autograd.Function):
    """y = x W^T + b, with its backward written out by hand."""

    @staticmethod
    def forward(ctx, x, weight, bias, transpose_bug=False):
        ctx.save_for_backward(x, weight)
        ctx.transpose_bug = transpose_bug
        return x @ weight.T + bias

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_weight = grad_out.T @ x                  # dL/dW = g^T x, shape (out, in)
        if ctx.transpose_bug:
            grad_weight = x.T @ grad_out              # (in, out): same shape only when in == out
        return grad_out @ weight, grad_weight, grad_out.sum(0), None


class Linear(torch.nn.Module):
    def __init__(self, n_in: int, n_out: int, transpose_bug: bool = False):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_out, n_in) / n_in ** 0.5)
        self.bias = torch.nn.Parameter(torch.zeros(n_out))
        self.transpose_bug = transpose_bug

    def forward(self, x):
        return LinearFunction.apply(x, self.weight, self.bias, self.transpose_bug)


def model(transpose_bug: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(Linear(4, 4, transpose_bug), torch.nn.Tanh(), Linear(4, 1))


def _case(net: torch.nn.Module, name: str) -> dict:
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 4)), rng.standard_normal((16, 1))
    fn, params = as_fn(net, torch.nn.MSELoss())
    return {"fn": fn, "params": params, "X": X, "y": y, "name": name}


def factory() -> dict:
    """The correct model (float64 copies of its parameters; the model itself is left untouched)."""
    return _case(model(), "custom Linear")


def transposed() -> dict:
    """The same model with the first layer's weight gradient transposed."""
    return _case(model(transpose_bug=True), "custom Linear, transposed weight gradient")
