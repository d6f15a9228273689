"""The pytest plugin, exercised through generated test suites (pytester).

The generated suite checks a linear least-squares model whose hand-written gradient is right, and
a copy whose ``W`` gradient forgot the 1/batch of the mean (every element 8x too large with a batch
of 8: a relative error of 7, far beyond any tolerance, so the verdict cannot flip with rounding).
"""
from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import numpy as np
import pytest

import gradcheck
from gradcheck import pytest_plugin
from gradcheck.checker import SCHEME_CHOICES, observers

pytest_plugins = ["pytester"]

ROOT = Path(gradcheck.__file__).resolve().parent.parent

MODEL = '''
import os
import numpy as np
import pytest
import gradcheck as gc


def linear_mse(params, X, y):
    r = X @ params["W"] + params["b"] - y
    loss = 0.5 * np.mean(np.sum(r**2, axis=1))
    return loss, {"W": X.T @ r / len(X), "b": r.mean(axis=0)}


def linear_mse_buggy(params, X, y):
    loss, grads = linear_mse(params, X, y)
    grads["W"] = grads["W"] * len(X)  # forgot the 1/batch of the mean
    return loss, grads


def linear_mse_10_percent(params, X, y):
    loss, grads = linear_mse(params, X, y)
    grads["b"] = grads["b"] * 1.1
    return loss, grads


rng = np.random.default_rng(0)
X, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
params = {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
'''

CHECKS = MODEL + '''

def test_right(gradcheck):
    result = gradcheck(linear_mse, params, X, y, name="right@" + WORKER)
    assert result.passed


def test_buggy(gradcheck):
    gradcheck(linear_mse_buggy, params, X, y, name="buggy@" + WORKER)


@pytest.mark.gradcheck
def test_marked_assert_gradients():
    gc.assert_gradients(linear_mse, params, X, y, name="marked@" + WORKER)


def test_unmarked_plain_check():
    # a plain gradcheck.check outside the fixture and the marker is not recorded
    assert not gc.check(linear_mse_buggy, params, X, y, name="unrecorded").passed
'''


def plugin_args() -> list[str]:
    """``-p gradcheck.pytest_plugin`` unless the entry point already loads the plugin (pytest
    refuses to register one module under two names)."""
    installed = any(ep.value == "gradcheck.pytest_plugin"
                    for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "gradcheck.pytest_plugin"]


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose subprocesses import this checkout of gradcheck."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    # when this suite itself runs under xdist, the inner session must not think it is a worker
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)
    return pytester


def report_results(folder: Path) -> list[dict]:
    """The results listed in the report's JSON document (read and schema-checked by the report's loader)."""
    from gradcheck import report

    return report.load(folder / "gradcheck.json").results


def test_fixture_fails_with_the_explanation_summarizes_and_writes_one_report(suite):
    suite.makepyfile(test_checks=CHECKS)
    run = suite.runpytest(*plugin_args(), "--gradcheck-report=out", "-p", "no:cacheprovider")
    run.assert_outcomes(passed=3, failed=1)
    out = run.stdout.str()
    # the failure: the result's explanation as the message, pointing at the test's line
    run.stdout.fnmatch_lines([
        "*def test_buggy(gradcheck):",
        '>*gradcheck(linear_mse_buggy, params, X, y, name="buggy@" + WORKER)',
        "E*gradcheck FAILED buggy@main: W is off by a relative error of 7.00e+00 (tolerance *)",
        "E*worst element W[[]*]: claimed *, numerical *",
        "E*per tensor: W 7.00e+00 FAILED (6 of 6) | b * ok",
    ])
    failure = out[out.index("def test_buggy"):out.index("test_checks.py:", out.index("def test_buggy"))]
    assert "array(" not in failure and "_pytest" not in failure and "pytest_plugin.py" not in failure
    # the summary: three recorded checks (fixture x2, marked assert_gradients), not the plain one
    run.stdout.fnmatch_lines([
        "*= gradcheck =*",
        "3 gradient checks in 3 tests: 2 passed, 1 failed",
        "worst 3: verdict, max relative error, worst parameter, check",
        "  FAILED   7.00e+00  W * test_checks.py::test_buggy::buggy@main",
        "  PASSED  *  test_checks.py::test_*",
        "  PASSED  *  test_checks.py::test_*",
        "report: out*index.html",
    ])
    assert "unrecorded" not in out
    results = report_results(suite.path / "out")
    assert sorted((r["name"], r["passed"]) for r in results) == [
        ("test_checks.py::test_buggy::buggy@main", False),
        ("test_checks.py::test_marked_assert_gradients::marked@main", True),
        ("test_checks.py::test_right::right@main", True),
    ]
    buggy = next(r for r in results if not r["passed"])
    assert buggy["worst_param"] == "W" and float(buggy["max_rel_error"]) == pytest.approx(7.0, rel=1e-6)
    assert not observers, "the marker's observer must be removed at the end of the session"


def test_xdist_workers_land_in_one_report(suite):
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (dev extra)")
    suite.makepyfile(test_checks=CHECKS)
    run = suite.runpytest_subprocess(*plugin_args(), "-n", "2", "--gradcheck-report=out", "-p", "no:cacheprovider")
    run.assert_outcomes(passed=3, failed=1)
    run.stdout.fnmatch_lines(["E*gradcheck FAILED buggy@gw?: W is off by a relative error of 7.00e+00*",
                              "3 gradient checks in 3 tests: 2 passed, 1 failed"])
    results = report_results(suite.path / "out")
    names = sorted(r["name"].rsplit("::", 1)[1] for r in results)
    assert [n.split("@")[0] for n in names] == ["buggy", "marked", "right"]
    # with 4 tests the load scheduler hands 2 to each worker: both workers' checks are in the one report
    assert {n.split("@")[1] for n in names} == {"gw0", "gw1"}
    assert len(list((suite.path / "out").iterdir())) >= 2, "HTML and JSON (and JUnit) beside each other"


def test_unused_plugin_prints_nothing_and_writes_nothing(suite):
    suite.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    suite.makeini("[pytest]\ngradcheck_report_dir = reports/gradcheck\n")
    run = suite.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider")
    run.assert_outcomes(passed=1)
    assert "gradient check" not in run.stdout.str() and "= gradcheck =" not in run.stdout.str()
    assert not (suite.path / "reports").exists()
    assert not [p for p in suite.path.rglob("*") if p.name in ("gradcheck.json", "index.html", "junit.xml")]


def test_asked_for_report_without_checks_says_so_and_reports_a_write_failure(suite):
    suite.makepyfile(test_plain="def test_plain():\n    pass\n")
    (suite.path / "taken").write_text("a file where the report folder should go")
    run = suite.runpytest(*plugin_args(), "-p", "no:cacheprovider", "--gradcheck-report=taken")
    run.assert_outcomes(passed=1)
    run.stdout.fnmatch_lines(["*= gradcheck =*",
                              "no gradient checks were recorded: use the gradcheck fixture, or mark tests*",
                              "gradcheck report NOT written: *taken*"])


def test_ini_report_dir_is_used_when_checks_ran(suite):
    suite.makepyfile(test_checks=CHECKS)
    suite.makeini("[pytest]\ngradcheck_report_dir = reports/gradcheck\n")
    run = suite.runpytest(*plugin_args(), "-p", "no:cacheprovider", "-k", "right")
    run.assert_outcomes(passed=1, deselected=3)
    assert [r["name"] for r in report_results(suite.path / "reports" / "gradcheck")] == [
        "test_checks.py::test_right::right@main"]


def test_session_options_are_defaults_that_call_arguments_override(suite):
    # b's gradient is 10% too large: fails at the computed tolerance, passes with rtol=0.5, and a
    # test that passes rtol=0 itself keeps the computed tolerance
    suite.makepyfile(test_options=MODEL + '''

def test_session_rtol(gradcheck):
    result = gradcheck(linear_mse_10_percent, params, X, y, name="session")
    assert result.scheme == "central" and result.rtol == 0.5


def test_own_rtol(gradcheck):
    gradcheck(linear_mse_10_percent, params, X, y, name="own", rtol=0)
''')
    run = suite.runpytest(*plugin_args(), "-p", "no:cacheprovider", "--gradcheck-scheme=central",
                          "--gradcheck-rtol=0.5")
    run.assert_outcomes(passed=1, failed=1)
    run.stdout.fnmatch_lines(["E*gradcheck FAILED own: b is off by a relative error of 1.00e-01*",
                              "2 gradient checks in 2 tests: 1 passed, 1 failed (session scheme=central, rtol=0.5)"])


def test_bad_option_values_are_usage_errors_naming_the_option(suite):
    suite.makepyfile(test_plain="def test_plain():\n    pass\n")
    run = suite.runpytest(*plugin_args(), "--gradcheck-rtol=-1")
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*--gradcheck-rtol*expected a finite number >= 0, got '-1'*"])
    run = suite.runpytest(*plugin_args(), "--gradcheck-scheme=secant")
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*--gradcheck-scheme*invalid choice*'secant'*"])


def test_the_plugins_scheme_choices_are_the_checkers():
    assert pytest_plugin.SCHEMES == SCHEME_CHOICES


def test_records_are_plain_builtins():
    # xdist's channel only carries builtins: numpy scalars must become Python numbers
    value = pytest_plugin._plain({"a": np.float64(1.5), "b": [np.int64(2), (np.bool_(True), None)], 3: "x"})
    assert value == {"a": 1.5, "b": [2, [True, None]], "3": "x"}
    assert type(value["a"]) is float and type(value["b"][0]) is int and type(value["b"][1][0]) is bool


def test_the_fixture_offers_check_and_assert_gradients_and_names_the_shadowed_module(suite):
    suite.makepyfile(test_fixture_api=MODEL + '''

def test_check_returns_the_result_without_failing(gradcheck):
    assert gradcheck.check(linear_mse, params, X, y, name="right").passed
    result = gradcheck.check(linear_mse_buggy, params, X, y, name="buggy")
    assert not result and result.worst_param == "W"


def test_assert_gradients_fails_the_test(gradcheck):
    gradcheck.assert_gradients(linear_mse_buggy, params, X, y, name="asserted")


def test_an_unknown_attribute_says_the_fixture_shadows_the_module(gradcheck):
    gradcheck.NetworkSpec
''')
    run = suite.runpytest(*plugin_args(), "-p", "no:cacheprovider")
    run.assert_outcomes(passed=1, failed=2)
    run.stdout.fnmatch_lines(["*gradcheck FAILED asserted: W is off by a relative error*",
                              "*AttributeError: the gradcheck fixture has no attribute 'NetworkSpec': in a test that "
                              "takes the fixture, the name `gradcheck` is the fixture, not the module*gc.NetworkSpec*",
                              "3 gradient checks in 2 tests: 1 passed, 2 failed"])
