"""SymPy definitions of every activation and loss; their derivatives come from ``sympy.diff`` only.

Each primitive is defined here anew by its *value* (never imported from ``reference``), keyed by
the same name as the reference registries, so that a bug in a hand-written derivative is caught
instead of copied. Two forms of the value may exist:

* the **canonical** form, the textbook formula: shown as LaTeX (:func:`activation_expr`,
  :func:`loss_expr`) and used inside whole-network expressions (:mod:`.network`);
* an optional **stable** form, the same function rewritten so that evaluation neither overflows
  nor cancels at ``|z|`` up to 1e3 (sigmoid and tanh split at 0, ``log1p``/``expm1``/``erfc``, a
  free shift ``c`` in log-sum-exp). The numpy and mpmath callables for single primitives
  differentiate this form. The tests check at 60 digits that both forms are the same function,
  so both derivatives are SymPy's derivative of that function.

Numpy evaluation runs under ``np.errstate(all="ignore")``; any element that still comes out
non-finite from a finite input is re-evaluated from the same derivative with mpmath (30
digits) and rounded, so an honest overflow (``exp(1000)`` in ``poisson_nll``) stays ``inf`` and a
spurious ``inf/inf`` cannot survive. Results are computed in float64 and returned in the input's
floating dtype (integers become float64), like the registries.

Kinks. Functions that *are* a max, min or absolute value (relu, hard_tanh, softsign's ``|z|``, mae,
hinge, squared_hinge) are written with ``Max``/``Min``/``Abs``: SymPy differentiates them to
``Heaviside``/``sign``, whose value at 0 is ``1/2``/``0``, i.e. the midpoint of the one-sided
derivatives (relu'(0) = 1/2, hard_tanh'(+-1) = 1/2, hinge: -y/2). Functions defined by cases
(leaky_relu, elu, selu, huber, the clipping of bce and categorical cross-entropy) are
``Piecewise``: SymPy differentiates each branch, and at a kink the derivative is that of the
branch whose condition holds there (leaky_relu'(0) = alpha, selu'(0) = scale * alpha, clipped
probability -> 0). :func:`kink_derivatives` evaluates these exactly.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, SupportsFloat

import mpmath
import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.pycode import MpmathPrinter

Array = np.ndarray

#: the pre-activation symbol of every elementwise activation
Z = sp.Symbol("z", real=True)
#: clip level of ``bce`` and ``categorical_cross_entropy``: the machine epsilon of out's dtype
EPS = sp.Symbol("epsilon", positive=True)
#: reduction weight of one sample's loss in the batch loss: ``1/batch`` (mean) or ``1`` (sum)
WEIGHT = sp.Symbol("w", positive=True)
#: a free shift in log-sum-exp (stable forms only): the value does not depend on it
SHIFT = sp.Symbol("c", real=True)

_SQRT2 = sp.sqrt(2)
#: SELU constants (Klambauer et al. 2017) to 32 digits
_SELU_ALPHA = sp.Float("1.6732632423543772848170429916717", 40)
_SELU_SCALE = sp.Float("1.0507009873554804934193349852946", 40)
_GELU_C = sp.Rational(44715, 10**6)


# --------------------------------------------------------------------------------------------
# shared building blocks (values only)
# --------------------------------------------------------------------------------------------
def _sigmoid(z: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-z))


def _sigmoid_stable(z: sp.Expr) -> sp.Expr:
    # the same function written two ways: exp of a non-positive number only
    return sp.Piecewise((1 / (1 + sp.exp(-z)), z >= 0), (sp.exp(z) / (1 + sp.exp(z)), True))


def _softplus(z: sp.Expr) -> sp.Expr:
    return sp.log(1 + sp.exp(z))


def _softplus_stable(z: sp.Expr) -> sp.Expr:
    return sp.Piecewise((z + log1p(sp.exp(-z)), z >= 0), (log1p(sp.exp(z)), True))


def _phi(z: sp.Expr) -> sp.Expr:
    """Standard normal CDF."""
    return (1 + sp.erf(z / _SQRT2)) / 2


def _phi_stable(z: sp.Expr) -> sp.Expr:
    # erfc(|z|/sqrt2)/2 for z < 0: no cancellation in 1 + erf(very negative)
    return sp.Piecewise(((1 + sp.erf(z / _SQRT2)) / 2, z >= 0), (sp.erfc(sp.Abs(z) / _SQRT2) / 2, True))


def _tanh_stable(z: sp.Expr) -> sp.Expr:
    # -expm1(-2z) / (2 + expm1(-2z)) for z >= 0 (mirrored below): its derivative is
    # 4 exp(-2|z|) / (...)^2, accurate in the tails where 1 - tanh(z)^2 rounds to 0
    return sp.Piecewise((-expm1(-2 * z) / (2 + expm1(-2 * z)), z >= 0),
                        (expm1(2 * z) / (2 + expm1(2 * z)), True))


def _gelu_tanh_u(z: sp.Expr) -> sp.Expr:
    return sp.sqrt(2 / sp.pi) * (z + _GELU_C * z**3)


def _elu(z: sp.Expr, alpha: sp.Expr, stable: bool = False) -> sp.Expr:
    neg = alpha * expm1(z) if stable else alpha * (sp.exp(z) - 1)
    return sp.Piecewise((z, z > 0), (neg, True))


# --------------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActivationDef:
    """One activation as SymPy values: ``value(z, **params)`` (canonical), optional ``stable``.

    Row-wise entries (softmax) take a list of symbols and return a list; their ``stable`` also
    takes the shift symbol. ``kinks(**params)`` lists the non-differentiable points.
    """

    name: str
    description: str
    value: Callable[..., Any]
    stable: Callable[..., Any] | None = None
    params: Mapping[str, float] = field(default_factory=dict)
    kinks: Callable[..., tuple[float, ...]] = lambda **p: ()
    rowwise: bool = False


def _zero_kink(**p: float) -> tuple[float, ...]:
    return (0.0,)


def _softmax(zs: Sequence[sp.Expr]) -> list[sp.Expr]:
    total = sp.Add(*[sp.exp(z) for z in zs])
    return [sp.exp(z) / total for z in zs]


def _softmax_stable(zs: Sequence[sp.Expr], c: sp.Expr) -> list[sp.Expr]:
    total = sp.Add(*[sp.exp(z - c) for z in zs])
    return [sp.exp(z - c) / total for z in zs]


def _adef(name, description, value, stable=None, params=None, kinks=None, rowwise=False):
    return name, ActivationDef(name, description, value, stable, MappingProxyType(dict(params or {})),
                               kinks or (lambda **p: ()), rowwise)


ACTIVATION_DEFS: Mapping[str, ActivationDef] = MappingProxyType(dict([
    _adef("identity", "z", lambda z: z),
    _adef("sigmoid", "1/(1+exp(-z))", _sigmoid, _sigmoid_stable),
    _adef("tanh", "tanh(z)", sp.tanh, _tanh_stable),
    _adef("relu", "Max(z, 0)", lambda z: sp.Max(z, 0), kinks=_zero_kink),
    _adef("leaky_relu", "z if z > 0 else alpha z",
          lambda z, alpha: sp.Piecewise((z, z > 0), (alpha * z, True)),
          params={"alpha": 0.01}, kinks=_zero_kink),
    _adef("elu", "z if z > 0 else alpha (exp(z) - 1)",
          lambda z, alpha: _elu(z, alpha), lambda z, alpha: _elu(z, alpha, stable=True),
          params={"alpha": 1.0}, kinks=lambda alpha: () if alpha == 1.0 else (0.0,)),
    _adef("selu", "scale * elu(z, alpha), the self-normalising constants",
          lambda z: _SELU_SCALE * _elu(z, _SELU_ALPHA),
          lambda z: _SELU_SCALE * _elu(z, _SELU_ALPHA, stable=True), kinks=_zero_kink),
    _adef("softplus", "log(1 + exp(z))", _softplus, _softplus_stable),
    _adef("softsign", "z / (1 + |z|)", lambda z: z / (1 + sp.Abs(z))),
    _adef("silu", "z sigmoid(z)", lambda z: z * _sigmoid(z), lambda z: z * _sigmoid_stable(z)),
    _adef("gelu", "z Phi(z) (erf)", lambda z: z * _phi(z), lambda z: z * _phi_stable(z)),
    _adef("gelu_tanh", "z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) / 2",
          lambda z: z * (1 + sp.tanh(_gelu_tanh_u(z))) / 2,
          lambda z: z * _sigmoid_stable(2 * _gelu_tanh_u(z))),  # (1 + tanh u)/2 = sigmoid(2u)
    _adef("mish", "z tanh(softplus(z))", lambda z: z * sp.tanh(_softplus(z)),
          lambda z: z * sp.tanh(_softplus_stable(z))),
    _adef("sin", "sin(z)", sp.sin),
    _adef("hard_tanh", "Min(Max(z, -1), 1)", lambda z: sp.Min(sp.Max(z, -1), 1),
          kinks=lambda **p: (-1.0, 1.0)),
    _adef("softmax", "exp(z_i) / sum_j exp(z_j), row-wise", _softmax, _softmax_stable, rowwise=True),
]))


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossDef:
    """One loss as SymPy values: ``per_sample(o, y)`` for one sample's outputs and targets.

    The batch loss is ``sum_b w * per_sample(o_b, y_b)`` with ``w = 1/batch`` (``reduction =
    "mean"``) or ``1`` (``"sum"``). ``rowwise`` losses couple a sample's outputs (softmax inside)
    and are compiled per number of outputs; the others are sums of one elementwise term.
    ``class_targets``: ``y`` may be integer class indices shaped ``(batch,)``.
    """

    name: str
    description: str
    per_sample: Callable[[Sequence[sp.Expr], Sequence[sp.Expr]], sp.Expr]
    stable: Callable[..., sp.Expr] | None = None
    reduction: str = "mean"
    rowwise: bool = False
    class_targets: bool = False
    kinks: str = ""


def _elementwise(term: Callable[[sp.Expr, sp.Expr], sp.Expr]):
    return lambda os, ys: sp.Add(*[term(o, y) for o, y in zip(os, ys)])


def _bce_clip(p: sp.Expr) -> sp.Expr:
    return sp.Piecewise((EPS, p <= EPS), (1 - EPS, p >= 1 - EPS), (p, True))


def _huber(o, y):
    r = o - y
    return sp.Piecewise((r**2 / 2, sp.Abs(r) <= 1), (sp.Abs(r) - sp.Rational(1, 2), True))


def _log_softmax(os, k):
    return sp.log(sp.exp(os[k]) / sp.Add(*[sp.exp(o) for o in os]))


def _log_softmax_stable(os, k, c):
    return os[k] - c - sp.log(sp.Add(*[sp.exp(o - c) for o in os]))


def _xlogx(y):
    return sp.Piecewise((y * sp.log(y), y > 0), (0, True))


def _ldef(name, description, per_sample, stable=None, **kw):
    return name, LossDef(name, description, per_sample, stable, **kw)


LOSS_DEFS: Mapping[str, LossDef] = MappingProxyType(dict([
    _ldef("mse", "(o - y)^2", _elementwise(lambda o, y: (o - y) ** 2)),
    _ldef("mae", "|o - y|", _elementwise(lambda o, y: sp.Abs(o - y)), kinks="o == y"),
    _ldef("huber", "r^2/2 if |r| <= 1 else |r| - 1/2, r = o - y", _elementwise(_huber), kinks="|o - y| == 1 (C1)"),
    _ldef("log_cosh", "log(cosh(o - y))", _elementwise(lambda o, y: sp.log(sp.cosh(o - y))),
          _elementwise(lambda o, y: sp.Abs(o - y) + log1p(sp.exp(-2 * sp.Abs(o - y))) - sp.log(2))),
    _ldef("bce", "-(y log q + (1-y) log(1-q)), q = o clipped to [eps, 1-eps]",
          _elementwise(lambda o, y: -(y * sp.log(_bce_clip(o)) + (1 - y) * sp.log(1 - _bce_clip(o)))),
          kinks="o == eps, o == 1 - eps (gradient 0 on the clipped side)"),
    _ldef("bce_with_logits", "log(1 + exp(o)) - y o  (= -y log s(o) - (1-y) log(1 - s(o)))",
          _elementwise(lambda o, y: _softplus(o) - y * o),
          _elementwise(lambda o, y: sp.Max(o, 0) - o * y + log1p(sp.exp(-sp.Abs(o))))),
    _ldef("softmax_cross_entropy", "-sum_k y_k log softmax(o)_k",
          lambda os, ys: -sp.Add(*[ys[k] * _log_softmax(os, k) for k in range(len(os))]),
          lambda os, ys, c: -sp.Add(*[ys[k] * _log_softmax_stable(os, k, c) for k in range(len(os))]),
          rowwise=True, class_targets=True),
    _ldef("categorical_cross_entropy", "-sum_k y_k log max(o_k, eps)",
          _elementwise(lambda o, y: -y * sp.log(sp.Piecewise((EPS, o <= EPS), (o, True)))),
          class_targets=True, kinks="o == eps (gradient 0 at and below eps)"),
    _ldef("kl_div", "sum_k y_k log y_k - y_k log softmax(o)_k  (0 log 0 = 0)",
          lambda os, ys: sp.Add(*[_xlogx(ys[k]) - ys[k] * _log_softmax(os, k) for k in range(len(os))]),
          lambda os, ys, c: sp.Add(*[_xlogx(ys[k]) - ys[k] * _log_softmax_stable(os, k, c)
                                     for k in range(len(os))]),
          rowwise=True),
    _ldef("hinge", "Max(0, 1 - y o)", _elementwise(lambda o, y: sp.Max(0, 1 - y * o)), kinks="y o == 1"),
    _ldef("squared_hinge", "Max(0, 1 - y o)^2", _elementwise(lambda o, y: sp.Max(0, 1 - y * o) ** 2)),
    _ldef("poisson_nll", "exp(o) - y o", _elementwise(lambda o, y: sp.exp(o) - y * o)),
    _ldef("half_sse", "(y - o)^2 / 2, summed over the batch", _elementwise(lambda o, y: (y - o) ** 2 / 2),
          reduction="sum"),
]))


# --------------------------------------------------------------------------------------------
# lookup and expressions
# --------------------------------------------------------------------------------------------
def get_activation_def(name: str) -> ActivationDef:
    """The SymPy definition of activation ``name``; a ValueError lists the known names."""
    try:
        return ACTIVATION_DEFS[name]
    except (KeyError, TypeError):
        raise ValueError(f"no SymPy definition of activation {name!r}; known: "
                         f"{', '.join(ACTIVATION_DEFS)}") from None


def get_loss_def(name: str) -> LossDef:
    """The SymPy definition of loss ``name``; a ValueError lists the known names."""
    try:
        return LOSS_DEFS[name]
    except (KeyError, TypeError):
        raise ValueError(f"no SymPy definition of loss {name!r}; known: {', '.join(LOSS_DEFS)}") from None


def _exact(value: float) -> sp.Expr:
    """A parameter value as an exact SymPy number (the decimal the user wrote: 0.01 -> 1/100)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"parameter value {value!r}: expected a finite real number")
    return sp.Rational(repr(float(value)))


def _bound_params(d: ActivationDef, params: Mapping[str, float]) -> dict[str, float]:
    unknown = set(params) - set(d.params)
    if unknown:
        raise ValueError(f"activation {d.name!r} has no parameter(s) {sorted(unknown)}; "
                         f"its parameters are {sorted(d.params) or 'none'}")
    out = {**d.params, **params}
    for v in out.values():
        _exact(v)
    return {k: float(v) for k, v in out.items()}


def _param_symbols(d: ActivationDef) -> list[sp.Symbol]:
    return [sp.Symbol(p, real=True) for p in d.params]


def vector_symbols(prefix: str, n: int) -> list[sp.Symbol]:
    """``n`` real symbols ``prefix_0 .. prefix_{n-1}``."""
    return [sp.Symbol(f"{prefix}_{k}", real=True) for k in range(n)]


def activation_expr(name: str, *, n: int = 3, symbolic_params: bool = False,
                    **params: float) -> tuple[sp.Expr, sp.Expr]:
    """``(expr, z)``: the canonical SymPy value of activation ``name`` and its input symbol.

    Parameters take their defaults unless given (``leaky_relu``: ``alpha=0.01``; ``elu``:
    ``alpha=1``) and become exact numbers, or symbols with ``symbolic_params=True``. For the
    row-wise ``softmax`` both are ``n x 1`` matrices (``z_0 .. z_{n-1}``).
    """
    d = get_activation_def(name)
    bound = _bound_params(d, params)
    if d.rowwise:
        zs = vector_symbols("z", n)
        return sp.Matrix(d.value(zs)), sp.Matrix(zs)
    if symbolic_params:
        p = dict(zip(d.params, _param_symbols(d)))
    else:
        p = {k: _exact(v) for k, v in bound.items()}
    return d.value(Z, **p), Z


def activation_latex(name: str, *, n: int = 3) -> tuple[str, str]:
    """LaTeX of ``f(z)`` and of ``f'(z)`` (SymPy's derivative), parameters as symbols.

    For ``softmax``: the ``n``-vector of outputs and its ``n x n`` Jacobian.
    """
    expr, z = activation_expr(name, n=n, symbolic_params=True)
    if get_activation_def(name).rowwise:
        return sp.latex(expr), sp.latex(expr.jacobian(z))
    return sp.latex(expr), sp.latex(sp.diff(expr, z))


def activation_kinks(name: str, **params: float) -> tuple[float, ...]:
    """The points ``z`` where activation ``name`` is not differentiable."""
    d = get_activation_def(name)
    return tuple(d.kinks(**_bound_params(d, params)))


def kink_derivatives(name: str, **params: float) -> dict[float, sp.Expr]:
    """At each kink of activation ``name``: the exact value SymPy's derivative takes there."""
    d = get_activation_def(name)
    if d.rowwise:
        return {}
    kinks = activation_kinks(name, **params)  # validates params: none named n or symbolic_params
    expr, z = activation_expr(name, n=3, symbolic_params=False, **params)
    deriv = sp.diff(expr, z)
    return {k: deriv.subs(z, sp.Rational(repr(k))) for k in kinks}


def _per_sample(name: str, n: int, *, stable: bool = False) -> tuple[sp.Expr, list, list]:
    """``(w * loss_of_one_sample, o, y)`` with symbol vectors ``o``, ``y`` of length ``n``."""
    d = get_loss_def(name)
    os, ys = vector_symbols("o", n), vector_symbols("y", n)
    if stable and d.stable is not None:
        expr = d.stable(os, ys, SHIFT) if d.rowwise else d.stable(os, ys)
    else:
        expr = d.per_sample(os, ys)
    return WEIGHT * expr, os, ys


def reduction_weight(name: str, batch: int) -> sp.Expr:
    """The weight of one sample's loss in the batch loss: ``1/batch`` (mean) or ``1`` (sum)."""
    return sp.Rational(1, batch) if get_loss_def(name).reduction == "mean" else sp.Integer(1)


def loss_expr(name: str, n_outputs: int, batch: int, *,
              eps: float = float(np.finfo(np.float64).eps)) -> tuple[sp.Expr, sp.Matrix, sp.Matrix]:
    """``(L, O, Y)``: the canonical batch loss as one SymPy expression in ``batch x n_outputs``
    symbol matrices ``O`` (network outputs ``o_b_k``) and ``Y`` (targets ``y_b_k``).

    ``L = sum_b w * loss(O[b, :], Y[b, :])`` with ``w = 1/batch`` (all losses but ``half_sse``)
    or ``1``; the clip level of ``bce``/``categorical_cross_entropy`` is ``eps`` (exact).
    """
    d = get_loss_def(name)
    if not (isinstance(n_outputs, int) and n_outputs >= 1 and isinstance(batch, int) and batch >= 1):
        raise ValueError(f"n_outputs={n_outputs!r}, batch={batch!r}: expected integers >= 1")
    O = sp.Matrix(batch, n_outputs, lambda b, k: sp.Symbol(f"o_{b}_{k}", real=True))
    Y = sp.Matrix(batch, n_outputs, lambda b, k: sp.Symbol(f"y_{b}_{k}", real=True))
    w = reduction_weight(name, batch)
    total = sp.Add(*[w * d.per_sample(list(O.row(b)), list(Y.row(b))) for b in range(batch)])
    return total.subs(EPS, sp.Rational(eps)), O, Y


def loss_latex(name: str) -> tuple[str, str]:
    """LaTeX of one sample's loss and of its gradient (one output; two for row-wise losses)."""
    d = get_loss_def(name)
    n = 2 if d.rowwise else 1
    if n == 1:
        o, y = sp.Symbol("o", real=True), sp.Symbol("y", real=True)
        expr = d.per_sample([o], [y])
        return sp.latex(expr), sp.latex(sp.diff(expr, o))
    os, ys = vector_symbols("o", n), vector_symbols("y", n)
    expr = d.per_sample(os, ys)
    return sp.latex(expr), sp.latex(sp.Matrix([sp.diff(expr, o) for o in os]))


# --------------------------------------------------------------------------------------------
# lambdify: numpy (float64) and mpmath (high precision)
# --------------------------------------------------------------------------------------------
def _special_functions() -> dict[str, Callable]:
    try:
        from scipy import special  # noqa: PLC0415 - optional: faster vectorised erf

        return {"erf": special.erf, "erfc": special.erfc}
    except ImportError:  # pragma: no cover - depends on the environment
        erf, erfc = np.frompyfunc(math.erf, 1, 1), np.frompyfunc(math.erfc, 1, 1)
        # asarray, not .astype: for a scalar x the object ufunc returns a bare Python float
        return {"erf": lambda x: np.asarray(erf(x), dtype=np.float64),
                "erfc": lambda x: np.asarray(erfc(x), dtype=np.float64)}


def _select(condlist, choicelist, default=np.nan):
    """``numpy.select`` that also takes scalar conditions: a Piecewise whose condition depends
    only on parameters (not on the batch) lambdifies to a numpy bool scalar, or to True."""
    conds = [np.asarray(c, dtype=bool) for c in condlist]
    shape = np.broadcast_shapes(*(np.shape(c) for c in conds), *(np.shape(c) for c in choicelist))
    return np.select([np.broadcast_to(c, shape) for c in conds],
                     [np.broadcast_to(np.asarray(c, dtype=float), shape) for c in choicelist], default=default)


def _heaviside_mp(x: Any, h0: Any) -> Any:
    """``Heaviside(x, h0)`` for mpmath numbers: 0 below 0, ``h0`` at 0, 1 above."""
    return mpmath.mpf(0) if x < 0 else (h0 if x == 0 else mpmath.mpf(1))


class _HeavisideAsCall:
    """Printer mixin: ``Heaviside(x, h0)`` printed as the call ``heaviside(x, h0)``.

    SymPy's code printers otherwise print it as ``Heaviside(x).rewrite(Piecewise)``, which folds
    any ``Piecewise`` inside ``x`` into the new conditions (``piecewise_fold`` and set reasoning at
    print time): the printed code then no longer follows the expression, repeats ``x`` once per
    branch, and misreads conditions that are not relations (see ``network.conditions_as_numbers``).
    """

    if TYPE_CHECKING:
        def _print(self, expr: Any) -> str: ...  # provided by the sympy printer it is mixed into

    def _print_Heaviside(self, expr: sp.Heaviside) -> str:
        h0 = expr.args[1] if len(expr.args) > 1 else sp.S.Half
        return f"heaviside({self._print(expr.args[0])}, {self._print(h0)})"


class _NumPyPrinter(_HeavisideAsCall, NumPyPrinter):
    pass


class _MpmathPrinter(_HeavisideAsCall, MpmathPrinter):
    pass


NUMPY_MODULES: list = [{**_special_functions(), "select": _select, "heaviside": np.heaviside}, "numpy"]
MPMATH_MODULES: list = [{"heaviside": _heaviside_mp}, "mpmath"]


def _printer(cls: type, modules: list) -> Any:
    """A printer configured as ``sympy.lambdify`` configures its default one for ``modules``."""
    names = {k: k for m in modules if isinstance(m, dict) for k in m}
    return cls({"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True,
                "user_functions": names})


def lambdify_numpy(args: Sequence[Any], expr: Any, **kw: Any) -> Callable:
    """``sympy.lambdify`` to numpy, with erf/erfc available (numpy has neither) and Heaviside
    printed as ``numpy.heaviside`` (not rewritten, see :class:`_HeavisideAsCall`)."""
    return sp.lambdify(args, expr, modules=NUMPY_MODULES, printer=_printer(_NumPyPrinter, NUMPY_MODULES), **kw)


def lambdify_mpmath(args: Sequence[Any], expr: Any, **kw: Any) -> Callable:
    """``sympy.lambdify`` to mpmath: evaluates at the current ``mpmath.mp.dps`` (Heaviside as a
    call, like :func:`lambdify_numpy`)."""
    return sp.lambdify(args, expr, modules=MPMATH_MODULES, printer=_printer(_MpmathPrinter, MPMATH_MODULES), **kw)


def _float_array(x: Any, what: str) -> Array:
    a = np.asarray(x)
    if a.dtype.kind == "c":
        raise TypeError(f"{what}: complex input is not supported (dtype {a.dtype})")
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{what}: expected a real numeric array, got dtype {a.dtype}")
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def _to_dtype(a: Array, dtype: np.dtype) -> Array:
    with np.errstate(all="ignore"):
        return np.asarray(a, dtype=np.float64).astype(dtype, copy=False)


def _mpf(x: SupportsFloat) -> mpmath.mpf:
    return mpmath.mpf(float(x))  # exact: every double is an mpf


#: bound of each cache of compiled callables below (keys such as parameter values and row widths
#: are open-ended; functools.lru_cache is thread-safe)
CACHE_SIZE = 256


@dataclass(frozen=True)
class _CompiledActivation:
    f: Callable
    df: Callable
    mp_f: Callable
    mp_df: Callable


@functools.cache
def _compiled_activation(name: str) -> _CompiledActivation:
    d = get_activation_def(name)
    if d.rowwise:
        raise TypeError(f"activation {name!r} is row-wise")
    ps = _param_symbols(d)
    p = dict(zip(d.params, ps))
    canonical = d.value(Z, **p)
    stable = d.stable(Z, **p) if d.stable is not None else canonical
    args = [Z, *ps]
    return _CompiledActivation(
        f=lambdify_numpy(args, stable), df=lambdify_numpy(args, sp.diff(stable, Z)),
        mp_f=lambdify_mpmath(args, stable), mp_df=lambdify_mpmath(args, sp.diff(stable, Z)))


def _elementwise_eval(np_fn: Callable, mp_fn: Callable, z: Array, pvals: Sequence[float]) -> Array:
    """``np_fn(z, *pvals)`` in float64; non-finite results from finite inputs redone in mpmath."""
    z64 = z.astype(np.float64)
    with np.errstate(all="ignore"):
        out = np.array(np.broadcast_to(np.asarray(np_fn(z64, *pvals), dtype=np.float64), z64.shape))
    bad = ~np.isfinite(out) & np.isfinite(z64)
    if bad.any():
        with mpmath.workdps(30):
            for idx in zip(*np.nonzero(bad)):
                out[idx] = float(mp_fn(_mpf(z64[idx]), *[_mpf(v) for v in pvals]))
    return out


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compiled_softmax(n: int) -> tuple[Callable, Callable, Callable]:
    """numpy value, numpy Jacobian (stable, shifted) and mpmath Jacobian for rows of ``n``."""
    d = ACTIVATION_DEFS["softmax"]
    assert d.stable is not None  # softmax is registered with its shifted form
    zs = vector_symbols("z", n)
    stable = d.stable(zs, SHIFT)
    jac = [[sp.diff(s, zj) for zj in zs] for s in stable]
    return (lambdify_numpy([zs, SHIFT], stable), lambdify_numpy([zs, SHIFT], jac),
            lambdify_mpmath([zs, SHIFT], jac))


def _rows(z: Array) -> tuple[Array, tuple[int, ...]]:
    if z.ndim == 0:
        raise ValueError("softmax needs at least one axis (rows along the last axis)")
    return z.reshape(-1, z.shape[-1]).astype(np.float64), z.shape


def _softmax_value(z: Array) -> Array:
    rows, shape = _rows(z)
    f = _compiled_softmax(shape[-1])[0]
    with np.errstate(all="ignore"):
        cols = f(list(rows.T), rows.max(axis=1))
    return np.stack([np.broadcast_to(c, rows.shape[:1]) for c in cols], axis=-1).reshape(shape)


def _softmax_jacobian(z: Array) -> Array:
    rows, shape = _rows(z)
    n, m = shape[-1], rows.shape[0]
    _, jac, mp_jac = _compiled_softmax(n)
    with np.errstate(all="ignore"):
        entries = jac(list(rows.T), rows.max(axis=1))
    J = np.empty((m, n, n))
    for i in range(n):
        for j in range(n):
            J[:, i, j] = np.broadcast_to(entries[i][j], (m,))
    bad = ~np.isfinite(J).all(axis=(1, 2)) & np.isfinite(rows).all(axis=1)
    for r in np.nonzero(bad)[0]:
        with mpmath.workdps(30):
            J[r] = np.array(mp_jac([_mpf(v) for v in rows[r]], _mpf(rows[r].max())), dtype=np.float64)
    return J.reshape(shape + (n,))


def _check_activation_call(name: str, params: Mapping[str, float]) -> tuple[ActivationDef, tuple[float, ...]]:
    d = get_activation_def(name)
    bound = _bound_params(d, params)
    return d, tuple(bound[k] for k in d.params)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _activation_callable(name: str, kind: str, params: tuple[tuple[str, float], ...]) -> Callable:
    """The one factory behind :func:`activation_value`, :func:`activation_derivative` and
    :func:`activation_vjp`: validates ``name``/``params`` and returns the numpy callable of
    ``kind`` (``"value"``, ``"derivative"``, ``"vjp"``), named ``{name}_{kind}``.

    Elementwise: the lambdified stable value and its ``sympy.diff`` (non-finite results from
    finite inputs redone in mpmath). Row-wise (softmax): the row values and the Jacobian. Computed
    in float64, returned in ``z``'s floating dtype.
    """
    d, pvals = _check_activation_call(name, dict(params))
    if d.rowwise:
        value, derivative = _softmax_value, _softmax_jacobian
    else:
        c = _compiled_activation(name)

        def value(z: Array) -> Array:
            return _elementwise_eval(c.f, c.mp_f, z, pvals)

        def derivative(z: Array) -> Array:
            return _elementwise_eval(c.df, c.mp_df, z, pvals)

    def vjp(z: Any, g: Any) -> Array:
        z = _float_array(z, "z")
        g64, J = np.asarray(g, dtype=np.float64), derivative(z)
        return _to_dtype(np.einsum("...i,...ij->...j", g64, J) if d.rowwise else g64 * J, z.dtype)

    evaluate = derivative if kind == "derivative" else value

    def pointwise(z: Any) -> Array:
        z = _float_array(z, "z")
        return _to_dtype(evaluate(z), z.dtype)

    fn: Callable[..., Array] = vjp if kind == "vjp" else pointwise
    fn.__name__ = fn.__qualname__ = f"{name}_{kind}"
    return fn


def activation_value(name: str, **params: float) -> Callable[[Any], Array]:
    """``f(z)`` of activation ``name``, lambdified from its SymPy value (softmax: row-wise)."""
    return _activation_callable(name, "value", tuple(sorted(params.items())))


def activation_derivative(name: str, **params: float) -> Callable[[Any], Array]:
    """``f'(z)`` of activation ``name``: ``sympy.diff`` of its value, lambdified to numpy.

    Elementwise, same shape and floating dtype as ``z``. For the row-wise ``softmax`` it returns
    the Jacobian, shaped ``z.shape + (n,)`` with ``J[..., i, j] = d softmax_i / d z_j``.
    """
    return _activation_callable(name, "derivative", tuple(sorted(params.items())))


def activation_vjp(name: str, **params: float) -> Callable[[Any, Any], Array]:
    """``(z, g) -> dL/dz`` given ``g = dL/df``: ``g * f'(z)``, or ``g @ J(z)`` row-wise (softmax)."""
    return _activation_callable(name, "vjp", tuple(sorted(params.items())))


# -- losses ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _CompiledLoss:
    n: int
    value: Callable      # numpy, (os, ys, eps, w, c) -> per-sample weighted loss
    grad: Callable       # numpy, same args -> list of n gradients
    mp_value: Callable   # mpmath, same args
    mp_grad: Callable


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compiled_loss(name: str, n: int) -> _CompiledLoss:
    stable, os, ys = _per_sample(name, n, stable=True)
    grad = [sp.diff(stable, o) for o in os]
    args = [os, ys, EPS, WEIGHT, SHIFT]
    return _CompiledLoss(n, lambdify_numpy(args, stable), lambdify_numpy(args, grad),
                         lambdify_mpmath(args, stable), lambdify_mpmath(args, grad))


def _prepare_loss(name: str, out: Any, y: Any) -> tuple[LossDef, Array, Array, np.dtype, float, int]:
    d = get_loss_def(name)
    out = _float_array(out, "out")
    dtype = out.dtype
    if out.ndim == 0:
        out = out.reshape(1, 1)
    elif out.ndim == 1:
        if d.rowwise:
            raise ValueError(f"loss {name!r} is row-wise: out must be (batch, outputs), got {out.shape}")
        out = out.reshape(-1, 1)
    elif out.ndim > 2:
        raise ValueError(f"out has shape {out.shape}; expected (batch, outputs)")
    y = np.asarray(y)
    if d.class_targets and y.shape != out.shape and y.size == out.shape[0]:
        idx = y.reshape(-1).astype(np.int64)  # integer class indices -> one-hot rows
        if idx.min(initial=0) < 0 or idx.max(initial=0) >= out.shape[1]:
            raise ValueError(f"class indices out of range [0, {out.shape[1]}): {idx}")
        y = np.zeros(out.shape)
        y[np.arange(idx.size), idx] = 1
    if y.size != out.size:
        raise ValueError(f"y has shape {y.shape}; expected {out.shape}"
                         + (" or class indices (batch,)" if d.class_targets else ""))
    y = _float_array(y, "y").astype(np.float64).reshape(out.shape)
    eps = float(np.finfo(dtype).eps)
    batch = out.shape[0]
    return d, out.astype(np.float64), y, dtype, eps, batch


def _loss_eval(name: str, out: Any, y: Any, which: str) -> tuple[Array, np.dtype, tuple[int, ...]]:
    d, o, yy, dtype, eps, batch = _prepare_loss(name, out, y)
    w = float(reduction_weight(name, batch))
    shape = np.shape(out)
    if d.rowwise:
        n = o.shape[1]
        c = _compiled_loss(name, n)
        ocols, ycols, shift = list(o.T), list(yy.T), o.max(axis=1)
        finite = np.isfinite(o).all(axis=1) & np.isfinite(yy).all(axis=1)
        rows = o.shape[0]
    else:
        c = _compiled_loss(name, 1)
        ocols, ycols, shift = [o.reshape(-1)], [yy.reshape(-1)], 0.0
        finite = np.isfinite(o.reshape(-1)) & np.isfinite(yy.reshape(-1))
        rows = o.size
    with np.errstate(all="ignore"):
        if which == "value":
            res = np.broadcast_to(np.asarray(c.value(ocols, ycols, eps, w, shift), dtype=np.float64),
                                  (rows,)).copy()[:, None]
        else:
            res = np.stack([np.broadcast_to(np.asarray(g, dtype=np.float64), (rows,))
                            for g in c.grad(ocols, ycols, eps, w, shift)], axis=-1)
    bad = ~np.isfinite(res).all(axis=1) & finite
    if bad.any():
        mp_fn = c.mp_value if which == "value" else c.mp_grad
        with mpmath.workdps(30):
            for r in np.nonzero(bad)[0]:
                oa = [_mpf(v[r]) for v in ocols]
                ya = [_mpf(v[r]) for v in ycols]
                v = mp_fn(oa, ya, _mpf(eps), _mpf(w), max(oa))
                res[r] = [float(x) for x in (v if which != "value" else [v])]
    return res, dtype, shape


@functools.cache
def loss_value(name: str) -> Callable[[Any, Any], float]:
    """``L(out, y)`` of loss ``name`` (batch reduction as in the registry), a Python float."""
    get_loss_def(name)

    def value(out: Any, y: Any) -> float:
        res, _, _ = _loss_eval(name, out, y, "value")
        return float(np.sum(res))
    value.__name__ = value.__qualname__ = f"{name}_value"
    return value


@functools.cache
def loss_gradient(name: str) -> Callable[[Any, Any], Array]:
    """``dL/dout`` of loss ``name``: ``sympy.diff`` of its value, lambdified; shaped and typed
    like ``out`` (integer class indices ``(batch,)`` accepted where the registry accepts them)."""
    get_loss_def(name)

    def gradient(out: Any, y: Any) -> Array:
        res, dtype, shape = _loss_eval(name, out, y, "grad")
        return _to_dtype(res.reshape(shape), dtype)
    gradient.__name__ = gradient.__qualname__ = f"{name}_gradient"
    return gradient


# -- mpmath at high precision ------------------------------------------------------------------
def _mp_map(fn: Callable[[mpmath.mpf], Any], x: Any) -> Any:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        return fn(_mpf(a))
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(a.shape):
        out[idx] = fn(_mpf(a[idx]))
    return out


def activation_value_mp(name: str, z: Any, *, dps: int = 50, **params: float) -> Any:
    """``f(z)`` at ``dps`` digits from the SymPy value (stable form): an mpf, or an object array."""
    d, pvals = _check_activation_call(name, params)
    if d.rowwise:
        raise TypeError("softmax_value_mp is not provided; use the SymPy expression with mpmath")
    fn = _compiled_activation(name).mp_f
    with mpmath.workdps(dps):
        return _mp_map(lambda v: fn(v, *[_mpf(p) for p in pvals]), z)


def activation_derivative_mp(name: str, z: Any, *, dps: int = 50, **params: float) -> Any:
    """``f'(z)`` at ``dps`` digits (SymPy's derivative, stable form): an mpf or an object array.

    For ``softmax``: ``z`` one row of ``n`` values; returns the ``n x n`` Jacobian (object array).
    """
    d, pvals = _check_activation_call(name, params)
    if d.rowwise:
        row = np.asarray(z, dtype=np.float64).reshape(-1)
        with mpmath.workdps(dps):
            return np.array(_compiled_softmax(row.size)[2]([_mpf(v) for v in row], _mpf(row.max())),
                            dtype=object)
    fn = _compiled_activation(name).mp_df
    with mpmath.workdps(dps):
        return _mp_map(lambda v: fn(v, *[_mpf(p) for p in pvals]), z)


def _loss_mp(name: str, out: Any, y: Any, dps: int, which: str) -> Any:
    d, o, yy, dtype, eps, batch = _prepare_loss(name, out, y)
    w = reduction_weight(name, batch)
    n = o.shape[1] if d.rowwise else 1
    c = _compiled_loss(name, n)
    with mpmath.workdps(dps):
        wm, em = mpmath.mpf(w.p) / w.q, _mpf(eps)
        if which == "value":
            total = mpmath.mpf(0)
            rows = o if d.rowwise else o.reshape(-1, 1)
            ys = yy if d.rowwise else yy.reshape(-1, 1)
            for orow, yrow in zip(rows, ys):
                total += c.mp_value([_mpf(v) for v in orow], [_mpf(v) for v in yrow], em, wm,
                                    _mpf(orow.max()))
            return total
        g = np.empty(o.shape, dtype=object)
        if d.rowwise:
            for b in range(o.shape[0]):
                g[b] = c.mp_grad([_mpf(v) for v in o[b]], [_mpf(v) for v in yy[b]], em, wm,
                                 _mpf(o[b].max()))
        else:
            for idx in np.ndindex(o.shape):
                g[idx] = c.mp_grad([_mpf(o[idx])], [_mpf(yy[idx])], em, wm, 0)[0]
        return g.reshape(np.shape(out))


def loss_value_mp(name: str, out: Any, y: Any, *, dps: int = 50) -> mpmath.mpf:
    """The loss at ``dps`` digits from its SymPy value (stable form), an mpf."""
    return _loss_mp(name, out, y, dps, "value")


def loss_gradient_mp(name: str, out: Any, y: Any, *, dps: int = 50) -> Array:
    """``dL/dout`` at ``dps`` digits (SymPy's derivative, stable form), an object array."""
    return _loss_mp(name, out, y, dps, "grad")
