"""An LSTM unrolled over T steps with a linear read-out at every step, backprop through time.

Conventions: X (N, T, D); h0 = c0 = 0; pre-activations a = x_t Wx + h_{t-1} Wh + b with the 4H
columns in gate order (i, f, o, g); i, f, o sigmoid, g tanh; c_t = f * c_{t-1} + i * g;
h_t = o * tanh(c_t); read-out out_t = h_t Wy + by. Loss: 0.5 * sum over t of |out_t - y_t|^2 / N.
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator

LSTM_BUGS = {
    "missing_dc_next": ("Wx", "Wh", "b"),   # the cell-state gradient from step t+1 is not carried back
    "missing_dh_next": ("Wx", "Wh", "b"),   # the hidden-state gradient from step t+1 is not carried back
    "dWh_off_by_one": ("Wh",),              # dWh += h_t^T da_t instead of h_{t-1}^T da_t
}


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def lstm_step_forward(x, h_prev, c_prev, Wx, Wh, b):
    """One step; returns (h, c, cache)."""
    H = h_prev.shape[1]
    a = x @ Wx + h_prev @ Wh + b
    i, f, o = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), _sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    c = f * c_prev + i * g
    tc = np.tanh(c)
    h = o * tc
    return h, c, (x, h_prev, c_prev, i, f, o, g, tc, h)


def lstm_step_backward(dh, dc, cache, Wx, Wh):
    """Gradient through one step given dh and dc (both already including what step t+1 sent).
    Returns (dx, dh_prev, dc_prev, da), da the gate pre-activations' gradient (N, 4H)."""
    x, h_prev, c_prev, i, f, o, g, tc, h = cache
    do = dh * tc
    dc = dc + dh * o * (1.0 - tc * tc)
    di, df, dg = dc * g, dc * c_prev, dc * i
    da = np.concatenate([di * i * (1.0 - i), df * f * (1.0 - f), do * o * (1.0 - o), dg * (1.0 - g * g)], axis=1)
    return da @ Wx.T, da @ Wh.T, dc * f, da


def make_lstm(dtype="float64", seed=0, bug=None):
    """LSTM D=3, H=3 over T=4 steps, batch N=2, read-out to 2 outputs per step.

    params: Wx (3, 12), Wh (3, 12), b (12,) (forget-gate bias 1), Wy (3, 2), by (2,).
    """
    check_bug(bug, LSTM_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 41)
    N, T, D, H, O = 2, 4, 3, 3, 2
    b = 0.1 * rng.standard_normal(4 * H)
    b[H:2 * H] += 1.0
    params = cast(dt, Wx=rng.standard_normal((D, 4 * H)) / np.sqrt(D), Wh=rng.standard_normal((H, 4 * H)) / np.sqrt(H),
                  b=b, Wy=rng.standard_normal((H, O)) / np.sqrt(H), by=0.1 * rng.standard_normal(O))
    X = rng.standard_normal((N, T, D)).astype(dt)
    y = rng.standard_normal((N, T, O)).astype(dt)

    def fn(p, X, y):
        Wx, Wh, b, Wy, by = p["Wx"], p["Wh"], p["b"], p["Wy"], p["by"]
        n, steps = X.shape[0], X.shape[1]
        h = np.zeros((n, Wh.shape[0]), dtype=Wh.dtype)
        c = np.zeros_like(h)
        caches, residuals, loss = [], [], 0.0
        for t in range(steps):
            h, c, cache = lstm_step_forward(X[:, t], h, c, Wx, Wh, b)
            r = h @ Wy + by - y[:, t]
            loss = loss + 0.5 * (r * r).sum() / n
            caches.append(cache)
            residuals.append(r / n)
        grads = {k: np.zeros_like(v) for k, v in p.items()}
        dh_next = np.zeros_like(h)
        dc_next = np.zeros_like(c)
        for t in reversed(range(steps)):
            cache = caches[t]
            h_t = cache[-1]
            dr = residuals[t]
            grads["Wy"] += h_t.T @ dr
            grads["by"] += dr.sum(axis=0)
            dh = dr @ Wy.T + (0.0 if bug == "missing_dh_next" else dh_next)
            dc = 0.0 * dc_next if bug == "missing_dc_next" else dc_next
            _, dh_next, dc_next, da = lstm_step_backward(dh, dc, cache, Wx, Wh)
            grads["Wx"] += X[:, t].T @ da
            grads["Wh"] += (h_t if bug == "dWh_off_by_one" else cache[1]).T @ da
            grads["b"] += da.sum(axis=0)
        return loss, grads

    return fn, params, X, y
