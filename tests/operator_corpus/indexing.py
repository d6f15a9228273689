"""Gather along axis 1 with repeated indices: out[n, j] = x[n, idx[n, j]].

The integer indices are a constant input. Several slots of a row read the same element, so the
backward must scatter-add (np.add.at); one column of x is never read (its gradient is exactly 0).
"""
from __future__ import annotations

import numpy as np

DESCRIPTION = "take_along_axis(x, idx, axis=1): x (4,5), idx (4,7) int with repeats, column 4 never read -> (4,7)"

BUGS = {
    "assign": (("x",), "np.put_along_axis(dx, idx, g): assignment, a repeated index keeps only its last gradient"),
}


def f(inputs):
    return np.take_along_axis(inputs["x"], inputs["idx"], axis=1)


def vjp(inputs, g, *, bug=None):
    x, idx = inputs["x"], inputs["idx"]
    dx = np.zeros_like(x)
    if bug == "assign":
        np.put_along_axis(dx, idx, g, axis=1)
    else:
        rows = np.broadcast_to(np.arange(x.shape[0])[:, None], idx.shape)
        np.add.at(dx, (rows, idx), g)
    return {"x": dx}


def jvp(inputs, t):
    return np.take_along_axis(t["x"], inputs["idx"], axis=1)


def inputs(rng, dtype=np.float64):
    x = rng.standard_normal((4, 5))
    idx = rng.integers(0, 4, size=(4, 7))
    idx[:, 0] = idx[:, 1]            # every row has at least one repeat
    return {"x": x.astype(dtype), "idx": idx}
