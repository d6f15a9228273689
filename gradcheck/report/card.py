"""A check result (and a lesson) as an HTML card for Jupyter: what ``Result._repr_html_`` and
``Outcome._repr_html_`` return.

The card is the report's per-check detail (``templates/_card.html.j2``, the very macros the report
page renders for each failure): verdict, per-tensor table, worst element claimed vs numerical (vs
symbolic), diagnosis, notes and the step-size curve as inline SVG. A passing check shows compactly
(verdict line, per-tensor table), a failing one in full.

The fragment is self-contained: one scoped ``<style>`` whose every selector starts with the card's own
``gck`` class and whose class names all carry the ``gck-`` prefix (the notebook's CSS and the card's
keep apart), no script, no external resource, charts inline. Names and messages are user data and
autoescaped, so a parameter named ``<script>alert(1)</script>`` shows as that text.

>>> result = gradcheck.check(fn, params, X, y)   # doctest: +SKIP
>>> result                                        # doctest: +SKIP  (in Jupyter: the card)
>>> html = render_card(result)                    # doctest: +SKIP  (the same, as a string)
"""
from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any

from gradcheck.report import charts
from gradcheck.report.html import TEMPLATES, _environment, check_context, fmt_error, fmt_margin
from gradcheck.report.records import make_rows, result_dict
from gradcheck.result import SCHEME_NAMES, Result, explain, operator_text

__all__ = ["render_card", "render_lesson", "card_style"]

#: the function an operator check's ``result.operator["kind"]`` names
OPERATOR_FUNCTIONS = {"vjp": "check_vjp", "jvp": "check_jvp", "hvp": "check_hvp"}


def card_style() -> str:
    """The cards' CSS (every selector scoped under ``.gck``); :func:`render_card` inlines it."""
    return (TEMPLATES / "card.css").read_text(encoding="utf-8")


def _result(result: Any) -> Result:
    if isinstance(result, Result):
        return result
    if isinstance(result, Mapping):
        return Result.from_dict(result_dict(result, "result"))
    raise TypeError(f"result must be a gradcheck.Result or the dict of Result.to_dict(), got {type(result).__name__}")


def _headline(r: Result) -> str:
    """One line: for a pass the max relative error and the margin; for a failure what failed (the first
    line of ``str(result)`` without its ``gradcheck FAILED name:`` prefix)."""
    if r.passed:
        where = f" in {r.worst_param}" if r.worst_param and r.max_rel_error > 0 else ""
        closest = f" at {r.closest.label()}" if r.closest is not None else ""
        if r.mode == "fast" and not r.margin:  # random directions: no per-element margin
            return f"max relative error {fmt_error(r.max_rel_error)} (random directional derivatives)"
        return f"max relative error {fmt_error(r.max_rel_error)}{where} · margin {fmt_margin(r.margin)}{closest}"
    if r.problems and not (r.worst is not None and r.failures):  # listed in full below the headline
        kinds = ", ".join(dict.fromkeys(q.kind for q in r.problems))
        return f"stopped before comparing gradients: {kinds}" if not r.tensors else f"problem: {kinds}"
    first = explain(r).splitlines()[0]
    prefix = "gradcheck FAILED" + (f" {r.name}" if r.name else "") + ": "
    return first[len(prefix):] if first.startswith(prefix) else first


def _facts(r: Result) -> list[str]:
    n, what = len(r.tensors), ("blocks" if r.operator else "tensors")
    facts = [f"{n} {what[:-1] if n == 1 else what}, {r.n_elements} {'entries' if r.operator else 'elements'}"] if n else []
    facts += [SCHEME_NAMES.get(r.scheme, r.scheme), r.dtype, f"{r.calls} call{'' if r.calls == 1 else 's'}"]
    if math.isfinite(r.seconds):
        facts.append(f"{r.seconds:.2f} s")
    return facts


def _lines(r: Result) -> list[str]:
    """What an operator check covered; what a check under a budget covered."""
    lines = [operator_text(r.operator)] if r.operator else []
    coverage = getattr(r, "coverage", None)
    if coverage:
        from gradcheck.result import coverage_lines  # noqa: PLC0415 - budgeted checks only

        lines += coverage_lines(coverage)
    return lines


def _kind(r: Result) -> str:
    if r.operator:
        return OPERATOR_FUNCTIONS.get(str(r.operator.get("kind")), "operator check")
    return "fast mode" if r.mode == "fast" else ""


def _card_context(r: Result, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header (``c``) and the shared detail context (``f``) of one result."""
    row = make_rows([r.to_dict()])[0]
    f = check_context(row, with_chart=not r.passed and charts.available(), meta={}, title="", chart_key=key)
    if f["chart"]:  # the chart's class too carries the card's prefix
        f["chart"] = f["chart"].replace('class="chart"', 'class="gck-chart"', 1)
    c = {"passed": bool(r.passed), "name": r.name or "gradcheck.check", "kind": _kind(r), "headline": _headline(r),
         "facts": _facts(r), "lines": _lines(r),
         "explanation": explain(r)}
    return c, f


def _macros():
    return _environment().get_template("_card.html.j2").module


def render_card(result: Any, *, key: str | None = None, style: bool = True) -> str:
    """One check result as a self-contained HTML fragment (the notebook's card).

    ``result``: a :class:`gradcheck.Result` (of ``check``, ``check_vjp``, ``check_jvp``, ``check_hvp``,
    fast mode included) or its ``to_dict()``. ``key``: a prefix for the ids inside the chart's SVG
    (unique by default, so several cards share a page). ``style=False`` leaves the ``<style>`` out
    (for a page that includes :func:`card_style` once)."""
    r = _result(result)
    c, f = _card_context(r, key or f"gck-{uuid.uuid4().hex[:10]}")
    return str(_macros().card(c, f, card_style() if style else "")).strip() + "\n"


def _marks(outcome: Any) -> list[tuple[bool, str]]:
    """What the lesson expects and whether gradcheck did it: [(as expected, text)]."""
    lesson, r = outcome.lesson, outcome.result
    if lesson.passes:
        caught = f"{'passed' if r.passed else 'FAILED'}: correct code (at a kink or at float32 resolution) passes"
    else:
        caught = f"{'FAILED' if not r.passed else 'passed'}: the bug is {'caught' if outcome.caught else 'MISSED'}"
    tensors = ", ".join(lesson.tensors)
    if lesson.passes:
        where = f"kinks in {', '.join(sorted({e.param for e in r.kinks})) or 'no tensor'}"
    else:
        where = f"worst in {r.worst.label() if r.worst is not None else r.worst_param or 'no tensor'}"
    localized = f"{where}" + (f" (expected {tensors})" if tensors else "")
    expected = "nothing (a pass)" if lesson.passes else (lesson.expected or "no particular pattern")
    diagnosed = f"named {outcome.pattern or 'no pattern'} (expected {expected})"
    return [(outcome.caught, caught), (outcome.localized, localized), (outcome.diagnosed, diagnosed)]


def render_lesson(outcome: Any, fixed: Any = None, *, style: bool = True) -> str:
    """A lesson's run (:class:`gradcheck.teach.run.Outcome`) as an HTML fragment: title, why, the wrong
    and right code side by side, what gradcheck said against what the lesson expects, the fix, and the
    check's card; ``fixed`` (the Outcome of ``run_lesson(lesson, fixed=True)``) adds the fixed code's
    card."""
    lesson = outcome.lesson
    labels = ("one way", "the other") if lesson.passes else ("wrong", "right")
    hunks = [("\n".join(w) or "(missing)", "\n".join(r) or "(missing)") for w, r in lesson.diff()]
    cards = [_card_context(o.result, f"gck-{uuid.uuid4().hex[:10]}") for o in (outcome, fixed) if o is not None]
    lesson_view = {"name": lesson.name, "title": lesson.title, "topic": lesson.topic, "why": lesson.why,
                   "fix_note": lesson.fix_note, "labels": labels, "hunks": hunks,
                   "where": (lesson.where(), lesson.where(fixed=True)), "marks": _marks(outcome),
                   "ok": bool(outcome.ok), "dtype": getattr(outcome, "dtype", None)}
    return str(_macros().lesson(lesson_view, cards, card_style() if style else "")).strip() + "\n"
