"""The checker's phases (issue 17): options validated in one place, harness bugs never blamed on fn,
thread-safe bounded observers; and the progress display of long checks (issue 16)."""
from __future__ import annotations

import io
import math
import threading

import numpy as np
import pytest

import gradcheck
from gradcheck import checker, progress


def quadratic(params, X, y):
    w = params["w"]
    return float(np.sum((X @ w - y) ** 2)), {"w": 2 * X.T @ (X @ w - y)}


def inputs(n=4):
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal(n)}, rng.standard_normal((5, n)), rng.standard_normal(5)


# -- options -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("options, error, message", [
    ({"rtol": math.inf}, ValueError, "rtol=inf: expected a finite number >= 0"),
    ({"rtol": math.nan}, ValueError, "rtol=nan: expected a finite number >= 0"),
    ({"rtol": True}, ValueError, "rtol=True"),
    ({"mode": "fast", "symbolic": True}, ValueError, "symbolic=True: mode='fast' runs no symbolic oracle"),
    ({"mode": "fast", "detect_kinks": False}, ValueError, "detect_kinks=False: mode='fast'"),
    ({"symbolic": True}, ValueError, "symbolic=True: the symbolic oracle needs spec="),
    ({"symbolic": "yes"}, TypeError, "symbolic='yes'"),
    ({"detect_kinks": 0}, TypeError, "detect_kinks=0: expected True or False"),
    ({"seed": 1.5}, TypeError, "seed=1.5: expected an int"),
    ({"quiet": "no"}, TypeError, "quiet='no'"),
    ({"oracle": "exact"}, ValueError, "oracle='exact': expected one of 'numerical', 'structured'"),
])
def test_options_are_validated_in_one_place_naming_name_equals_value(options, error, message):
    params, X, y = inputs()
    calls = []

    def fn(p, X, y):
        calls.append(1)
        return quadratic(p, X, y)
    with pytest.raises(error) as info:
        gradcheck.check(fn, params, X, y, **options)
    assert message in str(info.value)
    assert not calls, "misuse is refused before fn is called"


def test_rtol_inf_no_longer_passes_a_gradient_five_times_wrong():
    params, X, y = inputs()

    def five_x(p, X, y):
        loss, g = quadratic(p, X, y)
        return loss, {"w": 5 * g["w"]}
    with pytest.raises(ValueError, match="rtol=inf"):
        gradcheck.check(five_x, params, X, y, rtol=float("inf"))
    assert not gradcheck.check(five_x, params, X, y, rtol=1.0)  # a finite rtol of 100% still catches 5x


# -- harness bugs surface as harness errors ----------------------------------------------------------
def test_a_bug_in_the_judge_is_a_traceback_not_fn_raised(monkeypatch):
    """Only calls into user code are wrapped: an exception in the harness's own arithmetic must
    propagate (here planted in the comparison), never become "fn raised ..." on the result."""
    from gradcheck import judging

    def broken(*args, **kwargs):
        raise ZeroDivisionError("planted harness bug")
    monkeypatch.setattr(judging, "compare", broken)
    monkeypatch.setattr(judging, "compare_all", broken)  # the first look compares all tensors at once
    params, X, y = inputs()
    with pytest.raises(ZeroDivisionError, match="planted harness bug"):
        gradcheck.check(quadratic, params, X, y)


def test_a_bug_in_fast_mode_is_a_traceback_not_fn_raised(monkeypatch):
    from gradcheck import fastmode

    def broken(*args, **kwargs):
        raise KeyError("planted harness bug")
    monkeypatch.setattr(fastmode, "_directional_verdict", broken)
    params, X, y = inputs()
    with pytest.raises(KeyError, match="planted harness bug"):
        gradcheck.check(quadratic, params, X, y, mode="fast")


def test_fn_raising_at_a_moved_point_is_still_fns_fault_in_fast_mode():
    params, X, y = inputs()
    seen = []

    def fragile(p, X, y):
        seen.append(1)
        if len(seen) > 2:  # fine for the two validation calls, then raises
            raise FloatingPointError("boom")
        return quadratic(p, X, y)
    result = gradcheck.check(fragile, params, X, y, mode="fast")
    assert not result.passed and result.problems[0].kind == "raised"
    assert "FloatingPointError: boom" in result.problems[0].message


def test_a_bug_in_the_ladder_is_a_traceback(monkeypatch):
    """refine_element wraps only the loss calls: a harness error inside the ladder propagates."""
    from gradcheck import numerical

    def wrong(params, X, y):  # fails the first look, so every element gets the ladder
        loss, g = quadratic(params, X, y)
        return loss, {"w": g["w"] + 1.0}
    def broken(*args, **kwargs):
        raise OverflowError("planted")
    monkeypatch.setattr(numerical, "Refinement", broken)  # built inside the ladder's loop
    params, X, y = inputs()
    with pytest.raises(OverflowError, match="planted"):
        gradcheck.check(wrong, params, X, y, scheme="central")


# -- observers -----------------------------------------------------------------------------------------
def test_observers_are_bounded_and_removable():
    added = []
    try:
        for i in range(checker.Observers.LIMIT - len(checker.observers)):
            def observer(result, i=i):
                return None
            checker.observers.append(observer)
            added.append(observer)
        with pytest.raises(RuntimeError, match="observers registered"):
            checker.observers.append(lambda result: None)
    finally:
        for observer in added:
            checker.observers.remove(observer)
    assert not any(o in checker.observers for o in added)


def test_observers_hear_checks_from_several_threads():
    heard = []
    lock = threading.Lock()

    def observer(result):
        with lock:
            heard.append(result.passed)
    checker.observers.append(observer)
    try:
        params, X, y = inputs()
        threads = [threading.Thread(target=gradcheck.check, args=(quadratic, params, X, y)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        checker.observers.remove(observer)
    assert heard == [True] * 4


# -- progress of long checks ---------------------------------------------------------------------------
def test_a_long_check_says_how_long_and_the_faster_paths(monkeypatch, capsys):
    """With the thresholds lowered to zero (so the test is fast), a check logs its plan on a
    non-terminal stderr: calls, time per call, the estimate, then the faster paths."""
    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    monkeypatch.setattr(progress, "SUGGEST_AFTER", 0.0)
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    params, X, y = inputs(6)
    with progress.quiet_by_default(False):  # this test runs in pytest, where it is quiet by default
        result = gradcheck.check(quadratic, params, X, y, scheme="central", name="tiny")
    assert result.passed
    err = capsys.readouterr().err
    assert "gradcheck: checking tiny: about 12 calls of" in err
    assert "faster: loss_fn=" in err and "oracle='structured'" in err and "mode='fast'" in err
    assert "(12/12 calls)" in err  # the log line at the end of the pass


def test_progress_is_silent_when_quiet_or_short(monkeypatch, capsys):
    params, X, y = inputs()
    with progress.quiet_by_default(False):
        gradcheck.check(quadratic, params, X, y)  # far below the threshold: nothing
    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    gradcheck.check(quadratic, params, X, y, quiet=True)
    with progress.quiet_by_default():
        gradcheck.check(quadratic, params, X, y)
    assert capsys.readouterr().err == ""
    with progress.quiet_by_default():  # an explicit quiet=False wins over the block's default
        gradcheck.check(quadratic, params, X, y, quiet=False, scheme="central")
    assert "gradcheck: checking" in capsys.readouterr().err


def test_progress_bar_on_a_terminal_shows_headline_and_closes():
    stream = io.StringIO()
    shown = progress.Progress(1000, 0.01, "W1", ["mode='fast'"], stream=stream, tty=True)
    counted = shown.counting(lambda w: 1.0)
    for _ in range(10):
        counted({})
    shown.close()
    text = stream.getvalue()
    assert "about 1,000 calls of 10 ms, ~10 s" in text
    assert shown.done == 10 and shown.bar is None


def test_progress_follows_a_changed_total(monkeypatch):
    """A budgeted sample grows with the measured pace: the log line counts against the new total
    (it said "100% (8,612/5,764 calls), ~0 s left" for 20 s before) and names the new sample."""
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    stream = io.StringIO()
    shown = progress.Progress(10, 0.01, "a sample of 5 of 100 elements", [], stream=stream, tty=False)
    counted = shown.counting(lambda w: 1.0)
    for _ in range(10):
        counted({})
    shown.retarget(40, "a sample of 20 of 100 elements")
    counted({})
    last = stream.getvalue().strip().splitlines()[-1]
    assert last.startswith("gradcheck: a sample of 20 of 100 elements: 27% (11/40 calls)"), last
    shown.retarget(5)  # never below what was done
    assert shown.total == 11
    bar = progress.Progress(10, 0.01, "W1", [], stream=io.StringIO(), tty=True)
    bar.retarget(30, "W1 and more")
    assert bar.bar.tasks[0].total == 30 and bar.bar.tasks[0].description == "W1 and more"
    bar.close()


def test_progress_estimate_uses_the_scheme_and_the_size():
    from gradcheck.estimating import expected_calls
    assert expected_calls("central", 10) == 20
    assert expected_calls("complex", 10) == 10
    assert expected_calls("central4", 10) == 40
    assert expected_calls("richardson", 10) == 40
    assert expected_calls("forward", 10) == 10
    assert progress.start(100, 0.01, quiet=None, label="x", faster=[]) is None  # 1 s: below SHOW_AFTER


def test_assert_gradients_first_line_names_the_element_and_the_error():
    """pytest's -ra summary shows an AssertionError's first line: it must say where and how far."""
    params, X, y = inputs()

    def wrong_sign(p, X, y):
        loss, g = quadratic(p, X, y)
        return loss, {"w": -g["w"]}
    with pytest.raises(AssertionError) as info:
        gradcheck.assert_gradients(wrong_sign, params, X, y, name="lin")
    first, rest = str(info.value).split("\n", 1)
    assert first.startswith("gradient check failed: w[") and "rel error 2.0e+00 > tol" in first, first
    assert first.endswith("; check 'lin'") and "(wrong sign?)" in first, first
    assert rest.startswith("gradcheck FAILED lin")
