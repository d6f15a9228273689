"""Batch normalization (training mode) and layer normalization, with hand-written backward passes.

Both normalize ``x`` over some axes, ``xhat = (x - mean) / sqrt(var + eps)`` with the biased
variance, then scale and shift, ``y = gamma * xhat + beta``:

* batchnorm: per channel (axis 1 of the batch ``(B, C)`` or ``(B, C, ...)``), over the batch and
  every axis after the channel; ``gamma``/``beta`` are ``(C,)``, broadcast on axis 1. Training mode
  only: the statistics are those of the batch itself, so the mean and variance depend on every
  example and the backward differentiates through them. Running statistics (the moving averages
  used at inference) are not computed: the forward is a pure function of ``x`` and the parameters.
* layernorm: over the last axis of each example (``x`` of any rank >= 2, batch first);
  ``gamma``/``beta`` have the size of the last axis.

Numerics: the variance is taken in two passes (the mean is subtracted first, never
``E[x^2] - E[x]^2``), and the backward uses the compact form of the full derivative,
``dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sqrt(var + eps)`` with
``dxhat = dy * gamma`` and the means over the normalized axes. float32 in, float32 out (``eps`` is
cast to the input's dtype, every other constant is a Python scalar).
"""
from __future__ import annotations

import numpy as np

from .base import Context, LayerKind


def _init(node, in_shape, rng, scheme, dtype):
    # gamma near 1 and beta near 0 but not exactly: a gradient that forgets gamma, or a missing
    # beta gradient, would be invisible at gamma = 1, beta = 0
    shapes = node.param_shapes(in_shape)
    return {"gamma": (1.0 + rng.normal(0.0, 0.1, size=shapes["gamma"])).astype(dtype),
            "beta": rng.normal(0.0, 0.1, size=shapes["beta"]).astype(dtype)}


def _normalize(x, eps, axes):
    """``xhat`` and ``1 / sqrt(var + eps)`` (keepdims) over ``axes``, in two passes."""
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + np.asarray(eps, dtype=x.dtype))
    return centered * inv_std, inv_std


def _normalize_backward(dxhat, xhat, inv_std, axes):
    """dL/dx through ``xhat = (x - mean) / sqrt(var + eps)`` with the mean and variance over ``axes``."""
    mean_dxhat = dxhat.mean(axis=axes, keepdims=True)
    mean_dxhat_xhat = (dxhat * xhat).mean(axis=axes, keepdims=True)
    return inv_std * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat)


def _check_float(kind, x, rank):
    if x.dtype.kind != "f":
        raise ValueError(f"{kind} takes a floating input, got dtype {x.dtype}")
    if x.ndim < rank:
        raise ValueError(f"{kind} takes a batch of rank >= {rank} (batch first), got shape {x.shape}")


# -- batchnorm ------------------------------------------------------------------------------------
def _channel_shape(x):
    """gamma/beta ``(C,)`` as ``(1, C, 1, ...)``, to broadcast on axis 1 of ``x``."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batchnorm_forward(node, params, x, ctx: Context):
    _check_float("batchnorm", x, 2)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = _channel_shape(x)
    xhat, inv_std = _normalize(x, node.eps, axes)
    y = params["gamma"].reshape(shape) * xhat + params["beta"].reshape(shape)
    return y, (xhat, inv_std, axes)


def batch_statistics(x):
    """Per-channel mean and *unbiased* variance of a batch (what the running statistics average,
    as in torch); the loss uses the biased one."""
    axes = (0,) + tuple(range(2, x.ndim))
    n = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    var = ((x - mean.reshape(_channel_shape(x))) ** 2).sum(axis=axes) / max(n - 1, 1)
    return mean, var


def batchnorm_inference(node, params, x, running_mean, running_var):
    """Evaluation mode: the running statistics in place of the batch's (a forward only)."""
    shape = _channel_shape(x)
    inv_std = 1.0 / np.sqrt(running_var.reshape(shape) + np.asarray(node.eps, dtype=x.dtype))
    return params["gamma"].reshape(shape) * (x - running_mean.reshape(shape)) * inv_std + params["beta"].reshape(shape)


def batchnorm_backward(node, params, cache, dy):
    xhat, inv_std, axes = cache
    dxhat = dy * params["gamma"].reshape(_channel_shape(dy))
    grads = {"gamma": (dy * xhat).sum(axis=axes), "beta": dy.sum(axis=axes)}
    return _normalize_backward(dxhat, xhat, inv_std, axes), grads


BATCHNORM = LayerKind("batchnorm", _init, batchnorm_forward, batchnorm_backward,
                      conventions="training mode: per channel (axis 1 of the batch) over the batch and every "
                                  "axis after the channel, biased variance; the mean and variance are "
                                  "differentiated; no running statistics (a pure function)")


# -- layernorm ------------------------------------------------------------------------------------
def layernorm_forward(node, params, x, ctx: Context):
    _check_float("layernorm", x, 2)
    xhat, inv_std = _normalize(x, node.eps, -1)
    return params["gamma"] * xhat + params["beta"], (xhat, inv_std)


def layernorm_backward(node, params, cache, dy):
    xhat, inv_std = cache
    rows = tuple(range(dy.ndim - 1))   # every axis but the normalized one: batch, sequence, ...
    grads = {"gamma": (dy * xhat).sum(axis=rows), "beta": dy.sum(axis=rows)}
    return _normalize_backward(dy * params["gamma"], xhat, inv_std, -1), grads


LAYERNORM = LayerKind("layernorm", _init, layernorm_forward, layernorm_backward,
                      conventions="over the last axis of each example, biased variance; gamma/beta of the "
                                  "last axis's size")
