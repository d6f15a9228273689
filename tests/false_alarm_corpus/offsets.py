"""A dense tanh layer on raw, unnormalized features far from zero, then a linear layer and MSE.

Conventions: X (N, D) = 1000 + standard normal (raw features with a large offset, as un-centred
measurements are); W1 (D, H) small, ~ 5e-4 * N(0, 1), so the pre-activations X W1 + b1 are O(1)
and tanh is not saturated; out = tanh(X W1 + b1) W2 + b2; loss 0.5 * sum((out - y)^2) / N.
The loss is ~1000 times more sensitive to W1 than to b1 (its curvature in W1 ~1e6 times larger).
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator
from tests.false_alarm_corpus.softmax import dense_backward, dense_forward

OFFSET_BUGS = {
    "dW1_centered_X": ("W1",),   # dW1 = (X - mean(X))^T dz1: the input's offset dropped
    "db1_missing": ("b1",),      # db1 never computed: zeros returned
}


def tanh_forward(x):
    t = np.tanh(x)
    return t, t


def tanh_backward(dout, cache):
    return dout * (1.0 - cache * cache)


def make_large_offset_tanh(dtype="float64", seed=0, bug=None):
    """Dense 4 -> 5 (tanh) -> 2, batch N=6, inputs 1000 + N(0, 1); half MSE against y (6, 2).

    params: ``W1`` (4, 5) ~ 5e-4 N(0, 1), ``b1`` (5,) ~ 0.1 N(0, 1), ``W2`` (5, 2) ~ N(0, 1/5),
    ``b2`` (2,) zero.
    """
    check_bug(bug, OFFSET_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 121)
    N, D, H, O = 6, 4, 5, 2
    params = cast(dt, W1=5e-4 * rng.standard_normal((D, H)), b1=0.1 * rng.standard_normal(H),
                  W2=rng.standard_normal((H, O)) / np.sqrt(H), b2=np.zeros(O))
    X = (1000.0 + rng.standard_normal((N, D))).astype(dt)
    y = rng.standard_normal((N, O)).astype(dt)

    def fn(p, X, y):
        z1, c1 = dense_forward(X, p["W1"], p["b1"])
        a1, t1 = tanh_forward(z1)
        out, c2 = dense_forward(a1, p["W2"], p["b2"])
        n = out.shape[0]
        r = out - y
        loss = 0.5 * (r * r).sum() / n
        da1, dW2, db2 = dense_backward(r / n, c2)
        dz1 = tanh_backward(da1, t1)
        _, dW1, db1 = dense_backward(dz1, c1)
        if bug == "dW1_centered_X":
            dW1 = (X - X.mean(axis=0)).T @ dz1
        elif bug == "db1_missing":
            db1 = np.zeros_like(p["b1"])
        return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

    return fn, params, X, y
