"""What every adapter shares: the adapted function object, dtype and key validation, lazy imports,
and dotted names for nested containers of arrays."""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

import numpy as np

Array = np.ndarray
GradFn = Callable[[Mapping[str, Array], Any, Any], tuple[Any, dict]]
LossOnly = Callable[[Mapping[str, Array], Any, Any], Any]


class FrameworkMissing(ImportError):
    """The framework an adapter wraps is not installed (the message says which extra to install)."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` now (adapters import their framework only when used)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise FrameworkMissing(f"this adapter needs {module!r}, which is not installed "
                               f"({exc}); install it with: pip install 'gradcheck[{extra}]'") from exc


def float_dtype(dtype: Any, arg: str = "dtype") -> np.dtype | None:
    """``None`` (keep each parameter's own dtype) or a numpy floating dtype; else ValueError naming ``arg``."""
    if dtype is None:
        return None
    try:
        dt = np.dtype(str(dtype).replace("torch.", "") if _is_torch_dtype(dtype) else dtype)
    except TypeError:
        dt = None
    if dt is None or dt.kind != "f":
        raise ValueError(f"{arg}={dtype!r}: expected a floating dtype such as 'float64' or 'float32', "
                         "or None for the model's own dtype")
    return dt


def _is_torch_dtype(dtype: Any) -> bool:
    return type(dtype).__module__ == "torch" and type(dtype).__name__ == "dtype"


def reject_complex(params: Mapping[str, Array], framework: str) -> None:
    """Complex parameters (the checker's complex-step probe) are refused with a clear TypeError;
    the checker then uses central differences."""
    for k, v in params.items():
        if np.iscomplexobj(v):
            raise TypeError(f"params[{k!r}] is complex: the {framework} adapter checks real parameters only "
                            "(gradcheck falls back from the complex step to central differences)")


def cast_data(value: Any, dtype: np.dtype | None) -> Any:
    """``X``/``y`` for the framework: floating numpy arrays in the compute dtype, the rest as given."""
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, np.ndarray) for v in value):
        return type(value)(cast_data(v, dtype) for v in value)
    if dtype is not None and isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.dtype != dtype:
        return value.astype(dtype)
    return value


class AdaptedFn:
    """The checker's contract around framework code: ``fn(params, X, y) -> (loss, grads)``.

    ``fn.loss(params, X, y)`` computes only the loss (no backward pass): pass it as
    ``gradcheck.check(..., loss_fn=fn.loss)`` to make the finite differences cheaper.
    ``fn.names`` lists the parameter names in the framework's order.
    """

    def __init__(self, grad_fn: GradFn, loss_only: LossOnly, names: Iterable[str], framework: str,
                 label: str = "") -> None:
        self._grad_fn = grad_fn
        self._loss_only = loss_only
        self.names: tuple[str, ...] = tuple(names)
        self.framework = framework
        self.label = label

    def _keys(self, params: Any) -> None:
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a dict of str -> numpy array, got {type(params).__name__}")
        if set(params) != set(self.names):
            missing = [k for k in self.names if k not in params]
            extra = [k for k in params if k not in self.names]
            raise KeyError(f"params must have exactly the keys {list(self.names)}"
                           + (f"; missing {missing}" if missing else "") + (f"; unknown {extra}" if extra else ""))

    def __call__(self, params: Mapping[str, Array], X: Any, y: Any) -> tuple[Any, dict[str, Array]]:
        self._keys(params)
        return self._grad_fn(params, X, y)

    def loss(self, params: Mapping[str, Array], X: Any, y: Any) -> Any:
        """The loss alone, without the backward pass."""
        self._keys(params)
        return self._loss_only(params, X, y)

    def __repr__(self) -> str:
        what = f" {self.label}" if self.label else ""
        return f"<gradcheck {self.framework} adapter{what}: {len(self.names)} parameter tensors>"


# -- nested containers of arrays (dicts, lists, tuples) <-> flat dict with dotted names -----------
def flatten(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``[(dotted_name, leaf), ...]`` for nested dicts (keys as str), lists and tuples; order kept."""
    if isinstance(tree, Mapping):
        items: Iterable[tuple[Any, Any]] = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return [(prefix or "param", tree)]
    out: list[tuple[str, Any]] = []
    for k, v in items:
        out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def unflatten(tree: Any, values: Mapping[str, Any], prefix: str = "") -> Any:
    """A tree shaped like ``tree`` whose leaves are ``values[dotted_name]``."""
    if isinstance(tree, Mapping):
        return {k: unflatten(v, values, f"{prefix}.{k}" if prefix else str(k)) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        seq = [unflatten(v, values, f"{prefix}.{i}" if prefix else str(i)) for i, v in enumerate(tree)]
        return seq if isinstance(tree, list) else (type(tree)(*seq) if hasattr(tree, "_fields") else tuple(seq))
    return values[prefix or "param"]


def unique_names(pairs: list[tuple[str, Any]], arg: str) -> None:
    """Two leaves must not share a dotted name (e.g. key ``"a.b"`` next to ``{"a": {"b": ...}}``)."""
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise ValueError(f"{arg}: two leaves flatten to the same name {name!r}; rename a key")
        seen.add(name)


def numpy_leaf(name: str, leaf: Any, dtype: np.dtype | None, arg: str) -> Array:
    """A float numpy copy of one parameter leaf (``dtype`` None: its own floating dtype)."""
    try:
        a = np.array(leaf, copy=True)
    except Exception as exc:
        raise TypeError(f"{arg}[{name!r}] ({type(leaf).__name__}) cannot be read as an array: {exc}") from None
    if a.dtype.kind not in "fiu" or a.dtype.kind in "iu" and dtype is None:
        raise TypeError(f"{arg}[{name!r}] has dtype {a.dtype}: parameters must be floating arrays")
    return a.astype(dtype if dtype is not None else a.dtype, copy=False)
