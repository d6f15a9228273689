"""pytest plugin: gradient checks in any test suite, a terminal summary and one report per session.

Loaded through the ``pytest11`` entry point ``gradcheck`` (disable with ``-p no:gradcheck``).

* ``gradcheck`` fixture: ``gradcheck(fn, params, X, y, name=..., **check_options) -> Result`` runs
  :func:`gradcheck.check`, records the result, and fails the test with the explanation.
* ``@pytest.mark.gradcheck``: also record every ``gradcheck.check`` / ``assert_gradients`` call
  made inside the marked test (they keep deciding the outcome as they would without the marker).
* ``--gradcheck-report=DIR`` (or the ini option ``gradcheck_report_dir``): the session's HTML,
  JSON and JUnit report through :func:`gradcheck.report.write`.
* ``--gradcheck-scheme``, ``--gradcheck-rtol``: session defaults for the fixture's checks.

Under pytest-xdist each worker attaches its records to the test reports as plain builtins; the
controller gathers them and writes the single report. This module imports only pytest and the
standard library (the checker on the first check, the report code when writing); the package's
``__init__``, which Python runs first, does import numpy and the checker.
"""
from __future__ import annotations

import argparse
import importlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:  # pragma: no cover - typing only
    from gradcheck.result import Result

#: attribute of a TestReport carrying the checks its test made (plain builtins: crosses xdist)
RECORDS_ATTR = "gradcheck_records"
#: the schemes ``--gradcheck-scheme`` accepts (``gradcheck.checker.SCHEME_CHOICES``; a test keeps them equal)
SCHEMES = ("auto", "forward", "central", "central4", "richardson", "complex")
#: how many of the worst checks the terminal summary lists
WORST_SHOWN = 5
MARKER = "gradcheck"


def _plain(value: Any) -> Any:
    """Only JSON builtins (xdist's channel rejects numpy scalars and custom classes)."""
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return _plain(value.item())
    if isinstance(value, int):  # bool/int subclasses
        return int(value)
    return str(value)


def _rtol(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


# -- options, marker ------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck", "gradient checks (gradcheck)")
    group.addoption("--gradcheck-report", metavar="DIR", default=None,
                    help="write the session's gradient-check report (HTML, JSON, JUnit XML) to DIR; "
                         "overrides the ini option gradcheck_report_dir")
    group.addoption("--gradcheck-scheme", choices=SCHEMES, default=None,
                    help="finite-difference scheme for the gradcheck fixture's checks in this "
                         "session (a scheme= argument in a test still wins)")
    group.addoption("--gradcheck-rtol", type=_rtol, metavar="RTOL", default=None,
                    help="relative tolerance that loosens the gradcheck fixture's checks in this "
                         "session (an rtol= argument in a test still wins)")
    parser.addini("gradcheck_report_dir", default="",
                  help="folder for the gradient-check report, written when a session made checks "
                       "(relative to the rootdir); --gradcheck-report overrides it")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: record every gradcheck.check / assert_gradients "
                                       "call made in this test for the gradcheck summary and report")
    recorder = Recorder(config)
    config.stash[_RECORDER] = recorder
    config.pluginmanager.register(recorder, "gradcheck-recorder")


@pytest.fixture(name="gradcheck")
def gradcheck_fixture(request: pytest.FixtureRequest) -> "GradcheckFixture":
    """``gradcheck(fn, params, X, y, *, name=None, **check_options) -> Result``: a recorded check
    that fails the test with the result's explanation."""
    return GradcheckFixture(request.config.stash[_RECORDER], request.node.nodeid)


class GradcheckFixture:
    """What the ``gradcheck`` fixture gives a test: call it like :func:`gradcheck.check`.

    ``--gradcheck-scheme``/``--gradcheck-rtol`` replace the library defaults (arguments given in
    the call still win); the result is recorded for the summary and report; a failed check fails
    the test (``pytest.fail``) with ``str(result)`` as the message.
    """

    def __init__(self, recorder: "Recorder", nodeid: str) -> None:
        self._recorder = recorder
        self._nodeid = nodeid

    def __repr__(self) -> str:
        return "<gradcheck fixture: gradcheck(fn, params, X, y, *, name=None, **check_options)>"

    def __call__(self, fn: Callable[..., Any], params: Any, X: Any, y: Any, *, name: str | None = None,
                 **check_options: Any) -> "Result":
        __tracebackhide__ = True
        from gradcheck import check as run_check  # noqa: PLC0415 - heavy: imported on first use

        recorder = self._recorder
        options = {**recorder.session_options(), **check_options}
        recorder.in_fixture += 1
        try:
            result = run_check(fn, params, X, y, name=name, **options)
        finally:
            recorder.in_fixture -= 1
        recorder.add(self._nodeid, result)
        if not result.passed:
            pytest.fail(str(result))
        return result

    def check(self, fn: Callable[..., Any], params: Any, X: Any, y: Any, *, name: str | None = None,
              **check_options: Any) -> "Result":
        """Like :func:`gradcheck.check` (returns the result, never fails the test itself), but
        recorded for the summary and report and with the session's options."""
        from gradcheck import check as run_check  # noqa: PLC0415 - heavy: imported on first use

        recorder = self._recorder
        recorder.in_fixture += 1
        try:
            result = run_check(fn, params, X, y, name=name, **{**recorder.session_options(), **check_options})
        finally:
            recorder.in_fixture -= 1
        recorder.add(self._nodeid, result)
        return result

    def assert_gradients(self, fn: Callable[..., Any], params: Any, X: Any, y: Any, *,
                         name: str | None = None, **check_options: Any) -> None:
        """Like :func:`gradcheck.assert_gradients`: the fixture's check, failing the test unless it passes."""
        __tracebackhide__ = True
        self(fn, params, X, y, name=name, **check_options)

    def __getattr__(self, attribute: str) -> Any:
        # the fixture is named like the module, so in a test that takes it `gradcheck.X` reaches it
        raise AttributeError(
            f"the gradcheck fixture has no attribute {attribute!r}: in a test that takes the fixture, "
            "the name `gradcheck` is the fixture, not the module. Call it as gradcheck(fn, params, X, y), "
            "use gradcheck.check(...) or gradcheck.assert_gradients(...) on it, or `import gradcheck as gc` "
            f"and use gc.{attribute}")


# -- the per-session recorder ---------------------------------------------------------------------
class Recorder:
    """Gathers the session's checks: those of the running test (``pending``, attached to its
    reports) and, from the reports, all of them (``records``; on the xdist controller: every
    worker's). Writes the report and the terminal summary on the controller."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.nodeid: str | None = None       # the running test
        self.marked = False                  # the running test records every gradcheck.check
        self.in_fixture = 0                  # the fixture records its own checks
        self.counts: dict[str, int] = {}     # checks recorded per test so far
        self.observer: Callable[[Any], None] | None = None
        self.report_path: Path | None = None
        self.report_error: str | None = None

    # -- recording ------------------------------------------------------------------------------
    def add(self, nodeid: str, result: "Result") -> None:
        index = self.counts.get(nodeid, 0)
        self.counts[nodeid] = index + 1
        self.pending.append({"nodeid": nodeid, "index": index, "name": result.name,
                             "result": _plain(result.to_dict())})

    def session_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.config.getoption("gradcheck_scheme") is not None:
            options["scheme"] = self.config.getoption("gradcheck_scheme")
        if self.config.getoption("gradcheck_rtol") is not None:
            options["rtol"] = self.config.getoption("gradcheck_rtol")
        return options

    def _observe(self, result: Any) -> None:
        if self.marked and not self.in_fixture and self.nodeid is not None:
            try:
                self.add(self.nodeid, result)
            except Exception:  # recording is a side show: never break the user's own check
                pass

    def _listen(self) -> None:
        """Hear every ``gradcheck.check`` (from the first marked test on: imports the checker)."""
        if self.observer is None:
            check_module = importlib.import_module("gradcheck.checker")
            self.observer = self._observe
            check_module.observers.append(self.observer)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None):
        self.nodeid = item.nodeid
        self.marked = item.get_closest_marker(MARKER) is not None
        if self.marked:
            self._listen()
        try:
            yield
        finally:
            self.nodeid, self.marked, self.pending = None, False, []

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        outcome = yield
        if self.pending:
            setattr(outcome.get_result(), RECORDS_ATTR, self.pending)
            self.pending = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.records.extend(getattr(report, RECORDS_ATTR, None) or ())

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.observer is not None:
            check_module = importlib.import_module("gradcheck.checker")
            if self.observer in check_module.observers:
                check_module.observers.remove(self.observer)
            self.observer = None

    # -- report and summary (controller only) ---------------------------------------------------
    def report_dir(self) -> tuple[Path | None, bool]:
        """The report folder and whether the command line asked for it."""
        given = self.config.getoption("gradcheck_report")
        if given:
            return Path(self.config.invocation_params.dir, given), True
        ini = self.config.getini("gradcheck_report_dir")
        if ini:
            return Path(self.config.rootpath, ini), False
        return None, False

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if _is_worker(self.config):
            return
        out_dir, asked = self.report_dir()
        if out_dir is None or not (self.records or asked):
            return
        args = " ".join(map(str, self.config.invocation_params.args))
        meta = {"source": "pytest", "command": f"pytest {args}".strip(),
                "tests": len({r["nodeid"] for r in self.records}), "exitstatus": int(exitstatus)}
        try:
            from gradcheck import report  # noqa: PLC0415 - jinja2/matplotlib: only when writing

            self.report_path = Path(report.write(labelled(self.records), out_dir, meta=meta,
                                                 title=f"gradient checks: pytest in {self.config.rootpath.name}"))
        except Exception as exc:  # said in the summary, in red, instead of a traceback
            self.report_error = f"{type(exc).__name__}: {exc}"

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if _is_worker(config):
            return
        asked = any(config.getoption(o) is not None
                    for o in ("gradcheck_report", "gradcheck_scheme", "gradcheck_rtol"))
        if not (self.records or asked or self.report_error):
            return
        results = labelled(self.records)
        tests = len({r["nodeid"] for r in self.records})
        terminalreporter.write_sep("=", "gradcheck", red=any(not r["passed"] for r in results),
                                   green=all(r["passed"] for r in results) and bool(results))
        for line, style in summary_lines(results, tests, self.session_options()):
            terminalreporter.write_line(line, **style)
        if self.report_path is not None:
            terminalreporter.write_line(f"report: {_shown_path(self.report_path, config.invocation_params.dir)}")
        if self.report_error is not None:
            terminalreporter.write_line(f"gradcheck report NOT written: {self.report_error}", red=True, bold=True)


_RECORDER = pytest.StashKey[Recorder]()


def _shown_path(path: Path, start: Path) -> str:
    """``path`` relative to where pytest was started when it lies below it, else absolute."""
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def labelled(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records' result dicts in test order, each named ``nodeid::name`` (unnamed: ``nodeid``,
    or ``nodeid::check k`` when a test made several)."""
    per_test: dict[str, int] = {}
    for r in records:
        per_test[r["nodeid"]] = per_test.get(r["nodeid"], 0) + 1
    out = []
    for r in sorted(records, key=lambda r: (r["nodeid"], r["index"])):
        result = dict(r["result"])
        if r["name"]:
            result["name"] = f"{r['nodeid']}::{r['name']}"
        elif per_test[r["nodeid"]] > 1:
            result["name"] = f"{r['nodeid']}::check {r['index'] + 1}"
        else:
            result["name"] = r["nodeid"]
        out.append(result)
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def summary_lines(results: list[dict[str, Any]], tests: int,
                  options: dict[str, Any]) -> list[tuple[str, dict[str, bool]]]:
    """The terminal summary's lines, each with its style (``red``/``green`` keyword arguments)."""
    failed = [r for r in results if not r["passed"]]
    session = (" (session " + ", ".join(f"{k}={v}" for k, v in options.items()) + ")") if options else ""
    if not results:
        return [(f"no gradient checks were recorded{session}: use the gradcheck fixture, or mark tests "
                 "that call gradcheck.check/assert_gradients with @pytest.mark.gradcheck", {})]
    lines = [(f"{_plural(len(results), 'gradient check')} in {_plural(tests, 'test')}: "
              f"{len(results) - len(failed)} passed, {len(failed)} failed{session}", {})]
    worst = sorted(results, key=lambda r: (r["passed"], -float(r["max_rel_error"])))[:WORST_SHOWN]
    lines.append((f"worst {len(worst)}: verdict, max relative error, worst parameter, check", {}))
    for r in worst:
        error = float(r["max_rel_error"])  # to_dict writes nan/inf as strings
        shown = f"{error:.2e}" if math.isfinite(error) else str(error)
        problem = f" ({r['problems'][0]['kind']})" if r.get("problems") else ""
        lines.append((f"  {'PASSED' if r['passed'] else 'FAILED'}  {shown:>9}  "
                      f"{r.get('worst_param') or '-':<10} {r['name']}{problem}",
                      {"green": True} if r["passed"] else {"red": True}))
    if len(failed) > len(worst):
        lines.append((f"  ... and {len(failed) - len(worst)} more failed checks", {"red": True}))
    return lines
