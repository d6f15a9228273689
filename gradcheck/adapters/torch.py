"""PyTorch adapter: an ``nn.Module`` (or a function of tensors) -> ``fn(params, X, y) -> (loss, grads)``.

Each call runs the model through ``torch.func.functional_call`` on fresh leaf tensors built from
``params`` and takes ``torch.autograd.grad`` of the loss: the forward pass and every backward
formula (including custom ``torch.autograd.Function.backward`` code) run exactly as in training,
while the model's own parameters, buffers and ``.grad`` fields are never written. Float64 by
default, so the check resolves errors far below float32 rounding.

>>> fn, params = as_fn(model, torch.nn.MSELoss())           # doctest: +SKIP
>>> gradcheck.check(fn, params, X, y, loss_fn=fn.loss)      # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcheck.adapters._common import AdaptedFn, float_dtype, numpy_leaf, reject_complex, require

Array = np.ndarray


def _torch():
    return require("torch", "torch")


def _torch_dtype(torch, dt: np.dtype):
    return {np.dtype("float64"): torch.float64, np.dtype("float32"): torch.float32,
            np.dtype("float16"): torch.float16}[np.dtype(dt)]


def _numpy_dtype(tdtype) -> np.dtype:
    return np.dtype(str(tdtype).replace("torch.", ""))


def _tensor(torch, value: Any, dtype) -> Any:
    """numpy -> tensor (floating arrays in ``dtype``); tensors and other objects pass through;
    a tuple or list of arrays (several model inputs) is converted element by element."""
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, np.ndarray) for v in value):
        return type(value)(_tensor(torch, v, dtype) for v in value)
    if isinstance(value, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(value))
        return t.to(dtype) if t.is_floating_point() and dtype is not None else t
    return value


def _to_numpy(t, tdtype, name: str) -> Array:
    t = t.detach().cpu()
    if tdtype is not None:
        t = t.to(tdtype)
    try:
        return t.numpy()
    except TypeError:
        raise ValueError(f"parameter {name!r} has dtype {t.dtype}, which numpy cannot hold; check it with "
                         "dtype='float64' or dtype='float32'") from None


def _scalar_loss(torch, loss: Any, where: str):
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"{where} must return a scalar tensor, got {type(loss).__name__}")
    return loss


def _leaves(torch, params: Mapping[str, Array], names, dtypes: Mapping[str, np.dtype], grad: bool = True) -> dict:
    """Fresh leaf tensors on private copies of ``params`` in the numpy ``dtypes`` (model code that
    writes into its parameters cannot reach the caller's arrays)."""
    reject_complex(params, "torch")
    out = {}
    for n in names:
        t = torch.from_numpy(np.array(params[n], dtype=dtypes[n], copy=True))
        out[n] = t.requires_grad_() if grad else t
    return out


def _grads(torch, loss, leaves: dict) -> dict[str, Array]:
    got = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return {n: (np.zeros(tuple(t.shape), _numpy_dtype(t.dtype)) if g is None else g.detach().cpu().numpy().copy())
            for (n, t), g in zip(leaves.items(), got)}


def _result(torch, loss, leaves: dict) -> tuple[Any, dict[str, Array]]:
    value = loss.detach().cpu().numpy().copy()
    if loss.numel() != 1:  # let the checker explain the per-sample vector (it never reduces it)
        return value, {}
    return value, _grads(torch, loss, leaves)


class _Seeded:
    """Fix torch's RNG inside one call (dropout masks) without touching the caller's RNG state."""

    def __init__(self, torch, seed: int | None):
        self.torch, self.seed, self.ctx = torch, seed, None

    def __enter__(self):
        if self.seed is not None:
            self.ctx = self.torch.random.fork_rng(devices=[])
            self.ctx.__enter__()
            self.torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        if self.ctx is not None:
            return self.ctx.__exit__(*exc)
        return False


def as_fn(model: Any, loss_fn: Callable[[Any, Any], Any], *, dtype: Any = "float64",
          seed: int | None = None) -> tuple[AdaptedFn, dict[str, Array]]:
    """Wrap ``model`` (an ``nn.Module``) and ``loss_fn(output, y) -> scalar tensor``.

    Parameters
    ----------
    model : torch.nn.Module
        Its ``named_parameters()`` with ``requires_grad`` are the checked parameters; frozen ones
        and floating buffers are used as (converted) constants.
    loss_fn : callable
        ``loss_fn(model(X), y) -> scalar tensor``, e.g. ``torch.nn.MSELoss()``.
    dtype : str, torch or numpy dtype, or None
        ``"float64"`` (default: parameters, floating buffers, ``X`` and ``y`` are computed in
        float64) or ``None`` to check in the model's own dtypes, or another floating dtype.
    seed : int, optional
        If given, ``torch.manual_seed(seed)`` inside every call (in a forked RNG state) so that a
        model in training mode with dropout is deterministic; else the model's mode is used as it
        is (call ``model.eval()`` first if it has dropout).

    Returns
    -------
    (fn, params)
        ``params`` maps each name to a numpy copy. ``X`` may be a tuple of arrays for a
        ``forward`` with several inputs. The model's parameters, buffers, ``.grad`` and mode are
        left as they were.
    """
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__} "
                        "(for a function of tensors use gradcheck.adapters.torch.from_function)")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(output, y), got {type(loss_fn).__name__}")
    dt = float_dtype(dtype)
    named = dict(model.named_parameters())
    checked = [n for n, p in named.items() if p.requires_grad]
    if not checked:
        raise ValueError("model has no parameters with requires_grad=True: nothing to check")
    tdt = _torch_dtype(torch, dt) if dt is not None else None
    params = {n: numpy_leaf(n, _to_numpy(named[n], tdt, n), dt, "model parameter") for n in checked}
    dtypes = {n: params[n].dtype for n in checked}

    def constants() -> dict:
        """Frozen parameters and buffers: fresh converted copies (in-place updates such as
        BatchNorm's running statistics stay inside the call)."""
        out = {}
        for n, p in named.items():
            if n not in dtypes:
                out[n] = p.detach().clone().to(tdt) if tdt is not None and p.is_floating_point() else p.detach().clone()
        for n, b in model.named_buffers():
            out[n] = b.detach().clone().to(tdt) if tdt is not None and b.is_floating_point() else b.detach().clone()
        return out

    data_dtype = tdt or named[checked[0]].dtype

    def forward(leaves: dict, X: Any):
        inputs = _tensor(torch, X, data_dtype)
        args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        return torch.func.functional_call(model, {**constants(), **leaves}, args)

    def grad_fn(p, X, y):
        with _Seeded(torch, seed), torch.enable_grad():
            leaves = _leaves(torch, p, checked, dtypes)
            loss = _scalar_loss(torch, loss_fn(forward(leaves, X), _tensor(torch, y, data_dtype)), "loss_fn")
            return _result(torch, loss, leaves)

    def loss_only(p, X, y):
        with _Seeded(torch, seed), torch.no_grad():
            leaves = _leaves(torch, p, checked, dtypes, grad=False)
            loss = _scalar_loss(torch, loss_fn(forward(leaves, X), _tensor(torch, y, data_dtype)), "loss_fn")
            return loss.cpu().numpy().copy()

    return AdaptedFn(grad_fn, loss_only, checked, "torch", type(model).__name__), params


def from_function(loss_fn: Callable[[dict, Any, Any], Any], params: Mapping[str, Any], *,
                  dtype: Any = "float64", seed: int | None = None) -> tuple[AdaptedFn, dict[str, Array]]:
    """Wrap a plain function of tensors: ``loss_fn(params, X, y) -> scalar tensor``, where
    ``params`` is a dict of tensors (built fresh, ``requires_grad=True``, in ``dtype``) and
    ``X``, ``y`` are tensors converted from numpy (floating ones in ``dtype``).

    ``params`` here gives the names and starting values (tensors or arrays); returns ``(fn, params)``
    with numpy copies. Custom ``autograd.Function``s inside ``loss_fn`` are checked like any code.
    """
    torch = _torch()
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(params, X, y), got {type(loss_fn).__name__}")
    if not isinstance(params, Mapping) or not params:
        raise TypeError(f"params must be a non-empty dict of str -> tensor or array, got {type(params).__name__}")
    dt = float_dtype(dtype)
    start = {}
    for n, v in params.items():
        if not isinstance(n, str):
            raise TypeError(f"params keys must be str, got {n!r}")
        start[n] = numpy_leaf(n, v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v, dt, "params")
    names = list(start)
    dtypes = {n: start[n].dtype for n in names}
    data_dtype = _torch_dtype(torch, dt if dt is not None else start[names[0]].dtype)

    def call(p, X, y, grad: bool):
        with _Seeded(torch, seed), torch.set_grad_enabled(grad):
            leaves = _leaves(torch, p, names, dtypes, grad)
            loss = _scalar_loss(torch, loss_fn(leaves, _tensor(torch, X, data_dtype), _tensor(torch, y, data_dtype)),
                                "loss_fn")
            return _result(torch, loss, leaves) if grad else loss.cpu().numpy().copy()

    fn = AdaptedFn(lambda p, X, y: call(p, X, y, True), lambda p, X, y: call(p, X, y, False), names, "torch",
                   getattr(loss_fn, "__name__", ""))
    return fn, start


__all__ = ["as_fn", "from_function"]
