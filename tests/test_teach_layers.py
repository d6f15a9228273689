"""The layer lessons of ``gradcheck teach``: classic bugs in a layer kind's backward pass (conv,
pooling, normalization, attention, RNN/LSTM, embedding), checked with ``gradcheck.check`` on a whole
network that contains the layer.

For every lesson: the reference network with the wrong backward swapped in fails; every failing
tensor, the worst one included, is one the lesson names (the layer's own parameters, or those of
the layers before it when the bug is in the dx it passes down); the diagnosis is the one stated (or
none); the network with the correct twin passes, in float64. The twin computes what the reference
kind's backward computes, and the code shown is the real difference between the two functions.
"""
from __future__ import annotations

import inspect
import math
import random
import re

import numpy as np
import pytest

import gradcheck
from gradcheck.cli import main
from gradcheck.diagnose import PATTERNS
from gradcheck.teach import (
    LAYER_LESSONS,
    LESSONS,
    NETWORK_LESSONS,
    OPERATOR_LESSONS,
    LayerLesson,
    get_lesson,
    layer_bugs,
    run_lesson,
)
from gradcheck.teach import cli as teach_cli
from reference.layers import get_layer
from reference.layers.base import Context
from reference.network import Network

NAMES = [lesson.name for lesson in LAYER_LESSONS]

#: the bugs the layer lessons must teach (issue 19, item 6), with what gradcheck must say:
#: (the lesson, its layer kind, the diagnosis, the tensors that may fail)
REQUIRED = {
    "conv2d dx by assignment (overlapping windows)": ("net-conv-dx-assign", "conv2d", "input_gradient", {"conv1.W", "conv1.b"}),
    "conv2d dx without the stride": ("net-conv-stride", "conv2d", "input_gradient", {"conv1.W", "conv1.b"}),
    "avgpool divided by size, not size**2": ("net-avgpool-wrong-count", "avgpool2d", "factor_two",
                                             {"conv1.W", "conv1.b"}),
    "maxpool to the whole window": ("net-maxpool-grad-to-window", "maxpool2d", "input_gradient", {"conv1.W", "conv1.b"}),
    "batchnorm with constant statistics": ("net-batchnorm-stats-constant", "batchnorm", "unused_parameter",
                                           {"W1", "b1"}),
    "layernorm over the batch axis": ("net-layernorm-batch-axis", "layernorm", "input_gradient", {"W1", "b1"}),
    "attention without 1/sqrt(d)": ("net-attention-missing-scale", "attention", "constant_factor",
                                    {"W1", "b1", "attn2.Wq", "attn2.Wk"}),
    "RNN without the next step's gradient": ("net-rnn-no-carry", "rnn", "input_gradient", {"rnn1.Wx", "rnn1.Wh", "rnn1.b"}),
    "LSTM without the forget gate in dc": ("net-lstm-no-forget-gate", "lstm", "input_gradient",
                                           {"lstm1.Wx", "lstm1.Wh", "lstm1.b"}),
    "embedding assigning repeated indices": ("net-embedding-assign", "embedding", "input_gradient", {"embed1.E"}),
}


def test_catalog_has_the_required_layer_lessons():
    assert len(LAYER_LESSONS) >= 8 and len(set(NAMES)) == len(NAMES)
    assert LESSONS == NETWORK_LESSONS + OPERATOR_LESSONS + LAYER_LESSONS
    for bug, (name, kind, pattern, tensors) in REQUIRED.items():
        lesson = get_lesson(name)
        assert isinstance(lesson, LayerLesson) and lesson in LESSONS, bug
        assert (lesson.kind, lesson.expected, set(lesson.tensors)) == (kind, pattern, tensors), bug
    for lesson in LAYER_LESSONS:
        spec = lesson.case().spec
        assert lesson.kind in spec.layer_kinds and spec.dtype == "float64", lesson.name
        assert set(lesson.tensors) <= set(spec.param_shapes()), lesson.name
        assert lesson.expected is None or lesson.expected in PATTERNS
        assert lesson.bug in layer_bugs.PAIRS and lesson.title and lesson.why and lesson.fix_note
        assert lesson.topic == f"{lesson.kind} layer" and not lesson.passes
        if lesson.twin is not None:  # the same bug as an operator lesson, checked with check_vjp
            assert get_lesson(lesson.twin) in OPERATOR_LESSONS


def test_lesson_cases_are_deterministic():
    for lesson in LAYER_LESSONS:
        a, b = lesson.case(), lesson.case()
        assert a.spec == b.spec and np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
        assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)


@pytest.mark.parametrize("name", NAMES)
def test_bug_is_caught_localized_and_diagnosed(name):
    lesson = get_lesson(name)
    outcome = run_lesson(lesson)
    r = outcome.result
    assert not r.passed, str(r)
    failing = {n for n, t in r.tensors.items() if not t.passed}
    assert failing and failing <= set(lesson.tensors), str(r)
    assert r.worst_param in lesson.tensors, str(r)
    # the tensors the lesson does not name pass: the layers after the bug (and its own parameters,
    # where only dx is wrong) are right
    assert all(t.passed for n, t in r.tensors.items() if n not in lesson.tensors)
    assert outcome.pattern == lesson.expected, str(r)
    assert (r.diagnosis is None) == (lesson.expected is None)
    assert outcome.caught and outcome.localized and outcome.diagnosed and outcome.ok


@pytest.mark.parametrize("name", NAMES)
def test_the_fix_passes(name):
    r = run_lesson(get_lesson(name), fixed=True).result
    assert r.passed and r.dtype == "float64", str(r)


def test_the_check_is_plain_gradcheck_check_on_the_swapped_network():
    """What run_lesson does is gradcheck.check(Network(spec, layers={kind: ...}), params, X, y)."""
    lesson = get_lesson("net-conv-dx-assign")
    case = lesson.case()
    net = Network(case.spec, layers={"conv2d": lesson.layer_kind()})
    r = gradcheck.check(net, case.params, case.X, case.y)
    assert not r.passed and {n for n, t in r.tensors.items() if not t.passed} == {"conv1.W", "conv1.b"}
    assert gradcheck.check(Network(case.spec, layers={"conv2d": lesson.layer_kind(fixed=True)}),
                           case.params, case.X, case.y).passed


def test_what_the_diagnoses_say():
    """The numbers behind the three lessons that name a pattern."""
    avg = run_lesson(get_lesson("net-avgpool-wrong-count")).result.diagnosis
    assert avg.evidence["ratio"] == pytest.approx(2.0, rel=1e-6) and set(avg.params) == {"conv1.W", "conv1.b"}
    attn = run_lesson(get_lesson("net-attention-missing-scale")).result.diagnosis
    assert attn.evidence["ratio"] == pytest.approx(math.sqrt(3), rel=1e-6)  # sqrt(dh), dh = 3 a head
    assert set(attn.params) == {"attn2.Wq", "attn2.Wk"} and set(attn.evidence["unexplained"]) == {"W1", "b1"}
    bn = run_lesson(get_lesson("net-batchnorm-stats-constant")).result
    assert bn.diagnosis.params == ["b1"] and "W1" in bn.diagnosis.message
    # a bias in front of a batchnorm does not change the loss: its numerical gradient is exactly 0
    assert np.all(bn.tensors["b1"].numerical == 0) and np.all(bn.tensors["b1"].claimed != 0)


def _layer_io(lesson: LayerLesson):
    """For every layer of the lesson's kind: its node, parameters and input on the lesson's batch."""
    case = lesson.case()
    spec, net = case.spec, Network(case.spec)
    _, cache = net.forward(case.params, case.X)
    for i, layer in enumerate(spec.layers, start=1):
        if layer.kind == lesson.kind:
            local = {k: case.params[n] for k, n in spec.param_names(i).items()}
            yield i, layer, local, cache.inputs[i - 1], Context(spec.seed, i)


@pytest.mark.parametrize("name", NAMES)
def test_the_twin_is_the_reference_backward(name):
    """The right lines run: the correct twin gives the reference kind's dx and parameter gradients
    (for a random cotangent, to rounding), and the wrong one does not."""
    lesson = get_lesson(name)
    ref = get_layer(lesson.kind)
    rng = np.random.default_rng(0)
    differs = False
    for _, layer, local, x, ctx in _layer_io(lesson):
        y, cache = ref.forward(layer, local, x, ctx)
        dy = rng.standard_normal(y.shape)
        want_dx, want = ref.backward(layer, local, cache, dy)
        got_dx, got = lesson.right_backward(layer, local, cache, dy)
        bad_dx, bad = lesson.wrong_backward(layer, local, cache, dy)
        assert set(got) == set(want) == set(bad)
        if want_dx is None:
            assert got_dx is None and bad_dx is None
        else:
            np.testing.assert_allclose(got_dx, want_dx, rtol=1e-12, atol=1e-14)
            differs |= not np.allclose(bad_dx, want_dx, rtol=1e-6)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14)
            differs |= not np.allclose(bad[k], want[k], rtol=1e-6)
    assert differs


def _code(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line).strip()


@pytest.mark.parametrize("name", NAMES)
def test_lesson_shows_real_code(name):
    """The wrong and right lines are the lines in which the two functions really differ: a small
    bug, the rest of the two functions identical."""
    lesson = get_lesson(name)
    hunks = lesson.diff()
    assert hunks and sum(len(w) + len(r) for w, r in hunks) <= 6
    wrong_src, right_src = inspect.getsource(lesson.wrong_backward), inspect.getsource(lesson.right_backward)
    assert lesson.wrong and lesson.right and lesson.wrong != lesson.right
    for line in lesson.wrong.splitlines():
        assert line.strip() in wrong_src
    for line in lesson.right.splitlines():
        assert line.strip() in right_src
    # apart from the hunks (and the name, docstring and comments), the two sources are the same
    def rest(src: str, shown: str) -> list[str]:
        body = [_code(x) for x in src.splitlines()[1:] if _code(x) and '"""' not in x]
        for x in shown.splitlines():
            body.remove(_code(x))
        return body
    assert rest(wrong_src, lesson.wrong) == rest(right_src, lesson.right)
    assert lesson.source().startswith(f"def {lesson.where()}(") and lesson.where() != lesson.where(fixed=True)


# -- the command line -----------------------------------------------------------------------------
def test_cli_shows_a_layer_lesson(capsys):
    assert main(["teach", "net-conv-dx-assign"]) == 0
    out = capsys.readouterr().out
    assert "The code (conv2d_backward_assign vs conv2d_backward, gradcheck/teach/layer_bugs.py):" in out
    assert "wrong:  dxp[n, :, i * s:i * s + k, j * s:j * s + k] = w[f] * dy[n, f, i, j]  # = for +=" in out
    assert "right:  dxp[n, :, i * s:i * s + k, j * s:j * s + k] += w[f] * dy[n, f, i, j]" in out
    assert "def conv2d_backward_assign(node, params, cache, dy):" in out
    assert "layers={'conv2d': LayerKind(..., backward=conv2d_backward_assign)}" in out
    assert "verdict: FAILED (caught)" in out
    assert "failing tensors: conv1.W, conv1.b (expected among conv1.W, conv1.b: as expected)" in out
    assert "diagnosis: input_gradient (confidence medium; expected input_gradient: as expected)" in out
    assert "gradcheck on the fixed code: passed" in out
    assert "gradcheck teach conv-dx-assign" in out


def test_cli_shows_a_diagnosed_layer_lesson(capsys):
    assert main(["teach", "net-attention-missing-scale"]) == 0
    out = capsys.readouterr().out
    assert "wrong:  dq = ds @ k  # the scale forgotten" in out and "right:  dq = ds @ k * scale" in out
    assert "diagnosis: constant_factor (confidence" in out and "expected constant_factor: as expected" in out
    assert "attn2.Wq, attn2.Wk = 1.732 x numerical" in out


def test_cli_list_has_the_layer_lessons(capsys):
    assert main(["teach", "--list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line for line in out.splitlines() if len(line.split()) > 1}
    for lesson in LAYER_LESSONS:
        assert lesson.name in rows and lesson.topic in rows[lesson.name]
    assert "factor_two in conv1.W, conv1.b" in rows["net-avgpool-wrong-count"]
    assert "input_gradient in embed1.E" in rows["net-embedding-assign"]


def test_cli_check_all_counts_the_layer_lessons(capsys):
    assert main(["teach", "--check-all"]) == 0
    out = capsys.readouterr().out
    n = len(LESSONS)
    assert n == 43 + len(LAYER_LESSONS)  # 30 network and 13 operator lessons before these
    assert f"caught {n}/{n}, localized {n}/{n}, diagnosed {n}/{n}, fixes pass {n}/{n}" in out
    assert f"{len(LAYER_LESSONS)} layer lessons" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    for lesson in LAYER_LESSONS:
        assert lesson.name in rows and "NO" not in rows[lesson.name], rows.get(lesson.name)
        assert rows[lesson.name].rstrip().endswith("float64")


def test_cli_quiz_on_a_layer_lesson(capsys):
    assert main(["teach", "--quiz", "net-rnn-no-carry", "--seed", "2", "--answer", "net-rnn-no-carry"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert "network with input (5, 3) per example and 3 layers (float64, batch 3)" in header
    assert "rnn" not in header and "Right: it is" in out and "wrong:  dh = dy[:, t]" in out
    choices = teach_cli.quiz_choices(get_lesson("net-rnn-no-carry"), random.Random(2))
    assert len(choices) == teach_cli.N_CHOICES and all(isinstance(c, LayerLesson) for c in choices)
