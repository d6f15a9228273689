"""logsumexp over the last axis: rows offset by about +-50, one row dominated by a single logit.

The forward subtracts the row maximum before exponentiating (the stable form); the backward
multiplies the cotangent by the row's softmax weights, also computed with the shift.
"""
from __future__ import annotations

import numpy as np

DESCRIPTION = "log(sum(exp(x), axis=1)): x (4,5) -> (4,); rows offset by +50, -50, +47.5, 0, row 3 has a logit 30 above the rest"

#: bug name -> (the inputs whose gradient the bug changes, what the bug is)
BUGS = {
    "unnormalized": (("x",), "dx = g * exp(x - max): the division by the row sum of the weights forgotten"),
    "max_path": (("x",), "the shift m = max(x) treated as a path of its own: g also sent to the arg max "
                         "(its cancelling term through the log-sum dropped)"),
}


def _shifted_exp(x):
    m = x.max(axis=1, keepdims=True)
    return m, np.exp(x - m)


def f(inputs):
    m, e = _shifted_exp(inputs["x"])
    return m[:, 0] + np.log(e.sum(axis=1))


def vjp(inputs, g, *, bug=None):
    x = inputs["x"]
    _, e = _shifted_exp(x)
    weights = e / e.sum(axis=1, keepdims=True)
    dx = g[:, None] * weights
    if bug == "unnormalized":
        dx = g[:, None] * e
    if bug == "max_path":
        at_max = x == x.max(axis=1, keepdims=True)
        dx = dx + g[:, None] * at_max
    return {"x": dx}


def jvp(inputs, t):
    _, e = _shifted_exp(inputs["x"])
    weights = e / e.sum(axis=1, keepdims=True)
    return (weights * t["x"]).sum(axis=1)


def inputs(rng, dtype=np.float64):
    x = 2.0 * rng.standard_normal((4, 5)) + np.array([50.0, -50.0, 47.5, 0.0])[:, None]
    x[3, 2] = x[3].max() + 30.0     # a confident row: the other weights are ~1e-13
    return {"x": x.astype(dtype)}
