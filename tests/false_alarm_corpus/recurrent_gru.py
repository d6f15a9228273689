"""A GRU unrolled over T steps, loss on the last hidden state, backprop through time.

Conventions (Cho et al. 2014, reset gate applied before the recurrent product): X (N, T, D);
h0 = 0; z = sigmoid(x Wz + h Uz + bz), r = sigmoid(x Wr + h Ur + br),
hh = tanh(x Wh + (r * h) Uh + bh), h_new = (1 - z) * h + z * hh. W* (D, H), U* (H, H), b* (H,).
Loss: 0.5 * sum((h_T - y)^2) (summed, not averaged).
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator

_ALL = ("Wz", "Uz", "bz", "Wr", "Ur", "br", "Wh", "Uh", "bh")
GRU_BUGS = {
    # d(r * h_prev): dr = g * r and dh_prev += g * h_prev, the two factors swapped; wrong dr at every
    # step, and through dh_prev every earlier step's gradient
    "reset_wrong_factor": _ALL,
    # dh_prev misses the direct path dh * (1 - z): every step but the last gets a wrong gradient
    "missing_one_minus_z": _ALL,
    # dUh = h_prev^T da instead of (r * h_prev)^T da: the reset gate forgotten in the product's input
    "dUh_missing_reset": ("Uh",),
}


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def gru_step_forward(x, h, p):
    """One step; returns (h_new, cache)."""
    z = _sigmoid(x @ p["Wz"] + h @ p["Uz"] + p["bz"])
    r = _sigmoid(x @ p["Wr"] + h @ p["Ur"] + p["br"])
    rh = r * h
    hh = np.tanh(x @ p["Wh"] + rh @ p["Uh"] + p["bh"])
    return (1.0 - z) * h + z * hh, (x, h, z, r, rh, hh)


def gru_step_backward(dh_new, cache, p, grads, bug=None):
    """Accumulates this step's parameter gradients into ``grads``; returns dh_prev."""
    x, h, z, r, rh, hh = cache
    dz = dh_new * (hh - h)
    dhh = dh_new * z
    dh_prev = 0.0 * dh_new if bug == "missing_one_minus_z" else dh_new * (1.0 - z)
    da_h = dhh * (1.0 - hh * hh)
    drh = da_h @ p["Uh"].T
    if bug == "reset_wrong_factor":
        dr, dh_prev = drh * r, dh_prev + drh * h
    else:
        dr, dh_prev = drh * h, dh_prev + drh * r
    da_z = dz * z * (1.0 - z)
    da_r = dr * r * (1.0 - r)
    dh_prev = dh_prev + da_z @ p["Uz"].T + da_r @ p["Ur"].T
    for gate, da in (("z", da_z), ("r", da_r), ("h", da_h)):
        grads["W" + gate] += x.T @ da
        grads["b" + gate] += da.sum(axis=0)
    grads["Uz"] += h.T @ da_z
    grads["Ur"] += h.T @ da_r
    grads["Uh"] += (h if bug == "dUh_missing_reset" else rh).T @ da_h
    return dh_prev


def make_gru(dtype="float64", seed=0, bug=None):
    """GRU D=3, H=4 over T=3 steps, batch N=2; y (2, 4) the target of h_T.

    params: Wz, Wr, Wh (3, 4) ~ N(0, 1/3); Uz, Ur, Uh (4, 4) ~ N(0, 1/4); bz, br, bh (4,) small.
    """
    check_bug(bug, GRU_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 111)
    N, T, D, H = 2, 3, 3, 4
    raw = {}
    for gate in ("z", "r", "h"):
        raw["W" + gate] = rng.standard_normal((D, H)) / np.sqrt(D)
        raw["U" + gate] = rng.standard_normal((H, H)) / np.sqrt(H)
        raw["b" + gate] = 0.1 * rng.standard_normal(H)
    params = cast(dt, **{k: raw[k] for k in _ALL})
    X = rng.standard_normal((N, T, D)).astype(dt)
    y = (0.5 * rng.standard_normal((N, H))).astype(dt)

    def fn(p, X, y):
        h = np.zeros((X.shape[0], p["Uz"].shape[0]), dtype=p["Uz"].dtype)
        caches = []
        for t in range(X.shape[1]):
            h, cache = gru_step_forward(X[:, t], h, p)
            caches.append(cache)
        r = h - y
        loss = 0.5 * (r * r).sum()
        grads = {k: np.zeros_like(v) for k, v in p.items()}
        dh = r
        for cache in reversed(caches):
            dh = gru_step_backward(dh, cache, p, grads, bug)
        return loss, grads

    return fn, params, X, y
