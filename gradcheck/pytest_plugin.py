"""pytest plugin: gradient checks in any test suite, a terminal summary and one report per session.

Loaded through the ``pytest11`` entry point ``gradcheck`` (disable with ``-p no:gradcheck``).

* ``gradcheck`` fixture: ``gradcheck(fn, params, X, y, name=..., **check_options) -> Result`` runs
  :func:`gradcheck.check`, records the result, and fails the test with the explanation.
* ``@pytest.mark.gradcheck``: also record every ``gradcheck.check`` / ``assert_gradients`` call
  made inside the marked test (they keep deciding the outcome as they would without the marker).
* ``--gradcheck-report=DIR`` (or the ini option ``gradcheck_report_dir``, or ``report_dir`` in
  ``[tool.gradcheck]``): the session's HTML and JSON report through :func:`gradcheck.report.write`;
  its ``junit.xml`` only with ``--gradcheck-junit`` (ini ``gradcheck_junit = true``).
* In pytest's own ``--junitxml``, every recorded check adds ``<property>`` elements to its test's
  ``<testcase>`` (``gradcheck.passed``, ``gradcheck.max_rel_error``, ``gradcheck.worst``, ...: see
  :func:`check_properties`), through ``item.user_properties`` as ``record_property`` does.
* A failed fixture check fails the test with :func:`failure_line` first (the line ``-ra`` shows:
  tensor, element, error, tolerance), then the full explanation.
* ``--gradcheck-scheme``, ``--gradcheck-rtol``: session defaults for the fixture's checks (below
  them: ``scheme``/``rtol`` in ``[tool.gradcheck]``, see :mod:`gradcheck.config`).

Under pytest-xdist each worker attaches its records to the test reports as plain builtins; the
controller gathers them and writes the single report. This module imports only pytest and the
standard library (and :mod:`gradcheck.config`, standard library only; the checker on the first
check, the report code when writing); the package's ``__init__``, which Python runs first,
imports nothing heavy either (its names load on first use), so a session that makes no check
never imports numpy (``tests/test_exports.py`` keeps it so).
"""
from __future__ import annotations

import argparse
import importlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gradcheck import config as gc_config

if TYPE_CHECKING:  # pragma: no cover - typing only
    from gradcheck.result import Result

#: attribute of a TestReport carrying the checks its test made (plain builtins: crosses xdist)
RECORDS_ATTR = "gradcheck_records"
#: the schemes ``--gradcheck-scheme`` accepts (``gradcheck.checker.SCHEME_CHOICES``; a test keeps them equal)
SCHEMES = gc_config.SCHEMES
#: prefix of the user properties (pytest's --junitxml ``<property>`` names) of recorded checks
PROPERTY_PREFIX = "gradcheck"
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
                    help="write the session's gradient-check report (HTML, JSON) to DIR; overrides the "
                         "ini option gradcheck_report_dir and report_dir in [tool.gradcheck]")
    group.addoption("--gradcheck-junit", action="store_true", default=None,
                    help="also write junit.xml into the report folder (the checks are in pytest's own "
                         "--junitxml as properties of their tests either way)")
    group.addoption("--gradcheck-scheme", choices=SCHEMES, default=None,
                    help="finite-difference scheme for the gradcheck fixture's checks in this "
                         "session (a scheme= argument in a test still wins; overrides scheme in "
                         "[tool.gradcheck])")
    group.addoption("--gradcheck-rtol", type=_rtol, metavar="RTOL", default=None,
                    help="relative tolerance that loosens the gradcheck fixture's checks in this "
                         "session (an rtol= argument in a test still wins; overrides rtol in "
                         "[tool.gradcheck])")
    parser.addini("gradcheck_report_dir", default="",
                  help="folder for the gradient-check report, written when a session made checks "
                       "(relative to the rootdir); --gradcheck-report overrides it, it overrides "
                       "report_dir in [tool.gradcheck]")
    parser.addini("gradcheck_junit", type="bool", default=False,
                  help="also write junit.xml into the gradient-check report folder (like --gradcheck-junit)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: record every gradcheck.check / assert_gradients "
                                       "call made in this test for the gradcheck summary and report")
    try:
        settings = gc_config.load(pyproject_of(config))
    except gc_config.ConfigError as exc:  # pytest prints "ERROR: <message>" and exits with 4
        raise pytest.UsageError(str(exc)) from None
    recorder = Recorder(config, settings)
    config.stash[_RECORDER] = recorder
    config.pluginmanager.register(recorder, "gradcheck-recorder")


def pyproject_of(config: pytest.Config) -> Path | None:
    """The pyproject.toml whose ``[tool.gradcheck]`` applies: pytest's configuration file when it is
    one, else the rootdir's (None when there is none)."""
    inipath = getattr(config, "inipath", None)
    if inipath is not None and Path(inipath).name == gc_config.PYPROJECT:
        return Path(inipath)
    candidate = Path(config.rootpath) / gc_config.PYPROJECT
    return candidate if candidate.is_file() else None


@pytest.fixture(name="gradcheck")
def gradcheck_fixture(request: pytest.FixtureRequest) -> GradcheckFixture:
    """``gradcheck(fn, params, X, y, *, name=None, **check_options) -> Result``: a recorded check
    that fails the test with the result's explanation."""
    return GradcheckFixture(request.config.stash[_RECORDER], request.node.nodeid)


class GradcheckFixture:
    """What the ``gradcheck`` fixture gives a test: call it like :func:`gradcheck.check`.

    ``--gradcheck-scheme``/``--gradcheck-rtol`` (else ``[tool.gradcheck]``) replace the library
    defaults (arguments given in the call still win); the result is recorded for the summary, the
    report and the test's junitxml properties; a failed check fails the test (``pytest.fail``) with
    :func:`failure_line` and then ``str(result)`` as the message.
    """

    def __init__(self, recorder: Recorder, nodeid: str) -> None:
        self._recorder = recorder
        self._nodeid = nodeid

    def __repr__(self) -> str:
        return "<gradcheck fixture: gradcheck(fn, params, X, y, *, name=None, **check_options)>"

    def __call__(self, fn: Callable[..., Any], params: Any, X: Any, y: Any, *, name: str | None = None,
                 **check_options: Any) -> Result:
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
            pytest.fail(failure_message(result))
        return result

    def check(self, fn: Callable[..., Any], params: Any, X: Any, y: Any, *, name: str | None = None,
              **check_options: Any) -> Result:
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

    def __init__(self, config: pytest.Config, settings: gc_config.Settings | None = None) -> None:
        self.config = config
        self.settings = settings or gc_config.Settings()
        self.records: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.nodeid: str | None = None       # the running test
        self.marked = False                  # the running test records every gradcheck.check
        self.in_fixture = 0                  # the fixture records its own checks
        self.counts: dict[str, int] = {}     # checks recorded per test so far
        self.item_checks: list[dict[str, Any]] = []  # the running test's records (its user properties)
        self.observer: Callable[[Any], None] | None = None
        self.report_path: Path | None = None
        self.report_error: str | None = None

    # -- recording ------------------------------------------------------------------------------
    def add(self, nodeid: str, result: Result) -> None:
        index = self.counts.get(nodeid, 0)
        self.counts[nodeid] = index + 1
        record = {"nodeid": nodeid, "index": index, "name": result.name, "result": _plain(result.to_dict())}
        self.pending.append(record)
        if nodeid == self.nodeid:
            self.item_checks.append(record)

    def session_options(self) -> dict[str, Any]:
        """The session's defaults for the fixture's checks: ``--gradcheck-scheme``/``--gradcheck-rtol``,
        else ``scheme``/``rtol`` in ``[tool.gradcheck]``."""
        options: dict[str, Any] = self.settings.check_options()
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
        # a long check's progress display stays silent in a test run unless pytest runs with -v
        # (gradcheck.progress is standard library only; check(..., quiet=False) still shows it)
        from gradcheck.progress import quiet_by_default  # noqa: PLC0415 - keeps plugin start-up light
        try:
            with quiet_by_default(self.config.getoption("verbose", 0) < 1):
                yield
        finally:
            self.nodeid, self.marked, self.pending, self.item_checks = None, False, [], []

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        if call.when == "teardown" and self.item_checks:
            # every check of the test is known now; the teardown report copies item.user_properties,
            # which is what --junitxml writes as the testcase's <property> elements (and what
            # pytest-xdist sends to the controller with the report)
            item.user_properties.extend(check_properties(self.item_checks))
            self.item_checks = []
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
        return self.settings.report_dir, False

    def junit_wanted(self) -> bool:
        """``--gradcheck-junit`` or the ini option ``gradcheck_junit``: write junit.xml into the report."""
        return bool(self.config.getoption("gradcheck_junit") or self.config.getini("gradcheck_junit"))

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
                                                 title=f"gradient checks: pytest in {self.config.rootpath.name}",
                                                 junit=self.junit_wanted()))
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


# -- the failure message and the junitxml properties -----------------------------------------------
def failure_line(result: Result) -> str:
    """The first line of a failed check's test failure (what ``-ra`` shows):
    :func:`gradcheck.result.failure_line`."""
    from gradcheck.result import failure_line as line  # noqa: PLC0415 - numpy: only once a check ran

    return line(result)


def failure_message(result: Result) -> str:
    """What a failed fixture check fails its test with: :func:`failure_line`, then ``str(result)``."""
    return f"{failure_line(result)}\n{result}"


def check_properties(records: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """The user properties (``--junitxml`` ``<property>`` elements) of one test's checks.

    One check: ``gradcheck.passed`` (``true``/``false``), ``gradcheck.max_rel_error``,
    ``gradcheck.tolerance`` (of the worst element), ``gradcheck.margin`` (largest error / tolerance,
    < 1 passes; these two only when elements were compared), ``gradcheck.worst`` (``W1[0, 1]``: the
    element with the largest error; the tensor when a fault stopped the check),
    ``gradcheck.scheme`` (the one used) and, when there are any, ``gradcheck.name``,
    ``gradcheck.problem`` (the first problem's kind) and ``gradcheck.diagnosis`` (the bug pattern).
    Several checks in one test: ``gradcheck.1.passed``, ``gradcheck.2.passed``, ... in the order
    they ran."""
    out: list[tuple[str, Any]] = []
    many = len(records) > 1
    for k, record in enumerate(sorted(records, key=lambda r: r["index"]), start=1):
        d = record["result"]
        prefix = f"{PROPERTY_PREFIX}.{k}" if many else PROPERTY_PREFIX
        worst = d.get("worst") or {}
        problems = d.get("problems") or []
        from gradcheck.result import element_label  # noqa: PLC0415 - numpy: a check has run by now
        if worst:
            where = worst.get("display") or element_label(worst.get("param"), worst.get("index"))
        elif problems and problems[0].get("param"):
            where = element_label(problems[0]["param"], problems[0].get("index"))
        else:
            where = d.get("worst_param") or ""
        # a check stopped by a fault (no element compared) has no tolerance or margin to show
        tolerance = worst.get("tolerance") if worst else None
        margin = d.get("margin") if worst else None
        props = [("name", record.get("name")), ("passed", "true" if d.get("passed") else "false"),
                 ("max_rel_error", d.get("max_rel_error")), ("tolerance", tolerance),
                 ("margin", margin), ("worst", where), ("scheme", d.get("scheme")),
                 ("problem", problems[0].get("kind") if problems else None),
                 ("diagnosis", (d.get("diagnosis") or {}).get("pattern"))]
        out += [(f"{prefix}.{key}", value) for key, value in props if value not in (None, "")]
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
    lines: list[tuple[str, dict[str, bool]]] = [(f"{_plural(len(results), 'gradient check')} in {_plural(tests, 'test')}: "
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
