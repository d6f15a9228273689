"""Second order in the reference: ``Activation.d2f``/``jvp``/``vjp_r``, ``Loss.hvp`` and
``Network.hvp`` against two independent oracles, SymPy (:mod:`gradcheck.symbolic.second`) and
central differences of the first-order code.

Tolerances, and why:

* **SymPy vs hand-written, float64.** Both sides are float64 evaluations of exact formulas for
  the same function, differing only in rounding order: each is within a few ulps of its largest
  intermediate, so they agree to ~1e-14 relative, except where the result crosses zero and a
  cancellation's relative error grows: hence an absolute floor. Primitives: ``rtol 1e-10, atol
  1e-13`` (~500 ulps of 1; the values are O(1)); the worst observed is 1/70 of it (mish).
  Networks: ``rtol 1e-10, atol 1e-12 * max|Hv|`` (products and skips add terms); the grid passes
  at 1/100 of it. A wrong formula is off by >= 1e-3.
* **Central differences** of a first-order quantity ``g`` (``df``, ``vjp``, ``grad``, backward)
  along ``v`` (entries in [-1, 1]) with step ``h``: the error is ``h^2/6 |g'''| + eps |g| / h``
  (truncation + rounding), smallest near ``h = eps^(1/3)``, where it is ``~eps^(2/3) (|g'''|/6
  + |g|)``. We take ``h = eps^(1/3)`` and accept ``K eps^(2/3) scale``, ``scale = max(1, |g|,
  |Hv|)``, ``K = 100``: observed errors are 0.1 to 6 ``eps^(2/3) scale`` (worst: gelu_tanh's
  d2f), a margin >= 15. float64: ``eps^(2/3) = 3.7e-11``; float32 networks: ``eps^(2/3) =
  2.4e-5``, held to ~2.4e-3 of the scale: looser, yet far below the O(1) error of a wrong second
  derivative. Probability losses take a 20x smaller step (to stay inside (0, 1)): 20x the
  rounding, so ``20 K``.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from hypothesis import given, settings

from gradcheck import strategies as gst
from gradcheck.spec import Layer, NetworkSpec
from gradcheck.symbolic import second as S2
from gradcheck.symbolic.network import SymbolicSkipped
from gradcheck.symbolic.primitives import activation_derivative
from reference.activations import ACTIVATIONS, Activation
from reference.losses import LOSSES, Loss
from reference.network import Network

RTOL_SYM, ATOL_SYM = 1e-10, 1e-13
RTOL_NET, ATOL_NET = 1e-10, 1e-12
K = 100.0
ELEMENTWISE = [n for n, a in ACTIVATIONS.items() if a.elementwise]
#: where some d2f jumps (softsign, elu, selu at 0; hard_tanh at +-1): kept away from, as the kinks
JUMPS = (0.0, -1.0, 1.0)


def _step(dtype) -> float:
    return float(np.finfo(dtype).eps) ** (1 / 3)


def _fd_tolerance(dtype, k: float, *scales) -> float:
    return k * float(np.finfo(dtype).eps) ** (2 / 3) * max([1.0] + [float(np.max(np.abs(s))) for s in scales])


def _away(z: np.ndarray, points, margin: float = 1e-2) -> np.ndarray:
    for k in points:
        z = np.where(np.abs(z - k) < margin, z + 3 * margin, z)
    return z


def _params_variants(name: str):
    """Default parameters, and a non-default value where the activation has one."""
    act = ACTIVATIONS[name]
    yield act, {}
    if "alpha" in act.params:
        yield act.with_params(alpha=0.25), {"alpha": 0.25}


# -- coverage ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_every_activation_has_second_order(name):
    act = ACTIVATIONS[name]
    if act.elementwise:
        assert act._d2f is not None, f"{name}: no d2f"
    else:
        assert act._jvp is not None and act._vjp_r is not None, f"{name}: row-wise without jvp/vjp_r"
        with pytest.raises(TypeError, match="not elementwise"):
            act.d2f(np.zeros((1, 3)))


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_has_an_hvp(name):
    assert LOSSES[name]._hvp is not None, f"{name}: no hvp"


def test_entries_without_second_order_fail_loudly():
    tanh = ACTIVATIONS["tanh"]
    first_order_only = Activation("tanh", "no d2f", tanh._f, tanh._df)
    z = np.array([0.3])
    assert first_order_only.jvp(z, np.array([2.0]))[0] == pytest.approx(2 * tanh.df(z)[0])
    with pytest.raises(NotImplementedError, match="no second derivative"):
        first_order_only.vjp_r(z, z, z, z)
    mse = LOSSES["mse"]
    with pytest.raises(NotImplementedError, match="no Hessian-vector product"):
        Loss("mse", "no hvp", mse._value, mse._grad, "real").hvp(z, z, z)


# -- activations ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_d2f_matches_sympy(name):
    rng = np.random.default_rng(1)
    for act, params in _params_variants(name):
        z = _away(rng.uniform(-6, 6, size=400), act.kinks + JUMPS)
        sym = S2.activation_second_derivative(name, z, **params)
        np.testing.assert_allclose(act.d2f(z), sym, rtol=RTOL_SYM, atol=ATOL_SYM, err_msg=f"{name} {params}")


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_d2f_matches_central_differences_of_df(name):
    rng = np.random.default_rng(2)
    h = _step(np.float64)
    for act, params in _params_variants(name):
        z = _away(rng.uniform(-6, 6, size=400), act.kinks + JUMPS)
        numeric = (act.df(z + h) - act.df(z - h)) / (2 * h)
        d2 = act.d2f(z)
        tol = _fd_tolerance(np.float64, K, act.df(z), d2)
        assert np.max(np.abs(d2 - numeric)) <= tol, (name, params, np.max(np.abs(d2 - numeric)), tol)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_jvp_and_vjp_r_match_central_differences(name):
    """jvp = d/dt f(z + t v); vjp_r = d/dt vjp(z + t Rz, g + t Rg): every entry, softmax included."""
    rng = np.random.default_rng(3)
    act = ACTIVATIONS[name]
    z = _away(rng.uniform(-4, 4, size=(6, 4)), act.kinks + JUMPS)
    v, g, Rg = (rng.uniform(-1, 1, size=z.shape) for _ in range(3))
    h = _step(np.float64)
    jvp_numeric = (act.f(z + h * v) - act.f(z - h * v)) / (2 * h)
    jvp = act.jvp(z, v)
    assert np.max(np.abs(jvp - jvp_numeric)) <= _fd_tolerance(np.float64, K, act.f(z), jvp)
    r_numeric = (act.vjp(z + h * v, g + h * Rg) - act.vjp(z - h * v, g - h * Rg)) / (2 * h)
    r = act.vjp_r(z, g, v, Rg)
    assert np.max(np.abs(r - r_numeric)) <= _fd_tolerance(np.float64, K, act.vjp(z, g), r)
    assert jvp.shape == r.shape == z.shape


def test_softmax_second_order_matches_sympy():
    """jvp = J v and vjp_r = Rg J + g T Rz, with SymPy's Jacobian J and second-derivative tensor T."""
    rng = np.random.default_rng(4)
    act = ACTIVATIONS["softmax"]
    z = rng.normal(size=(7, 4)) * 3
    v, g, Rg = (rng.normal(size=z.shape) for _ in range(3))
    J = activation_derivative("softmax")(z)
    T = S2.activation_second_derivative("softmax", z)
    assert T.shape == (7, 4, 4, 4)
    np.testing.assert_allclose(act.jvp(z, v), np.einsum("bij,bj->bi", J, v), rtol=RTOL_SYM, atol=ATOL_SYM)
    expected = np.einsum("bi,bij->bj", Rg, J) + np.einsum("bi,bijk,bk->bj", g, T, v)
    np.testing.assert_allclose(act.vjp_r(z, g, v, Rg), expected, rtol=RTOL_SYM, atol=ATOL_SYM)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_second_order_extreme_inputs_finite_without_warnings(name, dtype):
    act = ACTIVATIONS[name]
    z = np.array([-1e3, -50.0, -1.0, 0.0, 1.0, 50.0, 1e3], dtype=dtype).reshape(1, -1)
    one = np.ones_like(z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow to 0 is fine
            results = [act.jvp(z, one), act.vjp_r(z, one, one, one)]
            if act.elementwise:
                results.append(act.d2f(z))
    for r in results:
        assert r.dtype == dtype and np.all(np.isfinite(r)), (name, r)


# -- losses -----------------------------------------------------------------------------------
def _loss_case(loss: Loss, rng: np.random.Generator, shape=(6, 3)):
    """(out, y) valid for the loss, away from its kinks and clips."""
    if loss.output == "probability":
        out = rng.uniform(0.05, 0.95, size=shape)
    elif loss.output == "distribution":
        out = rng.dirichlet(np.ones(shape[1]), size=shape[0])
    else:
        out = rng.normal(size=shape)
    kind = loss.target
    if kind == "real":
        y = rng.normal(size=shape)
    elif kind == "probability":
        y = rng.uniform(0, 1, size=shape)
    elif kind == "sign":
        y = rng.choice([-1.0, 1.0], size=shape)
    elif kind == "count":
        y = rng.poisson(2.0, size=shape).astype(float)
    elif kind == "class":
        y = np.eye(shape[1])[rng.integers(0, shape[1], size=shape[0])]
    else:
        assert kind == "distribution", kind
        y = rng.dirichlet(np.ones(shape[1]), size=shape[0])
    if loss.name in ("mae", "huber"):  # kinks of the value (mae) and of the curvature (huber)
        r = out - y
        out = out + np.where(np.abs(np.abs(r) - (1.0 if loss.name == "huber" else 0.0)) < 0.05, 0.2, 0.0)
    if loss.name in ("hinge", "squared_hinge"):
        out = np.where(np.abs(1 - y * out) < 0.05, out + 0.2, out)
    return out, y


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_hvp_matches_sympy(name):
    rng = np.random.default_rng(5)
    loss = LOSSES[name]
    out, y = _loss_case(loss, rng)
    v = rng.normal(size=out.shape)
    hv = loss.hvp(out, y, v)
    assert hv.shape == out.shape and hv.dtype == out.dtype
    np.testing.assert_allclose(hv, S2.loss_hvp(name, out, y, v), rtol=RTOL_SYM, atol=ATOL_SYM * max(1, np.max(np.abs(hv))))
    if loss.target == "class":  # integer class indices work like one-hot rows
        idx = np.argmax(y, axis=1)
        np.testing.assert_array_equal(loss.hvp(out, idx, v), hv)
        np.testing.assert_allclose(S2.loss_hvp(name, out, idx, v), hv, rtol=RTOL_SYM, atol=ATOL_SYM)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_hvp_matches_central_differences_of_grad(name):
    rng = np.random.default_rng(6)
    loss = LOSSES[name]
    out, y = _loss_case(loss, rng)
    v = rng.uniform(-1, 1, size=out.shape)
    h = _step(np.float64)
    if loss.output in ("probability", "distribution"):
        h *= 0.05  # probabilities >= 0.05 (or a Dirichlet draw): keep out +- h v inside (0, 1)
    numeric = (loss.grad(out + h * v, y) - loss.grad(out - h * v, y)) / (2 * h)
    hv = loss.hvp(out, y, v)
    # a step 20x smaller: rounding 20x larger (module doc)
    k = K * (20 if loss.output in ("probability", "distribution") else 1)
    tol = _fd_tolerance(np.float64, k, loss.grad(out, y), hv)
    assert np.max(np.abs(hv - numeric)) <= tol, (name, np.max(np.abs(hv - numeric)), tol)


def test_clipped_losses_have_zero_curvature_beyond_the_clip():
    v = np.ones((1, 2))
    assert np.all(LOSSES["bce"].hvp(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]), v) == 0)
    assert np.all(LOSSES["categorical_cross_entropy"].hvp(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]), v) == 0)
    inside = LOSSES["bce"].hvp(np.array([[0.25]]), np.array([[1.0]]), np.ones((1, 1)))
    assert inside[0, 0] == pytest.approx(1 / 0.25**2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_hvp_extreme_inputs_without_warnings(name, dtype):
    """Finite and warning-free at |out| = 1e3 (probabilities at 0 and 1), except poisson_nll's
    honest exp(1e3) = inf (as its value and gradient)."""
    loss = LOSSES[name]
    if loss.output in ("probability", "distribution"):
        out = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    else:
        out = np.array([[-1e3, 1e3], [1e3, -1e3]], dtype=dtype)
    y = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=dtype)
    if loss.target == "sign":
        y = 2 * y - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hv = loss.hvp(out, y, np.ones_like(out))
    assert hv.dtype == dtype
    if name == "poisson_nll":
        assert np.isinf(hv).any()
        return
    assert np.all(np.isfinite(hv))


# -- networks against central differences of backward -------------------------------------------
FD_SPECS = [
    NetworkSpec(3, (Layer(4, "tanh"), Layer(2, "identity")), "mse", batch=5),
    NetworkSpec(3, (Layer(4, "softplus", bias=False), Layer(3, "gelu"), Layer(3, "identity", bias=False)),
                "softmax_cross_entropy", batch=6, init="xavier"),
    NetworkSpec(2, (Layer(5, "silu"), Layer(5, "mish"), Layer(5, "sin", bias=False), Layer(1, "sigmoid")),
                "bce", batch=3, init="he", skips=((1, 3),)),
    NetworkSpec(4, (Layer(3, "tanh"), Layer(3, "softsign"), Layer(3, "softmax")), "categorical_cross_entropy",
                batch=4, seed=3),
    NetworkSpec(3, (Layer(3, "elu"), Layer(3, "gelu_tanh"), Layer(3, "selu"), Layer(3, "softmax")), "kl_div",
                batch=4, skips=((0, 2), (1, 3))),
    NetworkSpec(2, (Layer(4, "leaky_relu"), Layer(4, "relu", bias=False), Layer(2, "sigmoid")), "squared_hinge",
                batch=5, seed=1),
    NetworkSpec(2, (Layer(3, "sigmoid"), Layer(2, "identity")), "half_sse", batch=4, init="uniform"),
    NetworkSpec(3, (Layer(3, "tanh"), Layer(3, "hard_tanh"), Layer(2, "identity")), "poisson_nll", batch=4),
]


def _batch(spec: NetworkSpec, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(spec.batch, spec.input_dim))
    k, loss = spec.output_dim, LOSSES[spec.loss]
    if loss.target == "class":
        y = np.eye(k)[rng.integers(0, k, size=spec.batch)]
    elif loss.target == "distribution":
        y = rng.dirichlet(np.ones(k), size=spec.batch)
    elif loss.target == "probability":
        y = rng.uniform(0, 1, size=(spec.batch, k))
    elif loss.target == "sign":
        y = rng.choice([-1.0, 1.0], size=(spec.batch, k))
    elif loss.target == "count":
        y = rng.poisson(1.0, size=(spec.batch, k)).astype(float)
    else:
        y = rng.normal(size=(spec.batch, k))
    return X.astype(spec.dtype), y.astype(spec.dtype)


def _direction(params, seed: int = 7):
    rng = np.random.default_rng(seed)
    return {k: rng.uniform(-1, 1, size=p.shape).astype(p.dtype) for k, p in params.items()}


def _fd_hvp(net: Network, params, X, y, v, h: float):
    plus = {k: params[k] + h * v[k] for k in params}
    minus = {k: params[k] - h * v[k] for k in params}
    gp, gm = net.loss_and_grads(plus, X, y)[1], net.loss_and_grads(minus, X, y)[1]
    return {k: (gp[k] - gm[k]) / (2 * h) for k in params}


def _off_kinks(net: Network, params, X) -> bool:
    """Every pre-activation at least 10 steps from a kink (or d2f jump): differences stay on one piece."""
    _, cache = net.forward(params, X)
    for act, z in zip(net.activations, cache.pre):
        points = act.kinks + (JUMPS if act.name in ("softsign", "elu", "selu", "hard_tanh") else ())
        if any(np.min(np.abs(z.astype(np.float64) - k)) < 0.02 for k in points):
            return False
    return True


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("spec", FD_SPECS, ids=lambda s: s.label())
def test_network_hvp_matches_central_differences_of_backward(spec, dtype):
    spec = spec.replace(dtype=dtype)
    net = Network(spec)
    params = net.init_params()
    for seed in range(20):
        X, y = _batch(spec, seed)
        if _off_kinks(net, params, X):
            break
    else:
        pytest.fail("no batch off the kinks")
    v = _direction(params)
    hv = net.hvp(params, X, y, v)
    numeric = _fd_hvp(net, params, X, y, v, _step(np.dtype(dtype)))
    grads = net.loss_and_grads(params, X, y)[1]
    tol = _fd_tolerance(np.dtype(dtype), K, *grads.values(), *hv.values())
    for name in params:
        assert hv[name].shape == params[name].shape and hv[name].dtype == np.dtype(dtype)
        err = float(np.max(np.abs(hv[name].astype(np.float64) - numeric[name].astype(np.float64))))
        assert err <= tol, (name, err, tol)


def test_network_hvp_is_symmetric():
    """u . H v == v . H u: the Hessian is symmetric, which the R-operator gets only if both passes are right."""
    spec = FD_SPECS[4]
    net = Network(spec)
    params = net.init_params()
    X, y = _batch(spec)
    u, v = _direction(params, 1), _direction(params, 2)
    Hu, Hv = net.hvp(params, X, y, u), net.hvp(params, X, y, v)
    uHv = sum(float(np.sum(u[k] * Hv[k])) for k in params)
    vHu = sum(float(np.sum(v[k] * Hu[k])) for k in params)
    assert uHv == pytest.approx(vHu, rel=1e-12, abs=1e-14)


def test_network_hvp_is_pure():
    spec = FD_SPECS[2]
    net = Network(spec)
    params = net.init_params()
    X, y = _batch(spec)
    v = _direction(params)
    before = ({k: a.tobytes() for k, a in params.items()}, X.tobytes(), y.tobytes(),
              {k: a.tobytes() for k, a in v.items()})
    first = net.hvp(params, X, y, v)
    second = net.hvp(params, X, y, v)
    assert {k: a.tobytes() for k, a in params.items()} == before[0]
    assert X.tobytes() == before[1] and y.tobytes() == before[2]
    assert {k: a.tobytes() for k, a in v.items()} == before[3]
    assert all(first[k].tobytes() == second[k].tobytes() for k in params)


def test_network_hvp_rejects_a_mismatched_direction():
    spec = FD_SPECS[0]
    net = Network(spec)
    params = net.init_params()
    X, y = _batch(spec)
    with pytest.raises(ValueError, match="keys"):
        net.hvp(params, X, y, {"W1": params["W1"]})
    with pytest.raises(ValueError, match="shape"):
        net.hvp(params, X, y, {**params, "b1": np.zeros(7)})


# -- networks against SymPy ---------------------------------------------------------------------
def _grid_spec(activation: str, loss: str) -> NetworkSpec:
    """Two layers: the activation in the hidden layer, and at the output unless the loss forces one."""
    out = gst.OUTPUT_ACTIVATION.get(LOSSES[loss].output, activation)
    return NetworkSpec(2, (Layer(2, activation), Layer(2, out)), loss, batch=3)


def _assert_matches_sympy(net: Network, params, X, y, v, what: str = ""):
    hv = net.hvp(params, X, y, v)
    sym = S2.network_hvp(net.spec, params, X, y, v)
    scale = max(1.0, *(float(np.max(np.abs(a))) for a in sym.values()))
    for name in params:
        np.testing.assert_allclose(hv[name], sym[name], rtol=RTOL_NET, atol=ATOL_NET * scale, err_msg=f"{what} {name}")


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_network_hvp_matches_sympy_for_every_combination(activation, loss):
    spec = _grid_spec(activation, loss)
    try:
        Network(spec)
    except ValueError as e:
        pytest.skip(f"the registry does not allow it: {e}")

    @settings(max_examples=3, deadline=None)
    @given(gst.cases(spec=spec))
    def check(case):
        _assert_matches_sympy(case.network(), case.params, case.X, case.y, _direction(case.params), spec.label())

    check()


@pytest.mark.parametrize("spec", FD_SPECS[1:5], ids=lambda s: s.label())
def test_network_hvp_matches_sympy_on_deeper_specs(spec):
    """Skips, missing biases, softmax outputs: the same agreement beyond the two-layer grid."""
    net = Network(spec)
    params = net.init_params()
    X, y = _batch(spec, 1)
    _assert_matches_sympy(net, params, X, y, _direction(params), spec.label())


def test_sympy_hvp_refuses_large_specs():
    spec = NetworkSpec(4, (Layer(8, "tanh"), Layer(2, "identity")), "mse")
    params = Network(spec).init_params()
    X, y = _batch(spec)
    with pytest.raises(SymbolicSkipped, match="too large"):
        S2.network_hvp(spec, params, X, y, params, max_params=10)


def test_a_planted_d2f_bug_is_caught():
    """tanh's d2f with its sign flipped: first order unchanged, Network.hvp now disagrees with SymPy
    and with differences of backward."""
    tanh = ACTIVATIONS["tanh"]
    wrong = dataclasses.replace(tanh, description="d2f with the sign flipped (a bug)",
                                _d2f=lambda z: -tanh._d2f(z))
    spec = NetworkSpec(3, (Layer(4, "tanh"), Layer(2, "identity")), "mse", batch=5)
    good, bad = Network(spec), Network(spec, activations={"tanh": wrong})
    params = good.init_params()
    X, y = _batch(spec)
    v = _direction(params)
    assert good.loss_and_grads(params, X, y)[1]["W1"].tobytes() == bad.loss_and_grads(params, X, y)[1]["W1"].tobytes()
    _assert_matches_sympy(good, params, X, y, v)
    with pytest.raises(AssertionError):
        _assert_matches_sympy(bad, params, X, y, v)
    numeric = _fd_hvp(good, params, X, y, v, _step(np.float64))
    hv_bad = bad.hvp(params, X, y, v)
    assert np.max(np.abs(hv_bad["W1"] - numeric["W1"])) > 1e3 * _fd_tolerance(np.float64, K, hv_bad["W1"])
