"""1-d and 2-d convolution (cross-correlation, as ``torch.nn.functional.conv1d``/``conv2d``), with
hand-written backward passes.

``x`` is ``(B, C, L)`` or ``(B, C, H, W)``; ``W`` is ``(out, C, k)`` or ``(out, C, k, k)``; ``b`` is
``(out,)``. The same stride, zero padding and dilation on every spatial axis; output size per axis
``(n + 2 * padding - dilation * (k - 1) - 1) // stride + 1`` (trailing input the last window does
not reach is ignored, and gets a zero gradient). ``y[b, o, p] = b[o] + sum_{c, i} W[o, c, i] *
xpad[b, c, p * stride + i * dilation]`` (``p`` and ``i`` multi-indices).

Implementation: the windows are a read-only view of the padded input
(:func:`numpy.lib.stride_tricks.sliding_window_view`, every ``stride``-th window, every
``dilation``-th element), contracted with ``W`` by ``tensordot``. The input gradient is the
transpose of that gather: one strided slice of the padded gradient per kernel offset, ADDED to
(``+=``), because windows overlap when ``stride < dilation * (k - 1) + 1``; then the padding is
cropped off. float32 in, float32 out.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Array, Context, LayerKind, Params, bias, weight


def _init(node, in_shape: tuple[int, ...], rng: np.random.Generator, scheme: str, dtype: np.dtype) -> Params:
    shapes = node.param_shapes(in_shape)
    w_shape = shapes["W"]
    area = int(np.prod(w_shape[2:]))  # k or k * k
    params = {"W": weight(rng, w_shape, w_shape[1] * area, w_shape[0] * area, scheme, dtype)}
    if "b" in shapes:
        params["b"] = bias(rng, shapes["b"], dtype)
    return params


def _windows(node, x: Array) -> Array:
    """``(B, C, *out, *kernel)``: the receptive field of every output position (a view of the padded x)."""
    n = x.ndim - 2
    p, s, d, k = node.padding, node.stride, node.dilation, node.kernel
    xp = np.pad(x, ((0, 0), (0, 0)) + ((p, p),) * n)  # a new array: x itself is never written
    span = d * (k - 1) + 1
    win = sliding_window_view(xp, (span,) * n, axis=tuple(range(2, 2 + n)))
    return win[(slice(None), slice(None)) + (slice(None, None, s),) * n + (slice(None, None, d),) * n]


def _forward(node, params: Mapping[str, Array], x: Array, ctx: Context):
    n = x.ndim - 2
    win = _windows(node, x)
    w = params["W"]
    # (B, C, *out, *k) . (O, C, *k) -> (B, *out, O)
    y = np.tensordot(win, w, axes=([1, *range(2 + n, 2 + 2 * n)], [1, *range(2, 2 + n)]))
    y = np.moveaxis(y, -1, 1)
    if "b" in params:
        y = y + params["b"].reshape((-1,) + (1,) * n)
    return np.ascontiguousarray(y), (x.shape, win)


def _backward(node, params: Mapping[str, Array], cache, dy: Array):
    x_shape, win = cache
    n = len(x_shape) - 2
    p, s, d, k = node.padding, node.stride, node.dilation, node.kernel
    w = params["W"]
    dtype = win.dtype
    out = dy.shape[2:]
    spatial = tuple(range(2, 2 + n))

    # dW[o, c, i] = sum_{b, p} dy[b, o, p] * window[b, c, p, i]
    grads = {"W": np.tensordot(dy, win, axes=([0, *spatial], [0, *spatial])).astype(dtype, copy=False)}
    if "b" in params:
        grads["b"] = dy.sum(axis=(0, *spatial)).astype(dtype, copy=False)

    # dx: every kernel offset i reads xpad[p * s + i * d]; scatter dy . W[:, :, i] back there, accumulating
    dx_pad = np.zeros(x_shape[:2] + tuple(m + 2 * p for m in x_shape[2:]), dtype=dtype)
    for offset in itertools.product(range(k), repeat=n):
        w_i = w[(slice(None), slice(None)) + offset]                  # (O, C)
        contrib = np.moveaxis(np.tensordot(dy, w_i, axes=([1], [0])), -1, 1)  # (B, C, *out)
        where = tuple(slice(i * d, i * d + s * (m - 1) + 1, s) for i, m in zip(offset, out))
        dx_pad[(slice(None), slice(None)) + where] += contrib
    dx = dx_pad[(slice(None), slice(None)) + tuple(slice(p, p + m) for m in x_shape[2:])]
    return np.ascontiguousarray(dx), grads


_CONVENTIONS = ("cross-correlation as torch.nn.functional.conv{n}d: W (out, in{k}), b (out,), zero padding, "
                "the same stride and dilation on every axis; input the last window does not reach gets a "
                "zero gradient")

CONV1D = LayerKind("conv1d", _init, _forward, _backward, conventions=_CONVENTIONS.format(n=1, k=", k"))
CONV2D = LayerKind("conv2d", _init, _forward, _backward, conventions=_CONVENTIONS.format(n=2, k=", k, k"))
