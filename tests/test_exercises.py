"""Exercises (``gradcheck teach --exercise NAME``, ``--course DIR``): the student files are
self-contained, carry the bug and nothing that gives the fix away, and run as scripts."""
from __future__ import annotations

import ast
import contextlib
import io
import os

import pytest

from gradcheck.cli import main
from gradcheck.teach import get_lesson
from gradcheck.teach.course import write_course
from gradcheck.teach.exercises import BEGIN, END, EXERCISES, get_exercise, write_exercise
from gradcheck.teach.grading import exercise_name, scan

NAMES = [e.name for e in EXERCISES]


def test_at_least_twelve_exercises_of_every_kind():
    assert len(EXERCISES) >= 12
    assert len(set(NAMES)) == len(NAMES)
    families = {e.family for e in EXERCISES}
    assert families == {"network", "layer", "operator"}
    assert any(e.dtype == "float32" and e.kind == "network" for e in EXERCISES)
    assert any(e.dtype == "float32" and e.kind == "operator" for e in EXERCISES)
    assert any("np.maximum(z1, 0)" in e.source and "X[0] = 0.0" in e.source for e in EXERCISES)  # ReLU kinks
    layer_words = {"conv2d", "EPS", "states", "np.add.at"}
    assert all(any(w in e.source for e in EXERCISES if e.family == "layer") for w in layer_words)


@pytest.mark.parametrize("name", NAMES)
def test_student_file_is_self_contained_and_gives_nothing_away(name):
    ex = get_exercise(name)
    text = ex.student_source()
    tree = ast.parse(text)
    assert scan(tree) == []                         # numpy only, nothing the grader refuses
    assert exercise_name(tree) == name
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imports == {"numpy"} and not any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))
    assert text.count(BEGIN.split(":")[0]) == 1 and text.count(END) == 1
    assert text.index(BEGIN.split(":")[0]) < text.index(f"def {ex.function}(") < text.index(END)
    assert ex.marker in ex.solution() and ex.marker not in text      # the fix's distinctive line is absent
    for right, wrong in ex.replacements:
        assert ex.solution().count(right) == 1 and right not in text and (not wrong or wrong in text)
    assert f"--grade {ex.filename()}" in text
    lesson = get_lesson(ex.lesson) if ex.lesson else None
    if lesson is not None:
        assert lesson.why not in text and lesson.fix_note not in text
        for sentence in lesson.fix_note.split(". ") + lesson.why.split(". "):
            assert len(sentence) < 25 or sentence not in text
    for h in ex.hints:                              # the hints never print the code of the fix
        assert ex.marker.strip() not in h
        assert all(line.strip() not in h for right, _ in ex.replacements for line in right.splitlines() if line.strip())


@pytest.mark.parametrize("name", NAMES)
def test_student_file_runs_as_a_script(name):
    ex = get_exercise(name)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(ex.student_source(), ex.filename(), "exec"), {"__name__": "__main__"})
    assert out.getvalue().startswith(("loss ", "output shape"))


def test_exercise_command_writes_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["teach", "--exercise", "tanh-one-minus-a", "--out", str(tmp_path)]) == 0
    path = tmp_path / "tanh_one_minus_a.py"
    assert path.read_text() == get_exercise("tanh-one-minus-a").student_source()
    path.write_text("# my work\n")
    assert main(["teach", "--exercise", "tanh-one-minus-a", "--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err and path.read_text() == "# my work\n"
    assert main(["teach", "--exercise", "tanh-one-minus-a", "--out", str(tmp_path), "--force"]) == 0
    assert "def backward" in path.read_text()
    assert main(["teach", "--exercise", "no-such-exercise"]) == 2
    with pytest.raises(FileExistsError):
        write_exercise(get_exercise("tanh-one-minus-a"), str(tmp_path))


def test_exercise_defaults_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["teach", "--exercise", "factor-two"]) == 0
    assert (tmp_path / "factor_two.py").exists()


def test_exercises_list(capsys):
    assert main(["teach", "--exercises"]) == 0
    out = capsys.readouterr().out
    assert f"{len(EXERCISES)} exercises" in out and all(n in out for n in NAMES)


def test_course_writes_every_exercise_and_a_readme(tmp_path, capsys):
    out = tmp_path / "course"
    assert main(["teach", "--course", str(out)]) == 0
    files = sorted(os.listdir(out))
    assert files == sorted([e.filename() for e in EXERCISES] + ["README.md"])
    readme = (out / "README.md").read_text()
    assert "gradcheck teach --grade" in readme and "--hint" in readme
    assert all(e.filename() in readme and e.name in readme for e in EXERCISES)
    for e in EXERCISES:  # the course holds the student files, never a solution
        assert (out / e.filename()).read_text() == e.student_source()
    assert main(["teach", "--course", str(out)]) == 2            # refuses to overwrite
    assert main(["teach", "--course", str(out), "--force"]) == 0
    assert len(write_course(str(tmp_path / "again"))) == len(EXERCISES) + 1


@pytest.mark.parametrize("argv", [
    ["teach", "--exercise", "factor-two", "--course", "x"],
    ["teach", "--exercise", "factor-two", "--hint", "1"],
    ["teach", "--out", "x"],
    ["teach", "--course", "x", "--report", "y"],
    ["teach", "tanh-one-minus-a", "--exercises"],
])
def test_exercise_usage_errors(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
