"""PyTorch adapter: an ``nn.Module`` (or a function of tensors) -> ``fn(params, X, y) -> (loss, grads)``.

Each call runs the model through ``torch.func.functional_call`` on fresh leaf tensors built from
``params`` and takes ``torch.autograd.grad`` of the loss: the forward pass and every backward
formula (including custom ``torch.autograd.Function.backward`` code) run exactly as in training,
while the model's own parameters, buffers and ``.grad`` fields are never written. Float64 by
default, so the check resolves errors far below float32 rounding.

>>> fn, params = as_fn(model, torch.nn.MSELoss())           # doctest: +SKIP
>>> gradcheck.check(fn, params, X, y, loss_fn=fn.loss)      # doctest: +SKIP

One function or layer on its own (a custom ``autograd.Function``, ``F.conv2d``) is checked as an
operator, every output against every input that requires grad, by :func:`check_function`
(``gradgrad=True`` adds its double backward) and, in forward mode, :func:`check_function_jvp`.

>>> check_function(MyFunction.apply, x, weight, gradgrad=True)   # doctest: +SKIP
"""
from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradcheck import operators
from gradcheck.adapters._common import (
    AdaptedFn,
    combine_orders,
    float_dtype,
    numpy_leaf,
    reject_complex,
    require,
    second_order_result,
    tell_observers,
    unique_name,
    unobserved,
    widened,
)
from gradcheck.result import Problem, Result

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

    def forward(leaves: dict, X: Any, wide: bool):
        inputs = _tensor(torch, X, torch.float64 if wide else data_dtype)
        args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        fixed = constants()
        if wide:
            fixed = {n: v.to(torch.float64) if v.is_floating_point() else v for n, v in fixed.items()}
        return torch.func.functional_call(model, {**fixed, **leaves}, args)

    wide_dtypes = dict.fromkeys(checked, np.dtype(np.float64))

    def call(p, X, y, grad: bool):
        wide = widened(p, checked, dtypes)
        with _Seeded(torch, seed), torch.set_grad_enabled(grad):
            leaves = _leaves(torch, p, checked, wide_dtypes if wide else dtypes, grad)
            target = _tensor(torch, y, torch.float64 if wide else data_dtype)
            loss = _scalar_loss(torch, loss_fn(forward(leaves, X, wide), target), "loss_fn")
            return _result(torch, loss, leaves) if grad else loss.cpu().numpy().copy()

    return (AdaptedFn(lambda p, X, y: call(p, X, y, True), lambda p, X, y: call(p, X, y, False), checked, "torch",
                      type(model).__name__), params)


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
    wide_dtypes = dict.fromkeys(names, np.dtype(np.float64))
    data_dtype = _torch_dtype(torch, dt if dt is not None else start[names[0]].dtype)

    def call(p, X, y, grad: bool):
        wide = widened(p, names, dtypes)  # the checker's float64 second opinion: all in float64
        ddt = torch.float64 if wide else data_dtype
        with _Seeded(torch, seed), torch.set_grad_enabled(grad):
            leaves = _leaves(torch, p, names, wide_dtypes if wide else dtypes, grad)
            loss = _scalar_loss(torch, loss_fn(leaves, _tensor(torch, X, ddt), _tensor(torch, y, ddt)), "loss_fn")
            return _result(torch, loss, leaves) if grad else loss.cpu().numpy().copy()

    fn = AdaptedFn(lambda p, X, y: call(p, X, y, True), lambda p, X, y: call(p, X, y, False), names, "torch",
                   getattr(loss_fn, "__name__", ""))
    return fn, start


# -- one function as an operator: check_function, check_function_jvp ---------------------------------
#: the first-order gradient of input ``x`` is the output ``grad_x`` of the double-backward check; the
#: cotangent of output ``out`` is its input ``grad_out``
GRAD_PREFIX = "grad_"
#: torch's words when a gradient has no graph of its own (backward under no_grad, .detach(),
#: @once_differentiable)
_NOT_DIFFERENTIABLE = ("does not require grad", "does not have a grad_fn", "once_differentiable",
                       "differentiate twice")


def _label(fn: Any) -> str:
    """``MyFunction`` for ``MyFunction.apply``; the function's name otherwise."""
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type):
        return owner.__name__
    return str(getattr(fn, "__name__", None) or type(fn).__name__)


def _input_names(torch, fn: Any, n: int) -> list[str]:
    """The positional parameter names of ``fn`` (of ``forward`` for ``MyFunction.apply``, without
    ``ctx``); ``input{i}`` where there is none (``*args``, builtins such as ``F.conv2d``)."""
    target, skip = fn, 0
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        function: Any = owner
        target = function.forward
        # old style forward(ctx, ...); with setup_context overridden, forward(...) has no ctx
        skip = 1 if function.setup_context is torch.autograd.Function.setup_context else 0
    try:
        params = list(inspect.signature(target).parameters.values())[skip:]
    except (TypeError, ValueError):
        params = []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [params[i].name if i < len(params) and params[i].kind in positional else f"input{i}" for i in range(n)]
    return names if len(set(names)) == n else [f"input{i}" for i in range(n)]


class _Call:
    """``fn(*inputs)`` with numpy in and out: tensors are rebuilt from numpy arrays (fresh copies in
    their own dtype and device), every other argument is passed as it was given."""

    def __init__(self, torch, fn: Any, inputs: Sequence[Any]) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable as fn(*inputs), got {type(fn).__name__}")
        self.torch, self.fn, self.label = torch, fn, _label(fn)
        names = _input_names(torch, fn, len(inputs))
        self.slots: list[tuple[bool, Any]] = []   # (is a tensor, its name or the constant itself)
        self.arrays: dict[str, Array] = {}
        self.dtypes: dict[str, np.dtype] = {}
        self.devices: dict[str, Any] = {}
        self.wrt: list[str] = []
        for name, value in zip(names, inputs):
            if not isinstance(value, torch.Tensor):
                self.slots.append((False, value))
                continue
            if value.is_complex():
                raise TypeError(f"input {name!r} is a complex tensor ({value.dtype}): check_function checks real "
                                "inputs only")
            t = value.detach().cpu()
            try:
                a = np.array(t.numpy(), copy=True)
            except TypeError:
                raise ValueError(f"input {name!r} has dtype {value.dtype}, which numpy cannot hold; check it in "
                                 "float32 or float64 (.float() / .double())") from None
            self.slots.append((True, name))
            self.arrays[name], self.dtypes[name], self.devices[name] = a, a.dtype, value.device
            if value.is_floating_point() and value.requires_grad and a.size:
                self.wrt.append(name)
        if not self.wrt:
            raise ValueError("no input is a floating tensor with requires_grad=True: nothing to differentiate "
                             "(call .requires_grad_() on the inputs to check; the others are constants)")

    def tensor(self, value: Any, dtype: np.dtype, device: Any, grad: bool = False) -> Any:
        t = self.torch.from_numpy(np.array(value, dtype=dtype, copy=True))
        t = t.to(device) if str(device) != "cpu" else t
        return t.requires_grad_() if grad else t

    def run(self, values: Mapping[str, Array], grad: Sequence[str] = ()) -> tuple[Any, dict[str, Any]]:
        """``(fn's output, the leaf tensors by name)``; the inputs named in ``grad`` require grad."""
        reject_complex({k: values[k] for k in self.arrays}, "torch")
        leaves = {n: self.tensor(values[n], self.dtypes[n], self.devices[n], n in grad) for n in self.arrays}
        args = [leaves[v] if is_tensor else v for is_tensor, v in self.slots]
        return self.fn(*args), leaves

    def outputs(self, out: Any) -> list[Any]:
        """fn's outputs as a list (one tensor, or a tuple/list of them)."""
        if isinstance(out, self.torch.Tensor):
            return [out]
        if isinstance(out, (tuple, list)):
            return list(out)
        raise TypeError(f"{self.label} must return a tensor or a tuple of tensors, got {type(out).__name__}")

    def numpy(self, t: Any) -> Any:
        if isinstance(t, self.torch.Tensor):
            return t.detach().cpu().numpy().copy()
        return t

    def f(self, values: Mapping[str, Array]) -> Any:
        """The plain forward (under no_grad), outputs as numpy: one array or a tuple."""
        with self.torch.no_grad():
            out, _ = self.run(values)
        arrays = [self.numpy(o) for o in self.outputs(out)]
        return arrays[0] if isinstance(out, self.torch.Tensor) else tuple(arrays)

    def backward(self, values: Mapping[str, Array], cotangents: Sequence[Any], create_graph: bool = False,
                 cot_grad: bool = False) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        """``torch.autograd.grad`` of fn's outputs under ``cotangents`` (one per output, None for
        none): ``(gradient tensors by input, None where unused; the leaves; the cotangent tensors)``."""
        out, leaves = self.run(values, self.wrt)
        outs = self.outputs(out)
        pairs, cots = [], []
        for o, c in zip(outs, cotangents):
            ct = None
            if c is not None and isinstance(o, self.torch.Tensor) and o.is_floating_point():
                ct = self.tensor(c, np.dtype(str(o.dtype).replace("torch.", "")), o.device, cot_grad)
                if o.requires_grad:  # an output without a graph passes no gradient (checked as 0)
                    pairs.append((o, ct))
            cots.append(ct)
        if not pairs:
            return {n: None for n in self.wrt}, leaves, cots
        grads = self.torch.autograd.grad([o for o, _ in pairs], [leaves[n] for n in self.wrt],
                                         grad_outputs=[c for _, c in pairs], allow_unused=True,
                                         create_graph=create_graph)
        return dict(zip(self.wrt, grads)), leaves, cots

    def f_vjp(self, values: Mapping[str, Array], cotangents: Any) -> dict[str, Any]:
        cots = list(cotangents) if isinstance(cotangents, tuple) else [cotangents]
        with self.torch.enable_grad():
            grads, _, _ = self.backward(values, cots)
        return {n: None if g is None else self.numpy(g) for n, g in grads.items()}


def check_function(fn: Callable[..., Any], *inputs: Any, gradgrad: bool = False, nondet_tol: float = 0.0,
                   mode: str = "auto", seed: int = 0, name: str | None = None, **options: Any) -> Result:
    """Check the backward of one tensor function, e.g. a custom ``autograd.Function``, as an operator.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs) -> tensor or tuple of tensors``; ``MyFunction.apply`` for a custom Function.
    *inputs
        Its arguments. Floating tensors with ``requires_grad=True`` are differentiated; the others
        (integer tensors, tensors not requiring grad, non-tensor arguments such as ``stride=2`` or
        ``eps``) are constants. The caller's tensors are only read (copied to numpy once).
    gradgrad : bool
        Also check the double backward: the operator ``(inputs, cotangents) -> first-order grads``
        (``torch.autograd.grad(..., create_graph=True)``) against finite differences of the
        backward, through torch's second backward (as ``torch.autograd.gradgradcheck``). A backward
        that is not differentiable (computed under ``no_grad``, from ``.detach()``-ed tensors, or
        ``@once_differentiable``) fails with a problem of kind ``"not_differentiable"`` saying so.
    nondet_tol, mode, seed, name, **options
        As in :func:`gradcheck.check_vjp` (``cotangents``, ``max_rows``, ``scheme``, ``rtol``,
        ``detect_kinks``).

    Returns
    -------
    Result
        :func:`gradcheck.check_vjp`'s: inputs are named after fn's parameters (``forward``'s for a
        Function; ``input0, input1, ...`` where there are none), outputs ``out`` or ``out0, out1,
        ...``; Jacobian blocks ``dout/dx``. With ``gradgrad`` one result for both orders: its name
        says which order failed (``"<name>, second order (double backward)"``), the second order's
        blocks are ``dgrad_x/dx`` and ``dgrad_x/dgrad_out`` (``grad_out``: the cotangent), and
        ``result.operator["second_order"]`` describes that check.
    """
    torch = _torch()
    if "wrt" in options:
        raise TypeError("check_function differentiates the floating inputs with requires_grad=True: set "
                        "requires_grad=False on the others instead of passing wrt=")
    call = _Call(torch, fn, inputs)
    common = dict(wrt=call.wrt, nondet_tol=nondet_tol, mode=mode, seed=seed, **options)
    if not gradgrad:
        return operators.check_vjp(call.f, call.f_vjp, call.arrays, name=name, **common)
    first = unobserved(operators.check_vjp)(call.f, call.f_vjp, call.arrays, **common)
    base = name if name is not None else call.label
    second = second_order_result(first, lambda: _double_backward(torch, call, seed, common))
    return tell_observers(combine_orders(first, second, base, ("backward", "double backward")))


def _double_backward(torch, call: _Call, seed: int, common: dict) -> Result:
    """The second-order check: ``(inputs, cotangents) -> grads`` and its VJP, torch's second backward."""
    structure = operators.Structure.of(call.f(call.arrays))
    floating = structure.floating()
    grad_names = {n: GRAD_PREFIX + n for n in call.wrt}
    cot_names: dict[int, str] = {}
    for i in floating:
        cot_names[i] = unique_name(GRAD_PREFIX + structure.names[i], [*call.arrays, *cot_names.values()])
    rng = np.random.default_rng(seed)
    inputs = dict(call.arrays)
    for i, c in cot_names.items():
        dtype = structure.dtypes[i] if structure.dtypes[i].kind == "f" else np.dtype(np.float64)
        inputs[c] = rng.standard_normal(structure.shapes[i]).astype(dtype)

    def cotangents(values: Mapping[str, Array]) -> list[Any]:
        return [values[cot_names[i]] if i in cot_names else None for i in range(len(structure.names))]

    def g(values: Mapping[str, Array]) -> dict[str, Array]:
        with torch.enable_grad():
            grads, _, _ = call.backward(values, cotangents(values))
        return {grad_names[n]: (np.zeros(call.arrays[n].shape, call.dtypes[n]) if gr is None else call.numpy(gr))
                for n, gr in grads.items()}

    def g_vjp(values: Mapping[str, Array], v: Mapping[str, Array]) -> dict[str, Any]:
        with torch.enable_grad():
            grads, leaves, cots = call.backward(values, cotangents(values), create_graph=True, cot_grad=True)
            pairs = [(gr, call.tensor(v[grad_names[n]], call.dtypes[n], gr.device)) for n, gr in grads.items()
                     if gr is not None and gr.requires_grad]
            wrt = [leaves[n] for n in call.wrt] + [cots[i] for i in cot_names]
            names = list(call.wrt) + list(cot_names.values())
            if not pairs:
                return {n: None for n in names}
            second = torch.autograd.grad([p for p, _ in pairs], wrt, grad_outputs=[c for _, c in pairs],
                                         allow_unused=True)
        return {n: None if s is None else call.numpy(s) for n, s in zip(names, second)}

    problem = _not_differentiable(torch, call, inputs, cotangents, grad_names, g_vjp, rng)
    if problem is not None:
        return Result(passed=False, max_rel_error=float("inf"), worst_param=problem[0],
                      dtype=str(min((a.dtype for a in call.arrays.values() if a.dtype.kind == "f"),
                                    key=lambda d: d.itemsize, default=np.dtype(np.float64))),
                      problems=[Problem("not_differentiable", problem[1], problem[0])])
    wrt2 = [*call.wrt, *cot_names.values()]
    return unobserved(operators.check_vjp)(g, g_vjp, inputs, **{**common, "wrt": wrt2})


def _not_differentiable(torch, call: _Call, inputs: dict[str, Array], cotangents: Callable, grad_names: dict,
                        g_vjp: Callable, rng: np.random.Generator) -> tuple[str | None, str] | None:
    """``(input, explanation)`` when the first-order gradient has no graph to differentiate: a
    nonzero gradient that does not require grad after ``create_graph=True`` (the backward ran under
    ``no_grad`` or on ``.detach()``-ed tensors: a correct gradient is linear in the cotangent, so it
    cannot be a constant), or torch refusing the second backward; None otherwise (faults of fn are
    the check's to report)."""
    try:
        with torch.enable_grad():
            grads, _, _ = call.backward(inputs, cotangents(inputs), create_graph=True, cot_grad=True)
    except Exception:
        return None
    for n, gr in grads.items():
        if gr is not None and not gr.requires_grad and bool(torch.any(gr != 0)):
            return n, (f"the backward is not differentiable: the gradient of {n!r} does not require grad after "
                       "torch.autograd.grad(..., create_graph=True), so the double backward sees a constant: it "
                       "was computed under torch.no_grad() or from .detach()-ed tensors; compute the backward "
                       "with differentiable torch operations (or make it a Function of its own)")
        if gr is not None and _refuses_double_backward(gr.grad_fn):
            return n, (f"the backward is not differentiable: the gradient of {n!r} comes from a backward marked "
                       "@once_differentiable (torch's double backward raises \"trying to differentiate twice a "
                       "function that was marked with @once_differentiable\"; with allow_unused it silently "
                       "gives no gradient); drop the decorator and compute the backward with differentiable torch "
                       "operations")
    v = {grad_names[n]: rng.standard_normal(call.arrays[n].shape).astype(call.dtypes[n]) for n in call.wrt}
    try:
        g_vjp(inputs, v)
    except RuntimeError as exc:
        if any(words in str(exc) for words in _NOT_DIFFERENTIABLE):
            return None, (f"the backward is not differentiable: torch's double backward raised RuntimeError: "
                          f"{str(exc).splitlines()[0]} (a backward computed under torch.no_grad(), from "
                          ".detach()-ed tensors, or marked @once_differentiable)")
    except Exception:
        return None
    return None


def _refuses_double_backward(node: Any, limit: int = 10_000) -> bool:
    """Whether the graph of a gradient holds torch's ``Error`` node (what ``@once_differentiable``
    leaves where the backward's own backward should be)."""
    seen: set[int] = set()
    todo = [node]
    while todo and len(seen) < limit:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.name() == "torch::autograd::Error":
            return True
        todo.extend(next_node for next_node, _ in node.next_functions)
    return False


def check_function_jvp(fn: Callable[..., Any], *inputs: Any, mode: str = "auto", seed: int = 0,
                       name: str | None = None, **options: Any) -> Result:
    """Check the forward-mode derivative of ``fn`` (``torch.autograd.forward_ad``: a custom
    Function's ``jvp``) with :func:`gradcheck.check_jvp`; inputs, names and constants as in
    :func:`check_function`. A Function without a ``jvp`` raises ``ValueError`` saying so."""
    torch = _torch()
    if "wrt" in options:
        raise TypeError("check_function_jvp differentiates the floating inputs with requires_grad=True: set "
                        "requires_grad=False on the others instead of passing wrt=")
    call = _Call(torch, fn, inputs)
    fwad = torch.autograd.forward_ad
    with warnings.catch_warnings():  # the first make_dual loads torch's jvp decompositions, which
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)  # script them
        with fwad.dual_level():
            fwad.make_dual(torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))

    def f_jvp(values: Mapping[str, Array], tangents: Mapping[str, Array]) -> Any:
        with fwad.dual_level():
            reject_complex({k: values[k] for k in call.arrays}, "torch")
            leaves = {}
            for n in call.arrays:
                t = call.tensor(values[n], call.dtypes[n], call.devices[n])
                leaves[n] = fwad.make_dual(t, call.tensor(tangents[n], call.dtypes[n], call.devices[n])) \
                    if n in tangents else t
            out = call.fn(*[leaves[v] if is_tensor else v for is_tensor, v in call.slots])
            result = []
            for o in call.outputs(out):
                if isinstance(o, torch.Tensor) and o.is_floating_point():
                    tangent = fwad.unpack_dual(o).tangent
                    result.append(np.zeros(tuple(o.shape), call.numpy(o).dtype) if tangent is None
                                  else call.numpy(tangent))
                else:
                    result.append(call.numpy(o))
        return result[0] if isinstance(out, torch.Tensor) else tuple(result)

    try:
        f_jvp(call.arrays, {n: np.zeros_like(call.arrays[n]) for n in call.wrt})
    except (NotImplementedError, RuntimeError) as exc:
        text = str(exc)
        if "jvp" in text or "forward" in text.lower():
            raise ValueError(f"{call.label} has no forward-mode derivative: torch raised {type(exc).__name__}: "
                             f"{text.splitlines()[0]} (check its backward with check_function instead)") from None
    except Exception:
        pass  # a fault of fn: the check reports it
    return operators.check_jvp(call.f, f_jvp, call.arrays, wrt=call.wrt, mode=mode, seed=seed, name=name,
                               **options)


__all__ = ["as_fn", "from_function", "check_function", "check_function_jvp", "GRAD_PREFIX"]
