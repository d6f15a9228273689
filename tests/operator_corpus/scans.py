"""Cumulative sum and cumulative product along the last axis, returned as a tuple.

The cumulative product has exact zeros among its factors (one zero in row 0, two in row 2), so
its products are exactly 0 from the first zero on. Its backward forms every partial derivative
d y_j / d p_i = prod_{k <= j, k != i} p_k as the cumulative product with p_i replaced by 1 -- no
division by p, which is what goes wrong at a zero factor.
"""
from __future__ import annotations

import numpy as np

DESCRIPTION = ("(cumsum(a, axis=1), cumprod(p, axis=1)): a (3,4), p (3,4) with exact zeros at p[0,1], p[2,0], "
               "p[2,2] and negative factors -> tuple ((3,4), (3,4))")

BUGS = {
    "cumsum_forward": (("a",), "da = cumsum(g) instead of the reversed cumulative sum: the Jacobian transposed"),
    "cumprod_divide": (("p",), "dp = reverse_cumsum(g * y) / p with 0 where p == 0: the division trick, wrong at "
                               "a zero factor"),
}


def f(inputs):
    return np.cumsum(inputs["a"], axis=1), np.cumprod(inputs["p"], axis=1)


def _partials(p):
    """J[n, j, i] = d cumprod(p)[n, j] / d p[n, i]."""
    n, length = p.shape
    jac = np.zeros((n, length, length), dtype=p.dtype)
    for i in range(length):
        without_i = p.copy()
        without_i[:, i] = 1
        jac[:, i:, i] = np.cumprod(without_i, axis=1)[:, i:]
    return jac


def _reverse_cumsum(v):
    return np.cumsum(v[:, ::-1], axis=1)[:, ::-1]


def vjp(inputs, cotangents, *, bug=None):
    g_sum, g_prod = cotangents
    p = inputs["p"]
    da = _reverse_cumsum(g_sum)
    dp = np.einsum("nj,nji->ni", g_prod, _partials(p))
    if bug == "cumsum_forward":
        da = np.cumsum(g_sum, axis=1)
    if bug == "cumprod_divide":
        suffix = _reverse_cumsum(g_prod * np.cumprod(p, axis=1))
        dp = np.divide(suffix, p, out=np.zeros_like(suffix), where=p != 0)
    return {"a": da, "p": dp}


def jvp(inputs, t):
    return np.cumsum(t["a"], axis=1), np.einsum("nji,ni->nj", _partials(inputs["p"]), t["p"])


def inputs(rng, dtype=np.float64):
    a = rng.standard_normal((3, 4))
    p = rng.uniform(0.5, 1.5, (3, 4)) * np.where(rng.random((3, 4)) < 0.3, -1.0, 1.0)
    p[0, 1] = p[2, 0] = p[2, 2] = 0.0
    return {"a": a.astype(dtype), "p": p.astype(dtype)}
