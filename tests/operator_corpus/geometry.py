"""Pairwise squared Euclidean distances, written the way users vectorize them:
D = |x|^2 + |y|^2 - 2 x.y (no difference tensor), on points clustered ~25 away from the origin
(so every entry is a small difference of large terms), with one coincident pair (D = 0 exactly
in exact arithmetic, its gradient exactly 0).
"""
from __future__ import annotations

import numpy as np

DESCRIPTION = ("cdist(X, Y)**2 = |x|^2 + |y|^2 - 2 X @ Y.T: X (4,3), Y (5,3) around (20, -15, 8), Y[2] == X[0] "
               "-> (4,5)")

BUGS = {
    "x_norm_term": (("X",), "dX = -2 g @ Y: the gradient of the |x|^2 term forgotten"),
    "y_sign": (("Y",), "dY = 2 (g.T @ X - colsum(g) Y): the sign of Y's gradient flipped"),
}


def f(inputs):
    X, Y = inputs["X"], inputs["Y"]
    return (X * X).sum(axis=1)[:, None] + (Y * Y).sum(axis=1)[None, :] - 2 * X @ Y.T


def vjp(inputs, g, *, bug=None):
    X, Y = inputs["X"], inputs["Y"]
    dX = 2 * (g.sum(axis=1)[:, None] * X - g @ Y)
    dY = 2 * (g.sum(axis=0)[:, None] * Y - g.T @ X)
    if bug == "x_norm_term":
        dX = -2 * g @ Y
    if bug == "y_sign":
        dY = -dY
    return {"X": dX, "Y": dY}


def jvp(inputs, t):
    X, Y = inputs["X"], inputs["Y"]
    tX, tY = t["X"], t["Y"]
    return (2 * (X * tX).sum(axis=1)[:, None] + 2 * (Y * tY).sum(axis=1)[None, :]
            - 2 * (tX @ Y.T + X @ tY.T))


def inputs(rng, dtype=np.float64):
    center = np.array([20.0, -15.0, 8.0])
    X = center + rng.standard_normal((4, 3))
    Y = center + rng.standard_normal((5, 3))
    Y[2] = X[0]
    return {"X": X.astype(dtype), "Y": Y.astype(dtype)}
