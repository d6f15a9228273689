"""Cost of an operator check: gradcheck against torch and JAX on the same operators, in one run.

    python benchmarks/operator_cost.py          # linear, softmax, conv2d, batchnorm, layernorm,
                                                # attention, lstm_step, embedding (< 2 min on 2 cores)
    python benchmarks/operator_cost.py --all    # every operator of gradcheck.teach.operators
    python benchmarks/operator_cost.py --ops linear rnn

The table of docs/operators.md ("Cost against torch and jax"). Every operator of
``gradcheck.teach.operators.OPERATORS`` is a numpy ``f``, ``vjp`` and ``jvp``; inputs are
``make_inputs(np.random.default_rng(0), np.float64)`` (integer inputs, the embedding's indices,
are constants). Each tool checks the same numpy functions, wrapped so that every call of ``f`` and
of the derivative is counted; seconds are the wall time of one check (after one untimed warm-up
of the same check, so imports and JAX dispatch caches are not charged):

- ``gradcheck vjp`` / ``gradcheck jvp``: ``gradcheck.check_vjp(f, vjp, inputs)`` and
  ``gradcheck.check_jvp(f, jvp, inputs)`` with default options; the mode (``jacobian`` or
  ``random``) is ``result.operator["mode"]``, and the counts are checked against
  ``result.operator["f_calls"]`` / ``["derivative_calls"]``.
- ``torch gradcheck`` / ``torch fast_mode``: a ``torch.autograd.Function`` whose forward calls ``f``
  and whose backward calls ``vjp`` (tuple outputs flattened, dict outputs in key order), checked by
  ``torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)``, and with
  ``fast_mode=True``.
- ``jax rev`` / ``jax fwd``: ``jax.custom_vjp`` and ``jax.custom_jvp`` functions whose primal and
  rules call ``f`` / ``vjp`` / ``jvp`` through ``jax.pure_callback`` (x64, no jit), checked by
  ``jax.test_util.check_grads(fun, args, order=1, modes=("rev",))`` and ``modes=("fwd",)``.

P is the number of differentiated input elements, M of floating output elements; 2P calls of
``f`` is the cost of one full central-difference Jacobian (torch's floor). A combination that
cannot run is listed with the reason. BLAS and torch are pinned to one thread.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gradcheck
from gradcheck.teach.operators import OPERATORS, Operator

DEFAULT_OPS = ("linear", "softmax", "conv2d", "batchnorm", "layernorm", "attention", "lstm_step", "embedding")
TORCH_TOL = {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3}


class Counted:
    """A function that counts its calls."""

    def __init__(self, fn: Callable) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.fn(*args)


def flat_outputs(out: Any) -> list[np.ndarray]:
    """f's outputs as a list of arrays: one array, a tuple in order, a dict in key order."""
    if isinstance(out, dict):
        return [np.asarray(out[k]) for k in out]
    if isinstance(out, (tuple, list)):
        return [np.asarray(v) for v in out]
    return [np.asarray(out)]


def rebuild(like: Any, arrays: list[Any]) -> Any:
    """``arrays`` in the structure of ``like`` (f's output)."""
    if isinstance(like, dict):
        return dict(zip(like, arrays))
    if isinstance(like, (tuple, list)):
        return tuple(arrays)
    return arrays[0]


def short(exc: BaseException, width: int = 90) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= width else text[: width - 3] + "..."


# -- the tools; each returns a runner: () -> (f calls, derivative calls, mode, verdict) ------------------
def ours(op: Operator, inputs: dict, kind: str) -> Callable[[], tuple[int, int, str, str]]:
    def run():
        f, d = Counted(op.f), Counted(op.vjp if kind == "vjp" else op.jvp)
        check = gradcheck.check_vjp if kind == "vjp" else gradcheck.check_jvp
        result = check(f, d, inputs)
        info = result.operator
        mode = info["mode"]
        if (info["f_calls"], info["derivative_calls"]) != (f.calls, d.calls):
            mode += f" (reported {info['f_calls']} / {info['derivative_calls']})"
        verdict = "pass" if result.passed else f"FAIL: {result.worst.label() if result.worst else result.problems}"
        return f.calls, d.calls, mode, verdict
    return run


def torch_tool(op: Operator, inputs: dict, fast: bool) -> Callable[[], tuple[int, int, str, str]]:
    import torch

    names = [k for k, v in inputs.items() if v.dtype.kind == "f"]
    constants = {k: v for k, v in inputs.items() if k not in names}
    like = op.f(inputs)  # the output structure (not counted)
    f, vjp = Counted(op.f), Counted(op.vjp)

    class Op(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *ts):
            ctx.save_for_backward(*ts)
            point = {**constants, **{k: t.detach().numpy().copy() for k, t in zip(names, ts)}}
            return tuple(torch.from_numpy(np.ascontiguousarray(a).copy()) for a in flat_outputs(f(point)))

        @staticmethod
        def backward(ctx, *grads):
            point = {**constants, **{k: t.detach().numpy().copy() for k, t in zip(names, ctx.saved_tensors)}}
            cot = rebuild(like, [g.detach().numpy().copy() for g in grads])
            out = vjp(point, cot)
            return tuple(None if out.get(k) is None else torch.from_numpy(np.ascontiguousarray(out[k]).copy())
                         for k in names)

    def fn(*ts):
        outs = Op.apply(*ts)
        return outs[0] if len(outs) == 1 else outs

    def run():
        f.calls = vjp.calls = 0
        ts = tuple(torch.tensor(inputs[k], dtype=torch.float64, requires_grad=True) for k in names)
        try:
            torch.autograd.gradcheck(fn, ts, fast_mode=fast, **TORCH_TOL)
            verdict = "pass"
        except torch.autograd.gradcheck.GradcheckError as exc:
            verdict = f"FAIL: {short(exc)}"
        return f.calls, vjp.calls, "fast_mode" if fast else "full", verdict
    return run


def jax_tool(op: Operator, inputs: dict, mode: str) -> Callable[[], tuple[int, int, str, str]]:
    import jax
    import jax.numpy as jnp
    from jax.test_util import check_grads

    names = [k for k, v in inputs.items() if v.dtype.kind == "f"]
    constants = {k: v for k, v in inputs.items() if k not in names}
    like = op.f(inputs)  # the output structure (not counted)
    outs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in flat_outputs(like)]
    ins = [jax.ShapeDtypeStruct(inputs[k].shape, inputs[k].dtype) for k in names]
    single = len(outs) == 1

    def point(xs):
        return {**constants, **{k: np.array(x, copy=True) for k, x in zip(names, xs)}}

    f, d = Counted(op.f), Counted(op.vjp if mode == "rev" else op.jvp)

    def np_f(*xs):
        return tuple(flat_outputs(f(point(xs))))

    def primal(*xs):
        r = jax.pure_callback(np_f, tuple(outs), *xs)
        return r[0] if single else tuple(r)

    if mode == "rev":
        def np_vjp(*args):
            xs, cts = args[: len(names)], args[len(names):]
            g = d(point(xs), rebuild(like, [np.array(c) for c in cts]))
            return tuple(np.zeros(inputs[k].shape) if g.get(k) is None else np.asarray(g[k], np.float64)
                         for k in names)

        @jax.custom_vjp
        def fun(*xs):
            return primal(*xs)

        def fwd(*xs):
            return primal(*xs), xs

        def bwd(xs, ct):
            cts = (ct,) if single else tuple(ct)
            return tuple(jax.pure_callback(np_vjp, tuple(ins), *xs, *cts))

        fun.defvjp(fwd, bwd)
    else:
        def np_jvp(*args):
            xs, ts = args[: len(names)], args[len(names):]
            t = d(point(xs), {k: np.array(v) for k, v in zip(names, ts)})
            return tuple(flat_outputs(t))

        @jax.custom_jvp
        def fun(*xs):
            return primal(*xs)

        @fun.defjvp
        def fun_jvp(xs, ts):
            tout = jax.pure_callback(np_jvp, tuple(outs), *xs, *ts)
            return primal(*xs), (tout[0] if single else tuple(tout))

    args = tuple(jnp.asarray(inputs[k]) for k in names)

    def run():
        f.calls = d.calls = 0
        try:
            check_grads(fun, args, order=1, modes=(mode,))
            verdict = "pass"
        except AssertionError as exc:
            verdict = f"FAIL: {short(exc)}"
        return f.calls, d.calls, mode, verdict
    return run


def tools(op: Operator, inputs: dict) -> dict[str, Callable[[], tuple[int, int, str, str]] | str]:
    """Runner per tool, or the reason it cannot run."""
    out: dict[str, Any] = {"gradcheck check_vjp": ours(op, inputs, "vjp"), "gradcheck check_jvp": ours(op, inputs, "jvp")}
    for name, make in [("torch gradcheck", lambda: torch_tool(op, inputs, False)),
                       ("torch gradcheck fast_mode", lambda: torch_tool(op, inputs, True)),
                       ("jax check_grads rev", lambda: jax_tool(op, inputs, "rev")),
                       ("jax check_grads fwd", lambda: jax_tool(op, inputs, "fwd"))]:
        try:
            out[name] = make()
        except ImportError as exc:
            out[name] = f"not installed ({exc.name})"
    return out


def measure(run: Callable[[], tuple[int, int, str, str]]) -> tuple[int, int, str, str, float] | str:
    try:
        run()  # warm-up: imports, JAX dispatch caches, torch's first autograd call
        t = time.perf_counter()
        f_calls, d_calls, mode, verdict = run()
        return f_calls, d_calls, mode, verdict, time.perf_counter() - t
    except Exception as exc:  # the tool cannot check this operator: say why
        return short(exc)


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every operator of gradcheck.teach.operators")
    parser.add_argument("--ops", nargs="+", choices=sorted(OPERATORS), help="these operators")
    args = parser.parse_args(argv)
    names = list(OPERATORS) if args.all else (args.ops or list(DEFAULT_OPS))
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(1)
    except ImportError:  # pragma: no cover - the dev extra has it
        limit = None
        print("warning: threadpoolctl missing, BLAS threads not pinned")
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
    except ImportError:
        pass
    t0 = time.perf_counter()
    print("# operator check cost: gradcheck vs torch vs JAX\n")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"numpy {np.__version__}, torch {version('torch')}, jax {version('jax')}, "
          f"gradcheck {getattr(gradcheck, '__version__', '?')}; 1 BLAS / torch thread")
    print(f"uptime (start): {load()}\n")
    print("float64, inputs make_inputs(default_rng(0)); calls per check (counted wrappers); seconds of one check "
          "after a warm-up\n")
    print("| operator | P | M | tool / mode | calls of f | calls of the derivative | seconds | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    ratios: dict[str, list[tuple[float, float]]] = {}
    failures: list[str] = []
    for name in names:
        op = OPERATORS[name]
        inputs = op.make_inputs(np.random.default_rng(0), np.float64)
        P = sum(v.size for v in inputs.values() if v.dtype.kind == "f")
        M = sum(a.size for a in flat_outputs(op.f(inputs)) if a.dtype.kind in "fc")
        for tool, run in tools(op, inputs).items():
            got = run if isinstance(run, str) else measure(run)
            if isinstance(got, str):
                failures.append(f"{name} / {tool}: {got}")
                print(f"| {name} | {P} | {M} | {tool} | - | - | - | could not run: {got} |")
                continue
            f_calls, d_calls, mode, verdict, seconds = got
            forward_mode = tool.endswith(("jvp", "fwd"))
            ratios.setdefault(tool, []).append((f_calls / (2 * P), d_calls / (P if forward_mode else M)))
            label = f"{tool.rsplit(' ', 1)[0] if tool.endswith(' ' + mode) else tool} / {mode}"
            print(f"| {name} | {P} | {M} | {label} | {f_calls} | {d_calls} | {seconds:.3f} | {verdict} |")
    print("\nmedians over the operators: (calls of f) / 2P, 2P = one central-difference Jacobian (torch's floor); "
          "(calls of the derivative) / M for a VJP, / P for a JVP\n")
    print("| tool | median f calls / 2P | median derivative calls / M or P | operators |\n|---|---|---|---|")
    for tool, r in ratios.items():
        print(f"| {tool} | {np.median([a for a, _ in r]):.2f} | {np.median([b for _, b in r]):.2f} | {len(r)} |")
    print("\nwhat each tool checks:\n"
          "- torch gradcheck: the full Jacobian (2P calls of f, one backward per output element, twice: the\n"
          "  second pass checks reentrancy), every entry against fixed atol=1e-5, rtol=1e-3; fast_mode: one\n"
          "  random projection u^T J v, numerically and by one backward.\n"
          "- jax check_grads (order 1): one random direction per mode; rev compares the scalar <t, J^T c>\n"
          "  with <J t, c>, fwd the vector J t, against central differences (eps 1e-4), per-dtype tolerance.\n"
          "- gradcheck check_vjp: the full Jacobian (a unit cotangent per output element; f's values memoized,\n"
          "  so the rows share about 2P calls of f) with a per-element error model, plus one dense random\n"
          "  cotangent, when M <= 256; else 3 random cotangents. check_jvp: every column (a unit tangent per\n"
          "  input element, each its own check with its own noise and rounding probes) when P <= 64, else\n"
          "  one random tangent per input and one over all inputs.")
    if failures:
        print("\ncould not run:\n" + "\n".join(f"- {x}" for x in failures))
    print(f"\nuptime (end): {load()}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    if limit is not None:
        limit.restore_original_limits()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
