"""Shape-only and mask layers: flatten (row-major) and dropout with a mask fixed by the seed."""
from __future__ import annotations

import zlib

import numpy as np

from .base import Context, LayerKind


def _no_params(node, in_shape, rng, scheme, dtype):
    return {}


def flatten_forward(node, params, x, ctx: Context):
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(node, params, shape, dy):
    return dy.reshape(shape), {}


FLATTEN = LayerKind("flatten", _no_params, flatten_forward, flatten_backward)


def dropout_mask(rate: float, shape: tuple[int, ...], ctx: Context) -> np.ndarray:
    """The kept elements (True) for this seed, layer and shape: the same on every call."""
    key = zlib.crc32(repr((ctx.seed, ctx.index, tuple(shape))).encode())
    return np.random.default_rng(key).random(shape) >= rate


def dropout_forward(node, params, x, ctx: Context):
    scale = 1.0 / (1.0 - node.rate)  # a Python float: keeps float32 inputs float32
    kept = dropout_mask(node.rate, x.shape, ctx)
    return np.where(kept, x * scale, 0).astype(x.dtype, copy=False), (kept, scale)


def dropout_backward(node, params, cache, dy):
    kept, scale = cache
    return np.where(kept, dy * scale, 0).astype(dy.dtype, copy=False), {}


DROPOUT = LayerKind("dropout", _no_params, dropout_forward, dropout_backward,
                    conventions="inverted dropout: the mask is drawn from (seed, layer index, input shape), "
                                "kept elements are scaled by 1/(1-rate); the same mask on every call")
