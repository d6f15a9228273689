"""``[tool.gradcheck]`` in pyproject.toml (gradcheck.config): parsing, one-line validation errors,
finding the file, and the precedence explicit argument > command-line option > ini option > table >
library default in ``gradcheck sweep``, ``gradcheck check`` and the pytest plugin."""
from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

import gradcheck
from gradcheck import cli, config
from gradcheck.checker import SCHEME_CHOICES
from gradcheck.sweep import (
    DEFAULT_EXAMPLES,
    DEFAULT_MAX_PARAMS,
    DEFAULT_SEED,
    DEFAULT_SYMBOLIC_MAX_SIZE,
    config_from_args,
)
from tests.pytester_support import isolate

pytest_plugins = ["pytester"]

ROOT = Path(gradcheck.__file__).resolve().parent.parent

FULL = '''
[project]
name = "demo"

[tool.gradcheck]
scheme = "central"
rtol = 1e-6
report_dir = "reports/gradcheck"

[tool.gradcheck.sweep]
examples = 4
seed = 7
activations = ["tanh", "relu"]
losses = "mse, bce"
dtypes = ["float64"]
max_params = 50
jobs = 1
symbolic_max_size = 0
out = "reports/sweep"
'''


def project(tmp_path: Path, text: str) -> Path:
    """A project folder (a repository root: the walk up stops there) with ``text`` as its pyproject.toml."""
    (tmp_path / ".git").mkdir(exist_ok=True)
    path = tmp_path / "pyproject.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- parsing --------------------------------------------------------------------------------------
def test_a_full_table_parses_with_paths_below_the_pyprojects_folder(tmp_path):
    path = project(tmp_path, FULL)
    s = config.load(path)
    assert (s.path, s.scheme, s.rtol) == (path, "central", 1e-6)
    assert s.report_dir == tmp_path / "reports" / "gradcheck"
    assert s.sweep == {"examples": 4, "seed": 7, "activations": ("tanh", "relu"), "losses": ("mse", "bce"),
                       "dtypes": ("float64",), "max_params": 50, "jobs": 1, "symbolic_max_size": 0,
                       "out": str(tmp_path / "reports" / "sweep")}
    assert s.check_options() == {"scheme": "central", "rtol": 1e-6}
    assert isinstance(config.from_text("[tool.gradcheck]\nrtol = 0\n").rtol, float)


def test_no_file_or_no_table_means_nothing_is_set(tmp_path):
    assert config.load(None) == config.Settings()
    empty = config.load(project(tmp_path, "[project]\nname = 'x'\n[tool.other]\nkey = 1\n"))
    assert (empty.scheme, empty.rtol, empty.report_dir, dict(empty.sweep)) == (None, None, None, {})
    assert empty.check_options() == {}


def test_the_schemes_are_the_checkers():
    assert config.SCHEMES == SCHEME_CHOICES


@pytest.mark.parametrize("text, message", [
    ("[tool.gradcheck]\nshceme = 'central'\n",
     "[tool.gradcheck] unknown key 'shceme' (did you mean 'scheme'?); expected one of: scheme, rtol, report_dir, sweep"),
    ("[tool.gradcheck]\nreport-dir = 'r'\n",
     "[tool.gradcheck] unknown key 'report-dir' (did you mean 'report_dir'?); expected one of: scheme, rtol, "
     "report_dir, sweep"),
    ("[tool.gradcheck]\nverbose = true\n",
     "[tool.gradcheck] unknown key 'verbose'; expected one of: scheme, rtol, report_dir, sweep"),
    ("[tool.gradcheck]\nscheme = 'secant'\n",
     '[tool.gradcheck] scheme = "secant": expected one of "auto", "forward", "central", "central4", "richardson", '
     '"complex"'),
    ("[tool.gradcheck]\nrtol = -1\n", "[tool.gradcheck] rtol = -1: expected a finite number >= 0"),
    ("[tool.gradcheck]\nrtol = inf\n", "[tool.gradcheck] rtol = inf: expected a finite number >= 0"),
    ("[tool.gradcheck]\nrtol = '1e-6'\n", '[tool.gradcheck] rtol = "1e-6": expected a finite number >= 0'),
    ("[tool.gradcheck]\nrtol = true\n", "[tool.gradcheck] rtol = true: expected a finite number >= 0"),
    ("[tool.gradcheck]\nreport_dir = 3\n",
     "[tool.gradcheck] report_dir = 3: expected a folder path (a string, relative to {folder})"),
    ("[tool.gradcheck]\nsweep = 3\n", "[tool.gradcheck] sweep = 3: expected a table ([tool.gradcheck.sweep])"),
    ("[tool.gradcheck.sweep]\ndtype = ['float64']\n",
     "[tool.gradcheck.sweep] unknown key 'dtype' (did you mean 'dtypes'?); expected one of: examples, seed, "
     "activations, losses, dtypes, max_params, jobs, symbolic_max_size, out, layers, scheduler"),
    ("[tool.gradcheck.sweep]\nscheduler = 'local:0'\n",
     '[tool.gradcheck.sweep] scheduler = "local:0": expected local:N (N >= 1) or a Dask scheduler address '
     "such as tcp://host:8786"),
    ("[tool.gradcheck.sweep]\nscheduler = 4\n",
     "[tool.gradcheck.sweep] scheduler = 4: expected local:N (N >= 1) or a Dask scheduler address "
     "such as tcp://host:8786"),
    ("[tool.gradcheck.sweep]\nexamples = 0\n", "[tool.gradcheck.sweep] examples = 0: expected an integer >= 1"),
    ("[tool.gradcheck.sweep]\njobs = 1.5\n", "[tool.gradcheck.sweep] jobs = 1.5: expected an integer >= 1"),
    ("[tool.gradcheck.sweep]\nmax_params = 0\n", "[tool.gradcheck.sweep] max_params = 0: expected an integer >= 1"),
    ("[tool.gradcheck.sweep]\nseed = '7'\n", '[tool.gradcheck.sweep] seed = "7": expected an integer'),
    ("[tool.gradcheck.sweep]\nsymbolic_max_size = -1\n",
     "[tool.gradcheck.sweep] symbolic_max_size = -1: expected an integer >= 0"),
    ("[tool.gradcheck.sweep]\nactivations = ['tanhh']\n",
     "[tool.gradcheck.sweep] activations = [\"tanhh\"]: unknown activation 'tanhh' (did you mean 'tanh'?); "
     "expected names from: identity, sigmoid, tanh, relu, leaky_relu, elu, selu, softplus, softsign, silu, gelu, "
     "gelu_tanh, mish, sin, hard_tanh, softmax"),
    ("[tool.gradcheck.sweep]\nlosses = [1]\n", "[tool.gradcheck.sweep] losses = [1]: expected a list of loss names "
     "from: {losses}"),
    ("[tool.gradcheck.sweep]\ndtypes = ['float16']\n",
     "[tool.gradcheck.sweep] dtypes = [\"float16\"]: unknown dtype 'float16' (did you mean 'float64'?); "
     "expected names from: float64, float32"),
    ("[tool.gradcheck.sweep]\nout = ''\n",
     '[tool.gradcheck.sweep] out = "": expected a folder path (a string, relative to {folder})'),
    ("[tool]\ngradcheck = 'on'\n", 'tool.gradcheck = "on": expected a table ([tool.gradcheck])'),
    ("[tool.gradcheck\nscheme = 'central'\n",
     "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 16)"),
])
def test_validation_errors_are_one_line_naming_file_key_and_expected_value(tmp_path, text, message):
    from reference.losses import LOSSES

    path = project(tmp_path, text)
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    expected = f"{path}: " + message.format(folder=tmp_path, losses=", ".join(LOSSES))
    assert str(info.value) == expected and "\n" not in str(info.value)


def test_find_pyproject_walks_up_to_the_repository_root(tmp_path):
    repo = tmp_path / "repo"
    deep = repo / "src" / "pkg"
    deep.mkdir(parents=True)
    (repo / ".git").mkdir()
    assert config.find_pyproject(deep) is None  # stops at the .git folder, never reads tmp_path's
    (tmp_path / "pyproject.toml").write_text("[tool.gradcheck]\nscheme = 'forward'\n")
    assert config.find_pyproject(deep) is None
    (repo / "pyproject.toml").write_text("[tool.gradcheck]\nscheme = 'central'\n")
    assert config.find_pyproject(deep) == repo / "pyproject.toml"
    (repo / "src" / "pyproject.toml").write_text("[tool.gradcheck]\nscheme = 'richardson'\n")
    assert config.for_directory(deep).scheme == "richardson"  # the nearest one
    (tmp_path / "loose").mkdir()
    assert config.find_pyproject(tmp_path / "loose") == tmp_path / "pyproject.toml"  # no .git: keeps going up


# -- gradcheck sweep ------------------------------------------------------------------------------
def sweep_config(argv: list[str]):
    args = cli.build_parser().parse_args(["sweep", *argv])
    return config_from_args(args)


def test_sweep_flags_win_over_the_table_which_wins_over_the_defaults(tmp_path, monkeypatch):
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)  # the table is found from a subfolder; its paths stay below its own folder
    project(tmp_path, FULL)
    cfg = sweep_config([])
    assert (cfg.examples, cfg.seed, cfg.activations, cfg.losses, cfg.dtypes, cfg.max_params, cfg.jobs,
            cfg.symbolic_max_size, cfg.out) == (4, 7, ("tanh", "relu"), ("mse", "bce"), ("float64",), 50, 1, 0,
                                               str(tmp_path / "reports" / "sweep"))
    cfg = sweep_config(["--examples", "2", "--seed", "9", "--activations", "sigmoid", "--losses", "huber",
                        "--dtype", "float32", "--max-params", "80", "--jobs", "3", "--symbolic-max-size", "10",
                        "--out", "mine"])
    assert (cfg.examples, cfg.seed, cfg.activations, cfg.losses, cfg.dtypes, cfg.max_params, cfg.jobs,
            cfg.symbolic_max_size, cfg.out) == (2, 9, ("sigmoid",), ("huber",), ("float32",), 80, 3, 10, "mine")
    assert sweep_config(["--no-report"]).out is None
    # only some keys set: the rest are the library defaults
    project(tmp_path, "[tool.gradcheck.sweep]\nseed = 3\n")
    cfg = sweep_config([])
    assert (cfg.examples, cfg.seed, cfg.activations, cfg.dtypes, cfg.max_params, cfg.symbolic_max_size, cfg.out) == (
        DEFAULT_EXAMPLES, 3, None, ("float64", "float32"), DEFAULT_MAX_PARAMS, DEFAULT_SYMBOLIC_MAX_SIZE, "reports")
    (tmp_path / "pyproject.toml").unlink()
    assert sweep_config([]).seed == DEFAULT_SEED


def test_the_tables_scheduler_and_layers_reach_the_sweep_below_the_flags(tmp_path, monkeypatch):
    """Parsing only: no cluster is started (that is tests/test_sweep_distributed.py)."""
    monkeypatch.chdir(tmp_path)
    project(tmp_path, "[tool.gradcheck.sweep]\nscheduler = 'local:2'\nlayers = ['dense', 'conv2d']\n")
    cfg = sweep_config([])
    assert (cfg.scheduler, cfg.layers) == ("local:2", ("dense", "conv2d"))
    cfg = sweep_config(["--scheduler", "tcp://10.0.0.1:8786", "--layers", "lstm"])
    assert (cfg.scheduler, cfg.layers) == ("tcp://10.0.0.1:8786", ("lstm",))


def test_sweep_runs_with_the_tables_defaults(tmp_path, monkeypatch, capsys):
    project(tmp_path, "[tool.gradcheck.sweep]\nactivations = ['tanh']\nlosses = ['mse']\ndtypes = ['float64']\n"
                      "examples = 1\njobs = 1\nseed = 4\nout = 'swept'\nlayers = ['dense', 'rnn']\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sweep", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "3 checks over 1 activation x loss pairs (float64), seed 4" in out
    assert "layer kinds: 1 checks over 1 kinds (rnn), 0 failed" in out
    doc = json.loads((tmp_path / "swept" / "gradcheck.json").read_text())
    assert doc["meta"]["seed"] == 4 and (tmp_path / "swept" / "junit.xml").is_file()


def test_an_invalid_table_is_a_sweep_usage_error(tmp_path, monkeypatch, capsys):
    path = project(tmp_path, "[tool.gradcheck.sweep]\nexamples = 0\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sweep", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"gradcheck sweep: error: {path}: [tool.gradcheck.sweep] examples = 0: expected an integer >= 1\n"
    # a flag does not hide a broken table: the file is fixed, not worked around
    assert cli.main(["sweep", "--quiet", "--examples", "1"]) == 2


# -- gradcheck check ------------------------------------------------------------------------------
MODEL = '''
import numpy as np


def linear_mse_10_percent(params, X, y):
    r = X @ params["W"] + params["b"] - y
    loss = 0.5 * np.mean(np.sum(r**2, axis=1))
    return loss, {"W": X.T @ r / len(X), "b": 1.1 * r.mean(axis=0)}


def factory():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    params = {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    return {"fn": linear_mse_10_percent, "params": params, "X": X, "y": y, "name": "ten-percent"}
'''


def check_json(capsys, *argv: str) -> tuple[int, dict]:
    code = cli.main(["check", "model.py:factory", "--json", *argv])
    captured = capsys.readouterr()
    return code, json.loads(captured.out)


def test_check_takes_scheme_rtol_and_report_dir_from_the_table_below_its_flags(tmp_path, monkeypatch, capsys):
    (tmp_path / "model.py").write_text(MODEL, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    # library defaults: auto scheme, the computed tolerance (b is 10% off: fails), no report
    code, result = check_json(capsys)
    assert code == 1 and result["rtol"] is None and result["scheme"] != "central"
    assert not (tmp_path / "checked").exists()
    # the table: central differences, rtol 0.5 (the 10% error passes), the report in its folder
    project(tmp_path, "[tool.gradcheck]\nscheme = 'central'\nrtol = 0.5\nreport_dir = 'checked'\n")
    code, result = check_json(capsys)
    assert code == 0 and (result["scheme"], result["rtol"]) == ("central", 0.5)
    assert {"index.html", "gradcheck.json", "junit.xml"} <= {p.name for p in (tmp_path / "checked").iterdir()}
    # flags win
    code, result = check_json(capsys, "--rtol", "0", "--scheme", "forward", "--report", "flagged")
    assert code == 1 and (result["scheme"], result["rtol"]) == ("forward", 0.0)
    assert (tmp_path / "flagged" / "gradcheck.json").is_file()


def test_an_invalid_table_is_a_check_usage_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "model.py").write_text(MODEL, encoding="utf-8")
    path = project(tmp_path, "[tool.gradcheck]\nscheme = 'secant'\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check", "model.py:factory"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"gradcheck check: error: {path}: [tool.gradcheck] scheme = \"secant\": expected one of "
                            '"auto", "forward", "central", "central4", "richardson", "complex"\n')
    assert captured.out == ""


# -- the pytest plugin ----------------------------------------------------------------------------
SUITE = '''
import numpy as np


def linear_mse_10_percent(params, X, y):
    r = X @ params["W"] + params["b"] - y
    loss = 0.5 * np.mean(np.sum(r**2, axis=1))
    return loss, {"W": X.T @ r / len(X), "b": 1.1 * r.mean(axis=0)}


rng = np.random.default_rng(0)
X, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
params = {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}


def test_session_defaults(gradcheck):
    result = gradcheck(linear_mse_10_percent, params, X, y, name="session")
    print("USED", result.scheme, result.rtol)


def test_own_arguments_win(gradcheck):
    gradcheck(linear_mse_10_percent, params, X, y, name="own", rtol=0)
'''


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    isolate(pytester, monkeypatch)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def plugin_args() -> list[str]:
    """The plugin (unless its entry point loads it already), no cache, output shown (-s)."""
    installed = any(ep.value == "gradcheck.pytest_plugin" for ep in importlib.metadata.entry_points(group="pytest11"))
    return ([] if installed else ["-p", "gradcheck.pytest_plugin"]) + ["-p", "no:cacheprovider", "-s"]


TABLE = "[tool.gradcheck]\nscheme = 'central'\nrtol = 0.5\nreport_dir = 'from-table'\n"


def test_plugin_uses_the_table_below_its_options_and_a_tests_own_arguments(suite):
    suite.makefile(".toml", pyproject=TABLE)
    run = suite.runpytest(*plugin_args())
    run.assert_outcomes(passed=1, failed=1)  # the table's rtol passes the 10% error; rtol=0 in the test wins
    run.stdout.fnmatch_lines(["*USED central 0.5*",
                              "2 gradient checks in 2 tests: 1 passed, 1 failed (session scheme=central, rtol=0.5)",
                              "report: from-table*index.html"])
    # command-line options beat the table
    run = suite.runpytest(*plugin_args(), "--gradcheck-scheme=forward", "--gradcheck-rtol=0.6",
                          "--gradcheck-report=from-cli")
    run.assert_outcomes(passed=1, failed=1)
    run.stdout.fnmatch_lines(["*USED forward 0.6*", "report: from-cli*index.html"])
    run = suite.runpytest(*plugin_args(), "--gradcheck-rtol=0")
    run.assert_outcomes(failed=2)


def test_plugin_ini_report_dir_beats_the_table_and_a_pytest_ini_still_finds_the_table(suite):
    suite.makefile(".toml", pyproject=TABLE + "\n[tool.pytest.ini_options]\ngradcheck_report_dir = 'from-ini'\n")
    suite.runpytest(*plugin_args()).stdout.fnmatch_lines(["*USED central 0.5*", "report: from-ini*index.html"])
    assert not (suite.path / "from-table").exists()
    # a tox.ini is pytest's configuration file: the rootdir's pyproject.toml still gives the table
    suite.makefile(".toml", pyproject=TABLE)
    suite.makeini("[pytest]\n")
    suite.runpytest(*plugin_args()).stdout.fnmatch_lines(["*USED central 0.5*", "report: from-table*index.html"])


def test_plugin_refuses_an_invalid_table_as_a_usage_error(suite):
    suite.makefile(".toml", pyproject="[tool.gradcheck]\nrtol = -1\n")
    run = suite.runpytest(*plugin_args())
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines([f"ERROR: {suite.path / 'pyproject.toml'}: [[]tool.gradcheck[]] rtol = -1: "
                              "expected a finite number >= 0"])
