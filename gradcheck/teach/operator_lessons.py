"""Operator lessons: classic bugs in the backward pass of one operator (a layer, a custom autograd
function), checked with :func:`gradcheck.check_vjp` instead of a whole network's ``check``.

Each :class:`OperatorLesson` names a planted bug of :mod:`gradcheck.teach.operators` (a key of
``BUGS``). The bug is an ``if bug == "<variant>":`` branch inside the operator's correct vjp, so
the code a lesson shows is read from that source: the branch's body is the wrong line(s); the
right line(s) are the ``else:`` body, or else the statements just before the branch that compute
what the branch overwrites. :meth:`OperatorLesson.source` rebuilds the whole wrong backward (the
vjp with the wrong lines in place of the right ones, the branch gone); the tests run that text
and compare it with the planted bug, so what is shown is what runs.

What gradcheck should say: the worst element is a Jacobian entry ``d <output>[...] / d <input>[...]``
with its input in ``inputs`` (and its output in ``outputs``, when given), and the diagnosis is
``expected`` (a pattern of :mod:`gradcheck.diagnose` or an operator pattern such as
``missing_path``), or None where no pattern applies: the check still fails and names the pair.
The fix (the correct vjp) must pass, in every dtype of ``dtypes``.

Adding one: plant the bug as a branch of an operator's vjp in :mod:`gradcheck.teach.operators`,
register it in ``BUGS``, and append an ``OperatorLesson(...)`` to :data:`OPERATOR_LESSONS`.
"""
from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck.teach import operators as ops


@dataclass(frozen=True)
class Branch:
    """Where a bug variant sits in the source: the function, its dedented source lines, the branch
    (``if bug == variant``) and the statements it replaces."""

    func: Callable
    lines: list[str]
    branch: ast.If
    right: list[ast.stmt]

    def _text(self, stmts: list[ast.stmt]) -> list[str]:
        return textwrap.dedent("\n".join(self.lines[stmts[0].lineno - 1: stmts[-1].end_lineno])).splitlines()

    @property
    def comment(self) -> str:
        """The comment on the ``if bug == ...:`` line (what the bug is), if any."""
        m = re.search(r":\s*#\s*(.*)$", self.lines[self.branch.lineno - 1])
        return m.group(1).strip() if m else ""

    def wrong_lines(self) -> list[str]:
        lines = self._text(self.branch.body)
        if self.comment and "#" not in lines[0]:
            lines[0] = f"{lines[0]}  # {self.comment}"
        return lines

    def right_lines(self) -> list[str]:
        return self._text(self.right)

    def wrong_source(self) -> str:
        """The whole function with the wrong lines in place of the right ones and no branch."""
        start = self.right[0] if not self.branch.orelse else self.branch
        indent = " " * start.col_offset
        wrong = [indent + line if line.strip() else line for line in self.wrong_lines()]
        out = self.lines[: start.lineno - 1] + wrong + self.lines[self.branch.end_lineno:]
        return re.sub(r",\s*\*,\s*bug=None\)", ")", "\n".join(out), count=1) + "\n"

    def fixed_source(self) -> str:
        """The whole function as it runs without the bug: the branch left out."""
        if self.branch.orelse:
            indent = " " * self.branch.col_offset
            right = [indent + line if line.strip() else line for line in self.right_lines()]
        else:
            right = []
        out = self.lines[: self.branch.lineno - 1] + right + self.lines[self.branch.end_lineno:]
        return re.sub(r",\s*\*,\s*bug=None\)", ")", "\n".join(out), count=1) + "\n"


def _is_branch(node: ast.AST, variant: str) -> bool:
    if not isinstance(node, ast.If):
        return False
    t = node.test
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "bug"
            and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq) and len(t.comparators) == 1
            and isinstance(t.comparators[0], ast.Constant) and t.comparators[0].value == variant)


def _assigned(stmts: list[ast.stmt]) -> set[str]:
    """The names a list of statements assigns (``x = ...``, ``x[...] = ...``, ``x += ...``)."""
    names = set()
    for stmt in stmts:
        for node in ast.walk(stmt):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for t in targets:
                while isinstance(t, (ast.Subscript, ast.Attribute)):
                    t = t.value
                if isinstance(t, ast.Name):
                    names.add(t.id)
                elif isinstance(t, ast.Tuple):
                    names |= {e.id for e in t.elts if isinstance(e, ast.Name)}
    return names


def _find(func: Callable, variant: str) -> Branch | None:
    lines = textwrap.dedent(inspect.getsource(func)).splitlines()
    tree = ast.parse("\n".join(lines))
    for parent in ast.walk(tree):
        for field in ("body", "orelse"):
            block = getattr(parent, field, None)
            if not isinstance(block, list):
                continue
            for i, stmt in enumerate(block):
                if not _is_branch(stmt, variant):
                    continue
                assert isinstance(stmt, ast.If)
                if stmt.orelse:
                    return Branch(func, lines, stmt, list(stmt.orelse))
                # the right lines: from the earliest of the last assignments (before the branch) of
                # each name the branch assigns, up to the branch
                starts = []
                for name in _assigned(stmt.body):
                    js = [j for j in range(i) if name in _assigned([block[j]])]
                    if not js:
                        raise ValueError(f"{func.__name__}: the branch `if bug == {variant!r}` assigns {name!r}, "
                                         "which nothing before it computes")
                    starts.append(js[-1])
                if not starts:
                    raise ValueError(f"{func.__name__}: the branch `if bug == {variant!r}` assigns nothing")
                first = min(starts)
                while first > 0 and _dead(tree, block[first - 1], block[first:i]):
                    first -= 1  # computed only for the right lines: part of them
                return Branch(func, lines, stmt, block[first:i])
    return None


def _dead(tree: ast.AST, stmt: ast.stmt, right: list[ast.stmt]) -> bool:
    """``stmt`` assigns names that nothing reads except the statements ``right`` (which the wrong
    lines replace): without them it is dead code, so it belongs to the right lines."""
    names = _assigned([stmt])
    skip = {n for s in [stmt, *right] for n in range(s.lineno, (s.end_lineno or s.lineno) + 1)}
    return bool(names) and not any(isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
                                   and node.id in names and node.lineno not in skip for node in ast.walk(tree))


def find_branch(vjp: Callable, variant: str) -> Branch:
    """The ``if bug == variant`` branch in ``vjp`` or in a function of its module that it calls."""
    found = _find(vjp, variant)
    if found is not None:
        return found
    module = inspect.getmodule(vjp)
    tree = ast.parse(textwrap.dedent(inspect.getsource(vjp)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            callee = getattr(module, node.func.id, None)
            if inspect.isfunction(callee) and callee.__module__ == vjp.__module__:
                found = _find(callee, variant)
                if found is not None:
                    return found
    raise ValueError(f"no `if bug == {variant!r}:` branch in {vjp.__name__} or the functions it calls")


@dataclass(frozen=True)
class OperatorLesson:
    """A backward-pass bug of one operator, checked with ``check_vjp``, and what gradcheck should say."""

    name: str
    title: str
    bug: str  # a key of gradcheck.teach.operators.BUGS
    why: str
    expected: str | None  # the diagnosis pattern, or None: caught and localized, no pattern claimed
    inputs: tuple[str, ...]  # the worst element's input is one of these
    outputs: tuple[str, ...]  # ... and its output one of these (empty: any output)
    fix_note: str
    topic: str = "operator"
    seed: int = 0  # make_inputs(np.random.default_rng(seed), dtype)
    dtypes: tuple[str, ...] = ("float64", "float32")  # the bug is caught and the fix passes in each

    #: network lessons only (kept so code that walks every lesson reads one interface)
    activation = None
    derivation = None
    demo = None

    @property
    def passes(self) -> bool:
        return False

    @property
    def planted(self) -> ops.Bug:
        return ops.BUGS[self.bug]

    @property
    def operator(self) -> ops.Operator:
        return ops.OPERATORS[self.planted.operator]

    @property
    def tensors(self) -> tuple[str, ...]:
        """The Jacobian blocks ``d<output>/d<input>`` the worst element may be in ("" output: any)."""
        return tuple(f"d{o}/d{i}" for o in (self.outputs or ("",)) for i in self.inputs)

    def make_inputs(self, dtype: str | None = None) -> dict[str, np.ndarray]:
        return self.operator.make_inputs(np.random.default_rng(self.seed), np.dtype(dtype or self.dtypes[0]))

    def vjp(self, fixed: bool = False) -> Callable[[dict, Any], dict]:
        return self.operator.vjp if fixed else self.planted.vjp

    def branch(self) -> Branch:
        return find_branch(self.operator.vjp, self.planted.variant)

    def diff(self) -> list[tuple[list[str], list[str]]]:
        """[(wrong lines, right lines)]: the bug branch's body and the lines it replaces."""
        b = self.branch()
        return [(b.wrong_lines(), b.right_lines())]

    @property
    def wrong(self) -> str:
        return "\n".join(line for w, _ in self.diff() for line in w)

    @property
    def right(self) -> str:
        return "\n".join(line for _, r in self.diff() for line in r)

    def source(self, fixed: bool = False) -> str:
        """The whole backward function as written with the bug (or without it)."""
        b = self.branch()
        return b.fixed_source() if fixed else b.wrong_source()

    def where(self, fixed: bool = False) -> str:
        b = self.branch()
        return b.func.__name__ if fixed else f'{b.func.__name__} with bug="{self.planted.variant}"'

    @property
    def pair(self) -> str:
        """The expected worst Jacobian entry's output and input, ``d out / d x|W`` (``*``: any output)."""
        return f"d {'|'.join(self.outputs) or '*'} / d {'|'.join(self.inputs)}"

    def expects(self) -> str:
        """What gradcheck should name, as ``--list`` shows it."""
        return f"{self.expected or 'no pattern'} at {self.pair}"


OPERATOR_LESSONS: tuple[OperatorLesson, ...] = (
    OperatorLesson(
        "batchnorm-stats-constant", "batchnorm backward with the batch mean and variance taken as constants",
        "batchnorm_stats_constant",
        "In training mode y = gamma (x - mu) / sqrt(var + eps) + beta, where mu and var are the mean and "
        "variance of the same batch: every x[n, j] also moves the mean and the variance of column j. So dx "
        "has two more terms than dy * gamma / sqrt(var + eps): -mean(dxhat) and -xhat * mean(dxhat * xhat), "
        "per column. Dropping them is right for a fixed (inference-mode) normalisation, not for the training "
        "forward. The missing terms are shared by every row of a column, so the error in the Jacobian block "
        "dout/dx is a matrix of low rank (2 per column).",
        "low_rank_error", ("x",), ("out",),
        "differentiate through mu and var: dx = inv_std / N * (N * dxhat - dxhat.sum(0) - xhat * "
        "(dxhat * xhat).sum(0))"),
    OperatorLesson(
        "conv-dx-assign", "conv backward writing dx by assignment instead of accumulation",
        "conv2d_overlap_dx_assign",
        "With stride 1 and a 3x3 kernel the windows overlap: an input pixel feeds up to 9 output positions "
        "of every filter, and its gradient is the SUM of what they send back. `dxp[window] = ...` keeps only "
        "the window (and filter) that wrote last; even one output element at a time, the later windows "
        "overwrite its contribution with their zeros. dw and db, accumulated with +=, stay right.",
        "overwrites_accumulation", ("x",), ("out",),
        "dxp[n, :, hs:hs + KH, ws:ws + KW] += w[f] * dout[n, f, i, j] (or np.add.at)"),
    OperatorLesson(
        "softmax-no-rowsum", "softmax backward without the row-sum term", "softmax_no_rowsum",
        "s = softmax(x) row by row, and ds_i/dx_j = s_i (delta_ij - s_j): through the normaliser every "
        "output of a row depends on every input of the row. The VJP is s * (dout - sum(s * dout)) per row. "
        "s * dout alone keeps only the s_i delta_ij part; the missing -s_i s_j is an outer product, rank 1 "
        "per row, so the error in the Jacobian block dout/dx has rank 4 (one per row) of 20.",
        "low_rank_error", ("x",), ("out",),
        "dx = s * (dout - (s * dout).sum(axis=1, keepdims=True))"),
    OperatorLesson(
        "rnn-no-carry", "RNN backward that forgets the gradient from the next time step", "rnn_no_carry",
        "h_t = tanh(x_t Wx + h_{t-1} Wh + b) reaches the loss directly and through h_{t+1}, h_{t+2}, ... "
        "Backprop through time adds both: dh = dout[t] + dh_next. With dh = dout[t] the gradient stops at "
        "each step's own output, so d h[t] / d h0 is claimed exactly 0 for every t >= 1 (and d h[t] / d x[s] "
        "for s < t): a whole path of the graph is missing.",
        "missing_path", ("h0", "x"), ("h",),
        "dh = dhs[t] + dh_next: add the gradient carried back from step t + 1"),
    OperatorLesson(
        "embedding-assign", "embedding backward that assigns instead of accumulating repeated indices",
        "embedding_assign",
        "out = W[idx] copies row idx[k] of W for every token k; a token that appears twice reads the same row "
        "twice, so that row's gradient is the sum of both tokens' gradients. `dW[idx] = dout` writes one "
        "row per token, and a repeated index keeps only its last write. Every unit cotangent on a repeated "
        "token's output is lost unless that token came last.",
        "overwrites_accumulation", ("W",), ("out",),
        "np.add.at(dW, idx, dout): an unbuffered += that adds repeated indices"),
    OperatorLesson(
        "double-backward-detached", "double backward through a detached activation", "tanh_layer_grad_detached",
        "f here is itself a backward pass: the VJP (gx, gW) = (u @ W.T, x.T @ u), u = v * (1 - h**2), h = "
        "tanh(x @ W), of a tanh layer. Differentiating it (a gradient penalty, a Hessian-vector product) "
        "must go through h too: d(1 - h**2) = -2 h (1 - h**2) dz. A first backward that used h.detach(), or "
        "ran under no_grad, keeps u's dependence on v but loses the path through h: the second-order "
        "gradients w.r.t. x and W keep only their direct terms. d gx / d x and d gW / d W have no direct term, "
        "so those blocks come out exactly 0.",
        "missing_path", ("x", "W"), ("gx", "gW"),
        "differentiate through h: dz = du * v * (-2 * h) * (1 - h**2), then dx += dz @ W.T, dW += x.T @ dz "
        "(in autograd: compute the first backward with create_graph=True, no detach)"),
    OperatorLesson(
        "attention-missing-scale", "attention backward without the 1/sqrt(d) on the key path",
        "attention_missing_scale",
        "S = Q K^T / sqrt(d), so dK = dS^T Q / sqrt(d), exactly as dQ = dS K / sqrt(d). Forgetting the scale "
        "on one path makes dK, and so d out / d Wk, sqrt(d) = 2 times too large here (d = 4): gradcheck reads "
        "the exact ratio. dx mixes the right query path with the wrong key path, so it is off by no single "
        "factor.",
        "factor_two", ("Wk",), ("out",), "dK = dS.T @ Q * scale, like dQ"),
    OperatorLesson(
        "lstm-no-forget-gate", "LSTM backward without the forget gate on the cell path", "lstm_step_no_forget_gate",
        "c = f * c_prev + i * g, so dc_prev = dc * f. Writing dc_prev = dc passes the cell gradient back as if "
        "the forget gate were 1. Each c_prev[n, k] is off by its own factor 1/f[n, k] (the Jacobian blocks "
        "d h / d c_prev and d c / d c_prev are diagonal, with a different error on each entry): no constant "
        "factor, no low rank, so no pattern is named, but the check fails and points at c_prev (out1 is the "
        "cell state c, out0 the hidden state h).",
        None, ("c_prev",), ("out0", "out1"), "dc_prev = dc * f"),
    OperatorLesson(
        "layernorm-batch-axis", "layernorm backward reducing over the batch axis", "layernorm_batch_axis",
        "Layer norm normalises each sample over its features: the mean and variance are per row, and the "
        "backward's sums run over the last axis. A backward copied from batchnorm sums over axis 0, mixing "
        "samples that never interact: it claims gradients d out[i] / d x[j] between different rows, whose "
        "true value is 0, and divides by the batch size instead of the feature count.",
        None, ("x",), ("out",), "axis = -1: the reductions over the features, D = x.shape[-1]"),
    OperatorLesson(
        "maxpool-grad-to-window", "maxpool backward sending the gradient to the whole window",
        "maxpool2d_grad_to_window",
        "max over a 2x2 window depends on its maximum only: the derivative is 1 at the argmax and 0 at the "
        "other three elements. Routing dout to every element of the window claims a derivative of 1 where "
        "the true one is 0 (three entries of four in each window's column of the Jacobian).",
        None, ("x",), ("out",), "a mask with a single 1 at the window's argmax (np.put_along_axis)"),
    OperatorLesson(
        "avgpool-wrong-count", "avgpool backward dividing by the wrong count", "avgpool2d_wrong_count",
        "The mean of a 2x2 window gives each of its 4 elements a derivative of 1/4. Dividing by the window's "
        "width (2) instead of its size (4) doubles every entry: a constant factor, which gradcheck names.",
        "factor_two", ("x",), ("out",), "count = POOL * POOL, the number of elements in a window"),
    OperatorLesson(
        "conv-dx-no-flip", "conv backward without the kernel flip in dx", "conv2d_dx_no_flip",
        "A conv layer computes a cross-correlation; its dx is the full convolution of dout with the kernel "
        "ROTATED by 180 degrees (in and out channels swapped). Without the rotation each input pixel gets its "
        "gradient through the mirrored weights: right only for kernels symmetric under the rotation. dw and db "
        "do not use it and stay right.",
        None, ("x",), ("out",), "w_t = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]"),
    OperatorLesson(
        "linear-bias-first-sample", "linear backward with the bias gradient of the first sample only",
        "linear_bias_first_sample",
        "b is added to every row of x @ W, so db is the sum of dout over the batch. dout[0] is the first "
        "row's contribution only (code written for a batch of one). Each Jacobian row of a later sample "
        "claims d out[n, j] / d b[j] = 0 where the truth is 1. (The network lesson bias-one-sample is the same "
        "bug seen through a whole network's loss.)",
        "overwrites_accumulation", ("b",), ("out",), "db = dout.sum(axis=0)"),
)

__all__ = ["OperatorLesson", "OPERATOR_LESSONS", "Branch", "find_branch"]
