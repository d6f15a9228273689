"""Elementwise Huber loss of residuals pred - target, delta = 1.5, with residuals exactly at
+delta and -delta (where the second derivative jumps from 1 to 0: one-sided curvatures differ)
and exactly 0.

Targets are multiples of 1/8 and the special residuals dyadic, so pred - target is exactly
+-1.5 / 0 in float32 as in float64.
"""
from __future__ import annotations

import numpy as np

DELTA = 1.5

DESCRIPTION = "huber(pred - target, delta=1.5) elementwise: pred, target (3,4) -> (3,4); residuals exactly +-1.5 and 0"

BUGS = {
    "target_sign": (("target",), "dtarget = +g * psi(r): the minus sign of r = pred - target forgotten"),
    "unit_slope": (("pred", "target"), "psi(r) = sign(r) outside the threshold instead of delta * sign(r)"),
}


def f(inputs):
    r = inputs["pred"] - inputs["target"]
    a = np.abs(r)
    return np.where(a <= DELTA, 0.5 * r * r, DELTA * (a - 0.5 * DELTA))


def _psi(r, bug=None):
    if bug == "unit_slope":
        return np.where(np.abs(r) <= DELTA, r, np.sign(r))
    return np.clip(r, -DELTA, DELTA)


def vjp(inputs, g, *, bug=None):
    psi = _psi(inputs["pred"] - inputs["target"], bug)
    dtarget = g * psi if bug == "target_sign" else -g * psi
    return {"pred": g * psi, "target": dtarget}


def jvp(inputs, t):
    return _psi(inputs["pred"] - inputs["target"]) * (t["pred"] - t["target"])


def inputs(rng, dtype=np.float64):
    target = np.round(8.0 * rng.standard_normal((3, 4))) / 8.0
    r = rng.uniform(-4.0, 4.0, (3, 4))
    r[0, 0], r[1, 2], r[2, 3], r[0, 3], r[2, 1] = DELTA, -DELTA, DELTA, 0.0, -DELTA
    pred = target + r
    return {"pred": pred.astype(dtype), "target": target.astype(dtype)}
