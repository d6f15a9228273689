"""The operator lessons of ``gradcheck teach``: bugs in one operator's backward pass, checked with
``check_vjp``.

Every lesson's bug fails the real check, in float64 and in float32, with the worst Jacobian entry
relating the expected output to the expected input and the expected diagnosis (or none, where the
lesson says no pattern applies); every fix (the operator's correct vjp) passes in both dtypes. The
code a lesson shows is the code that runs: the wrong lines are the body of the vjp's
``if bug == ...`` branch, the right lines are what it replaces, and the whole wrong backward as
shown, executed, computes exactly the planted bug.
"""
from __future__ import annotations

import inspect
import random
import re
import textwrap
import types

import numpy as np
import pytest

from gradcheck.cli import main
from gradcheck.diagnose import PATTERNS
from gradcheck.operators import Structure
from gradcheck.teach import LESSONS, OPERATOR_LESSONS, OperatorLesson, get_lesson, run_lesson
from gradcheck.teach import cli as teach_cli
from gradcheck.teach import operators as ops

NAMES = [lesson.name for lesson in OPERATOR_LESSONS]
DTYPES = ("float64", "float32")
#: the diagnoses only an operator check makes (gradcheck.operators._vjp_diagnosis)
OPERATOR_PATTERNS = {"overwrites_accumulation", "missing_path", "low_rank_error"}

#: the operator-level bugs the catalog must teach (issue 18), with what gradcheck must say
REQUIRED = {
    "batchnorm-stats-constant": ("batchnorm_stats_constant", "low_rank_error", {"x"}),
    "conv-dx-assign": ("conv2d_overlap_dx_assign", "overwrites_accumulation", {"x"}),
    "softmax-no-rowsum": ("softmax_no_rowsum", "low_rank_error", {"x"}),
    "rnn-no-carry": ("rnn_no_carry", "missing_path", {"h0", "x"}),
    "embedding-assign": ("embedding_assign", "overwrites_accumulation", {"W"}),
    "double-backward-detached": ("tanh_layer_grad_detached", "missing_path", {"x", "W"}),
}


def test_catalog_has_the_required_operator_lessons():
    assert len(OPERATOR_LESSONS) >= 6 and len(set(NAMES)) == len(NAMES)
    for name, (bug, pattern, inputs) in REQUIRED.items():
        lesson = get_lesson(name)
        assert isinstance(lesson, OperatorLesson) and lesson in LESSONS
        assert (lesson.bug, lesson.expected, set(lesson.inputs)) == (bug, pattern, inputs), name
    for lesson in OPERATOR_LESSONS:
        assert lesson.bug in ops.BUGS and lesson.title and lesson.why and lesson.fix_note
        assert lesson.expected is None or lesson.expected in PATTERNS | OPERATOR_PATTERNS
        # the expected worst input is one the bug corrupts, the outputs are the operator's
        assert set(lesson.inputs) <= set(lesson.planted.wrong_inputs), lesson.name
        outputs = set(Structure.of(lesson.operator.f(lesson.make_inputs())).names)
        assert lesson.outputs and set(lesson.outputs) <= outputs, lesson.name
        assert set(lesson.dtypes) == set(DTYPES)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_bug_is_caught_localized_and_diagnosed(name, dtype):
    lesson = get_lesson(name)
    outcome = run_lesson(lesson, dtype=dtype)
    r = outcome.result
    # (each tensor's dtype: a failing operator result's own ``dtype`` reads float64, see _merge's `if first`)
    assert all(t.dtype == dtype for t in r.tensors.values()), {k: t.dtype for k, t in r.tensors.items()}
    assert r.operator["kind"] == "vjp" and r.operator["mode"] == "jacobian"
    assert not r.passed, str(r)
    w = r.worst
    assert w is not None and w.output in lesson.outputs and w.input in lesson.inputs, str(r)
    assert w.label().startswith(f"d {w.output}[") and f"] / d {w.input}[" in w.label()
    assert r.worst_param == f"d{w.output}/d{w.input}"
    assert outcome.pattern == lesson.expected, str(r)
    assert outcome.caught and outcome.localized and outcome.diagnosed and outcome.ok


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_the_fix_passes(name, dtype):
    r = run_lesson(get_lesson(name), fixed=True, dtype=dtype).result
    assert r.passed and r.dtype == dtype, str(r)


def _branch_source(lesson: OperatorLesson) -> tuple[str, str]:
    """(the vjp's `if bug == variant:` line and its body, the rest of the function: its `else:` too)."""
    b = lesson.branch()
    src = textwrap.dedent(inspect.getsource(b.func)).splitlines()
    lo, hi = b.branch.lineno - 1, b.branch.body[-1].end_lineno
    return "\n".join(src[lo:hi]), "\n".join(src[:lo] + src[hi:])


def _code(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line).strip()


@pytest.mark.parametrize("name", NAMES)
def test_lesson_shows_real_code(name):
    """The wrong lines are the body of the vjp's bug branch, the right lines the code it replaces."""
    lesson = get_lesson(name)
    branch, rest = _branch_source(lesson)
    assert f'if bug == "{lesson.planted.variant}"' in branch
    hunks = lesson.diff()
    assert hunks and sum(len(w) + len(r) for w, r in hunks) <= 8  # a small bug
    assert lesson.wrong and lesson.right and lesson.wrong != lesson.right
    for line in lesson.wrong.splitlines():
        assert _code(line) in branch, line
    for line in lesson.right.splitlines():
        assert _code(line) in rest, line
    assert not any("bug" in _code(line) for line in (lesson.wrong + "\n" + lesson.right).splitlines())


def _rebuilt_vjp(lesson: OperatorLesson, source: str):
    """The operator's vjp with its branch function replaced by ``source`` (run in the operators module's
    namespace), called as f_vjp(inputs, cotangents)."""
    namespace = dict(vars(ops))
    exec(compile(source, f"<{lesson.name}>", "exec"), namespace)
    func = lesson.branch().func
    if func is lesson.operator.vjp:
        return namespace[func.__name__]
    outer = lesson.operator.vjp  # the branch is in a helper: rebind the vjp to the namespace
    rebound = types.FunctionType(outer.__code__, namespace, outer.__name__, outer.__defaults__, outer.__closure__)
    rebound.__kwdefaults__ = outer.__kwdefaults__
    return rebound


def _random_like(out, rng):
    if isinstance(out, np.ndarray):
        return rng.standard_normal(out.shape).astype(out.dtype)
    if isinstance(out, tuple):
        return tuple(_random_like(a, rng) for a in out)
    return {k: _random_like(v, rng) for k, v in out.items()}


@pytest.mark.parametrize("name", NAMES)
def test_the_whole_wrong_backward_as_shown_is_the_planted_bug(name):
    """`gradcheck teach NAME` prints the whole wrong backward: the vjp with the wrong lines in place of
    the right ones and no branch. Executed, that text computes exactly what the planted bug computes
    (and the fixed text what the correct vjp computes)."""
    lesson = get_lesson(name)
    wrong, right = lesson.source(), lesson.source(fixed=True)
    assert "bug ==" not in wrong and "bug ==" not in right
    assert all(_code(line) in wrong for line in lesson.wrong.splitlines())
    assert all(_code(line) in right for line in lesson.right.splitlines())
    inputs = lesson.make_inputs()
    cot = _random_like(lesson.operator.f(inputs), np.random.default_rng(1))
    for source, reference in ((wrong, lesson.vjp()), (right, lesson.vjp(fixed=True))):
        got, want = _rebuilt_vjp(lesson, source)(inputs, cot), reference(inputs, cot)
        assert set(got) == set(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{name}: {k}")


# -- the command line -----------------------------------------------------------------------------
def test_cli_operator_lesson(capsys):
    assert main(["teach", "batchnorm-stats-constant"]) == 0
    out = capsys.readouterr().out
    assert "operator: batchnorm" in out
    assert "wrong:  dx = dy * gamma / np.sqrt(var + EPS)" in out
    assert "right:  dx = inv_std / N * (N * dxhat - dxhat.sum(axis=0)" in out
    assert "the whole wrong backward:" in out and "def batchnorm_vjp(inputs, dy):" in out
    assert "check_vjp(f, f_vjp, inputs) on the wrong backward (float64)" in out
    assert "verdict: FAILED (caught)" in out
    assert re.search(r"worst element d out\[\d, \d\] / d x\[\d, \d\] \(output out, input x\): claimed \S+, "
                     r"numerical \S+; error \S+ vs tolerance \S+ \(expected d out / d x: as expected\)", out), out
    assert "diagnosis: low_rank_error (confidence medium; expected low_rank_error: as expected)" in out
    assert "in float32: FAILED (caught), worst element d out[" in out
    assert "gradcheck on the fixed code (float64): passed" in out
    assert "gradcheck on the fixed code (float32): passed" in out
    assert "NOT as expected" not in out


def test_cli_double_backward_lesson(capsys):
    assert main(["teach", "double-backward-detached"]) == 0
    out = capsys.readouterr().out
    assert "wrong:  dx = u @ cgW.T" in out and "right:  dx = u @ cgW.T + dz @ W.T" in out
    assert "right:  dW = cgx.T @ u + x.T @ dz" in out
    assert re.search(r"worst element d g[xW]\[\d, \d\] / d [xW]\[\d, \d\]", out), out
    assert "diagnosis: missing_path" in out and "NOT as expected" not in out


def test_cli_lesson_without_a_pattern(capsys):
    assert main(["teach", "lstm-no-forget-gate"]) == 0
    out = capsys.readouterr().out
    assert "diagnosis: none (expected no pattern: as expected)" in out
    assert "/ d c_prev[" in out


def test_cli_list_shows_operator_lessons(capsys):
    assert main(["teach", "--list"]) == 0
    out = capsys.readouterr().out
    assert "low_rank_error at d out / d x" in out and "missing_path at d gx|gW / d x|W" in out
    assert "no pattern at d out0|out1 / d c_prev" in out


def test_cli_operator_quiz(capsys):
    assert main(["teach", "--quiz", "rnn-no-carry", "--seed", "1", "--answer", "rnn-no-carry"]) == 0
    out = capsys.readouterr().out
    assert "this backward pass (vjp) of an operator with inputs x (3, 2, 3), h0 (2, 4)" in out
    assert "fails check_vjp" in out and "Right: it is" in out and "wrong:  dh = dhs[t]" in out
    choices = teach_cli.quiz_choices(get_lesson("rnn-no-carry"), random.Random(1))
    assert all(isinstance(c, OperatorLesson) for c in choices)  # operator distractors for an operator bug


def test_cli_operator_lesson_report(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["teach", "embedding-assign", "--report", str(tmp_path)]) == 0
    assert (tmp_path / "index.html").exists() and (tmp_path / "gradcheck.json").exists()
