"""Single-head scaled dot-product self-attention with an output projection, optionally causal.

Conventions: X is (N, T, d); Q = X Wq, K = X Wk, V = X Wv (d, dk); scores S = Q K^T / sqrt(dk)
per sequence; the causal mask sets S[t, s] = -inf for s > t before the softmax (over s); the
output is (A V) Wo with Wo (dk, d). Loss: half mean squared error against y (N, T, d).
"""
from __future__ import annotations

import math

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator

ATTENTION_BUGS = {
    "dWv_transposed": ("Wv",),                        # (X^T dV)^T: silent for square Wv
    "softmax_missing_sum_term": ("Wq", "Wk"),         # dS = A * dA
}
CAUSAL_BUGS = {
    "dq_missing_scale": ("Wq",),                      # dQ = dS K without the 1/sqrt(dk)
}


def _bT(a):
    """Batched transpose of the last two axes."""
    return a.transpose(0, 2, 1)


def _flat(a):
    """(N, T, k) -> (N*T, k), to sum weight gradients over batch and time in one product."""
    return a.reshape(-1, a.shape[-1])


def attention_forward(X, Wq, Wk, Wv, Wo, causal=False):
    """Returns (out, cache)."""
    T, dk = X.shape[1], Wq.shape[1]
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    S = (Q @ _bT(K)) * (1.0 / math.sqrt(dk))
    if causal:
        S = np.where(np.tri(T, dtype=bool), S, -np.inf)
    E = np.exp(S - S.max(axis=-1, keepdims=True))
    A = E / E.sum(axis=-1, keepdims=True)
    H = A @ V
    return H @ Wo, (X, Q, K, V, A, H, Wq, Wk, Wv, Wo)


def attention_backward(dout, cache, bug=None, with_input=False):
    """Returns dict of dWq, dWk, dWv, dWo (masked entries have A = 0, so they pass no gradient);
    with ``with_input``, ``(dX, that dict)``. ``bug="attention_scale_missing"`` drops 1/sqrt(dk)
    from both dQ and dK (the transformer block's planted bug)."""
    X, Q, K, V, A, H, Wq, Wk, Wv, Wo = cache
    scale = 1.0 / math.sqrt(Wq.shape[1])
    dWo = _flat(H).T @ _flat(dout)
    dH = dout @ Wo.T
    dA = dH @ _bT(V)
    dV = _bT(A) @ dH
    if bug == "softmax_missing_sum_term":
        dS = A * dA
    else:
        dS = A * (dA - (dA * A).sum(axis=-1, keepdims=True))
    dQ = (dS @ K) * (1.0 if bug in ("dq_missing_scale", "attention_scale_missing") else scale)
    dK = (_bT(dS) @ Q) * (1.0 if bug == "attention_scale_missing" else scale)
    dWv = _flat(X).T @ _flat(dV)
    if bug == "dWv_transposed":
        dWv = dWv.T
    grads = {"Wq": _flat(X).T @ _flat(dQ), "Wk": _flat(X).T @ _flat(dK), "Wv": dWv, "Wo": dWo}
    if with_input:
        return dQ @ Wq.T + dK @ Wk.T + dV @ Wv.T, grads
    return grads


def _make(dtype, seed, bug, causal, salt):
    dt = float_dtype(dtype)
    rng = generator(seed, salt)
    N, T, d = 2, 4, 4
    params = cast(dt, **{k: rng.standard_normal((d, d)) / math.sqrt(d) for k in ("Wq", "Wk", "Wv", "Wo")})
    X = rng.standard_normal((N, T, d)).astype(dt)
    y = rng.standard_normal((N, T, d)).astype(dt)

    def fn(p, X, y):
        out, cache = attention_forward(X, p["Wq"], p["Wk"], p["Wv"], p["Wo"], causal)
        r = out - y
        loss = 0.5 * (r * r).sum() / X.shape[0]
        return loss, attention_backward(r / X.shape[0], cache, bug)

    return fn, params, X, y


def make_attention(dtype="float64", seed=0, bug=None):
    """Self-attention, no mask: N=2 sequences of T=4 tokens, d = dk = 4."""
    check_bug(bug, ATTENTION_BUGS)
    return _make(dtype, seed, bug, causal=False, salt=31)


def make_attention_causal(dtype="float64", seed=0, bug=None):
    """Causal self-attention (token t attends to tokens <= t), same shapes."""
    check_bug(bug, CAUSAL_BUGS)
    return _make(dtype, seed, bug, causal=True, salt=32)
