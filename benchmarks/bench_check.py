"""Speed (and sensitivity) of gradcheck against torch, JAX and scipy, measured in one run.

    python benchmarks/bench_check.py            # P = 99 / 979 / 9955, thresholds at P = 979
    python benchmarks/bench_check.py --quick    # P = 99 / 979, few repeats, small thresholds (< 60 s)
    python benchmarks/bench_check.py --large    # adds P = 99811 / 999955 (h = 309 / 993), ~2 min more

A float64 tanh MLP ``8-h-h-4`` (h = 5 / 25 / 93), MSE, batch 16. Every tool checks the same
network; the runs are interleaved (each repeat times every tool once, in turn) and the table
shows medians, and ratios to a bare loop of 2P loss evaluations made in the same run (the cost
floor of any black-box central-difference check). BLAS is pinned to one thread (threadpoolctl)
so the timings do not depend on what else the machine runs; the BLAS in use is printed.

Tools (every one of ours with ``symbolic=False, quiet=True``): ``ours full`` is
``gradcheck.check(fn, params, X, y, scheme="central")`` with a loss-only function
(``loss_fn=``) and without (then every finite difference calls fn, backward included);
``ours structured`` is ``spec=spec, oracle="structured"`` (central differences); ``ours fast``
is ``mode="fast", loss_fn=`` (not a per-element verdict). torch: ``torch.autograd.gradcheck``
(defaults, and ``fast_mode=True``) on the same MLP written in torch; JAX: ``jax.test_util.check_grads(order=1)`` (x64); scipy:
``scipy.optimize.check_grad`` (forward differences, a norm, no verdict).

Large sizes (``--large``: P = 99811 and 999955). The tools whose cost is about 2P loss calls
(the 2P loop, ours full, torch.autograd.gradcheck, scipy) would take minutes to hours there (the
2P loop alone is ~3 h at P = 1e6), so their cells are **estimated**, marked ``est.``: the 2P loop
from the median cost of one loss call measured at that size, times 2P; each other per-element
tool from that estimate times its ratio to the 2P loop measured at the largest measured size.
The structured oracle, fast mode, torch's fast mode and JAX's check_grads are measured.
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

HIDDEN = {99: 5, 979: 25, 9955: 93, 99811: 309, 999955: 993}
#: sizes where the per-element black-box tools are estimated, not run (see the module doc)
LARGE = (99811, 999955)
#: tools measured at the large sizes (the others cost ~2P loss calls: estimated)
MEASURED_LARGE = ("ours structured", "ours fast", "torch fast_mode", "jax check_grads")


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
            r = gradcheck.check(model, p, X, y, symbolic=False, quiet=True, **options)
            assert r.passed, str(r)  # correct code: a failure here would be a false alarm
            return r
        return run
    return {"ours full (loss_fn)": verdict(scheme="central", loss_fn=model.loss),
            "ours full (fn only)": verdict(scheme="central"),
            "ours structured": verdict(spec=spec, oracle="structured"),
            "ours fast": verdict(mode="fast", loss_fn=model.loss)}


def interleaved(tools: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds of every run of every tool: each repeat runs each tool once, in turn (so a slow
    spell of a shared machine hits them all alike); callers take medians."""
    seconds: dict[str, list[float]] = {k: [] for k in tools}
    for _ in range(repeats):
        for name, run in tools.items():
            t = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - t)
    return seconds


def loss_call_seconds(model: MLP, p, X, y, calls: int = 30) -> float:
    """Median seconds of one loss call (the unit of the 2P loop)."""
    seconds = []
    for _ in range(calls):
        t = time.perf_counter()
        model.loss(p, X, y)
        seconds.append(time.perf_counter() - t)
    return float(np.median(seconds))


def fast_peak_vectors(model: MLP, p, X, y) -> float:
    """Peak traced memory of one fast-mode check, in parameter vectors (P float64 values)."""
    P = sum(v.size for v in p.values())
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    gradcheck.check(model, p, X, y, mode="fast", loss_fn=model.loss, symbolic=False, quiet=True)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak / (8 * P)


def timings(P: int, repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Median seconds per tool, interleaved over ``repeats`` rounds; plus facts about the run.
    At the :data:`LARGE` sizes only :data:`MEASURED_LARGE` run; the 2P loop's cost is measured per
    loss call (``facts["loss call"]``) and the other tools are estimated by :func:`main`."""
    model = MLP((8, HIDDEN[P], HIDDEN[P], 4))
    p = model.init()
    X, y = model.batch()
    assert sum(v.size for v in p.values()) == P
    tools = {"2P loop": two_p_loop(model, p, X, y), **our_tools(model, p, X, y),
             **torch_tools(model, p, X, y), **jax_tools(model, p, X, y), **scipy_tools(model, p, X, y)}
    large = P in LARGE
    if large:
        tools = {k: v for k, v in tools.items() if k in MEASURED_LARGE}
    for run in tools.values():  # warm up: imports, JIT caches, first-call allocations
        run()
    seconds = interleaved(tools, repeats)
    facts: dict[str, Any] = {"loss call": loss_call_seconds(model, p, X, y)}
    if not large:
        r = gradcheck.check(model, p, X, y, scheme="central", loss_fn=model.loss, symbolic=False, quiet=True)
        facts["calls full"] = r.calls
    r = gradcheck.check(model, p, X, y, mode="fast", loss_fn=model.loss, symbolic=False, quiet=True)
    facts["calls fast"] = r.calls
    tracemalloc.start()
    gradcheck.check(model, p, X, y, spec=model.spec, oracle="structured", symbolic=False, quiet=True)
    facts["structured peak MiB"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    facts["fast peak vectors"] = fast_peak_vectors(model, p, X, y)
    return {k: float(np.median(v)) for k, v in seconds.items()}, facts


def estimate_large(results: dict[int, dict[str, float]], facts: dict[int, dict[str, Any]],
                   names: list[str]) -> dict[int, set[str]]:
    """Fill in the per-element black-box tools at the :data:`LARGE` sizes (see the module doc):
    the 2P loop from the measured loss call, the others at their ratio to it at the largest
    measured size. Returns the estimated cells per size."""
    measured = [P for P in results if P not in LARGE]
    ref = max(measured) if measured else None
    estimated: dict[int, set[str]] = {}
    for P in results:
        if P not in LARGE:
            continue
        loop = 2 * P * facts[P]["loss call"]
        results[P]["2P loop"] = loop
        estimated[P] = {"2P loop"}
        for name in names:
            if name in results[P] or ref is None or name not in results[ref]:
                continue
            results[P][name] = loop * results[ref][name] / results[ref]["2P loop"]
            estimated[P].add(name)
        if ref is not None and "calls full" in facts[ref]:
            facts[P]["calls full"] = f"~{2 * P + facts[ref]['calls full'] - 2 * ref} (est.)"
    return estimated


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
    parser.add_argument("--large", action="store_true",
                        help="add P = 99811 and 999955 (black-box tools estimated there, see the module doc)")
    args = parser.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(1)
    except ImportError:  # pragma: no cover - the dev extra has it
        limit = None
        print("warning: threadpoolctl missing, BLAS threads not pinned")
    t0 = time.perf_counter()
    sizes = ([99, 979] if args.quick else [99, 979, 9955]) + (list(LARGE) if args.large else [])
    print(f"# gradcheck benchmark ({'quick' if args.quick else 'full'})\n")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}; BLAS: {blas()}\n")
    results, facts = {}, {}
    for P in sizes:
        repeats = args.repeats or (3 if args.quick or P in LARGE else {99: 21, 979: 9, 9955: 3}[P])
        results[P], facts[P] = timings(P, repeats)
    names = list(results[sizes[0]])
    estimated = estimate_large(results, facts, names)
    print("median seconds per check (ratio to the 2P loop in the same run); tanh MLP 8-h-h-4, MSE, batch 16, "
          "float64, 1 BLAS thread\n")
    print("| tool | " + " | ".join(f"P = {P}" for P in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name in names:
        cells = [(f"{results[P][name]:.4g} ({results[P][name] / results[P]['2P loop']:.2f}x)"
                  + (" est." if name in estimated.get(P, ()) else "")) if name in results[P] else "-"
                 for P in sizes]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if "torch gradcheck" in names:
        print("| torch gradcheck / ours structured | " + " | ".join(
            f"{results[P]['torch gradcheck'] / results[P]['ours structured']:.1f}x faster"
            + (" est." if "torch gradcheck" in estimated.get(P, ()) else "") for P in sizes) + " |")
    print("| calls, ours full / fast | " + " | ".join(f"{facts[P].get('calls full', '-')} / {facts[P]['calls fast']}"
                                                    for P in sizes) + " |")
    print("| one loss call (ms) | " + " | ".join(f"{1e3 * facts[P]['loss call']:.3g}" for P in sizes) + " |")
    print("| peak memory, ours structured | " + " | ".join(f"{facts[P]['structured peak MiB']:.1f} MiB"
                                                          for P in sizes) + " |")
    print("| peak memory, ours fast (parameter vectors) | " + " | ".join(
        f"{facts[P]['fast peak vectors']:.1f}" for P in sizes) + " |")
    if estimated:
        print("\nest.: not run; the 2P loop is 2P x the measured median loss call at that size, the other "
              f"per-element tools its estimate x their ratio to the 2P loop at P = {max(p for p in sizes if p not in LARGE)}")
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
