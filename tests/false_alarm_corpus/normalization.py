"""Layer norm and batch norm (training mode), forward and backward written out.

Conventions: inputs are (N, D); layer norm normalizes each row over its D features, batch norm
each feature over the N rows (biased variance, as in training); ``eps = 1e-5`` inside the square
root; ``gamma`` and ``beta`` are per-feature (D,).
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator
from tests.false_alarm_corpus.softmax import dense_backward, dense_forward

EPS = 1e-5

LAYERNORM_SUM_BUGS = {
    "dx_missing_mean": ("x",),        # the -mean(dxhat) term of dx dropped
    "dgamma_sign": ("gamma",),
}
LAYERNORM_DENSE_BUGS = {
    "dx_xhat_term_missing_1_over_D": ("W", "b"),   # sum(dxhat * xhat) where the mean belongs
    "dgamma_missing_xhat": ("gamma",),             # dgamma = sum(dout), as if it were beta
}
BATCHNORM_OFFSET_BUGS = {
    "dx_missing_mean_terms": ("x",),  # dx = dxhat / std: the dmu and dvar paths dropped
    "dgamma_sign": ("gamma",),
}
BATCHNORM_DENSE_BUGS = {
    "dx_missing_mean_terms": ("W", "b"),
    "dgamma_missing_xhat": ("gamma",),
}


def _affine_backward(dout, xhat, gamma, bug):
    """The ``gamma * xhat + beta`` step both norms end with: dbeta, dgamma (with its planted bugs)
    and the gradient reaching xhat."""
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    if bug == "dgamma_sign":
        dgamma = -dgamma
    elif bug == "dgamma_missing_xhat":
        dgamma = dout.sum(axis=0)
    return dbeta, dgamma, dout * gamma


# -- layer norm -------------------------------------------------------------------------------------
def layernorm_forward(x, gamma, beta):
    """out = gamma * (x - mean_row) / sqrt(var_row + eps) + beta."""
    xc = x - x.mean(axis=1, keepdims=True)
    inv_std = 1.0 / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + EPS)
    xhat = xc * inv_std
    return gamma * xhat + beta, (xhat, inv_std, gamma)


def layernorm_backward(dout, cache, bug=None):
    """Compact form: dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), per row."""
    xhat, inv_std, gamma = cache
    dbeta, dgamma, dxhat = _affine_backward(dout, xhat, gamma, bug)
    mean_dxhat = dxhat.mean(axis=1, keepdims=True)
    mean_proj = (dxhat * xhat).mean(axis=1, keepdims=True)
    if bug == "dx_missing_mean":
        mean_dxhat = 0.0
    elif bug == "dx_xhat_term_missing_1_over_D":
        mean_proj = (dxhat * xhat).sum(axis=1, keepdims=True)
    dx = inv_std * (dxhat - mean_dxhat - xhat * mean_proj)
    return dx, dgamma, dbeta


# -- batch norm (training mode) ----------------------------------------------------------------------
def batchnorm_forward(x, gamma, beta):
    """Training-mode batch norm: batch mean and biased batch variance per feature."""
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc * xc).mean(axis=0)
    std = np.sqrt(var + EPS)
    xhat = xc / std
    return gamma * xhat + beta, (xc, std, xhat, gamma)


def batchnorm_backward(dout, cache, bug=None):
    """The textbook staged backward (through var, then mu, then x), not the compact formula."""
    xc, std, xhat, gamma = cache
    N = dout.shape[0]
    dbeta, dgamma, dxhat = _affine_backward(dout, xhat, gamma, bug)
    dvar = (dxhat * xc).sum(axis=0) * -0.5 * std ** -3
    dmu = -(dxhat / std).sum(axis=0) + dvar * (-2.0 * xc).mean(axis=0)
    if bug == "dx_missing_mean_terms":
        return dxhat / std, dgamma, dbeta
    dx = dxhat / std + dvar * 2.0 * xc / N + dmu / N
    return dx, dgamma, dbeta


def _half_mse(out, y):
    """0.5 * sum((out - y)^2) / N and its gradient."""
    N = out.shape[0]
    r = out - y
    return 0.5 * (r * r).sum() / N, r / N


# -- cases ----------------------------------------------------------------------------------------
def _projected(norm_forward, norm_backward, bug):
    """fn of a normalization of the parameter ``x`` with the loss ``sum(out * X)`` (X: the upstream
    gradient)."""
    def fn(p, X, y):
        out, cache = norm_forward(p["x"], p["gamma"], p["beta"])
        dx, dgamma, dbeta = norm_backward(X, cache, bug)
        return (out * X).sum(), {"x": dx, "gamma": dgamma, "beta": dbeta}
    return fn


def _dense_then(norm_forward, norm_backward, bug):
    """fn of a dense layer followed by a normalization (gamma, beta) and half MSE."""
    def fn(p, X, y):
        h, dense_cache = dense_forward(X, p["W"], p["b"])
        out, norm_cache = norm_forward(h, p["gamma"], p["beta"])
        loss, dout = _half_mse(out, y)
        dh, dgamma, dbeta = norm_backward(dout, norm_cache, bug)
        _, dW, db = dense_backward(dh, dense_cache)
        return loss, {"W": dW, "b": db, "gamma": dgamma, "beta": dbeta}
    return fn


def make_layernorm_sum(dtype="float64", seed=0, bug=None):
    """``loss = sum(layernorm(x) * X)``, X all ones, gamma = 1: each row of xhat sums to zero, so
    the loss is N * sum(beta) and dx is exactly zero (claimed: ~1e-17 rounding).

    params: ``x`` (4, 5), ``gamma`` (ones), ``beta``; X: the upstream gradient (ones); y: None.
    """
    check_bug(bug, LAYERNORM_SUM_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 21)
    params = cast(dt, x=2.0 * rng.standard_normal((4, 5)) + 0.5, gamma=np.ones(5),
                  beta=0.1 * rng.standard_normal(5))
    X = np.ones((4, 5), dtype=dt)

    return _projected(layernorm_forward, layernorm_backward, bug), params, X, None


def make_layernorm_dense(dtype="float64", seed=0, bug=None):
    """Dense (3 -> 5) then layer norm, half mean squared error against y (4, 5)."""
    check_bug(bug, LAYERNORM_DENSE_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 22)
    params = cast(dt, W=rng.standard_normal((3, 5)) / np.sqrt(3), b=0.1 * rng.standard_normal(5),
                  gamma=1.0 + 0.1 * rng.standard_normal(5), beta=0.1 * rng.standard_normal(5))
    X = rng.standard_normal((4, 3)).astype(dt)
    y = rng.standard_normal((4, 5)).astype(dt)

    return _dense_then(layernorm_forward, layernorm_backward, bug), params, X, y


def make_batchnorm_offset(dtype="float64", seed=0, bug=None):
    """``loss = sum(batchnorm(x) * X)`` where x = normal + 1000: the batch mean is ~1000 standard
    deviations from zero (ill-conditioned: x - mean cancels 3 digits; float32 keeps ~4 of them).

    params: ``x`` (6, 3), ``gamma``, ``beta``; X: a random upstream gradient (6, 3); y: None.
    """
    check_bug(bug, BATCHNORM_OFFSET_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 23)
    params = cast(dt, x=rng.standard_normal((6, 3)) + 1000.0, gamma=1.0 + 0.1 * rng.standard_normal(3),
                  beta=0.1 * rng.standard_normal(3))
    X = rng.standard_normal((6, 3)).astype(dt)

    return _projected(batchnorm_forward, batchnorm_backward, bug), params, X, None


def make_batchnorm_dense_offset(dtype="float64", seed=0, bug=None):
    """Dense (3 -> 4) then batch norm, half MSE; inputs X = normal + 1000 (6, 3).

    The dense outputs have batch means ~1000 * sum(W) and standard deviations ~|W|; the bias b is
    removed by the batch mean, so db is exactly zero (claimed: rounding); dW = X^T dh cancels
    1000 * sum(dh) ~ 0.
    """
    check_bug(bug, BATCHNORM_DENSE_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 24)
    params = cast(dt, W=rng.standard_normal((3, 4)) / np.sqrt(3), b=0.1 * rng.standard_normal(4),
                  gamma=1.0 + 0.1 * rng.standard_normal(4), beta=0.1 * rng.standard_normal(4))
    X = (rng.standard_normal((6, 3)) + 1000.0).astype(dt)
    y = rng.standard_normal((6, 4)).astype(dt)

    return _dense_then(batchnorm_forward, batchnorm_backward, bug), params, X, y
