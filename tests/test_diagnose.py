"""The diagnosis: each pattern is named when a bug of that kind is planted, and never claimed when the
numbers do not support it.

Positive cases plant a bug in the reference network's gradient (a wrapper that edits the claimed
gradient the way the bug would) and run the real check, so the patterns are judged against real
finite-difference error bounds. False-positive cases (1) run correct-but-unusual code, which passes
so diagnose is never called, and (2) call ``diagnose`` directly on hundreds of random perturbations
of a correct gradient (re-compared with :func:`gradcheck.compare.compare`, as the check would): no
*specific* pattern may come out, only None or a location pattern whose tensors are the perturbed ones.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import gradcheck
from gradcheck.compare import eps_of
from gradcheck.diagnose import LOCATION_PATTERNS, PATTERNS, SPECIFIC_PATTERNS, diagnose
from gradcheck.result import Result
from reference.network import Network
from tests.diagnose_support import KINDS, PERTURBATIONS, perturb, random_subset, with_claimed
from tests.diagnose_support import base_check as _base
from tests.diagnose_support import data_for as _data
from tests.diagnose_support import spec_for as _spec


def _planted(spec, edit, *, seed=0, one_hot=False, give_spec=True):
    """Check the reference network of ``spec`` with ``edit(grads, params, X)`` applied to its gradient."""
    net = Network(spec)
    params = net.init_params()
    X, y = _data(spec, seed, one_hot)

    def fn(p, X_, y_):
        loss, grads = net(p, X_, y_)
        grads = {k: np.array(v, copy=True) for k, v in grads.items()}
        edit(grads, p, X_)
        return loss, grads

    return gradcheck.check(fn, params, X, y, spec=spec if give_spec else None)


def _scale(*names, by):
    def edit(g, p, X):
        for k in names or list(g):
            g[k] = (g[k] * by).astype(g[k].dtype)
    return edit


# -- each pattern, planted ---------------------------------------------------------------------------
@pytest.mark.parametrize("names, by, pattern", [
    ((), -1.0, "sign_flip"),
    (("W2",), -1.0, "sign_flip"),            # one tensor
    (("W1", "b1"), -1.0, "sign_flip"),       # one layer
    ((), 2.0, "factor_two"),
    ((), 0.5, "factor_half"),
    ((), 6.0, "missing_mean"),               # the batch size of _spec()
    ((), 1 / 6, "extra_mean"),
    ((), 1 / 36, "constant_factor"),         # 1/N twice more is no named factor: just a constant
    ((), 1.1, "constant_factor"),
    ((), 0.0, "zero_gradient"),
])
def test_constant_factors_are_named(names, by, pattern):
    r = _planted(_spec(), _scale(*names, by=by))
    assert not r.passed
    assert r.diagnosis is not None and r.diagnosis.pattern == pattern, str(r)
    assert set(r.diagnosis.params) == set(names or r.tensors)
    if pattern not in ("zero_gradient",):
        assert r.diagnosis.evidence["ratio"] == pytest.approx(by, rel=1e-6, abs=1e-12)


def test_sign_flip_message_states_the_evidence():
    r = _planted(_spec(), _scale("W2", by=-1.0))
    assert "grads['W2'] = -1.000 x numerical: sign flipped" in r.diagnosis.message
    assert r.diagnosis.confidence == "high"
    assert "likely bug: grads['W2'] = -1.000" in str(r)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_1_1_factor_is_named_in_float32_as_in_float64(dtype):
    """The ratio is judged against the estimates' own resolution, not a fixed 1e-6: float32 central
    differences resolve about 1e-4, ample to tell 1.1 from 1."""
    r = _planted(_spec(dtype=dtype), _scale(by=1.1))
    assert r.diagnosis is not None and r.diagnosis.pattern == "constant_factor", str(r)
    assert r.diagnosis.evidence["ratio"] == pytest.approx(1.1, rel=1e-3)
    assert "1.100 x numerical" in r.diagnosis.message


def test_batch_size_from_x_when_no_spec_is_given():
    r = _planted(_spec(batch=5), _scale(by=5.0), give_spec=False)
    assert r.diagnosis.pattern == "missing_mean" and r.diagnosis.evidence["batch"] == 5


def test_n_over_n_minus_one_is_recognised():
    r = _planted(_spec(batch=8), _scale(by=8 / 7))
    assert r.diagnosis.pattern == "constant_factor" and "N/(N-1)" in r.diagnosis.message


def test_transposed_weight_gradient():
    def edit(g, p, X):
        g["W2"] = g["W2"].T.copy()
    r = _planted(_spec(hidden=(4, 4)), edit)
    assert r.diagnosis.pattern == "transposed" and r.diagnosis.params == ["W2"], str(r)


def test_one_element_wrong():
    def edit(g, p, X):
        g["W1"][1, 2] += 0.05
    r = _planted(_spec(), edit)
    assert r.diagnosis.pattern == "one_element", str(r)
    assert "W1[1, 2]" in r.diagnosis.message


def test_weight_decay_missing_needs_the_params():
    lam = 0.03

    def edit(g, p, X):
        for k in g:
            if k.startswith("W"):
                g[k] = g[k] - lam * p[k]
    r = _planted(_spec(), edit)
    assert r.diagnosis.pattern == "weight_decay", str(r)
    assert r.diagnosis.evidence["lambda"] == pytest.approx(-lam, rel=1e-6)
    # without the parameters the same numbers only say where: weights wrong, biases right
    d = diagnose(r, r.spec)
    assert d is not None and d.pattern == "weights_only"


def test_bias_gradient_from_the_first_sample_is_recognised_with_x():
    spec = _spec(inp=6, hidden=(5,), out=3, batch=4)
    net = Network(spec)
    X, y = _data(spec)

    def fn(p, X_, y_):
        loss, grads = net(p, X_, y_)
        _, first = net(p, X_[:1], y_[:1])  # sample 0's gradient of its own loss
        return loss, {k: (first[k] / len(X_) if k.startswith("b") else v) for k, v in grads.items()}

    r = gradcheck.check(fn, net.init_params(), X, y, spec=spec)
    assert r.diagnosis is not None and r.diagnosis.pattern == "bias_one_sample", str(r)
    assert r.diagnosis.evidence["sample"] == 0
    # without X (or with more samples than inputs) the deltas cannot be recovered: location only
    assert diagnose(r, r.spec).pattern == "bias_reduction"
    assert diagnose(r, r.spec, X=np.vstack([X, X])).pattern == "bias_reduction"  # 8 samples > 6 inputs


def test_hidden_layer_derivative_and_output_patterns():
    spec = _spec("tanh")
    net = Network(spec)

    def wrong_tanh(g, p, X):  # recompute backward with 1 - a instead of 1 - a^2 in the hidden layers
        out, c = net.forward(p, X)
        dz = net.loss_fn.grad(out, wrong_tanh.y)
        for i in range(3, 0, -1):
            g[f"W{i}"] = c.inputs[i - 1].T @ dz
            g[f"b{i}"] = dz.sum(axis=0)
            if i > 1:
                dz = (dz @ p[f"W{i}"].T) * (1 - np.tanh(c.pre[i - 2]))
    X, y = _data(spec)
    wrong_tanh.y = y

    def fn(p, X_, y_):
        loss, grads = net(p, X_, y_)
        grads = {k: np.array(v, copy=True) for k, v in grads.items()}
        wrong_tanh(grads, p, X_)
        return loss, grads

    r = gradcheck.check(fn, net.init_params(), X, y, spec=spec)
    assert r.diagnosis.pattern == "hidden_layer_derivative", str(r)
    assert set(r.diagnosis.params) == {"W1", "b1", "W2", "b2"}
    assert r.diagnosis.evidence["entry_layer"] == 2


def test_torch_style_names_are_read_per_layer():
    """'0.weight', '0.bias', '2.weight', ... (nn.Sequential) are layers too."""
    spec = _spec("tanh", hidden=(4,))
    net = Network(spec)
    names = {"W1": "0.weight", "b1": "0.bias", "W2": "2.weight", "b2": "2.bias"}
    params = {names[k]: v for k, v in net.init_params().items()}
    X, y = _data(spec)

    def fn(p, X_, y_):
        inner = {k: p[v] for k, v in names.items()}
        loss, grads = net(inner, X_, y_)
        out = {names[k]: np.array(v, copy=True) for k, v in grads.items()}
        for k in ("W1", "b1"):  # a hidden-layer derivative bug: layer 1 wrong by varying factors
            out[names[k]] = out[names[k]] * (1 + 0.3 * np.cos(np.arange(out[names[k]].size))).reshape(out[names[k]].shape)
        return loss, out

    r = gradcheck.check(fn, params, X, y)
    assert r.diagnosis is not None and r.diagnosis.pattern == "hidden_layer_derivative", str(r)


# -- false positives -----------------------------------------------------------------------------------
def test_correct_but_unusual_code_passes_so_nothing_is_diagnosed():
    # float32
    spec = _spec(dtype="float32")
    net = Network(spec)
    X, y = _data(spec)
    r = gradcheck.check(net, net.init_params(), X, y, spec=spec)
    assert r.passed and r.diagnosis is None, str(r)
    # tiny gradients: the loss scaled by 1e-12
    spec = _spec()
    net = Network(spec)
    X, y = _data(spec)

    def tiny(p, X_, y_):
        loss, g = net(p, X_, y_)
        return loss * 1e-12, {k: v * 1e-12 for k, v in g.items()}
    r = gradcheck.check(tiny, net.init_params(), X, y)
    assert r.passed and r.diagnosis is None, str(r)
    # relu at kinks: zero first-layer biases and a zero input row
    spec = _spec("relu")
    net = Network(spec)
    X, y = _data(spec)
    X[0] = 0
    params = dict(net.init_params())
    params["b1"] = np.zeros_like(params["b1"])
    r = gradcheck.check(net, params, X, y, spec=spec)
    assert r.passed and r.kinks and r.diagnosis is None, str(r)


@pytest.mark.parametrize("kind", KINDS)
def test_random_perturbations_never_get_a_specific_pattern(kind):
    base, params, X = _base(kind)
    rng = np.random.default_rng(KINDS.index(kind))
    names = list(base.tensors)
    claims = {}
    trials = 0
    for trial in range(300):
        subset = random_subset(names, rng)
        how = PERTURBATIONS[trial % 5]  # the first five (the benchmark runs all, more trials)
        delta = float(10 ** rng.uniform(-4, 0.3))
        claimed = {k: base.tensors[k].claimed.copy() for k in names}
        perturb(claimed, subset, how, delta, rng)
        r = with_claimed(base, claimed)
        if r.passed:
            continue
        trials += 1
        d = diagnose(r, base.spec, params=params, X=X)
        if d is None:
            continue
        assert d.pattern in PATTERNS
        assert d.pattern in LOCATION_PATTERNS, (kind, how, subset, delta, d)
        # a location claim names only tensors that really were changed
        assert set(d.params) <= set(subset), (kind, how, subset, d)
        claims[d.pattern] = claims.get(d.pattern, 0) + 1
    assert trials > 200  # most perturbations fail the check


@pytest.mark.parametrize("kind", ["float64", "float32"])
def test_a_factor_is_found_only_when_the_noise_is_below_resolution(kind):
    """Positive control for the test above: 2 x the gradient is factor_two; 2 x (1 + 1% noise) is not."""
    base, params, X = _base(kind)
    rng = np.random.default_rng(1)
    exact = {k: 2 * t.claimed for k, t in base.tensors.items()}
    assert diagnose(with_claimed(base, exact), base.spec, params=params, X=X).pattern == "factor_two"
    noisy = {k: 2 * t.claimed * (1 + 0.01 * rng.standard_normal(t.claimed.shape)) for k, t in base.tensors.items()}
    d = diagnose(with_claimed(base, noisy), base.spec, params=params, X=X)
    assert d is None or d.pattern not in SPECIFIC_PATTERNS, d


def test_no_arrays_or_a_passing_result_gives_none():
    base, params, X = _base("float64")
    assert diagnose(base, base.spec) is None  # nothing failed
    flipped = with_claimed(base, {k: -t.claimed for k, t in base.tensors.items()})
    again = Result.from_dict(flipped.to_dict())  # arrays left out of the JSON
    assert diagnose(again, base.spec) is None
    assert diagnose(Result.from_dict(flipped.to_dict(arrays=True)), base.spec).pattern == "sign_flip"


def test_diagnose_survives_odd_inputs():
    base, params, X = _base("float64")
    r = with_claimed(base, {k: -t.claimed for k, t in base.tensors.items()})
    r.tensors["W1"].error = np.full_like(r.tensors["W1"].numerical, np.nan)
    diagnose(r, {"batch": "six"}, params={"W1": np.zeros(3)}, X=np.array(["a"]))
    r.tensors["W1"].claimed = np.zeros(2)  # inconsistent shapes: the tensor is skipped
    diagnose(r, None, params=params, X=X)


@pytest.mark.parametrize("times, pattern", [(2.0, None), (1000.0, "one_element")])
def test_location_needs_a_clear_failure(times, pattern):
    """One element off by 2x its resolution fails the check but is too marginal to say where a bug is
    (the tensors that pass could hide the same error); 1000x is clearly one element."""
    from gradcheck.compare import ANALYTIC_ULPS, SAFETY
    base, params, X = _base("float64")
    t = base.tensors["W2"]
    lim = SAFETY * t.error + ANALYTIC_ULPS * eps_of(t.dtype) * (np.abs(t.numerical) + np.max(np.abs(t.numerical)))
    claimed = {k: v.claimed.copy() for k, v in base.tensors.items()}
    claimed["W2"] = t.numerical.copy()
    claimed["W2"][1, 3] += times * lim[1, 3]
    r = with_claimed(base, claimed)
    assert not r.passed and r.tensors["W2"].n_failed == 1
    d = diagnose(r, base.spec, params=params, X=X)
    assert (d.pattern if d else None) == pattern


# -- per tensor: each tensor's own exact relation --------------------------------------------------------
def _causes(d):
    return d.evidence.get("causes", [])


def test_a_sign_flip_in_one_tensor_is_named_per_tensor():
    r = _planted(_spec(), _scale("W1", by=-1.0))
    d = r.diagnosis
    assert d.pattern == "sign_flip" and d.params == ["W1"], str(r)
    assert "sign flipped in W1" in d.message and d.confidence == "high"
    # the output layer is right, so the loss-level story (a delta kept as y - out) is not offered
    assert not any("y - out" in c for c in _causes(d))


def test_a_sign_flip_next_to_an_unrelated_error_is_still_named():
    def edit(g, p, X):
        g["W1"] = -g["W1"]
        g["W3"] = g["W3"] + 0.1 * np.cos(np.arange(g["W3"].size)).reshape(g["W3"].shape)
    r = _planted(_spec(), edit)
    d = r.diagnosis
    assert d.pattern == "sign_flip" and d.params == ["W1"], str(r)
    assert d.evidence["unexplained"] == ["W3"] and d.confidence == "medium"
    assert "no exact relation: W3" in d.message


def test_different_ratios_in_different_tensors_are_each_named():
    def edit(g, p, X):
        g["W1"] = -g["W1"]
        g["b3"] = 2 * g["b3"]
        g["W2"] = np.zeros_like(g["W2"])
    r = _planted(_spec(), edit)
    d = r.diagnosis
    assert d.pattern == "per_tensor" and set(d.params) == {"W1", "b3", "W2"}, str(r)
    per = d.evidence["per_tensor"]
    assert per["W1"]["pattern"] == "sign_flip" and per["W1"]["ratio"] == pytest.approx(-1, rel=1e-6)
    assert per["b3"]["pattern"] == "factor_two" and per["b3"]["ratio"] == pytest.approx(2, rel=1e-6)
    assert per["W2"]["pattern"] == "zero_gradient"
    assert "sign flipped in W1" in d.message and "twice the right size in b3" in d.message


@pytest.mark.parametrize("name, by, pattern", [("b2", 6.0, "missing_mean"), ("b1", 1 / 6, "extra_mean"),
                                               ("W3", 6.0, "missing_mean")])
def test_a_batch_size_factor_in_one_tensor(name, by, pattern):
    r = _planted(_spec(), _scale(name, by=by))
    d = r.diagnosis
    assert d.pattern == pattern and d.params == [name], str(r)
    assert d.evidence["batch"] == 6 and d.evidence["ratio"] == pytest.approx(by, rel=1e-6)
    assert f"in {name} (N = 6, the batch size)" in d.message
    assert len(_causes(d)) >= 2  # a sum for a mean, or a delta taken before its 1/N: not one story


def test_a_factor_two_in_one_tensor_lists_several_causes():
    r = _planted(_spec(), _scale("W2", by=2.0))
    d = r.diagnosis
    assert d.pattern == "factor_two" and d.params == ["W2"], str(r)
    assert "twice the right size in W2" in d.message and "usual causes:" in d.message
    causes = _causes(d)
    assert len(causes) >= 2
    assert any("d(x^2)/dx" in c for c in causes) and any("added twice" in c for c in causes)


@pytest.mark.parametrize("by, pattern", [(2.0, "factor_two"), (0.5, "factor_half")])
def test_a_factor_two_in_every_tensor_is_not_one_story_either(by, pattern):
    d = _planted(_spec(), _scale(by=by)).diagnosis
    assert d.pattern == pattern
    causes = _causes(d)
    assert len(causes) >= 2 and any("d(x^2)/dx" in c for c in causes)
    # every tensor scaled: a dropout below the top layer would leave the top layer right
    assert not any("dropout" in c for c in causes)


def _dropout_net(keep_twice: bool):
    """One hidden layer with inverted dropout, keep_prob = 0.5, a fixed mask per call; the bug either
    forgets the 1/keep_prob in backward (ratio 1/2) or applies it twice (ratio 2)."""
    from gradcheck.teach.mutants import Dropout

    class Half(Dropout):
        KEEP = 0.5

        def delta_down(self, i, params, c, dz):
            scale = 1 / self.KEEP**2 if keep_twice else 1.0  # right: 1 / self.KEEP
            return dz @ params[f"W{i}"].T * c.mask[i - 1] * scale

    spec = _spec(hidden=(6,), batch=5)
    X, y = _data(spec)
    net = Half(spec)
    return gradcheck.check(net, net.init_params(), X, y)


@pytest.mark.parametrize("keep_twice, ratio, pattern", [(True, 2.0, "factor_two"), (False, 0.5, "factor_half")])
def test_dropout_keep_prob_half_is_not_called_the_two_of_a_square(keep_twice, ratio, pattern):
    r = _dropout_net(keep_twice)
    d = r.diagnosis
    assert d.pattern == pattern and set(d.params) == {"W1", "b1"}, str(r)
    assert d.evidence["ratio"] == pytest.approx(ratio, rel=1e-6)
    causes = _causes(d)
    assert any("dropout" in c and "keep_prob = 0.5" in c for c in causes), d.message
    assert len(causes) >= 2  # dropout is one of the listed causes, not the only story
    assert any("d(x^2)/dx" in c for c in causes)
    # only the layers below the top one: the loss's own 2 (which scales every tensor) is not offered
    assert not any("loss" in c for c in causes), causes


def test_a_constant_in_the_layers_below_offers_dropout_with_its_keep_prob():
    d = _planted(_spec(), _scale("W1", "b1", by=0.8)).diagnosis
    assert d.pattern == "constant_factor" and set(d.params) == {"W1", "b1"}
    assert any("keep_prob = 0.8" in c for c in _causes(d))


def test_all_zero_claimed_gradient_in_one_tensor():
    r = _planted(_spec(), _scale("b2", by=0.0))
    d = r.diagnosis
    assert d.pattern == "zero_gradient" and d.params == ["b2"], str(r)
    assert "b2 exactly zero" in d.message


def test_all_zero_numerical_gradient_a_parameter_the_loss_does_not_use():
    """A parameter forward never reads has a numerical gradient of exactly 0; a non-zero claim for it
    is named as such (and the ratio rules, which would divide by it, stay silent)."""
    spec = _spec()
    net = Network(spec)
    params = dict(net.init_params(), gain=np.ones(3))
    X, y = _data(spec)

    def fn(p, X_, y_):
        loss, g = net({k: v for k, v in p.items() if k != "gain"}, X_, y_)
        return loss, dict(g, gain=np.array([0.5, -1.0, 2.0]))

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        r = gradcheck.check(fn, params, X, y, spec=spec)
        assert not r.passed and np.all(r.tensors["gain"].numerical == 0)
        assert r.diagnosis is not None and r.diagnosis.pattern == "unused_parameter", str(r)
        assert r.diagnosis.params == ["gain"]
        assert diagnose(r, r.spec, params=params, X=X).pattern == "unused_parameter"


# -- no RuntimeWarning leaks, whatever the arrays hold ------------------------------------------------------
def _quiet_diagnose(r, base, params, X):
    """diagnose with every RuntimeWarning an error (as the project's pytest config makes them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return diagnose(r, base.spec, params=params, X=X)


def _edited(base, edit):
    """A failing copy of ``base`` (every claimed gradient sign-flipped) with its arrays edited in place."""
    r = with_claimed(base, {k: -t.claimed for k, t in base.tensors.items()})
    for t in r.tensors.values():
        t.claimed, t.numerical, t.error = t.claimed.copy(), t.numerical.copy(), t.error.copy()
    edit(r.tensors)
    return r


def _set(what, value, where="first"):
    def edit(tensors):
        for t in tensors.values():
            for name in what.split("+"):
                a = getattr(t, name)
                if where == "all":
                    a[...] = value
                else:
                    a.flat[0] = value
    return edit


@pytest.mark.parametrize("label, edit, pattern", [
    ("claimed all zero", _set("claimed", 0.0, "all"), "zero_gradient"),
    ("numerical and bound all zero", _set("numerical+error", 0.0, "all"), "unused_parameter"),
    ("numerical all zero, bound kept", _set("numerical", 0.0, "all"), "unused_parameter"),
    ("exact zeros in both, zero bound", _set("claimed+numerical+error", 0.0), "sign_flip"),
    ("claimed inf", _set("claimed", np.inf), "sign_flip"),
    ("claimed -inf", _set("claimed", -np.inf), "sign_flip"),
    ("claimed nan", _set("claimed", np.nan), "sign_flip"),
    ("numerical inf", _set("numerical", np.inf), "sign_flip"),
    ("numerical nan", _set("numerical", np.nan), "sign_flip"),
    ("bound inf", _set("error", np.inf), "sign_flip"),
    ("inf in both", _set("claimed+numerical", np.inf), "sign_flip"),
    ("claimed all nan", _set("claimed", np.nan, "all"), None),
    ("claimed all inf", _set("claimed", np.inf, "all"), None),
    ("numerical all nan", _set("numerical", np.nan, "all"), None),
])
def test_zeros_infs_and_nans_leak_no_runtime_warning(label, edit, pattern):
    base, params, X = _base("float64")
    d = _quiet_diagnose(_edited(base, edit), base, params, X)
    assert (d.pattern if d else None) == pattern, (label, d)


@pytest.mark.parametrize("scale", [1e-300, 1e-160, 1e150, 1e300])
def test_extreme_magnitudes_leak_no_runtime_warning(scale):
    base, params, X = _base("float64")

    def edit(tensors):
        for t in tensors.values():
            t.claimed *= scale
            if scale < 1:  # the whole problem scaled: still a sign flip
                t.numerical *= scale
                t.error *= scale
    d = _quiet_diagnose(_edited(base, edit), base, params, X)
    if scale < 1:
        assert d is not None and d.pattern == "sign_flip"
    else:  # -1e150 x numerical is no named ratio; whatever is said, it is not a named cause
        assert d is None or d.pattern in LOCATION_PATTERNS | {"constant_factor"}


def test_zero_params_and_zero_x_leak_no_runtime_warning():
    base, params, X = _base("wide")
    r = with_claimed(base, {k: t.claimed * (2.0 if k.startswith("b") else 1.0) for k, t in base.tensors.items()})
    d = _quiet_diagnose(r, base, {k: np.zeros_like(v) for k, v in params.items()}, np.zeros_like(X))
    assert d is not None and d.pattern == "factor_two"


# -- and nothing specific where there is no exact relation ---------------------------------------------------
@pytest.mark.parametrize("kind", ["float64", "float32", "softmax"])
def test_one_tensor_corrupted_at_random_gets_no_specific_cause(kind):
    """The per-tensor rules see each tensor alone, small ones included (b3 has 2 or 3 elements): random
    noise in one tensor, even around a named ratio (-1, 2, 1/2, N), must not be read as that ratio."""
    base, params, X = _base(kind)
    rng = np.random.default_rng(7)
    n = base.spec["batch"]
    failing = 0
    for trial in range(150):
        name = list(base.tensors)[trial % len(base.tensors)]
        around = (1.0, -1.0, 2.0, 0.5, float(n))[trial % 5]
        delta = float(10 ** rng.uniform(-2, 0.3))
        claimed = {k: t.claimed.copy() for k, t in base.tensors.items()}
        c = claimed[name]
        claimed[name] = around * c * (1 + delta * rng.standard_normal(c.shape))
        r = with_claimed(base, claimed)
        if r.passed:
            continue
        failing += 1
        d = _quiet_diagnose(r, base, params, X)
        assert d is None or d.pattern in LOCATION_PATTERNS, (kind, name, around, delta, d)
    assert failing > 100


def test_exact_ratios_in_two_tensors_next_to_noise_are_named_noise_is_not():
    base, params, X = _base("float64")
    rng = np.random.default_rng(3)
    claimed = {k: t.claimed.copy() for k, t in base.tensors.items()}
    claimed["W1"] = -claimed["W1"]
    claimed["b1"] = -claimed["b1"]
    claimed["W2"] = 2 * claimed["W2"] * (1 + 0.05 * rng.standard_normal(claimed["W2"].shape))
    d = _quiet_diagnose(with_claimed(base, claimed), base, params, X)
    assert d.pattern == "sign_flip" and set(d.params) == {"W1", "b1"}
    assert d.evidence["unexplained"] == ["W2"]
