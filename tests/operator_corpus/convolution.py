"""Depthwise 1-d convolution (cross-correlation) with dilation 2 and zero padding 2.

Each channel has its own 3-tap kernel; taps read positions t, t+2, t+4 of the padded signal, so
windows of neighbouring outputs overlap and the backward must add their contributions. The input
is post-ReLU (about half its entries exactly 0), so some Jacobian entries of w are exactly 0.
"""
from __future__ import annotations

import numpy as np

DILATION, PAD, TAPS = 2, 2, 3

DESCRIPTION = ("depthwise conv1d, 3 taps, dilation 2, padding 2, stride 1: x (2,3,6) post-ReLU, w (3,3), b (3,) "
               "-> (2,3,6)")

BUGS = {
    "dx_assign": (("x",), "dx_padded[..., window] = ... instead of +=: the overlapping taps overwrite each other"),
    "dw_no_dilation": (("w",), "dw reads tap k at offset k instead of 2k: the dilation forgotten in the backward"),
}


def _windows(length_padded):
    out_len = length_padded - DILATION * (TAPS - 1)
    return out_len, [slice(DILATION * k, DILATION * k + out_len) for k in range(TAPS)]


def _conv(x, w):
    padded = np.pad(x, ((0, 0), (0, 0), (PAD, PAD)))
    _, windows = _windows(padded.shape[2])
    out = 0
    for k, window in enumerate(windows):
        out = out + w[None, :, k, None] * padded[:, :, window]
    return out


def f(inputs):
    return _conv(inputs["x"], inputs["w"]) + inputs["b"][None, :, None]


def vjp(inputs, g, *, bug=None):
    x, w = inputs["x"], inputs["w"]
    padded = np.pad(x, ((0, 0), (0, 0), (PAD, PAD)))
    out_len, windows = _windows(padded.shape[2])
    dpadded = np.zeros_like(padded)
    dw = np.zeros_like(w)
    for k, window in enumerate(windows):
        if bug == "dx_assign":
            dpadded[:, :, window] = w[None, :, k, None] * g
        else:
            dpadded[:, :, window] += w[None, :, k, None] * g
        read = slice(k, k + out_len) if bug == "dw_no_dilation" else window
        dw[:, k] = (g * padded[:, :, read]).sum(axis=(0, 2))
    return {"x": dpadded[:, :, PAD:-PAD], "w": dw, "b": g.sum(axis=(0, 2))}


def jvp(inputs, t):
    x, w = inputs["x"], inputs["w"]
    return _conv(t["x"], w) + _conv(x, t["w"]) + t["b"][None, :, None]


def inputs(rng, dtype=np.float64):
    x = np.maximum(rng.standard_normal((2, 3, 6)), 0.0)
    w = rng.standard_normal((3, 3)) / np.sqrt(3.0)
    b = 0.1 * rng.standard_normal(3)
    return {"x": x.astype(dtype), "w": w.astype(dtype), "b": b.astype(dtype)}
