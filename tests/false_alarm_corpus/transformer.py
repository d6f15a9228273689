"""A pre-LayerNorm transformer block: single-head self-attention and a GELU MLP, each behind a
layer norm and inside a residual connection.

Conventions: X (N, T, d) with rows as tokens; layer norm over the last axis with
``eps = 1e-5``, variance as the plain mean of squared deviations (written out, not ``np.var``,
which takes absolute values of complex input); attention: Q = h Wq, K = h Wk, V = h Wv (d, d),
S = Q K^T / sqrt(d) per sequence, softmax over the keys, output (A V) Wo; the MLP is
``gelu(h W1 + b1) W2 + b2`` with W1 (d, 4d), W2 (4d, d) and GELU's tanh approximation
``0.5 z (1 + tanh(c (z + 0.044715 z^3)))``, c = sqrt(2 / pi). The block:

    x2  = x  + attention(layernorm(x; g1, be1))
    out = x2 + mlp(layernorm(x2; g2, be2))

Loss: half the squared error against y (N, T, d), summed and divided by the batch size N.
The residuals make the gradient reaching x2 the sum of the MLP branch's and the skip path's.
"""
from __future__ import annotations

import math

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator
from tests.false_alarm_corpus.attention import attention_backward, attention_forward

TRANSFORMER_BUGS = {
    # gelu'(z) taken as 0.5 (1 + tanh(.)): the z * d tanh(.)/dz part dropped; wrong from W1 back
    "gelu_derivative_missing_tanh_term": ("W1", "b1", "ln2_gamma", "ln2_beta",
                                          "Wq", "Wk", "Wv", "Wo", "ln1_gamma", "ln1_beta"),
    # dQ = dS K and dK = dS^T Q without the 1/sqrt(d) of the forward pass
    "attention_scale_missing": ("Wq", "Wk", "ln1_gamma", "ln1_beta"),
    # dx2 = the MLP branch's gradient only: the second residual's identity path not added
    "residual_grad_dropped": ("Wq", "Wk", "Wv", "Wo", "ln1_gamma", "ln1_beta"),
}
#: layer norm's epsilon (PyTorch's default)
EPS = 1e-5
#: sqrt(2 / pi), GELU's tanh-approximation constant
GELU_C = math.sqrt(2.0 / math.pi)


def _flat(a):
    """(N, T, k) -> (N*T, k), to sum weight gradients over batch and time in one product."""
    return a.reshape(-1, a.shape[-1])


def layernorm_forward(x, gamma, beta):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + EPS)
    xhat = xc * inv_std
    return xhat * gamma + beta, (xhat, inv_std, gamma)


def layernorm_backward(dout, cache):
    """Returns (dx, dgamma, dbeta)."""
    xhat, inv_std, gamma = cache
    dgamma = _flat(dout * xhat).sum(axis=0)
    dbeta = _flat(dout).sum(axis=0)
    dxhat = dout * gamma
    dx = inv_std * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                    - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta


def gelu_forward(z):
    t = np.tanh(GELU_C * (z + 0.044715 * z * z * z))
    return 0.5 * z * (1.0 + t), (z, t)


def gelu_backward(dout, cache, bug=None):
    z, t = cache
    local = 0.5 * (1.0 + t)
    if bug != "gelu_derivative_missing_tanh_term":
        local = local + 0.5 * z * (1.0 - t * t) * GELU_C * (1.0 + 3 * 0.044715 * z * z)
    return dout * local


def make_transformer_block(dtype="float64", seed=0, bug=None):
    """Batch N=2 of T=4 tokens, d=4, MLP hidden 8; weights ~ N(0, 1/fan_in), biases ~ 0.1 N(0, 1),
    layer-norm gains 1 + 0.1 N(0, 1) and shifts 0.1 N(0, 1) (a block some steps into training);
    inputs and targets N(0, 1).

    params: ``ln1_gamma``, ``ln1_beta`` (4,), ``Wq``, ``Wk``, ``Wv``, ``Wo`` (4, 4), ``ln2_gamma``,
    ``ln2_beta`` (4,), ``W1`` (4, 8), ``b1`` (8,), ``W2`` (8, 4), ``b2`` (4,); X, y (2, 4, 4).
    """
    check_bug(bug, TRANSFORMER_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 161)
    N, T, d, hid = 2, 4, 4, 8
    raw = {"ln1_gamma": 1.0 + 0.1 * rng.standard_normal(d), "ln1_beta": 0.1 * rng.standard_normal(d)}
    for k in ("Wq", "Wk", "Wv", "Wo"):
        raw[k] = rng.standard_normal((d, d)) / math.sqrt(d)
    raw.update(ln2_gamma=1.0 + 0.1 * rng.standard_normal(d), ln2_beta=0.1 * rng.standard_normal(d),
               W1=rng.standard_normal((d, hid)) / math.sqrt(d), b1=0.1 * rng.standard_normal(hid),
               W2=rng.standard_normal((hid, d)) / math.sqrt(hid), b2=0.1 * rng.standard_normal(d))
    params = cast(dt, **raw)
    X = rng.standard_normal((N, T, d)).astype(dt)
    y = rng.standard_normal((N, T, d)).astype(dt)

    def fn(p, X, y):
        h1, ln1_cache = layernorm_forward(X, p["ln1_gamma"], p["ln1_beta"])
        att, att_cache = attention_forward(h1, p["Wq"], p["Wk"], p["Wv"], p["Wo"])
        x2 = X + att
        h2, ln2_cache = layernorm_forward(x2, p["ln2_gamma"], p["ln2_beta"])
        z = h2 @ p["W1"] + p["b1"]
        g, gelu_cache = gelu_forward(z)
        out = x2 + (g @ p["W2"] + p["b2"])
        n = X.shape[0]
        r = out - y
        loss = 0.5 * (r * r).sum() / n
        dout = r / n
        grads = {"W2": _flat(g).T @ _flat(dout), "b2": _flat(dout).sum(axis=0)}
        dz = gelu_backward(dout @ p["W2"].T, gelu_cache, bug)
        grads["W1"] = _flat(h2).T @ _flat(dz)
        grads["b1"] = _flat(dz).sum(axis=0)
        dx2, grads["ln2_gamma"], grads["ln2_beta"] = layernorm_backward(dz @ p["W1"].T, ln2_cache)
        if bug != "residual_grad_dropped":
            dx2 = dx2 + dout
        dh1, attention_grads = attention_backward(dx2, att_cache, bug, with_input=True)
        grads.update(attention_grads)
        _, grads["ln1_gamma"], grads["ln1_beta"] = layernorm_backward(dh1, ln1_cache)
        return loss, grads

    return fn, params, X, y
