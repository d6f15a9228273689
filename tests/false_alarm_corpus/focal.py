"""Binary focal loss on a linear model, with confident (saturated) logits of magnitude 30-60.

Conventions: logits z = X w + b; y (N,) of 0/1; the probability of the true class is
p_t = sigmoid(t) with t = z for y = 1 and t = -z for y = 0; the focal loss (gamma = 2) is the
mean of ``-(1 - p_t)^gamma log p_t``. Everything goes through a stable log-sigmoid in its
log-sum-exp form, ``log sigmoid(t) = min(t, 0) - log1p(exp(-|t|))`` (min and |t| chosen by the
real part's sign, so the code stays analytic in complex arguments), with
``1 - p_t = exp(log sigmoid(-t))``: no ``1 - p`` cancellation, no overflow. Confidently right
rows then have loss ~ e^-3|z| (and a gradient as small); confidently wrong ones loss ~ |z| and a
gradient of O(1) per unit input.
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator

#: the focusing parameter
GAMMA = 2

FOCAL_BUGS = {
    "focal_weight_not_differentiated": ("w", "b"),   # (1 - p_t)^gamma treated as a constant weight
    "b_sign": ("b",),                                 # db = -sum(dz)
}


def log_sigmoid(t):
    """log(1 / (1 + exp(-t))) as min(t, 0) - log1p(exp(-|t|)), elementwise."""
    nonneg = t.real >= 0
    return np.where(nonneg, 0.0, t) - np.log1p(np.exp(np.where(nonneg, -t, t)))


def focal_loss(z, y, bug=None):
    """Mean binary focal loss of logits ``z`` against 0/1 targets ``y``; returns (loss, dz).

    With q = 1 - p_t: dFL/dt = gamma q^gamma p_t log p_t - q^(gamma + 1), and dt/dz = 2y - 1."""
    n = z.shape[0]
    sgn = 2 * y - 1                              # +1 / -1, in y's dtype
    t = z * sgn
    log_pt = log_sigmoid(t)
    log_q = log_sigmoid(-t)
    pt, q = np.exp(log_pt), np.exp(log_q)
    weight = q ** GAMMA
    loss = -(weight * log_pt).sum() / n
    dt = -weight * q                             # the weight's own derivative left out ...
    if bug != "focal_weight_not_differentiated":
        dt = dt + GAMMA * weight * pt * log_pt   # ... and added back
    return loss, dt * sgn / n


def make_focal_extreme(dtype="float64", seed=0, bug=None):
    """A linear model on 5 features, N=10 rows: 4 rows have feature 0 at ~+-15-25 with w[0] ~ 2,
    so their logits are ~30-60 in magnitude (two confidently right, two confidently wrong); the
    other 6 rows are ordinary (|z| ~ 1).

    params: ``w`` (5,), ``b`` (1,); X (10, 5); y (10,) of 0/1 (float, X's dtype).
    """
    check_bug(bug, FOCAL_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 171)
    N, D, n_conf = 10, 5, 4
    w = 0.5 * rng.standard_normal(D)
    w[0] = 2.0 + 0.1 * rng.standard_normal()
    b = 0.1 * rng.standard_normal(1)
    X = rng.standard_normal((N, D))
    side = rng.choice([-1.0, 1.0], size=n_conf)
    X[:n_conf, 0] = side * rng.uniform(15.0, 25.0, size=n_conf)
    X[n_conf:, 0] *= 0.3                        # ordinary rows: |z| ~ 1
    z = X @ w + b
    y = (rng.random(N) < 0.5).astype(float)
    y[:n_conf] = (z[:n_conf] > 0).astype(float)    # confidently right ...
    y[:2] = 1.0 - y[:2]                             # ... except the first two: confidently wrong
    params = cast(dt, w=w, b=b)
    X, y = X.astype(dt), y.astype(dt)

    def fn(p, X, y):
        z = X @ p["w"] + p["b"]
        loss, dz = focal_loss(z, y, bug)
        db = dz.sum(keepdims=True)
        if bug == "b_sign":
            db = -db
        return loss, {"w": X.T @ dz, "b": db}

    return fn, params, X, y
