"""micrograd adapter (karpathy/micrograd 0.1.0): a ``Module`` of scalar ``Value``s ->
``fn(params, X, y) -> (loss, grads)``.

Parameters are grouped into arrays by the model's structure: an ``MLP``-like model with
``.layers`` of ``Layer``s (``.neurons`` with ``.w`` and ``.b``) gives ``layers.{i}.w`` of shape
``(n_out, n_in)`` and ``layers.{i}.b`` of shape ``(n_out,)``; a single ``Neuron`` gives ``w``
and ``b``; any other model gives one vector ``parameters`` in ``model.parameters()`` order.

Each call writes the given values into the ``Value.data`` fields, zeroes every ``.grad``, runs
``loss_fn(model, X, y).backward()`` (the ``_backward`` closures, including hand-written ones),
reads the ``.grad`` fields, and puts the original ``data`` and ``grad`` back.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gradcheck.adapters._common import AdaptedFn, reject_complex, require

Array = np.ndarray


def _is_neuron(obj: Any) -> bool:
    return hasattr(obj, "w") and hasattr(obj, "b") and isinstance(obj.w, (list, tuple))


def _groups(model: Any) -> dict[str, tuple[list, tuple[int, ...]]]:
    """name -> (the Values in row-major order, the array shape)."""
    layers = getattr(model, "layers", None)
    if isinstance(layers, (list, tuple)) and layers and all(
            isinstance(getattr(la, "neurons", None), list) and all(_is_neuron(n) for n in la.neurons) for la in layers):
        out: dict[str, tuple[list, tuple[int, ...]]] = {}
        for i, la in enumerate(layers):
            out[f"layers.{i}.w"] = ([v for n in la.neurons for v in n.w], (len(la.neurons), len(la.neurons[0].w)))
            out[f"layers.{i}.b"] = ([n.b for n in la.neurons], (len(la.neurons),))
        if len({id(v) for vs, _ in out.values() for v in vs}) == len(model.parameters()):
            return out
    if _is_neuron(model):
        return {"w": (list(model.w), (len(model.w),)), "b": ([model.b], ())}
    values = list(model.parameters())
    return {"parameters": (values, (len(values),))}


def as_fn(model: Any, loss_fn: Callable[[Any, list, list], Any]) -> tuple[AdaptedFn, dict[str, Array]]:
    """Wrap a micrograd ``model`` (anything with ``parameters()`` returning ``Value``s) and
    ``loss_fn(model, X, y) -> Value`` (the scalar loss as a micrograd ``Value``).

    ``X`` and ``y`` reach ``loss_fn`` as nested Python lists of floats (``ndarray.tolist()``):
    micrograd works on Python scalars. Returns ``(fn, params)`` with float64 numpy copies.
    """
    engine = require("micrograd.engine", "micrograd")
    if not callable(getattr(model, "parameters", None)):
        raise TypeError(f"model must be a micrograd Module (with parameters()), got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(model, X, y) -> Value, got {type(loss_fn).__name__}")
    values = list(model.parameters())
    if not values:
        raise ValueError("model.parameters() is empty: nothing to check")
    bad = [type(v).__name__ for v in values if not isinstance(v, engine.Value)]
    if bad:
        raise TypeError(f"model.parameters() must be micrograd Values, found {bad[0]}")
    groups = _groups(model)
    start = {n: np.array([float(v.data) for v in vs], dtype=np.float64).reshape(shape)
             for n, (vs, shape) in groups.items()}

    def as_list(a: Any) -> Any:
        return a.tolist() if isinstance(a, np.ndarray) else a

    def evaluate(p, X, y, backward: bool):
        reject_complex(p, "micrograd")
        saved = [(v, v.data, v.grad) for v in values]
        try:
            for n, (vs, _) in groups.items():
                for v, x in zip(vs, np.asarray(p[n], dtype=np.float64).reshape(-1).tolist()):
                    v.data = x
            for v in values:
                v.grad = 0
            loss = loss_fn(model, as_list(X), as_list(y))
            if not isinstance(loss, engine.Value):
                raise TypeError(f"loss_fn must return a micrograd Value, got {type(loss).__name__}")
            if not backward:
                return float(loss.data)
            loss.backward()
            grads = {n: np.array([float(v.grad) for v in vs], dtype=np.float64).reshape(shape)
                     for n, (vs, shape) in groups.items()}
            return float(loss.data), grads
        finally:
            for v, data, grad in saved:
                v.data, v.grad = data, grad

    return (AdaptedFn(lambda p, X, y: evaluate(p, X, y, True), lambda p, X, y: evaluate(p, X, y, False),
                      list(groups), "micrograd", type(model).__name__), start)


__all__ = ["as_fn"]
