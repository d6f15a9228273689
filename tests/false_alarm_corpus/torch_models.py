"""A small ReLU conv net in PyTorch, checked through ``gradcheck.adapters.torch.as_fn``.

``Sequential(Conv2d(1, 2, 3), BatchNorm2d(2) in train mode, ReLU, Flatten, Linear(32, 3))`` on
6x6 single-channel images, MSE loss, torch's default initialization under ``torch.manual_seed``.
float32 is checked in the model's own dtype (``as_fn(..., dtype=None)``), float64 with
``dtype="float64"``. Parameter names are the Sequential's: ``0.weight``, ``0.bias`` (the conv
bias: its true gradient is exactly zero, BatchNorm removes it), ``1.weight``, ``1.bias``,
``4.weight``, ``4.bias``.

Planted bugs need hand-written backward code, so a buggy variant swaps the ReLU and the Linear
for modules built on ``torch.autograd.Function``s (same parameters, same forward); ``custom=True``
builds those modules with a correct backward.

torch is imported inside the functions: importing this module does not need it.
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import check_bug, float_dtype, generator

CONVNET_BUGS = {
    "linear_bias_grad_mean": ("4.bias",),   # grad of the bias = mean over the batch instead of sum
    "relu_leaks": ("0.weight", "0.bias", "1.weight", "1.bias"),   # ReLU backward passes negatives too
}


def _custom_modules(torch, bug):
    """A ReLU and a Linear whose backward is written by hand (with ``bug`` planted, if any)."""

    class ReLUFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g if bug == "relu_leaks" else g * (x > 0).to(g.dtype)

    class LinearFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias):
            ctx.save_for_backward(x, weight)
            return x @ weight.T + bias

        @staticmethod
        def backward(ctx, g):
            x, weight = ctx.saved_tensors
            grad_bias = g.mean(0) if bug == "linear_bias_grad_mean" else g.sum(0)
            return g @ weight, g.T @ x, grad_bias

    class HandReLU(torch.nn.Module):
        def forward(self, x):
            return ReLUFn.apply(x)

    class HandLinear(torch.nn.Linear):
        def forward(self, x):
            return LinearFn.apply(x, self.weight, self.bias)

    return HandReLU, HandLinear


def build_model(torch, seed, bug=None, custom=False):
    """The conv net in float32 with torch's default init under ``torch.manual_seed(seed)`` (in a
    forked RNG, leaving the caller's torch RNG alone), in train mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        conv, bn, linear = torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Linear(2 * 4 * 4, 3)
    relu = torch.nn.ReLU()
    if custom or bug is not None:
        HandReLU, HandLinear = _custom_modules(torch, bug)
        hand = HandLinear(2 * 4 * 4, 3)
        hand.load_state_dict(linear.state_dict())
        relu, linear = HandReLU(), hand
    return torch.nn.Sequential(conv, bn, relu, torch.nn.Flatten(), linear).train()


def make_convnet(dtype="float64", seed=0, bug=None, custom=False):
    """``(fn, params, X, y)`` for the conv net: X (4, 1, 6, 6), y (4, 3) standard normal."""
    import torch

    from gradcheck.adapters.torch import as_fn

    check_bug(bug, CONVNET_BUGS)
    dt = float_dtype(dtype)
    model = build_model(torch, seed, bug, custom)
    fn, params = as_fn(model, torch.nn.MSELoss(), dtype=None if dt == np.float32 else "float64")
    rng = generator(seed, 71)
    X = rng.standard_normal((4, 1, 6, 6)).astype(dt)
    y = rng.standard_normal((4, 3)).astype(dt)
    return fn, params, X, y


def make_convnet_custom(dtype="float64", seed=0, bug=None):
    """The conv net with the hand-written ReLU and Linear backward (correct unless ``bug``)."""
    return make_convnet(dtype, seed, bug, custom=True)
