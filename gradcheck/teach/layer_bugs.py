"""Backward passes of network layer kinds written the way a student writes them: for every layer
lesson (:mod:`gradcheck.teach.layer_lessons`) a wrong one and its correct twin.

Each function is a ``backward(node, params, cache, dy) -> (dx, grads)`` of a
:class:`reference.layers.LayerKind` (``gradcheck_reference.layers`` once installed): it reads the
cache that the reference kind's forward leaves, so ``LayerKind(kind, ref.init, ref.forward,
backward)`` swapped into ``Network(spec, layers={kind: ...})`` is the reference network with that
one backward replaced. The twins differ only by the bug (``code_diff`` of the two is the lesson's
wrong and right lines) and compute what the reference kind's backward computes, to rounding
(``tests/test_teach_layers.py`` checks both). They are written out in loops and whole formulas,
as in a course, not with the reference's vectorised helpers.
"""
from __future__ import annotations

import math

import numpy as np


def _heads(a, heads):
    """``(B, T, D)`` -> ``(B, heads, T, D / heads)``: head ``j`` owns features ``j*dh .. (j+1)*dh - 1``."""
    b, t, d = a.shape
    return a.reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)


def _concat(a):
    """``(B, heads, T, dh)`` -> ``(B, T, heads * dh)``: the heads side by side again."""
    b, h, t, dh = a.shape
    return a.transpose(0, 2, 1, 3).reshape(b, t, h * dh)


def _previous(a):
    """``a`` one step later along time (axis 1), zeros in front: ``h_{t-1}`` for every t, ``h_0 = 0``."""
    return np.concatenate([np.zeros_like(a[:, :1]), a[:, :-1]], axis=1)


def _recurrent_grads(params, x, hs, dz):
    """An RNN's or LSTM's (dx, weight gradients) from the pre-activation gradients ``dz`` of every
    step: the sums over time of ``x_t dz_t``, ``h_{t-1} dz_t`` and ``dz_t``."""
    rows = dz.reshape(-1, dz.shape[-1])
    grads = {"Wx": x.reshape(-1, x.shape[-1]).T @ rows,
             "Wh": _previous(hs).reshape(-1, hs.shape[-1]).T @ rows,
             "b": rows.sum(axis=0)}
    return dz @ params["Wx"].T, grads


# -- conv2d: cache (x shape, windows), windows[n, :, i, j] the (C, k, k) patch under output (i, j) ---
def conv2d_backward(node, params, cache, dy):
    """Correct: every window adds what it sends back into dx (windows overlap when stride < kernel)."""
    x_shape, windows = cache
    w = params["W"]
    k, s, p = node.kernel, node.stride, node.padding
    dw = np.zeros_like(w)
    dxp = np.zeros((x_shape[0], x_shape[1], x_shape[2] + 2 * p, x_shape[3] + 2 * p), dtype=dy.dtype)
    for n in range(dy.shape[0]):
        for f in range(w.shape[0]):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    dw[f] += windows[n, :, i, j] * dy[n, f, i, j]
                    dxp[n, :, i * s:i * s + k, j * s:j * s + k] += w[f] * dy[n, f, i, j]
    dx = dxp[:, :, p:p + x_shape[2], p:p + x_shape[3]]
    return dx, {"W": dw, "b": dy.sum(axis=(0, 2, 3))}


def conv2d_backward_assign(node, params, cache, dy):
    """Wrong: dx written by assignment, so each pixel keeps only the last window that covers it."""
    x_shape, windows = cache
    w = params["W"]
    k, s, p = node.kernel, node.stride, node.padding
    dw = np.zeros_like(w)
    dxp = np.zeros((x_shape[0], x_shape[1], x_shape[2] + 2 * p, x_shape[3] + 2 * p), dtype=dy.dtype)
    for n in range(dy.shape[0]):
        for f in range(w.shape[0]):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    dw[f] += windows[n, :, i, j] * dy[n, f, i, j]
                    dxp[n, :, i * s:i * s + k, j * s:j * s + k] = w[f] * dy[n, f, i, j]  # = for +=
    dx = dxp[:, :, p:p + x_shape[2], p:p + x_shape[3]]
    return dx, {"W": dw, "b": dy.sum(axis=(0, 2, 3))}


def conv2d_backward_no_stride(node, params, cache, dy):
    """Wrong: dx scattered back as if the stride were 1 (output (i, j) read rows i*s.., not i..)."""
    x_shape, windows = cache
    w = params["W"]
    k, s, p = node.kernel, node.stride, node.padding
    dw = np.zeros_like(w)
    dxp = np.zeros((x_shape[0], x_shape[1], x_shape[2] + 2 * p, x_shape[3] + 2 * p), dtype=dy.dtype)
    for n in range(dy.shape[0]):
        for f in range(w.shape[0]):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    dw[f] += windows[n, :, i, j] * dy[n, f, i, j]
                    dxp[n, :, i:i + k, j:j + k] += w[f] * dy[n, f, i, j]  # the stride forgotten
    dx = dxp[:, :, p:p + x_shape[2], p:p + x_shape[3]]
    return dx, {"W": dw, "b": dy.sum(axis=(0, 2, 3))}


# -- pooling: cache (x shape, dtype[, the argmax inside every window, row-major]) -------------------------
def avgpool2d_backward(node, params, cache, dy):
    """Correct: each of the size * size elements of a window gets 1 / size**2 of its gradient."""
    shape, dtype = cache
    size, s = node.size, node.step
    dx = np.zeros(shape, dtype=dtype)
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            dx[:, :, i * s:i * s + size, j * s:j * s + size] += dy[:, :, i, j, None, None] / (size * size)
    return dx, {}


def avgpool2d_backward_wrong_count(node, params, cache, dy):
    """Wrong: divided by the window's width instead of its number of elements."""
    shape, dtype = cache
    size, s = node.size, node.step
    dx = np.zeros(shape, dtype=dtype)
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            dx[:, :, i * s:i * s + size, j * s:j * s + size] += dy[:, :, i, j, None, None] / size  # size, not size**2
    return dx, {}


def maxpool2d_backward(node, params, cache, dy):
    """Correct: a window's gradient goes to its maximum only."""
    shape, dtype, first = cache
    size, s = node.size, node.step
    dx = np.zeros(shape, dtype=dtype)
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            mask = np.arange(size * size) == first[:, :, i, j, None]  # 1 at the window's maximum
            share = mask * dy[:, :, i, j, None]
            dx[:, :, i * s:i * s + size, j * s:j * s + size] += share.reshape(dy.shape[:2] + (size, size))
    return dx, {}


def maxpool2d_backward_whole_window(node, params, cache, dy):
    """Wrong: a window's gradient sent to every element of the window."""
    shape, dtype, first = cache
    size, s = node.size, node.step
    dx = np.zeros(shape, dtype=dtype)
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            mask = np.ones(size * size, dtype=bool)  # every element, not just the maximum
            share = mask * dy[:, :, i, j, None]
            dx[:, :, i * s:i * s + size, j * s:j * s + size] += share.reshape(dy.shape[:2] + (size, size))
    return dx, {}


# -- normalization: cache (xhat, 1 / sqrt(var + eps)[, the reduced axes]) ----------------------------------
def batchnorm_backward(node, params, cache, dy):
    """Correct: through xhat = (x - mean) / sqrt(var + eps), the batch's mean and variance included."""
    xhat, inv_std, axes = cache
    gamma = params["gamma"].reshape((1, -1) + (1,) * (dy.ndim - 2))
    dxhat = dy * gamma
    dx = inv_std * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                    - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))
    return dx, {"gamma": (dy * xhat).sum(axis=axes), "beta": dy.sum(axis=axes)}


def batchnorm_backward_stats_constant(node, params, cache, dy):
    """Wrong: the batch mean and variance treated as constants."""
    xhat, inv_std, axes = cache
    gamma = params["gamma"].reshape((1, -1) + (1,) * (dy.ndim - 2))
    dxhat = dy * gamma
    dx = inv_std * dxhat  # as if mean and var did not depend on x
    return dx, {"gamma": (dy * xhat).sum(axis=axes), "beta": dy.sum(axis=axes)}


def layernorm_backward(node, params, cache, dy):
    """Correct: each row is normalized over its own features, so the means run over the last axis."""
    xhat, inv_std = cache
    rows = tuple(range(dy.ndim - 1))
    dxhat = dy * params["gamma"]
    dx = inv_std * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                    - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, {"gamma": (dy * xhat).sum(axis=rows), "beta": dy.sum(axis=rows)}


def layernorm_backward_batch_axis(node, params, cache, dy):
    """Wrong: the backward's means taken over the batch axis, as in batchnorm."""
    xhat, inv_std = cache
    rows = tuple(range(dy.ndim - 1))
    dxhat = dy * params["gamma"]
    dx = inv_std * (dxhat - dxhat.mean(axis=0, keepdims=True)  # axis=0: over the batch
                    - xhat * (dxhat * xhat).mean(axis=0, keepdims=True))
    return dx, {"gamma": (dy * xhat).sum(axis=rows), "beta": dy.sum(axis=rows)}


# -- attention: cache {"x", "q", "k", "v", "p", "o", ...}, q, k, v, p per head ------------------------------
def attention_backward(node, params, cache, dy):
    """Correct: S = Q K^T / sqrt(dh), so both dQ and dK carry the 1 / sqrt(dh)."""
    x, q, k, v, p, o = (cache[name] for name in ("x", "q", "k", "v", "p", "o"))
    d = x.shape[-1]
    scale = 1.0 / math.sqrt(d // node.heads)
    grads = {"Wo": o.reshape(-1, d).T @ dy.reshape(-1, d)}
    do = _heads(dy @ params["Wo"].T, node.heads)
    dv = p.swapaxes(-1, -2) @ do
    dp = do @ v.swapaxes(-1, -2)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))  # through the softmax over the keys
    dq = ds @ k * scale
    dk = ds.swapaxes(-1, -2) @ q * scale
    dx = np.zeros_like(x)
    for name, dheads in (("Wq", dq), ("Wk", dk), ("Wv", dv)):
        dproj = _concat(dheads)
        grads[name] = x.reshape(-1, d).T @ dproj.reshape(-1, d)
        dx += dproj @ params[name].T
    return dx, grads


def attention_backward_no_scale(node, params, cache, dy):
    """Wrong: the scores' 1 / sqrt(dh) forgotten in dQ and dK."""
    x, q, k, v, p, o = (cache[name] for name in ("x", "q", "k", "v", "p", "o"))
    d = x.shape[-1]
    scale = 1.0 / math.sqrt(d // node.heads)
    grads = {"Wo": o.reshape(-1, d).T @ dy.reshape(-1, d)}
    do = _heads(dy @ params["Wo"].T, node.heads)
    dv = p.swapaxes(-1, -2) @ do
    dp = do @ v.swapaxes(-1, -2)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))  # through the softmax over the keys
    dq = ds @ k  # the scale forgotten
    dk = ds.swapaxes(-1, -2) @ q  # here too
    dx = np.zeros_like(x)
    for name, dheads in (("Wq", dq), ("Wk", dk), ("Wv", dv)):
        dproj = _concat(dheads)
        grads[name] = x.reshape(-1, d).T @ dproj.reshape(-1, d)
        dx += dproj @ params[name].T
    return dx, grads


# -- recurrence: cache (x, every h_t[, every c_t, tanh(c_t), the gates]) ------------------------------------
def rnn_backward(node, params, cache, dy):
    """Correct: h_t reaches the loss through its own output and through h_{t+1}."""
    x, hs = cache
    wh = params["Wh"]
    dz = np.zeros_like(hs)
    dh_next = np.zeros_like(hs[:, 0])
    for t in reversed(range(hs.shape[1])):
        dh = dy[:, t] + dh_next  # its own output, and what step t + 1 sends back
        dz[:, t] = dh * (1 - hs[:, t] ** 2)
        dh_next = dz[:, t] @ wh.T
    return _recurrent_grads(params, x, hs, dz)


def rnn_backward_no_carry(node, params, cache, dy):
    """Wrong: the gradient coming back from step t + 1 is computed but never added."""
    x, hs = cache
    wh = params["Wh"]
    dz = np.zeros_like(hs)
    dh_next = np.zeros_like(hs[:, 0])
    for t in reversed(range(hs.shape[1])):
        dh = dy[:, t]  # only its own output: dh_next forgotten
        dz[:, t] = dh * (1 - hs[:, t] ** 2)
        dh_next = dz[:, t] @ wh.T
    return _recurrent_grads(params, x, hs, dz)


def lstm_backward(node, params, cache, dy):
    """Correct: c_t = f * c_{t-1} + i * g, so the cell gradient goes back through the forget gate."""
    x, hs, cs, tcs, acts = cache
    wh = params["Wh"]
    c_prev = _previous(cs)
    dz = np.zeros_like(acts)
    dh_next = np.zeros_like(hs[:, 0])
    dc_next = np.zeros_like(hs[:, 0])
    for t in reversed(range(hs.shape[1])):
        i, f, g, o = np.split(acts[:, t], 4, axis=1)  # s(i), s(f), tanh(g), s(o)
        dh = dy[:, t] + dh_next
        dc = dc_next + dh * o * (1 - tcs[:, t] ** 2)
        dz[:, t] = np.concatenate([dc * g * i * (1 - i), dc * c_prev[:, t] * f * (1 - f),
                                   dc * i * (1 - g ** 2), dh * tcs[:, t] * o * (1 - o)], axis=1)
        dh_next = dz[:, t] @ wh.T
        dc_next = dc * f
    return _recurrent_grads(params, x, hs, dz)


def lstm_backward_no_forget_gate(node, params, cache, dy):
    """Wrong: the cell gradient passed back to c_{t-1} without the forget gate."""
    x, hs, cs, tcs, acts = cache
    wh = params["Wh"]
    c_prev = _previous(cs)
    dz = np.zeros_like(acts)
    dh_next = np.zeros_like(hs[:, 0])
    dc_next = np.zeros_like(hs[:, 0])
    for t in reversed(range(hs.shape[1])):
        i, f, g, o = np.split(acts[:, t], 4, axis=1)  # s(i), s(f), tanh(g), s(o)
        dh = dy[:, t] + dh_next
        dc = dc_next + dh * o * (1 - tcs[:, t] ** 2)
        dz[:, t] = np.concatenate([dc * g * i * (1 - i), dc * c_prev[:, t] * f * (1 - f),
                                   dc * i * (1 - g ** 2), dh * tcs[:, t] * o * (1 - o)], axis=1)
        dh_next = dz[:, t] @ wh.T
        dc_next = dc  # the forget gate dropped
    return _recurrent_grads(params, x, hs, dz)


# -- embedding: cache the indices (B, T) ----------------------------------------------------------------
def embedding_backward(node, params, cache, dy):
    """Correct: every position adds its gradient into the row it picked, repeated indices included."""
    idx = cache
    de = np.zeros_like(params["E"])
    np.add.at(de, idx, dy)  # unbuffered: a row picked twice gets both gradients
    return None, {"E": de}


def embedding_backward_assign(node, params, cache, dy):
    """Wrong: the rows assigned, so a repeated index keeps only its last position's gradient."""
    idx = cache
    de = np.zeros_like(params["E"])
    de[idx] = dy  # the last write wins (de[idx] += dy does the same: it is buffered)
    return None, {"E": de}


#: every lesson's pair: (wrong, right)
PAIRS = {
    "conv2d_backward_assign": (conv2d_backward_assign, conv2d_backward),
    "conv2d_backward_no_stride": (conv2d_backward_no_stride, conv2d_backward),
    "avgpool2d_backward_wrong_count": (avgpool2d_backward_wrong_count, avgpool2d_backward),
    "maxpool2d_backward_whole_window": (maxpool2d_backward_whole_window, maxpool2d_backward),
    "batchnorm_backward_stats_constant": (batchnorm_backward_stats_constant, batchnorm_backward),
    "layernorm_backward_batch_axis": (layernorm_backward_batch_axis, layernorm_backward),
    "attention_backward_no_scale": (attention_backward_no_scale, attention_backward),
    "rnn_backward_no_carry": (rnn_backward_no_carry, rnn_backward),
    "lstm_backward_no_forget_gate": (lstm_backward_no_forget_gate, lstm_backward),
    "embedding_backward_assign": (embedding_backward_assign, embedding_backward),
}
