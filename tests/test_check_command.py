"""``gradcheck check TARGET``: loading targets, exit codes, JSON and report output, clear errors.

Runs in-process through ``gradcheck.cli.main`` on the numpy example (no framework needed) and on
small factories written to a temporary folder.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gradcheck import check_command
from gradcheck.cli import main

ROOT = Path(__file__).resolve().parents[1]
XOR = str(ROOT / "examples" / "origin_xor_step.py")


def _write(tmp_path: Path, body: str, name: str = "target.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


WRONG_SIGN = """
    import numpy as np

    def make(sign):
        def fn(p, X, y):
            r = X @ p["W"] - y
            return 0.5 * float(np.sum(r ** 2)), {"W": sign * X.T @ r}
        X = np.arange(6.0).reshape(3, 2) / 5
        return {"fn": fn, "params": {"W": np.array([[0.3], [-0.2]])}, "X": X, "y": np.ones((3, 1)),
                "name": f"sign {sign:+d}"}

    def good():
        return make(+1)

    def bad():
        return make(-1)

    def both():
        return [make(+1), make(-1)]

    def as_tuple():
        c = make(+1)
        return c["fn"], c["params"], c["X"], c["y"]
"""


def test_origin_example_passes_with_exit_0(capsys):
    assert main(["check", f"{XOR}:factory"]) == 0
    out = capsys.readouterr().out
    assert "passed origin XOR train_step" in out and "weights_input_hidden" in out


def test_factory_name_defaults_to_factory(capsys):
    assert main(["check", XOR]) == 0
    assert "passed" in capsys.readouterr().out


def test_failure_exits_1_and_names_the_parameter(tmp_path, capsys):
    target = _write(tmp_path, WRONG_SIGN)
    assert main(["check", f"{target}:bad"]) == 1
    out = capsys.readouterr().out
    assert "FAILED sign -1: W is off" in out and "sign flipped" in out


def test_tuple_form_and_several_cases(tmp_path, capsys):
    target = _write(tmp_path, WRONG_SIGN)
    assert main(["check", f"{target}:as_tuple"]) == 0
    assert "passed as_tuple" in capsys.readouterr().out
    assert main(["check", f"{target}:both"]) == 1
    out = capsys.readouterr().out
    assert "1 of 2 checks passed; failed: sign -1" in out


def test_json_output_is_result_to_dict(tmp_path, capsys):
    assert main(["check", f"{XOR}:factory", "--json", "--scheme", "central"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is True and doc["scheme"] == "central" and doc["name"] == "origin XOR train_step"
    assert set(doc["tensors"]) == {"weights_input_hidden", "weights_hidden_output", "bias_hidden", "bias_output"}
    target = _write(tmp_path, WRONG_SIGN)
    assert main(["check", f"{target}:both", "--json"]) == 1
    docs = json.loads(capsys.readouterr().out)
    assert [d["passed"] for d in docs] == [True, False] and docs[1]["worst_param"] == "W"


def test_rtol_loosens_the_verdict(tmp_path, capsys):
    target = _write(tmp_path, WRONG_SIGN)
    assert main(["check", f"{target}:bad", "--rtol", "3"]) == 0  # a relative error of 2 is within 3
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["check", f"{target}:bad", "--rtol", "-1"])
    assert exc.value.code == 2 and ">= 0" in capsys.readouterr().err


def test_report_dir(tmp_path, capsys):
    out_dir = tmp_path / "rep"
    target = _write(tmp_path, WRONG_SIGN)
    assert main(["check", f"{target}:both", "--report", str(out_dir)]) == 1
    assert {"index.html", "gradcheck.json", "junit.xml"} <= {p.name for p in out_dir.iterdir()}
    saved = json.loads((out_dir / "gradcheck.json").read_text())
    assert [r["passed"] for r in saved["results"]] == [True, False]
    assert f"report: {out_dir / 'index.html'}" in capsys.readouterr().out


def test_module_form(monkeypatch, tmp_path, capsys):
    _write(tmp_path, WRONG_SIGN, "my_models.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["check", "my_models:good"]) == 0
    assert "passed sign +1" in capsys.readouterr().out
    monkeypatch.delitem(sys.modules, "my_models")


@pytest.mark.parametrize("body, target_suffix, message", [
    (None, "nope.py:factory", "no such file: "),
    (WRONG_SIGN, ":nothere", "has no 'nothere'; callables defined there: as_tuple, bad, both, good, make"),
    (WRONG_SIGN, ":make", "make(sign) needs arguments"),
    ("X = 3\n", ":X", ":X is not callable (type int)"),
    ("def factory():\n    raise RuntimeError('boom')\n", "", "factory() raised RuntimeError: boom"),
    ("raise ImportError('no deps')\n", "", "raised ImportError: no deps"),
    ("def factory():\n    return 1, 2, 3\n", "", "returned a tuple of length 3: expected (fn, params, X, y)"),
    ("def factory():\n    return {'fn': print, 'params': {}}\n", "", "without ['X', 'y']"),
    ("def factory():\n    return {'fn': print, 'params': {}, 'X': 1, 'y': 1, 'lr': 1}\n", "",
     "with unknown keys ['lr']"),
    ("def factory():\n    return {'fn': 3, 'params': {}, 'X': 1, 'y': 1}\n", "", "fn is not callable (type int)"),
    ("def factory():\n    return print, [1.0], 1, 1\n", "", "params must be a dict"),
], ids=["no-file", "no-factory", "factory-needs-args", "not-callable", "factory-raises", "import-raises",
        "three-tuple", "missing-keys", "unknown-key", "fn-not-callable", "params-not-dict"])
def test_load_errors_exit_2_with_a_clear_message(tmp_path, capsys, body, target_suffix, message):
    path = _write(tmp_path, body) if body is not None else str(tmp_path / "nope.py")
    target = path + target_suffix if body is not None else str(tmp_path / target_suffix)
    assert main(["check", target]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradcheck check: error: ") and message in err, err


def test_missing_module_and_bad_target():
    with pytest.raises(check_command.TargetError, match="no module named 'no_such_pkg.mod'"):
        check_command.load_cases("no_such_pkg.mod:f")
    with pytest.raises(check_command.TargetError, match="not a Python name"):
        check_command.split_target("file.py:9lives")
    assert check_command.split_target("C:\\models\\net.py") == ("C:\\models\\net.py", "factory")
    assert check_command.split_target("a/b.py:make") == ("a/b.py", "make")


def test_plain_output_without_rich(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rich.console", None)  # import fails as if rich were absent
    assert main(["check", XOR]) == 0
    assert capsys.readouterr().out.startswith("gradcheck passed origin XOR train_step")


def test_adapters_import_no_framework_until_used():
    code = ("import sys, gradcheck, gradcheck.adapters, gradcheck.adapters.torch, gradcheck.adapters.jax, "
            "gradcheck.adapters.autograd, gradcheck.adapters.micrograd, gradcheck.check_command; "
            "print([m for m in ('torch', 'jax', 'autograd', 'micrograd') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_framework_says_which_extra(monkeypatch):
    from gradcheck.adapters import FrameworkMissing
    from gradcheck.adapters import torch as torch_adapter

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(FrameworkMissing, match=r"pip install 'gradcheck\[torch\]'"):
        torch_adapter.as_fn(object(), None)


def test_max_calls_samples_and_states_the_coverage(tmp_path, capsys):
    """--max-calls below a full check's cost: a sample plus directions, and the result says so."""
    big = _write(tmp_path, """
        import numpy as np

        def make():
            rng = np.random.default_rng(0)
            X, y = rng.normal(size=(8, 30)), rng.normal(size=(8, 20))

            def fn(p, X, y):
                r = X @ p["W"] - y
                return 0.5 * float(np.sum(r ** 2)), {"W": X.T @ r}
            return {"fn": fn, "params": {"W": rng.normal(size=(30, 20))}, "X": X, "y": y, "name": "600 weights"}
    """)
    assert main(["check", f"{big}:make", "--max-calls", "300", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and not doc["coverage"]["complete"]
    assert 0 < doc["coverage"]["checked"] < doc["coverage"]["total"] == 600
    assert main(["check", f"{big}:make", "--budget", "600"]) == 0
    assert "the full check fit" in capsys.readouterr().out


@pytest.mark.parametrize("flag, value, message", [
    ("--budget", "0", "expected a finite number of seconds > 0, got '0'"),
    ("--budget", "inf", "expected a finite number of seconds > 0, got 'inf'"),
    ("--max-calls", "0", "expected a whole number >= 1, got '0'"),
    ("--max-calls", "1.5", "expected a whole number, got '1.5'"),
])
def test_bad_budgets_are_usage_errors(flag, value, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", f"{XOR}:factory", flag, value])
    assert exc.value.code == 2 and message in capsys.readouterr().err
