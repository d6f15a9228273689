"""2x2 max pooling (stride 2) on inputs with ties, followed by a dense read-out.

Convention for ties: the backward gives the whole gradient to the FIRST maximal element of each
window in row-major order (top-left, top-right, bottom-left, bottom-right), i.e. ``np.argmax`` of
the flattened window; the other tied elements get zero. Images are (N, C, H, W), H and W even.
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator
from tests.false_alarm_corpus.softmax import dense_backward, dense_forward

SCALED_TIES_BUGS = {
    "ties_to_all": ("w", "b"),        # every tied maximum of a window receives the gradient
}
INPUT_TIES_BUGS = {
    "argmax_one_off": ("x",),         # the gradient goes to the window element after the maximum
}


def _windows(x):
    """(N, C, H, W) -> (N, C, H/2, W/2, 4), each window flattened row-major."""
    N, C, H, W = x.shape
    return x.reshape(N, C, H // 2, 2, W // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, H // 2, W // 2, 4)


def _unwindows(w):
    """Inverse of :func:`_windows`."""
    N, C, H2, W2, _ = w.shape
    return w.reshape(N, C, H2, W2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, 2 * H2, 2 * W2)


def maxpool_forward(x):
    """Max over each non-overlapping 2x2 window; returns (out (N, C, H/2, W/2), cache)."""
    win = _windows(x)
    arg = win.argmax(axis=-1)
    out = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    return out, (win, arg, out)


def maxpool_backward(dout, cache, bug=None):
    """Routes dout to the first maximum of each window (see the module docstring)."""
    win, arg, out = cache
    if bug == "ties_to_all":
        dwin = (win == out[..., None]) * dout[..., None]
    else:
        if bug == "argmax_one_off":
            arg = (arg + 1) % 4
        dwin = np.zeros_like(win)
        np.put_along_axis(dwin, arg[..., None], dout[..., None], axis=-1)
    return _unwindows(dwin)


def _integer_image(rng, shape):
    """Small integers 0..3 as floats (many ties), with window (0, 0) of image 0, channel 0 tied at
    its maximum: [[3, 3], [1, 0]]."""
    x = rng.integers(0, 4, size=shape).astype(np.float64)
    x[0, 0, :2, :2] = [[3.0, 3.0], [1.0, 0.0]]
    return x


def _readout_loss(pooled, V, c, y):
    """Flatten, dense read-out, half MSE; returns (loss, dpooled, dV, dc)."""
    N = pooled.shape[0]
    out, cache = dense_forward(pooled.reshape(N, -1), V, c)
    r = out - y
    dflat, dV, dc = dense_backward(r / N, cache)
    return 0.5 * (r * r).sum() / N, dflat.reshape(pooled.shape), dV, dc


def make_maxpool_scaled_ties(dtype="float64", seed=0, bug=None):
    """Per-channel affine map h[n, c] = w[c] * X[n, 0] + b[c] of an integer image X (3, 1, 4, 4)
    with ties, 2x2 max pooling, dense read-out (8 -> 3), half MSE.

    Ties in X stay exact ties in h under any perturbation of w and b (the map is the same for
    every pixel of a channel), so the loss is differentiable in w and b although windows are tied:
    a backward that credits every tied maximum overcounts there, and that is a bug, not a kink.
    """
    check_bug(bug, SCALED_TIES_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 51)
    C = 2
    w = rng.uniform(0.5, 1.5, C) * rng.choice([-1.0, 1.0], C)
    params = cast(dt, w=w, b=0.1 * rng.standard_normal(C), V=rng.standard_normal((4 * C, 3)) / np.sqrt(4 * C),
                  c=0.1 * rng.standard_normal(3))
    X = _integer_image(rng, (3, 1, 4, 4)).astype(dt)
    y = rng.standard_normal((3, 3)).astype(dt)

    def fn(p, X, y):
        w, b = p["w"][None, :, None, None], p["b"][None, :, None, None]
        h = w * X + b
        pooled, cache = maxpool_forward(h)
        loss, dpooled, dV, dc = _readout_loss(pooled, p["V"], p["c"], y)
        dh = maxpool_backward(dpooled, cache, bug)
        return loss, {"w": (dh * X).sum(axis=(0, 2, 3)), "b": dh.sum(axis=(0, 2, 3)), "V": dV, "c": dc}

    return fn, params, X, y


def make_maxpool_input_ties(dtype="float64", seed=0, bug=None):
    """2x2 max pooling of the parameter ``x`` itself (2, 2, 4, 4), integer valued with ties, then a
    dense read-out (8 -> 3) and half MSE. At a tie the loss has a kink in each tied element (the
    one-sided derivatives are the window's gradient and 0); the first-maximum convention gives a
    valid one-sided value. X: a placeholder (the image is the parameter); y (2, 3).
    """
    check_bug(bug, INPUT_TIES_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 52)
    params = cast(dt, x=_integer_image(rng, (2, 2, 4, 4)), V=rng.standard_normal((8, 3)) / np.sqrt(8),
                  c=0.1 * rng.standard_normal(3))
    y = rng.standard_normal((2, 3)).astype(dt)

    def fn(p, X, y):
        pooled, cache = maxpool_forward(p["x"])
        loss, dpooled, dV, dc = _readout_loss(pooled, p["V"], p["c"], y)
        return loss, {"x": maxpool_backward(dpooled, cache, bug), "V": dV, "c": dc}

    return fn, params, np.zeros(0, dtype=dt), y
