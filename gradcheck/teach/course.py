"""A course in a command: every exercise plus a README for students (``gradcheck teach --course
DIR``), and a whole class graded into one HTML report and a CSV gradebook (``gradcheck teach
--grade DIR --report OUT``)."""
from __future__ import annotations

import csv
import math
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gradcheck.teach.exercises import EXERCISES, Exercise, write_exercise
from gradcheck.teach.grading import DEFAULT_TIMEOUT, ERROR, FIXED, MISSING, WRONG, Grade, grade_file

README = """\
# Backprop exercises

Each file here is a small, self-contained Python program (numpy only): a network or an operator
with a forward pass that is right and a backward pass that is wrong. Fix the backward pass
between the two banner lines

    # ---- YOUR WORK: fix ... below ----
    # ---- end of your work ----

and leave the rest as it is.

## Working on an exercise

    python FILE.py                               # runs it: the loss and the gradients' shapes
    gradcheck teach --grade FILE.py              # grades it
    gradcheck teach --grade FILE.py --hint 1     # ... with a hint: 1 where, 2 what kind, 3 the relation that holds

`--grade` exits with 0 when your backward is right, 1 while it is still wrong (it then shows the
worst tensor and element, your value next to the numerical one, and what kind of bug it looks
like), and 2 when the file cannot be graded.

## How grading works

The grader compares the gradient your backward returns with a numerical gradient of the
exercise's loss (finite differences with an error bound for every element), on the inputs of
`make_inputs(0)` and on fresh inputs (other seeds, another batch size), in the exercise's dtype.
A point where the function has a kink (ReLU at 0) and float32 rounding are allowed for: correct
code passes. A file cannot be graded (exit 2) when it does not load, when it changes the forward
pass (the grader keeps its own copy of it and compares), when it imports anything but numpy and
a few standard modules (`math`, `functools`, ...), when it computes the gradient numerically (by
calling the forward pass again and again, or with complex numbers), when it returns an input
array as a gradient, when it is right only for the inputs of `make_inputs(0)`, or when it runs
longer than the time limit.

## The exercises

| file | exercise | topic | dtype |
|---|---|---|---|
$rows
"""


def write_course(out_dir: str, *, force: bool = False, exercises: tuple[Exercise, ...] = EXERCISES) -> list[str]:
    """Write every exercise's student file and README.md into ``out_dir``; existing files are
    refused (FileExistsError, nothing written) unless ``force``. Returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    targets = [os.path.join(out_dir, e.filename()) for e in exercises] + [os.path.join(out_dir, "README.md")]
    existing = [p for p in targets if os.path.exists(p)]
    if existing and not force:
        raise FileExistsError(f"{len(existing)} file(s) exist already, e.g. {existing[0]}; pass --force to overwrite")
    paths = [write_exercise(e, out_dir, force=True) for e in exercises]
    rows = "\n".join(f"| {e.filename()} | {e.name}: {e.title} | {e.topic} | {e.dtype} |" for e in exercises)
    readme = os.path.join(out_dir, "README.md")
    with open(readme, "w", encoding="utf-8") as fh:
        fh.write(README.replace("$rows", rows))
    return [*paths, readme]


# -- grading a class --------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the gradebook."""

    student: str
    exercise: str
    status: str             # fixed | wrong | error | missing
    max_rel_error: float = math.nan
    seconds: float = 0.0
    file: str = ""
    message: str = ""
    details: tuple[str, ...] = ()


def _by_file_name() -> dict[str, str]:
    return {e.filename(): e.name for e in EXERCISES}


def student_folders(folder: str) -> list[tuple[str, str]]:
    """(student, path): one per subfolder of ``folder``; ``folder`` itself when it has no subfolder."""
    subs = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))
    if not subs:
        return [(os.path.basename(os.path.abspath(folder)), folder)]
    return [(d, os.path.join(folder, d)) for d in subs]


def _files(folder: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if f.endswith(".py")]
    return found


def grade_class(folder: str, *, timeout: float = DEFAULT_TIMEOUT, jobs: int = 1,
                progress: Callable[[str, str, Grade], None] | None = None) -> list[Row]:
    """Grade every ``.py`` file in every student's folder; an exercise some student handed in and
    another did not is a ``missing`` row for the latter (a file that is no known exercise is graded,
    as an error, and is missing for nobody)."""
    names = _by_file_name()
    rows: list[Row] = []
    work = [(student, path, f) for student, path in student_folders(folder) for f in _files(path)]

    def one(item: tuple[str, str, str]) -> Grade:
        g = grade_file(item[2], timeout=timeout)
        if progress is not None:
            progress(item[0], item[2], g)
        return g

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # each file in its own process anyway
        grades = list(pool.map(one, work))
    for (student, path, f), g in zip(work, grades):
        exercise = g.exercise or names.get(os.path.basename(f), os.path.relpath(f, path))
        rows.append(Row(student, exercise, g.status, g.max_rel_error, g.seconds, os.path.relpath(f, folder),
                        g.message, tuple(g.details)))
    handed = {r.exercise for r in rows}
    expected = [e.name for e in EXERCISES if e.name in handed]  # a stray file is no exercise for the others
    for student, _ in student_folders(folder):
        have = {r.exercise for r in rows if r.student == student}
        rows += [Row(student, n, MISSING, message="no file for this exercise") for n in expected if n not in have]
    order = {n: k for k, n in enumerate(expected)}
    rows.sort(key=lambda r: (r.student, order.get(r.exercise, len(order)), r.file))
    return rows


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    return "'" + text if text.startswith(_FORMULA) else text


def write_gradebook(rows: list[Row], path: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".csv.tmp")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["student", "exercise", "status", "max_rel_error", "seconds", "file", "message"])
        for r in rows:
            err = "" if math.isnan(r.max_rel_error) else f"{r.max_rel_error:.3g}"
            w.writerow([_cell(r.student), _cell(r.exercise), r.status, err, f"{r.seconds:.2f}", _cell(r.file),
                        _cell(r.message)])
    os.replace(tmp, path)


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
td.fixed { background: #d9f2d9; } td.wrong { background: #fde2c8; }
td.error { background: #f8c9c9; } td.missing { background: #eee; color: #777; }
pre { margin: 0; white-space: pre-wrap; font-size: 85%; }
</style></head><body>
<h1>{{ title }}</h1>
<p>{{ n_students }} students, {{ exercises|length }} exercises, {{ n_files }} files graded in {{ "%.1f"|format(seconds) }} s:
{% for s, n in counts %}{{ n }} {{ s }}{% if not loop.last %}, {% endif %}{% endfor %}.</p>
<table><thead><tr><th>student</th>{% for e in exercises %}<th>{{ e }}</th>{% endfor %}<th>fixed</th></tr></thead>
<tbody>{% for s in students %}<tr><td>{{ s }}</td>
{% for e in exercises %}{% set r = grid.get((s, e)) %}{% set st = r.status if r else 'missing' %}
<td class="{{ st }}">{{ st }}</td>{% endfor %}
<td>{{ fixed[s] }}/{{ exercises|length }}</td></tr>{% endfor %}</tbody></table>
<h2>Every file</h2>
<table><thead><tr><th>student</th><th>exercise</th><th>status</th><th>max rel. error</th><th>seconds</th>
<th>file</th><th>why</th></tr></thead>
<tbody>{% for r in rows %}<tr><td>{{ r.student }}</td><td>{{ r.exercise }}</td><td class="{{ r.status }}">{{ r.status }}</td>
<td>{{ err(r.max_rel_error) }}</td><td>{{ "%.2f"|format(r.seconds) }}</td><td>{{ r.file }}</td>
<td>{{ r.message }}{% if r.details %}<pre>{{ r.details|join("\\n") }}</pre>{% endif %}</td></tr>{% endfor %}</tbody></table>
</body></html>
"""


def write_report(rows: list[Row], out_dir: str, *, seconds: float = 0.0, title: str = "gradcheck: exercises graded") -> str:
    """OUT/index.html (Jinja2, autoescaped: names and messages are the students' data) and
    OUT/gradebook.csv. Returns the HTML path."""
    import jinja2  # noqa: PLC0415 - a core dependency, imported when a report is written

    os.makedirs(out_dir, exist_ok=True)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    students = sorted({r.student for r in rows})
    exercises = list(dict.fromkeys(r.exercise for r in rows))
    grid: dict[tuple[str, str], Row] = {}
    for r in rows:  # several files for one exercise: the best one counts
        best = grid.get((r.student, r.exercise))
        if best is None or _RANK[r.status] < _RANK[best.status]:
            grid[(r.student, r.exercise)] = r
    counts = [(s, sum(r.status == s for r in rows)) for s in (FIXED, WRONG, ERROR, MISSING)]
    html = env.from_string(_HTML).render(
        title=title, rows=rows, students=students, exercises=exercises, grid=grid, counts=counts,
        n_students=len(students), n_files=sum(r.status != MISSING for r in rows), seconds=seconds,
        fixed={s: sum(grid[(s, e)].status == FIXED for e in exercises if (s, e) in grid) for s in students},
        err=lambda x: "" if math.isnan(x) else f"{x:.3g}")
    path = os.path.join(out_dir, "index.html")
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".html.tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(html)
    os.replace(tmp, path)
    write_gradebook(rows, os.path.join(out_dir, "gradebook.csv"))
    return path


_RANK = {FIXED: 0, WRONG: 1, ERROR: 2, MISSING: 3}


def grade_class_report(folder: str, out_dir: str, *, timeout: float = DEFAULT_TIMEOUT, jobs: int = 1,
                       progress: Callable[[str, str, Grade], None] | None = None) -> tuple[list[Row], str, float]:
    """Grade the class in ``folder`` and write the report into ``out_dir``: (rows, html path, seconds)."""
    t0 = time.perf_counter()
    rows = grade_class(folder, timeout=timeout, jobs=jobs, progress=progress)
    seconds = time.perf_counter() - t0
    return rows, write_report(rows, out_dir, seconds=seconds), seconds
