"""Dense layer on the last axis, ``z = x @ W + b``, for inputs of any rank ``(batch, ..., fan_in)``."""
from __future__ import annotations

from .base import Context, LayerKind, bias, weight


def init(node, in_shape, rng, scheme, dtype):
    params = {"W": weight(rng, (in_shape[-1], node.width), in_shape[-1], node.width, scheme, dtype)}
    if node.bias:
        params["b"] = bias(rng, (node.width,), dtype)
    return params


def forward(node, params, x, ctx: Context):
    z = x @ params["W"]
    if "b" in params:
        z = z + params["b"]
    return z, x


def backward(node, params, x, dz):
    # every leading axis (batch, sequence, ...) is a row of the product
    rows_x = x.reshape(-1, x.shape[-1])
    rows_dz = dz.reshape(-1, dz.shape[-1])
    grads = {"W": rows_x.T @ rows_dz}
    if "b" in params:
        grads["b"] = rows_dz.sum(axis=0)
    return dz @ params["W"].T, grads


DENSE = LayerKind("dense", init, forward, backward)
