"""A bag-of-embeddings classifier: mean of each bag's token embeddings, affine, softmax
cross-entropy.

Conventions: X (N, L) integer token ids into the embedding matrix E (V, d); a bag's vector is
the mean of its L embeddings (a token that occurs twice counts twice); the backward scatters
into dE with ``np.add.at`` (unbuffered: repeated ids accumulate). Vocabulary rows no bag uses
get no gradient: their true gradient is exactly zero, and so is the claimed one.
"""
from __future__ import annotations

import numpy as np

from tests.false_alarm_corpus._common import cast, check_bug, float_dtype, generator
from tests.false_alarm_corpus.softmax import dense_backward, dense_forward, softmax_cross_entropy

EMBEDDING_BUGS = {
    "scatter_fancy_index": ("E",),       # dE[X] += g: buffered, a token repeated in a bag is counted once
    "mean_missing_1_over_L": ("E",),     # the bag mean's backward forgets the 1/L
}


def embedding_bag_forward(E, ids):
    """Mean of E[ids] over the bag axis: (N, L) ids -> (N, d)."""
    return E[ids].mean(axis=1), (E.shape, ids)


def embedding_bag_backward(dout, cache, dtype, bug=None):
    """dE (V, d): every occurrence of a token receives dout / L of its bag."""
    shape, ids = cache
    L = ids.shape[1]
    g = np.repeat(dout[:, None, :], L, axis=1)
    if bug != "mean_missing_1_over_L":
        g = g / L
    dE = np.zeros(shape, dtype=dtype)
    if bug == "scatter_fancy_index":
        dE[ids] += g
    else:
        np.add.at(dE, ids, g)
    return dE


def make_embedding_bag(dtype="float64", seed=0, bug=None):
    """Vocabulary 12 x dimension 5, N=6 bags of L=3 tokens drawn from 8 of the 12 ids (4 rows are
    never used: exactly zero gradient), bag 0 with its first token repeated; affine 5 -> 4
    classes (W ~ N(0, 1/5), b zero); mean softmax cross-entropy.

    params: ``E`` (12, 5), ``W`` (5, 4), ``b`` (4,); X: the ids (6, 3); y: integer labels (6,).
    """
    check_bug(bug, EMBEDDING_BUGS)
    dt = float_dtype(dtype)
    rng = generator(seed, 101)
    V, d, N, L, K = 12, 5, 6, 3, 4
    used = rng.permutation(V)[:8]
    ids = rng.choice(used, size=(N, L))
    ids[0, 1] = ids[0, 0]                     # one token twice in a bag, whatever the seed
    params = cast(dt, E=rng.standard_normal((V, d)), W=rng.standard_normal((d, K)) / np.sqrt(d), b=np.zeros(K))
    y = rng.integers(0, K, size=N)

    def fn(p, X, y):
        m, emb_cache = embedding_bag_forward(p["E"], X)
        z, dense_cache = dense_forward(m, p["W"], p["b"])
        loss, dz = softmax_cross_entropy(z, y)
        dm, dW, db = dense_backward(dz, dense_cache)
        return loss, {"E": embedding_bag_backward(dm, emb_cache, dm.dtype, bug), "W": dW, "b": db}

    return fn, params, ids, y
