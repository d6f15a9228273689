"""The contract of a layer kind in the reference: initialise, forward with a cache, backward.

A :class:`LayerKind` is the numpy implementation of one node type of :mod:`gradcheck.layerspec`
(the spec side holds the shape rules; this side the formulas). Every function takes the spec
node first and works on a batch: ``x`` is ``(batch,) + per-example shape``. Parameters are passed
by their *local* names (``W``, ``gamma``, ``Wq``...); the network maps them to ``conv1.W`` etc.

* ``init(node, in_shape, rng, scheme, dtype) -> params`` (``scheme``: the spec's ``init``).
* ``forward(node, params, x, ctx) -> (y, cache)``: pure (nothing written into ``x`` or ``params``).
* ``backward(node, params, cache, dy) -> (dx, grads)``: ``dx`` is dL/dx (None when ``x`` is
  integer indices), ``grads`` dL/d(each parameter), same dtype as ``x``.

The activation of a node (``node.activation``) is applied by the network, not by the kind.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray
Params = dict[str, Array]


@dataclass(frozen=True)
class Context:
    """What a forward pass may need beyond its input: the spec's seed and the layer's 1-based index
    (a dropout mask is a function of both and of the input's shape, the same on every call)."""

    seed: int = 0
    index: int = 1


@dataclass(frozen=True)
class LayerKind:
    """One registry entry: a layer kind's numpy forward and hand-written backward."""

    name: str
    init: Callable[[Any, tuple[int, ...], np.random.Generator, str, np.dtype], Params]
    forward: Callable[[Any, Mapping[str, Array], Array, Context], tuple[Array, Any]]
    backward: Callable[[Any, Mapping[str, Array], Any, Array], tuple[Array | None, Params]]
    conventions: str = ""


def weight(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int, scheme: str,
           dtype: np.dtype) -> Array:
    """A weight tensor drawn by the spec's scheme: ``normal`` N(0, 1/fan_in), ``xavier``
    N(0, 2/(fan_in + fan_out)), ``he`` N(0, 2/fan_in)."""
    var = {"normal": 1 / fan_in, "xavier": 2 / (fan_in + fan_out), "he": 2 / fan_in}[scheme]
    return rng.normal(0.0, np.sqrt(var), size=shape).astype(dtype)


def bias(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> Array:
    """A bias: N(0, 0.1^2), so that a zero bias never hides a missing bias gradient."""
    return rng.normal(0.0, 0.1, size=shape).astype(dtype)
