"""softplus with a learnable per-channel sharpness: softplus(beta * x) / beta, on pre-activations
spanning -40..40 (exactly 0 and +-40 among them).

Stable form: softplus(z) = max(z, 0) + log1p(exp(-|z|)) and the logistic sigmoid from exp(-|z|),
so nothing overflows in float32. d/dbeta = x * sigmoid(z) / beta - softplus(z) / beta**2: its two
terms cancel for large positive z (the output is ~x whatever beta), the usual user formula.
"""
from __future__ import annotations

import numpy as np

DESCRIPTION = "softplus(beta * x) / beta: x (4,6) spanning -40..40 with exact 0 and +-40, beta (6,) in [0.5, 2]"

BUGS = {
    "sigmoid_of_x": (("x",), "dx = g * sigmoid(x): the sigmoid taken of x instead of beta * x"),
    "beta_quotient_term": (("beta",), "dbeta = sum(g * x * sigmoid(z) / beta): the -softplus(z) / beta**2 term "
                                      "of the quotient rule dropped"),
}


def _pieces(x, beta):
    z = x * beta
    decay = np.exp(-np.abs(z))
    softplus = np.maximum(z, 0) + np.log1p(decay)
    sigmoid = np.where(z >= 0, 1 / (1 + decay), decay / (1 + decay))
    return softplus, sigmoid


def f(inputs):
    x, beta = inputs["x"], inputs["beta"]
    softplus, _ = _pieces(x, beta)
    return softplus / beta


def _dbeta_factor(x, beta):
    softplus, sigmoid = _pieces(x, beta)
    return x * sigmoid / beta - softplus / beta ** 2


def vjp(inputs, g, *, bug=None):
    x, beta = inputs["x"], inputs["beta"]
    softplus, sigmoid = _pieces(x, beta)
    dx = g * sigmoid
    dbeta = (g * _dbeta_factor(x, beta)).sum(axis=0)
    if bug == "sigmoid_of_x":
        dx = g * _pieces(x, np.ones_like(beta))[1]
    if bug == "beta_quotient_term":
        dbeta = (g * x * sigmoid / beta).sum(axis=0)
    return {"x": dx, "beta": dbeta}


def jvp(inputs, t):
    x, beta = inputs["x"], inputs["beta"]
    _, sigmoid = _pieces(x, beta)
    return sigmoid * t["x"] + _dbeta_factor(x, beta) * t["beta"]


def inputs(rng, dtype=np.float64):
    magnitude = np.exp(rng.uniform(np.log(0.05), np.log(40.0), 24))
    x = (np.where(rng.random(24) < 0.5, -1.0, 1.0) * magnitude).reshape(4, 6)
    x[0, 0], x[1, 3], x[2, 1], x[3, 5] = -40.0, 40.0, 0.0, 25.0
    beta = rng.uniform(0.5, 2.0, 6)
    return {"x": x.astype(dtype), "beta": beta.astype(dtype)}
