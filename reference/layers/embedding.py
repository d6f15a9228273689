"""Embedding lookup: rows of ``E`` (``(vocab, dim)``) picked by integer indices, ``y = E[x]``.

``x`` is an integer array ``(B, T)`` of indices in ``[0, vocab)``; ``y`` is ``(B, T, dim)``. The
input carries no gradient (``dx`` is None); ``dE`` adds the cotangent of every position into the
row it picked (``np.add.at``), so a repeated index accumulates. Negative indices are out of range
(numpy would wrap them silently; torch rejects them).
"""
from __future__ import annotations

import numpy as np

from .base import Context, LayerKind


def _init(node, in_shape, rng, scheme, dtype):
    # N(0, 1), as torch.nn.Embedding (no fan-in: a row is picked, never summed)
    return {"E": rng.standard_normal((node.vocab, node.dim)).astype(dtype)}


def _check_indices(x, vocab):
    if x.dtype.kind not in "iu":
        raise ValueError(f"embedding takes integer indices, got dtype {x.dtype}")
    bad = (x < 0) | (x >= vocab)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"embedding index {int(x[pos])} at position {list(pos)} is out of range "
                         f"[0, {vocab}) (vocab={vocab}); {int(bad.sum())} index(es) out of range in all")


def forward(node, params, x, ctx: Context):
    x = np.asarray(x)
    _check_indices(x, params["E"].shape[0])
    return params["E"][x], x


def backward(node, params, x, dy):
    dE = np.zeros(params["E"].shape, dtype=dy.dtype)
    np.add.at(dE, x, dy)   # dE[x] += dy would keep only the last of repeated indices
    return None, {"E": dE}


EMBEDDING = LayerKind("embedding", _init, forward, backward,
                      conventions="y = E[x] for integer indices in [0, vocab); no gradient for the indices; "
                                  "repeated indices add their gradients into the same row of E")
