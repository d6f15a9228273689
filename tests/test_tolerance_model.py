"""The tolerance model's parts, each against an independent truth.

* ``gradient_noise`` (the claimed gradient's own rounding, measured) vs the actual rounding error
  of a float64 batchnorm backward on inputs ~1000 sd from zero, with the truth from the same code in
  long double (80-bit: 11 more bits, so its own error is ~2000x smaller): the measured sd, times the
  safety factor the verdict uses, must cover every actual error; and it must not be inflated
  beyond ~1e4 x the actual error (a probe that returned huge values would mask bugs).
* ``refine_element`` (the step ladder) on a 1-d function with a kink at a known distance ``a`` from
  x: the estimate it keeps must equal the exact derivative within its stated error bound for every
  placement of ``a`` (the old two-step test mistook ``a ~ h/3`` for a smooth point), a kink at x
  must come out as a kink, and it must never return a "smooth" value that crossed the kink.
* exactly-zero gradients (``softmax(z).sum()``) pass with every scheme and dtype, and a small
  planted error in the same code still fails.
* the oracles cross-check: a symbolic oracle made wrong by 1% in one element fails the check as an
  ``oracle_disagreement`` naming that element; wrong in its float64 evaluation only, it is settled
  by the 50-digit one; a loss whose O(1) terms cancel to an exact 0 that no probe moves gets a
  rounding floor (half an ulp of 1), not none.
* ``noise_level`` vs the actual rounding of a float32 loss (its difference from the same loss in
  float64, sd over 200 nearby points): within 10x on a loss that curves on the probe's scale
  (inputs ~1000 from zero; the shorter probe) and on a genuinely ill-conditioned one (batch norm
  on inputs 1000 sd out, whose sigma must stand).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import gradcheck
from gradcheck import numerical
from gradcheck.tolerance import MODEL


def batchnorm(p, X, y):
    """Training-mode batchnorm with the textbook backward (``x`` itself is a parameter)."""
    x, g, b = p["x"], p["g"], p["b"]
    n = x.shape[0]
    mu = x.mean(0)
    xc = x - mu
    std = np.sqrt((xc * xc).mean(0) + 1e-5)
    xh = xc / std
    loss = ((g * xh + b) * y).sum()
    dxh = y * g
    dx = (n * dxh - dxh.sum(0) - xh * (dxh * xh).sum(0)) / (n * std)
    return loss, {"x": dx, "g": (y * xh).sum(0), "b": y.sum(0)}


def offset_batch(offset: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {"x": rng.standard_normal((6, 3)) + offset, "g": rng.standard_normal(3), "b": rng.standard_normal(3)}
    return params, rng.standard_normal((6, 3))


@pytest.mark.skipif(np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps, reason="no extended long double")
@pytest.mark.parametrize("offset", [1e3, 1e5])
def test_measured_gradient_rounding_covers_the_actual_rounding(offset):
    params, y = offset_batch(offset)
    _, claimed = batchnorm(params, None, y)
    _, truth = batchnorm({k: v.astype(np.longdouble) for k, v in params.items()}, None, y.astype(np.longdouble))
    measured = numerical.gradient_noise(lambda p: batchnorm(p, None, y)[1], params, claimed)
    noise = measured.sd
    # float64: the narrow probe and the wide one (saturated intermediates), each 7 points x 2 lines
    assert measured.calls == 2 * MODEL.claimed_probe_points * MODEL.claimed_probe_directions
    assert not any(j.any() for j in measured.jump.values())  # smooth code: no jump at x
    for k in ("x", "g"):
        actual = np.abs(claimed[k] - truth[k]).astype(np.float64)
        assert np.all(actual <= MODEL.safety * noise[k]), (k, actual, noise[k])
        # not inflated: within 1e4 of the typical actual error (it measures rounding, not the gradient)
        assert np.max(noise[k]) <= 1e4 * max(float(np.max(actual)), 1e-300), (k, actual, noise[k])


@pytest.mark.parametrize("offset", [1e3, 1e5])
def test_ill_conditioned_batchnorm_passes_and_a_planted_error_still_fails(offset):
    params, y = offset_batch(offset, seed=1)
    X = np.zeros(1)
    for scheme in ("auto", "central"):
        ok = gradcheck.check(batchnorm, params, X, y, scheme=scheme)
        assert ok.passed, str(ok)

        def planted(p, X_, y_):
            loss, g = batchnorm(p, X_, y_)
            g = dict(g, x=g["x"].copy())
            g["x"][2, 1] *= 1 + 1e-4
            return loss, g
        bad = gradcheck.check(planted, params, X, y, scheme=scheme)
        assert not bad.passed and bad.worst_param == "x" and bad.worst.index == [2, 1], str(bad)


# -- the step ladder -------------------------------------------------------------------------------
def kinked(a: float, c: float = 0.7):
    """f(t) = sin(t) + c max(0, t - a) near t = x = 0.3: a kink at distance ``a`` from x."""
    x0 = 0.3

    def f(work):
        t = float(work["t"][0])
        return math.sin(t) + c * max(0.0, t - (x0 + a))
    return f, x0


@pytest.mark.parametrize("fraction", [1 / 10, 1 / 4, 1 / 3, 0.45, 0.6, 0.9])
def test_the_ladder_steps_over_a_kink_crossed_by_the_step(fraction):
    h = 2.0 ** -7  # a float32-sized step
    f, x0 = kinked(fraction * h)
    work = {"t": np.array([x0])}
    ref = numerical.refine_element(f, work, "t", 0, h, f(work), 1e-16)
    assert ref.status == "smooth", ref
    # the derivative at x is cos(x): the kink lies beyond x (a > 0), so it plays no part
    assert abs(ref.value - math.cos(x0)) <= max(MODEL.safety * ref.error, 1e-12), ref
    assert ref.step <= fraction * h, ref  # the estimate kept never crossed the kink (x + a itself is on it)
    assert work["t"][0] == x0  # restored


def test_the_ladder_calls_a_kink_at_x_a_kink():
    f, x0 = kinked(0.0)
    work = {"t": np.array([x0])}
    ref = numerical.refine_element(f, work, "t", 0, 2.0 ** -7, f(work), 1e-16)
    assert ref.status == "kink" and ref.calls == 6, ref


def test_two_kinks_on_both_sides_never_give_a_wrong_smooth_value():
    x0 = 0.3

    def f(work):
        t = float(work["t"][0])
        return math.sin(t) + 0.7 * max(0.0, t - x0 - 1e-3) - 0.4 * max(0.0, x0 - 2.2e-3 - t)
    work = {"t": np.array([x0])}
    ref = numerical.refine_element(f, work, "t", 0, 2.0 ** -7, f(work), 1e-16)
    if ref.status == "smooth":
        assert abs(ref.value - math.cos(x0)) <= MODEL.safety * ref.error, ref


# -- exactly-zero gradients --------------------------------------------------------------------------
def softmax_sum(p, X, y):
    """loss = softmax(z).sum() (always the number of rows): the true gradient is exactly 0."""
    z = p["z"]
    e = np.exp(z - z.max(axis=1, keepdims=True).real)
    s = e / e.sum(axis=1, keepdims=True)
    dz = s * (1 - s.sum(axis=1, keepdims=True))
    return s.sum(), {"z": dz}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scheme", ["auto", "central", "complex"])
def test_an_exactly_zero_gradient_passes_and_a_small_error_fails(dtype, scheme):
    z = np.random.default_rng(3).standard_normal((4, 5)).astype(dtype)
    ok = gradcheck.check(softmax_sum, {"z": z}, np.zeros(1), None, scheme=scheme)
    assert ok.passed, str(ok)

    def planted(p, X, y):  # a plausible wrong backward: forgets the sum term, off by s * 1e-2
        loss, g = softmax_sum(p, X, y)
        e = np.exp(p["z"] - p["z"].max(axis=1, keepdims=True).real)
        return loss, {"z": g["z"] + 1e-2 * e / e.sum(axis=1, keepdims=True)}
    bad = gradcheck.check(planted, {"z": z}, np.zeros(1), None, scheme=scheme)
    assert not bad.passed and bad.worst_param == "z", str(bad)


# -- the oracles cross-check each other ----------------------------------------------------------------
def _small_tanh_network():
    """A 2-3 tanh network into MSE, batch 2: small enough for the symbolic oracle."""
    from gradcheck import Layer, NetworkSpec
    from reference.network import Network

    spec = NetworkSpec(input_dim=2, layers=(Layer(3, "tanh"),), loss="mse", batch=2)
    net = Network(spec)
    rng = np.random.default_rng(0)
    return spec, net, net.init_params(), rng.standard_normal((2, 2)), rng.standard_normal((2, 3))


def one_element_off(right):
    """``right`` (a symbolic gradient function) with W1[0, 1] made 1% too large."""
    def wrong(*args, **kwargs):
        g = {k: v.copy() for k, v in right(*args, **kwargs).items()}
        g["W1"][0, 1] *= 1.01
        return g
    return wrong


def test_a_wrong_symbolic_oracle_fails_the_check_as_an_oracle_disagreement(monkeypatch):
    symbolic = pytest.importorskip("gradcheck.symbolic")
    spec, net, params, X, y = _small_tanh_network()
    assert gradcheck.check(net, params, X, y, spec=spec).passed
    # a wrong derivation: both the float64 evaluation and the 50-digit one asked for on disagreement
    for name in ("network_gradient", "exact_gradient"):
        monkeypatch.setattr(symbolic, name, one_element_off(getattr(symbolic, name)))
    r = gradcheck.check(net, params, X, y, spec=spec)
    assert not r.passed and [p.kind for p in r.problems] == ["oracle_disagreement"], str(r)
    assert r.problems[0].param == "W1" and r.problems[0].index == [0, 1]
    assert str(r).startswith("gradcheck FAILED: the oracles disagree: numerical vs symbolic at W1[0, 1]")
    assert r.diagnosis is None  # fn is not blamed


def test_a_float64_rounding_of_the_symbolic_oracle_is_settled_by_its_50_digit_evaluation(monkeypatch):
    """Only the float64 evaluation wrong (as rounding makes it where O(1) terms cancel): the cross-check
    asks for the mpmath evaluation before blaming anyone, uses it, and says so."""
    symbolic = pytest.importorskip("gradcheck.symbolic")
    spec, net, params, X, y = _small_tanh_network()
    exact = symbolic.exact_gradient(spec, params, X, y)["W1"][0, 1]
    monkeypatch.setattr(symbolic, "network_gradient", one_element_off(symbolic.network_gradient))
    r = gradcheck.check(net, params, X, y, spec=spec)
    assert r.passed and not r.problems, str(r)
    assert r.tensors["W1"].symbolic[0, 1] == exact
    assert any("re-evaluated with mpmath at 50 digits" in n and "W1" in n for n in r.notes), r.notes


def kl_of_sigmoids_at_a_tiny_input():
    """Found by the random ``thorough`` profile: 1 -> 5 sigmoid (no bias), KL to a uniform target,
    one input equal to float32's smallest normal. Every sigmoid is 0.5 exactly, the loss's O(1)
    terms cancel to exactly 0, and no move of W1 changes one bit of it: the true gradient is
    ~1e-78, float64 SymPy gives -2e-55 (rounding of softmax - y), the code 0."""
    from gradcheck import Layer, NetworkSpec
    from reference.network import Network

    spec = NetworkSpec(input_dim=1, layers=(Layer(5, "sigmoid", bias=False),), loss="kl_div", batch=1)
    params = {"W1": np.array([[0.1257302210933933, -0.1321048632913019, 0.6404226504432821,
                               0.10490011715303971, -0.535669373161111]])}
    return spec, Network(spec), params, np.array([[1.1754943508222875e-38]]), np.full((1, 5), 0.2)


def test_a_loss_no_probe_can_move_has_a_rounding_floor_not_none():
    spec, net, params, X, y = kl_of_sigmoids_at_a_tiny_input()
    loss = lambda p: net.loss(p, X, y)
    f0 = float(loss(params))
    assert f0 == 0.0
    sigma, _ = numerical.noise_level(loss, {k: v.copy() for k, v in params.items()}, f0)
    # half an ulp of max(|f0|, 1): before, the smallest normal float, which let an estimate of 0 claim
    # a bound of 1e-69 against a symbolic -2e-55
    assert sigma == 0.5 * np.finfo(np.float64).eps
    constant = lambda p: 3.0
    assert numerical.noise_level(constant, {"w": np.ones(4)}, 3.0)[0] == 0.5 * np.finfo(np.float64).eps * 3.0


def _rounding_truth(loss32, loss64, params, seed=0, points=200):
    """The sd of (the float32 loss - the same loss in float64) over points a hair away from params
    (each element moved by ~1e-3 relative): the float32 loss's actual rounding error."""
    rng = np.random.default_rng(seed)
    errors = []
    for _ in range(points):
        moved = {k: (v.astype(np.float64) * (1 + 1e-3 * rng.standard_normal(v.shape))).astype(v.dtype)
                 for k, v in params.items()}
        errors.append(float(loss32(moved)) - float(loss64({k: v.astype(np.float64) for k, v in moved.items()})))
    return float(np.std(errors))


def test_the_noise_probe_measures_rounding_not_the_curve_of_a_loss_on_offset_inputs():
    """A float32 tanh layer on inputs 1000 + N(0, 1): a probe step scaled to the small weights moves
    the pre-activations by O(1) per point, so its difference tables measured the loss's curve
    (1.6e-2) as rounding (~1e-7): a missing db1 passed under the tolerance that followed. The
    shorter probe must land within 10x of the actual rounding."""
    from tests.false_alarm_corpus import CASES
    fn, params, X, y = CASES["large_offset_tanh"].make("float32", 0)
    fn64, _, X64, y64 = CASES["large_offset_tanh"].make("float64", 0)
    loss32 = lambda p: fn(p, X, y)[0]
    loss64 = lambda p: fn64(p, X64, y64)[0]
    truth = _rounding_truth(loss32, loss64, params)
    sigma, calls = numerical.noise_level(loss32, {k: v.copy() for k, v in params.items()}, float(loss32(params)))
    assert truth / 10 <= sigma <= truth * 10, (sigma, truth)
    assert calls > 16  # the shorter probe ran


def test_the_noise_probe_keeps_the_rounding_of_an_ill_conditioned_loss():
    """Batch norm in float32 on inputs 1000 sd from zero: the loss's rounding is genuinely ~1e4 ulps;
    the shorter probe sees the same, so the first sigma stands (within 10x of the actual)."""
    params, y = offset_batch(1000.0)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    loss32 = lambda p: batchnorm(p, None, y.astype(np.float32))[0]
    loss64 = lambda p: batchnorm(p, None, y)[0]
    truth = _rounding_truth(loss32, loss64, p32)
    sigma, _ = numerical.noise_level(loss32, {k: v.copy() for k, v in p32.items()}, float(loss32(p32)))
    assert truth > 100 * np.finfo(np.float32).eps * abs(float(loss32(p32)))  # ill-conditioned indeed
    assert truth / 10 <= sigma <= truth * 10, (sigma, truth)


def test_the_oracles_agree_where_the_loss_cancels_to_zero_and_a_planted_error_fails():
    pytest.importorskip("sympy")
    spec, net, params, X, y = kl_of_sigmoids_at_a_tiny_input()
    ok = gradcheck.check(net, params, X, y, spec=spec, scheme="central")
    assert ok.passed and not ok.problems and ok.symbolic_status == "ok", str(ok)

    def planted(p, X_, y_):  # a gradient of 1e-6 where the loss cannot move: claimed, not real
        loss, g = net(p, X_, y_)
        return loss, {"W1": g["W1"] + 1e-6}
    bad = gradcheck.check(planted, params, X, y, spec=spec, scheme="central")
    assert not bad.passed and bad.worst_param == "W1" and not bad.problems, str(bad)


# -- a convention on a path through an exact kink, where the loss itself is smooth ----------------------
def two_leaky_layers(p, X, y):
    """leaky_relu(leaky_relu(X W1 + b1) W2), loss sum((out - y)^2) / 2, backward with the usual
    convention leaky'(0) = 0.01. A zero input row with b1 = 0 puts its pre-activations exactly at 0;
    where W2 < 0 the composite is smooth there (slope 0.01 from both sides) while the chain rule with
    the convention gives 0.0001: the loss is differentiable, the code's gradient jumps at x."""
    slope = lambda z: np.where(z > 0, 1.0, 0.01)
    z1 = X @ p["W1"] + p["b1"]
    a1 = z1 * slope(z1)
    z2 = a1 @ p["W2"]
    out = z2 * slope(z2)
    r = out - y
    dz2 = r * slope(z2)
    dz1 = (dz2 @ p["W2"].T) * slope(z1)
    return 0.5 * float(np.sum(r * r)), {"W1": X.T @ dz1, "b1": dz1.sum(0), "W2": a1.T @ dz2}


def test_a_convention_on_an_exact_kink_of_the_path_is_left_out_and_a_bug_still_fails():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((4, 2))
    X[2] = 0.0  # padding: a row of zeros
    params = {"W1": rng.standard_normal((2, 3)), "b1": np.zeros(3), "W2": -np.abs(rng.standard_normal((3, 1)))}
    y = rng.standard_normal((4, 1))
    y[2] = 0.7  # the zero row's output is 0: a non-zero upstream gradient there
    ok = gradcheck.check(two_leaky_layers, params, X, y, scheme="central")
    assert ok.passed, str(ok)
    assert any(e.note == "jump" for e in ok.kinks) and "kinks in your code's path" in str(ok), str(ok)

    def planted(p, X_, y_):
        loss, g = two_leaky_layers(p, X_, y_)
        return loss, dict(g, W2=g["W2"] * 1.01)
    bad = gradcheck.check(planted, params, X, y, scheme="central")
    assert not bad.passed and bad.worst_param == "W2", str(bad)


def test_fourth_order_keeps_its_precision_through_the_second_look():
    """central4's failing elements get the central ladder (for kinks and crossings) but keep their
    own 5-point estimate where the ladder vouches for it: a tensor scaled by 1 + 1e-8 (far below
    central differences' ~1e-8 resolution, far above 4th order's ~1e-11 in float64) still fails."""
    from gradcheck import Layer, NetworkSpec
    from reference.network import Network

    spec = NetworkSpec(4, (Layer(6, "tanh"), Layer(3, "identity")), "mse", batch=8)
    net = Network(spec)
    params = net.init_params()
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 3))
    assert gradcheck.check(net, params, X, y, scheme="central4", loss_fn=net.loss).passed

    def scaled(p, X_, y_):
        loss, g = net(p, X_, y_)
        return loss, dict(g, W1=g["W1"] * (1 + 1e-8))
    r = gradcheck.check(scaled, params, X, y, scheme="central4", loss_fn=net.loss)
    assert not r.passed and r.worst_param == "W1", str(r)


# -- correct code the tests never saw: a hand-written tanh/mse network (the docs' property test) ---
def _tanh_mse(spec):
    """Textbook backward with 1 - tanh(z)^2: ill-conditioned where tanh saturates, still correct."""
    depth = spec.depth

    def fn(params, X, y):
        a, cache = X, []
        for i in range(1, depth + 1):
            z = a @ params[f"W{i}"] + params.get(f"b{i}", 0.0)
            cache.append((a, z))
            a = np.tanh(z)
        n = X.shape[0]
        loss = np.sum((a - y) ** 2) / n
        grads, da = {}, 2 * (a - y) / n
        for i in range(depth, 0, -1):
            a_prev, z = cache[i - 1]
            dz = da * (1 - np.tanh(z) ** 2)
            grads[f"W{i}"] = a_prev.T @ dz
            if f"b{i}" in params:
                grads[f"b{i}"] = dz.sum(axis=0)
            da = dz @ params[f"W{i}"].T
        return loss, grads
    return fn


def _saturated(widths, dtype, seed):
    from gradcheck.spec import Layer, NetworkSpec
    from reference.network import Network
    spec = NetworkSpec(input_dim=1, layers=tuple(Layer(w, "tanh") for w in widths), loss="mse", batch=1,
                       dtype=dtype, init="uniform", seed=seed)
    X, y = np.zeros((1, 1), dtype), np.zeros((1, widths[-1]), dtype)
    return spec, Network(spec).init_params(), X, y


@pytest.mark.parametrize("widths, dtype, seed", [
    # an output unit with z ~ 5: 1 - a^2 ~ 2e-4 computed from a ~ 1 carries ulp(1) / 2e-4 ~ 1e-12
    # relative; a 1024-ulp move of z changes a by less than its ulp, so only the wide probe sees it
    ((1, 1, 11, 2), "float64", 0),
    # float32, a moving exactly 2 of its ulps per probe step: equal steps kept its rounding error
    # constant (measured 0); irregular steps re-draw it
    ((1, 1, 12, 1), "float32", 1),
])
def test_correct_saturated_tanh_backprop_passes(widths, dtype, seed):
    """Found by the docs' property test (Hypothesis) as false alarms: the tolerance must cover the
    claimed gradient's measured rounding, whose probe must not be fooled by flat or aliased values."""
    spec, params, X, y = _saturated(widths, dtype, seed)
    result = gradcheck.check(_tanh_mse(spec), params, X, y)
    assert result.passed, str(result)


def test_planted_error_in_the_saturated_network_is_still_caught():
    """The wider probe measures rounding, not bugs: a 1e-9 relative error in one entry (1000x the
    rounding there) still fails, localized."""
    spec, params, X, y = _saturated((1, 1, 11, 2), "float64", 0)
    good = _tanh_mse(spec)

    def planted(p, X_, y_):
        loss, g = good(p, X_, y_)
        g["W4"] = g["W4"].copy()
        g["W4"][3, 1] *= 1 + 1e-9
        return loss, g
    result = gradcheck.check(planted, params, X, y)
    assert not result.passed and result.worst.label() == "W4[3, 1]", str(result)


def test_subnormal_gradients_are_below_any_verdict():
    """x = 1e-160: the loss (~1e-322) underflows, the complex step gives 0, the correct claimed
    gradient is a subnormal 3e-321. Differences below the smallest normal number decide nothing."""
    from gradcheck.spec import Layer, NetworkSpec
    spec = NetworkSpec(input_dim=1, layers=(Layer(1, "tanh", bias=False),), loss="mse", batch=1)
    params = {"W1": np.array([[0.1257302210933933]])}
    result = gradcheck.check(_tanh_mse(spec), params, np.array([[1.0960201709446389e-160]]), np.zeros((1, 1)))
    assert result.passed, str(result)


def test_float32_output_saturated_at_its_target_passes_via_float64():
    """Found by the docs' property test with float32 cases: a correct backward whose float32 loss
    (1 - a)^2 is a staircase the noise probe reads as flat (numerical 0 with a tiny bound). A strict
    xfail (a known limit) until the check consulted fn evaluated with float64 parameters
    (``Judge.wider``, docs/checker.md); tests/test_check_wider.py has the rest."""
    from gradcheck.spec import Layer, NetworkSpec
    from reference.network import Network
    spec = NetworkSpec(input_dim=1, layers=(Layer(1, "tanh"), Layer(6, "tanh"), Layer(1, "tanh")), loss="mse",
                       batch=1, dtype="float32", init="uniform", seed=0)
    params = Network(spec).init_params()
    result = gradcheck.check(_tanh_mse(spec), params, np.zeros((1, 1), np.float32), np.ones((1, 1), np.float32))
    assert result.passed, str(result)
