"""The pytest plugin, exercised through generated test suites (pytester).

The generated suite checks a linear least-squares model whose hand-written gradient is right, and
a copy whose ``W`` gradient forgot the 1/batch of the mean (every element 8x too large with a batch
of 8: a relative error of 7, far beyond any tolerance, so the verdict cannot flip with rounding).
"""
from __future__ import annotations

import importlib.metadata
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import gradcheck
from gradcheck import pytest_plugin
from gradcheck.checker import SCHEME_CHOICES, observers
from tests.pytester_support import isolate

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
    return isolate(pytester, monkeypatch)


def junit_properties(path: Path) -> dict[str, dict[str, str]]:
    """``{test name: {property name: value}}`` of a pytest ``--junitxml`` file."""
    root = ET.parse(path).getroot()
    return {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
            for case in root.iter("testcase")}


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
    run = suite.runpytest_subprocess(*plugin_args(), "-n", "2", "--gradcheck-report=out", "-p", "no:cacheprovider",
                                     "--junitxml=pytest.xml")
    run.assert_outcomes(passed=3, failed=1)
    run.stdout.fnmatch_lines(["E*gradcheck FAILED buggy@gw?: W is off by a relative error of 7.00e+00*",
                              "3 gradient checks in 3 tests: 2 passed, 1 failed"])
    results = report_results(suite.path / "out")
    names = sorted(r["name"].rsplit("::", 1)[1] for r in results)
    assert [n.split("@")[0] for n in names] == ["buggy", "marked", "right"]
    # with 4 tests the load scheduler hands 2 to each worker: both workers' checks are in the one report
    assert {n.split("@")[1] for n in names} == {"gw0", "gw1"}
    assert {p.name for p in (suite.path / "out").iterdir()} == {"index.html", "gradcheck.json"}
    # the user properties travel with the workers' reports into the controller's --junitxml
    props = junit_properties(suite.path / "pytest.xml")
    assert props["test_buggy"]["gradcheck.passed"] == "false"
    assert props["test_buggy"]["gradcheck.name"].startswith("buggy@gw")
    assert float(props["test_buggy"]["gradcheck.max_rel_error"]) == pytest.approx(7.0, rel=1e-6)
    assert props["test_right"]["gradcheck.passed"] == props["test_marked_assert_gradients"]["gradcheck.passed"] == "true"
    assert not any(k.startswith("gradcheck") for k in props["test_unmarked_plain_check"])


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


# -- pytest's own junitxml, the -ra line, our junit.xml only when asked -------------------------------
def test_checks_are_properties_in_pytests_junitxml_and_our_junit_is_written_only_when_asked(suite):
    suite.makepyfile(**{"tests/test_model": CHECKS + '''

def test_two_checks(gradcheck):
    gradcheck.check(linear_mse, params, X, y, name="first")
    gradcheck.check(linear_mse_buggy, params, X, y)
'''})
    run = suite.runpytest(*plugin_args(), "-p", "no:cacheprovider", "--gradcheck-report=out", "--junitxml=pytest.xml")
    run.assert_outcomes(passed=4, failed=1)
    props = junit_properties(suite.path / "pytest.xml")
    buggy = props["test_buggy"]
    assert buggy["gradcheck.name"] == "buggy@main" and buggy["gradcheck.passed"] == "false"
    assert float(buggy["gradcheck.max_rel_error"]) == pytest.approx(7.0, rel=1e-6)
    assert float(buggy["gradcheck.margin"]) > 1 and 0 < float(buggy["gradcheck.tolerance"]) < 1e-6
    assert buggy["gradcheck.worst"].startswith("W[") and buggy["gradcheck.scheme"] == "complex"
    assert buggy["gradcheck.diagnosis"] == "missing_mean"
    right = props["test_right"]
    assert right["gradcheck.passed"] == "true" and float(right["gradcheck.margin"]) < 1
    assert props["test_marked_assert_gradients"]["gradcheck.name"] == "marked@main"
    assert not any(k.startswith("gradcheck") for k in props["test_unmarked_plain_check"])
    # several checks in one test: numbered in the order they ran
    two = props["test_two_checks"]
    assert (two["gradcheck.1.name"], two["gradcheck.1.passed"], two["gradcheck.2.passed"]) == ("first", "true", "false")
    assert "gradcheck.passed" not in two and "gradcheck.2.name" not in two
    # pytest's --junitxml carries the checks: our report folder has no second junit.xml (nor mentions one)
    out = suite.path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["gradcheck.json", "index.html"]
    assert "junit.xml" not in (out / "index.html").read_text(encoding="utf-8")
    # re-rendering that report keeps it without one
    from gradcheck import cli
    assert cli.main(["report", str(out / "gradcheck.json")]) == 0
    assert not (out / "junit.xml").exists()
    # asked for (option, or ini): written, with the test module as the classname
    run = suite.runpytest(*plugin_args(), "-p", "no:cacheprovider", "--gradcheck-report=asked", "--gradcheck-junit")
    run.assert_outcomes(passed=4, failed=1)
    cases = {(c.get("classname"), c.get("name")) for c in ET.parse(suite.path / "asked" / "junit.xml").iter("testcase")}
    assert cases == {("tests.test_model", "test_right::right@main"), ("tests.test_model", "test_buggy::buggy@main"),
                     ("tests.test_model", "test_marked_assert_gradients::marked@main"),
                     ("tests.test_model", "test_two_checks::first"), ("tests.test_model", "test_two_checks::check 2")}
    suite.makeini("[pytest]\ngradcheck_report_dir = from-ini\ngradcheck_junit = true\n")
    suite.runpytest(*plugin_args(), "-p", "no:cacheprovider").assert_outcomes(passed=4, failed=1)
    assert (suite.path / "from-ini" / "junit.xml").is_file()


def test_the_short_summary_line_names_the_tensor_element_error_and_tolerance(suite, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # pytest trims the -ra line to the terminal's width
    suite.makepyfile(test_short=MODEL + '''

def linear_mse_transposed(params, X, y):
    loss, grads = linear_mse(params, X, y)
    grads["W"] = grads["W"].T
    return loss, grads


def test_buggy(gradcheck):
    gradcheck(linear_mse_buggy, params, X, y, name="buggy")


def test_fault(gradcheck):
    gradcheck(linear_mse_transposed, params, X, y)
''')
    run = suite.runpytest(*plugin_args(), "-p", "no:cacheprovider", "-ra")
    run.assert_outcomes(failed=2)
    run.stdout.fnmatch_lines([
        "*short test summary info*",
        "FAILED test_short.py::test_buggy - Failed: gradient check failed: W[[]?, ?[]] rel error 7.0e+00 > tol ?.?e-1? "
        "(missing 1/N of a mean?); check 'buggy'",
        "FAILED test_short.py::test_fault - Failed: gradient check failed (shape): grads[[]'W'[]] has shape (2, 3), "
        "expected (3, 2)*",
    ])
    # the full explanation follows the short line in the failure itself
    run.stdout.fnmatch_lines(["E*Failed: gradient check failed: W[[]*",
                              "E*gradcheck FAILED buggy: W is off by a relative error of 7.00e+00*"])


def _linear_case(scale_W: float = 1.0, sign_b: float = 1.0):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    params = {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}

    def fn(p, X, y):
        r = X @ p["W"] + p["b"] - y
        return 0.5 * np.mean(np.sum(r**2, axis=1)), {"W": scale_W * X.T @ r / len(X), "b": sign_b * r.mean(axis=0)}
    return fn, params, X, y


def test_failure_line_from_a_result():
    fn, params, X, y = _linear_case(sign_b=-1.0)
    result = gradcheck.check(fn, params, X, y, name="flip")
    w = result.worst
    assert pytest_plugin.failure_line(result) == (
        f"gradient check failed: {w.label()} rel error {w.rel_error:.1e} > tol {w.tolerance:.1e} (wrong sign?); "
        "check 'flip'")
    assert w.param == "b" and result.diagnosis.pattern == "sign_flip"
    message = pytest_plugin.failure_message(result)
    assert message.splitlines()[0] == pytest_plugin.failure_line(result)
    assert message.split("\n", 1)[1] == str(result)

    def raises(p, X, y):
        raise ValueError("boom")
    faulty = gradcheck.check(raises, params, X, y)
    assert pytest_plugin.failure_line(faulty) == "gradient check failed (raised): fn raised ValueError: boom"
    props = dict(pytest_plugin.check_properties([{"nodeid": "t.py::t", "index": 0, "name": None,
                                                  "result": faulty.to_dict()}]))
    assert props == {"gradcheck.passed": "false", "gradcheck.max_rel_error": faulty.to_dict()["max_rel_error"],
                     "gradcheck.scheme": faulty.scheme, "gradcheck.problem": "raised"}


# -- the classname of our own junit.xml ------------------------------------------------------------
def _junit_cases(results, tmp_path, meta) -> list[tuple[str, str]]:
    from gradcheck import report

    report.write(results, tmp_path, meta=meta)
    return [(c.get("classname"), c.get("name")) for c in ET.parse(tmp_path / "junit.xml").iter("testcase")]


def test_junit_classname_of_pytest_sweep_and_check_records(tmp_path):
    from gradcheck.spec import Layer, NetworkSpec
    from reference.network import Network

    fn, params, X, y = _linear_case()
    plain = gradcheck.check(fn, params, X, y).to_dict()
    pytest_records = [{**plain, "name": "tests/unit/test_model.py::test_grad"},
                      {**plain, "name": "tests/unit/test_model.py::TestNet::test_grad[relu]::check 2"},
                      {**plain, "name": "test_top.py::test_x::named"}]
    assert _junit_cases(pytest_records, tmp_path / "pytest", {"source": "pytest", "command": "pytest"}) == [
        ("tests.unit.test_model", "test_grad"), ("tests.unit.test_model", "TestNet::test_grad[relu]::check 2"),
        ("test_top", "test_x::named")]

    spec = NetworkSpec(3, (Layer(4, "tanh"), Layer(2, "identity")), "mse", batch=4, dtype="float32")
    net = Network(spec)
    rng = np.random.default_rng(0)
    Xs, ys = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    swept = gradcheck.check(net, net.init_params(), Xs, ys, spec=spec, symbolic=False,
                            name=f"tanh x mse [{spec.label()}] (realistic)")
    sweep_meta = {"command": "gradcheck sweep --examples 1", "seed": 0}
    assert _junit_cases([swept], tmp_path / "sweep", sweep_meta) == [
        ("sweep.float32.tanh.mse", f"tanh x mse [{spec.label()}] (realistic)")]
    # the same record outside a sweep keeps the generic classname
    assert _junit_cases([swept], tmp_path / "plain", {})[0][0] == "gradcheck.tanh.mse"

    check_meta = {"command": "gradcheck check examples/models/mlp.py:make", "target": "examples/models/mlp.py:make"}
    assert _junit_cases([{**plain, "name": "make"}], tmp_path / "check", check_meta) == [
        ("examples.models.mlp.make", "make")]
    assert _junit_cases([{**plain, "name": "xor"}], tmp_path / "module", {"target": "mypkg.nets"}) == [
        ("mypkg.nets.factory", "xor")]
