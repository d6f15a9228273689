"""Multi-head scaled dot-product self-attention over ``(B, T, D)``, with a hand-written backward.

For ``heads`` heads of ``dh = D / heads`` features each (``Wq, Wk, Wv, Wo`` all ``(D, D)``)::

    Q = x Wq,  K = x Wk,  V = x Wv                 (B, T, D), then split: (B, heads, T, dh)
    S = Q K^T / sqrt(dh)                           (B, heads, T, T): query t, key s
    P = softmax over s of S                        causal: S[t, s] for s > t is excluded (-inf)
    O = P V                                        (B, heads, T, dh), heads concatenated: (B, T, D)
    y = O Wo

Backward, in reverse: ``dWo = O^T dy``, ``dO = dy Wo^T``; ``dP = dO V^T``, ``dV = P^T dO``; the
softmax Jacobian ``dS = P * (dP - sum_s(dP * P))`` (the row-sum term is the derivative of the
normalization); ``dQ = dS K / sqrt(dh)``, ``dK = dS^T Q / sqrt(dh)``; then every projection
``dW = x^T dQ`` etc. and ``dx = dQ Wq^T + dK Wk^T + dV Wv^T`` (x feeds all three projections).
Masked scores have ``P = 0``, so their ``dS`` is exactly 0: nothing flows through them.

Numerics: the softmax subtracts each row's maximum (a position always sees itself, so every row
has a finite maximum and at least one nonzero probability). float32 in, float32 out (the scale
``1/sqrt(dh)`` is a Python float, the mask value a float scalar).
"""
from __future__ import annotations

import math

import numpy as np

from .base import Context, LayerKind, weight


def _init(node, in_shape, rng, scheme, dtype):
    d = in_shape[-1]
    return {name: weight(rng, (d, d), d, d, scheme, dtype) for name in ("Wq", "Wk", "Wv", "Wo")}


def _split(a, heads):
    """``(B, T, D)`` -> ``(B, heads, T, D / heads)``: head ``j`` owns features ``j*dh .. (j+1)*dh - 1``."""
    b, t, d = a.shape
    return a.reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)


def _merge(a):
    """The inverse of :func:`_split`: ``(B, heads, T, dh)`` -> ``(B, T, heads * dh)``."""
    b, h, t, dh = a.shape
    return a.transpose(0, 2, 1, 3).reshape(b, t, h * dh)


def _softmax(s, mask):
    """Softmax over the last axis; entries where ``mask`` is False get probability 0."""
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    e = np.exp(s - s.max(axis=-1, keepdims=True))  # exp(-inf) = 0: no warning
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_backward(p, dp):
    """dL/dS from dL/dP for ``P = softmax(S)`` over the last axis: ``P * (dP - sum(dP * P))``."""
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))


def _check(node, x):
    if x.ndim != 3:
        raise ValueError(f"attention takes a batch of sequences (batch, length, features), got shape {x.shape}")
    if x.shape[-1] % node.heads:
        raise ValueError(f"Attention.heads={node.heads}: does not divide the {x.shape[-1]} features")


def forward(node, params, x, ctx: Context):
    _check(node, x)
    t, d = x.shape[1], x.shape[2]
    scale = 1.0 / math.sqrt(d // node.heads)
    q = _split(x @ params["Wq"], node.heads)
    k = _split(x @ params["Wk"], node.heads)
    v = _split(x @ params["Wv"], node.heads)
    s = (q @ k.swapaxes(-1, -2)) * scale
    mask = np.tril(np.ones((t, t), dtype=bool)) if node.causal else None  # query t sees keys s <= t
    p = _softmax(s, mask)
    o = _merge(p @ v)
    y = o @ params["Wo"]
    return y, {"x": x, "q": q, "k": k, "v": v, "p": p, "o": o, "scale": scale}


def backward(node, params, cache, dy):
    x, q, k, v, p, o, scale = (cache[n] for n in ("x", "q", "k", "v", "p", "o", "scale"))
    d = x.shape[-1]
    rows_x = x.reshape(-1, d)
    grads = {"Wo": o.reshape(-1, d).T @ dy.reshape(-1, d)}
    do = _split(dy @ params["Wo"].T, node.heads)
    dp = do @ v.swapaxes(-1, -2)
    dv = p.swapaxes(-1, -2) @ do
    ds = _softmax_backward(p, dp)
    dq = (ds @ k) * scale
    dk = (ds.swapaxes(-1, -2) @ q) * scale
    dx = None
    for name, dheads in (("Wq", dq), ("Wk", dk), ("Wv", dv)):
        dproj = _merge(dheads)
        grads[name] = rows_x.T @ dproj.reshape(-1, d)
        term = dproj @ params[name].T
        dx = term if dx is None else dx + term
    return dx, {n: grads[n] for n in ("Wq", "Wk", "Wv", "Wo")}


ATTENTION = LayerKind("attention", _init, forward, backward,
                      conventions="multi-head self-attention without biases: x Wq, x Wk, x Wv split into "
                                  "heads of D/heads features (head j: features j*dh..), softmax(Q K^T / "
                                  "sqrt(dh)) V per head (causal: query t sees keys <= t), heads "
                                  "concatenated in order, then @ Wo")
