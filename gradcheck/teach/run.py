"""Running lessons: the check of a lesson's mutant (or fix) and whether gradcheck said what it should.

A network lesson runs :func:`gradcheck.check` on its network; an operator lesson runs
:func:`gradcheck.check_vjp` on its operator's buggy (or correct) vjp, in one of its dtypes; a layer
lesson runs :func:`gradcheck.check` on the reference network with one layer kind's backward
replaced by the wrong one (or its correct twin).
"""
from __future__ import annotations

from dataclasses import dataclass

from gradcheck.checker import check
from gradcheck.operators import check_vjp
from gradcheck.result import Result
from gradcheck.teach.catalog import AnyLesson, LayerLesson, OperatorLesson


@dataclass
class Outcome:
    """A lesson's check result judged against the lesson's expectations."""

    lesson: AnyLesson
    result: Result
    dtype: str | None = None  # an operator lesson's dtype (a network lesson's is its spec's)

    @property
    def pattern(self) -> str | None:
        """What gradcheck named: the diagnosis pattern, else the kind of problem found, else None."""
        if self.result.diagnosis is not None:
            return self.result.diagnosis.pattern
        if self.result.problems:
            return self.result.problems[0].kind
        return None

    @property
    def caught(self) -> bool:
        """Failed for a bug; passed for a lesson whose code is correct (the kink)."""
        return self.result.passed if self.lesson.passes else not self.result.passed

    @property
    def localized(self) -> bool:
        """The worst tensor is one the bug corrupts (for a passing lesson: the kinks are where expected);
        for an operator lesson, the worst Jacobian entry relates an expected output to an expected input;
        for a layer lesson, every failing tensor (so the worst too) is one the lesson names."""
        if isinstance(self.lesson, OperatorLesson):
            w = self.result.worst
            return (w is not None and w.input in self.lesson.inputs
                    and (not self.lesson.outputs or w.output in self.lesson.outputs))
        if isinstance(self.lesson, LayerLesson):
            failing = {name for name, t in self.result.tensors.items() if not t.passed}
            return (bool(failing) and failing <= set(self.lesson.tensors)
                    and self.result.worst_param in self.lesson.tensors)
        want = set(self.lesson.tensors)
        if not want:
            return True
        if self.lesson.passes:
            return bool(self.result.kinks) and {e.param for e in self.result.kinks} <= want
        return self.result.worst_param in want

    @property
    def diagnosed(self) -> bool:
        """gradcheck named the expected pattern (for a passing lesson: it passed, naming nothing; for an
        operator or layer lesson that expects no pattern: it named none)."""
        if self.lesson.passes:
            return self.result.passed and self.result.diagnosis is None
        return self.pattern == self.lesson.expected

    @property
    def ok(self) -> bool:
        return self.caught and self.localized and self.diagnosed

    def _repr_html_(self) -> str:
        """Jupyter's display: the lesson, its code and its check's card
        (:func:`gradcheck.report.card.render_lesson`)."""
        from gradcheck.report.card import render_lesson  # noqa: PLC0415 - Jinja2 only when displayed

        return render_lesson(self)


def run_lesson(lesson: AnyLesson, *, fixed: bool = False, symbolic: bool = False, name: str | None = None,
               dtype: str | None = None) -> Outcome:
    """Check the lesson's mutant (or, ``fixed=True``, its fix) on the lesson's network and batch.

    The spec is given to the check (its batch size helps the diagnosis) when it describes the function
    exactly; ``symbolic=True`` then also runs the SymPy oracle. An operator lesson runs ``check_vjp``
    on its operator's inputs in ``dtype`` (default: its first dtype, float64); ``symbolic`` does not
    apply to it. A layer lesson checks ``lesson.build(fixed)``: the reference network with the wrong
    backward (or its twin) in place of its kind's.
    """
    label = name if name is not None else f"{lesson.name} ({'fix' if fixed else 'bug'})"
    if isinstance(lesson, OperatorLesson):
        dtype = dtype or lesson.dtypes[0]
        op = lesson.operator
        result = check_vjp(op.f, lesson.vjp(fixed), lesson.make_inputs(dtype), name=label)
        return Outcome(lesson, result, dtype)
    if dtype is not None and dtype != lesson.case().spec.dtype:
        raise ValueError(f"lesson {lesson.name!r} runs in {lesson.case().spec.dtype} only (its network's dtype)")
    case = lesson.case()
    if isinstance(lesson, LayerLesson):
        fn = lesson.build(fixed)
    else:
        fn = (lesson.fix if fixed else lesson.mutant)(case.spec)
    spec = case.spec if case.faithful else None
    result = check(fn, case.params, case.X, case.y, spec=spec, symbolic=bool(symbolic and spec is not None),
                   name=label)
    return Outcome(lesson, result)
