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


def widened(params: Mapping[str, Any], names: Iterable[str], dtypes: Mapping[str, np.dtype]) -> bool:
    """A call with every parameter a float64 array where the code's own are narrower: the checker
    asking for its float64 second opinion (:meth:`gradcheck.judging.Judge.wider`). Adapters then
    run the whole computation in float64 (data too), as numpy code promotes; a framework that cast
    the values back to float32 would give the second opinion nothing to see."""
    names = list(names)
    return (any(np.dtype(dtypes[n]).itemsize < 8 for n in names)
            and all(isinstance(params.get(n), np.ndarray) and params[n].dtype == np.float64 for n in names))


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


# -- operator checks of a function and of its derivative (torch gradgrad, jax order=2) -------------
def unobserved(check_fn: Callable[..., Any]) -> Callable[..., Any]:
    """An operator check without telling :data:`gradcheck.checker.observers` (the combined result is told)."""
    return getattr(check_fn, "__wrapped__", check_fn)


def unique_name(name: str, taken: Iterable[str]) -> str:
    """``name``, with ``_`` appended until it is not in ``taken``."""
    taken = set(taken)
    while name in taken:
        name += "_"
    return name


def combine_orders(first: Any, second: Any, base: str | None, words: tuple[str, str]) -> Any:
    """One :class:`~gradcheck.result.Result` from a first-order operator check and the check of its
    derivative (``words``: what each order checks, e.g. ``("backward", "double backward")``).

    The verdict is both; the result's ``name`` says which order failed (so the first line of
    ``str(result)`` does): ``"<base>, second order (double backward)"``. Tensors are both checks'
    Jacobian blocks (the second order's are ``dgrad_<input>/d...``); worst element, failures and
    diagnosis come from the failing order (the first when both fail); ``operator`` is the first
    order's with the second's under ``"second_order"``; a note per order sums it up.
    """
    import dataclasses  # noqa: PLC0415 - only operator checks need these
    import math  # noqa: PLC0415

    from gradcheck.result import fmt_error, operator_text  # noqa: PLC0415

    second = _renamed(second, set(first.tensors))
    orders = [("first order", words[0], first), ("second order", words[1], second)]
    failed = [o for o in orders if not o[2].passed]
    shown = failed if len(failed) == 1 else orders
    which = " and ".join(o[0] for o in shown).replace("first order and second order", "first and second order")
    which += f" ({' and '.join(o[1] for o in shown)})"
    if failed:
        lead, other = (first, second) if not first.passed else (second, first)
    else:
        lead, other = (first, second) if first.max_rel_error >= second.max_rel_error else (second, first)
    problems = list(lead.problems)
    problems += [p for p in other.problems if all(p.message != q.message for q in problems)]
    notes = []
    for label, what, r in orders:
        status = "passed" if r.passed else "FAILED"
        # the first order's coverage is the result's own operator line
        covered = f"; {operator_text(r.operator)}" if r.operator and r is second else ""
        notes.append(f"{label} ({what}): {status}, max relative error {fmt_error(r.max_rel_error)}{covered}")
    for r in (lead, other):
        notes += [n for n in r.notes if n not in notes]
    operator = dict(first.operator or {})
    if second.operator is not None:
        operator["second_order"] = dict(second.operator)
    return dataclasses.replace(
        lead, passed=first.passed and second.passed, name=f"{base}, {which}" if base else which,
        max_rel_error=max(first.max_rel_error, second.max_rel_error),
        tensors={**first.tensors, **second.tensors}, failures=(lead.failures + other.failures)[:50],
        kinks=(lead.kinks + other.kinks)[:50], problems=problems, notes=notes,
        calls=first.calls + second.calls, seconds=first.seconds + second.seconds,
        noise=max(first.noise, second.noise), scale=max(first.scale, second.scale),
        margin=max(first.margin, second.margin), normwise=max(first.normwise, second.normwise),
        n_below_resolution=first.n_below_resolution + second.n_below_resolution, operator=operator,
        tolerance=lead.tolerance if not math.isnan(lead.tolerance) else other.tolerance)


def second_order_result(first: Any, run: Callable[[], Any]) -> Any:
    """The second-order result: ``run()``, unless the first-order check found a fault of the
    function (then a ``first_order_failed`` problem); a fault while setting it up is its failure."""
    import math  # noqa: PLC0415

    from gradcheck.result import Problem, Result  # noqa: PLC0415

    def failed(kind: str, message: str) -> Any:
        return Result(passed=False, max_rel_error=math.inf, worst_param=None, dtype=first.dtype,
                      problems=[Problem(kind, message)])

    if first.problems:
        return failed("first_order_failed", "second order not checked: the first-order check found a fault of the "
                                            "function")
    try:
        return run()
    except Exception as exc:
        return failed("raised", f"the second-order check could not start: {type(exc).__name__}: {exc}")


def tell_observers(result: Any) -> Any:
    """Hand ``result`` to :data:`gradcheck.checker.observers` (what every check does) and return it."""
    from gradcheck import checker  # noqa: PLC0415

    for observe in checker.observers:
        observe(result)
    return result


def _second_name(name: str) -> str:
    """``x (cotangent 0)`` -> ``x (second order, cotangent 0)``; ``x`` -> ``x (second order)``."""
    head, sep, tail = name.rpartition(" (")
    return f"{head} (second order, {tail}" if sep and name.endswith(")") else f"{name} (second order)"


def _renamed(second: Any, taken: set[str]) -> Any:
    """The second-order result with its tensors that share a first-order tensor's name (the random
    cotangents' ``x (cotangent 0)``) renamed, in its elements and diagnosis too."""
    import dataclasses  # noqa: PLC0415

    clash = {n: _second_name(n) for n in second.tensors if n in taken}
    if not clash:
        return second

    def element(e: Any) -> Any:
        if e is None or e.param not in clash:
            return e
        new = clash[e.param]
        display = e.display
        old_suffix, new_suffix = e.param[len(e.param.rpartition(" (")[0]):], new[len(e.param.rpartition(" (")[0]):]
        if display and old_suffix and display.endswith(old_suffix):
            display = display[: len(display) - len(old_suffix)] + new_suffix
        return dataclasses.replace(e, param=new, display=display)

    diagnosis = second.diagnosis
    if diagnosis is not None:
        diagnosis = dataclasses.replace(diagnosis, params=[clash.get(p, p) for p in diagnosis.params])
    return dataclasses.replace(
        second, tensors={clash.get(n, n): dataclasses.replace(t, name=clash.get(n, n)) for n, t in second.tensors.items()},
        worst=element(second.worst), closest=element(second.closest), failures=[element(e) for e in second.failures],
        kinks=[element(e) for e in second.kinks], diagnosis=diagnosis,
        worst_param=clash.get(second.worst_param, second.worst_param))
