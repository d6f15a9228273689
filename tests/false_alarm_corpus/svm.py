"""The cs231n two-layer net with the multiclass SVM (hinge) loss and L2 regularization.

Conventions: X (N, D) rows are samples; affine -> ReLU -> affine gives class scores (N, C);
W (fan_in, fan_out) ~ N(0, 2 / fan_in), biases zero (He init); ReLU's derivative at exactly 0 is
taken as 0. Loss: the mean over rows of sum over j != y_i of max(0, s_j - s_{y_i} + 1), plus
``0.5 * REG * (sum(W1^2) + sum(W2^2))``; the hinge's derivative at a margin of exactly 0 is taken
as 0 (a margin counts as a violation only when it is > 0). ReLU and hinge kinks are expected.
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator
from tests.false_alarm_corpus.mlp import relu_backward, relu_forward
from tests.false_alarm_corpus.softmax import dense_backward, dense_forward

#: L2 regularization strength (cs231n's ``reg``)
REG = 0.1

SVM_BUGS = {
    "reg_grad_missing": ("W1", "W2"),                  # dW += REG * W forgotten (the loss keeps the penalty)
    "correct_class_counted": ("W1", "b1", "W2", "b2"),  # the correct class's own margin (always 1) is
                                                         # counted among the violations: -(k + 1) for -k
    "db2_sign": ("b2",),
}


def svm_loss(scores, y, bug=None):
    """Mean multiclass hinge loss of integer labels ``y``; returns (loss, dscores)."""
    N = scores.shape[0]
    rows = np.arange(N)
    correct = scores[rows, y][:, None]
    hinge = scores - correct + 1.0
    margins = np.maximum(hinge, 0.0)
    margins[rows, y] = 0.0
    loss = margins.sum() / N
    if bug == "correct_class_counted":
        mask = (hinge > 0).astype(scores.dtype)        # the correct class (hinge exactly 1) is in it
        mask[rows, y] = -mask.sum(axis=1)
    else:
        mask = (margins > 0).astype(scores.dtype)
        mask[rows, y] = -mask.sum(axis=1)
    return loss, mask / N


def make_svm_two_layer(dtype="float64", seed=0, bug=None):
    """6 -> 7 (ReLU) -> 4 classes, batch N=5, SVM loss, L2 penalty on W1 and W2."""
    check_bug(bug, SVM_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 81)
    N, D, H, C = 5, 6, 7, 4
    params = cast(dt, W1=rng.standard_normal((D, H)) * np.sqrt(2.0 / D), b1=np.zeros(H),
                  W2=rng.standard_normal((H, C)) * np.sqrt(2.0 / H), b2=np.zeros(C))
    X = rng.standard_normal((N, D)).astype(dt)
    y = rng.integers(0, C, size=N)

    def fn(p, X, y):
        W1, b1, W2, b2 = p["W1"], p["b1"], p["W2"], p["b2"]
        z1, c1 = dense_forward(X, W1, b1)
        a1, r1 = relu_forward(z1)
        scores, c2 = dense_forward(a1, W2, b2)
        data_loss, dscores = svm_loss(scores, y, bug)
        loss = data_loss + 0.5 * REG * ((W1 * W1).sum() + (W2 * W2).sum())
        da1, dW2, db2 = dense_backward(dscores, c2)
        _, dW1, db1 = dense_backward(relu_backward(da1, r1), c1)
        if bug != "reg_grad_missing":
            dW1 = dW1 + REG * W1
            dW2 = dW2 + REG * W2
        if bug == "db2_sign":
            db2 = -db2
        return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

    return fn, params, X, y
