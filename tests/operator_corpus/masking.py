"""Masked softmax with a per-row inverse temperature: softmax over the entries a boolean mask
keeps, the others set to -inf before the softmax (probability exactly 0, gradient exactly 0).

Row 1 is confident (one logit ~24 above the rest after scaling), row 2 keeps only two entries.
"""
from __future__ import annotations

import numpy as np

DESCRIPTION = ("softmax(where(mask, beta[:, None] * x, -inf), axis=1): x (3,5), beta (3,), mask (3,5) bool "
               "(a constant) -> (3,5); exact-zero probabilities, one confident row")

BUGS = {
    "rowsum_axis": (("x", "beta"), "the row sum sum(s * g) of the softmax backward taken over axis 0 (columns)"),
    "beta_sign": (("beta",), "dbeta = -sum(dz * x): the sign of the temperature's gradient flipped"),
}


def _probs(x, beta, mask):
    z = np.where(mask, beta[:, None] * x, -np.inf)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def f(inputs):
    return _probs(inputs["x"], inputs["beta"], inputs["mask"])


def vjp(inputs, g, *, bug=None):
    x, beta = inputs["x"], inputs["beta"]
    s = _probs(x, beta, inputs["mask"])
    axis = 0 if bug == "rowsum_axis" else 1
    dz = s * (g - (s * g).sum(axis=axis, keepdims=True))   # 0 wherever s is 0 (masked)
    dx = dz * beta[:, None]
    dbeta = (dz * x).sum(axis=1)
    if bug == "beta_sign":
        dbeta = -dbeta
    return {"x": dx, "beta": dbeta}


def jvp(inputs, t):
    x, beta = inputs["x"], inputs["beta"]
    s = _probs(x, beta, inputs["mask"])
    dz = beta[:, None] * t["x"] + t["beta"][:, None] * x
    return s * (dz - (s * dz).sum(axis=1, keepdims=True))


def inputs(rng, dtype=np.float64):
    x = 1.5 * rng.standard_normal((3, 5))
    beta = np.array([1.0, 1.5, 0.7])
    mask = np.array([[True, True, False, True, True],
                     [True, True, True, False, True],
                     [False, True, False, False, True]])
    x[1, 2] = x[1].max() + 16.0     # after beta = 1.5: ~24 above the others
    return {"x": x.astype(dtype), "beta": beta.astype(dtype), "mask": mask}
