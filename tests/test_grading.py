"""Grading (``gradcheck teach --grade FILE | DIR --report OUT``): every shipped bug fails (exit 1)
and every reference fix passes (exit 0), in a child process with a timeout; cheating and broken
files are refused (exit 2); hints; a whole class into an HTML report and a CSV gradebook."""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from gradcheck.cli import main
from gradcheck.teach.exercises import EXERCISES, get_exercise
from gradcheck.teach.grading import ERROR, FIXED, WRONG, grade_file, grade_in_process

NAMES = [e.name for e in EXERCISES]


def _write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _with_backward(name: str, body: str, *, solution: bool = True) -> str:
    """The exercise's file with everything between the banners replaced by ``body``."""
    ex = get_exercise(name)
    src = ex.solution() if solution else ex.student_source()
    a, b = src.index("# ---- YOUR WORK"), src.index("# ---- end of your work")
    return src[:a] + body + src[b:]


@pytest.mark.parametrize("name", NAMES)
def test_shipped_bug_fails_and_reference_fix_passes(name, tmp_path):
    ex = get_exercise(name)
    bug = grade_file(_write(tmp_path / ex.filename(), ex.student_source()))
    assert (bug.status, bug.exit_code, bug.exercise) == (WRONG, 1, name), str(bug)
    text = str(bug)
    assert "worst tensor" in text and "diagnosis:" in text and "your backward" in text
    assert bug.worst and bug.worst_element and bug.max_rel_error > 0
    fix = grade_file(_write(tmp_path / "fixed.py", ex.solution()))
    assert (fix.status, fix.exit_code) == (FIXED, 0), str(fix)


def test_kinks_and_float32_are_no_false_alarm(tmp_path):
    relu = get_exercise("delta-not-transposed")
    g = grade_in_process(_write(tmp_path / "r.py", relu.solution()))
    assert g.passed and g.result is not None and g.result["kinks"]   # kinks found, left out, passed
    f32 = grade_in_process(_write(tmp_path / "f.py", get_exercise("float32-real-bug").solution()))
    assert f32.passed and f32.result is not None and f32.result["dtype"] == "float32"


NUMERIC_VIA_FORWARD = '''
def backward(params, X, y):
    grads = {}
    for k, v in params.items():
        g = np.zeros_like(v)
        for i in np.ndindex(v.shape):
            p = {kk: vv.copy() for kk, vv in params.items()}
            p[k][i] += 1e-6
            up = forward(p, X, y)
            p[k][i] -= 2e-6
            g[i] = (up - forward(p, X, y)) / 2e-6
        grads[k] = g
    return grads
'''

NUMERIC_INLINE = '''
def _loss(params, X, y):
    a1 = np.tanh(X @ params["W1"] + params["b1"])
    out = a1 @ params["W2"] + params["b2"]
    return np.mean(np.sum((out - y) ** 2, axis=1))


def backward(params, X, y):
    grads = {}
    for k, v in params.items():
        g = np.zeros_like(v)
        for i in np.ndindex(v.shape):
            p = {kk: vv.copy() for kk, vv in params.items()}
            p[k][i] += 1e-7
            up = _loss(p, X, y)
            p[k][i] -= 2e-7
            g[i] = (up - _loss(p, X, y)) / 2e-7
        grads[k] = g
    return grads
'''

COMPLEX_STEP = '''
def backward(params, X, y):
    grads = {}
    for k, v in params.items():
        g = np.zeros(v.shape)
        for i in np.ndindex(v.shape):
            p = {kk: vv.astype(np.complex128) for kk, vv in params.items()}
            p[k][i] += 1e-20j
            g[i] = forward(p, X, y).imag / 1e-20
        grads[k] = g
    return grads
'''

CALLS_GRADCHECK = '''
import gradcheck


def backward(params, X, y):
    return gradcheck.numerical_gradient(forward, params, X, y)
'''

DYNAMIC_IMPORT = '''
def backward(params, X, y):
    mod = __import__("gradcheck")
    return mod.numerical_gradient(forward, params, X, y)
'''

IMPORTS_TORCH = '''
from torch import autograd


def backward(params, X, y):
    return {}
'''

ALIASED = '''
def backward(params, X, y):
    return {k: v for k, v in params.items()}
'''

INFINITE = '''
def backward(params, X, y):
    while True:
        pass
'''

RAISES = '''
def backward(params, X, y):
    raise ValueError("not done yet")
'''


@pytest.mark.parametrize("body, why", [
    (NUMERIC_VIA_FORWARD, "called forward() 52 times"),
    (NUMERIC_INLINE, "computes the gradient numerically"),
    (COMPLEX_STEP, "complex"),
    (CALLS_GRADCHECK, "imports gradcheck"),
    (DYNAMIC_IMPORT, "__import__"),
    (IMPORTS_TORCH, "imports torch"),
    (ALIASED, "is (a view of) an input array"),
])
def test_cheats_are_refused(body, why, tmp_path):
    g = grade_in_process(_write(tmp_path / "cheat.py", _with_backward("tanh-one-minus-a", body)))
    assert (g.status, g.exit_code) == (ERROR, 2), str(g)
    assert why in str(g)


def test_changed_forward_is_refused(tmp_path):
    # the buggy backward of missing-mean is right for a loss summed over the batch: change the forward to that
    src = get_exercise("missing-mean").student_source()
    changed = src.replace("    return np.mean(np.sum((out - y) ** 2, axis=1))",
                          "    return np.sum((out - y) ** 2)")
    assert changed != src
    g = grade_file(_write(tmp_path / "m.py", changed))
    assert g.exit_code == 2 and "changed the forward" in g.message


def test_hard_coded_gradient_is_refused(tmp_path):
    ex = get_exercise("sigmoid-prime-of-z")
    ref = ex.reference()
    params, X, y = ref.make_inputs(0)
    grads = ref.backward(params, X, y)
    body = "def backward(params, X, y):\n    return {\n" + "".join(
        f"        {k!r}: np.array({np.asarray(v).tolist()!r}),\n" for k, v in grads.items()) + "    }\n"
    g = grade_file(_write(tmp_path / "h.py", _with_backward(ex.name, body)))
    assert g.exit_code == 2 and "shipped inputs only" in g.message, str(g)


def test_infinite_loop_times_out(tmp_path):
    g = grade_file(_write(tmp_path / "loop.py", _with_backward("factor-two", INFINITE)), timeout=3)
    assert g.exit_code == 2 and "did not finish within 3 s" in g.message
    assert g.seconds < 10
    top = _write(tmp_path / "loop_at_import.py", "EXERCISE = 'factor-two'\nwhile True:\n    pass\n")
    assert grade_file(top, timeout=2).exit_code == 2


@pytest.mark.parametrize("text, why", [
    ("EXERCISE = 'factor-two'\ndef backward(params, X, y)\n    return {}\n", "SyntaxError"),
    ("import numpy as np\n\ndef backward(params, X, y):\n    return {}\n", "which exercise"),
    ("EXERCISE = 'no-such-exercise'\n", "no exercise 'no-such-exercise'"),
    ("EXERCISE = 'factor-two'\nraise RuntimeError('boom')\n", "RuntimeError: boom"),
    ("EXERCISE = 'factor-two'\n", "no function forward()"),
])
def test_files_that_cannot_be_loaded(text, why, tmp_path):
    g = grade_file(_write(tmp_path / "broken.py", text))
    assert g.exit_code == 2 and why in str(g), str(g)


def test_a_backward_that_raises_is_still_wrong(tmp_path):
    g = grade_in_process(_write(tmp_path / "r.py", _with_backward("factor-two", RAISES)))
    assert g.exit_code == 1 and "ValueError: not done yet" in g.message


def test_operator_exercise_cheat_and_interface(tmp_path):
    numeric = '''
def f_vjp(inputs, dout):
    x = inputs["x"]
    dx = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = dict(inputs), dict(inputs)
        up["x"] = x.copy()
        up["x"][i] += 1e-3
        down["x"] = x.copy()
        down["x"][i] -= 1e-3
        dx[i] = np.sum(dout * (f(up) - f(down))) / 2e-3
    return {"x": dx}
'''
    g = grade_in_process(_write(tmp_path / "s.py", _with_backward("softmax-no-rowsum", numeric)))
    assert g.exit_code == 2 and "called f()" in g.message
    g = grade_in_process(_write(tmp_path / "t.py", _with_backward("softmax-no-rowsum", "def f_vjp(inputs, dout):\n"
                                                                  "    return [dout]\n")))
    assert g.exit_code == 2 and "not a dict" in g.message


def test_cli_grade_and_hint_ladder(tmp_path, capsys):
    ex = get_exercise("net-rnn-no-carry")
    path = _write(tmp_path / ex.filename(), ex.student_source())
    assert main(["teach", "--grade", path]) == 1
    out = capsys.readouterr().out
    assert "STILL WRONG" in out and "--hint 1" in out
    hints = []
    for level in (1, 2, 3):
        assert main(["teach", "--grade", path, "--hint", str(level)]) == 1
        out = capsys.readouterr().out
        assert f"hint {level}/3" in out
        hints.append(out.split(f"hint {level}/3", 1)[1])
        assert ex.marker not in out and "dh_next" not in out.split("hint")[-1]
    assert len(set(hints)) == 3
    assert main(["teach", "--grade", path, "--hint", "4"]) == 2
    assert main(["teach", "--grade", _write(tmp_path / "ok.py", ex.solution())]) == 0
    out = capsys.readouterr().out
    assert "FIXED" in out and "hint" not in out


def test_grade_class_report_and_gradebook(tmp_path, capsys):
    cls = tmp_path / "class"
    hostile = "<img src=x onerror=alert('x')>"  # a folder name: no slash
    a, b = get_exercise("tanh-one-minus-a"), get_exercise("factor-two")
    for student, files in {
        "alice": {a.filename(): a.solution(), b.filename(): b.student_source()},
        hostile: {a.filename(): a.student_source(), b.filename(): "EXERCISE = 'factor-two'\nthis is not python\n"},
        "=bob": {a.filename(): _with_backward(a.name, CALLS_GRADCHECK)},
    }.items():
        (cls / student).mkdir(parents=True)
        for name, text in files.items():
            (cls / student / name).write_text(text)
    out = tmp_path / "report"
    assert main(["teach", "--grade", str(cls), "--report", str(out), "--jobs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "graded 5 files of 3 students" in printed and "s per file" in printed
    with open(out / "gradebook.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["student", "exercise", "status", "max_rel_error", "seconds", "file", "message"]
    got = {(r["student"], r["exercise"]): r["status"] for r in rows}
    assert got == {
        ("alice", "tanh-one-minus-a"): "fixed", ("alice", "factor-two"): "wrong",
        (hostile, "tanh-one-minus-a"): "wrong", (hostile, "factor-two"): "error",
        ("'=bob", "tanh-one-minus-a"): "error", ("'=bob", "factor-two"): "missing",
    }
    assert all(float(r["seconds"]) >= 0 for r in rows)
    assert float(next(r for r in rows if r["status"] == "wrong")["max_rel_error"]) > 0
    page = (out / "index.html").read_text()
    assert hostile not in page and "<img" not in page and "&lt;img src=x onerror=alert(" in page
    assert os.path.exists(out / "gradebook.csv")


def test_grade_folder_needs_report(tmp_path):
    assert main(["teach", "--grade", str(tmp_path)]) == 2
    assert main(["teach", "--grade", str(tmp_path / "nothing.py")]) == 2


WRONG_KEYS = '''
def backward(params, X, y):
    return {"W1": np.zeros_like(params["W1"]), "b1": np.zeros((2, 2))}
'''


def test_wrong_keys_and_shapes_are_wrong_with_a_clear_message(tmp_path):
    g = grade_in_process(_write(tmp_path / "k.py", _with_backward("factor-two", WRONG_KEYS)))
    assert g.exit_code == 1
    text = str(g).lower()
    assert "lacks 'w2', 'b2'" in text, str(g)


def test_batch_size_written_as_a_number_is_wrong_not_cheating(tmp_path):
    src = get_exercise("missing-mean").solution().replace("    dout = 2 * (out - y) / n", "    dout = 2 * (out - y) / 6")
    g = grade_in_process(_write(tmp_path / "n.py", src))
    assert g.exit_code == 1 and "shipped batch size only" in g.message, str(g)


def test_grade_displays_in_a_notebook_escaped(tmp_path):
    from gradcheck.teach.grading import Grade

    page = Grade(str(tmp_path / "x.py"), ERROR, "cannot load the file: <b>boom</b>")._repr_html_()
    assert "&lt;b&gt;boom&lt;/b&gt;" in page and "<b>" not in page
    g = grade_in_process(_write(tmp_path / "w.py", get_exercise("factor-two").student_source()))
    page = g._repr_html_()
    assert page.startswith("<pre>factor-two: STILL WRONG") and len(page) > len(str(g))
