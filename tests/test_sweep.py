"""`gradcheck sweep`: end to end on a small budget, reproducibility, both input modes per cell, a
planted registry bug, an oracle disagreement."""
from __future__ import annotations

import json

import numpy as np
import pytest

import gradcheck
import reference.activations as acts
from gradcheck import cli
from gradcheck.result import Problem, Result
from gradcheck.sweep import SweepConfig, SweepOutcome, mode_examples, mode_of, run_sweep, summarize

SMALL = ["--activations", "tanh,relu", "--losses", "mse,softmax_cross_entropy", "--examples", "1", "--jobs", "1",
         "--layers", "dense", "--quiet"]


def test_sweep_end_to_end_writes_the_report(tmp_path, capsys):
    code = cli.main(["sweep", *SMALL, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    # --examples 1: one network per cell in each input mode
    assert "16 checks over 4 activation x loss pairs" in out and "failed 0" in out
    assert "per input mode: margin 8 checks, 0 failed; realistic 8 checks, 0 failed" in out
    data = json.loads((tmp_path / "gradcheck.json").read_text())
    records = data["results"] if "results" in data else data["checks"]
    assert len(records) == 16
    assert {r["spec"]["dtype"] for r in records} == {"float64", "float32"}
    assert sorted(r["name"].rsplit(" (", 1)[1] for r in records) == ["margin)"] * 8 + ["realistic)"] * 8
    # the margin mode starts from the simplest network: every float64 cell gets the oracles cross-checked
    margin64 = [r for r in records if r["name"].endswith("(margin)") and r["spec"]["dtype"] == "float64"]
    assert all("numerical_vs_symbolic" in r["oracles"] for r in margin64)
    assert (tmp_path / "index.html").exists() and (tmp_path / "junit.xml").exists()


def test_same_seed_same_records():
    cfg = SweepConfig(activations=("sigmoid", "gelu"), losses=("bce", "huber"), out=None, quiet=True, examples=2,
                      layers=("dense", "conv2d", "lstm"))
    a, b = run_sweep(cfg), run_sweep(cfg)
    key = [(r.name, r.spec, r.max_rel_error) for r in a.results]
    assert key == [(r.name, r.spec, r.max_rel_error) for r in b.results]
    other = run_sweep(SweepConfig(**{**cfg.__dict__, "seed": 1}))
    assert [r.spec for r in other.results] != [r.spec for r in a.results]


def test_planted_registry_bug_makes_the_sweep_exit_1_and_name_the_activation(monkeypatch, capsys):
    tanh = acts.ACTIVATIONS["tanh"]
    wrong = acts.Activation("tanh", "df forgot the square", tanh._f, lambda z: 1 - np.tanh(z))
    monkeypatch.setattr(acts, "ACTIVATIONS", {**acts.ACTIVATIONS, "tanh": wrong})
    code = cli.main(["sweep", "--activations", "tanh,sin", "--losses", "mse", "--jobs", "1", "--quiet",
                     "--no-report"])
    out = capsys.readouterr().out
    assert code == 1
    assert "failing activations: tanh" in out and "FAILED tanh x mse" in out and "FAILED sin" not in out
    assert "rebuild: NetworkSpec(" in out


@pytest.mark.parametrize("examples, margin, realistic", [(1, 1, 1), (2, 1, 1), (3, 2, 1), (4, 2, 2)])
def test_examples_are_split_between_the_modes(examples, margin, realistic):
    assert mode_examples(examples) == {"margin": margin, "realistic": realistic}


def test_every_cell_runs_both_modes():
    cfg = SweepConfig(activations=("relu", "tanh"), losses=("mae",), dtypes=("float32",), examples=3,
                      out=None, quiet=True, layers=("dense",))
    results = run_sweep(cfg).results
    for act in ("relu", "tanh"):
        cell = [r for r in results if r.name.startswith(f"{act} x mae [")]
        assert sorted(mode_of(r) for r in cell) == ["margin", "margin", "realistic"], [r.name for r in cell]
        assert all(r.spec["dtype"] == "float32" and r.spec["loss"] == "mae" for r in cell)
    # realistic networks get the init users pair with the activation, margin ones keep theirs
    assert {r.spec["init"] for r in results if mode_of(r) == "realistic" and r.name.startswith("relu")} == {"he"}


def disagreement(result: Result) -> Result:
    result.problems.append(Problem("oracle_disagreement",
                                   "numerical vs symbolic oracles differ by 2.0e-04 at W1[0, 0], beyond "
                                   "their error bounds"))
    return result


@pytest.mark.parametrize("checker_fails_it", [True, False])
def test_an_oracle_disagreement_fails_the_sweep_and_names_the_pair(monkeypatch, capsys, checker_fails_it):
    real = gradcheck.check

    def check(*args, **kwargs):
        result = real(*args, **kwargs)
        if "sigmoid" in result.name and "(realistic)" in result.name:
            disagreement(result)
            result.passed = result.passed and not checker_fails_it
        return result

    monkeypatch.setattr(gradcheck, "check", check)
    code = cli.main(["sweep", "--activations", "sigmoid,tanh", "--losses", "mse", "--dtype", "float64",
                     "--jobs", "1", "--quiet", "--no-report", "--layers", "dense"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "failed 1" in out and "realistic 2 checks, 1 failed" in out
    assert "FAILED sigmoid x mse [" in out and "FAILED tanh" not in out
    assert "oracle disagreement (numerical vs symbolic): numerical vs symbolic oracles differ" in out
    assert "oracle disagreements: 1 check(s)" in out


def test_a_constructed_disagreeing_result_is_a_failure():
    ok = Result(passed=True, max_rel_error=1e-10, worst_param="W1", name="tanh x mse [1-1(tanh) mse b1 float64] (margin)",
                oracles={"analytic_vs_numerical": 1e-10, "numerical_vs_symbolic": 3e-4})
    bad = disagreement(Result(**{**ok.__dict__, "problems": [], "name": ok.name.replace("tanh", "sin")}))
    bad.problems[0].message = "the oracles disagree"  # a message without the pair: the summary adds it
    outcome = SweepOutcome(results=[ok, bad])
    assert outcome.failed == [bad] and not outcome.passed
    text = summarize(outcome, SweepConfig(out=None))
    assert "FAILED sin x mse" in text and "oracle disagreement (numerical vs symbolic 3.0e-04): the oracles disagree" in text


@pytest.mark.parametrize("args, message", [
    (["--examples", "0"], "--examples=0 must be >= 1"),
    (["--dtype", "float16"], "--dtype 'float16' must be float64 or float32"),
])
def test_bad_options_are_named(args, message, capsys):
    # a usage error: exit code 2 (1 means "checks failed"), one line naming the option
    assert cli.main(["sweep", *args]) == 2
    assert capsys.readouterr().err == f"gradcheck sweep: error: {message}\n"


def test_unknown_activation_exit_2(capsys):
    assert cli.main(["sweep", "--activations", "swoosh", "--quiet", "--no-report"]) == 2
    assert "unknown activation(s) ['swoosh']" in capsys.readouterr().err
