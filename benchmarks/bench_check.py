"""Speed (and sensitivity) of gradcheck against torch, JAX and scipy, measured in one run.

    python benchmarks/bench_check.py            # P = 99 / 979 / 9955, thresholds at P = 979
    python benchmarks/bench_check.py --quick    # P = 99 / 979, few repeats, small thresholds (< 60 s)

A float64 tanh MLP ``8-h-h-4`` (h = 5 / 25 / 93), MSE, batch 16. Every tool checks the same
network; the runs are interleaved (each repeat times every tool once, in turn) and the table
shows medians, and ratios to a bare loop of 2P loss evaluations made in the same run (the cost
floor of any black-box central-difference check). BLAS is pinned to one thread (threadpoolctl)
so the timings do not depend on what else the machine runs; the BLAS in use is printed.

Tools: ``ours full`` is ``gradcheck.check(fn, params, X, y, scheme="central")`` with a loss-only
function (``loss_fn=``) and without (then every finite difference calls fn, backward included);
``ours structured`` is ``oracle="structured"``; ``ours fast`` is ``mode="fast"`` (not a
per-element verdict). torch: ``torch.autograd.gradcheck`` (defaults, and ``fast_mode=True``) on
the same MLP written in torch; JAX: ``jax.test_util.check_grads(order=1)`` (x64); scipy:
``scipy.optimize.check_grad`` (forward differences, a norm, no verdict).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sensitivity import MLP, fmt, thresholds

import gradcheck

HIDDEN = {99: 5, 979: 25, 9955: 93}


def two_p_loop(model: MLP, p, X, y) -> Callable[[], None]:
    """2P loss calls, each element moved in place on a private copy (central differences' floor)."""
    def run():
        w = {k: v.copy() for k, v in p.items()}
        for v in w.values():
            flat = v.reshape(-1)
            for i in range(flat.size):
                x = flat[i]
                h = 6.0554544523933395e-06 * max(1.0, abs(x))
                flat[i] = x + h
                model.loss(w, X, y)
                flat[i] = x - h
                model.loss(w, X, y)
                flat[i] = x
    return run


def torch_tools(model: MLP, p, X, y) -> dict[str, Callable[[], Any]]:
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(1)
    keys = list(p)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    L = len(model.widths) - 1

    def f(*ts):
        a = Xt
        for i in range(L):
            z = a @ ts[2 * i] + ts[2 * i + 1]
            a = torch.tanh(z) if i < L - 1 else z
        return ((a - yt) ** 2).sum() / Xt.shape[0]

    inputs = tuple(torch.tensor(p[k], dtype=torch.float64, requires_grad=True) for k in keys)
    return {"torch gradcheck": lambda: torch.autograd.gradcheck(f, inputs),
            "torch fast_mode": lambda: torch.autograd.gradcheck(f, inputs, fast_mode=True)}


def jax_tools(model: MLP, p, X, y) -> dict[str, Callable[[], Any]]:
    try:
        import jax
        import jax.numpy as jnp
        from jax.test_util import check_grads
    except ImportError:
        return {}
    jax.config.update("jax_enable_x64", True)
    L = len(model.widths) - 1
    Xj, yj = jnp.asarray(X), jnp.asarray(y)

    def f(ps):
        a = Xj
        for i in range(1, L + 1):
            z = a @ ps[f"W{i}"] + ps[f"b{i}"]
            a = jnp.tanh(z) if i < L else z
        return jnp.sum((a - yj) ** 2) / Xj.shape[0]

    args = ({k: jnp.asarray(v) for k, v in p.items()},)
    return {"jax check_grads": lambda: check_grads(f, args, order=1)}


def scipy_tools(model: MLP, p, X, y) -> dict[str, Callable[[], Any]]:
    try:
        from scipy.optimize import check_grad
    except ImportError:
        return {}
    keys = list(p)
    shapes, sizes = [p[k].shape for k in keys], [p[k].size for k in keys]
    starts = np.cumsum([0] + sizes)

    def unflat(v):
        return {k: v[a:b].reshape(s) for k, s, a, b in zip(keys, shapes, starts[:-1], starts[1:])}

    x0 = np.concatenate([p[k].ravel() for k in keys])
    return {"scipy check_grad": lambda: check_grad(
        lambda v: model.loss(unflat(v), X, y),
        lambda v: np.concatenate([model(unflat(v), X, y)[1][k].ravel() for k in keys]), x0)}


def our_tools(model: MLP, p, X, y) -> dict[str, Callable[[], Any]]:
    spec = model.spec

    def verdict(**options):
        def run():
            r = gradcheck.check(model, p, X, y, symbolic=False, **options)
            assert r.passed, str(r)  # correct code: a failure here would be a false alarm
            return r
        return run
    return {"ours full (loss_fn)": verdict(scheme="central", loss_fn=model.loss),
            "ours full (fn only)": verdict(scheme="central"),
            "ours structured": verdict(spec=spec, oracle="structured"),
            "ours fast": verdict(mode="fast", loss_fn=model.loss)}


def timings(P: int, repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Median seconds per tool, interleaved over ``repeats`` rounds; plus facts about the run."""
    model = MLP((8, HIDDEN[P], HIDDEN[P], 4))
    p = model.init()
    X, y = model.batch()
    assert sum(v.size for v in p.values()) == P
    tools = {"2P loop": two_p_loop(model, p, X, y), **our_tools(model, p, X, y),
             **torch_tools(model, p, X, y), **jax_tools(model, p, X, y), **scipy_tools(model, p, X, y)}
    for run in tools.values():  # warm up: imports, JIT caches, first-call allocations
        run()
    seconds: dict[str, list[float]] = {k: [] for k in tools}
    for _ in range(repeats):
        for name, run in tools.items():
            t = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - t)
    facts: dict[str, Any] = {}
    r = gradcheck.check(model, p, X, y, scheme="central", loss_fn=model.loss, symbolic=False)
    facts["calls full"] = r.calls
    r = gradcheck.check(model, p, X, y, mode="fast", loss_fn=model.loss, symbolic=False)
    facts["calls fast"] = r.calls
    tracemalloc.start()
    gradcheck.check(model, p, X, y, spec=model.spec, oracle="structured", symbolic=False)
    facts["structured peak MiB"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {k: float(np.median(v)) for k, v in seconds.items()}, facts


def blas() -> str:
    try:
        from threadpoolctl import threadpool_info
        info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    core = os.environ.get("OPENBLAS_CORETYPE")
    parts = [f"{i.get('internal_api')} {i.get('version')} kernel {i.get('architecture')}, "
             f"{i.get('num_threads')} thread(s)" for i in info]
    return "; ".join(parts) + (f"; OPENBLAS_CORETYPE={core}" if core else "; OPENBLAS_CORETYPE not set")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gradcheck speed and sensitivity vs torch, JAX, scipy")
    parser.add_argument("--quick", action="store_true", help="smoke run: P = 99 / 979, 3 repeats (< 60 s)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds per size")
    parser.add_argument("--no-thresholds", action="store_true", help="timings only")
    args = parser.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(1)
    except ImportError:  # pragma: no cover - the dev extra has it
        limit = None
        print("warning: threadpoolctl missing, BLAS threads not pinned")
    t0 = time.perf_counter()
    sizes = [99, 979] if args.quick else [99, 979, 9955]
    print(f"# gradcheck benchmark ({'quick' if args.quick else 'full'})\n")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}; BLAS: {blas()}\n")
    results, facts = {}, {}
    for P in sizes:
        repeats = args.repeats or (3 if args.quick else {99: 21, 979: 9, 9955: 3}[P])
        results[P], facts[P] = timings(P, repeats)
    names = list(results[sizes[0]])
    print("median seconds per check (ratio to the 2P loop in the same run); tanh MLP 8-h-h-4, MSE, batch 16, "
          "float64, 1 BLAS thread\n")
    print("| tool | " + " | ".join(f"P = {P}" for P in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name in names:
        cells = [f"{results[P][name]:.4f} ({results[P][name] / results[P]['2P loop']:.2f}x)"
                 if name in results[P] else "-" for P in sizes]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if "torch gradcheck" in names:
        print("| torch gradcheck / ours structured | " + " | ".join(
            f"{results[P]['torch gradcheck'] / results[P]['ours structured']:.1f}x faster" for P in sizes) + " |")
    print("| calls, ours full / fast | " + " | ".join(f"{facts[P]['calls full']} / {facts[P]['calls fast']}"
                                                    for P in sizes) + " |")
    print("| peak memory, ours structured | " + " | ".join(f"{facts[P]['structured peak MiB']:.1f} MiB"
                                                          for P in sizes) + " |")
    if not args.no_thresholds:
        hidden = 5 if args.quick else 25
        print(f"\nsmallest relative error flagged (half-decade grid 1e-1 ... 1e-13), 8-{hidden}-{hidden}-4 MLP, "
              "in W2: one median-magnitude element x (1 + delta), or the whole tensor x (1 + delta)\n")
        print("| checker | one element | whole tensor |\n|---|---|---|")
        for name, (one, whole) in thresholds(hidden).items():
            print(f"| {name} | {fmt(one)} | {fmt(whole)} |")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    if limit is not None:
        limit.restore_original_limits()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
