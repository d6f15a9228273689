"""`gradcheck sweep --layers`: layer cells (kind x activation, loss and dtype rotating), the
records' ``layers`` list, the summary line, a planted layer-kind bug named by the sweep, and the
report's layer-kind view."""
from __future__ import annotations

import json

import numpy as np

import reference.layers as layers_module
from gradcheck import cli
from gradcheck.layer_strategies import KINDS
from gradcheck.sweep import SweepConfig, layer_cells, run_sweep
from reference.layers.base import LayerKind


def test_rotation_covers_every_activation_loss_and_dtype_per_kind():
    cfg = SweepConfig(activations=("tanh", "relu", "sin"), losses=("mse", "bce"), layers=("conv2d", "lstm"))
    got = layer_cells(cfg)
    assert len(got) == 2 * 3  # each kind meets each activation once
    for kind in ("conv2d", "lstm"):
        mine = [c for c in got if c[0] == kind]
        assert {c[1] for c in mine} == {"tanh", "relu", "sin"}
        assert {c[2] for c in mine} == {"mse", "bce"} and {c[3] for c in mine} == {"float64", "float32"}
    full = layer_cells(SweepConfig(activations=("tanh",), losses=("mse", "bce"), layers=("rnn",), layer_grid="full"))
    assert full == [("rnn", "tanh", l, d) for l in ("mse", "bce") for d in ("float64", "float32")]
    default = layer_cells(SweepConfig(activations=("tanh",), losses=("mse",)))
    assert [c[0] for c in default] == list(KINDS)  # every kind by default


def test_layer_sweep_end_to_end(tmp_path, capsys):
    code = cli.main(["sweep", "--layers", "conv2d,batchnorm,lstm", "--activations", "tanh,relu", "--losses",
                     "mse,softmax_cross_entropy", "--jobs", "1", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "layer kinds: 6 checks over 3 kinds (batchnorm, conv2d, lstm), 0 failed" in out
    records = json.loads((tmp_path / "gradcheck.json").read_text())["results"]
    assert len(records) == 6
    by_kind = {r["name"].split(": ")[0]: r for r in records}
    assert set(by_kind) == {"conv2d", "batchnorm", "lstm"}
    assert by_kind["lstm"]["layers"] == ["lstm", "flatten", "dense"]
    assert "conv2d" in by_kind["conv2d"]["layers"] and "batchnorm" in by_kind["batchnorm"]["layers"]
    html = (tmp_path / "index.html").read_text()
    assert 'id="layer-kinds"' in html and "Margin by layer kind" in html


def test_same_seed_same_layer_records():
    cfg = SweepConfig(activations=("gelu",), losses=("huber",), layers=("attention", "embedding"), out=None,
                      quiet=True)
    a, b = run_sweep(cfg), run_sweep(cfg)
    assert [(r.name, r.spec, r.max_rel_error) for r in a.results] == [(r.name, r.spec, r.max_rel_error)
                                                                       for r in b.results]


def test_planted_layer_bug_fails_the_sweep_and_names_the_kind(monkeypatch, capsys):
    """An LSTM backward whose recurrent-weight gradient is 1.5x too large: the sweep exits 1 and its
    FAILED lines name the lstm cell, never the rnn one. (The classic recurrent bugs are lessons,
    tests/test_layers_attention_recurrent.py.)"""
    right = layers_module.LAYERS["lstm"]

    def forgetful(node, params, cache, dy):
        dx, grads = right.backward(node, params, cache, dy)
        return dx, {k: (g * 1.5 if k == "Wh" else g) for k, g in grads.items()}

    wrong = LayerKind("lstm", right.init, right.forward, forgetful)
    monkeypatch.setattr(layers_module, "LAYERS", {**layers_module.LAYERS, "lstm": wrong})
    code = cli.main(["sweep", "--layers", "lstm,rnn", "--activations", "tanh", "--losses", "mse", "--jobs", "1",
                     "--quiet", "--no-report"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAILED lstm: tanh x mse" in out and "FAILED rnn" not in out
    assert "rebuild: NetworkSpec(input_dim=(" in out and "LSTM(hidden=" in out


def test_unknown_layer_kind_is_a_usage_error(capsys):
    assert cli.main(["sweep", "--layers", "conv3d", "--quiet", "--no-report"]) == 2
    assert "unknown layer kind(s) ['conv3d']" in capsys.readouterr().err


def test_layers_only_skips_the_dense_grid():
    cfg = SweepConfig(activations=("tanh",), losses=("mse",), layers=("dropout",), out=None, quiet=True)
    results = run_sweep(cfg).results
    assert len(results) == 1 and results[0].name.startswith("dropout: tanh x mse")
    assert np.isfinite(results[0].max_rel_error)
