"""Hypothesis strategies for gradient checks: activations, losses, network specs, inputs, targets
and whole cases (spec + parameters + batch), for the sweep and for users' own property tests.

    >>> from hypothesis import given
    >>> from gradcheck import strategies as gst
    >>> @given(gst.cases(activation="tanh", loss="mse", max_depth=3))   # doctest: +SKIP
    ... def test_my_backprop(case):
    ...     gradcheck.assert_gradients(my_fn(case.spec), case.params, case.X, case.y)

Every strategy validates its arguments when it is called and raises
:class:`hypothesis.errors.InvalidArgument` naming the argument as ``name=value``.

**Shrinking.** Each choice is drawn so that Hypothesis's simplest value is the simplest network:
the first loss and activation of the registries (``mse``, ``identity``), the smallest depth,
input dimension, widths (1, or the loss's ``min_outputs`` for the output layer), batch 1, bias
*on* (the :class:`~gradcheck.spec.Layer` default), no skips, the first dtype and init scheme,
seed 0, weight scale 1 and inputs 0. A failing property therefore shrinks to the smallest failing
network, and ``repr(spec)`` rebuilds it.

**Kinks.** With ``allow_kinks=False`` (the default for :func:`cases`), every pre-activation ``z``
of every layer is at least ``margin`` away from each kink of that layer's activation
(``Activation.kinks``: relu, leaky_relu, selu and elu with ``alpha != 1`` at 0, hard_tanh at
-1 and 1), and the loss is differentiable by the same margin: ``|out - y| >= margin`` for ``mae``,
``|y * out - 1| >= margin`` for ``hinge``, and the probabilities read by ``bce`` and
``categorical_cross_entropy`` are far from their clipping at ``eps`` (output pre-activations within
``|z| <= 6``). This is achieved by construction, layer by layer, see :func:`cases`.

**Two input modes.** ``cases(mode="margin")`` (the default) is the construction above: clean
oracle comparisons. ``cases(mode="realistic")`` is what users' code meets: ordinary
initialization (He, Glorot or LeCun scale for the first layer's activation, :data:`REALISTIC_INIT`;
biases zero or small), inputs like real data (standard normal, with per-feature offsets, or sparse
with exact zeros), no kink avoided (relu, leaky_relu, selu and hard_tanh pre-activations anywhere,
``mae`` and ``hinge`` margins anywhere), float32 as well as float64.

The strategies import :mod:`reference` (the registries and the reference network) lazily, when
they are called, so ``import gradcheck`` stays light.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp
from hypothesis.strategies import SearchStrategy

from gradcheck.spec import DTYPES, INITS, Layer, NetworkSpec

__all__ = ["activations", "losses", "specs", "inputs", "targets", "cases", "Case", "MODES",
           "REALISTIC_INIT", "REALISTIC_INPUTS", "REALISTIC_BIASES", "OUTPUT_ACTIVATION",
           "INPUT_BOUND", "MAIN_CAP", "PROBABILITY_CAP", "Z_MAX", "ALIVE", "layer_specs", "layer_cases",
           "LAYER_KINDS"]

#: the last activation forced by a loss's output kind (any activation may end other losses)
OUTPUT_ACTIVATION = {"probability": "sigmoid", "distribution": "softmax"}
#: inputs X are drawn from [-INPUT_BOUND, INPUT_BOUND]
INPUT_BOUND = 2.0
#: in cases(), a layer's own contribution ``a @ W + b`` is scaled down to at most this in size
MAIN_CAP = 6.0
#: in cases(), output pre-activations feeding bce / categorical_cross_entropy stay within this
PROBABILITY_CAP = 6.0
#: in cases(), every pre-activation satisfies |z| <= Z_MAX (finite, float32-meaningful gradients)
Z_MAX = 20.0
#: in cases(), a relu layer feeding a bias-free layer with kinks keeps every row alive: some
#: pre-activation of each row is at least this (an all-zero row could not be moved off a kink)
ALIVE = 0.25
#: the input modes of :func:`cases`: kink margins by construction (the default), or realistic
MODES = ("margin", "realistic")
#: mode="realistic": the init scheme (``NetworkSpec.init``) users pair with the first layer's
#: activation: He for the relu family, LeCun (``normal``, variance 1/fan_in) for selu; every
#: other activation gets Glorot (``xavier``)
REALISTIC_INIT = {"relu": "he", "leaky_relu": "he", "elu": "he", "silu": "he", "gelu": "he",
                  "gelu_tanh": "he", "mish": "he", "softplus": "he", "selu": "normal"}
#: mode="realistic": how inputs X are drawn (the first is the simplest): standard normal; standard
#: normal scaled by 0.5..2 and shifted by -3..3 per feature; sparse ``max(N(0, 1), 0)`` (about half
#: exact zeros, like post-relu features or bag-of-words counts)
REALISTIC_INPUTS = ("normal", "offset", "sparse")
#: mode="realistic": biases all zero (the Keras default), or small (the spec's init: N(0, 0.1))
REALISTIC_BIASES = ("zero", "small")
#: how far the construction aims beyond ``margin`` (absorbs float32 rounding)
_AIM = 1.05
_SEED_MAX = 2**32 - 1


# -- argument validation ---------------------------------------------------------------------
def _int_arg(name: str, value: Any, low: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise InvalidArgument(f"{name}={value!r} must be an integer")
    if value < low:
        raise InvalidArgument(f"{name}={value!r} must be >= {low}")
    return int(value)


def _bool_arg(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgument(f"{name}={value!r} must be True or False")
    return bool(value)


def _margin_arg(margin: Any) -> float:
    if not isinstance(margin, (int, float, np.floating)) or isinstance(margin, bool):
        raise InvalidArgument(f"margin={margin!r} must be a number")
    if not math.isfinite(margin) or not 0 <= margin <= 0.5:
        raise InvalidArgument(f"margin={margin!r} must be between 0 and 0.5")
    return float(margin)


def _choices_arg(name: str, value: Any, allowed: Collection[str], what: str) -> tuple[str, ...]:
    """A str or a non-empty collection of str, each in ``allowed``, as a tuple without repeats."""
    items = (value,) if isinstance(value, str) else value
    if isinstance(items, SearchStrategy) or not isinstance(items, Collection) or isinstance(items, Mapping):
        raise InvalidArgument(f"{name}={value!r} must be a name or a collection of names of {what}")
    out: list[str] = []
    for v in items:
        if not isinstance(v, str) or v not in allowed:
            raise InvalidArgument(f"{name}={value!r}: {v!r} is not one of the known {what}: "
                                  f"{', '.join(allowed)}")
        if v not in out:
            out.append(v)
    if not out:
        raise InvalidArgument(f"{name}={value!r} must not be empty")
    return tuple(out)


def _registries():
    from gradcheck_reference.activations import ACTIVATIONS  # noqa: PLC0415 - the reference, imported when a strategy is drawn
    from gradcheck_reference.losses import LOSSES  # noqa: PLC0415 - the reference, imported when a strategy is drawn
    return ACTIVATIONS, LOSSES


def _names_strategy(name: str, value: Any, registry: Mapping, what: str) -> SearchStrategy:
    """``activation=`` / ``loss=`` arguments: None (all), a name, names, or a strategy of names."""
    if value is None:
        return st.sampled_from(tuple(registry))
    if isinstance(value, SearchStrategy):
        return value
    return st.sampled_from(_choices_arg(name, value, tuple(registry), what))


def _spec_arg(spec: Any) -> NetworkSpec:
    if not isinstance(spec, NetworkSpec):
        raise InvalidArgument(f"spec={spec!r} must be a NetworkSpec")
    from gradcheck_reference.network import Network  # noqa: PLC0415 - the reference, imported when a strategy is drawn
    try:
        Network(spec)
    except ValueError as e:
        raise InvalidArgument(f"spec={spec!r} cannot be built: {e}") from None
    return spec


# -- activations and losses ------------------------------------------------------------------
def activations(*, include: Any = None, exclude: Any = None, allow_kinks: bool = True) -> SearchStrategy[str]:
    """Names of registered activations (``reference.activations.ACTIVATIONS``), in registry order.

    Parameters
    ----------
    include : name or collection of names, optional
        Only these (default: every registered activation).
    exclude : name or collection of names, optional
        Never these.
    allow_kinks : bool, default True
        False leaves out activations with a non-differentiable point (``Activation.kinks``
        non-empty: relu, leaky_relu, selu, hard_tanh, and elu with ``alpha != 1``).

    Notes
    -----
    Shrinks towards the registry's first entry (``identity``).
    """
    ACTIVATIONS, _ = _registries()
    allow_kinks = _bool_arg("allow_kinks", allow_kinks)
    names = _filter_names(include, exclude, tuple(ACTIVATIONS), "activations")
    if not allow_kinks:
        names = tuple(n for n in names if not ACTIVATIONS[n].kinks)
    if not names:
        raise InvalidArgument(f"include={include!r}, exclude={exclude!r}, allow_kinks={allow_kinks!r} "
                              "leave no activation")
    return st.sampled_from(names)


def losses(*, include: Any = None, exclude: Any = None) -> SearchStrategy[str]:
    """Names of registered losses (``reference.losses.LOSSES``), in registry order.

    ``include`` / ``exclude`` as for :func:`activations`. Shrinks towards ``mse``.
    """
    _, LOSSES = _registries()
    names = _filter_names(include, exclude, tuple(LOSSES), "losses")
    if not names:
        raise InvalidArgument(f"include={include!r}, exclude={exclude!r} leave no loss")
    return st.sampled_from(names)


def _filter_names(include, exclude, known, what) -> tuple[str, ...]:
    names = known if include is None else _choices_arg("include", include, known, what)
    if exclude is not None:
        dropped = set(_choices_arg("exclude", exclude, known, what))
        names = tuple(n for n in names if n not in dropped)
    return tuple(names)


# -- specs -----------------------------------------------------------------------------------
def _min_params(input_dim: int, depth: int, min_out: int, biases=(), widths=()) -> int:
    """Fewest parameters of a depth-``depth`` network with the given prefix of biases and widths
    (later layers: no bias, width 1, the output ``min_out``)."""
    ws = [input_dim] + list(widths) + [1] * (depth - len(widths))
    if len(widths) < depth:
        ws[-1] = min_out
    bs = list(biases) + [False] * (depth - len(biases))
    return sum((ws[i - 1] + bs[i - 1]) * ws[i] for i in range(1, depth + 1))


@dataclass(frozen=True)
class _SpecOptions:
    loss: Any
    activation: Any
    min_depth: int
    max_depth: int
    max_width: int
    max_batch: int
    max_input_dim: int
    dtypes: tuple[str, ...]
    inits: tuple[str, ...]
    allow_skips: bool
    max_params: int | None


def _spec_options(activation, loss, min_depth, max_depth, max_width, max_batch, max_input_dim,
                  dtypes, inits, allow_skips, max_params) -> _SpecOptions:
    ACTIVATIONS, LOSSES = _registries()
    min_depth = _int_arg("min_depth", min_depth, 1)
    max_depth = _int_arg("max_depth", max_depth, 1)
    if min_depth > max_depth:
        raise InvalidArgument(f"min_depth={min_depth!r} must be <= max_depth={max_depth!r}")
    max_width = _int_arg("max_width", max_width, 1)
    max_batch = _int_arg("max_batch", max_batch, 1)
    max_input_dim = _int_arg("max_input_dim", max_input_dim, 1)
    dtypes = _choices_arg("dtypes", dtypes, DTYPES, "dtypes")
    inits = _choices_arg("inits", inits, INITS, "init schemes")
    allow_skips = _bool_arg("allow_skips", allow_skips)
    if max_params is not None:
        max_params = _int_arg("max_params", max_params, 1)

    act: SearchStrategy[Any] | str | tuple[str, ...] | None
    if activation is None or isinstance(activation, SearchStrategy):
        act = activation
    elif isinstance(activation, str):
        act = _choices_arg("activation", activation, tuple(ACTIVATIONS), "activations")[0]
    else:
        act = _choices_arg("activation", activation, tuple(ACTIVATIONS), "activations")

    if isinstance(loss, SearchStrategy):
        return _SpecOptions(loss, act, min_depth, max_depth, max_width, max_batch, max_input_dim,
                            dtypes, inits, allow_skips, max_params)
    names = tuple(LOSSES) if loss is None else _choices_arg("loss", loss, tuple(LOSSES), "losses")
    feasible = tuple(n for n in names if _loss_problem(LOSSES[n], act, min_depth, max_depth,
                                                       max_width, max_params) is None)
    if not feasible:
        # name the first problem: every candidate loss is impossible under the options
        problem = _loss_problem(LOSSES[names[0]], act, min_depth, max_depth, max_width, max_params)
        assert problem is not None  # names[0] is not feasible
        raise InvalidArgument(problem + f" (loss={loss!r})")
    return _SpecOptions(feasible, act, min_depth, max_depth, max_width, max_batch, max_input_dim,
                        dtypes, inits, allow_skips, max_params)


def _depth_floor(loss_entry, act, min_depth: int, max_depth: int) -> int:
    """A fixed activation that the loss's output activation would replace gets a hidden layer."""
    forced = OUTPUT_ACTIVATION.get(loss_entry.output)
    if isinstance(act, str) and forced is not None and act != forced and max_depth >= 2:
        return max(min_depth, 2)
    return min_depth


def _loss_problem(loss_entry, act, min_depth, max_depth, max_width, max_params) -> str | None:
    """Why no spec can have this loss under the options, or None."""
    if loss_entry.min_outputs > max_width:
        return (f"max_width={max_width!r} is too small: loss {loss_entry.name!r} needs "
                f"{loss_entry.min_outputs} outputs")
    if max_params is not None:
        depth = _depth_floor(loss_entry, act, min_depth, max_depth)
        need = _min_params(1, depth, loss_entry.min_outputs)
        if need > max_params:
            return (f"max_params={max_params!r} is too small: loss {loss_entry.name!r} at depth "
                    f"{depth} needs at least {need} parameters")
    return None


def specs(*, activation: Any = None, loss: Any = None, min_depth: int = 1, max_depth: int = 5,
          max_width: int = 16, max_batch: int = 16, max_input_dim: int = 8,
          dtypes: Any = DTYPES, inits: Any = INITS, allow_skips: bool = True,
          max_params: int | None = None) -> SearchStrategy[NetworkSpec]:
    """:class:`~gradcheck.spec.NetworkSpec` values that :class:`reference.network.Network` builds.

    Parameters
    ----------
    activation : None, name, collection of names, or strategy of names
        None: each layer draws any registered activation. A name: **every hidden layer uses it,
        and so does the output layer unless the loss needs a sigmoid (``bce``) or softmax
        (``categorical_cross_entropy``) output**, in which case the output layer gets that and
        the depth is at least 2 (when ``max_depth >= 2``) so the activation appears at all.
        Several names or a strategy (e.g. ``activations(allow_kinks=False)``): drawn per layer,
        the output layer forced as above.
    loss : None, name, collection of names, or strategy of names
        The loss (default: any registered loss that can satisfy the other options).
    min_depth, max_depth : int, default 1 and 5
        Number of dense layers.
    max_width : int, default 16
        Layer widths are 1..max_width; the output width is at least the loss's ``min_outputs``.
    max_batch, max_input_dim : int, default 16 and 8
        Batch size 1..max_batch; input dimension 1..max_input_dim.
    dtypes, inits : names, default all (``float64``, ``float32``; ``normal``, ``xavier``,
        ``he``, ``uniform``)
        Drawn per spec; the first listed is the simplest.
    allow_skips : bool, default True
        Residual skips ``(s, t)`` (layer ``s``'s output added to layer ``t``'s pre-activation,
        ``s < t - 1``, equal widths). A layer's width sometimes (1 in 4) copies an earlier width
        so that skips become possible; each valid pair is then a skip with probability 1/4.
    max_params : int, optional
        Upper bound on the number of scalar parameters P, respected by construction (widths,
        biases and depth are drawn within the remaining budget).

    Notes
    -----
    Each layer draws ``bias`` on or off (on is the simpler value). The seed is drawn too, so the
    spec fixes the initial parameters (``Network(spec).init_params()``).
    """
    opts = _spec_options(activation, loss, min_depth, max_depth, max_width, max_batch, max_input_dim,
                         dtypes, inits, allow_skips, max_params)
    return _draw_spec(opts)


@st.composite
def _draw_spec(draw, o: _SpecOptions) -> NetworkSpec:
    ACTIVATIONS, LOSSES = _registries()
    loss_name = draw(o.loss if isinstance(o.loss, SearchStrategy) else st.sampled_from(o.loss))
    if loss_name not in LOSSES:
        raise InvalidArgument(f"loss strategy drew {loss_name!r}, not one of the known losses: "
                              f"{', '.join(LOSSES)}")
    entry = LOSSES[loss_name]
    problem = _loss_problem(entry, o.activation, o.min_depth, o.max_depth, o.max_width, o.max_params)
    if problem is not None:
        raise InvalidArgument(problem + f" (the loss strategy drew {loss_name!r})")
    min_out = entry.min_outputs
    budget = math.inf if o.max_params is None else o.max_params

    lo_depth = _depth_floor(entry, o.activation, o.min_depth, o.max_depth)
    hi_depth = max(d for d in range(lo_depth, o.max_depth + 1) if _min_params(1, d, min_out) <= budget)
    depth = draw(st.integers(lo_depth, hi_depth))
    hi_in = max(d for d in range(1, o.max_input_dim + 1) if _min_params(d, depth, min_out) <= budget)
    input_dim = draw(st.integers(1, hi_in))

    forced = OUTPUT_ACTIVATION.get(entry.output)
    per_layer = (None if isinstance(o.activation, str) else
                 _names_strategy("activation", o.activation, ACTIVATIONS, "activations"))
    layers: list[Layer] = []
    for t in range(1, depth + 1):
        # one draw (one span) per layer, so the shrinker can delete a whole layer
        layers.append(draw(_layer(o, t, depth, input_dim, min_out, tuple(layers), budget,
                                  forced if t == depth else None, per_layer)))
    widths = [l.width for l in layers]

    skips: list[tuple[int, int]] = []
    if o.allow_skips:
        # one draw per structurally possible pair, valid (equal widths) or not: a fixed number
        # of choices, so narrowing a layer never makes the choice sequence longer
        all_w = [input_dim] + widths
        for t in range(2, depth + 1):
            for s in range(t - 1):
                if draw(st.integers(0, 3)) == 3 and all_w[s] == all_w[t]:
                    skips.append((s, t))

    batch = draw(st.integers(1, o.max_batch))
    dtype = draw(st.sampled_from(o.dtypes))
    init = draw(st.sampled_from(o.inits))
    seed = draw(st.integers(0, _SEED_MAX))
    return NetworkSpec(input_dim=input_dim, layers=tuple(layers), loss=loss_name, batch=batch,
                       dtype=dtype, init=init, seed=seed, skips=tuple(skips))


@st.composite
def _layer(draw, o: _SpecOptions, t: int, depth: int, input_dim: int, min_out: int,
           before: tuple[Layer, ...], budget: float, forced: str | None, per_layer) -> Layer:
    """Layer ``t`` of ``depth``, given the layers ``before`` it, within the parameter budget."""
    ACTIVATIONS, _ = _registries()
    biases = [l.bias for l in before]
    widths = [l.width for l in before]
    bias = draw(st.sampled_from((True, False)))  # True (the Layer default) is simpler
    if bias and _min_params(input_dim, depth, min_out, biases + [True], widths) > budget:
        bias = False
    biases.append(bias)
    lo = min_out if t == depth else 1
    hi = max(w for w in range(lo, o.max_width + 1)
             if _min_params(input_dim, depth, min_out, biases, widths + [w]) <= budget)
    earlier = [input_dim] + widths
    ties = sorted({earlier[s] for s in range(t - 1) if lo <= earlier[s] <= hi})
    # The same choices are drawn whatever the loss and the earlier widths (a draw that is not
    # needed is made and ignored), so changing the loss or a width does not shift the choices
    # after it, and the shrinker can simplify one thing at a time.
    tie = o.allow_skips and t > 1 and draw(st.integers(0, 3)) == 3
    width = draw(st.integers(lo, hi))
    if tie and ties:
        width = ties[(width - lo) % len(ties)]  # a width that makes a skip possible
    act = o.activation if per_layer is None else draw(per_layer)
    if act not in ACTIVATIONS:
        raise InvalidArgument(f"activation strategy drew {act!r}, not one of the known "
                              f"activations: {', '.join(ACTIVATIONS)}")
    return Layer(width, forced or act, bias)


# -- inputs and targets ----------------------------------------------------------------------
def _floats(dtype: str, lo: float, hi: float) -> SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False,
                     width=cast(Literal[16, 32, 64], np.dtype(dtype).itemsize * 8))  # dtype is one of DTYPES


def _raw_inputs(spec: NetworkSpec) -> SearchStrategy[np.ndarray]:
    return hnp.arrays(np.dtype(spec.dtype), (spec.batch, *spec.input_shape),
                      elements=_floats(spec.dtype, -INPUT_BOUND, INPUT_BOUND))


def inputs(spec: NetworkSpec, *, params: Mapping[str, np.ndarray] | None = None,
           allow_kinks: bool = False, margin: float = 0.05) -> SearchStrategy[np.ndarray]:
    """Input batches ``X`` of shape ``(spec.batch, spec.input_dim)`` and dtype ``spec.dtype``.

    Entries are drawn from ``[-2, 2]`` (shrinking towards 0). With ``allow_kinks=False`` each row
    is then moved (along a direction that changes the first layer's pre-activations, by the
    smallest step that works) so that **the first layer's** pre-activations ``X @ W1 + b1`` are at
    least ``margin`` from its activation's kinks, for ``params`` (default: the spec's initial
    parameters, ``Network(spec).init_params()``). Only the first layer depends on ``X`` alone;
    for a guarantee on every layer (and the loss) use :func:`cases`, which also adjusts the
    parameters and targets.
    """
    spec = _spec_arg(spec)
    allow_kinks = _bool_arg("allow_kinks", allow_kinks)
    margin = _margin_arg(margin)
    if params is not None:
        _params_arg(spec, params)
    raw = _raw_inputs(spec)
    if allow_kinks:
        return raw

    def fix(X: np.ndarray) -> np.ndarray:
        from gradcheck_reference.activations import get_activation  # noqa: PLC0415 - the reference, imported when a strategy is drawn
        from gradcheck_reference.network import Network  # noqa: PLC0415 - the reference, imported when a strategy is drawn
        p = Network(spec).init_params() if params is None else params
        act = get_activation(spec.layers[0].activation)
        X64 = X.astype(np.float64)
        if act.kinks and margin > 0:
            W1 = np.asarray(p["W1"], np.float64)  # every spec has a first layer; its bias is optional
            b1 = np.asarray(p["b1"], np.float64) if "b1" in p else None
            if not _fix_rows(X64, W1, b1, act.kinks, margin * _AIM, _rng(spec)):
                assume(False)  # a degenerate first layer (e.g. a zero column of W1): rare
        return X64.astype(spec.dtype)

    return raw.map(fix)


def _params_arg(spec: NetworkSpec, params: Any) -> None:
    shapes = spec.param_shapes()
    if isinstance(params, Mapping) and set(params) == set(shapes) and all(
            np.shape(params[k]) == shapes[k] for k in shapes):
        return
    got = {k: np.shape(v) for k, v in params.items()} if isinstance(params, Mapping) else params
    raise InvalidArgument(f"params must be a dict with the spec's parameters {shapes}; got {got!r}")


def targets(spec: NetworkSpec) -> SearchStrategy[np.ndarray]:
    """Valid targets ``y`` for ``spec.loss``, shaped ``(spec.batch, spec.output_dim)`` (or
    ``(spec.batch,)`` integer class indices), in ``spec.dtype``:

    ======================  =====================================================================
    target kind             values
    ======================  =====================================================================
    ``real``                floats in [-2, 2]
    ``binary``              0.0 or 1.0
    ``probability``         floats in [0, 1]
    ``sign``                -1.0 or +1.0
    ``count``               non-negative integers 0..10, as floats
    ``class``               int64 class indices ``(batch,)`` or one-hot rows (either form)
    ``one_hot``             one-hot rows
    ``distribution``        non-negative rows summing to 1 (all-zero draws become uniform rows)
    ======================  =====================================================================
    """
    spec = _spec_arg(spec)
    _, LOSSES = _registries()
    kind = LOSSES[spec.loss].target
    dt, shape, n, k = np.dtype(spec.dtype), (spec.batch, spec.output_dim), spec.batch, spec.output_dim
    if kind == "real":
        return hnp.arrays(dt, shape, elements=_floats(spec.dtype, -INPUT_BOUND, INPUT_BOUND))
    if kind == "probability":
        return hnp.arrays(dt, shape, elements=_floats(spec.dtype, 0.0, 1.0))
    if kind == "binary":
        return hnp.arrays(dt, shape, elements=st.sampled_from((0.0, 1.0)))
    if kind == "sign":
        return hnp.arrays(dt, shape, elements=st.sampled_from((1.0, -1.0)))
    if kind == "count":
        return hnp.arrays(dt, shape, elements=st.integers(0, 10).map(float))
    indices = hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1))
    one_hot = indices.map(lambda idx: np.eye(k, dtype=dt)[idx])
    if kind == "class":
        return st.one_of(indices, one_hot)
    if kind == "one_hot":
        return one_hot
    if kind == "distribution":
        def normalise(w: np.ndarray) -> np.ndarray:
            w = w.astype(np.float64)
            s = w.sum(axis=1, keepdims=True)
            w = np.where(s > 0, w / np.where(s > 0, s, 1), 1.0 / k)
            return w.astype(dt)
        return hnp.arrays(np.float64, shape, elements=_floats("float64", 0.0, 1.0)).map(normalise)
    raise InvalidArgument(f"spec.loss={spec.loss!r} has target kind {kind!r}, which targets() "
                          "does not know")  # pragma: no cover - a registry entry newer than this


# -- cases -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Case:
    """One gradient-check problem: ``spec``, ``params`` (dict of arrays), ``X`` and ``y``.

    ``repr(case)`` is Python that rebuilds it exactly (shortest round-trip floats), given
    ``from numpy import array, float32, int64``, ``from gradcheck.spec import NetworkSpec, Layer``
    and ``from gradcheck.strategies import Case``; Hypothesis prints a falsifying case this way.
    """

    spec: NetworkSpec
    params: dict[str, np.ndarray]
    X: np.ndarray
    y: np.ndarray

    def network(self):
        """The reference :class:`reference.network.Network` of ``spec``."""
        from gradcheck_reference.network import Network  # noqa: PLC0415 - the reference, imported when a strategy is drawn
        return Network(self.spec)

    def __repr__(self) -> str:
        with np.printoptions(floatmode="unique", threshold=sys.maxsize, linewidth=10**6):
            params = ", ".join(f"{k!r}: {np.array_repr(v)}" for k, v in self.params.items())
            return (f"Case(spec={self.spec!r}, params={{{params}}}, X={np.array_repr(self.X)}, "
                    f"y={np.array_repr(self.y)})")

    def _repr_pretty_(self, printer, cycle) -> None:
        """Hypothesis's (and IPython's) pretty printer: the exact repr, not rounded arrays."""
        printer.text(repr(self))


_SPEC_DEFAULTS = dict(activation=None, loss=None, min_depth=1, max_depth=5, max_width=16, max_batch=16,
                      max_input_dim=8, dtypes=DTYPES, inits=INITS, allow_skips=True, max_params=None)


def cases(*, spec: Any = None, activation: Any = None, loss: Any = None, min_depth: int = 1,
          max_depth: int = 5, max_width: int = 16, max_batch: int = 16, max_input_dim: int = 8,
          dtypes: Any = DTYPES, inits: Any = INITS, allow_skips: bool = True,
          max_params: int | None = None, allow_kinks: bool = False, margin: float = 0.05,
          weight_scales: Any = (1.0, 0.5, 2.0), mode: str = "margin") -> SearchStrategy[Case]:
    """Whole problems: :class:`Case` ``(spec, params, X, y)`` ready for ``fn(params, X, y)``.

    Parameters
    ----------
    spec : NetworkSpec or strategy of NetworkSpec, optional
        Use this spec (or draw from this strategy) instead of ``specs(...)`` with the options
        below, which must then keep their defaults.
    activation, loss, min_depth, ..., max_params
        As for :func:`specs`.
    allow_kinks : bool, default False
        False: pre-activations and the loss are kept ``margin`` away from non-differentiable
        points (module docstring). True: no such adjustment (kinks may be hit).
    margin : float, default 0.05
        Minimum distance from a kink, in pre-activation units (0 <= margin <= 0.5).
    weight_scales : collection of positive floats, default (1.0, 0.5, 2.0)
        The initial parameters are multiplied by one of these (the first is the simplest).
    mode : ``"margin"`` (default) or ``"realistic"``
        ``"margin"``: the construction below (with ``allow_kinks``, ``margin`` and
        ``weight_scales``). ``"realistic"``: cases as users' code meets them, kinks not avoided
        (see *Realistic mode* below); ``allow_kinks``, ``margin``, ``weight_scales`` and
        ``inits`` must then keep their defaults.

    Notes
    -----
    Margin mode (``mode="margin"``), layer by layer (``t = 1..L``), all by construction rather
    than by filtering:

    1. ``params = Network(spec).init_params() * scale``; ``X`` from :func:`inputs` (unadjusted).
    2. Range: the layer's own term ``u = a_{t-1} @ W_t + b_t`` is scaled down (``W_t``, ``b_t``
       together) so ``|u| <= 6``; for the output layer of ``bce`` and
       ``categorical_cross_entropy`` so that the whole ``|z_L| <= 6`` (probabilities far from
       the clipping at ``eps``, in float32 too).
    3. Kinks: layer 1 moves each row of ``X`` by the smallest step (along a direction chosen
       among the coordinate axes, ``W1``'s columns and a few seeded random ones) that puts the
       row's ``z_1`` off every kink. Later layers shift each column's bias by the smallest
       amount that clears the whole column or, without a bias, change ``W_t[:, c]`` by the
       smallest step along a coordinate, the all-ones or a seeded random direction. A relu
       layer feeding a bias-free layer with kinks also keeps every row alive (some ``z >= 0.25``,
       :data:`ALIVE`): an all-zero input row could not be moved off a kink by any weight.
    4. Targets from :func:`targets`; for ``mae`` an entry of ``y`` closer than ``margin`` to the
       output is moved to ``out -+ margin``; for ``hinge`` such a label is flipped.

    Each step searches the smallest move over the union of the forbidden intervals, so moves
    are small (typically below ``margin``) and the result is deterministic for a given draw.
    A final forward pass in the spec's dtype verifies every promise (``|z| <= 20``, distances,
    unclipped probabilities, finite loss and gradients). The few draws the construction cannot
    fix (skips summing past ``|z| = 20``, a skip-fed output too large for the probability cap,
    a degenerate column) are rejected with ``hypothesis.assume``: about 1 in 100, far too few
    to trouble Hypothesis's health checks.

    Realistic mode (``mode="realistic"``), nothing adjusted:

    1. The spec's ``init`` becomes the scheme users pair with its first layer's activation
       (:data:`REALISTIC_INIT`: ``he``, ``normal`` i.e. LeCun for selu, else ``xavier``), so
       ``Network(spec).init_params()`` gives the weights; biases are then all zero or kept small
       (N(0, 0.1)), :data:`REALISTIC_BIASES`.
    2. ``X`` is standard normal, per-feature scaled and offset, or sparse with exact zeros
       (:data:`REALISTIC_INPUTS`), from a generator seeded by ``spec.seed``.
    3. Targets from :func:`targets`, unadjusted: ``mae`` and ``hinge`` may sit on their kinks.

    Pre-activations therefore land anywhere, on kinks too (exactly 0 for a zero-bias relu layer
    fed an all-zero row). The dtype is drawn as in :func:`specs` (float32 too). Only range limits
    are kept, by rejection: every ``|z| <= 20`` (:data:`Z_MAX`), probabilities never clipped at
    ``eps``, finite loss and gradients.
    """
    mode = _mode_arg(mode)
    allow_kinks = _bool_arg("allow_kinks", allow_kinks)
    margin = _margin_arg(margin)
    scales = _scales_arg(weight_scales)
    if mode == "realistic":
        margin_only = dict(allow_kinks=(allow_kinks, False), margin=(margin, 0.05),
                           weight_scales=(scales, (1.0, 0.5, 2.0)), inits=(inits, INITS))
        for name, (value, default) in margin_only.items():
            if not _same_default(value, default):
                shown = weight_scales if name == "weight_scales" else value
                raise InvalidArgument(f"mode='realistic' and {name}={shown!r} cannot both be given: "
                                      f"{name} applies to mode='margin' only (realistic mode chooses "
                                      "the initialization and never avoids kinks)")
    given = dict(activation=activation, loss=loss, min_depth=min_depth, max_depth=max_depth,
                 max_width=max_width, max_batch=max_batch, max_input_dim=max_input_dim, dtypes=dtypes,
                 inits=inits, allow_skips=allow_skips, max_params=max_params)
    if spec is None:
        spec_strategy = specs(**given)
    else:
        changed = [k for k, v in given.items() if not _same_default(v, _SPEC_DEFAULTS[k])]
        if changed:
            raise InvalidArgument(f"spec={spec!r} and {changed[0]}={given[changed[0]]!r} cannot both be "
                                  "given: the spec options apply only when spec is None")
        spec_strategy = spec if isinstance(spec, SearchStrategy) else st.just(_spec_arg(spec))
    if mode == "realistic":
        return _draw_realistic_case(spec_strategy)
    return _draw_case(spec_strategy, scales, allow_kinks, margin)


def _mode_arg(mode: Any) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise InvalidArgument(f"mode={mode!r} must be one of {', '.join(map(repr, MODES))}")
    return mode


def _same_default(value, default) -> bool:
    if value is default:
        return True
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:
        return False


def _scales_arg(value: Any) -> tuple[float, ...]:
    ok = isinstance(value, Collection) and not isinstance(value, (str, Mapping)) and len(value) > 0
    if ok:
        try:
            scales = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            ok = False
        else:
            ok = (all(math.isfinite(s) and s > 0 for s in scales)
                  and not any(isinstance(v, bool) for v in value))
    if not ok:
        raise InvalidArgument(f"weight_scales={value!r} must be a non-empty collection of positive "
                              "finite numbers")
    return scales


def _rng(spec: NetworkSpec) -> np.random.Generator:
    return np.random.default_rng([spec.seed, 0x6B1A5])


@st.composite
def _draw_case(draw, spec_strategy, scales, allow_kinks: bool, margin: float) -> Case:
    from gradcheck_reference.activations import get_activation  # noqa: PLC0415 - the reference, imported when a strategy is drawn
    from gradcheck_reference.losses import get_loss  # noqa: PLC0415 - the reference, imported when a strategy is drawn
    from gradcheck_reference.network import Network  # noqa: PLC0415 - the reference, imported when a strategy is drawn

    spec = draw(spec_strategy)
    if not isinstance(spec, NetworkSpec):
        raise InvalidArgument(f"the spec strategy drew {spec!r}, not a NetworkSpec")
    net = Network(spec)  # raises ValueError for a spec the reference cannot build
    scale = draw(st.sampled_from(scales))
    params = {k: v.astype(np.float64) * scale for k, v in net.init_params().items()}
    X = draw(_raw_inputs(spec)).astype(np.float64)
    acts = [get_activation(l.activation) for l in spec.layers]
    loss = get_loss(spec.loss)
    aim = margin * _AIM
    if not _construct(spec, params, X, acts, loss, None if allow_kinks or margin == 0 else aim):
        assume(False)

    params, X, y, out, cache = _in_dtype(draw, spec, net, params, X)
    if not allow_kinks and margin > 0:
        y = _clear_loss_kinks(loss.name, out, y, aim)
    ok = _verify(net, params, X, y, out, cache, acts, loss, None if allow_kinks else margin)
    assume(ok)
    return Case(spec, params, X, y)


def _in_dtype(draw, spec: NetworkSpec, net, params: dict, X: np.ndarray):
    """Both modes' last steps: params and X cast to the spec's dtype, targets drawn, the forward
    pass (overflow is judged by the caller's verification, not warned about)."""
    dt = np.dtype(spec.dtype)
    params = {k: v.astype(dt) for k, v in params.items()}
    X = X.astype(dt)
    y = draw(targets(spec))
    with np.errstate(all="ignore"):
        out, cache = net.forward(params, X)
    return params, X, y, out, cache


@st.composite
def _draw_realistic_case(draw, spec_strategy) -> Case:
    """``cases(mode="realistic")``: ordinary init, data-like inputs, kinks wherever they fall."""
    from gradcheck_reference.activations import get_activation  # noqa: PLC0415 - the reference, imported when a strategy is drawn
    from gradcheck_reference.losses import get_loss  # noqa: PLC0415 - the reference, imported when a strategy is drawn
    from gradcheck_reference.network import Network  # noqa: PLC0415 - the reference, imported when a strategy is drawn

    spec = draw(spec_strategy)
    if not isinstance(spec, NetworkSpec):
        raise InvalidArgument(f"the spec strategy drew {spec!r}, not a NetworkSpec")
    spec = spec.replace(init=REALISTIC_INIT.get(spec.layers[0].activation, "xavier"))
    net = Network(spec)
    params = {k: v.astype(np.float64) for k, v in net.init_params().items()}
    if draw(st.sampled_from(REALISTIC_BIASES)) == "zero":
        params = {k: (np.zeros_like(v) if k.startswith("b") else v) for k, v in params.items()}
    kind = draw(st.sampled_from(REALISTIC_INPUTS))
    rng = np.random.default_rng([spec.seed, 0xDA7A])
    X = rng.standard_normal((spec.batch, *spec.input_shape))
    if kind == "offset":
        X = X * rng.uniform(0.5, 2.0, spec.input_dim) + rng.uniform(-3.0, 3.0, spec.input_dim)
    elif kind == "sparse":
        X = np.maximum(X, 0.0)

    params, X, y, out, cache = _in_dtype(draw, spec, net, params, X)
    acts = [get_activation(l.activation) for l in spec.layers]
    assume(_verify(net, params, X, y, out, cache, acts, get_loss(spec.loss), None))
    return Case(spec, params, X, y)


def _min_shift(z: np.ndarray, g: np.ndarray, kinks, aim: float,
               need: tuple[int, float] | None = None) -> float | None:
    """The ``t`` of smallest size such that every entry of ``z + t*g`` is ``aim`` away from every
    kink and, given ``need = (i, delta)``, ``z[i] + t*g[i] >= delta``; None when impossible (an
    entry with ``g == 0`` stuck where it must not be)."""
    lows, highs = [], []
    tiny = 1e-9 * max(1.0, float(np.max(np.abs(g), initial=0.0)))
    small = np.abs(g) <= tiny
    for k in kinks:
        d = k - z
        if np.any(small & (np.abs(d) < aim)):
            return None
        gg, dd = g[~small], d[~small]
        c, h = dd / gg, aim / np.abs(gg)
        lows.append(c - h)
        highs.append(c + h)
    lo = np.concatenate(lows) if lows else np.empty(0)
    hi = np.concatenate(highs) if highs else np.empty(0)
    t_min, t_max = -math.inf, math.inf
    cands = [0.0]
    if need is not None:
        i, delta = need
        if small[i]:
            if z[i] < delta:
                return None
        else:
            bound = (delta - z[i]) / g[i]
            t_min, t_max = (bound, math.inf) if g[i] > 0 else (-math.inf, bound)
            cands.append(float(bound))
    ts = np.concatenate([cands, lo, hi])
    for t in ts[np.argsort(np.abs(ts), kind="stable")]:
        if t_min <= t <= t_max and not np.any((t > lo) & (t < hi)):
            return float(t)
    return None  # pragma: no cover - the outermost endpoint on the allowed side is always free


def _off_kinks(z: np.ndarray, kinks, aim: float) -> bool:
    return all(np.min(np.abs(z - k)) >= aim for k in kinks)


def _best_move(z: np.ndarray, moves, kinks, aim: float, needs=(None,)):
    """Among ``moves`` (pairs of a direction and its effect ``g`` on ``z`` per unit step) and
    ``needs``, the feasible step of smallest size ``|t| * |direction|``: ``(t, direction, g)``."""
    best = None
    for direction, g in moves:
        norm = float(np.linalg.norm(direction))
        for need in needs:
            t = _min_shift(z, g, kinks, aim, need)
            if t is not None and (best is None or abs(t) * norm < best[0]):
                best = (abs(t) * norm, t, direction, g)
    return None if best is None else best[1:]


def _fix_rows(X: np.ndarray, W: np.ndarray, b, kinks, aim: float, rng: np.random.Generator,
              alive: float | None = None) -> bool:
    """Move rows of ``X`` (in place) so each row of ``z = X @ W + b`` is ``aim`` off ``kinks``
    (and, given ``alive``, has an entry >= alive). False when some row cannot be fixed."""
    dirs = [np.eye(W.shape[0])[j] for j in range(W.shape[0])]
    dirs += [W[:, c] / n for c in range(W.shape[1]) if (n := np.linalg.norm(W[:, c])) > 0]
    dirs += list(rng.standard_normal((4, W.shape[0])) / math.sqrt(W.shape[0]))
    moves = [(d, d @ W) for d in dirs]
    z = X @ W + (0.0 if b is None else b)
    for r in range(X.shape[0]):
        dead = alive is not None and np.max(z[r]) < alive
        if _off_kinks(z[r], kinks, aim) and not dead:
            continue
        needs = [(c, alive) for c in range(W.shape[1])] if dead else [None]
        best = _best_move(z[r], moves, kinks, aim, needs)
        if best is None:
            return False
        t, d, g = best
        X[r] += t * d
        z[r] += t * g
    return True


def _fix_columns(a: np.ndarray, W: np.ndarray, b, v: np.ndarray, kinks, aim: float,
                 rng: np.random.Generator, alive: float | None = None) -> bool:
    """Shift each column of ``z = a @ W + b + v`` off ``kinks`` (and make each row have an
    entry >= ``alive``): by its bias, or without one by a change of ``W[:, c]`` along a
    direction (a coordinate, all ones, or seeded random). In place; False when impossible."""
    n, width = a.shape[0], W.shape[1]
    if b is not None:
        moves = [(np.ones(1), np.ones(n))]
    else:
        dirs = [np.eye(W.shape[0])[j] for j in range(W.shape[0])] + [np.ones(W.shape[0])]
        dirs += list(rng.standard_normal((4, W.shape[0])))
        moves = [(m, a @ m) for m in dirs]

    def apply(c: int, t: float, m: np.ndarray, g: np.ndarray) -> None:
        if b is not None:
            b[c] += t
        else:
            W[:, c] += t * m
        z[:, c] += t * g

    z = a @ W + (0.0 if b is None else b) + v
    for c in range(width):
        if not _off_kinks(z[:, c], kinks, aim):
            best = _best_move(z[:, c], moves, kinks, aim)
            if best is None:
                return False
            apply(c, *best)
    if alive is not None:
        for r in range(n):
            if np.max(z[r]) >= alive:
                continue
            found = [(c, _best_move(z[:, c], moves, kinks, aim, [(r, alive)])) for c in range(width)]
            options = [(abs(o[0]) * float(np.linalg.norm(o[1])), c, o) for c, o in found if o is not None]
            if not options:
                return False
            _, c, best = min(options, key=lambda x: (x[0], x[1]))
            apply(c, *best)
    return True


def _construct(spec: NetworkSpec, params: dict, X: np.ndarray, acts, loss, aim: float | None) -> bool:
    """Steps 2 and 3 of :func:`cases`, in float64, in place. False when a draw cannot be fixed."""
    skips_into: dict[int, list[int]] = {}
    for s, t in spec.skips:
        skips_into.setdefault(t, []).append(s)
    L, rng = spec.depth, _rng(spec)
    outs = [X]
    with np.errstate(all="ignore"):
        for t in range(1, L + 1):
            W, b = params[f"W{t}"], params.get(f"b{t}")
            v = sum((outs[s] for s in skips_into.get(t, ())), np.zeros((X.shape[0], W.shape[1])))
            u = outs[t - 1] @ W + (0.0 if b is None else b)
            mu, mv = float(np.max(np.abs(u))), float(np.max(np.abs(v)))
            if t == L and loss.output in OUTPUT_ACTIVATION:
                if mv >= PROBABILITY_CAP - 0.5:
                    return False
                shrink = (PROBABILITY_CAP - mv) / mu if mu > 0 else 1.0
            else:
                shrink = MAIN_CAP / mu if mu > 0 else 1.0
            if shrink < 1:
                W *= shrink
                if b is not None:
                    b *= shrink
            kinks = acts[t - 1].kinks
            alive = (ALIVE if acts[t - 1].name == "relu" and t < L and not getattr(spec.layers[t], "bias", True)
                     and acts[t].kinks else None)
            if aim is not None and (kinks or alive is not None):
                ok = (_fix_rows(X, W, b, kinks, aim, rng, alive) if t == 1 else
                      _fix_columns(outs[t - 1], W, b, v, kinks, aim, rng, alive))
                if not ok:
                    return False
            z = outs[t - 1] @ W + (0.0 if b is None else b) + v
            if not np.all(np.isfinite(z)) or np.max(np.abs(z)) > Z_MAX:
                return False
            outs.append(acts[t - 1].f(z))
    return True


def _clear_loss_kinks(loss_name: str, out: np.ndarray, y: np.ndarray, aim: float) -> np.ndarray:
    """Step 4 of :func:`cases`: targets moved off the loss's kinks (mae, hinge)."""
    if loss_name == "mae":
        y = y.copy()
        diff = out.astype(np.float64) - y.astype(np.float64)
        bad = np.abs(diff) < aim
        side = np.where(diff >= 0, 1.0, -1.0)  # keep y on its side of out
        y[bad] = (out.astype(np.float64) - side * aim)[bad]
    elif loss_name == "hinge":
        y = y.copy()
        bad = np.abs(y.astype(np.float64) * out.astype(np.float64) - 1) < aim
        y[bad] = -y[bad]
    return y


def _kink_distances(acts, loss_name: str, cache, out: np.ndarray, y: np.ndarray) -> list[float]:
    """Smallest distance of each layer's pre-activations to its kinks, then the loss's."""
    dists: list[float] = []
    for act, z in zip(acts, cache.pre):
        z = np.asarray(z, np.float64)
        dists.extend(float(np.min(np.abs(z - k))) for k in act.kinks)
    o, yy = np.asarray(out, np.float64), np.asarray(y, np.float64)
    if loss_name == "mae":
        dists.append(float(np.min(np.abs(o - yy))))
    elif loss_name == "hinge":
        dists.append(float(np.min(np.abs(yy * o - 1))))
    return dists


def _verify(net, params, X, y, out, cache, acts, loss, margin: float | None) -> bool:
    with np.errstate(all="ignore"):
        if not all(np.all(np.isfinite(z)) and np.max(np.abs(z)) <= Z_MAX for z in cache.pre):
            return False
        if margin is not None and any(d < margin for d in _kink_distances(acts, loss.name, cache, out, y)):
            return False
        if loss.output == "probability":  # bce: never clipped
            eps = np.finfo(out.dtype).eps
            if not (np.all(out > 2 * eps) and np.all(out < 1 - 2 * eps)):
                return False
        if loss.output == "distribution":  # categorical_cross_entropy: never clipped
            if not np.all(out > 2 * np.finfo(out.dtype).eps):
                return False
        value, grads = net.loss_and_grads(params, X, y)
    return math.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads.values())


# networks with other layer kinds (conv, pooling, normalization, ...): their own module, re-exported
from gradcheck.layer_strategies import KINDS as LAYER_KINDS  # noqa: E402
from gradcheck.layer_strategies import layer_cases, layer_specs  # noqa: E402
