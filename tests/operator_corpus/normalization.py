"""Group normalization (N, C, L) with groups of 2 channels, per-channel affine.

One group of one sample sits ~20 above zero (a large activation mean), another has a small
spread (std 0.1): the backward's mean-subtraction and variance terms matter in both.
"""
from __future__ import annotations

import numpy as np

GROUPS = 2
EPS = 1e-5

DESCRIPTION = ("group norm, 2 groups of 2 channels, eps 1e-5: x (2,4,3), gamma (4,), beta (4,) -> (2,4,3); "
               "one group offset by +20, one with std 0.1")

BUGS = {
    "stats_constant": (("x",), "dx = dy * gamma / std: the group mean and variance treated as constants"),
    "gamma_first_sample": (("gamma",), "dgamma from the first sample only: the batch sum forgotten"),
}


def _normalized(x):
    """xhat grouped as (N, G, elements per group), and 1/std per group."""
    n, c, length = x.shape
    grouped = x.reshape(n, GROUPS, (c // GROUPS) * length)
    centered = grouped - grouped.mean(axis=2, keepdims=True)
    var = (centered * centered).mean(axis=2, keepdims=True)
    inv_std = 1 / np.sqrt(var + EPS)
    return centered * inv_std, inv_std


def f(inputs):
    x, gamma, beta = inputs["x"], inputs["gamma"], inputs["beta"]
    xhat, _ = _normalized(x)
    return xhat.reshape(x.shape) * gamma[None, :, None] + beta[None, :, None]


def vjp(inputs, dy, *, bug=None):
    x, gamma = inputs["x"], inputs["gamma"]
    xhat, inv_std = _normalized(x)
    dgamma = (dy * xhat.reshape(x.shape)).sum(axis=(0, 2))
    dbeta = dy.sum(axis=(0, 2))
    dxhat = (dy * gamma[None, :, None]).reshape(xhat.shape)
    dx = inv_std * (dxhat - dxhat.mean(axis=2, keepdims=True)
                    - xhat * (dxhat * xhat).mean(axis=2, keepdims=True))
    if bug == "stats_constant":
        dx = inv_std * dxhat
    if bug == "gamma_first_sample":
        dgamma = (dy * xhat.reshape(x.shape))[0].sum(axis=1)
    return {"x": dx.reshape(x.shape), "gamma": dgamma, "beta": dbeta}


def jvp(inputs, t):
    x, gamma = inputs["x"], inputs["gamma"]
    xhat, inv_std = _normalized(x)
    tx = t["x"].reshape(xhat.shape)
    tcentered = tx - tx.mean(axis=2, keepdims=True)
    dxhat = inv_std * (tcentered - xhat * (xhat * tcentered).mean(axis=2, keepdims=True))
    return (dxhat.reshape(x.shape) * gamma[None, :, None] + xhat.reshape(x.shape) * t["gamma"][None, :, None]
            + t["beta"][None, :, None])


def inputs(rng, dtype=np.float64):
    x = rng.standard_normal((2, 4, 3))
    x[1, 2:] += 20.0    # sample 1, group 1: mean ~20
    x[0, :2] *= 0.1     # sample 0, group 0: std ~0.1
    gamma = 1.0 + 0.2 * rng.standard_normal(4)
    beta = 0.1 * rng.standard_normal(4)
    return {"x": x.astype(dtype), "gamma": gamma.astype(dtype), "beta": beta.astype(dtype)}
