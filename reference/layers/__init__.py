"""The registry of layer kinds: one :class:`LayerKind` per node type of :mod:`gradcheck.layerspec`.

``LAYERS[kind]`` is the numpy forward and hand-written backward of that kind (the shape rules
live on the spec side). Adding a kind: a node class in ``gradcheck/layerspec.py`` and one
``LayerKind`` here (plus its SymPy definition in ``gradcheck/symbolic/layers.py``).
"""
from __future__ import annotations

from types import MappingProxyType

from .attention import ATTENTION
from .base import Context, LayerKind
from .conv import CONV1D, CONV2D
from .dense import DENSE
from .embedding import EMBEDDING
from .norm import BATCHNORM, LAYERNORM
from .pool import AVGPOOL2D, MAXPOOL2D
from .recurrent import LSTM, RNN
from .reshape import DROPOUT, FLATTEN

LAYERS = MappingProxyType({k.name: k for k in (
    DENSE, CONV1D, CONV2D, MAXPOOL2D, AVGPOOL2D, BATCHNORM, LAYERNORM, EMBEDDING, ATTENTION, RNN, LSTM,
    DROPOUT, FLATTEN)})


def get_layer(kind: str) -> LayerKind:
    """The registry entry of ``kind``; a ValueError lists the known kinds."""
    try:
        return LAYERS[kind]
    except KeyError:
        raise ValueError(f"unknown layer kind {kind!r}; known: {sorted(LAYERS)}") from None


__all__ = ["LAYERS", "Context", "LayerKind", "get_layer"]
