"""The lesson catalog and ``gradcheck teach`` (the network lessons; the operator lessons have their
own checks in tests/test_teach_operators.py, and share the command line tests here).

Every lesson runs the real check on its mutant with gradcheck's own tolerance (no rtol): the bug is
caught (the kink lesson passes), the worst tensor is one the bug corrupts, and the diagnosis is the
lesson's expected pattern. Every fix passes the same check, so each "right line" is right. The
textbook network the mutants derive from agrees with the reference network to rounding.
"""
from __future__ import annotations

import dataclasses
import inspect
import io
import random
import re

import numpy as np
import pytest

from gradcheck.cli import main
from gradcheck.diagnose import PATTERNS
from gradcheck.teach import LAYER_LESSONS, LESSONS, NETWORK_LESSONS, OPERATOR_LESSONS, PASSES, get_lesson, run_lesson
from gradcheck.teach import cli as teach_cli
from gradcheck.teach.catalog import code_diff, naive_float32_check
from gradcheck.teach.textbook import MLP
from reference.network import Network

NAMES = [lesson.name for lesson in NETWORK_LESSONS]

#: the bugs the catalog must teach (issue 10), each mapped to its lesson
REQUIRED = {
    "sigmoid' of the pre-activation": "sigmoid-prime-of-z", "sigmoid' applied twice": "sigmoid-prime-twice",
    "tanh' as 1 - a": "tanh-one-minus-a", "tanh'(a) on the activation": "tanh-of-activation",
    "relu' at 0 (passes)": "relu-kink", "leaky relu slopes swapped": "leaky-relu-swapped",
    "elu' without exp": "elu-without-exp", "softplus' from the output": "softplus-of-output",
    "swish product rule": "swish-product-rule", "gelu inner derivative": "gelu-inner-derivative",
    "missing transpose": "missing-transpose", "missing 1/N": "missing-mean", "factor 2": "factor-two",
    "wrong sign in one layer": "sign-one-layer", "softmax missing in CE": "softmax-missing",
    "BCE without sigmoid": "bce-without-sigmoid", "bias from one sample": "bias-one-sample",
    "stale W": "stale-weights", "stale cache": "stale-cache", "wrong layer's weights": "wrong-layer-weights",
    "off-by-one layer": "off-by-one-layer", "dropout scale": "dropout-scale",
    "L2 missing": "weight-decay-missing", "L2 doubled": "weight-decay-doubled",
    "float32 vs a real bug": "float32-real-bug", "accumulating gradients": "accumulating-gradients",
}


def test_catalog_has_every_required_lesson():
    assert len(NETWORK_LESSONS) >= 25
    assert LESSONS == NETWORK_LESSONS + OPERATOR_LESSONS + LAYER_LESSONS
    all_names = [lesson.name for lesson in LESSONS]
    assert len(set(all_names)) == len(all_names)
    missing = {bug: name for bug, name in REQUIRED.items() if name not in NAMES}
    assert not missing


@pytest.mark.parametrize("name", NAMES)
def test_lesson_is_caught_localized_and_diagnosed(name):
    lesson = get_lesson(name)
    outcome = run_lesson(lesson)
    r = outcome.result
    if lesson.passes:
        assert r.passed, str(r)
        assert r.diagnosis is None
        assert r.kinks and {e.param for e in r.kinks} <= set(lesson.tensors), str(r)
    else:
        assert not r.passed, str(r)
        if lesson.tensors:
            assert r.worst_param in lesson.tensors, str(r)
        assert outcome.pattern == lesson.expected, str(r)
    assert outcome.ok


@pytest.mark.parametrize("name", NAMES)
def test_the_fix_passes(name):
    r = run_lesson(get_lesson(name), fixed=True).result
    assert r.passed, str(r)


@pytest.mark.parametrize("name", NAMES)
def test_lesson_shows_real_code(name):
    """The wrong and right lines are the lines in which the two classes' methods really differ."""
    lesson = get_lesson(name)
    hunks = lesson.diff()
    assert hunks, "mutant and fix do not differ"
    assert sum(len(w) + len(r) for w, r in hunks) <= 8  # a small mutant
    wrong_src = inspect.getsource(getattr(lesson.mutant, lesson.method))
    right_src = inspect.getsource(getattr(lesson.fix, lesson.method))
    for line in lesson.wrong.splitlines():
        assert line.strip() in wrong_src
    for line in lesson.right.splitlines():
        assert line.strip() in right_src
    assert lesson.expected in PATTERNS | {PASSES, "accumulating"}
    assert lesson.title and lesson.why and lesson.fix_note


def test_code_diff_ignores_comments_when_matching():
    def a(x):
        y = x + 1  # a comment
        return y * 2

    def b(x):
        y = x + 1
        return y * 3
    assert code_diff(a, b) == [(["return y * 2"], ["return y * 3"])]


@pytest.mark.parametrize("act, loss, target", [("tanh", "mse", "real"), ("sigmoid", "half_sse", "real"),
                                                ("relu", "softmax_cross_entropy", "one_hot")])
def test_textbook_network_matches_the_reference(act, loss, target):
    """Same spec, same batch: the textbook MLP and reference.network agree to rounding (1e-12 relative
    to the gradient's scale), so every lesson's mutant differs from a correct network only by its bug."""
    from gradcheck.spec import Layer, NetworkSpec
    from gradcheck.teach.textbook import batch
    spec = NetworkSpec(input_dim=3, layers=(Layer(4, act), Layer(4, act), Layer(3, "identity")), loss=loss, batch=5)
    X, y = batch(spec, target=target)
    params = MLP(spec).init_params()
    l1, g1 = MLP(spec)(params, X, y)
    l2, g2 = Network(spec)(params, X, y)
    assert l1 == pytest.approx(l2, rel=1e-14)
    for k in g2:
        np.testing.assert_allclose(g1[k], g2[k], rtol=0, atol=1e-12 * np.max(np.abs(g2[k])))


def test_dropout_mask_is_fixed_per_call():
    lesson = get_lesson("dropout-scale")
    case = lesson.case()
    fn = lesson.build(fixed=True)
    a, b = fn(case.params, case.X, case.y), fn(case.params, case.X, case.y)
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])


def test_accumulating_lesson_is_found_before_any_comparison():
    r = run_lesson(get_lesson("accumulating-gradients")).result
    assert [p.kind for p in r.problems] == ["accumulating"] and r.diagnosis is None
    assert "zero_grad" in r.problems[0].message


def test_float32_lesson_names_the_factor_and_shows_why_float32_is_hard():
    r = run_lesson(get_lesson("float32-real-bug")).result
    assert r.dtype == "float32"
    assert r.diagnosis.evidence["ratio"] == pytest.approx(1.1, rel=1e-3)
    text = naive_float32_check()
    errors = [float(x) for x in re.findall(r"max relative error ([0-9.]+)", text)]
    # a fixed-step float32 check cannot tell the correct code (first) from the 10% bug (second)
    assert len(errors) == 2 and errors[0] > 0.1


def _symbolic_available() -> bool:
    try:
        from gradcheck.symbolic import activation_expr
    except ImportError:
        try:
            from gradcheck.symbolic.primitives import activation_expr  # noqa: F401
        except ImportError:
            return False
    return True


def test_sympy_derivations_render():
    for lesson in LESSONS:
        if lesson.derivation is None or (lesson.activation and not _symbolic_available()):
            continue
        text = lesson.derivation()
        assert text.startswith("SymPy:"), (lesson.name, text)
    if not _symbolic_available():
        pytest.skip("gradcheck.symbolic not available: activation derivations degrade to a note")
    assert "1 - tanh(z)**2" in get_lesson("tanh-one-minus-a").derivation()
    # the textbook forms written with the output a are checked by SymPy, not just printed
    for name in ("sigmoid-prime-of-z", "tanh-of-activation", "softplus-of-output"):
        assert "with a = f(z) simplifies to 0" in get_lesson(name).derivation()


def test_a_failing_derivation_does_not_stop_the_lesson(monkeypatch, capsys):
    lesson = get_lesson("tanh-one-minus-a")

    def broken():
        raise ImportError("no SymPy oracle here")
    monkeypatch.setattr(teach_cli, "LESSONS", tuple(dataclasses.replace(l, derivation=broken) if l is lesson else l
                                                    for l in LESSONS))
    changed = next(l for l in teach_cli.LESSONS if l.name == lesson.name)
    assert teach_cli.show_lesson(changed) == 0
    assert "SymPy derivation unavailable: ImportError: no SymPy oracle here" in capsys.readouterr().out


def test_unknown_lesson_suggests_names():
    with pytest.raises(ValueError, match="did you mean tanh-one-minus-a"):
        get_lesson("tanh-one-minus")


# -- the command line -----------------------------------------------------------------------------
def test_cli_list(capsys):
    assert main(["teach", "--list"]) == 0
    out = capsys.readouterr().out
    for lesson in LESSONS:
        assert lesson.name in out
    assert f"{len(LESSONS)} lessons" in out


def test_cli_lesson(capsys):
    assert main(["teach", "tanh-one-minus-a"]) == 0
    out = capsys.readouterr().out
    assert "wrong:  return 1 - a  # the square forgotten" in out
    assert "right:  return 1 - a**2" in out
    assert "verdict: FAILED (caught)" in out
    assert "diagnosis: hidden_layer_derivative" in out
    assert "SymPy:" in out
    assert "gradcheck on the fixed code: passed" in out


def test_cli_kink_lesson_passes(capsys):
    assert main(["teach", "relu-kink"]) == 0
    out = capsys.readouterr().out
    assert "verdict: passed (as expected" in out and "b1[0]" in out


def test_cli_lesson_report(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["teach", "sign-one-layer", "--report", str(tmp_path)]) == 0
    assert (tmp_path / "index.html").exists() and (tmp_path / "gradcheck.json").exists()


def test_cli_check_all(capsys):
    """Every lesson, network and operator: the bug caught, localized and diagnosed as declared (an
    operator lesson in float64 and float32) and the fix passing (likewise)."""
    assert main(["teach", "--check-all"]) == 0
    out = capsys.readouterr().out
    n = len(LESSONS)
    assert f"caught {n}/{n}, localized {n}/{n}, diagnosed {n}/{n}, fixes pass {n}/{n}" in out
    assert f"{len(OPERATOR_LESSONS)} operator lessons checked in float64 and float32" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    for lesson in OPERATOR_LESSONS:
        assert lesson.name in rows and "NO" not in rows[lesson.name], rows.get(lesson.name)
        assert "float64, float32" in rows[lesson.name]


def test_cli_quiz_right_and_wrong_answers(capsys):
    assert main(["teach", "--quiz", "factor-two", "--seed", "1", "--answer", "factor-two"]) == 0
    out = capsys.readouterr().out
    assert "Which bug is it?" in out and "Right: it is" in out
    # the same quiz answered with another listed choice, by number
    rng_choices = teach_cli.quiz_choices(get_lesson("factor-two"), random.Random(1))
    wrong = next(k for k, c in enumerate(rng_choices, 1) if c.name != "factor-two")
    assert main(["teach", "--quiz", "factor-two", "--seed", "1", "--answer", str(wrong)]) == 1
    assert "Wrong: it is" in capsys.readouterr().out


def test_cli_quiz_does_not_wait_without_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["teach", "--quiz", "--seed", "5"]) == 2
    captured = capsys.readouterr()
    assert "Which bug is it?" in captured.out and "--answer" in captured.err


def test_cli_quiz_random_lesson_is_reproducible(capsys):
    main(["teach", "--quiz", "--seed", "11", "--answer", "1"])
    first = capsys.readouterr().out
    main(["teach", "--quiz", "--seed", "11", "--answer", "1"])
    assert capsys.readouterr().out == first


@pytest.mark.parametrize("argv, message", [
    (["teach", "nope"], "unknown lesson 'nope'"),
    (["teach", "--answer", "1"], "--answer is only for --quiz"),
    (["teach", "factor-two", "--list"], "does not go with --list"),
    (["teach", "--quiz", "relu-kink", "--answer", "1"], "nothing to quiz on"),
    (["teach", "--quiz", "factor-two", "--seed", "1", "--answer", "9"], "is not one of"),
])
def test_cli_usage_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_rich_table_when_available():
    rich_console = pytest.importorskip("rich.console")
    buf = io.StringIO()
    console = rich_console.Console(file=buf, width=200, color_system=None)
    teach_cli.print_table(("lesson", "title"), [(l.name, l.title) for l in LESSONS[:3]], console=console)
    out = buf.getvalue()
    assert all(l.name in out for l in LESSONS[:3])


def test_cli_quiz_hides_the_activations_and_asks_again_after_a_typo(capsys, monkeypatch):
    """The header gives the layer sizes, not the spec's label (which names the activations, e.g.
    'tanh' for a tanh lesson); a mistyped answer asks again instead of ending the quiz."""
    lesson = get_lesson("tanh-one-minus-a")
    answers = iter(["7x", "tanh-one-minus-a"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert main(["teach", "--quiz", "tanh-one-minus-a", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert "tanh" not in header and lesson.case().spec.label() not in out, header
    assert "'7x' is not one of" in out and "try again" in out and "Right: it is" in out
