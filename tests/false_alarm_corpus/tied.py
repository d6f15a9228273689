"""A tiny language-model head with tied embeddings: the input embedding matrix is also the output
projection.

Conventions: X (N,) integer ids of the current tokens, y (N,) the ids of the next tokens (the
same token stream shifted by one); E (V, d) the shared embedding matrix; e = E[X] looks the
inputs up, h = tanh(e W + b) with W (d, d), b (d,); the logits are h E^T (V classes, no output
bias); the loss is the mean softmax cross-entropy of the next-token ids. E is used twice, so its
gradient is the SUM of the output projection's part (dlogits^T h, every row) and the lookup's
part (scattered back with ``np.add.at`` onto the rows the stream uses; repeated ids accumulate).
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator
from tests.false_alarm_corpus.offsets import tanh_backward, tanh_forward
from tests.false_alarm_corpus.softmax import dense_backward, dense_forward, softmax_cross_entropy

TIED_BUGS = {
    "tied_grad_output_only": ("E",),   # dE from the output projection only: the lookup's part dropped
    "tied_grad_input_only": ("E",),    # dE from the lookup only: the output projection's part dropped
}


def make_tied_embeddings(dtype="float64", seed=0, bug=None):
    """Vocabulary 9 x dimension 4, a stream of 11 tokens (N = 10 next-token pairs) drawn from 7 of
    the 9 ids, one id repeated back to back; E ~ N(0, 1), W ~ N(0, 1/4), b ~ 0.1 N(0, 1).

    params: ``E`` (9, 4), ``W`` (4, 4), ``b`` (4,); X: input ids (10,); y: next ids (10,).
    """
    check_bug(bug, TIED_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 131)
    V, d, N = 9, 4, 10
    used = rng.permutation(V)[:7]
    stream = rng.choice(used, size=N + 1)
    stream[3] = stream[2]                     # one token twice in a row, whatever the seed
    params = cast(dt, E=rng.standard_normal((V, d)), W=rng.standard_normal((d, d)) / np.sqrt(d),
                  b=0.1 * rng.standard_normal(d))

    def fn(p, X, y):
        E = p["E"]
        e = E[X]                                          # (N, d) lookup
        z, hidden_cache = dense_forward(e, p["W"], p["b"])
        h, t = tanh_forward(z)
        logits = h @ E.T                                  # (N, V): E again, as the output projection
        loss, dlogits = softmax_cross_entropy(logits, y)
        dE_out = dlogits.T @ h                            # (V, d)
        dh = dlogits @ E
        de, dW, db = dense_backward(tanh_backward(dh, t), hidden_cache)
        dE_in = np.zeros_like(E)
        np.add.at(dE_in, X, de)
        if bug == "tied_grad_output_only":
            dE = dE_out
        elif bug == "tied_grad_input_only":
            dE = dE_in
        else:
            dE = dE_out + dE_in
        return loss, {"E": dE, "W": dW, "b": db}

    return fn, params, stream[:-1].copy(), stream[1:].copy()
