"""The two data terms of a Gaussian log-likelihood via a Cholesky factor: for the covariance
S = B B^T + 0.05 I, the log-determinant 2 sum(log(diag(L))) and the Mahalanobis term
z^T S^-1 z = |L^-1 z|^2 (L = cholesky(S)), returned as a tuple of two scalars.

B's third column is small (0.1), so S is moderately ill-conditioned (condition ~100).
"""
from __future__ import annotations

import numpy as np

JITTER = 0.05

DESCRIPTION = ("(logdet(S), z^T S^-1 z) with S = B B^T + 0.05 I via np.linalg.cholesky: B (3,3), z (3,) "
               "-> tuple ((), ())")

BUGS = {
    "dB_transposed": (("B",), "dB = 2 B.T @ dS instead of 2 dS @ B: the gradient of S = B B^T transposed"),
    "dz_half": (("z",), "dz = g * S^-1 z: the factor 2 of the quadratic form forgotten"),
}


def _covariance(B):
    return B @ B.T + JITTER * np.eye(B.shape[0], dtype=B.dtype)


def f(inputs):
    B, z = inputs["B"], inputs["z"]
    L = np.linalg.cholesky(_covariance(B))
    w = np.linalg.solve(L, z)
    return np.asarray(2 * np.log(np.diag(L)).sum()), np.asarray(w @ w)


def _inverse_and_alpha(B, z):
    L_inv = np.linalg.inv(np.linalg.cholesky(_covariance(B)))
    S_inv = L_inv.T @ L_inv
    return S_inv, S_inv @ z


def vjp(inputs, cotangents, *, bug=None):
    g_logdet, g_quad = cotangents
    B, z = inputs["B"], inputs["z"]
    S_inv, alpha = _inverse_and_alpha(B, z)
    dS = g_logdet * S_inv - g_quad * np.outer(alpha, alpha)
    dB = 2 * dS @ B
    dz = 2 * g_quad * alpha
    if bug == "dB_transposed":
        dB = 2 * B.T @ dS
    if bug == "dz_half":
        dz = g_quad * alpha
    return {"B": dB, "z": dz}


def jvp(inputs, t):
    B, z = inputs["B"], inputs["z"]
    S_inv, alpha = _inverse_and_alpha(B, z)
    dS = t["B"] @ B.T + B @ t["B"].T
    return np.asarray((S_inv * dS).sum()), np.asarray(2 * alpha @ t["z"] - alpha @ dS @ alpha)


def inputs(rng, dtype=np.float64):
    B = rng.standard_normal((3, 3))
    B[:, 2] *= 0.1
    z = rng.standard_normal(3)
    return {"B": B.astype(dtype), "z": z.astype(dtype)}
