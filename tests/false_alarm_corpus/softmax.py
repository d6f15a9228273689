"""Softmax cases: an exactly-zero true gradient, and confident cross-entropy after a dense layer.

Conventions: rows are samples, softmax over the last axis, computed with the row maximum
subtracted first (the stable form everyone writes).
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator

# bug name -> the tensors whose claimed gradient it makes wrong
SOFTMAX_SUM_BUGS = {
    "missing_sum_term": ("z",),   # dz = s * ds: the -s * sum(ds * s) term of the Jacobian dropped
}
XENT_BUGS = {
    "db_sign": ("b",),                # db = -sum(dz)
    "dW_missing_1_over_N": ("W",),    # dW from the un-averaged residual (p - onehot), db still averaged
}


# -- layers (cs231n style: forward returns (out, cache), backward takes (dout, cache)) -------------
def softmax_forward(z):
    """Row-wise softmax of ``z`` (N, C)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    s = e / e.sum(axis=1, keepdims=True)
    return s, s


def softmax_backward(ds, cache, bug=None):
    """dz = s * (ds - sum_j ds_j s_j): the softmax Jacobian (diag(s) - s s^T) applied row by row."""
    s = cache
    if bug == "missing_sum_term":
        return s * ds
    return s * (ds - (ds * s).sum(axis=1, keepdims=True))


def dense_forward(x, W, b):
    """x (N, D) @ W (D, H) + b (H,)."""
    return x @ W + b, (x, W)


def dense_backward(dout, cache):
    """Returns (dx, dW, db)."""
    x, W = cache
    return dout @ W.T, x.T @ dout, dout.sum(axis=0)


def softmax_cross_entropy(z, labels):
    """Mean cross-entropy of integer ``labels`` under softmax(z), via log-sum-exp; returns
    (loss, dz) with dz = (softmax(z) - onehot) / N."""
    N = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_norm
    loss = -log_p[np.arange(N), labels].sum() / N
    dz = np.exp(log_p)
    dz[np.arange(N), labels] -= 1.0
    return loss, dz / N


# -- cases ----------------------------------------------------------------------------------------
def make_softmax_sum(dtype="float64", seed=0, bug=None):
    """``loss = sum(softmax(z) * X)`` with ``X`` all ones: the loss is the number of rows whatever
    ``z`` is, so the true gradient is exactly zero; the claimed one is rounding (~1e-17).

    params: ``z`` (3, 4); X: the upstream gradient (ones); y unused (None).
    """
    check_bug(bug, SOFTMAX_SUM_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 11)
    params = cast(dt, z=3.0 * rng.standard_normal((3, 4)))
    X = np.ones((3, 4), dtype=dt)

    def fn(p, X, y):
        s, cache = softmax_forward(p["z"])
        loss = (s * X).sum()
        return loss, {"z": softmax_backward(X, cache, bug)}

    return fn, params, X, None


def make_softmax_xent_confident(dtype="float64", seed=0, bug=None):
    """Dense layer then softmax cross-entropy, with one logit ~40 above the others in every row.

    Rows 0 and 2 are confidently right (probabilities e^-40, loss ~1e-17: the gradient there is
    tiny), rows 1 and 3 confidently wrong (loss ~40, gradient O(1)). X (4, 5) puts 40 on one of its
    first 4 features; W (5, 4) is near the identity; b (4,) small. y: integer labels.
    """
    check_bug(bug, XENT_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 12)
    N, D, C = 4, 5, 4
    confident = rng.integers(0, C, size=N)
    X = 0.3 * rng.standard_normal((N, D))
    X[np.arange(N), confident] += 40.0
    W = np.eye(D, C) + 0.05 * rng.standard_normal((D, C))
    b = 0.1 * rng.standard_normal(C)
    labels = confident.copy()
    for i in (1, 3):  # confidently wrong
        labels[i] = (confident[i] + 1 + rng.integers(0, C - 1)) % C
    params = cast(dt, W=W, b=b)
    X = X.astype(dt)

    def fn(p, X, y):
        z, cache = dense_forward(X, p["W"], p["b"])
        loss, dz = softmax_cross_entropy(z, y)
        _, dW, db = dense_backward(dz, cache)
        if bug == "db_sign":
            db = -db
        elif bug == "dW_missing_1_over_N":
            dW = X.T @ (dz * z.shape[0])
        return loss, {"W": dW, "b": db}

    return fn, params, X, labels
