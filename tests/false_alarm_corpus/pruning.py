"""A magnitude-pruned ReLU MLP with an L1 penalty on its weights: the penalty has a kink exactly
at the pruned (zero) weights.

Conventions: X (N, D) rows are samples; W (fan_in, fan_out) ~ N(0, 2 / fan_in) with about a
third of each weight's entries set to exactly 0 (pruned, as magnitude pruning leaves them), small
nonzero biases; ReLU's derivative at exactly 0 is taken as 0. Loss: half the mean squared error
against y, plus ``LAM * (sum|W1| + sum|W2|)``. The L1 term's subgradient is ``LAM * sign(W)`` with
sign(0) = 0 (``np.sign``'s convention, the one frameworks use), so a pruned entry's claimed
gradient is the data term's alone -- the centre of the subdifferential, and exactly what a
symmetric (central) difference of |w| at 0 gives. |w| and sign(w) are written through the real
part's sign so the code stays analytic in complex arguments.
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator
from tests.false_alarm_corpus.mlp import relu_backward, relu_forward
from tests.false_alarm_corpus.softmax import dense_backward, dense_forward

#: L1 penalty strength
LAM = 0.1

PRUNING_BUGS = {
    "l1_sign_flipped": ("W1", "W2"),   # dW += -LAM * sign(W): the penalty's gradient pushes weights away from 0
    "l1_missing": ("W1",),             # dW1 without the penalty's term (the loss keeps it)
}


def real_sign(w):
    """sign(w.real) as w's real dtype, 0 at 0 (np.sign's convention, complex-safe)."""
    r = w.real
    return (r > 0).astype(r.dtype) - (r < 0).astype(r.dtype)


def l1_penalty(w):
    """sum |w|, written as sum(w * sign(w)) so that it is analytic off the kink."""
    return (w * real_sign(w)).sum()


def _pruned(rng, shape, fan_in):
    w = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    flat = w.reshape(-1)
    flat[rng.permutation(flat.size)[: flat.size // 3]] = 0.0
    return w


def make_l1_pruned(dtype="float64", seed=0, bug=None):
    """5 -> 6 (ReLU) -> 3, batch N=6, half MSE against y (6, 3), L1 penalty on W1 and W2 with a
    third of their entries exactly zero (10 of 30 in W1, 6 of 18 in W2).

    params: ``W1`` (5, 6), ``b1`` (6,) ~ 0.1 N(0, 1), ``W2`` (6, 3), ``b2`` (3,) ~ 0.1 N(0, 1).
    """
    check_bug(bug, PRUNING_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 141)
    N, D, H, O = 6, 5, 6, 3
    params = cast(dt, W1=_pruned(rng, (D, H), D), b1=0.1 * rng.standard_normal(H),
                  W2=_pruned(rng, (H, O), H), b2=0.1 * rng.standard_normal(O))
    X = rng.standard_normal((N, D)).astype(dt)
    y = rng.standard_normal((N, O)).astype(dt)

    def fn(p, X, y):
        W1, W2 = p["W1"], p["W2"]
        z1, c1 = dense_forward(X, W1, p["b1"])
        a1, r1 = relu_forward(z1)
        out, c2 = dense_forward(a1, W2, p["b2"])
        n = out.shape[0]
        r = out - y
        loss = 0.5 * (r * r).sum() / n + LAM * (l1_penalty(W1) + l1_penalty(W2))
        da1, dW2, db2 = dense_backward(r / n, c2)
        _, dW1, db1 = dense_backward(relu_backward(da1, r1), c1)
        s = -1.0 if bug == "l1_sign_flipped" else 1.0
        if bug != "l1_missing":
            dW1 = dW1 + s * LAM * real_sign(W1)
        dW2 = dW2 + s * LAM * real_sign(W2)
        return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

    return fn, params, X, y
