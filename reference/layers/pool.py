"""2-d max and average pooling over ``size x size`` windows, with hand-written backward passes.

``x`` is ``(B, C, H, W)``; windows start every ``node.step`` rows/columns (the stride, default the
window size), no padding, so the output is ``((H - size) // step + 1, (W - size) // step + 1)`` and
trailing input no window reaches gets a zero gradient. Windows overlap when ``step < size``.

* maxpool: the maximum of each window. Its gradient goes to the FIRST maximum of the window in
  row-major window order (``np.argmax`` of the flattened window), so a tie sends everything to the
  top-left-most tied element (torch may pick another one). With overlapping windows an input
  element that is the maximum of several windows accumulates all their gradients.
* avgpool: the mean of each window, ``sum / size**2``; its gradient spreads ``dy / size**2`` over
  the window, accumulated where windows overlap.

The backward loops over the ``size**2`` offsets inside a window, adding (``+=``) one strided slice
of the input gradient per offset. float32 in, float32 out.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Array, Context, LayerKind, Params


def _no_params(node, in_shape, rng, scheme, dtype) -> Params:
    return {}


def _windows(node, x: Array) -> Array:
    """``(B, C, Ho, Wo, size, size)``: a read-only view of ``x``."""
    s = node.step
    return sliding_window_view(x, (node.size, node.size), axis=(2, 3))[:, :, ::s, ::s]


def _offsets(node, out: tuple[int, int]):
    """For every offset ``(i, j)`` inside a window: its row-major index and the strided slice of
    the input it reads across all windows."""
    s, (ho, wo) = node.step, out
    for i in range(node.size):
        for j in range(node.size):
            yield i * node.size + j, (slice(None), slice(None),
                                      slice(i, i + s * (ho - 1) + 1, s), slice(j, j + s * (wo - 1) + 1, s))


def max_forward(node, params: Mapping[str, Array], x: Array, ctx: Context):
    win = _windows(node, x)
    flat = win.reshape(win.shape[:4] + (-1,))
    first = flat.argmax(axis=-1)  # the first maximum in row-major window order
    y = np.take_along_axis(flat, first[..., None], axis=-1)[..., 0]
    return y, (x.shape, x.dtype, first)


def max_backward(node, params: Mapping[str, Array], cache, dy: Array):
    shape, dtype, first = cache
    dx = np.zeros(shape, dtype=dtype)
    for index, where in _offsets(node, dy.shape[2:]):
        dx[where] += np.where(first == index, dy, 0)
    return dx, {}


def avg_forward(node, params: Mapping[str, Array], x: Array, ctx: Context):
    area = node.size * node.size  # a Python int: keeps float32 inputs float32
    return _windows(node, x).sum(axis=(-2, -1)) / area, (x.shape, x.dtype)


def avg_backward(node, params: Mapping[str, Array], cache, dy: Array):
    shape, dtype = cache
    share = (dy / (node.size * node.size)).astype(dtype, copy=False)
    dx = np.zeros(shape, dtype=dtype)
    for _, where in _offsets(node, dy.shape[2:]):
        dx[where] += share
    return dx, {}


MAXPOOL2D = LayerKind("maxpool2d", _no_params, max_forward, max_backward,
                      conventions="max over size x size windows every `stride` (default size), no padding; "
                                  "the gradient of a window goes to its first maximum in row-major window "
                                  "order (np.argmax; on a tie torch may pick another); overlapping windows "
                                  "accumulate")
AVGPOOL2D = LayerKind("avgpool2d", _no_params, avg_forward, avg_backward,
                      conventions="mean over size x size windows every `stride` (default size), no padding, "
                                  "divided by size**2; overlapping windows accumulate")
