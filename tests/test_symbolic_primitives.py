"""The SymPy oracle for single primitives: every registry derivative against SymPy's.

Tolerance. Both sides are float64 evaluations of the same derivative by different formulas, so
they differ by rounding only: a few ulps of the *terms* each formula adds or subtracts (e.g. the
registry's ``1 - tanh(z)**2`` or ``sigmoid * (1 + z * (1 - sigmoid))`` carry an absolute error
of about ``|z| eps`` when the result is tiny). The error is therefore measured relative to
``max(|sympy value|, floor)``, with ``floor`` the scale of those terms: 1 for activations (and the
softmax VJP with O(1) upstream gradients), the reduction weight ``1/batch`` for losses (1 for
``half_sse``). ``RTOL = 1e-12`` (4500 ulps) covers that rounding at ``|z|`` up to 1e3 with
room to spare (the worst case measured is ~4e-15), while a real derivative bug (wrong sign,
constant, factor, term) is off by 1e-6 or more; the planted bugs below check that it is caught.
"""
from __future__ import annotations

import ast
import dataclasses
import pathlib
import subprocess
import sys
import warnings

import mpmath
import numpy as np
import pytest
import sympy as sp

from gradcheck import symbolic as S
from gradcheck.symbolic import primitives as P
from reference.activations import ACTIVATIONS, Activation
from reference.losses import LOSSES, Loss

RTOL = 1e-12
ROOT = pathlib.Path(__file__).resolve().parents[1]


# -- the comparison used for real entries and planted bugs alike ------------------------------
def mismatch(claimed, derived, floor: float) -> float:
    """max |claimed - derived| / max(|derived|, floor); equal infinities count as agreement."""
    c = np.asarray(claimed, dtype=np.float64)
    d = np.asarray(derived, dtype=np.float64)
    assert c.shape == d.shape, (c.shape, d.shape)
    same = (c == d) | (np.isnan(c) & np.isnan(d))
    with np.errstate(all="ignore"):
        err = np.abs(c - d) / np.maximum(np.abs(d), floor)
    err = np.where(same, 0.0, err)
    err = np.where(np.isnan(err), np.inf, err)
    return float(err.max(initial=0.0))


def z_grid(kinks=()) -> np.ndarray:
    """Wide grid: +-1e-8 .. +-1e3 (log-spaced), 0, a dense linear part; kinks left out."""
    mag = np.logspace(-8, 3, 331)
    z = np.concatenate([-mag, [0.0], mag, np.linspace(-6, 6, 241), [-745.0, -709.5, 709.5, 710.0]])
    for k in kinks:
        z = z[np.abs(z - k) > 1e-7]
    return z


def activation_mismatch(entry: Activation) -> float:
    """How far a registry activation's derivative (VJP for softmax) and value are from SymPy's."""
    params = dict(entry.params)
    if not entry.elementwise:
        rng = np.random.default_rng(0)
        worst = 0.0
        for n in (2, 3, 5):
            for scale in (1.0, 30.0, 1e3):
                z = rng.normal(size=(40, n)) * scale
                g = rng.normal(size=(40, n))
                worst = max(worst, mismatch(entry.vjp(z, g), S.activation_vjp(entry.name, **params)(z, g), 1.0),
                            mismatch(entry.f(z), S.activation_value(entry.name, **params)(z), 1.0))
        return worst
    kinks = set(entry.kinks) | set(S.activation_kinks(entry.name, **params))
    z = z_grid(kinks)
    return max(mismatch(entry.df(z), S.activation_derivative(entry.name, **params)(z), 1.0),
               mismatch(entry.f(z), S.activation_value(entry.name, **params)(z), 1.0))


def _values(rng, shape, kind):
    """Real numbers spanning 1e-8 .. 1e3 in magnitude, both signs."""
    mag = rng.choice([1e-8, 1e-3, 0.3, 1.7, 4.0, 30.0, 300.0, 1e3], size=shape) * rng.uniform(0.5, 1.0, size=shape)
    return mag * rng.choice([-1.0, 1.0], size=shape)


def loss_cases(loss: Loss, seed: int = 0):
    """(out, y) pairs valid for the loss, with extreme values, away from its kinks."""
    rng = np.random.default_rng(seed)
    B, n = 8, 3
    for _ in range(6):
        if loss.output == "probability":
            out = rng.uniform(0, 1, (B, n))
            out[0, :] = [1e-300, 1e-12, 1 - 1e-12]
        elif loss.output == "distribution":
            logits = _values(rng, (B, n), "real") / 10
            out = np.exp(logits - logits.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        elif loss.output == "log_rate":
            out = np.clip(_values(rng, (B, n), "real"), -1e3, 700.0)
            out[0, :2] = [709.0, 800.0]  # near the largest finite exp; exp(800)/batch is inf on both sides
        else:
            out = _values(rng, (B, n), "real")
        t = loss.target
        if t == "real":
            y = _values(rng, (B, n), "real")
        elif t == "probability":
            y = rng.uniform(0, 1, (B, n))
            y[1, :] = [0.0, 1.0, 0.5]
        elif t == "sign":
            y = rng.choice([-1.0, 1.0], (B, n))
        elif t == "count":
            y = rng.integers(0, 6, (B, n)).astype(np.float64)
        elif t == "class":
            y = np.eye(n)[rng.integers(0, n, B)]
        elif t == "distribution":
            y = rng.dirichlet(np.ones(n), B)
            y[0] = [0.0, 0.25, 0.75]  # 0 log 0
        else:  # pragma: no cover - a new target kind needs a generator here
            raise AssertionError(f"no test data for target kind {t!r}")
        # away from kinks: mae (o == y), huber (|o - y| == 1), hinge (y o == 1) have measure zero
        # for these continuous draws; assert it rather than assume it
        if loss.name in ("mae", "huber"):
            assert np.all(np.abs(out - y) > 1e-12) and np.all(np.abs(np.abs(out - y) - 1) > 1e-9)
        if loss.name == "hinge":
            assert np.all(np.abs(y * out - 1) > 1e-9)
        yield out, y


def loss_mismatch(entry: Loss) -> float:
    """How far a registry loss's gradient and value are from SymPy's, over :func:`loss_cases`."""
    worst = 0.0
    for out, y in loss_cases(entry):
        floor = 1.0 if S.LOSS_DEFS[entry.name].reduction == "sum" else 1.0 / out.shape[0]
        worst = max(worst, mismatch(entry.grad(out, y), S.loss_gradient(entry.name)(out, y), floor))
        value_floor = floor * np.sum(np.abs(out) + np.abs(y) + 1)  # the size of the summed terms
        worst = max(worst, mismatch(entry.value(out, y), S.loss_value(entry.name)(out, y), value_floor))
    return worst


# -- every registry entry has a SymPy definition and agrees with it ---------------------------
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_matches_sympy(name):
    if name not in S.ACTIVATION_DEFS:
        pytest.fail(f"registry activation {name!r} has no SymPy definition in gradcheck.symbolic")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        err = activation_mismatch(ACTIVATIONS[name])
    assert err <= RTOL, f"{name}: registry vs SymPy derivative differ by {err:.3e} (tolerance {RTOL:g})"


@pytest.mark.parametrize("name,alpha", [("leaky_relu", 0.2), ("elu", 0.5), ("elu", 2.0)])
def test_activation_parameters(name, alpha):
    entry = ACTIVATIONS[name].with_params(alpha=alpha)
    assert activation_mismatch(entry) <= RTOL


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_matches_sympy(name):
    if name not in S.LOSS_DEFS:
        pytest.fail(f"registry loss {name!r} has no SymPy definition in gradcheck.symbolic")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        err = loss_mismatch(LOSSES[name])
    assert err <= RTOL, f"{name}: registry vs SymPy gradient differ by {err:.3e} (tolerance {RTOL:g})"


# (every registry name has a SymPy definition: tests/test_registry_coverage.py)


def test_reductions_and_kinds_agree_with_the_registry_docs():
    for name, entry in LOSSES.items():
        expected = "sum" if "no batch mean" in entry.reduction else "mean"
        assert S.LOSS_DEFS[name].reduction == expected, name
        assert S.LOSS_DEFS[name].class_targets == (entry.target == "class"), name


# -- planted bugs are caught by the same comparison ------------------------------------------
PLANTED_ACTIVATIONS = {
    "tanh df = 1 - z": dataclasses.replace(ACTIVATIONS["tanh"], _df=lambda z: 1 - z),
    "sigmoid df off by 1e-6": dataclasses.replace(
        ACTIVATIONS["sigmoid"], _df=lambda z: (1 + 1e-6) * ACTIVATIONS["sigmoid"].df(z)),
    "gelu_tanh wrong constant": dataclasses.replace(
        ACTIVATIONS["gelu_tanh"], _df=lambda z: ACTIVATIONS["gelu_tanh"].df(z * (1 + 1e-4))),
    "softplus df = sigmoid(-z)": dataclasses.replace(ACTIVATIONS["softplus"],
                                                     _df=lambda z: ACTIVATIONS["sigmoid"].f(-z)),
    "elu df forgets alpha": dataclasses.replace(
        ACTIVATIONS["elu"].with_params(alpha=0.5), _df=lambda z, alpha: np.where(z > 0, 1, np.exp(np.minimum(z, 0)))),
    "softmax vjp without the sum term": dataclasses.replace(
        ACTIVATIONS["softmax"], _vjp=lambda z, g: ACTIVATIONS["softmax"].f(z) * g),
}

PLANTED_LOSSES = {
    "mse without 1/batch": dataclasses.replace(LOSSES["mse"], _grad=lambda o, y: 2 * (o - y)),
    "bce_with_logits sign flip": dataclasses.replace(
        LOSSES["bce_with_logits"], _grad=lambda o, y: -LOSSES["bce_with_logits"].grad(o, y)),
    "softmax_cross_entropy missing softmax": dataclasses.replace(
        LOSSES["softmax_cross_entropy"], _grad=lambda o, y: (o - y) / o.shape[0]),
    "huber with delta 2": dataclasses.replace(
        LOSSES["huber"], _grad=lambda o, y: np.clip(o - y, -2, 2) / o.shape[0]),
}


@pytest.mark.parametrize("bug", list(PLANTED_ACTIVATIONS))
def test_planted_activation_bug_is_caught(bug):
    with np.errstate(all="ignore"):
        err = activation_mismatch(PLANTED_ACTIVATIONS[bug])
    assert err > 1e3 * RTOL, f"planted bug {bug!r} not caught (mismatch {err:.3e})"


@pytest.mark.parametrize("bug", list(PLANTED_LOSSES))
def test_planted_loss_bug_is_caught(bug):
    with np.errstate(all="ignore"):
        err = loss_mismatch(PLANTED_LOSSES[bug])
    assert err > 1e3 * RTOL, f"planted bug {bug!r} not caught (mismatch {err:.3e})"


# -- the stable forms are the same functions as the canonical ones ---------------------------
@pytest.mark.parametrize("name", [n for n, d in P.ACTIVATION_DEFS.items() if d.stable and not d.rowwise])
def test_stable_activation_form_is_the_same_function(name):
    d = P.ACTIVATION_DEFS[name]
    params = {k: sp.Rational(repr(v)) for k, v in d.params.items()}
    canonical, stable = d.value(P.Z, **params), d.stable(P.Z, **params)
    f = [P.lambdify_mpmath([P.Z], e) for e in (canonical, stable, sp.diff(canonical, P.Z), sp.diff(stable, P.Z))]
    with mpmath.workdps(60):
        for v in np.concatenate([np.linspace(-20, 20, 81), [-1e-9, 1e-9, 0.0]]):
            x = mpmath.mpf(float(v))
            assert abs(f[0](x) - f[1](x)) <= mpmath.mpf(10) ** -45 * (1 + abs(f[0](x))), (name, v)
            assert abs(f[2](x) - f[3](x)) <= mpmath.mpf(10) ** -45 * (1 + abs(f[2](x))), (name, v)


@pytest.mark.parametrize("name", [n for n, d in P.LOSS_DEFS.items() if d.stable])
def test_stable_loss_form_is_the_same_function(name):
    d = P.LOSS_DEFS[name]
    n = 3 if d.rowwise else 1
    canonical, os, ys = P._per_sample(name, n)
    stable, _, _ = P._per_sample(name, n, stable=True)
    args = [os, ys, P.EPS, P.WEIGHT, P.SHIFT]
    fc, fs = P.lambdify_mpmath(args, canonical), P.lambdify_mpmath(args, stable)
    gc = P.lambdify_mpmath(args, [sp.diff(canonical, o) for o in os])
    gs = P.lambdify_mpmath(args, [sp.diff(stable, o) for o in os])
    rng = np.random.default_rng(1)
    with mpmath.workdps(60):
        for _ in range(40):
            o = [mpmath.mpf(float(v)) for v in rng.normal(size=n) * 8]
            y = [mpmath.mpf(float(v)) for v in (rng.dirichlet(np.ones(n)) if n > 1 else rng.uniform(0, 1, 1))]
            shift = mpmath.mpf(float(rng.normal() * 5))  # any shift: the value must not depend on it
            a = (o, y, mpmath.mpf(2) ** -52, mpmath.mpf(1) / 4, shift)
            assert abs(fc(*a) - fs(*a)) <= mpmath.mpf(10) ** -45 * (1 + abs(fc(*a))), name
            for u, v in zip(gc(*a), gs(*a)):
                assert abs(u - v) <= mpmath.mpf(10) ** -45 * (1 + abs(u)), name


# -- conventions: kinks, dtypes, overflow, class indices, batch expression -------------------
def test_kink_values_are_sympys():
    assert P.kink_derivatives("relu") == {0.0: sp.Rational(1, 2)}  # Heaviside(0) = 1/2
    assert P.kink_derivatives("hard_tanh") == {-1.0: sp.Rational(1, 2), 1.0: sp.Rational(1, 2)}
    assert P.kink_derivatives("leaky_relu") == {0.0: sp.Rational(1, 100)}  # Piecewise: left branch
    assert P.kink_derivatives("elu") == {}  # alpha = 1: differentiable
    assert P.kink_derivatives("elu", alpha=0.5) == {0.0: sp.Rational(1, 2)}
    assert S.activation_derivative("relu")(np.array([0.0]))[0] == 0.5
    g = S.loss_gradient("mae")(np.array([[1.0, 2.0]]), np.array([[1.0, 0.0]]))
    assert g[0, 0] == 0.0 and g[0, 1] == 1.0  # sign(0) = 0
    g = S.loss_gradient("hinge")(np.array([[1.0], [3.0]]), np.array([[1.0], [1.0]]))
    assert g[0, 0] == -0.25 and g[1, 0] == 0.0  # -y/2 at the kink, over batch 2


def test_dtype_conventions():
    z32 = np.linspace(-3, 3, 7, dtype=np.float32)
    for name in ("tanh", "relu", "gelu"):
        assert S.activation_derivative(name)(z32).dtype == np.float32
        assert S.activation_value(name)(z32).dtype == np.float32
    assert S.activation_derivative("tanh")(np.arange(3)).dtype == np.float64
    out32 = np.ones((2, 3), np.float32)
    assert S.loss_gradient("mse")(out32, np.zeros((2, 3))).dtype == np.float32
    assert S.activation_derivative("softmax")(np.zeros((4, 3))).shape == (4, 3, 3)
    with pytest.raises(TypeError, match="complex"):
        S.activation_derivative("tanh")(np.ones(2, complex))


def test_no_overflow_warnings_at_extremes():
    z = np.array([-1e3, -710.0, 710.0, 1e3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in S.ACTIVATION_DEFS:
            if name == "softmax":
                assert np.all(np.isfinite(S.activation_vjp(name)(z.reshape(2, 2), np.ones((2, 2)))))
                continue
            for fn in (S.activation_derivative(name), S.activation_value(name)):
                r = fn(z)
                assert np.all(np.isfinite(r)), (name, r)
        for z32 in (z.astype(np.float32),):
            assert np.all(np.isfinite(S.activation_derivative("sigmoid")(z32)))


def test_exact_tails_match_mpmath():
    """The float SymPy derivatives are accurate to ~1e-13 relative even in the tails."""
    z = np.array([-700.0, -300.0, -40.0, -8.0, 8.0, 40.0, 300.0, 700.0])
    for name in ("sigmoid", "tanh", "softplus", "silu", "mish", "gelu", "elu"):
        fl = S.activation_derivative(name)(z)
        ex = np.array([float(v) for v in S.activation_derivative_mp(name, z, dps=60)])
        nz = ex != 0
        assert np.all(np.abs(fl[nz] - ex[nz]) <= 1e-12 * np.abs(ex[nz])), name
        assert np.all(fl[~nz] == 0), name


def test_class_indices_are_one_hot():
    out = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]])
    idx = np.array([2, 0])
    for name in ("softmax_cross_entropy", "categorical_cross_entropy"):
        o = out if name.startswith("softmax") else np.abs(out) / np.abs(out).sum(axis=1, keepdims=True)
        g1 = S.loss_gradient(name)(o, idx)
        g2 = S.loss_gradient(name)(o, np.eye(3)[idx])
        np.testing.assert_array_equal(g1, g2)
        np.testing.assert_allclose(g1, LOSSES[name].grad(o, idx), rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("name", ["mse", "half_sse", "softmax_cross_entropy", "kl_div", "bce"])
def test_batch_expression_gives_the_same_gradient(name):
    """Differentiating the whole-batch expression equals the compiled per-sample gradient."""
    B, n = 3, 2
    L, O, Y = S.loss_expr(name, n, B)
    rng = np.random.default_rng(2)
    out = rng.uniform(0.05, 0.95, (B, n)) if name == "bce" else rng.normal(size=(B, n))
    y = np.eye(n)[[0, 1, 1]] if name != "bce" else rng.uniform(0, 1, (B, n))
    if name == "kl_div":
        y = rng.dirichlet(np.ones(n), B)
    sub = {**{O[b, k]: sp.Float(out[b, k], 30) for b in range(B) for k in range(n)},
           **{Y[b, k]: sp.Float(y[b, k], 30) for b in range(B) for k in range(n)}}
    full = np.array([[float(sp.diff(L, O[b, k]).xreplace(sub).evalf(30)) for k in range(n)] for b in range(B)])
    np.testing.assert_allclose(S.loss_gradient(name)(out, y), full, rtol=1e-13, atol=1e-15)
    assert abs(float(L.xreplace(sub).evalf(30)) - S.loss_value(name)(out, y)) <= 1e-13 * (1 + abs(float(L.xreplace(sub).evalf(30))))
    assert abs(float(S.loss_value_mp(name, out, y)) - float(L.xreplace(sub).evalf(30))) <= 1e-14


def test_mpmath_evaluation():
    with mpmath.workdps(50):
        assert S.activation_derivative_mp("sigmoid", 0.0) == mpmath.mpf(1) / 4
        v = S.activation_derivative_mp("gelu", 1.0)
        expected = (1 + mpmath.erf(1 / mpmath.sqrt(2))) / 2 + mpmath.exp(-mpmath.mpf(1) / 2) / mpmath.sqrt(2 * mpmath.pi)
        assert abs(v - expected) < mpmath.mpf(10) ** -45
    J = S.activation_derivative_mp("softmax", [0.0, 0.0])
    assert J.shape == (2, 2) and J[0, 0] == mpmath.mpf(1) / 4 and J[0, 1] == -mpmath.mpf(1) / 4
    g = S.loss_gradient_mp("mse", np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]))
    assert g[0, 0] == 2 and g[0, 1] == 4
    assert S.loss_value_mp("half_sse", np.array([[1.0], [2.0]]), np.zeros((2, 1))) == mpmath.mpf(5) / 2


def test_latex_and_expressions():
    f, df = S.activation_latex("sigmoid")
    assert "e^{- z}" in f and "e^{- z}" in df
    f, df = S.activation_latex("leaky_relu")
    assert r"\alpha" in f and r"\alpha" in df
    f, J = S.activation_latex("softmax", n=2)
    assert J.count("&") >= 2  # a 2 x 2 matrix
    for name in S.ACTIVATION_DEFS:
        assert all(S.activation_latex(name))
    for name in S.LOSS_DEFS:
        assert all(S.loss_latex(name))
    expr, z = S.activation_expr("elu", alpha=0.5)
    assert expr.subs(z, -1) == sp.Rational(1, 2) * (sp.exp(-1) - 1)
    L, O, Y = S.loss_expr("half_sse", 1, 2)
    assert sp.expand(L - ((Y[0, 0] - O[0, 0]) ** 2 + (Y[1, 0] - O[1, 0]) ** 2) / 2) == 0


def test_clear_errors_and_caching():
    with pytest.raises(ValueError, match="known: identity, sigmoid"):
        S.activation_derivative("swishh")
    with pytest.raises(ValueError, match="known: mse"):
        S.loss_gradient("mse2")
    with pytest.raises(ValueError, match="no parameter"):
        S.activation_derivative("tanh", alpha=1.0)
    with pytest.raises(ValueError, match="y has shape"):
        S.loss_gradient("mse")(np.ones((2, 2)), np.ones(3))
    assert S.activation_derivative("tanh") is S.activation_derivative("tanh")
    assert S.loss_gradient("mse") is S.loss_gradient("mse")


# -- independence: the oracle never imports the code it checks -------------------------------
#: the reference package's two names: installed (``gradcheck_reference``) and in a checkout
REFERENCE_NAMES = ("reference", "gradcheck_reference")


def test_symbolic_package_never_imports_reference():
    for path in (ROOT / "gradcheck" / "symbolic").glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in REFERENCE_NAMES, f"{path.name} imports {name}"
    code = ("import sys, gradcheck.symbolic as s; s.network_gradient; "
            f"assert not [m for m in sys.modules if m.split('.')[0] in {REFERENCE_NAMES!r}], 'reference imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
