"""Sigmoid outputs with binary cross-entropy on probabilities, confident in float32.

Conventions: a dense layer, an elementwise sigmoid (the two-branch stable form), then the
Keras-style loss on probabilities clipped to ``[1e-7, 1 - 1e-7]``; its gradient is zero where
the clip is active. The backward pass goes through the probability (``dL/dp`` times
``p (1 - p)``), as code that keeps the loss and the activation separate writes it.
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator

# bug name -> the tensors whose claimed gradient it makes wrong
BCE_BUGS = {
    "no_sigmoid_derivative": ("W", "b"),   # dz = dL/dp: the p (1 - p) factor forgotten
    "db_missing_1_over_N": ("b",),         # db from the un-averaged dL/dz
}
#: the clip of the probabilities (Keras's epsilon)
CLIP = 1e-7


def sigmoid(z):
    """1 / (1 + exp(-z)) without overflow: exp of a non-positive number on either branch."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def bce_on_probabilities(p, y):
    """Mean over rows of the summed binary cross-entropy of probabilities ``p`` (clipped) against
    0/1 targets ``y``; returns (loss, dL/dp), dL/dp zero where the clip is active."""
    N = p.shape[0]
    q = np.clip(p, CLIP, 1 - CLIP)
    loss = -(y * np.log(q) + (1 - y) * np.log(1 - q)).sum() / N
    live = (p > CLIP) & (p < 1 - CLIP)
    dp = np.where(live, (q - y) / (q * (1 - q)), 0) / N
    return loss, dp


def make_bce_confident(dtype="float64", seed=0, bug=None):
    """Dense (4 -> 3), sigmoid, clipped BCE on 8 rows, half of them confident: one input feature of
    ~6 drives their logits to ~13-15, where in float32 ``1 - p`` is a few ulps (6e-8 each) of 1
    and ``log(1 - p)`` a staircase of steps ~0.2 per ulp, much wider than a finite difference
    step; the other rows are ordinary. Targets: confident rows half right, half wrong (loss ~15,
    gradient O(1) there).

    params: ``W`` (4, 3), ``b`` (3,); X (8, 4); y (8, 3) of 0/1.
    """
    check_bug(bug, BCE_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 31)
    N, D, C = 8, 4, 3
    X = 0.5 * rng.standard_normal((N, D))
    X[: N // 2, 0] = 6.0 + 0.1 * rng.standard_normal(N // 2)   # the confident rows
    W = 0.3 * rng.standard_normal((D, C))
    W[0] = 2.3 + 0.1 * rng.standard_normal(C)                  # logits ~ 6 x 2.3 = 13.8
    b = 0.1 * rng.standard_normal(C)
    y = (rng.random((N, C)) < 0.5).astype(float)
    params = cast(dt, W=W, b=b)
    X, y = X.astype(dt), y.astype(dt)

    def fn(p, X, y):
        z = X @ p["W"] + p["b"]
        s = sigmoid(z)
        loss, ds = bce_on_probabilities(s, y)
        dz = ds if bug == "no_sigmoid_derivative" else ds * s * (1 - s)
        db = dz.sum(axis=0) * (z.shape[0] if bug == "db_missing_1_over_N" else 1)
        return loss, {"W": X.T @ dz, "b": db}

    return fn, params, X, y
