"""A convolution layer written with im2col / col2im, then ReLU, 2x2 average pooling and a softmax
cross-entropy read-out (the im2col layout of course code: the convolution as one matrix product).

Conventions: images (N, C, H, W); filters w (F, C, HH, WW), bias b (F,); the layer is a
cross-correlation, out[n, f, i, j] = sum_{c, a, b} w[f, c, a, b] * xpad[n, c, i + a, j + b] + b[f]
with stride 1 and zero padding 1 (same size out). im2col columns are ordered (output position,
then image), rows (channel, filter row, filter column); col2im accumulates one filter offset at
a time (overlapping windows add up).
ReLU's derivative at exactly 0 is taken as 0; average pooling over non-overlapping 2x2 windows
(stride 2) passes a quarter of its gradient to each window element.
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator
from tests.false_alarm_corpus.mlp import relu_backward, relu_forward
from tests.false_alarm_corpus.softmax import dense_backward, dense_forward, softmax_cross_entropy

CONV_BUGS = {
    "dw_flipped": ("w",),                        # dw[:, :, ::-1, ::-1]: convolution where the layer correlates
    "db_spatial_mean": ("b",),                   # db averages dout over the 6x6 positions instead of summing
    "avgpool_missing_quarter": ("x", "w", "b"),  # the pool's backward repeats dout without the 1/4
}


def _out_size(size, k, pad, stride):
    return (size + 2 * pad - k) // stride + 1


def im2col(x, HH, WW, pad, stride):
    """(N, C, H, W) -> (C*HH*WW, out_h*out_w*N): every receptive field as a column, read through a
    sliding-window view of the padded images (rows: channel, filter row, filter column; columns:
    output row, output column, image)."""
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    windows = np.lib.stride_tricks.sliding_window_view(xp, (HH, WW), axis=(2, 3))[:, :, ::stride, ::stride]
    # windows: (N, C, out_h, out_w, HH, WW) -> (C, HH, WW, out_h, out_w, N)
    return windows.transpose(1, 4, 5, 2, 3, 0).reshape(C * HH * WW, -1)


def col2im(cols, x_shape, HH, WW, pad, stride):
    """The adjoint of :func:`im2col`: for each filter offset (a, b), that offset's entries of every
    column are added back onto the padded image positions they were read from."""
    N, C, H, W = x_shape
    out_h, out_w = _out_size(H, HH, pad, stride), _out_size(W, WW, pad, stride)
    grid = cols.reshape(C, HH, WW, out_h, out_w, N)
    xp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=cols.dtype)
    for a in range(HH):
        for b in range(WW):
            xp[:, :, a:a + stride * out_h:stride, b:b + stride * out_w:stride] += grid[:, a, b].transpose(3, 0, 1, 2)
    return xp[:, :, pad:pad + H, pad:pad + W]


def conv_forward(x, w, b, pad=1, stride=1):
    F, _, HH, WW = w.shape
    cols = im2col(x, HH, WW, pad, stride)
    out_h, out_w = _out_size(x.shape[2], HH, pad, stride), _out_size(x.shape[3], WW, pad, stride)
    res = w.reshape(F, -1) @ cols + b.reshape(-1, 1)
    out = res.reshape(F, out_h, out_w, x.shape[0]).transpose(3, 0, 1, 2)
    return out, (x.shape, w, cols, pad, stride)


def conv_backward(dout, cache, bug=None):
    """Returns (dx, dw, db)."""
    x_shape, w, cols, pad, stride = cache
    F, _, HH, WW = w.shape
    db = dout.sum(axis=(0, 2, 3))
    if bug == "db_spatial_mean":
        db = dout.mean(axis=(2, 3)).sum(axis=0)
    dout_r = dout.transpose(1, 2, 3, 0).reshape(F, -1)
    dw = (dout_r @ cols.T).reshape(w.shape)
    if bug == "dw_flipped":
        dw = dw[:, :, ::-1, ::-1]
    dx = col2im(w.reshape(F, -1).T @ dout_r, x_shape, HH, WW, pad, stride)
    return dx, dw, db


def avgpool_forward(x):
    """Mean over non-overlapping 2x2 windows: (N, C, H, W) -> (N, C, H/2, W/2)."""
    N, C, H, W = x.shape
    return x.reshape(N, C, H // 2, 2, W // 2, 2).mean(axis=(3, 5)), x.shape


def avgpool_backward(dout, cache, bug=None):
    scale = 1.0 if bug == "avgpool_missing_quarter" else 0.25
    return np.repeat(np.repeat(dout, 2, axis=2), 2, axis=3) * scale


def make_conv_relu_pool(dtype="float64", seed=0, bug=None):
    """conv 3x3 (2 -> 3 channels, pad 1) on N=2 images 6x6, ReLU, 2x2 average pool, affine
    (27 -> 3 classes), mean softmax cross-entropy.

    The images are the parameter ``x`` (2, 2, 6, 6) (the input gradient, as cs231n checks dx of its
    conv layer, and as saliency maps use it): col2im is checked too. Filters ~ N(0, 2 / (C*3*3)),
    small random biases; X: a placeholder; y: integer labels (2,).
    """
    check_bug(bug, CONV_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 91)
    N, C, S, F, K = 2, 2, 6, 3, 3
    D = F * (S // 2) ** 2
    params = cast(dt, x=rng.standard_normal((N, C, S, S)),
                  w=rng.standard_normal((F, C, 3, 3)) * np.sqrt(2.0 / (C * 9)), b=0.1 * rng.standard_normal(F),
                  V=rng.standard_normal((D, K)) / np.sqrt(D), c=np.zeros(K))
    y = rng.integers(0, K, size=N)

    def fn(p, X, y):
        h, conv_cache = conv_forward(p["x"], p["w"], p["b"])
        a, relu_cache = relu_forward(h)
        pooled, pool_cache = avgpool_forward(a)
        n = pooled.shape[0]
        z, dense_cache = dense_forward(pooled.reshape(n, -1), p["V"], p["c"])
        loss, dz = softmax_cross_entropy(z, y)
        dflat, dV, dc = dense_backward(dz, dense_cache)
        da = avgpool_backward(dflat.reshape(pooled.shape), pool_cache, bug)
        dx, dw, db = conv_backward(relu_backward(da, relu_cache), conv_cache, bug)
        return loss, {"x": dx, "w": dw, "b": db, "V": dV, "c": dc}

    return fn, params, np.zeros(0, dtype=dt), y
