"""The SymPy oracle on piecewise networks: every piecewise activation x every piecewise loss.

Regression guard for a wrong-branch bug: ``sympy.cse`` named a shared ``z > 0`` with a plain
Symbol, lambdify printed ``Heaviside(1 - y*Piecewise((z, x0), (exp(z) - 1, True)))`` by rewriting
it to a Piecewise, and SymPy read the Symbol ``x0`` as a variable covering every real number: the
``exp(z) - 1`` branch disappeared and elu -> hinge had gradient 0 where it is ``exp(z)`` (z < -1).
The fix (``network.conditions_as_numbers``, and Heaviside printed as a call; see docs/symbolic.md)
is checked here on a grid built to visit every branch.

The grid. "Piecewise" is derived from the SymPy definitions of the registry entries: an
activation or loss is piecewise when its canonical expression (the one network expressions use)
contains Piecewise, Max, Min, Abs, Heaviside or sign. For each (activation, loss) cell, networks of
depth 1 and 2 (depth 2 only when the loss needs a sigmoid/softmax output: the piecewise activation
is then the hidden layer), batch 1 and 3, bias on and off. The breakpoints of the activation
(where a condition of its definition changes truth value) are solved by SymPy; pre-activations are
*placed* by solving for the weights: every row of every layer holds a point of every interval
between breakpoints (>= 0.3 away from them; the outer intervals at 0.3, 1.3 and 2.6 beyond, so
down to 2.6 below the lowest breakpoint: the z < -1 region that exposed the bug). Targets ``y``
are chosen so that every condition of the loss takes both truth values, with targets of both
signs, and no truth value changes when any output pre-activation moves by +-MARGIN = 0.1 (so the
derivative is defined and finite differences do not straddle a kink).
``test_grid_covers_both_sides_of_every_kink`` checks that coverage; every case has a gradient that
is not identically zero.
"""
from __future__ import annotations

import functools
import itertools
import zlib
from dataclasses import dataclass

import numpy as np
import pytest
import sympy as sp
from sympy.core.relational import Relational

from gradcheck import Layer, NetworkSpec
from gradcheck.symbolic import (
    activation_derivative,
    activation_expr,
    compile_gradient,
    exact_gradient,
    loss_expr,
    network_gradient,
)
from gradcheck.symbolic.network import conditions_as_numbers, is_condition
from gradcheck.symbolic.primitives import lambdify_mpmath, lambdify_numpy
from reference.activations import ACTIVATIONS
from reference.losses import LOSSES
from reference.network import Network

#: nodes that make a definition piecewise (SymPy differentiates them branch by branch / to Heaviside)
KINK_NODES = (sp.Piecewise, sp.Max, sp.Min, sp.Abs, sp.Heaviside, sp.sign)
#: no condition may change truth value when an output pre-activation moves this far
MARGIN = 0.1
#: last activation a loss needs (the reference enforces it)
LAST = {"probability": "sigmoid", "distribution": "softmax"}
INPUT, HIDDEN, OUT = 3, 4, 3  # input size; widths: hidden layer (= depth-1 output), depth-2 output


def canonical_activation(name: str) -> sp.Basic:
    """The canonical SymPy value of an activation (softmax: the 3-vector)."""
    return activation_expr(name, n=3)[0]


def canonical_loss(name: str, k: int = OUT) -> tuple[sp.Expr, sp.Matrix, sp.Matrix]:
    """One sample's canonical loss in output symbols ``O[0, :]`` and targets ``Y[0, :]``."""
    return loss_expr(name, n_outputs=max(k, LOSSES[name].min_outputs), batch=1)


PIECEWISE_ACTIVATIONS = [a for a in ACTIVATIONS if canonical_activation(a).has(*KINK_NODES)]
PIECEWISE_LOSSES = [l for l in LOSSES if canonical_loss(l)[0].has(*KINK_NODES)]


def conditions(expr: sp.Basic) -> list[Relational]:
    """Every relation whose truth value selects a branch of ``expr``: Piecewise conditions, the
    comparisons a Max/Min makes, the sign test of Abs/sign/Heaviside."""
    found: set[sp.Basic] = set()
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Piecewise):
            for pair in node.args:
                found |= sp.sympify(pair.cond).atoms(Relational)
        elif isinstance(node, (sp.Max, sp.Min)):
            found |= {sp.Ge(a, b) for a, b in itertools.combinations(node.args, 2)}
        elif isinstance(node, (sp.Abs, sp.sign, sp.Heaviside)):
            found.add(sp.Ge(node.args[0], 0))
    return sorted((c for c in found if isinstance(c, Relational)), key=sp.default_sort_key)


@functools.cache
def breakpoints(name: str) -> list[float]:
    """Points where a condition of the activation's definition changes truth value (SymPy)."""
    expr, z = activation_expr(name)
    points: set[float] = set()
    for rel in conditions(expr):
        for p in sp.solveset(rel, z, sp.S.Reals).boundary:
            if p.is_finite:
                points.add(float(p))
    return sorted(points)


def regions(bps: list[float]) -> list[list[float]]:
    """Pre-activations for every interval between breakpoints, >= 0.3 away from them; the outer
    intervals reach 2.6 beyond the outermost breakpoints."""
    lo, hi = bps[0], bps[-1]
    inner = [[a + 0.3 * (b - a), a + 0.7 * (b - a)] for a, b in zip(bps, bps[1:])]
    return [[lo - 0.3, lo - 1.3, lo - 2.6], *inner, [hi + 0.3, hi + 1.3, hi + 2.6]]


#: output pre-activations for the fixed last layers of bce / categorical cross-entropy: both sides
#: of the clipping (sigmoid(+-40) is clipped at eps / 1 - eps; a softmax logit 40 below the others
#: is a probability < eps) and the unclipped middle. The clipped ones stay in one column, so the
#: weights feeding the unclipped outputs stay O(1) (large ones make the third derivative, and so
#: the truncation error of the finite differences, large).
SIGMOID_COLUMNS = [[-40.0], [-1.1, 0.4, 1.7], [40.0]]
SOFTMAX_ROWS = [[-40.0, 0.5, 0.2], [-40.0, -0.9, 1.3], [-40.0, 1.1, 0.3]]


# --------------------------------------------------------------------------------------------
# building one case: params placing every pre-activation, targets placing every loss condition
# --------------------------------------------------------------------------------------------
@dataclass
class Case:
    spec: NetworkSpec
    params: dict
    X: np.ndarray
    y: np.ndarray
    pre: list            # the pre-activations of every layer (reference forward)
    loss_truth: dict     # condition template -> set of truth values met by the outputs


def _spec(act: str, loss: str, depth: int, batch: int, bias: bool) -> NetworkSpec:
    last = LAST.get(LOSSES[loss].output)
    if last is not None:
        layers = (Layer(HIDDEN, act, bias), Layer(OUT, last, bias))
    elif depth == 1:
        layers = (Layer(HIDDEN, act, bias),)
    else:
        layers = (Layer(HIDDEN, act, bias), Layer(OUT, act, bias))
    return NetworkSpec(input_dim=INPUT, layers=layers, loss=loss, batch=batch, dtype="float64",
                       init="normal", seed=0)


def _targets_for_layer(act: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Pre-activations for a layer: each row holds a point of every interval (the width allows
    it), the rest drawn from all points, in random column order; softmax: whole rows."""
    B, w = shape
    if act == "softmax":
        start = int(rng.integers(len(SOFTMAX_ROWS)))
        return np.array([SOFTMAX_ROWS[(b + start) % len(SOFTMAX_ROWS)] for b in range(B)])[:, :w]
    if act == "sigmoid":
        return np.array([[g[int(rng.integers(len(g)))] for g in SIGMOID_COLUMNS][:w] for _ in range(B)])
    groups = regions(breakpoints(act))
    every = [p for g in groups for p in g]
    rows = []
    for _ in range(B):
        row = [g[int(rng.integers(len(g)))] for g in groups][:w]
        rest = [p for p in every if p not in row]
        row += list(rng.choice(rest, w - len(row), replace=False))
        rows.append(rng.permutation(row))
    return np.array(rows)


@functools.cache
def _loss_conditions(loss: str, k: int):
    """The loss's conditions on one row, a numpy evaluator of their truth values, and for each
    condition its template (written in scalar ``o``, ``y``) and the outputs it involves."""
    L, O, Y = canonical_loss(loss, k)
    rels = conditions(L)
    o, y = sp.symbols("o y", real=True)
    back = {**{O[0, j]: o for j in range(k)}, **{Y[0, j]: y for j in range(k)}}
    templates = [str(r.xreplace(back)) for r in rels]
    involves = [{j for j in range(k) if r.has(O[0, j]) or r.has(Y[0, j])} for r in rels]
    fn = sp.lambdify([list(O.row(0)), list(Y.row(0))], rels, modules="numpy")
    return rels, fn, templates, involves


def _truth(fn, o_row: np.ndarray, y_row: np.ndarray) -> tuple[bool, ...]:
    return tuple(bool(v) for v in fn(list(o_row), list(y_row)))


def _row_is_clean(act, fn, z_row: np.ndarray, y_row: np.ndarray, which: list[int] | None = None) -> bool:
    """No condition (of ``which``, default all) changes truth value when one output pre-activation
    moves by +-MARGIN, nor, on a flat piece of the activation (relu below 0, hard_tanh beyond +-1:
    the output does not move at all), when the output itself moves by +-MARGIN."""
    o_row = act.f(z_row[None])[0]
    # flat: SymPy's derivative is exactly 0 (sigmoid(40) rounds to 1.0 but its slope is 4e-18)
    flat = activation_derivative(act.name)(z_row) == 0 if act.elementwise else np.zeros(z_row.size, bool)

    def truth(o: np.ndarray) -> tuple[bool, ...]:
        t = _truth(fn, o, y_row)
        return t if which is None else tuple(t[i] for i in which)

    base = truth(o_row)
    for j, d in itertools.product(range(z_row.size), (-MARGIN, MARGIN)):
        zp = z_row.copy()
        zp[j] += d
        if truth(act.f(zp[None])[0]) != base:
            return False
        if flat[j]:
            oq = o_row.copy()
            oq[j] += d
            if truth(oq) != base:
                return False
    return True


def _choose_targets(loss: str, act, Z: np.ndarray, offset: int) -> np.ndarray:
    """Targets of the loss's kind that put each output clearly on one side of every loss
    condition. Greedy: each target is the clean candidate meeting the most combinations not met
    yet of (placed pre-activation value, loss condition, truth value, sign of the target), so both
    sides of every condition are covered, from every placed point of the activation and with
    targets of both signs (the elu bug needed z < -1, y = -1 and an active hinge)."""
    B, k = Z.shape
    _, fn, templates, involves = _loss_conditions(loss, k)
    kind = LOSSES[loss].target
    point = np.round(Z, 6)  # the placed values (up to the rounding of solving for the weights)
    seen: set = set()
    Y = np.zeros((B, k))
    O = act.f(Z)

    def met(b: int, y_row: np.ndarray, cols: set[int]) -> set:
        t = _truth(fn, O[b], y_row)
        return {(float(point[b, j]), templates[i], t[i], bool(y_row[j] > 0))
                for i in range(len(t)) for j in involves[i] & cols}

    for b in range(B):
        if kind in ("class", "one_hot", "distribution"):
            rows = (np.eye(k) if kind != "distribution" else
                    np.array([np.roll([0.0, 0.6, 0.4] + [0.0] * (k - 3), s) for s in range(k)]))
            rows = np.roll(rows, -(b + offset), axis=0)
            clean = [r for r in rows if _row_is_clean(act, fn, Z[b], r)]
            assert clean, f"{loss}: no clean target row for outputs {O[b]}"
            # a row whose loss does not depend on the outputs (the class on a clipped output) last
            moves = [bool(np.any(LOSSES[loss].grad(O[b:b + 1], r[None]))) for r in clean]
            Y[b] = max(zip(moves, clean), key=lambda mr: (mr[0], len(met(b, mr[1], set(range(k))) - seen)))[1]
            seen |= met(b, Y[b], set(range(k)))
            continue
        # sign: +-1 as the registry says, +-2 where +-1 cannot reach the inactive side (|out| < 1)
        cands = {"sign": [1.0, -1.0, 2.0, -2.0], "probability": [0.3, 0.8, 0.0, 1.0]}.get(kind)
        for j in range(k):
            mine = [i for i in range(len(templates)) if j in involves[i]]
            options = cands if cands is not None else [O[b, j] + d for d in (0.5, -0.5, 1.6, -1.6, 2.5, -2.5)]
            options = np.roll(options, -(b + j + offset) % 2)  # alternate the preferred sign
            best, best_n = None, -1
            for c in options:
                trial = Y[b].copy()
                trial[j] = c
                if not _row_is_clean(act, fn, Z[b], trial, mine):
                    continue
                n = len(met(b, trial, {j}) - seen)
                if n > best_n:
                    best, best_n = trial, n
            assert best is not None, f"{loss}: no clean target for output {O[b, j]}"
            Y[b] = best
            seen |= met(b, Y[b], {j})
        assert _row_is_clean(act, fn, Z[b], Y[b])
    return Y


def build_case(act: str, loss: str, depth: int, batch: int, bias: bool) -> Case:
    """Parameters, inputs and targets that put every pre-activation where the grid wants it."""
    spec = _spec(act, loss, depth, batch, bias)
    net = Network(spec)
    key = f"{act}/{loss}/{depth}/{batch}/{bias}"
    for attempt in range(20):
        rng = np.random.default_rng(zlib.crc32(f"{key}/{attempt}".encode()))
        X = np.eye(batch, INPUT) * rng.uniform(0.8, 1.5, (batch, 1)) + 0.2 * rng.normal(size=(batch, INPUT))
        params: dict = {}
        a = X
        ok = True
        for i, layer in enumerate(spec.layers, start=1):
            T = _targets_for_layer(layer.activation, (batch, layer.width), rng)
            # the bias carries each unit's mean pre-activation, the weights the variation around it
            b = T.mean(axis=0) + rng.normal(0.0, 0.1, layer.width) if layer.bias else np.zeros(layer.width)
            W = np.linalg.lstsq(a, T - b, rcond=None)[0]  # exact: a has full row rank (checked)
            ok = ok and np.linalg.matrix_rank(a) == batch and np.linalg.cond(a) < 50
            params[f"W{i}"] = W
            if layer.bias:
                params[f"b{i}"] = b
            a = net.activations[i - 1].f(T)
        if not ok:
            continue
        _, cache = net.forward(params, X)
        y = _choose_targets(loss, net.activations[-1], cache.pre[-1], attempt)
        if not any(np.any(g) for g in net.loss_and_grads(params, X, y)[1].values()):
            continue  # every output on a flat piece or an inactive side: the case would test nothing
        _, fn, templates, _ = _loss_conditions(loss, spec.output_dim)
        truth: dict = {}
        for o_row, y_row in zip(cache.out, y):
            for tpl, v in zip(templates, _truth(fn, o_row, y_row)):
                truth.setdefault(tpl, set()).add(v)
        return Case(spec, params, X, y, list(cache.pre), truth)
    raise AssertionError(f"{key}: no well-conditioned placement found")


def grid() -> list[tuple[str, str, int, int, bool]]:
    """Per cell: depth 1 and 2 (only 2 when the loss needs a sigmoid/softmax output) x batch 1 and
    3 x bias on and off. The compiled gradient is cached per structure (batch is not part of it)."""
    out = []
    for act, loss in itertools.product(PIECEWISE_ACTIVATIONS, PIECEWISE_LOSSES):
        depths = (2,) if LOSSES[loss].output in LAST else (1, 2)
        out += [(act, loss, d, b, bias) for d in depths for b in (1, 3) for bias in (True, False)]
    return out


GRID = grid()


# --------------------------------------------------------------------------------------------
# comparisons
# --------------------------------------------------------------------------------------------
def central_differences(net: Network, params: dict, X: np.ndarray, y: np.ndarray, h: float = 1e-6) -> dict:
    """Central differences of the reference loss, one element at a time (plain loop)."""
    grads = {}
    for name, value in params.items():
        g = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            p = {k: v.copy() for k, v in params.items()}
            p[name][idx] = value[idx] + h
            up = net.loss(p, X, y)
            p[name][idx] = value[idx] - h
            down = net.loss(p, X, y)
            g[idx] = (up - down) / (2 * h)
        grads[name] = g
    return grads


def worst(claimed: dict, truth: dict, rel: float, floor: float) -> float:
    """max over elements of |claimed - truth| / (rel |truth| + floor): <= 1 passes."""
    return max(float(np.max(np.abs(claimed[k] - truth[k]) / (rel * np.abs(truth[k]) + floor))) for k in truth)


#: symbolic (float64 SymPy, or 50-digit mpmath rounded once) vs the reference's hand-written
#: backprop: float64 evaluations of the same derivative differ by rounding, a few ulps of the
#: terms summed, and the terms are at most ~the gradient's scale S (its largest entry) at these
#: sizes: 1e-12 relative with an absolute floor 1e-12 * S, i.e. |g - ref| <= 1e-12 (|ref| + S).
#: Measured worst over the grid: 1.5e-15 (|ref| + S), ~700x below. A wrong branch is off by O(1).
REF_REL = 1e-12
#: against central differences with h = 1e-6 on the reference loss: error ~ h^2 |f'''| / 6
#: (truncation) + eps |L| / h (rounding of the loss), i.e. ~1e-13 f''' + 2e-10 |L| for O(1)
#: weights: 1e-8 relative with a floor 1e-8 * max(1, |L|, S). Measured worst: 4.9e-10 of
#: (|fd| + max(1, |L|, S)), ~20x below.
FD_REL = 1e-8


def _check(case: Case) -> None:
    net = Network(case.spec)
    loss, ref = net.loss_and_grads(case.params, case.X, case.y)
    fd = central_differences(net, case.params, case.X, case.y)
    scale = max(float(np.max(np.abs(v))) for v in ref.values())
    assert scale > 0, "the placement left every parameter without influence: the case tests nothing"
    sym = network_gradient(case.spec, case.params, case.X, case.y)
    exact = exact_gradient(case.spec, case.params, case.X, case.y)
    for what, g in (("network_gradient", sym), ("exact_gradient", exact)):
        e_ref = worst(g, ref, REF_REL, REF_REL * scale + 1e-300)
        assert e_ref <= 1, f"{what} vs reference: {e_ref:.3g} x tolerance\n{g}\n{ref}"
        e_fd = worst(g, fd, FD_REL, FD_REL * max(1.0, abs(loss), scale))
        assert e_fd <= 1, f"{what} vs central differences: {e_fd:.3g} x tolerance\n{g}\n{fd}"


@pytest.mark.parametrize("act,loss,depth,batch,bias", GRID,
                         ids=[f"{a}-{l}-d{d}-b{b}-{'bias' if bi else 'nobias'}" for a, l, d, b, bi in GRID])
def test_piecewise_grid(act, loss, depth, batch, bias):
    _check(build_case(act, loss, depth, batch, bias))


# --------------------------------------------------------------------------------------------
# the grid is what it claims
# --------------------------------------------------------------------------------------------
def test_piecewise_lists_are_derived_from_the_registries():
    # derived, not hard-coded: these known members must be found by the derivation
    assert {"relu", "leaky_relu", "elu", "hard_tanh"} <= set(PIECEWISE_ACTIVATIONS)
    assert {"hinge", "squared_hinge", "mae", "huber"} <= set(PIECEWISE_LOSSES)
    assert "tanh" not in PIECEWISE_ACTIVATIONS and "mse" not in PIECEWISE_LOSSES
    assert breakpoints("elu") == [0.0] and breakpoints("hard_tanh") == [-1.0, 1.0]
    assert len(GRID) == sum(4 if LOSSES[l].output in LAST else 8 for l in PIECEWISE_LOSSES) * len(PIECEWISE_ACTIVATIONS)


def test_grid_covers_both_sides_of_every_kink():
    """Per (activation, loss) cell, over its variants: every interval between the activation's
    breakpoints holds pre-activations (>= MARGIN from any breakpoint, one >= 1 below the lowest),
    and every loss condition is met both true and false."""
    for act, loss in itertools.product(PIECEWISE_ACTIVATIONS, PIECEWISE_LOSSES):
        bps = np.array(breakpoints(act))
        hit: set[int] = set()
        truth: dict = {}
        deep_left = False
        for a, l, d, b, bias in GRID:
            if (a, l) != (act, loss):
                continue
            case = build_case(a, l, d, b, bias)
            for layer, z in zip(case.spec.layers, case.pre):
                if layer.activation != act:
                    continue
                assert np.min(np.abs(z[..., None] - bps)) >= MARGIN, (act, loss, z)
                hit |= set(np.searchsorted(bps, z.ravel()).tolist())
                deep_left |= bool(np.any(z <= bps[0] - 1.0))
            for tpl, vals in case.loss_truth.items():
                truth.setdefault(tpl, set()).update(vals)
        assert hit == set(range(len(bps) + 1)), (act, loss, hit)
        assert deep_left, (act, loss)
        assert truth and all(v == {True, False} for v in truth.values()), (act, loss, truth)


# --------------------------------------------------------------------------------------------
# the failing case the property suite found, and the mechanism
# --------------------------------------------------------------------------------------------
FOUND_SPEC = NetworkSpec(input_dim=1, layers=(Layer(width=4, activation="elu", bias=True),), loss="hinge",
                         batch=1, dtype="float64", init="normal", seed=1, skips=())
FOUND_PARAMS = {"W1": np.array([[0.345584192064786, 0.8216181435011584, 0.33043707618338714, -1.303157231604361]]),
                "b1": np.array([0.09053558666731178, 0.04463745723640113, -0.053695323536028516, 0.05811181041963531])}
FOUND_X, FOUND_Y = np.array([[1.0]]), np.array([[-1.0, -1.0, -1.0, -1.0]])


@pytest.mark.parametrize("method", ["graph", "diff"])
def test_regression_elu_hinge_below_minus_one(method):
    """Unit 3 has z = -1.245: hinge is active (1 + elu(z) = 0.29 > 0), so dL/db = exp(z), not 0."""
    _, ref = Network(FOUND_SPEC).loss_and_grads(FOUND_PARAMS, FOUND_X, FOUND_Y)
    z = FOUND_PARAMS["W1"][0, 3] + FOUND_PARAMS["b1"][3]
    assert z < -1 and ref["b1"][3] == pytest.approx(np.exp(z), rel=1e-15)
    for fn in (network_gradient, exact_gradient):
        g = fn(FOUND_SPEC, FOUND_PARAMS, FOUND_X, FOUND_Y, method=method)
        assert g["b1"][3] == pytest.approx(np.exp(z), rel=1e-14), (fn.__name__, g)
        assert worst(g, ref, REF_REL, REF_REL) <= 1, (fn.__name__, g, ref)


def _opaque_conditions(cond: sp.Basic) -> list[sp.Basic]:
    """The parts of a condition that are not relations: bare symbols standing for a truth value."""
    if cond in (sp.true, sp.false) or isinstance(cond, Relational):
        return []
    if isinstance(cond, sp.logic.boolalg.BooleanFunction):
        return [bad for a in cond.args for bad in _opaque_conditions(a)]
    return [cond]


def test_compiled_code_names_no_condition():
    """After CSE no assignment holds a truth value and every Piecewise condition is built from
    relations on real numbers (no bare placeholder symbol); named conditions are real 0/1 numbers."""
    specs = [(FOUND_SPEC, "graph"), (FOUND_SPEC, "diff"), (_spec("leaky_relu", "huber", 2, 3, True), "graph"),
             (_spec("hard_tanh", "squared_hinge", 1, 1, False), "diff"), (_spec("relu", "bce", 2, 1, False), "graph")]
    indicators = 0
    for spec, method in specs:
        c = compile_gradient(spec, method=method)
        assert not [s for s, v in c._replacements if is_condition(v)], (spec.label(), method)
        for sym, value in c._replacements:
            if isinstance(value, sp.Piecewise) and {p.expr for p in value.args} == {0, 1}:
                indicators += 1
                assert sym.is_real, (sym, value)
        for e in [v for _, v in c._replacements] + list(c._reduced):
            for pw in e.atoms(sp.Piecewise):
                assert not [bad for pair in pw.args for bad in _opaque_conditions(pair.cond)], pw
    assert indicators  # the conditions shared by several branches were named, as numbers


def test_named_condition_and_heaviside_printing():
    """The mechanism in isolation: a Symbol standing for ``z > 0`` inside a Heaviside."""
    z, y, e = sp.symbols("z y e", real=True)
    c = sp.Symbol("x0")  # what sympy.cse names a shared condition with
    expr = sp.Heaviside(1 - y * sp.Piecewise((z, c), (e - 1, True)))
    # (SymPy 1.14's expr.rewrite(Piecewise), what lambdify used to print, drops the e - 1 branch:
    # x0.as_set() is the universal set. Not asserted: a SymPy fix must not fail this test.)
    # CSE postprocessing: the placeholder becomes a real 0/1 number, tested by a relation
    repl, red = conditions_as_numbers([(c, z > 0)], [expr])
    (number, value), = repl
    assert number.is_real and value == sp.Piecewise((1, z > 0), (0, True))
    assert red[0] == sp.Heaviside(1 - y * sp.Piecewise((z, number > 0), (e - 1, True)))
    # ... which SymPy's own rewrite now handles (both branches survive) ...
    assert red[0].rewrite(sp.Piecewise).has(e)
    # ... and Heaviside is printed as a call, so even the placeholder form evaluates the right branch
    zv, yv = -1.5, -1.0
    ev = float(np.exp(zv))  # 1 - y (e^z - 1) = e^z > 0: Heaviside is 1 (the z branch would give 0)
    for lam in (lambdify_numpy, lambdify_mpmath):
        assert float(lam([z, y, e, c], expr)(zv, yv, ev, zv > 0)) == 1.0
        assert float(lam([z, y, e], red[0], cse=lambda ex: (repl, ex))(zv, yv, ev)) == 1.0
    assert float(lambdify_numpy([z], sp.Heaviside(z))(0.0)) == 0.5
    assert float(lambdify_mpmath([z], sp.Heaviside(z))(0.0)) == 0.5
