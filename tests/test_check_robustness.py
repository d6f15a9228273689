"""Faults of the code under test give passed=False with a specific explanation, never an
exception, and the caller's params, X and y stay bit-for-bit unchanged. Misuse of the harness
raises TypeError/ValueError naming the argument."""
from __future__ import annotations

import numpy as np
import pytest

import gradcheck
from tests import checker_models as m

GOOD = m.functional_mlp()


def inputs():
    return m.functional_params(), *m.functional_batch()


def frozen(params, X, y):
    return ({k: (v.dtype, v.shape, v.tobytes()) for k, v in params.items()}, X.tobytes(), y.tobytes())


def wrap(change):
    """A variant of the good function whose output is passed through ``change(loss, grads)``."""
    def fn(params, X, y):
        loss, g = GOOD(params, X, y)
        return change(loss, dict(g))
    return fn


def _raise(*_):
    raise RuntimeError("boom in user code")


FAULTS = {
    "raised": (lambda p, X, y: _raise(), "fn raised RuntimeError: boom in user code"),
    "non_finite_loss": (wrap(lambda l, g: (float("nan"), g)), "the loss is nan"),
    "non_finite_grad": (wrap(lambda l, g: (l, {**g, "b1": np.array([0.0, np.inf, 1.0])})),
                        "grads['b1'] is inf at b1[1] (1 non-finite element(s))"),
    "shape": (wrap(lambda l, g: (l, {**g, "W1": g["W1"].T})),
              "grads['W1'] has shape (3, 4), expected (4, 3) (the shape of params['W1']) (transposed?)"),
    "dtype": (wrap(lambda l, g: (l, {**g, "b2": g["b2"].astype(int)})),
              "grads['b2'] has dtype int64; expected a floating dtype"),
    "missing_key": (wrap(lambda l, g: (l, {k: v for k, v in g.items() if k != "b3"})),
                    "grads lacks 'b3'"),
    "extra_key": (wrap(lambda l, g: (l, {**g, "W4": np.zeros(2)})),
                  "grads has key(s) 'W4' that params does not have"),
    "non_scalar_loss": (wrap(lambda l, g: (np.full(5, l), g)),
                        "the loss has shape (5,), not a scalar: a per-sample vector?"),
    "bad_return": (lambda p, X, y: GOOD(p, X, y)[1], "fn must return (loss, grads); it returned dict"),
    "bad_grads": (wrap(lambda l, g: (l, list(g.values()))), "grads must be a dict with the keys of params, got list"),
}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_fault_gives_specific_failure_and_leaves_inputs_alone(kind):
    fn, message = FAULTS[kind]
    params, X, y = inputs()
    before = frozen(params, X, y)
    result = gradcheck.check(fn, params, X, y)
    assert not result.passed
    assert result.problems and result.problems[0].kind == kind
    assert message in result.problems[0].message, result.problems[0].message
    assert message in str(result)
    assert frozen(params, X, y) == before
    result.to_dict()  # still serializable


def test_dropout_with_a_fresh_mask_per_call_is_nondeterminism():
    rng = np.random.default_rng()

    def fn(params, X, y):
        mask = rng.random(X.shape) > 0.5
        return GOOD(params, X * mask * 2.0, y)

    result = gradcheck.check(fn, *inputs())
    assert not result.passed and result.problems[0].kind == "nondeterministic"
    assert "not deterministic" in str(result) and "dropout" in str(result)


def test_gradients_accumulated_across_calls_are_named():
    store = {}

    def fn(params, X, y):  # a forgotten zero_grad: .grad keeps growing
        loss, g = GOOD(params, X, y)
        for k, v in g.items():
            store[k] = store.get(k, 0) + v
        return loss, {k: v.copy() for k, v in store.items()}

    result = gradcheck.check(fn, *inputs())
    assert not result.passed and result.problems[0].kind == "accumulating"
    assert "zero_grad" in str(result)


def test_summation_order_noise_between_calls_passes():
    """Sum in a random order each call: results differ in the last bits only; not a fault."""
    rng = np.random.default_rng()

    def fn(params, X, y):
        loss, g = GOOD(params, X, y)
        noisy = {}
        for k, v in g.items():
            terms = np.stack([v * 0.25, v * 0.5, v * 0.125, v * 0.125] + [v * 1e-3, -v * 1e-3])
            noisy[k] = terms[rng.permutation(len(terms))].sum(axis=0)
        parts = [loss * 0.3, loss * 0.7, 1e-3 * loss, -1e-3 * loss]
        return sum(parts[i] for i in rng.permutation(4)), noisy

    result = gradcheck.check(fn, *inputs())
    assert result.passed, str(result)


@pytest.mark.parametrize("target", ["params", "X", "y"])
def test_fn_writing_into_its_inputs_fails_and_caller_is_untouched(target):
    def fn(params, X, y):
        loss, g = GOOD(params, X, y)
        if target == "params":
            params["W1"] -= 0.1 * g["W1"]  # an SGD step inside the gradient function
        elif target == "X":
            X *= 2
        else:
            y[:] = 0
        return loss, g

    params, X, y = inputs()
    before = frozen(params, X, y)
    result = gradcheck.check(fn, params, X, y)
    assert not result.passed and result.problems[0].kind == "mutates_input"
    assert "modified" in result.problems[0].message and (target in result.problems[0].message)
    assert frozen(params, X, y) == before


def test_fn_that_raises_only_when_perturbed_names_the_element():
    def fn(params, X, y):
        if params["W2"][2, 1] > m.functional_params()["W2"][2, 1]:
            raise ValueError("weight too large")
        return GOOD(params, X, y)

    params, X, y = inputs()
    before = frozen(params, X, y)
    result = gradcheck.check(fn, params, X, y, scheme="central")
    assert not result.passed and result.problems[0].kind == "raised"
    assert "W2[2, 1]" in result.problems[0].message and "weight too large" in result.problems[0].message
    assert frozen(params, X, y) == before


def test_loss_that_becomes_nan_when_perturbed_is_reported():
    def fn(params, X, y):
        w = params["w"]
        with np.errstate(invalid="ignore"):
            loss = float(np.sum(np.sqrt(w)))   # sqrt(0 - h) is nan
        return loss, {"w": 0.5 / np.sqrt(np.maximum(w, 1e-300))}

    result = gradcheck.check(fn, {"w": np.array([1.0, 0.0])}, np.zeros(1), None, scheme="central")
    assert not result.passed and result.problems[0].kind == "numerical_non_finite"
    assert "w[1]" in result.problems[0].message


@pytest.mark.parametrize("call, error, message", [
    (lambda: gradcheck.check(GOOD, [np.zeros(2)], 1, 1), TypeError, "params must be a dict of str -> numpy array, got list"),
    (lambda: gradcheck.check(GOOD, {"w": [1.0]}, 1, 1), TypeError, "params['w'] must be a numpy array, got list"),
    (lambda: gradcheck.check(GOOD, {"w": np.arange(3)}, 1, 1), ValueError, "params['w'] has dtype int64"),
    (lambda: gradcheck.check(GOOD, {}, 1, 1), ValueError, "params is empty"),
    (lambda: gradcheck.check(GOOD, {"w": np.array([np.nan])}, 1, 1), ValueError, "params['w'] has a non-finite value at w[0]"),
    (lambda: gradcheck.check(GOOD, {"w": np.zeros(2)}, None, 1), ValueError, "X is None"),
    (lambda: gradcheck.check("fn", {"w": np.zeros(2)}, 1, 1), TypeError, "fn must be callable"),
    (lambda: gradcheck.check(GOOD, {"w": np.zeros(2)}, 1, 1, scheme="backward"), ValueError, "scheme='backward'"),
    (lambda: gradcheck.check(GOOD, {"w": np.zeros(2)}, 1, 1, mode="slow"), ValueError, "mode='slow'"),
    (lambda: gradcheck.check(GOOD, {"w": np.zeros(2)}, 1, 1, rtol=-1), ValueError, "rtol=-1"),
])
def test_harness_misuse_raises_naming_the_argument(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def test_loss_fn_must_agree_with_fn():
    params, X, y = inputs()
    good = gradcheck.check(GOOD, params, X, y, loss_fn=lambda p, X, y: GOOD(p, X, y)[0], scheme="central")
    assert good.passed, str(good)
    bad = gradcheck.check(GOOD, params, X, y, loss_fn=lambda p, X, y: 2 * GOOD(p, X, y)[0])
    assert not bad.passed and bad.problems[0].kind == "loss_fn_mismatch"


def test_result_round_trips_through_json():
    import json

    result = gradcheck.check(m.functional_mlp("sign"), *inputs())
    text = json.dumps(result.to_dict(arrays=True), allow_nan=False)
    back = gradcheck.Result.from_dict(json.loads(text))
    assert back.passed == result.passed and back.worst_param == result.worst_param
    assert back.max_rel_error == result.max_rel_error and str(back) == str(result)
    np.testing.assert_array_equal(back.tensors["W2"].claimed, result.tensors["W2"].claimed)
    failed = gradcheck.check(FAULTS["raised"][0], *inputs())
    assert json.loads(json.dumps(failed.to_dict(), allow_nan=False))["max_rel_error"] == "inf"


def test_a_result_is_truthy_exactly_when_it_passed():
    """``assert gradcheck.check(...)`` must fail on a wrong gradient (as with torch's bool)."""
    def right(p, X, y):
        return float(np.sum(p["w"] ** 2)), {"w": 2 * p["w"]}

    def wrong(p, X, y):
        return float(np.sum(p["w"] ** 2)), {"w": 3 * p["w"]}
    w = {"w": np.array([1.0, -2.0])}
    ok, bad = gradcheck.check(right, w, np.zeros(1), None), gradcheck.check(wrong, w, np.zeros(1), None)
    assert ok and ok.passed
    assert not bad and not bad.passed
