"""Hand-written numpy operators with their VJPs and JVPs, and planted backward-pass bugs, for
the operator checks ``check_vjp`` / ``check_jvp``.

Written the way users write them (cs231n style, not with the reference package): the forward
pass computes, the backward pass recomputes the intermediates it needs from the inputs (the
"cache") and propagates the cotangent by hand; the JVP is hand-written forward mode too.

Conventions (those of ``gradcheck.check_vjp(f, f_vjp, inputs)`` and ``check_jvp(f, f_jvp, inputs)``):

* ``inputs``: dict name -> numpy array. Floating arrays are differentiated; integer arrays (the
  embedding's indices) are constants and get no gradient and no tangent.
* ``f(inputs)`` returns an array, a tuple of arrays (``lstm_step``: ``(h, c)``) or a dict of
  arrays (``rnn``: ``{"h": ...}``).
* ``vjp(inputs, cotangents)`` returns dict name -> gradient of ``sum(cotangent * output)`` for
  every floating input; ``cotangents`` has the structure of f's output.
* ``jvp(inputs, tangents)`` returns the output tangent (structure of f's output); ``tangents`` is
  a dict keyed by the floating inputs.
* Nothing mutates its arguments; float32 in gives float32 out (every constant is a Python scalar,
  so NumPy's promotion keeps the input dtype).

``make_inputs(rng, dtype)`` draws realistic inputs (ordinary initialisations) small enough that a
full Jacobian is cheap: at most ~150 input elements and ~100 output elements per operator.

Non-smooth operators: ``maxpool2d`` routes the gradient of a window to its *first* maximum (in
row-major window order, as ``np.argmax``) when there is a tie; ``make_inputs`` avoids ties (the
maximum of each window exceeds the runner-up by at least ``MAXPOOL_GAP``). ``relu_layer`` has
kinks at ordinary init: some pre-activations are near zero (none exactly zero).

``OPERATORS`` maps a name to an :class:`Operator`; ``BUGS`` maps a name to a :class:`Bug`, a
buggy VJP of one operator that differs from the correct one only by the planted bug, with the
names of the inputs whose gradient it gets wrong (the others stay exact).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Operator:
    name: str
    f: Callable
    vjp: Callable
    jvp: Callable
    make_inputs: Callable  # make_inputs(rng: np.random.Generator, dtype=np.float64) -> dict
    description: str


@dataclass(frozen=True)
class Bug:
    name: str
    operator: str  # a key of OPERATORS
    vjp: Callable  # the buggy vjp, same signature as the operator's
    wrong_inputs: tuple[str, ...]  # the inputs whose gradient the bug changes
    description: str
    variant: str = ""  # the operator's vjp runs the bug with bug=variant (its `if bug == variant:` branch)


def _randn(rng, shape, scale, dtype):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax(x):
    """Row-wise (last axis), numerically stable."""
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# -- linear: x @ W + b ------------------------------------------------------------------------------
def linear_f(inputs):
    return inputs["x"] @ inputs["W"] + inputs["b"]


def linear_vjp(inputs, dout, *, bug=None):
    x, W = inputs["x"], inputs["W"]
    dx = dout @ W.T
    dW = x.T @ dout
    db = dout.sum(axis=0)
    if bug == "bias_first_sample":  # the batch sum forgotten: first sample only
        db = dout[0].copy()
    return {"x": dx, "W": dW, "b": db}


def linear_jvp(inputs, tangents):
    x, W = inputs["x"], inputs["W"]
    return tangents["x"] @ W + x @ tangents["W"] + tangents["b"]


def linear_inputs(rng, dtype=np.float64):
    return {"x": _randn(rng, (4, 5), 1.0, dtype), "W": _randn(rng, (5, 3), 0.5, dtype),
            "b": _randn(rng, (3,), 0.1, dtype)}


# -- softmax, row-wise ------------------------------------------------------------------------------
def softmax_f(inputs):
    return _softmax(inputs["x"])


def softmax_vjp(inputs, dout, *, bug=None):
    s = _softmax(inputs["x"])
    dx = s * (dout - (s * dout).sum(axis=1, keepdims=True))
    if bug == "no_rowsum":  # only the diagonal of the Jacobian: s * (1 - s) style, row-sum term dropped
        dx = s * dout
    return {"x": dx}


def softmax_jvp(inputs, tangents):
    s = _softmax(inputs["x"])
    dx = tangents["x"]
    return s * (dx - (s * dx).sum(axis=1, keepdims=True))


def softmax_inputs(rng, dtype=np.float64):
    return {"x": _randn(rng, (4, 5), 1.5, dtype)}


# -- conv2d, NCHW -----------------------------------------------------------------------------------
def _conv(x, w, stride, pad):
    """Cross-correlation (what deep learning calls convolution), no bias."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho = (H + 2 * pad - KH) // stride + 1
    Wo = (W + 2 * pad - KW) // stride + 1
    out = np.zeros((N, F, Ho, Wo), dtype=np.result_type(x, w))
    for i in range(Ho):
        for j in range(Wo):
            window = xp[:, :, i * stride:i * stride + KH, j * stride:j * stride + KW]
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3]))
    return out


def _conv_inputs(rng, dtype, x_shape, w_shape):
    F, C, KH, KW = w_shape
    return {"x": _randn(rng, x_shape, 1.0, dtype),
            "w": _randn(rng, w_shape, 1 / math.sqrt(C * KH * KW), dtype),
            "b": _randn(rng, (F,), 0.1, dtype)}


def _conv_jvp(inputs, tangents, stride, pad):
    x, w = inputs["x"], inputs["w"]
    return (_conv(tangents["x"], w, stride, pad) + _conv(x, tangents["w"], stride, pad)
            + tangents["b"][None, :, None, None])


CONV2D_STRIDE, CONV2D_PAD = 2, 1  # 3x3 kernel: neighbouring windows share a row / column


def conv2d_f(inputs):
    return _conv(inputs["x"], inputs["w"], CONV2D_STRIDE, CONV2D_PAD) + inputs["b"][None, :, None, None]


def conv2d_vjp(inputs, dout, *, bug=None):
    """dx as a transposed convolution: dout dilated by the stride, padded by K-1, correlated with
    the kernel flipped in space and with its in/out channels swapped."""
    x, w = inputs["x"], inputs["w"]
    s, p = CONV2D_STRIDE, CONV2D_PAD
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Ho, Wo = dout.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dw = np.zeros_like(w)
    for kh in range(KH):
        for kw in range(KW):
            xs = xp[:, :, kh:kh + s * (Ho - 1) + 1:s, kw:kw + s * (Wo - 1) + 1:s]
            dw[:, :, kh, kw] = np.einsum("nfij,ncij->fc", dout, xs)
    db = dout.sum(axis=(0, 2, 3))
    dilated = np.zeros((N, F, s * (Ho - 1) + 1, s * (Wo - 1) + 1), dtype=dout.dtype)
    dilated[:, :, ::s, ::s] = dout
    w_t = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
    if bug == "dx_no_flip":  # channels swapped, but the kernel not rotated by 180 degrees
        w_t = w.transpose(1, 0, 2, 3)
    dilated = np.pad(dilated, ((0, 0), (0, 0), (KH - 1, KH - 1), (KW - 1, KW - 1)))
    core = _conv(dilated, w_t, 1, 0)  # gradient on the padded grid, rows (Ho-1)*s + KH
    dxp = np.zeros_like(xp)
    dxp[:, :, :core.shape[2], :core.shape[3]] = core
    dx = dxp[:, :, p:p + H, p:p + W]
    return {"x": dx, "w": dw, "b": db}


def conv2d_jvp(inputs, tangents):
    return _conv_jvp(inputs, tangents, CONV2D_STRIDE, CONV2D_PAD)


def conv2d_inputs(rng, dtype=np.float64):
    return _conv_inputs(rng, dtype, (2, 2, 5, 5), (2, 2, 3, 3))


CONV2D_OVERLAP_STRIDE, CONV2D_OVERLAP_PAD = 1, 1  # 3x3 kernel, stride 1: windows overlap heavily


def conv2d_overlap_f(inputs):
    return (_conv(inputs["x"], inputs["w"], CONV2D_OVERLAP_STRIDE, CONV2D_OVERLAP_PAD)
            + inputs["b"][None, :, None, None])


def conv2d_overlap_vjp(inputs, dout, *, bug=None):
    """cs231n's conv_backward_naive: loop over windows, scatter-add into dx."""
    x, w = inputs["x"], inputs["w"]
    s, p = CONV2D_OVERLAP_STRIDE, CONV2D_OVERLAP_PAD
    N = x.shape[0]
    F, _, KH, KW = w.shape
    Ho, Wo = dout.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    db = dout.sum(axis=(0, 2, 3))
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    hs, ws = i * s, j * s
                    window = xp[n, :, hs:hs + KH, ws:ws + KW]
                    dw[f] += window * dout[n, f, i, j]
                    if bug == "dx_assign":  # = instead of +=: overlapping windows / filters overwrite
                        dxp[n, :, hs:hs + KH, ws:ws + KW] = w[f] * dout[n, f, i, j]
                    else:
                        dxp[n, :, hs:hs + KH, ws:ws + KW] += w[f] * dout[n, f, i, j]
    dx = dxp[:, :, p:xp.shape[2] - p, p:xp.shape[3] - p]
    return {"x": dx, "w": dw, "b": db}


def conv2d_overlap_jvp(inputs, tangents):
    return _conv_jvp(inputs, tangents, CONV2D_OVERLAP_STRIDE, CONV2D_OVERLAP_PAD)


def conv2d_overlap_inputs(rng, dtype=np.float64):
    return _conv_inputs(rng, dtype, (2, 2, 4, 4), (2, 2, 3, 3))


# -- pooling: 2x2 windows, stride 2 -----------------------------------------------------------------
POOL = 2
MAXPOOL_GAP = 0.05  # make_inputs: each window's maximum beats the runner-up by at least this


def _windows(x):
    """(N, C, H, W) -> (N, C, H/2, W/2, 4): the 2x2 windows, row-major inside a window."""
    N, C, H, W = x.shape
    return x.reshape(N, C, H // POOL, POOL, W // POOL, POOL).transpose(0, 1, 2, 4, 3, 5).reshape(
        N, C, H // POOL, W // POOL, POOL * POOL)


def _unwindows(win):
    N, C, Ho, Wo, _ = win.shape
    return win.reshape(N, C, Ho, Wo, POOL, POOL).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, Ho * POOL, Wo * POOL)


def maxpool2d_f(inputs):
    return _windows(inputs["x"]).max(axis=-1)


def maxpool2d_vjp(inputs, dout, *, bug=None):
    """Ties: the first maximum of a window (row-major) gets the whole gradient."""
    x = inputs["x"]
    N, C, H, W = x.shape
    dx = np.zeros_like(x)
    for i in range(H // POOL):
        for j in range(W // POOL):
            win = x[:, :, i * POOL:(i + 1) * POOL, j * POOL:(j + 1) * POOL].reshape(N, C, -1)
            mask = np.zeros_like(win)
            np.put_along_axis(mask, win.argmax(axis=-1)[..., None], 1, axis=-1)
            if bug == "grad_to_window":  # every element of the window gets the gradient
                mask = np.ones_like(win)
            dx[:, :, i * POOL:(i + 1) * POOL, j * POOL:(j + 1) * POOL] += (
                mask * dout[:, :, i, j, None]).reshape(N, C, POOL, POOL)
    return {"x": dx}


def maxpool2d_jvp(inputs, tangents):
    arg = _windows(inputs["x"]).argmax(axis=-1)
    return np.take_along_axis(_windows(tangents["x"]), arg[..., None], axis=-1)[..., 0]


def maxpool2d_inputs(rng, dtype=np.float64):
    x = rng.standard_normal((2, 2, 4, 4))
    win = _windows(x)  # a copy: lift each window's maximum clear of the runner-up
    order = np.argsort(win, axis=-1)
    top = np.take_along_axis(win, order[..., -1:], axis=-1)
    second = np.take_along_axis(win, order[..., -2:-1], axis=-1)
    np.put_along_axis(win, order[..., -1:], np.maximum(top, second + MAXPOOL_GAP), axis=-1)
    return {"x": _unwindows(win).astype(dtype)}


def avgpool2d_f(inputs):
    return _windows(inputs["x"]).mean(axis=-1)


def avgpool2d_vjp(inputs, dout, *, bug=None):
    x = inputs["x"]
    dx = np.zeros_like(x)
    count = POOL * POOL
    if bug == "wrong_count":  # divides by the window's width, not its size
        count = POOL
    for i in range(x.shape[2] // POOL):
        for j in range(x.shape[3] // POOL):
            dx[:, :, i * POOL:(i + 1) * POOL, j * POOL:(j + 1) * POOL] += dout[:, :, i:i + 1, j:j + 1] / count
    return {"x": dx}


def avgpool2d_jvp(inputs, tangents):
    return _windows(tangents["x"]).mean(axis=-1)


def avgpool2d_inputs(rng, dtype=np.float64):
    return {"x": _randn(rng, (2, 2, 4, 4), 1.0, dtype)}


# -- batchnorm (training mode) and layernorm --------------------------------------------------------
EPS = 1e-5


def _norm_cache(x, axis):
    mu = x.mean(axis=axis, keepdims=True)
    xc = x - mu
    var = (xc ** 2).mean(axis=axis, keepdims=True)
    inv_std = 1 / np.sqrt(var + EPS)
    return xc, var, inv_std, xc * inv_std


def _norm_jvp(inputs, tangents, axis):
    x, gamma = inputs["x"], inputs["gamma"]
    dx = tangents["x"]
    xc, var, inv_std, xhat = _norm_cache(x, axis)
    dxc = dx - dx.mean(axis=axis, keepdims=True)
    dvar = (2 * xc * dxc).mean(axis=axis, keepdims=True)
    dinv_std = -0.5 * inv_std ** 3 * dvar
    dxhat = dxc * inv_std + xc * dinv_std
    return tangents["gamma"] * xhat + gamma * dxhat + tangents["beta"]


def _norm_inputs(rng, dtype, shape):
    D = shape[-1]
    return {"x": _randn(rng, shape, 1.0, dtype) + _randn(rng, (D,), 0.5, dtype),
            "gamma": 1 + _randn(rng, (D,), 0.2, dtype), "beta": _randn(rng, (D,), 0.2, dtype)}


def batchnorm_f(inputs):
    _, _, _, xhat = _norm_cache(inputs["x"], 0)
    return inputs["gamma"] * xhat + inputs["beta"]


def batchnorm_vjp(inputs, dy, *, bug=None):
    x, gamma = inputs["x"], inputs["gamma"]
    N = x.shape[0]
    xc, var, inv_std, xhat = _norm_cache(x, 0)
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dxhat = dy * gamma
    dx = inv_std / N * (N * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    if bug == "stats_constant":  # mean and variance treated as constants
        dx = dy * gamma / np.sqrt(var + EPS)
    return {"x": dx, "gamma": dgamma, "beta": dbeta}


def batchnorm_jvp(inputs, tangents):
    return _norm_jvp(inputs, tangents, 0)


def batchnorm_inputs(rng, dtype=np.float64):
    return _norm_inputs(rng, dtype, (6, 4))


def layernorm_f(inputs):
    _, _, _, xhat = _norm_cache(inputs["x"], -1)
    return inputs["gamma"] * xhat + inputs["beta"]


def layernorm_vjp(inputs, dy, *, bug=None):
    x, gamma = inputs["x"], inputs["gamma"]
    xc, var, inv_std, xhat = _norm_cache(x, -1)
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dxhat = dy * gamma
    axis = -1
    if bug == "batch_axis":  # copied from batchnorm: reductions over the batch axis
        axis = 0
    D = x.shape[axis]
    dx = inv_std / D * (D * dxhat - dxhat.sum(axis=axis, keepdims=True)
                        - xhat * (dxhat * xhat).sum(axis=axis, keepdims=True))
    return {"x": dx, "gamma": dgamma, "beta": dbeta}


def layernorm_jvp(inputs, tangents):
    return _norm_jvp(inputs, tangents, -1)


def layernorm_inputs(rng, dtype=np.float64):
    return _norm_inputs(rng, dtype, (5, 6))


# -- attention: single head, scaled dot product -----------------------------------------------------
def _attention_cache(inputs, causal):
    x, Wq, Wk, Wv = inputs["x"], inputs["Wq"], inputs["Wk"], inputs["Wv"]
    scale = 1 / math.sqrt(x.shape[1])
    Q, K, V = x @ Wq, x @ Wk, x @ Wv
    S = (Q @ K.T) * scale
    if causal:  # position t attends to positions <= t
        S[np.triu(np.ones(S.shape, dtype=bool), k=1)] = -np.inf
    P = _softmax(S)
    return scale, Q, K, V, P


def _attention_f(inputs, causal):
    _, _, _, V, P = _attention_cache(inputs, causal)
    return P @ V


def _attention_vjp(inputs, dout, causal, bug):
    x, Wq, Wk, Wv = inputs["x"], inputs["Wq"], inputs["Wk"], inputs["Wv"]
    scale, Q, K, V, P = _attention_cache(inputs, causal)
    dP = dout @ V.T
    dV = P.T @ dout
    dS = P * (dP - (dP * P).sum(axis=1, keepdims=True))  # masked entries: P = 0, so dS = 0
    dQ = dS @ K * scale
    dK = dS.T @ Q * scale
    if bug == "missing_scale":  # the 1/sqrt(d) forgotten on the key path
        dK = dS.T @ Q
    dx = dQ @ Wq.T + dK @ Wk.T + dV @ Wv.T
    return {"x": dx, "Wq": x.T @ dQ, "Wk": x.T @ dK, "Wv": x.T @ dV}


def _attention_jvp(inputs, tangents, causal):
    x, Wq, Wk, Wv = inputs["x"], inputs["Wq"], inputs["Wk"], inputs["Wv"]
    dx = tangents["x"]
    scale, Q, K, V, P = _attention_cache(inputs, causal)
    dQ = dx @ Wq + x @ tangents["Wq"]
    dK = dx @ Wk + x @ tangents["Wk"]
    dV = dx @ Wv + x @ tangents["Wv"]
    dS = (dQ @ K.T + Q @ dK.T) * scale
    dP = P * (dS - (P * dS).sum(axis=1, keepdims=True))  # masked entries: P = 0
    return dP @ V + P @ dV


def attention_f(inputs):
    return _attention_f(inputs, causal=False)


def attention_vjp(inputs, dout, *, bug=None):
    return _attention_vjp(inputs, dout, False, bug)


def attention_jvp(inputs, tangents):
    return _attention_jvp(inputs, tangents, causal=False)


def attention_causal_f(inputs):
    return _attention_f(inputs, causal=True)


def attention_causal_vjp(inputs, dout, *, bug=None):
    return _attention_vjp(inputs, dout, True, bug)


def attention_causal_jvp(inputs, tangents):
    return _attention_jvp(inputs, tangents, causal=True)


def attention_inputs(rng, dtype=np.float64):
    T, d = 4, 4
    return {"x": _randn(rng, (T, d), 1.0, dtype), **{k: _randn(rng, (d, d), 1 / math.sqrt(d), dtype)
                                                     for k in ("Wq", "Wk", "Wv")}}


attention_causal_inputs = attention_inputs  # the same shapes and init


# -- embedding: W[idx], idx integer (a constant) with repeated indices ------------------------------
def embedding_f(inputs):
    return inputs["W"][inputs["idx"]]


def embedding_vjp(inputs, dout, *, bug=None):
    W, idx = inputs["W"], inputs["idx"]
    dW = np.zeros_like(W)
    if bug == "assign":  # assigned, not accumulated: a repeated index keeps only its last gradient
        dW[idx] = dout
    else:
        np.add.at(dW, idx, dout)
    return {"W": dW}


def embedding_jvp(inputs, tangents):
    return tangents["W"][inputs["idx"]]


def embedding_inputs(rng, dtype=np.float64):
    V, D = 6, 4
    idx = rng.integers(0, V, size=(2, 3))
    if np.unique(idx).size == idx.size:  # make sure some token repeats
        idx[1, 2] = idx[0, 0]
    return {"W": _randn(rng, (V, D), 1.0, dtype), "idx": idx}


# -- lstm_step: one step of an LSTM, outputs (h, c) -------------------------------------------------
def _lstm_cache(inputs):
    x, h_prev, c_prev = inputs["x"], inputs["h_prev"], inputs["c_prev"]
    H = h_prev.shape[1]
    a = x @ inputs["Wx"] + h_prev @ inputs["Wh"] + inputs["b"]
    i, f, o = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), _sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    c = f * c_prev + i * g
    return i, f, o, g, c, np.tanh(c)


def lstm_step_f(inputs):
    _, _, o, _, c, tc = _lstm_cache(inputs)
    return o * tc, c


def lstm_step_vjp(inputs, cotangents, *, bug=None):
    dnext_h, dnext_c = cotangents
    x, h_prev, c_prev = inputs["x"], inputs["h_prev"], inputs["c_prev"]
    Wx, Wh = inputs["Wx"], inputs["Wh"]
    i, f, o, g, c, tc = _lstm_cache(inputs)
    dc = dnext_c + dnext_h * o * (1 - tc ** 2)
    do = dnext_h * tc
    di, df, dg = dc * g, dc * c_prev, dc * i
    dc_prev = dc * f
    if bug == "no_forget_gate":  # the forget gate dropped on the cell path
        dc_prev = dc
    da = np.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g ** 2)], axis=1)
    return {"x": da @ Wx.T, "h_prev": da @ Wh.T, "c_prev": dc_prev,
            "Wx": x.T @ da, "Wh": h_prev.T @ da, "b": da.sum(axis=0)}


def lstm_step_jvp(inputs, tangents):
    x, h_prev, c_prev = inputs["x"], inputs["h_prev"], inputs["c_prev"]
    H = h_prev.shape[1]
    i, f, o, g, c, tc = _lstm_cache(inputs)
    da = (tangents["x"] @ inputs["Wx"] + x @ tangents["Wx"] + tangents["h_prev"] @ inputs["Wh"]
          + h_prev @ tangents["Wh"] + tangents["b"])
    di = i * (1 - i) * da[:, :H]
    df = f * (1 - f) * da[:, H:2 * H]
    do = o * (1 - o) * da[:, 2 * H:3 * H]
    dg = (1 - g ** 2) * da[:, 3 * H:]
    dc = df * c_prev + f * tangents["c_prev"] + di * g + i * dg
    dh = do * tc + o * (1 - tc ** 2) * dc
    return dh, dc


def lstm_step_inputs(rng, dtype=np.float64):
    N, D, H = 2, 3, 3
    return {"x": _randn(rng, (N, D), 1.0, dtype), "h_prev": _randn(rng, (N, H), 0.5, dtype),
            "c_prev": _randn(rng, (N, H), 0.5, dtype), "Wx": _randn(rng, (D, 4 * H), 1 / math.sqrt(D), dtype),
            "Wh": _randn(rng, (H, 4 * H), 1 / math.sqrt(H), dtype), "b": _randn(rng, (4 * H,), 0.1, dtype)}


# -- rnn: vanilla tanh RNN unrolled over T steps, output {"h": (T, N, H)} ---------------------------
def _rnn_states(inputs):
    x, h = inputs["x"], inputs["h0"]
    hs = []
    for t in range(x.shape[0]):
        h = np.tanh(x[t] @ inputs["Wx"] + h @ inputs["Wh"] + inputs["b"])
        hs.append(h)
    return np.stack(hs)


def rnn_f(inputs):
    return {"h": _rnn_states(inputs)}


def rnn_vjp(inputs, cotangents, *, bug=None):
    x, h0, Wx, Wh = inputs["x"], inputs["h0"], inputs["Wx"], inputs["Wh"]
    dhs = cotangents["h"]
    hs = _rnn_states(inputs)
    dx = np.zeros_like(x)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(inputs["b"])
    dh_next = np.zeros_like(h0)
    for t in reversed(range(x.shape[0])):
        dh = dhs[t] + dh_next
        if bug == "no_carry":  # the gradient from step t+1 forgotten
            dh = dhs[t]
        h_prev = hs[t - 1] if t > 0 else h0
        dz = dh * (1 - hs[t] ** 2)
        dx[t] = dz @ Wx.T
        dWx += x[t].T @ dz
        dWh += h_prev.T @ dz
        db += dz.sum(axis=0)
        dh_next = dz @ Wh.T
    return {"x": dx, "h0": dh_next, "Wx": dWx, "Wh": dWh, "b": db}


def rnn_jvp(inputs, tangents):
    x, Wx, Wh, b = inputs["x"], inputs["Wx"], inputs["Wh"], inputs["b"]
    h, dh = inputs["h0"], tangents["h0"]
    dhs = []
    for t in range(x.shape[0]):
        z = x[t] @ Wx + h @ Wh + b
        dz = tangents["x"][t] @ Wx + x[t] @ tangents["Wx"] + dh @ Wh + h @ tangents["Wh"] + tangents["b"]
        h = np.tanh(z)
        dh = (1 - h ** 2) * dz
        dhs.append(dh)
    return {"h": np.stack(dhs)}


def rnn_inputs(rng, dtype=np.float64):
    T, N, D, H = 3, 2, 3, 4
    return {"x": _randn(rng, (T, N, D), 1.0, dtype), "h0": _randn(rng, (N, H), 0.5, dtype),
            "Wx": _randn(rng, (D, H), 1 / math.sqrt(D), dtype), "Wh": _randn(rng, (H, H), 1 / math.sqrt(H), dtype),
            "b": _randn(rng, (H,), 0.1, dtype)}


# -- relu_layer: relu(x @ W + b), kinks at ordinary init --------------------------------------------
def relu_layer_f(inputs):
    return np.maximum(inputs["x"] @ inputs["W"] + inputs["b"], 0)


def relu_layer_vjp(inputs, dout, *, bug=None):
    x, W = inputs["x"], inputs["W"]
    z = x @ W + inputs["b"]
    dz = dout * (z > 0)
    return {"x": dz @ W.T, "W": x.T @ dz, "b": dz.sum(axis=0)}


def relu_layer_jvp(inputs, tangents):
    x, W = inputs["x"], inputs["W"]
    z = x @ W + inputs["b"]
    dz = tangents["x"] @ W + x @ tangents["W"] + tangents["b"]
    return dz * (z > 0)


def relu_layer_inputs(rng, dtype=np.float64):
    return {"x": _randn(rng, (4, 5), 1.0, dtype), "W": _randn(rng, (5, 3), math.sqrt(2 / 5), dtype),
            "b": _randn(rng, (3,), 0.1, dtype)}


# -- tanh_layer_grad: the first-order VJP of a tanh layer, as a function (double backward) -----------
def _tanh_layer_cache(inputs):
    x, W, v = inputs["x"], inputs["W"], inputs["v"]
    h = np.tanh(x @ W)
    s = 1 - h ** 2
    return h, s, v * s


def tanh_layer_grad_f(inputs):
    """The backward of g(x, W) = tanh(x @ W) under the cotangent v: (dx, dW) = (u @ W.T, x.T @ u)
    with u = v * (1 - h**2). Differentiating this is double backward (a gradient penalty, a Hessian-
    vector product)."""
    x, W = inputs["x"], inputs["W"]
    _, _, u = _tanh_layer_cache(inputs)
    return {"gx": u @ W.T, "gW": x.T @ u}


def tanh_layer_grad_vjp(inputs, cotangents, *, bug=None):
    """The second-order backward: cotangents (cgx, cgW) of the first-order gradients (gx, gW)."""
    x, W, v = inputs["x"], inputs["W"], inputs["v"]
    cgx, cgW = cotangents["gx"], cotangents["gW"]
    h, s, u = _tanh_layer_cache(inputs)
    du = cgx @ W + x @ cgW  # gx = u @ W.T and gW = x.T @ u both read u = v * (1 - h**2)
    dv = du * s
    dz = du * v * (-2 * h) * s  # through 1 - h**2: d(1 - h**2) = -2 h dh and dh = (1 - h**2) dz
    dx = u @ cgW.T + dz @ W.T
    dW = cgx.T @ u + x.T @ dz
    if bug == "detached":  # h (so 1 - h**2) taken as a constant: .detach() or a backward run under no_grad
        dx = u @ cgW.T
        dW = cgx.T @ u
    return {"x": dx, "W": dW, "v": dv}


def tanh_layer_grad_jvp(inputs, tangents):
    x, W, v = inputs["x"], inputs["W"], inputs["v"]
    tx, tW, tv = tangents["x"], tangents["W"], tangents["v"]
    h, s, u = _tanh_layer_cache(inputs)
    tz = tx @ W + x @ tW
    ts = -2 * h * s * tz
    tu = tv * s + v * ts
    return {"gx": tu @ W.T + u @ tW.T, "gW": tx.T @ u + x.T @ tu}


def tanh_layer_grad_inputs(rng, dtype=np.float64):
    N, D, H = 3, 4, 3
    return {"x": _randn(rng, (N, D), 1.0, dtype), "W": _randn(rng, (D, H), 1 / math.sqrt(D), dtype),
            "v": _randn(rng, (N, H), 1.0, dtype)}


# -- the catalog ------------------------------------------------------------------------------------
def _operator(name, description):
    g = globals()
    return Operator(name, g[f"{name}_f"], g[f"{name}_vjp"], g[f"{name}_jvp"], g[f"{name}_inputs"], description)


OPERATORS: dict[str, Operator] = {op.name: op for op in [
    _operator("linear", "x (4,5) @ W (5,3) + b (3,) -> (4,3)"),
    _operator("softmax", "row-wise softmax, numerically stable: x (4,5) -> (4,5)"),
    _operator("conv2d", "NCHW cross-correlation, stride 2, pad 1: x (2,2,5,5), w (2,2,3,3), b (2,) -> (2,2,3,3); "
                        "dx as a transposed convolution with the flipped kernel"),
    _operator("conv2d_overlap", "NCHW cross-correlation, stride 1, pad 1 (overlapping windows): x (2,2,4,4), "
                                "w (2,2,3,3), b (2,) -> (2,2,4,4); dx by the naive window loop (scatter-add)"),
    _operator("maxpool2d", "2x2 max pool, stride 2: x (2,2,4,4) -> (2,2,2,2); ties: the first maximum gets the "
                           "gradient; inputs have no ties"),
    _operator("avgpool2d", "2x2 average pool, stride 2: x (2,2,4,4) -> (2,2,2,2)"),
    _operator("batchnorm", "batch norm, training mode, eps 1e-5: x (6,4), gamma (4,), beta (4,) -> y (6,4)"),
    _operator("layernorm", "layer norm over the last axis, eps 1e-5: x (5,6), gamma (6,), beta (6,) -> (5,6)"),
    _operator("attention", "single-head scaled dot-product self-attention: x (4,4), Wq, Wk, Wv (4,4) -> (4,4)"),
    _operator("attention_causal", "attention with a causal mask: x (4,4), Wq, Wk, Wv (4,4) -> (4,4)"),
    _operator("embedding", "W (6,4)[idx], idx (2,3) integer with repeats (a constant) -> (2,3,4)"),
    _operator("lstm_step", "one LSTM step (gates i, f, o, g): x (2,3), h_prev (2,3), c_prev (2,3), Wx (3,12), "
                           "Wh (3,12), b (12,) -> tuple (h (2,3), c (2,3))"),
    _operator("rnn", "vanilla tanh RNN over T=3 steps: x (3,2,3), h0 (2,4), Wx (3,4), Wh (4,4), b (4,) -> "
                     "dict {'h': (3,2,4)}"),
    _operator("relu_layer", "relu(x (4,5) @ W (5,3) + b (3,)) -> (4,3); kinks at ordinary init"),
    _operator("tanh_layer_grad", "the first-order VJP of tanh(x @ W) under the cotangent v, as a function: "
                                 "x (3,4), W (4,3), v (3,3) -> dict {'gx': (3,4), 'gW': (4,3)}; its vjp is "
                                 "double backward"),
]}


def _buggy(vjp, bug):
    def buggy_vjp(inputs, cotangents):
        return vjp(inputs, cotangents, bug=bug)

    buggy_vjp.__name__ = buggy_vjp.__qualname__ = f"{vjp.__name__}_{bug}"
    return buggy_vjp


def _bug(operator, bug, wrong_inputs, description):
    return Bug(f"{operator}_{bug}", operator, _buggy(OPERATORS[operator].vjp, bug), tuple(wrong_inputs), description,
               bug)


BUGS: dict[str, Bug] = {b.name: b for b in [
    _bug("linear", "bias_first_sample", ["b"], "db = dout[0]: the batch sum of the bias gradient forgotten"),
    _bug("softmax", "no_rowsum", ["x"], "dx = s * dout: the row-sum term s * sum(s * dout) dropped"),
    _bug("conv2d", "dx_no_flip", ["x"], "dx correlates with the channel-swapped kernel but not rotated by 180 degrees"),
    _bug("conv2d_overlap", "dx_assign", ["x"], "dx[window] = ... instead of +=: overlapping windows and other "
                                               "filters overwrite each other's contribution"),
    _bug("maxpool2d", "grad_to_window", ["x"], "the gradient goes to every element of the window, not its maximum"),
    _bug("avgpool2d", "wrong_count", ["x"], "divides by the window width (2), not the window size (4)"),
    _bug("batchnorm", "stats_constant", ["x"], "dx = dy * gamma / sqrt(var + eps): mean and variance treated as "
                                               "constants"),
    _bug("layernorm", "batch_axis", ["x"], "the backward reductions over the batch axis (copied from batchnorm)"),
    _bug("attention", "missing_scale", ["x", "Wk"], "the 1/sqrt(d) factor forgotten in dK"),
    _bug("lstm_step", "no_forget_gate", ["c_prev"], "dc_prev = dc instead of dc * f"),
    _bug("rnn", "no_carry", ["x", "h0", "Wx", "Wh", "b"], "dh at step t is only dout[t]: the gradient carried "
                                                         "from step t+1 forgotten"),
    _bug("embedding", "assign", ["W"], "dW[idx] = dout instead of np.add.at: a repeated index keeps one gradient"),
    _bug("tanh_layer_grad", "detached", ["x", "W"], "double backward through a detached h: 1 - h**2 treated as a "
                                                    "constant, so the path through h is missing from dx and dW"),
]}
