"""Grading a student's exercise file (``gradcheck teach --grade FILE``).

The file is graded in a child process (``multiprocessing``, killed after ``timeout`` seconds: an
infinite loop cannot hang the grader). In the child:

1. **Static scan** (nothing of the file runs yet): it must parse; it must name its exercise
   (``EXERCISE = "..."``); it may import only numpy and a few harmless standard modules (``math``,
   ``functools``, ...); ``gradcheck``, ``gradcheck_reference``, ``torch``, ``jax``, ``autograd``,
   ``scipy`` and any other module are refused, and so are ``__import__``, ``exec``, ``eval``,
   ``compile``, ``open``, dunder attributes such as ``__globals__``, and complex numbers (``1j``,
   ``complex``, ``.imag``: the complex-step trick for numerical derivatives).
2. **Load**: the file is imported from its path with an ``__import__`` that refuses the same
   modules at run time; any exception is a load error.
3. **The forward is the original's**: the grader executes its own copy of the exercise
   (:meth:`Exercise.reference`, never the student's file) and compares the student's ``forward``
   (or ``f``) with it on the shipped inputs and on fresh ones (other seeds, another batch size).
4. **The backward does the work of a backward pass**: one call is traced (``sys.settrace``,
   the student's file only). It may call ``forward`` (``f``) at most :data:`MAX_FORWARD_CALLS`
   times and execute at most ``LINE_FACTOR x`` the lines the reference backward executes (+
   ``LINE_SLACK``): a finite-difference loop re-evaluates the loss twice per parameter element.
   The gradients must be a dict with the right keys and shapes, floating, not aliasing an input.
5. **The check**: :func:`gradcheck.check` (``check_vjp`` for an operator) with the grader's loss
   and the student's backward, on the shipped inputs (``make_inputs(0)``) and on fresh ones, in
   the exercise's dtype, with gradcheck's error model (kinks and float32 rounding are no bug).
   Right on the shipped inputs only is refused as hard-coded.

Exit codes (:attr:`Grade.exit_code`): 0 fixed, 1 still wrong, 2 cannot be graded (does not load,
cheats, changed the forward, timed out).
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import importlib.util
import io
import math
import os
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcheck.teach.exercises import EXERCISES, Exercise, get_exercise, reference_filename

#: modules a student file may import (top-level names)
ALLOWED_MODULES = frozenset({"numpy", "math", "functools", "itertools", "operator", "typing", "collections",
                             "dataclasses", "__future__", "abc", "enum", "numbers", "string", "textwrap"})
#: modules whose import means "let something else compute the gradient"
AUTODIFF_MODULES = frozenset({"gradcheck", "gradcheck_reference", "reference", "torch", "jax", "jaxlib",
                              "autograd", "scipy", "sympy", "tensorflow", "numdifftools", "micrograd",
                              "tinygrad", "mxnet", "chainer"})
FORBIDDEN_CALLS = frozenset({"__import__", "exec", "eval", "compile", "open", "breakpoint", "globals", "vars",
                             "complex", "memoryview"})
#: the backward may call the file's forward (f) at most this often
MAX_FORWARD_CALLS = 2
#: ... and execute at most LINE_FACTOR x the reference backward's line events, + LINE_SLACK
LINE_FACTOR = 6
LINE_SLACK = 150
#: seeds of the fresh inputs (the shipped inputs are make_inputs(0))
FRESH_SEEDS = (1001, 1002, 1003)
DEFAULT_TIMEOUT = 60.0
MAX_FILE_BYTES = 1 << 20

FIXED, WRONG, ERROR, MISSING = "fixed", "wrong", "error", "missing"
EXIT_CODES = {FIXED: 0, WRONG: 1, ERROR: 2}


@dataclass
class Grade:
    """The outcome of grading one file: plain data (it crosses from the grading process)."""

    path: str
    status: str                       # fixed | wrong | error
    message: str                      # one line: why
    exercise: str | None = None
    details: list[str] = field(default_factory=list)   # verdict, worst element, diagnosis
    max_rel_error: float = math.nan
    worst: str | None = None          # the worst tensor (or Jacobian block)
    worst_element: str | None = None
    diagnosis: str | None = None
    seconds: float = 0.0
    result: dict | None = None        # the failing (or last) gradcheck Result, as Result.to_dict()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def passed(self) -> bool:
        return self.status == FIXED

    def __str__(self) -> str:
        head = {FIXED: "FIXED", WRONG: "STILL WRONG", ERROR: "CANNOT BE GRADED"}[self.status]
        lines = [f"{self.exercise or os.path.basename(self.path)}: {head} (exit {self.exit_code}): {self.message}"]
        lines += [f"  {line}" for line in self.details]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """In a notebook: the check's card (gradcheck.report.card) when available, after the verdict."""
        import html  # noqa: PLC0415

        text = f"<pre>{html.escape(str(self))}</pre>"
        if self.result is None:
            return text
        try:
            from gradcheck.report.card import render_card  # noqa: PLC0415

            return text + render_card(self.result)
        except Exception:  # the card is an extra: the verdict above stands without it
            return text


# -- static scan ------------------------------------------------------------------------------------
def exercise_name(tree: ast.AST) -> str | None:
    """The string assigned to the module-level ``EXERCISE``, read without running the file."""
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "EXERCISE" for t in node.targets) \
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return node.value.value
    return None


def scan(tree: ast.AST) -> list[str]:
    """What the file does that a graded backward may not (empty: nothing)."""
    found: list[str] = []

    def module(name: str, line: int) -> None:
        top = name.split(".")[0]
        if top in AUTODIFF_MODULES:
            found.append(f"line {line}: imports {name}: the gradient must be computed by your own code, "
                         "not by gradcheck or an autodiff library")
        elif top not in ALLOWED_MODULES:
            found.append(f"line {line}: imports {name}: only numpy and {', '.join(sorted(ALLOWED_MODULES - {'numpy'}))} "
                         "may be imported")

    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                module(alias.name, line)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append(f"line {line}: a relative import: the file must be self-contained")
            else:
                module(node.module or "", line)
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_CALLS:
            found.append(f"line {line}: uses {node.id}(), which a graded file may not")
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("__") and node.attr.endswith("__") and node.attr not in ("__name__", "__init__"):
                found.append(f"line {line}: uses the attribute {node.attr}, which a graded file may not")
            elif node.attr in ("imag", "complex64", "complex128", "complex_", "cdouble", "csingle",
                               "approx_fprime", "gradient"):
                found.append(f"line {line}: uses {node.attr}: complex numbers or numerical differentiation")
        elif isinstance(node, ast.Constant) and isinstance(node.value, complex):
            found.append(f"line {line}: a complex number ({node.value!r}): complex-step differentiation computes "
                         "the gradient numerically")
        elif isinstance(node, ast.Name) and node.id == "__builtins__":
            found.append(f"line {line}: uses __builtins__, which a graded file may not")
    return found


def _guarded_builtins() -> dict[str, Any]:
    """builtins with an ``__import__`` that refuses what the static scan refuses (a second line of defence)."""
    real = builtins.__import__

    def guarded(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        top = name.split(".")[0]
        if level or top not in ALLOWED_MODULES:
            raise ImportError(f"a graded file may not import {name!r}")
        return real(name, globals, locals, fromlist, level)

    safe = dict(vars(builtins))
    safe["__import__"] = guarded
    for name in FORBIDDEN_CALLS - {"__import__", "complex"}:
        safe.pop(name, None)
    return safe


def load_student(path: str, module_name: str = "student_exercise") -> Any:
    """Import the file at ``path`` as a fresh module (builtins guarded); raises what its import raises."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    module.__dict__["__builtins__"] = _guarded_builtins()
    sys.dont_write_bytecode = True  # no __pycache__ in the student's folder
    spec.loader.exec_module(module)
    return module


# -- the grading itself (runs in the child process) ------------------------------------------------
class _Refuse(Exception):
    """Cannot be graded (exit 2)."""


class _Work:
    """Line events and forward calls of one call, in one file (sys.settrace)."""

    def __init__(self, filename: str, forward_code: Any):
        self.filename, self.forward_code = filename, forward_code
        self.lines = self.forward_calls = self.calls = 0

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            self.lines += 1
        return self._local

    def _global(self, frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != self.filename:
            return None
        self.calls += 1
        if frame.f_code is self.forward_code:
            self.forward_calls += 1
        return self._local

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        old = sys.gettrace()
        sys.settrace(self._global)
        try:
            return fn(*args)
        finally:
            sys.settrace(old)


def _copy(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: np.array(v, copy=True) for k, v in x.items()}
    return np.array(x, copy=True)


def _inputs(exercise: Exercise, ref: Any, seed: int, batch: int) -> tuple[Any, ...]:
    made = ref.make_inputs(seed) if batch == 0 else ref.make_inputs(seed, batch)
    return made if exercise.kind == "network" else (made,)


def _input_arrays(args: tuple[Any, ...]) -> list[np.ndarray]:
    arrays: list[np.ndarray] = []
    for a in args:
        if isinstance(a, Mapping):
            arrays += [v for v in a.values() if isinstance(v, np.ndarray)]
        elif isinstance(a, np.ndarray):
            arrays.append(a)
    return arrays


def _cases(exercise: Exercise) -> list[tuple[int, int]]:
    """(seed, batch): the shipped inputs, fresh ones of the same shapes, then fresh ones with another
    batch size (batch 0: the file's own BATCH)."""
    other = [b for b in exercise.fresh_batches if b != 0]
    return [(0, 0), (FRESH_SEEDS[0], 0), *((s, b) for s, b in zip(FRESH_SEEDS[1:], other))]


def _check_forward(exercise: Exercise, ref: Any, student: Any) -> None:
    name = exercise.forward_name
    fwd = getattr(student, name, None)
    if not callable(fwd):
        raise _Refuse(f"the file has no function {name}(): keep the exercise's interface")
    rtol = 1e-4 if exercise.dtype == "float32" else 1e-9
    for seed, batch in [*_cases(exercise), (FRESH_SEEDS[-1], max(exercise.fresh_batches))]:
        args = _inputs(exercise, ref, seed, batch)
        want = np.asarray(getattr(ref, name)(*_copy_args(args)))
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                got = np.asarray(fwd(*_copy_args(args)))
        except (Exception, SystemExit) as exc:  # the file's own code
            raise _Refuse(f"{name}() raised {type(exc).__name__}: {exc} (on fresh inputs, seed {seed}): "
                          f"{name}() must stay as the exercise wrote it") from None
        if got.shape != want.shape or not np.issubdtype(got.dtype, np.number) or \
                not np.allclose(got, want, rtol=rtol, atol=rtol * max(1e-300, float(np.max(np.abs(want))))):
            raise _Refuse(f"changed the forward: {name}() differs from the exercise's original on fresh inputs "
                          f"(seed {seed}): {_short(got)} vs {_short(want)}; fix only {exercise.function}()")


def _short(x: np.ndarray) -> str:
    if x.shape == () and np.isrealobj(x) and np.issubdtype(x.dtype, np.number):
        return f"{float(x):.9g}"
    return f"an array of shape {x.shape}, {x.dtype}"


def _copy_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_copy(a) for a in args)


def _check_gradients(exercise: Exercise, grads: Any, args: tuple[Any, ...]) -> None:
    wrt = args[0]
    who = f"{exercise.function}()"
    if not isinstance(grads, Mapping):
        raise _Refuse(f"{who} returned {type(grads).__name__}, not a dict of gradients keyed like "
                      f"{'params' if exercise.kind == 'network' else 'inputs'} ({', '.join(wrt)})")
    given = _input_arrays(args)
    for key, g in grads.items():
        if isinstance(g, np.ndarray) and any(np.shares_memory(g, a) for a in given):
            raise _Refuse(f"{who}['{key}'] is (a view of) an input array, not a new gradient array")


def _measure(exercise: Exercise, ref: Any, student: Any, path: str) -> None:
    args = _inputs(exercise, ref, 0, 0)
    if exercise.kind == "operator":
        out = ref.f(_copy(args[0]))
        args = (args[0], np.random.default_rng(7).normal(size=out.shape).astype(out.dtype))
    ref_work = _Work(reference_filename(exercise.name), getattr(ref, exercise.forward_name).__code__)
    ref_work.run(getattr(ref, exercise.function), *_copy_args(args))
    fwd = getattr(student, exercise.forward_name)
    work = _Work(os.path.abspath(path), getattr(fwd, "__code__", None))
    backward = getattr(student, exercise.function, None)
    if not callable(backward):
        raise _Refuse(f"the file has no function {exercise.function}(): keep the exercise's interface")
    call_args = _copy_args(args)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            grads = work.run(backward, *call_args)
    except (Exception, SystemExit) as exc:  # the file's own code
        raise _Wrong(f"{exercise.function}() raised {type(exc).__name__}: {exc}") from None
    if work.forward_calls > MAX_FORWARD_CALLS:
        raise _Refuse(f"computes the gradient numerically: {exercise.function}() called "
                      f"{exercise.forward_name}() {work.forward_calls} times (at most {MAX_FORWARD_CALLS})")
    limit = LINE_FACTOR * ref_work.lines + LINE_SLACK
    if work.lines > limit:
        raise _Refuse(f"computes the gradient numerically (or does far more work than a backward pass): "
                      f"{exercise.function}() ran {work.lines} lines of Python, the exercise's own backward "
                      f"{ref_work.lines} (at most {limit} accepted)")
    _check_gradients(exercise, grads, call_args)


class _Wrong(Exception):
    """Still wrong, found before the check (exit 1)."""


def _check(exercise: Exercise, ref: Any, student: Any, seed: int, batch: int) -> Any:
    import gradcheck  # noqa: PLC0415

    args = _inputs(exercise, ref, seed, batch)
    backward = getattr(student, exercise.function)

    def quiet(*a: Any) -> Any:
        with contextlib.redirect_stdout(io.StringIO()):
            return backward(*a)

    if exercise.kind == "network":
        params, X, y = args

        def fn(p: Any, X_: Any, y_: Any) -> Any:
            return ref.forward(p, X_, y_), quiet(p, X_, y_)

        return gradcheck.check(fn, params, X, y, loss_fn=ref.forward, name=exercise.name, quiet=True)
    return gradcheck.check_vjp(ref.f, quiet, args[0], name=exercise.name)


def _describe(result: Any, where: str) -> tuple[list[str], dict[str, Any]]:
    text = str(result).splitlines()
    lines = [f"verdict ({where}): {text[0] if text else 'FAILED'}"]
    info: dict[str, Any] = {"max_rel_error": float(result.max_rel_error), "worst": result.worst_param}
    w = result.worst
    if w is not None:
        info["worst_element"] = w.label()
        lines.append(f"worst tensor {result.worst_param}, element {w.label()}: your backward {w.claimed:.9g}, "
                     f"numerical {w.numerical:.9g} (relative error {w.rel_error:.3g}, tolerance {w.tolerance:.3g})")
    failing = [n for n, t in result.tensors.items() if not t.passed]
    if failing:
        lines.append(f"failing: {', '.join(failing)}; right: "
                     f"{', '.join(n for n, t in result.tensors.items() if t.passed) or 'none'}")
    if result.problems:
        lines.append(f"problem: {result.problems[0].message}")
    d = result.diagnosis
    if d is not None:
        info["diagnosis"] = d.pattern
        lines.append(f"diagnosis: {d.pattern}: {d.message}")
    elif not result.problems:
        lines.append("diagnosis: no known pattern")
    if result.kinks:
        lines.append(f"kinks: {len(result.kinks)} element(s) at a non-differentiable point, not judged")
    return lines, info


def grade_in_process(path: str, exercise: str | None = None) -> Grade:
    """Grade ``path`` in this process (no timeout; :func:`grade_file` runs this in a child)."""
    t0 = time.perf_counter()
    grade = _grade(path, exercise)
    grade.seconds = time.perf_counter() - t0
    return grade


def _grade(path: str, name: str | None) -> Grade:
    path = os.path.abspath(path)  # the tracer matches the file's code by this name
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            return Grade(path, ERROR, f"the file is larger than {MAX_FILE_BYTES} bytes")
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        return Grade(path, ERROR, f"cannot read the file: {exc}")
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as exc:
        return Grade(path, ERROR, f"cannot load the file: SyntaxError at line {exc.lineno}: {exc.msg}")
    name = name or exercise_name(tree)
    if name is None:
        return Grade(path, ERROR, "the file does not say which exercise it is (EXERCISE = \"...\" was removed?)")
    try:
        exercise = get_exercise(name)
    except ValueError as exc:
        return Grade(path, ERROR, str(exc), exercise=name)
    offences = scan(tree)
    if offences:
        return Grade(path, ERROR, f"refused: {offences[0]}", exercise=name, details=offences[1:6])
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            student = load_student(path)
    except BaseException as exc:  # SystemExit too: the file's own code
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Grade(path, ERROR, f"cannot load the file: {last}", exercise=name)
    ref = exercise.reference()
    try:
        _check_forward(exercise, ref, student)
        _measure(exercise, ref, student, path)
        results = []
        for seed, batch in _cases(exercise):
            result = _check(exercise, ref, student, seed, batch)
            results.append((seed, batch, result))
            if not result.passed:
                break
    except _Refuse as exc:
        return Grade(path, ERROR, str(exc), exercise=name)
    except _Wrong as exc:
        return Grade(path, WRONG, str(exc), exercise=name)
    seed, batch, last = results[-1]
    if last.passed:
        worst = max(float(r.max_rel_error) for *_, r in results)
        return Grade(path, FIXED, f"your backward is right (max relative error {worst:.2e} over "
                     f"{len(results)} checks: the shipped inputs and fresh ones, {exercise.dtype})",
                     exercise=name, max_rel_error=worst,
                     result=last.to_dict())
    where = "the shipped inputs, make_inputs(0)" if seed == 0 else \
        f"fresh inputs, make_inputs({seed}{', ' + str(batch) if batch else ''})"
    lines, info = _describe(last, where)
    if seed != 0 and batch == 0:
        return Grade(path, ERROR, f"refused: right on the shipped inputs only, wrong on {where}: a gradient "
                     "hard-coded for make_inputs(0)?", exercise=name, details=lines, result=last.to_dict(), **info)
    if seed != 0:
        return Grade(path, WRONG, f"the gradient is right for the shipped batch size only, wrong on {where}: "
                     "is the batch size written in as a number?", exercise=name, details=lines,
                     result=last.to_dict(), **info)
    return Grade(path, WRONG, f"the gradient is still wrong ({where})", exercise=name, details=lines,
                 result=last.to_dict(), **info)


# -- the child process -----------------------------------------------------------------------------
def _child(conn: Any, path: str, exercise: str | None) -> None:
    try:
        grade = grade_in_process(path, exercise)
    except BaseException as exc:  # a bug of the grader: reported, never hidden
        grade = Grade(path, ERROR, f"the grader failed: {type(exc).__name__}: {exc}")
    try:
        conn.send(grade)
    finally:
        conn.close()


_START = threading.Lock()


@contextlib.contextmanager
def _main_left_alone() -> Any:
    """While a child starts: multiprocessing would have it re-import the caller's ``__main__`` (a
    script, a notebook runner), running its top level again. The child needs only this module, so
    the parent shows it a ``__main__`` with no file to re-import."""
    with _START:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


def _context() -> Any:
    """forkserver where available (fast children, no fork of a threaded parent), else spawn."""
    from gradcheck.executors import fresh_process_context  # noqa: PLC0415 - light; grading only

    return fresh_process_context()


def grade_file(path: str, *, exercise: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Grade:
    """Grade the student file at ``path`` in a child process, killed after ``timeout`` seconds."""
    path = os.path.abspath(path)
    t0 = time.perf_counter()
    if not os.path.isfile(path):
        return Grade(path, ERROR, "no such file")
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, path, exercise), daemon=True)
    with _main_left_alone():
        proc.start()
    send.close()
    try:
        if receive.poll(timeout):
            try:
                grade = receive.recv()
            except EOFError:
                grade = None
        else:
            grade = Grade(path, ERROR, f"did not finish within {timeout:g} s (an infinite loop?)")
    finally:
        receive.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5)
    if grade is None:
        grade = Grade(path, ERROR, f"the grading process ended without an answer (exit code {proc.exitcode})")
    grade.seconds = time.perf_counter() - t0
    return grade


def hint(exercise: Exercise | str, level: int) -> str:
    """Hint ``level`` (1 where, 2 what kind, 3 the relation that holds)."""
    ex = get_exercise(exercise) if isinstance(exercise, str) else exercise
    if not 1 <= level <= len(ex.hints):
        raise ValueError(f"hint level {level}: the levels are 1 to {len(ex.hints)}")
    return ex.hints[level - 1]


HINT_LEVELS = ("where", "what kind", "the relation that holds")

__all__ = ["Grade", "grade_file", "grade_in_process", "hint", "scan", "exercise_name", "EXERCISES", "HINT_LEVELS",
           "FIXED", "WRONG", "ERROR", "MISSING"]
