"""What every kind of network lesson shares: the :class:`Case` it runs on, and :func:`code_diff`,
the lines in which a wrong function differs from the right one (what a lesson shows)."""
from __future__ import annotations

import ast
import difflib
import inspect
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradcheck.spec import NetworkSpec


@dataclass(frozen=True)
class Case:
    """What a lesson runs on: the spec, parameters and batch (all deterministic)."""

    spec: NetworkSpec
    params: dict[str, np.ndarray]
    X: np.ndarray
    y: np.ndarray
    faithful: bool = True  # the spec's network is the function (no dropout, no extra loss term)


def _body(func: Callable) -> list[str]:
    """The body lines of a function (no signature, no docstring), dedented."""
    src = textwrap.dedent(inspect.getsource(func))
    tree = ast.parse(src).body[0]
    assert isinstance(tree, (ast.FunctionDef, ast.AsyncFunctionDef)), f"{func!r} is not a def"
    stmts = tree.body
    first = stmts[0] if stmts else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        stmts = stmts[1:]
    lines = src.splitlines()
    if not stmts:
        return []
    body = lines[stmts[0].lineno - 1: stmts[-1].end_lineno]
    return textwrap.dedent("\n".join(body)).splitlines()


def _code_only(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line).strip()


def code_diff(wrong: Callable, right: Callable) -> list[tuple[list[str], list[str]]]:
    """Hunks of lines that differ between two functions' bodies (comments ignored when matching)."""
    w, r = _body(wrong), _body(right)
    sm = difflib.SequenceMatcher(a=[_code_only(x) for x in w], b=[_code_only(x) for x in r], autojunk=False)
    return [(w[i1:i2], r[j1:j2]) for tag, i1, i2, j1, j2 in sm.get_opcodes() if tag != "equal"]


__all__ = ["Case", "code_diff"]
