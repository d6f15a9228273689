"""A ReLU MLP at He initialization with softmax cross-entropy.

Conventions: X (N, D) rows are samples; W (fan_in, fan_out) ~ N(0, 2 / fan_in), biases zero
(He init as frameworks do it); ReLU's derivative at exactly 0 is taken as 0; the loss is the
mean cross-entropy of integer labels y.
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator
from tests.false_alarm_corpus.softmax import dense_backward, dense_forward, softmax_cross_entropy

MLP_BUGS = {
    "dW1_transposed": ("W1",),        # (X^T dz1)^T: silent for the square 6x6 W1
    "db3_sign": ("b3",),
    "dW3_missing_1_over_N": ("W3",),  # dW3 from the un-averaged residual
}


def relu_forward(x):
    return np.maximum(x, 0.0), x


def relu_backward(dout, cache):
    return dout * (cache > 0)


def make_relu_mlp(dtype="float64", seed=0, bug=None):
    """6 -> 6 -> 6 -> 3 ReLU MLP, batch N=4."""
    check_bug(bug, MLP_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 61)
    sizes = (6, 6, 6, 3)
    raw = {}
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        raw[f"W{k}"] = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
        raw[f"b{k}"] = np.zeros(fan_out)
    params = cast(dt, **raw)
    X = rng.standard_normal((4, 6)).astype(dt)
    y = rng.integers(0, 3, size=4)

    def fn(p, X, y):
        z1, c1 = dense_forward(X, p["W1"], p["b1"])
        a1, r1 = relu_forward(z1)
        z2, c2 = dense_forward(a1, p["W2"], p["b2"])
        a2, r2 = relu_forward(z2)
        z3, c3 = dense_forward(a2, p["W3"], p["b3"])
        loss, dz3 = softmax_cross_entropy(z3, y)
        da2, dW3, db3 = dense_backward(dz3, c3)
        if bug == "dW3_missing_1_over_N":
            dW3 = a2.T @ (dz3 * X.shape[0])
        elif bug == "db3_sign":
            db3 = -db3
        da1, dW2, db2 = dense_backward(relu_backward(da2, r2), c2)
        _, dW1, db1 = dense_backward(relu_backward(da1, r1), c1)
        if bug == "dW1_transposed":
            dW1 = dW1.T
        return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2, "W3": dW3, "b3": db3}

    return fn, params, X, y
