"""The checker against planted bugs in three code styles, and against correct code in the same
styles (float64 and float32): every bug fails with worst_param in the affected tensors; correct
code passes. Tolerances are the checker's own (gradcheck.compare): no test sets one.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradcheck
from tests import checker_models as m

FUNCTIONAL_BUGS = {
    "sign": {"W2", "b2"},
    "factor_half": {"W1", "b1", "W2", "b2", "W3", "b3"},
    "missing_mean": {"W1", "b1", "W2", "b2", "W3", "b3"},
    "transpose": {"W2"},
    "sigmoid_of_pre": {"W1", "b1", "W2", "b2"},
    "tanh_as_one_minus_a": {"W1", "b1"},
    "one_element": {"W1"},
    "scaled_1e-4": {"W3"},
    "element_1e-4": {"W2"},
    "bias_one_sample": {"b3"},
    "wrong_layer_weights": {"W1", "b1", "W2", "b2"},
}


def _inputs_unchanged(params, X, y, before):
    p0, X0, y0 = before
    assert list(params) == list(p0)
    for k in params:
        assert params[k].dtype == p0[k].dtype and params[k].tobytes() == p0[k].tobytes()
    assert X.tobytes() == X0.tobytes() and y.tobytes() == y0.tobytes()


@pytest.mark.parametrize("bug, affected", FUNCTIONAL_BUGS.items(), ids=list(FUNCTIONAL_BUGS))
def test_functional_bug_is_caught_and_localized(bug, affected):
    params, (X, y) = m.functional_params(), m.functional_batch()
    before = ({k: v.copy() for k, v in params.items()}, X.copy(), y.copy())
    result = gradcheck.check(m.functional_mlp(bug), params, X, y)
    assert not result.passed, str(result)
    assert result.worst_param in affected, str(result)
    failing = {t.name for t in result.tensors.values() if not t.passed}
    assert failing <= affected, f"unaffected tensors reported failing: {failing - affected}"
    _inputs_unchanged(params, X, y, before)


@pytest.mark.parametrize("bug, affected", [("sign", {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}),
                                           ("transpose", {"fc1.weight"}),
                                           ("stale_cache", {"fc1.weight", "fc1.bias", "fc2.weight"})])
def test_class_style_bug_is_caught(bug, affected):
    result = gradcheck.check(m.ClassMLP(bug), m.class_params(), *m.class_batch())
    assert not result.passed and result.worst_param in affected, str(result)


@pytest.mark.parametrize("bug, affected", [("softmax_missing", {"out/kernel", "out/bias", "hidden/kernel", "hidden/bias"}),
                                           ("slopes_swapped", {"hidden/kernel", "hidden/bias"}),
                                           ("factor_two", {"out/kernel", "out/bias", "hidden/kernel", "hidden/bias"})])
def test_dict_style_bug_is_caught(bug, affected):
    result = gradcheck.check(m.dict_layers_fn(bug), m.dict_params(), *m.dict_batch())
    assert not result.passed and result.worst_param in affected, str(result)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("style", ["functional", "class", "dict"])
def test_correct_code_passes(style, dtype):
    fn, params, batch = {
        "functional": (m.functional_mlp(), m.functional_params(dtype), m.functional_batch(dtype)),
        "class": (m.ClassMLP(), m.class_params(dtype), m.class_batch(dtype)),
        "dict": (m.dict_layers_fn(), m.dict_params(dtype), m.dict_batch(dtype)),
    }[style]
    result = gradcheck.check(fn, params, *batch)
    assert result.passed, str(result)
    assert result.dtype == np.dtype(dtype).name


@pytest.mark.parametrize("factor", [1.1, 0.9, 1.5])
def test_float32_errors_of_ten_percent_fail(factor):
    """float32 tolerance is loose (its finite differences resolve ~1e-4 of the loss scale), but a
    10% error on a gradient of ordinary size is far beyond it."""
    base = m.functional_mlp()

    def fn(params, X, y):
        loss, g = base(params, X, y)
        return loss, {**g, "W3": g["W3"] * np.float32(factor)}

    params, batch = m.functional_params(np.float32), m.functional_batch(np.float32)
    result = gradcheck.check(fn, params, *batch)
    assert not result.passed and result.worst_param == "W3", str(result)


def test_float64_catches_what_torch_default_rtol_misses():
    """A single element off by 1e-4 and a tensor scaled by 1.0001: below torch.autograd.gradcheck's
    rtol=1e-3, far above our float64 tolerance (~1e-8 relative for ordinary entries)."""
    params, batch = m.functional_params(), m.functional_batch()
    for bug in ("element_1e-4", "scaled_1e-4"):
        r = gradcheck.check(m.functional_mlp(bug), params, *batch)
        assert not r.passed and r.max_rel_error == pytest.approx(1e-4, rel=0.05), str(r)
        assert r.tolerance < 1e-5


def test_tiny_gradient_entries_pass():
    """Entries ~1e-12 beside O(1) ones: a bare 1e-8 floor would false-alarm; ours scales with the
    estimate's own error bound."""
    def fn(params, X, y):
        w = params["w"]
        scale = np.array([1.0, 1e-6, 1e-12, 3.0])
        loss = np.sum(scale * np.sin(w) * X.sum())
        return loss, {"w": scale * np.cos(w) * X.sum()}

    params = {"w": np.array([0.3, -1.2, 2.0, 0.7])}
    result = gradcheck.check(fn, params, np.ones((3, 2)), None)
    assert result.passed, str(result)


def test_assert_gradients_agrees_with_check():
    params, batch = m.functional_params(), m.functional_batch()
    assert gradcheck.assert_gradients(m.functional_mlp(), params, *batch) is None
    bad = m.functional_mlp("sign")
    result = gradcheck.check(bad, params, *batch)
    with pytest.raises(AssertionError) as info:
        gradcheck.assert_gradients(bad, params, *batch)
    first, second = str(info.value).splitlines()[:2]
    assert first == gradcheck.result.failure_line(result)  # the one-line summary pytest -ra shows
    assert second == str(result).splitlines()[0]            # then the check's own explanation
    assert result.worst_param in ("W2", "b2") and result.worst_param in first


def test_explanation_names_element_values_and_tolerance():
    result = gradcheck.check(m.functional_mlp("one_element"), m.functional_params(), *m.functional_batch())
    text = str(result)
    assert "W1[1, 2]" in text and "claimed" in text and "numerical" in text and "tolerance" in text
    assert result.worst.index == [1, 2] and result.worst_param == "W1"
    assert result.tensors["W1"].n_failed == 1
    w = result.worst
    assert w.claimed == pytest.approx(w.numerical * 1.01, rel=1e-6)


@pytest.mark.parametrize("scheme", ["forward", "central", "central4", "richardson", "complex", "auto"])
def test_every_scheme_passes_correct_and_fails_wrong_code(scheme):
    params, batch = m.functional_params(), m.functional_batch()
    good = gradcheck.check(m.functional_mlp(), params, *batch, scheme=scheme)
    bad = gradcheck.check(m.functional_mlp("one_element"), params, *batch, scheme=scheme)
    assert good.passed, str(good)
    assert not bad.passed and bad.worst_param == "W1", str(bad)


def test_complex_step_is_used_when_fn_is_analytic():
    """The functional model is plain numpy arithmetic: analytic, so 'auto' picks complex step,
    whose estimate is accurate to ~eps (no cancellation)."""
    params, batch = m.functional_params(), m.functional_batch()
    r = gradcheck.check(m.functional_mlp(), params, *batch)
    assert r.scheme == "complex" and r.passed
    assert r.max_rel_error < 1e-12


def test_complex_step_never_false_alarms_on_non_analytic_code():
    """np.abs / np.maximum on complex numbers give plausible but wrong complex-step derivatives;
    the checker must fall back (or cross-check) and pass correct code."""
    def fn(params, X, y):
        w = params["w"]
        z = X @ w
        a = np.maximum(z, 0) + np.abs(z)
        loss = np.sum(a ** 2) / len(X)
        da = 2 * a / len(X)
        dz = da * ((z > 0) * 1.0 + np.sign(z))
        return loss, {"w": X.T @ dz}

    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(3, 2))}
    X = rng.normal(size=(6, 3))
    for scheme in ("auto", "complex"):
        r = gradcheck.check(fn, params, X, None, scheme=scheme)
        assert r.passed, str(r)
