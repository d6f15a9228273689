"""`gradcheck sweep`: end to end on a small budget, reproducibility, a planted registry bug."""
from __future__ import annotations

import json

import numpy as np
import pytest

import reference.activations as acts
from gradcheck import cli
from gradcheck.sweep import SweepConfig, run_sweep

SMALL = ["--activations", "tanh,relu", "--losses", "mse,softmax_cross_entropy", "--examples", "1", "--jobs", "1",
         "--quiet"]


def test_sweep_end_to_end_writes_the_report(tmp_path, capsys):
    code = cli.main(["sweep", *SMALL, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "8 checks over 4 activation x loss pairs" in out and "failed 0" in out
    data = json.loads((tmp_path / "gradcheck.json").read_text())
    records = data["results"] if "results" in data else data["checks"]
    assert len(records) == 8
    assert {r["spec"]["dtype"] for r in records} == {"float64", "float32"}
    assert (tmp_path / "index.html").exists() and (tmp_path / "junit.xml").exists()


def test_same_seed_same_records():
    cfg = SweepConfig(activations=("sigmoid", "gelu"), losses=("bce", "huber"), out=None, quiet=True, examples=2)
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


@pytest.mark.parametrize("args, message", [
    (["--examples", "0"], "--examples=0 must be >= 1"),
    (["--dtype", "float16"], "--dtype 'float16' must be float64 or float32"),
])
def test_bad_options_are_named(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["sweep", *args])
    assert message in str(info.value)


def test_unknown_activation_exit_2(capsys):
    assert cli.main(["sweep", "--activations", "swoosh", "--quiet", "--no-report"]) == 2
    assert "unknown activation(s) ['swoosh']" in capsys.readouterr().err
