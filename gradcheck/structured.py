"""Structure-aware finite differences for networks described by a :class:`~gradcheck.spec.NetworkSpec`.

A black-box check pays one full forward pass per perturbed element. When the network's structure
is known, almost all of that work is shared: perturbing ``W_i[j, k]`` by ``d`` changes only column
``k`` of layer ``i``'s pre-activation, by ``d * a_{i-1}[:, j]``; with an elementwise activation only
column ``k`` of ``a_i`` changes, so layer ``i+1``'s pre-activation moves by a rank-1 term, and only
the layers after that need a full (batched) recomputation. :class:`StructuredLoss` evaluates the
loss at many perturbed parameter vectors at once, stacked along a leading axis, in chunks bounded
by ``max_bytes``; it plugs into :func:`gradcheck.numerical.estimate` (which then gets every
scheme's formula and error bound unchanged) and so into ``check(..., oracle="structured")``.
Specs with other layer kinds (conv, pooling, batch/layer norm, dropout, flatten) are evaluated by
:class:`gradcheck.structured_layers.LayeredLoss`: :func:`validate`, :func:`oracle_loss` and
:func:`gradient` dispatch them there; dense specs take this module's path.

What guards it. This is a finite-difference oracle: it computes loss *values* only, never a
derivative. The activation values are the reference registry's own forward functions
(``gradcheck_reference.activations``, ``Activation.f``), so a new activation is added in one
place (the registry; the SymPy oracle keeps its own independent definition, enforced by
``tests/test_registry_coverage.py``). The loss values are the registry's ``Loss.value``, with a
batched form per loss (:data:`BATCHED_LOSS_VALUES`, the same formulas evaluated over a leading
axis of stacked passes, for speed; a loss without one falls back to the registry's value, pass
by pass). Sharing *values* with the reference is safe: the independence that matters is that no
oracle shares derivative code with what it checks, and the derivatives here come from
differences of values alone. What makes those values trustworthy for a given ``fn`` is the
run-time check :func:`oracle_loss`: the spec's loss at the base point must reproduce ``fn``'s
own loss to rounding, else :class:`SpecMismatch` is raised and the check fails saying the spec
does not describe ``fn``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradcheck.numerical import Estimate, estimate, machine_eps
from gradcheck_reference.activations import ACTIVATIONS
from gradcheck_reference.losses import LOSSES

Array = np.ndarray

#: default memory budget of one chunk of perturbed forward passes (bytes)
MAX_BYTES = 32 * 2**20
#: working set aimed at per chunk (never above ``max_bytes``): cache-sized chunks are the fastest
CHUNK_BYTES = 4 * 2**20
#: arrays of one pass's size alive at once in the batched evaluation (its chunk sizing)
TEMPORARIES = 4
#: the structured loss must match fn's loss to this many ulps of the loss's magnitude
MATCH_ULPS = 1024


class SpecMismatch(Exception):
    """The spec's network does not compute the loss of the function under test."""


# -- batched loss values: out (..., batch, outputs) -> (...) ---------------------------------------
# The registry's Loss.value reduces a whole (batch, outputs) array to one number; the estimate
# needs one value per stacked pass, so these are the same formulas reduced over the last two axes
# only (tests/test_structured.py checks them against the registry for every loss).
def _per_sample_mean(terms: Array) -> Array:
    """Sum over the outputs, mean over the batch (the registry's reduction). One reduction over
    the flattened (batch, outputs) block: summing a short last axis first is ~10x slower."""
    return terms.reshape(terms.shape[:-2] + (-1,)).sum(axis=-1) / terms.shape[-2]


def _log_softmax(z: Array) -> Array:
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def _targets(y: Array, out: Array) -> Array:
    """One-hot rows from class indices ``(batch,)``/``(batch, 1)``; one-hot rows pass through."""
    y = np.asarray(y)
    k = out.shape[-1]
    if y.shape == out.shape[-2:]:
        return y.astype(out.dtype)
    idx = y.reshape(-1).astype(np.int64)
    if idx.shape[0] != out.shape[-2]:
        raise SpecMismatch(f"y has shape {y.shape}; the spec's network outputs {out.shape[-2:]}")
    return np.eye(k, dtype=out.dtype)[idx]


def _eps(a: Array) -> float:
    return machine_eps(a.dtype)


def _xlogx(y: Array) -> Array:
    return np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0)


#: loss name -> batched value ``(out (..., batch, k), y) -> (...)``; optional per loss (speed only)
BATCHED_LOSS_VALUES: dict[str, Callable[[Array, Array], Array]] = {
    "mse": lambda o, y: _per_sample_mean((o - y) ** 2),
    "mae": lambda o, y: _per_sample_mean(np.abs(o - y)),
    "huber": lambda o, y: _per_sample_mean(np.where(np.abs(o - y) <= 1, 0.5 * (o - y) ** 2, np.abs(o - y) - 0.5)),
    "log_cosh": lambda o, y: _per_sample_mean(np.abs(o - y) + np.log1p(np.exp(-2 * np.abs(o - y))) - math.log(2)),
    "bce": lambda p, y: _per_sample_mean(
        -(y * np.log(np.clip(p, _eps(p), 1 - _eps(p))) + (1 - y) * np.log1p(-np.clip(p, _eps(p), 1 - _eps(p))))),
    "bce_with_logits": lambda z, y: _per_sample_mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))),
    "softmax_cross_entropy": lambda z, y: _per_sample_mean(-_targets(y, z) * _log_softmax(z)),
    "categorical_cross_entropy": lambda p, y: _per_sample_mean(-_targets(y, p) * np.log(np.maximum(p, _eps(p)))),
    "kl_div": lambda z, y: _per_sample_mean(_xlogx(y) - y * _log_softmax(z)),
    "hinge": lambda o, y: _per_sample_mean(np.maximum(0, 1 - y * o)),
    "squared_hinge": lambda o, y: _per_sample_mean(np.maximum(0, 1 - y * o) ** 2),
    "poisson_nll": lambda z, y: _per_sample_mean(np.exp(z) - y * z),
    "half_sse": lambda o, y: 0.5 * ((y - o) ** 2).reshape(o.shape[:-2] + (-1,)).sum(axis=-1),
}


def _per_pass(value: Callable[[Array, Array], float]) -> Callable[[Array, Array], Array]:
    """A registry ``Loss.value`` (one batch -> one float) applied to each stacked pass."""
    def batched(out: Array, y: Array) -> Array:
        if out.ndim == 2:
            return np.asarray(value(out, y))
        passes = out.reshape((-1,) + out.shape[-2:])
        return np.array([value(o, y) for o in passes]).reshape(out.shape[:-2])
    return batched


def loss_value_function(name: str) -> Callable[[Array, Array], Array]:
    """The batched value of registry loss ``name``: its :data:`BATCHED_LOSS_VALUES` form, else the
    registry's ``Loss.value`` pass by pass (slower, same values)."""
    if name not in LOSSES:
        raise ValueError(f"spec.loss={name!r}: the structured oracle knows the registry's losses "
                         f"{sorted(LOSSES)}")
    return BATCHED_LOSS_VALUES.get(name) or _per_pass(LOSSES[name].value)


# -- the structured loss ----------------------------------------------------------------------------
class StructuredLoss:
    """``loss(params) -> float`` for the network of ``spec`` on the batch ``(X, y)``, and
    :meth:`evaluate_points`, the batched evaluation that :func:`gradcheck.numerical.estimate` uses.

    ``offset`` is added to every value (see :func:`oracle_loss`: it makes the value at the base
    point equal fn's loss exactly, so one-sided differences and the noise probe, which start from
    fn's loss, stay consistent). ``max_bytes`` bounds the memory of one chunk.
    """

    def __init__(self, spec: Any, X: Any, y: Any, *, offset: float = 0.0, max_bytes: int = MAX_BYTES) -> None:
        for i, layer in enumerate(spec.layers):
            if layer.activation not in ACTIVATIONS:
                raise ValueError(f"spec.layers[{i}].activation={layer.activation!r}: the structured oracle "
                                 f"knows the registry's activations {sorted(ACTIVATIONS)}")
        self.loss_value = loss_value_function(spec.loss)
        if not (isinstance(max_bytes, int) and max_bytes > 0):
            raise ValueError(f"max_bytes={max_bytes!r}: expected a positive integer")
        self.spec = spec
        self.X = np.asarray(X)
        if self.X.ndim == 1:
            self.X = self.X.reshape(1, -1)
        if self.X.ndim != 2 or self.X.shape[1] != spec.input_dim:
            raise SpecMismatch(f"X has shape {np.shape(X)}; the spec's network takes {spec.input_dim} inputs "
                               "per sample")
        self.y = np.asarray(y)
        self.offset = float(offset)
        self.max_bytes = max_bytes
        # forward values only (Activation.f: vectorized over any leading axes; softmax row-wise)
        self.acts = [ACTIVATIONS[layer.activation].f for layer in spec.layers]
        self.rowwise = [not ACTIVATIONS[layer.activation].elementwise for layer in spec.layers]
        self.skips_into: dict[int, list[int]] = {}
        self.skips_from: dict[int, list[int]] = {}
        for s, t in spec.skips:
            self.skips_into.setdefault(t, []).append(s)
            self.skips_from.setdefault(s, []).append(t)
        self.shapes = {k: tuple(v) for k, v in spec.param_shapes().items()}

    # -- plain evaluation ---------------------------------------------------------------------
    def _dtype(self, params: Mapping[str, Array]) -> np.dtype:
        return np.result_type(*params.values())

    def _y(self, dt: np.dtype) -> Array:
        return self.y.astype(dt) if self.y.dtype.kind == "f" else self.y

    def forward(self, params: Mapping[str, Array]) -> tuple[list[Array], list[Array]]:
        """Pre-activations ``[z_1..z_L]`` and outputs ``[a_0=X, a_1..a_L]`` at ``params``."""
        dt = self._dtype(params)
        a = [self.X.astype(dt)]
        zs = []
        for i in range(1, len(self.acts) + 1):
            z = a[-1] @ params[f"W{i}"]
            if f"b{i}" in params:
                z = z + params[f"b{i}"]
            for s in self.skips_into.get(i, ()):
                z = z + a[s]
            zs.append(z)
            a.append(self.acts[i - 1](z))
        return zs, a

    def value(self, params: Mapping[str, Array]) -> float:
        """The spec's loss at ``params`` (without the offset)."""
        with np.errstate(all="ignore"):
            _, a = self.forward(params)
            return float(self.loss_value(a[-1], self._y(a[-1].dtype)))

    def __call__(self, params: Mapping[str, Array]) -> float:
        return self.value(params) + self.offset

    # -- batched evaluation -------------------------------------------------------------------
    def row_bytes(self, layer: int, itemsize: int) -> int:
        """Working set of one perturbed pass of a parameter of layer ``layer`` (bytes): sized by what
        the perturbation changes. With an elementwise activation a pass carries one column of layer
        ``layer`` (``batch`` values) until the next matrix product mixes it; a row-wise activation
        (softmax) or the output layer carries the whole layer; every later layer is recomputed
        whole. :data:`TEMPORARIES` arrays of that size are alive at once (activation, difference,
        the loss's temporaries)."""
        widths = self.spec.widths
        whole = self.rowwise[layer - 1] or layer == len(self.acts)
        carried = widths[layer] if whole else 1
        return TEMPORARIES * self.X.shape[0] * (carried + sum(widths[layer + 1:])) * itemsize

    def chunk_rows(self, layer: int, itemsize: int, points: int) -> int:
        """Elements per chunk: the working set of ``points`` passes per element aims at
        :data:`CHUNK_BYTES` (cache-sized chunks are the fastest) and never exceeds ``max_bytes``."""
        budget = min(self.max_bytes, CHUNK_BYTES)
        return max(1, budget // (self.row_bytes(layer, itemsize) * points))

    def evaluate_points(self, work: Mapping[str, Array], name: str, points: list[Array]) -> Array:
        """The loss with element ``e`` of ``work[name]`` replaced by ``points[j][e]``, for every
        element ``e`` and point ``j``: an array ``(size, len(points))`` (``work`` is not modified)."""
        if name not in self.shapes:
            raise KeyError(f"{name!r} is not a parameter of the spec's network ({', '.join(self.shapes)})")
        kind, layer = name[0], int(name[1:])
        dt = self._dtype(work)
        x = work[name].reshape(-1).astype(dt, copy=False)
        n, m = x.size, len(points)
        with np.errstate(all="ignore"):
            zs, a = self.forward(work)
        y = self._y(dt)
        batch = self.X.shape[0]
        width = self.spec.widths[layer]
        # the perturbed layer's columns as contiguous rows, gathered per chunk
        cols = (np.ascontiguousarray(zs[layer - 1].T), np.ascontiguousarray(a[layer].T))
        chunk = min(n, self.chunk_rows(layer, np.dtype(dt).itemsize, m))
        out = np.empty((n, m))
        # reused across chunks: the perturbations (element-major, then point) and their columns
        d_buf = np.empty((chunk, m), dt)
        src_t = np.ascontiguousarray(a[layer - 1].T) if kind == "W" else None   # a_{i-1}[:, j] rows
        ones = np.ones((1, batch), dt)
        with np.errstate(all="ignore"):
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                c = stop - start
                d = d_buf[:c]
                for j, p in enumerate(points):
                    np.subtract(np.asarray(p).reshape(-1)[start:stop].astype(dt, copy=False), x[start:stop], out=d[:, j])
                e = np.arange(start, stop)
                k = np.repeat(e % width, m)            # the column k of each row
                dflat = d.reshape(-1)
                if src_t is not None:
                    dz = dflat[:, None] * src_t[np.repeat(e // width, m)]
                else:
                    dz = dflat[:, None] * ones
                values = self._propagate(work, zs, a, layer, k, dz, y, cols)
                out[start:stop] = values.reshape(c, m)
        return out + self.offset

    def _propagate(self, params, zs, a, layer: int, k: Array, dz_col: Array, y: Array,
                   cols: tuple[Array, Array]) -> Array:
        """Loss values of ``R`` perturbed passes: row ``r`` adds ``dz_col[r]`` (shape (batch,)) to
        column ``k[r]`` of layer ``layer``'s pre-activation; everything before is shared. ``cols``:
        ``zs[layer - 1].T`` and ``a[layer].T``, contiguous."""
        L = len(self.acts)
        R = k.size
        rows = np.arange(R)
        z_col = cols[0][k]
        z_col += dz_col                                # (R, batch)
        pending: dict[int, Array] = {}                 # layer -> change of its pre-activation (R, B, w)

        def add(t: int, change: Array) -> None:
            pending[t] = change if t not in pending else pending[t] + change

        if self.rowwise[layer - 1] or layer == L:
            z_full = np.repeat(zs[layer - 1][None], R, axis=0)
            z_full[rows, :, k] = z_col
            if layer == L:
                return self.loss_value(self.acts[L - 1](z_full), y)
            da = self.acts[layer - 1](z_full) - a[layer]
            self._fan_out(params, layer, da, add)
        else:
            da_col = self.acts[layer - 1](z_col)
            da_col -= cols[1][k]                       # only column k of a_i moves
            add(layer + 1, da_col[:, :, None] * params[f"W{layer + 1}"][k][:, None, :])
            for t in self.skips_from.get(layer, ()):
                change = np.zeros((R,) + zs[t - 1].shape, z_col.dtype)
                change[rows, :, k] = da_col
                add(t, change)
        for t in range(layer + 1, L + 1):
            z_new = zs[t - 1] + pending.pop(t)         # pending entries may be shared (skips): no +=
            a_new = self.acts[t - 1](z_new)
            if t == L:
                return self.loss_value(a_new, y)
            a_new -= a[t]
            self._fan_out(params, t, a_new, add)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fan_out(self, params, t: int, da: Array, add) -> None:
        """Send the change ``da`` (R, B, w_t) of layer ``t``'s output to the layers it feeds."""
        R, B, w = da.shape
        W = params[f"W{t + 1}"]
        add(t + 1, (da.reshape(R * B, w) @ W).reshape(R, B, W.shape[1]))
        for u in self.skips_from.get(t, ()):
            add(u, da)


def _check_params(spec: Any, params: Mapping[str, Array]) -> None:
    shapes = spec.param_shapes()
    if set(params) != set(shapes):
        raise ValueError(f"spec does not fit params: the spec's network has parameters "
                         f"{', '.join(f'{k}{list(s)}' for k, s in shapes.items())}; params has "
                         f"{', '.join(f'{k}{list(np.shape(v))}' for k, v in params.items())}")
    for key, shape in shapes.items():
        if tuple(np.shape(params[key])) != tuple(shape):
            raise ValueError(f"spec does not fit params: params[{key!r}] has shape {list(np.shape(params[key]))}, "
                             f"the spec's network needs {list(shape)}")


def validate(spec: Any, params: Mapping[str, Array], scheme: str = "central") -> None:
    """Misuse of ``oracle="structured"`` raises here, before fn is called: no spec, a spec that
    does not fit ``params``, names without a value function, or the complex step."""
    if spec is None:
        raise ValueError("oracle='structured' needs spec=NetworkSpec(...) describing fn's network")
    if not hasattr(spec, "param_shapes") or not hasattr(spec, "layers"):
        raise TypeError(f"spec must be a gradcheck.NetworkSpec for oracle='structured', got {type(spec).__name__}")
    dense = getattr(spec, "is_dense", True)
    if not dense:  # layered specs: gradcheck.structured_layers (raises naming unsupported kinds)
        from gradcheck import structured_layers  # noqa: PLC0415 - imports this module
        structured_layers.validate(spec)
    if scheme == "complex":
        raise ValueError("scheme='complex' is not available with oracle='structured' (the spec's network is "
                         "evaluated in real arithmetic); use 'auto', 'central', 'central4', 'richardson' or 'forward'")
    _check_params(spec, params)
    if dense:
        StructuredLoss(spec, np.zeros((1, spec.input_dim)), np.zeros((1, spec.output_dim)))  # known names


def _loss_class(spec: Any) -> Any:
    """:class:`StructuredLoss` for dense specs; layered specs (conv, pooling, normalization...)
    go to :class:`gradcheck.structured_layers.LayeredLoss`."""
    if getattr(spec, "is_dense", True):
        return StructuredLoss
    from gradcheck import structured_layers  # noqa: PLC0415 - imports this module
    return structured_layers.LayeredLoss


def oracle_loss(spec: Any, params: Mapping[str, Array], X: Any, y: Any, *, expected: float,
                max_bytes: int = MAX_BYTES) -> StructuredLoss:
    """The structured loss of ``spec`` at ``(X, y)``, checked against fn's loss ``expected``.

    Raises ``ValueError`` if ``spec`` does not fit ``params`` (names, shapes) or names an
    activation or loss this module has no value for, and :class:`SpecMismatch` if its loss at
    ``params`` differs from ``expected`` by more than rounding (``MATCH_ULPS`` ulps of the
    magnitude of the loss, its outputs and targets): then it is not fn's network.
    """
    _check_params(spec, params)
    oracle = _loss_class(spec)(spec, X, y, max_bytes=max_bytes)
    with np.errstate(all="ignore"):
        _, a = oracle.forward(params)
        out = a[-1]
        value = float(oracle.loss_value(out, oracle._y(out.dtype)))
    target = oracle.y.astype(np.float64) if oracle.y.dtype.kind in "fiub" else np.zeros(1)
    magnitude = abs(expected) + float(np.abs(out).sum() + np.abs(target).sum()) / out.shape[0]
    eps = float(np.finfo(out.dtype).eps)
    if not math.isfinite(value) or abs(value - expected) > MATCH_ULPS * eps * magnitude:
        raise SpecMismatch(
            f"spec does not describe fn: the network {spec.label()} gives loss {value:.12g} at these "
            f"params, fn gives {expected:.12g} (difference {abs(value - expected):.3g}, beyond rounding "
            f"{MATCH_ULPS * eps * magnitude:.3g}); check the activations, loss, biases and skips of the spec")
    oracle.offset = expected - value
    return oracle


def gradient(spec: Any, params: Mapping[str, Array], X: Any, y: Any, *, scheme: str = "central",
             max_bytes: int = MAX_BYTES) -> Estimate:
    """Numerical gradient of the spec's loss w.r.t. every parameter, with per-element error bounds.

    The same estimate (steps, formulas, error model) as :func:`gradcheck.numerical.estimate` of the
    plain loss, computed with batched structure-aware passes. ``scheme``: ``forward``, ``central``,
    ``central4`` or ``richardson`` (the complex step needs a black box that accepts complex input).
    """
    if scheme == "complex":
        raise ValueError("scheme='complex' is not available in the structured oracle; use central, "
                         "central4, richardson or forward")
    _check_params(spec, params)
    oracle = _loss_class(spec)(spec, X, y, max_bytes=max_bytes)
    return estimate(oracle, params, scheme=scheme)
