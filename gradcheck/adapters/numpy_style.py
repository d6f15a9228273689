"""Plain numpy backprop code in the two styles tutorials use -> ``fn(params, X, y) -> (loss, grads)``.

1. Layer classes with ``forward(x)`` and ``backward(grad_out)`` that leave each parameter's
   gradient in an attribute (``W`` -> ``dW``, ``d_W``, ``grad_W``, ``W_grad`` or ``gradW``) or
   in a ``grads`` dict next to a ``params`` dict: :func:`as_fn`.
2. A training step that updates the weights in place, ``W += lr * (...)`` (the origin document's
   style; ``W -= lr * dW`` is the same thing): :func:`from_update_step` runs one step on copies
   and reads the gradient it implies, ``grads = -(new - old) / lr``.

Both evaluate plain numpy, so ``fn.loss`` accepts complex parameters and the checker can use the
complex step on analytic code.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradcheck.adapters._common import AdaptedFn, float_dtype, numpy_leaf

Array = np.ndarray

#: where a layer may keep the gradient of its attribute ``a`` after ``backward``
GRAD_NAMES = ("d{}", "d_{}", "grad_{}", "{}_grad", "grad{}")
#: the default learning rate of :func:`from_update_step`: a power of two (exact scaling) large
#: enough that ``new - old = lr * g`` carries the gradient's full precision; see its docstring
UPDATE_LR = 2.0 ** 20
#: the second learning rate of the linearity probe, relative to the first (a power of two)
LINEARITY_PROBE = 2.0 ** -10


# -- losses for layer-class code -----------------------------------------------------------------
def _half_sse(out, y):
    return 0.5 * np.sum((out - y) ** 2), out - y


def _sse(out, y):
    return np.sum((out - y) ** 2), 2.0 * (out - y)


def _mse(out, y):
    return np.mean((out - y) ** 2), 2.0 * (out - y) / np.size(out)


LOSSES: dict[str, Callable[[Any, Any], tuple[Any, Any]]] = {"half_sse": _half_sse, "sse": _sse, "mse": _mse}


def _loss_pair(loss: Any) -> tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any], list]:
    """``(value(out, y), grad(out, y), objects whose state to restore)`` for the accepted forms."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r}: expected one of {sorted(LOSSES)}, a (value, grad) pair of "
                             "functions, or an object with forward(out, y) and backward()")
        f = LOSSES[loss]
        return (lambda o, t: f(o, t)[0]), (lambda o, t: f(o, t)[1]), []
    if isinstance(loss, (tuple, list)) and len(loss) == 2 and all(map(callable, loss)):
        return loss[0], loss[1], []
    if callable(getattr(loss, "forward", None)) and callable(getattr(loss, "backward", None)):
        def grad(o, t):
            return loss.backward()
        return loss.forward, grad, [loss]
    raise TypeError(f"loss must be 'half_sse', 'sse', 'mse', a (value, grad) pair of functions, or an object "
                    f"with forward(out, y) and backward(), got {type(loss).__name__}")


# -- saving and restoring a layer object's state -------------------------------------------------
class _Saved:
    """An object's attributes (and the contents of its arrays and dicts), to put back after a call."""

    def __init__(self, obj: Any):
        self.obj = obj
        self.attrs = dict(vars(obj))
        self.arrays = {k: v.copy() for k, v in self.attrs.items() if isinstance(v, np.ndarray)}
        self.dicts = {k: dict(v) for k, v in self.attrs.items() if isinstance(v, dict)}
        self.dict_arrays = {(k, j): a.copy() for k, d in self.dicts.items() for j, a in d.items()
                            if isinstance(a, np.ndarray)}

    def restore(self) -> None:
        vars(self.obj).clear()
        vars(self.obj).update(self.attrs)
        for k, d in self.dicts.items():
            self.attrs[k].clear()
            self.attrs[k].update(d)
        for k, a in self.arrays.items():
            _put_back(self.attrs[k], a)
        for (k, j), a in self.dict_arrays.items():
            _put_back(self.dicts[k][j], a)


def _put_back(target: Array, saved: Array) -> None:
    if target.shape == saved.shape and target.dtype == saved.dtype and target.tobytes() != saved.tobytes():
        np.copyto(target, saved)  # written in place during the call (e.g. self.dW[:] = ...)


# -- layer classes --------------------------------------------------------------------------------
def _is_float_array(v: Any) -> bool:
    return isinstance(v, np.ndarray) and v.dtype.kind == "f"


def _grad_attr_of(name: str, attrs: Mapping[str, Any]) -> bool:
    """Is ``name`` the gradient slot of some other attribute (``dW`` beside ``W``)?"""
    return any(name == pat.format(a) for a in attrs if a != name for pat in GRAD_NAMES)


def _discover(layer: Any, only: Sequence[str] | None) -> list[tuple[str, str | None]]:
    """``[(attribute, None)]`` for array attributes, or ``[(key, "params")]`` for a ``params`` dict."""
    if isinstance(getattr(layer, "params", None), Mapping) and only is None:
        return [(k, "params") for k, v in layer.params.items() if _is_float_array(v)]
    attrs = {k: v for k, v in vars(layer).items() if not k.startswith("_")}
    if only is not None:
        return [(a, None) for a in only if _is_float_array(attrs.get(a))]
    return [(a, None) for a, v in attrs.items() if _is_float_array(v) and not _grad_attr_of(a, attrs)]


def _read_grad(layer: Any, attr: str, where: str | None, label: str) -> Array:
    if where == "params":
        grads = getattr(layer, "grads", None)
        if isinstance(grads, Mapping) and attr in grads:
            return np.array(grads[attr], copy=True)
        raise AttributeError(f"{label}: after backward, {type(layer).__name__}.grads has no key {attr!r}")
    for pat in GRAD_NAMES:
        g = getattr(layer, pat.format(attr), None)
        if g is not None:
            return np.array(g, copy=True)
    tried = ", ".join(pat.format(attr) for pat in GRAD_NAMES)
    raise AttributeError(f"{label}: after backward, {type(layer).__name__} has no gradient attribute for "
                         f"{attr!r} (looked for {tried}); if {attr!r} is a cache rather than a parameter, "
                         "name the parameters with as_fn(..., params=[...])")


def as_fn(layers: Any, loss: Any = "half_sse", *, params: Sequence[str] | None = None,
          dtype: Any = "float64") -> tuple[AdaptedFn, dict[str, Array]]:
    """Wrap layer objects with ``forward(x) -> out`` and ``backward(grad_out) -> grad_in``.

    Parameters
    ----------
    layers : object or list of objects
        One model object with ``forward``/``backward``, or a list of layers chained in order
        (backward runs in reverse, each getting the gradient the next returned).
    loss : str, pair of callables, or object
        ``"half_sse"`` (0.5 sum (out-y)^2, default), ``"sse"``, ``"mse"``; a pair of functions
        ``(value(out, y), grad(out, y))``; or an object with ``forward(out, y)`` and ``backward()``.
    params : list of str, optional
        Attribute names of the parameters (e.g. ``["W", "b"]``); default: every public float
        array attribute that is not a gradient slot, or the keys of a layer's ``params`` dict.
        Build the layers fresh (before any forward) or name them, so that caches are not taken
        for parameters.
    dtype : str, dtype or None
        The parameters' dtype during the check (default float64; None keeps theirs).

    Notes
    -----
    Parameter names are ``"{i}.{attr}"`` for a list of layers, ``"{attr}"`` for one object.
    Every attribute of the layers (parameters, caches, gradient slots) is restored after each call.
    """
    dt = float_dtype(dtype)
    chain = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if not chain:
        raise ValueError("layers is empty")
    for i, la in enumerate(chain):
        for m in ("forward", "backward"):
            if not callable(getattr(la, m, None)):
                raise TypeError(f"layers[{i}] ({type(la).__name__}) has no {m}() method")
        if not hasattr(la, "__dict__"):
            raise TypeError(f"layers[{i}] ({type(la).__name__}) has no __dict__ to read parameters from")
    value_of, grad_of, loss_objects = _loss_pair(loss)
    single = not isinstance(layers, (list, tuple))
    slots: dict[str, tuple[Any, str, str | None]] = {}
    for i, la in enumerate(chain):
        for attr, where in _discover(la, params):
            slots[attr if single else f"{i}.{attr}"] = (la, attr, where)
    if not slots:
        raise ValueError("no parameters found: no float numpy array attributes on the layers"
                         + (f" named {list(params)}" if params is not None else "") + "; pass params=[...]")
    start = {n: numpy_leaf(n, la.params[a] if w == "params" else getattr(la, a), dt, "layer parameter")
             for n, (la, a, w) in slots.items()}

    def load(p: Mapping[str, Array]) -> None:
        for n, (la, a, w) in slots.items():
            value = np.array(p[n], copy=True)
            if w == "params":
                la.params[a] = value
            else:
                setattr(la, a, value)

    def forward(X: Any) -> Any:
        out = X
        for la in chain:
            out = la.forward(out)
        return out

    def run(p, X, y, backward: bool):
        saved = [_Saved(o) for o in chain + loss_objects]
        try:
            load(p)
            out = forward(X)
            value = value_of(out, y)
            if not backward:
                return np.asarray(value).copy()
            g = grad_of(out, y)
            for la in reversed(chain):
                g = la.backward(g)
            return np.asarray(value).copy(), {n: _read_grad(la, a, w, n) for n, (la, a, w) in slots.items()}
        finally:
            for s in saved:
                s.restore()

    fn = AdaptedFn(lambda p, X, y: run(p, X, y, True), lambda p, X, y: run(p, X, y, False), list(slots),
                   "numpy layers", type(chain[0]).__name__ if single else f"{len(chain)} layers")
    return fn, start


# -- the training-step style ----------------------------------------------------------------------
def _warn_if_nonlinear(g1: Mapping[str, Array], g2: Mapping[str, Array], lr: float) -> None:
    """Warn when the gradients implied at two learning rates differ by more than rounding."""
    for n, a in g1.items():
        a, b = np.asarray(a), np.asarray(g2[n])
        if np.iscomplexobj(a) or not a.size:
            continue
        scale = float(np.max(np.abs(a)))
        # rounding of new - old at the smaller rate: a few ulps of |old| / rate, far below 1e-6 * scale
        if np.any(np.abs(a - b) > 1e-6 * scale + 1e-300):
            warnings.warn(f"the update of {n!r} is not linear in the learning rate (the gradient it implies at "
                          f"lr={lr:g} and lr={lr * LINEARITY_PROBE:g} differs): not a plain gradient step, "
                          "e.g. weights updated before a later delta reads them, or momentum",
                          UserWarning, stacklevel=2)
            return


def from_update_step(step: Callable[[dict, Any, Any, float], Any], loss: Callable[[dict, Any, Any], Any],
                     params: Mapping[str, Any], *, lr: float = UPDATE_LR, dtype: Any = "float64",
                     probe_linearity: bool = True) -> tuple[AdaptedFn, dict[str, Array]]:
    """Check a training step that updates weights in place: ``grads = -(new - old) / lr``.

    Parameters
    ----------
    step : callable
        ``step(params, X, y, lr)`` performs one gradient-descent step on the dict ``params``
        (``params["W"] += lr * (...)`` in place, or new arrays assigned into the dict); its return
        value is ignored. It is called on copies.
    loss : callable
        ``loss(params, X, y) -> scalar``: the objective the step descends. For the origin
        document's update ``W += lr * X.T @ ((y - out) * out * (1 - out))`` that is
        ``0.5 * sum((y - out)**2)``.
    params : dict of str to array
        The starting arrays.
    lr : float
        The learning rate gradcheck passes to ``step``. A plain gradient step is linear in it
        (``new = old - lr * g``), so any value gives the same ``g``; the default 2**20 is a power
        of two (dividing by it is exact) large enough that the subtraction ``new - old`` loses no
        digits of ``g``. A step whose update is not linear in ``lr`` (momentum, weights updated
        before the next layer's delta is computed) is not a gradient step and fails the check.
    dtype : str, dtype or None
        The parameters' dtype during the check (default float64; None keeps theirs).
    probe_linearity : bool
        Also run the step at ``lr * 2**-10`` and warn (the checker lists the warning
        in the result's notes) when the two implied gradients differ: the update is then not
        ``lr`` times a gradient, and its error depends on the learning rate.

    Returns
    -------
    (fn, params)
        ``fn.loss`` is ``loss`` itself on copies.
    """
    if not callable(step):
        raise TypeError(f"step must be callable as step(params, X, y, lr), got {type(step).__name__}")
    if not callable(loss):
        raise TypeError(f"loss must be callable as loss(params, X, y), got {type(loss).__name__}")
    if not isinstance(params, Mapping) or not params:
        raise TypeError(f"params must be a non-empty dict of str -> array, got {type(params).__name__}")
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r}: expected a finite number > 0")
    dt = float_dtype(dtype)
    start = {n: numpy_leaf(n, v, dt, "params") for n, v in params.items()}
    names = list(start)

    def implied(p, X, y, rate):
        work = {n: np.array(p[n], copy=True) for n in names}
        step(work, X, y, rate)
        missing = [n for n in names if n not in work]
        if missing:
            raise KeyError(f"step removed {missing} from the params dict")
        grads = {}
        for n in names:
            new = np.asarray(work[n])
            if new.shape != np.shape(p[n]):
                raise ValueError(f"step changed the shape of params[{n!r}] from {np.shape(p[n])} to {new.shape} "
                                 "(an update that broadcasts, e.g. a bias (1, k) += a (n, k) array?)")
            grads[n] = (np.asarray(p[n]) - new) / rate
        return grads

    def grad_fn(p, X, y):
        grads = implied(p, X, y, lr)
        if probe_linearity:
            _warn_if_nonlinear(grads, implied(p, X, y, lr * LINEARITY_PROBE), lr)
        return np.asarray(loss({n: np.array(p[n], copy=True) for n in names}, X, y)).copy(), grads

    def loss_only(p, X, y):
        return np.asarray(loss({n: np.array(p[n], copy=True) for n in names}, X, y)).copy()

    return AdaptedFn(grad_fn, loss_only, names, "update step", getattr(step, "__name__", "")), start


__all__ = ["as_fn", "from_update_step", "LOSSES", "GRAD_NAMES", "UPDATE_LR", "LINEARITY_PROBE"]
