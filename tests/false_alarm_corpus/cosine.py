"""A cosine-similarity embedding loss: pairs of inputs through one shared linear map, the loss one
minus the cosine of each pair's embeddings.

Conventions: X (2, N, D) holds the pairs (X[0] the left items P, X[1] the right items Q); the
shared map A (D, k) embeds them, u = P A, v = Q A; the cosine is the dot product of the
L2-normalized embeddings, with ``||u|| = sqrt(sum(u * u))`` (no abs: analytic in complex
arguments); the loss is ``mean(1 - cos(u_i, v_i))``. The backward goes through the
normalization's full Jacobian, ``d(u / ||u||) = (I - u_hat u_hat^T) / ||u||``, and A collects
the gradients of both sides. y is unused (None).
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator

COSINE_BUGS = {
    "normalization_treated_constant": ("A",),   # d(u/||u||) taken as I/||u||: the projection term dropped
    "missing_half": ("A",),                     # dA = P^T du only: the v side's contribution dropped
}


def normalize_forward(u):
    """Rows of ``u`` (N, k) scaled to unit L2 norm; returns (u_hat, cache)."""
    norm = np.sqrt((u * u).sum(axis=1, keepdims=True))
    u_hat = u / norm
    return u_hat, (u_hat, norm)


def normalize_backward(du_hat, cache, bug=None):
    """du = (du_hat - u_hat (u_hat . du_hat)) / ||u||, row by row."""
    u_hat, norm = cache
    if bug == "normalization_treated_constant":
        return du_hat / norm
    return (du_hat - u_hat * (u_hat * du_hat).sum(axis=1, keepdims=True)) / norm


def make_cosine_loss(dtype="float64", seed=0, bug=None):
    """N=6 pairs of 6-dimensional inputs, embedded in 4 dimensions by A (6, 4) ~ N(0, 1/6): three
    related pairs (Q = P + 0.5 noise) and three unrelated ones.

    params: ``A`` (6, 4); X: the pairs (2, 6, 6); y: None.
    """
    check_bug(bug, COSINE_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 151)
    N, D, k = 6, 6, 4
    P = rng.standard_normal((N, D))
    Q = rng.standard_normal((N, D))
    Q[:3] = P[:3] + 0.5 * rng.standard_normal((3, D))
    params = cast(dt, A=rng.standard_normal((D, k)) / np.sqrt(D))
    X = np.stack([P, Q]).astype(dt)

    def fn(p, X, y):
        A = p["A"]
        P, Q = X[0], X[1]
        u, v = P @ A, Q @ A
        u_hat, cu = normalize_forward(u)
        v_hat, cv = normalize_forward(v)
        cos = (u_hat * v_hat).sum(axis=1)
        n = cos.shape[0]
        loss = (1.0 - cos).sum() / n
        dcos = -1.0 / n
        du = normalize_backward(v_hat * dcos, cu, bug)
        dv = normalize_backward(u_hat * dcos, cv, bug)
        dA = P.T @ du
        if bug != "missing_half":
            dA = dA + Q.T @ dv
        return loss, {"A": dA}

    return fn, params, X, None
