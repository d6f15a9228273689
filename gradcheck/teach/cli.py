"""``gradcheck teach``: run lessons on classic derivative bugs (of whole networks, checked with
``check``; of single operators' backward passes, checked with ``check_vjp``; and of layer kinds'
backward passes, checked with ``check`` on a network that contains the layer).

    gradcheck teach --list                    the lessons, as a table
    gradcheck teach NAME [--report DIR]       one lesson: wrong vs right code, verdict, diagnosis, fix
    gradcheck teach --quiz [NAME] [--seed N] [--answer X]
                                              a failing result; which bug is it? (exit 0 right, 1 wrong)
    gradcheck teach --check-all [--report DIR]
                                              every lesson; exit 1 unless all behave as expected
    gradcheck teach --exercises               the exercises, as a table
    gradcheck teach --exercise NAME [--out DIR] [--force]
                                              write NAME's student file (the bug in place) into DIR
    gradcheck teach --grade FILE [--hint 1..3] grade a student's file (exit 0 fixed, 1 wrong, 2 cannot grade)
    gradcheck teach --course DIR [--force]    every exercise and a README for students
    gradcheck teach --grade DIR --report OUT  grade a class (one subfolder per student): OUT/index.html,
                                              OUT/gradebook.csv

Exit codes: 0 as expected / right answer, 1 not as expected / wrong answer, 2 usage error or no
answer available (``--quiz`` never waits on a stdin that is not a terminal).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import textwrap
import time
from collections.abc import Sequence

from gradcheck.teach.catalog import LESSONS, AnyLesson, LayerLesson, OperatorLesson, get_lesson
from gradcheck.teach.run import Outcome, run_lesson

N_CHOICES = 4


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="the lesson to run (see --list)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="list the lessons")
    mode.add_argument("--quiz", action="store_true", help="show a failing result and ask which bug it is")
    mode.add_argument("--check-all", action="store_true",
                      help="run every lesson; print 'caught X/N, localized Y/N, diagnosed Z/N'")
    parser.add_argument("--answer", metavar="X", help="--quiz answer: a choice number or a lesson name (no prompt)")
    parser.add_argument("--seed", type=int, default=None, help="--quiz: which lesson and choices (default: random)")
    parser.add_argument("--report", metavar="DIR", help="also write the HTML report (bug and fix) into DIR; "
                        "with --grade DIR: the class's index.html and gradebook.csv")
    parser.add_argument("--symbolic", action="store_true",
                        help="also run the SymPy oracle where the lesson's network is the spec's network")
    ex = parser.add_argument_group("exercises")
    ex.add_argument("--exercises", action="store_true", help="list the exercises")
    ex.add_argument("--exercise", metavar="NAME", help="write exercise NAME's student file (see --exercises)")
    ex.add_argument("--out", metavar="DIR", default=None, help="--exercise: where to write it (default: .)")
    ex.add_argument("--force", action="store_true", help="--exercise, --course: overwrite existing files")
    ex.add_argument("--grade", metavar="PATH",
                    help="grade a student's exercise file; a folder (one subfolder per student) with --report OUT")
    ex.add_argument("--hint", type=int, metavar="N", default=None,
                    help="--grade FILE: hint N (1 where, 2 what kind, 3 the relation that holds)")
    ex.add_argument("--course", metavar="DIR", help="write every exercise and a README for students into DIR")
    ex.add_argument("--timeout", type=float, default=None, metavar="S",
                    help="--grade: seconds allowed per file (default 60)")
    ex.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="--grade DIR: files graded at the same time (default 1)")


def run(args: argparse.Namespace) -> int:
    exercise_modes = [m for m in ("exercises", "exercise", "grade", "course") if getattr(args, m, None)]
    if exercise_modes:
        return _exercise_command(args, exercise_modes)
    for flag in ("out", "hint", "timeout", "jobs"):
        if getattr(args, flag, None) is not None:
            return _usage(f"--{flag} goes with --exercise, --grade or --course")
    if args.answer is not None and not args.quiz:
        return _usage("--answer is only for --quiz")
    if args.seed is not None and not args.quiz:
        return _usage("--seed is only for --quiz")
    if args.name is not None and (args.list or args.check_all):
        return _usage(f"NAME={args.name!r} does not go with {'--list' if args.list else '--check-all'}")
    lesson = None
    if args.name is not None:
        try:
            lesson = get_lesson(args.name)
        except ValueError as exc:
            return _usage(str(exc))
    if args.list:
        return list_lessons()
    if args.check_all:
        return check_all(args.report)
    if args.quiz:
        return quiz(lesson, answer=args.answer, seed=args.seed)
    if lesson is None:
        list_lessons()
        print("\nrun one with `gradcheck teach NAME`; `--quiz`, `--check-all` for more")
        return 0
    return show_lesson(lesson, report=args.report, symbolic=args.symbolic)


def _usage(message: str) -> int:
    print(f"gradcheck teach: {message}", file=sys.stderr)
    return 2


# -- output --------------------------------------------------------------------------------------
def _rich_console():
    """A rich Console when rich is installed and stdout is a terminal, else None (plain text)."""
    if not sys.stdout.isatty():
        return None
    try:
        from rich.console import Console  # noqa: PLC0415 - imported when the command runs
    except ImportError:
        return None
    return Console()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None,
                console=None) -> None:
    """A table: rich's when available on a terminal (or ``console`` given), else aligned plain text."""
    console = console if console is not None else _rich_console()
    if console is not None:
        from rich.table import Table  # noqa: PLC0415 - imported when the command runs
        table = Table(title=title)
        for h in headers:
            table.add_column(h, overflow="fold")
        for row in rows:
            table.add_row(*[str(x) for x in row])
        console.print(table)
        return
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    if title:
        print(title)
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def _wrap(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, width=100, initial_indent=indent, subsequent_indent=indent)


def _indent(text: str, indent: str = "  ") -> str:
    return textwrap.indent(text, indent)


def _expected(lesson: AnyLesson) -> str:
    if isinstance(lesson, (OperatorLesson, LayerLesson)):
        return lesson.expected or "no pattern"
    return "passes (not a bug)" if lesson.passes else lesson.expected


def _says(lesson: AnyLesson) -> str:
    return lesson.expects() if isinstance(lesson, (OperatorLesson, LayerLesson)) else _expected(lesson)


# -- --list ----------------------------------------------------------------------------------------
def list_lessons() -> int:
    rows = [(str(k), l.name, l.topic, l.title, _says(l)) for k, l in enumerate(LESSONS, 1)]
    print_table(("#", "lesson", "topic", "title", "gradcheck says"), rows, title=f"{len(LESSONS)} lessons")
    return 0


# -- one lesson ------------------------------------------------------------------------------------
def show_code(lesson: AnyLesson) -> None:
    labels = ("one way", "the other") if lesson.passes else ("wrong", "right")
    if isinstance(lesson, OperatorLesson):
        print(f"The code ({lesson.where()} vs {lesson.where(fixed=True)}, gradcheck/teach/operators.py):")
    elif isinstance(lesson, LayerLesson):
        print(f"The code ({lesson.where()} vs {lesson.where(fixed=True)}, gradcheck/teach/layer_bugs.py):")
    else:
        print(f"The code ({lesson.where()} vs {lesson.where(fixed=True)}):")
    for wrong, right in lesson.diff():
        for line in wrong or ["(missing)"]:
            print(f"  - {labels[0]:>9}:  {line}")
        for line in right or ["(missing)"]:
            print(f"  + {labels[1]:>9}:  {line}")
    whole = "wrong backward" if isinstance(lesson, (OperatorLesson, LayerLesson)) else \
        "first version" if lesson.passes else "wrong method"
    print(f"\n  the whole {whole}:")
    print(_indent(lesson.source().rstrip(), "    "))


def _derivation(lesson: AnyLesson) -> str | None:
    if lesson.derivation is None:
        return None
    try:
        return lesson.derivation()
    except Exception as exc:  # SymPy or gradcheck.symbolic missing or failing: the lesson goes on
        return f"(SymPy derivation unavailable: {type(exc).__name__}: {exc})"


def verdict_lines(outcome: Outcome) -> list[str]:
    lesson, r = outcome.lesson, outcome.result
    yes = {True: "as expected", False: "NOT as expected"}
    lines = []
    if lesson.passes:
        lines.append(f"verdict: {'passed' if r.passed else 'FAILED'} ({yes[outcome.caught]}: correct code at a "
                     "non-differentiable point or at float32 resolution)")
        if r.kinks:
            lines.append(f"kinks: {len(r.kinks)} element(s) left out of the verdict: "
                         f"{', '.join(e.label() for e in r.kinks[:6])} ({yes[outcome.localized]})")
    else:
        lines.append(f"verdict: {'FAILED' if not r.passed else 'passed'} ({'caught' if outcome.caught else 'MISSED'})")
        w = r.worst
        if isinstance(lesson, OperatorLesson):
            if w is None:
                lines.append(f"no worst element (expected {lesson.pair}: {yes[outcome.localized]})")
            else:
                pair = f"output {w.output}, input {w.input}" if w.output is not None else f"input {w.input}"
                lines.append(f"worst element {w.label()} ({pair}): claimed {w.claimed:.9g}, numerical "
                             f"{w.numerical:.9g}; error {w.rel_error:.3g} vs tolerance {w.tolerance:.3g} "
                             f"(expected {lesson.pair}: {yes[outcome.localized]})")
        else:
            where = f"worst element {w.label()}: claimed {w.claimed:.9g}, numerical {w.numerical:.9g}" if w else \
                f"worst tensor {r.worst_param}"
            if isinstance(lesson, LayerLesson):
                failing = [name for name, t in r.tensors.items() if not t.passed]
                lines.append(f"{where}")
                lines.append(f"failing tensors: {', '.join(failing) or 'none'} (expected among "
                             f"{', '.join(lesson.tensors)}: {yes[outcome.localized]})")
            else:
                want = f"expected in {', '.join(lesson.tensors)}" if lesson.tensors else "any tensor"
                lines.append(f"{where} ({want}: {yes[outcome.localized]})")
    d = r.diagnosis
    if d is not None:
        lines.append(f"diagnosis: {d.pattern} (confidence {d.confidence}; expected {_expected(lesson)}: "
                     f"{yes[outcome.diagnosed]})")
        lines.append(_wrap(d.message, "  "))
    elif r.problems:
        lines.append(f"found before comparing: {r.problems[0].kind} (expected {_expected(lesson)}: "
                     f"{yes[outcome.diagnosed]})")
        lines.append(_wrap(r.problems[0].message, "  "))
    else:
        lines.append(f"diagnosis: none (expected {_expected(lesson)}: {yes[outcome.diagnosed]})")
    return lines


def show_lesson(lesson: AnyLesson, *, report: str | None = None, symbolic: bool = False) -> int:
    if isinstance(lesson, OperatorLesson):
        return show_operator_lesson(lesson, report=report, symbolic=symbolic)
    k = LESSONS.index(lesson) + 1
    case = lesson.case()
    print(f"== lesson {k}/{len(LESSONS)}: {lesson.name} ==")
    print(lesson.title)
    print(f"topic: {lesson.topic} | network: {case.spec.label()}")
    if isinstance(lesson, LayerLesson):
        print(f"the reference network with the {lesson.kind} layer's backward replaced: "
              f"Network(spec, layers={{{lesson.kind!r}: LayerKind(..., backward={lesson.where()})}})")
    print()
    show_code(lesson)
    print("\nWhy:")
    print(_wrap(lesson.why))
    deriv = _derivation(lesson)
    if deriv:
        print(_indent(deriv))
    if lesson.demo is not None:
        print("\nExperiment:")
        print(_wrap(lesson.demo()))
    outcome = run_lesson(lesson, symbolic=symbolic)
    print(f"\ngradcheck on the {'first version' if lesson.passes else 'wrong code'}:")
    print(_indent(str(outcome.result)))
    print()
    for line in verdict_lines(outcome):
        print(line)
    fixed = run_lesson(lesson, fixed=True, symbolic=symbolic)
    print(f"\nThe fix: {lesson.fix_note}")
    print(f"gradcheck on the {'other version' if lesson.passes else 'fixed code'}: "
          f"{'passed' if fixed.result.passed else 'FAILED'} (max relative error {fixed.result.max_rel_error:.2e}, "
          f"tolerance {fixed.result.tolerance:.2e})")
    if isinstance(lesson, LayerLesson) and lesson.twin:
        print(f"The same bug in the operator alone, checked with check_vjp: gradcheck teach {lesson.twin}")
    code = 0 if outcome.ok and fixed.result.passed else 1
    if report:
        code = max(code, _write_report([outcome.result, fixed.result], report, f"gradcheck lesson: {lesson.name}"))
    return code


def _brief(o: Outcome) -> str:
    """One line: an operator lesson's verdict in one dtype."""
    yes = {True: "as expected", False: "NOT as expected"}
    r, w = o.result, o.result.worst
    return (f"{'FAILED' if not r.passed else 'passed'} ({'caught' if o.caught else 'MISSED'}), worst element "
            f"{w.label() if w else r.worst_param} ({yes[o.localized]}), diagnosis {o.pattern or 'none'} "
            f"({yes[o.diagnosed]})")


def _fix_line(o: Outcome) -> str:
    r = o.result
    return (f"{'passed' if r.passed else 'FAILED'} (max relative error {r.max_rel_error:.2e}, "
            f"tolerance {r.tolerance:.2e})")


def show_operator_lesson(lesson: OperatorLesson, *, report: str | None = None, symbolic: bool = False) -> int:
    k = LESSONS.index(lesson) + 1
    op = lesson.operator
    print(f"== lesson {k}/{len(LESSONS)}: {lesson.name} ==")
    print(lesson.title)
    print(f"topic: {lesson.topic} | operator: {op.name}, {op.description}\n")
    show_code(lesson)
    print("\nWhy:")
    print(_wrap(lesson.why))
    if symbolic:
        print("\n(--symbolic: the SymPy oracle is for network lessons; not run)")
    outcome = run_lesson(lesson)
    print(f"\ncheck_vjp(f, f_vjp, inputs) on the wrong backward ({outcome.dtype}):")
    print(_indent(str(outcome.result)))
    print()
    for line in verdict_lines(outcome):
        print(line)
    others = [run_lesson(lesson, dtype=d) for d in lesson.dtypes[1:]]
    for o in others:
        print(f"in {o.dtype}: {_brief(o)}")
    fixes = [run_lesson(lesson, fixed=True, dtype=d) for d in lesson.dtypes]
    print(f"\nThe fix: {lesson.fix_note}")
    for f in fixes:
        print(f"gradcheck on the fixed code ({f.dtype}): {_fix_line(f)}")
    ok = outcome.ok and all(o.ok for o in others) and all(f.result.passed for f in fixes)
    code = 0 if ok else 1
    if report:
        code = max(code, _write_report([outcome.result, fixes[0].result], report, f"gradcheck lesson: {lesson.name}"))
    return code


def _write_report(results, out_dir: str, title: str) -> int:
    try:
        from gradcheck.report import write  # noqa: PLC0415 - imported when the command runs
    except ImportError as exc:
        print(f"gradcheck teach: report not written ({exc})", file=sys.stderr)
        return 2
    path = write(results, out_dir, title=title)
    print(f"report: {path}")
    return 0


# -- --check-all -----------------------------------------------------------------------------------
def _dtypes_failing(outcomes: list[Outcome], what: str) -> str:
    """`` (float32)``: the dtypes in which ``what`` (caught, localized, ...) did not hold, if several ran."""
    bad = [o.dtype or "" for o in outcomes if not getattr(o, what)]
    return f" ({', '.join(bad)})" if bad and len(outcomes) > 1 else ""


def check_all(report: str | None = None) -> int:
    """Every lesson: the bug behaves as the lesson says (an operator lesson: in each of its dtypes,
    float64 and float32) and the fix passes (likewise)."""
    rows, results = [], []
    counts = {"caught": 0, "localized": 0, "diagnosed": 0, "fixed": 0}
    t0 = time.perf_counter()
    mark = {True: "yes", False: "NO"}
    for lesson in LESSONS:
        dtypes: list[str | None] = list(lesson.dtypes) if isinstance(lesson, OperatorLesson) else [None]
        runs = [run_lesson(lesson, dtype=d) for d in dtypes]
        fixes = [run_lesson(lesson, fixed=True, dtype=d) for d in dtypes]
        o = runs[0]
        results.append(o.result)
        verdict = {what: all(getattr(r, what) for r in runs) for what in ("caught", "localized", "diagnosed")}
        fixed = all(f.result.passed for f in fixes)
        for what, value in (*verdict.items(), ("fixed", fixed)):
            counts[what] += value
        if lesson.passes:
            where = "kinks in " + (",".join(sorted({e.param for e in o.result.kinks})) or "-")
        else:
            where = str(o.result.worst_param)
        caught = "passes" if lesson.passes and verdict["caught"] else mark[verdict["caught"]]
        rows.append((lesson.name, caught + _dtypes_failing(runs, "caught"),
                     f"{where} {mark[verdict['localized']]}{_dtypes_failing(runs, 'localized')}",
                     f"{o.pattern or '-'} {mark[verdict['diagnosed']]}{_dtypes_failing(runs, 'diagnosed')}",
                     mark[fixed] + ("" if fixed or len(fixes) == 1 else
                                    " (" + ", ".join(f.dtype or "" for f in fixes if not f.result.passed) + ")"),
                     ", ".join(d or o.result.dtype for d in dtypes)))
    print_table(("lesson", "caught", "worst tensor", "named", "fix passes", "dtype"), rows)
    n = len(LESSONS)
    n_op = sum(isinstance(lesson, OperatorLesson) for lesson in LESSONS)
    n_layer = sum(isinstance(lesson, LayerLesson) for lesson in LESSONS)
    print(f"caught {counts['caught']}/{n}, localized {counts['localized']}/{n}, diagnosed {counts['diagnosed']}/{n}, "
          f"fixes pass {counts['fixed']}/{n} ({n - n_op - n_layer} network lessons, {n_layer} layer lessons, "
          f"{n_op} operator lessons checked in float64 and float32; {time.perf_counter() - t0:.1f} s)")
    code = 0 if all(v == n for v in counts.values()) else 1
    if report:
        code = max(code, _write_report(results, report, "gradcheck lessons"))
    return code


# -- --quiz ----------------------------------------------------------------------------------------
def quiz_choices(lesson: AnyLesson, rng: random.Random) -> list[AnyLesson]:
    """The lesson and N_CHOICES - 1 distractors of the same kind (network, operator or layer),
    preferring ones gradcheck names the same way; for a layer lesson, first those whose networks
    share the most parameter names with its own (the names are in the result the quiz shows)."""
    others = [l for l in LESSONS if l is not lesson and not l.passes and type(l) is type(lesson)]
    if isinstance(lesson, LayerLesson):
        mine = set(lesson.case().spec.param_shapes())

        def key(other: AnyLesson) -> tuple[int, bool]:
            assert isinstance(other, LayerLesson)
            return -len(mine & set(other.case().spec.param_shapes())), other.expected != lesson.expected
        rng.shuffle(others)
        others.sort(key=key)
        alike: list[AnyLesson] = [lesson, *others[: N_CHOICES - 1]]
        rng.shuffle(alike)
        return alike
    same = [l for l in others if l.expected == lesson.expected]
    rest = [l for l in others if l.expected != lesson.expected]
    rng.shuffle(same)
    rng.shuffle(rest)
    choices = [lesson] + (same + rest)[: N_CHOICES - 1]
    rng.shuffle(choices)
    return choices


def _parse_answer(answer: str, choices: list[AnyLesson]) -> AnyLesson | None:
    a = answer.strip().lower()
    if a.isdigit() and 1 <= int(a) <= len(choices):
        return choices[int(a) - 1]
    if len(a) == 1 and "a" <= a < chr(ord("a") + len(choices)):
        return choices[ord(a) - ord("a")]
    return next((l for l in choices if l.name == a), None)


def quiz(lesson: AnyLesson | None = None, *, answer: str | None = None, seed: int | None = None) -> int:
    seed = seed if seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    if lesson is None:
        lesson = rng.choice([l for l in LESSONS if not l.passes])
    elif lesson.passes:
        return _usage(f"lesson {lesson.name!r} passes the check: nothing to quiz on")
    choices = quiz_choices(lesson, rng)
    outcome = run_lesson(lesson, name="the code under test")
    if isinstance(lesson, OperatorLesson):
        shapes = ", ".join(f"{k} {tuple(v)}" for k, v in (outcome.result.operator or {}).get("inputs", {}).items())
        print(f"Quiz (seed {seed}): this backward pass (vjp) of an operator with inputs {shapes} "
              f"({outcome.dtype}) fails check_vjp.\n")
    elif isinstance(lesson, LayerLesson):
        spec = lesson.case().spec
        # the shapes only: the parameter names in the result say which kinds the network has
        print(f"Quiz (seed {seed}): this backward pass of a network with input {spec.input_shape} per example and "
              f"{len(spec.layers)} layers ({spec.dtype}, batch {spec.batch}) fails gradcheck.\n")
    else:
        spec = lesson.case().spec
        shape = "-".join(str(w) for w in spec.widths)
        # the layer sizes only: the activations (and the spec's label) would give the answer away
        print(f"Quiz (seed {seed}): this backward pass of a {shape} network ({spec.dtype}, batch {spec.batch}) "
              "fails gradcheck.\n")
    print(_indent(str(outcome.result)))
    print("\nWhich bug is it?")
    for k, c in enumerate(choices, 1):
        print(f"  {k}) {c.title}  [{c.name}]")
    if answer is None:
        if not sys.stdin.isatty():
            print("\nno answer: stdin is not a terminal; pass --answer N (or a lesson name)", file=sys.stderr)
            return 2
        picked = None
        while picked is None:  # a typo asks again; end of input (Ctrl-D) ends the quiz
            try:
                answer = input(f"your answer [1-{len(choices)}]: ")
            except EOFError:
                print("\nno answer given", file=sys.stderr)
                return 2
            picked = _parse_answer(answer, choices)
            if picked is None:
                print(f"  {answer.strip()!r} is not one of 1-{len(choices)} or a listed lesson name; try again")
    assert answer is not None  # given, or read by the loop above
    picked = _parse_answer(answer, choices)
    if picked is None:
        print(f"answer {answer!r} is not one of 1-{len(choices)} or a listed lesson name", file=sys.stderr)
        return 2
    right = picked is lesson
    print(f"\n{'Right' if right else 'Wrong'}: it is '{lesson.title}' [{lesson.name}].")
    for wrong_lines, right_lines in lesson.diff():
        for line in wrong_lines:
            print(f"  - wrong:  {line}")
        for line in right_lines:
            print(f"  + right:  {line}")
    print(_wrap(lesson.why))
    return 0 if right else 1


# -- exercises and grading ------------------------------------------------------------------------------
def _exercise_command(args: argparse.Namespace, modes: list[str]) -> int:
    if len(modes) > 1:
        return _usage(f"--{modes[0]} and --{modes[1]} do not go together")
    if args.name is not None or args.list or args.quiz or args.check_all or args.symbolic:
        return _usage(f"--{modes[0]} goes with no lesson NAME, --list, --quiz, --check-all or --symbolic")
    mode = modes[0]
    if args.hint is not None and (mode != "grade" or not 1 <= args.hint <= 3):
        return _usage("--hint N (N = 1, 2 or 3) goes with --grade FILE")
    if args.out is not None and mode != "exercise":
        return _usage("--out goes with --exercise (for a class report: --grade DIR --report OUT)")
    if args.report is not None and mode != "grade":
        return _usage(f"--report does not go with --{mode}")
    if args.timeout is not None and (mode != "grade" or not args.timeout > 0):
        return _usage("--timeout S (S > 0) goes with --grade")
    if args.jobs is not None and (mode != "grade" or args.jobs < 1):
        return _usage("--jobs N (N >= 1) goes with --grade DIR")
    if args.force and mode not in ("exercise", "course"):
        return _usage("--force goes with --exercise or --course")
    from gradcheck.teach import course, exercises  # noqa: PLC0415

    if mode == "exercises":
        return list_exercises()
    if mode == "exercise":
        try:
            ex = exercises.get_exercise(args.exercise)
            path = exercises.write_exercise(ex, args.out or ".", force=args.force)
        except (ValueError, FileExistsError) as exc:
            return _usage(str(exc))
        print(f"wrote {path}: fix {ex.function}() between the banner lines, then: gradcheck teach --grade {path}")
        return 0
    if mode == "course":
        try:
            paths = course.write_course(args.course, force=args.force)
        except FileExistsError as exc:
            return _usage(str(exc))
        print(f"wrote {len(paths) - 1} exercises and README.md into {args.course}")
        return 0
    timeout = args.timeout if args.timeout is not None else 60.0
    if os.path.isdir(args.grade):
        if args.report is None:
            return _usage("--grade DIR needs --report OUT (the HTML report and gradebook.csv go there)")
        if args.hint is not None:
            return _usage("--hint goes with --grade FILE, not a folder")
        return grade_class(args.grade, args.report, timeout, jobs=args.jobs or 1)
    if args.jobs is not None:
        return _usage("--jobs goes with --grade DIR")
    if args.report is not None:
        return _usage("--report OUT goes with --grade DIR (a folder with one subfolder per student)")
    return grade_one(args.grade, hint_level=args.hint, timeout=timeout)


def list_exercises() -> int:
    from gradcheck.teach.exercises import EXERCISES  # noqa: PLC0415

    rows = [(str(k), e.name, e.family, e.title, e.dtype, e.lesson or "-") for k, e in enumerate(EXERCISES, 1)]
    print_table(("#", "exercise", "kind", "what to fix", "dtype", "lesson"), rows, title=f"{len(EXERCISES)} exercises")
    print("\nwrite one with `gradcheck teach --exercise NAME`, all with `--course DIR`; grade with `--grade FILE`")
    return 0


def grade_one(path: str, *, hint_level: int | None = None, timeout: float = 60.0) -> int:
    from gradcheck.teach.grading import HINT_LEVELS, WRONG, grade_file, hint  # noqa: PLC0415

    grade = grade_file(path, timeout=timeout)
    print(grade)
    if grade.status == WRONG and grade.exercise:
        if hint_level is not None:
            print(f"\nhint {hint_level}/3 ({HINT_LEVELS[hint_level - 1]}):")
            print(_wrap(hint(grade.exercise, hint_level)))
        else:
            print("\nstuck? --hint 1 (where), --hint 2 (what kind), --hint 3 (the relation that holds)")
    print(f"({grade.seconds:.2f} s)")
    return grade.exit_code


def grade_class(folder: str, out_dir: str, timeout: float = 60.0, *, jobs: int = 1) -> int:
    from gradcheck.teach import course  # noqa: PLC0415

    def progress(student: str, path: str, g) -> None:
        print(f"  {g.status:<7} {g.seconds:5.2f} s  {student!r}: {path}", flush=True)

    rows, html, seconds = course.grade_class_report(folder, out_dir, timeout=timeout, jobs=jobs, progress=progress)
    counts = {s: sum(r.status == s for r in rows) for s in ("fixed", "wrong", "error", "missing")}
    n_files = len(rows) - counts["missing"]
    print(f"graded {n_files} files of {len({r.student for r in rows})} students in {seconds:.1f} s "
          f"({seconds / max(1, n_files):.2f} s per file): " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    print(f"report: {html}\ngradebook: {os.path.join(out_dir, 'gradebook.csv')}")
    return 0
