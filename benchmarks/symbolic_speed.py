"""Timings of the SymPy oracle's bounds and cache: what the tests assert without a clock.

Run on demand (about 15 s on 2 cores)::

    python3 benchmarks/symbolic_speed.py [--repeats 5]

``tests/test_symbolic_network.py`` checks the *behaviour* (a cached structure is evaluated, not
rebuilt; a spec over ``max_params`` is refused before any SymPy work; a time limit stops a build
within a handful of cooperative checks; time refusals are not remembered, size refusals are) by
counting builds and clock reads, never by wall-clock thresholds, which fail on a loaded shared
machine. This script prints the seconds those behaviours take here, medians of ``--repeats`` runs
(no asserts):

* build: the first ``network_gradient`` of a structure (expression, differentiation, CSE,
  lambdify, one evaluation), with a fresh cache each time;
* cached: a later call with the same structure, another batch size and other numbers;
* too many parameters: the refusal of P = 11110 (``max_params`` = 2000);
* time limit: ``timeout=0.5`` on a 40-40-40-2 gelu/tanh network (P = 3362, a build of several
  seconds): when the refusal comes, i.e. the limit plus the overrun of the cooperative checks,
  asked twice (time refusals are not remembered: both pay);
* size limit: a ``max_terms=50`` refusal, first (builds the expression) and remembered.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gradcheck.spec import Layer, NetworkSpec
from gradcheck.symbolic import SymbolicSkipped, cache_info, clear_cache, network_gradient
from reference.network import Network


def case(spec: NetworkSpec, batch: int | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = Network(spec).init_params()
    n = batch or spec.batch
    return params, rng.standard_normal((n, spec.input_dim)), rng.standard_normal((n, spec.output_dim))


def seconds(run: Callable[[], object], repeats: int, before: Callable[[], None] = lambda: None) -> float:
    """Median wall-clock seconds of ``run()`` over ``repeats`` runs, ``before()`` untimed each time."""
    times = []
    for _ in range(repeats):
        before()
        t0 = time.perf_counter()
        try:
            run()
        except SymbolicSkipped:
            pass
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median)")
    args = parser.parse_args(argv)
    r = max(1, args.repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {load:.1f}, Python "
          f"{platform.python_version()}; medians of {r} runs\n")
    rows = []

    for spec in (NetworkSpec(3, (Layer(4, "tanh"), Layer(3, "identity")), "softmax_cross_entropy", batch=4),
                 NetworkSpec(4, (Layer(16, "tanh"), Layer(16, "tanh"), Layer(1, "identity")), "mse", batch=16)):
        p, X, y = case(spec)
        build = seconds(lambda: network_gradient(spec, p, X, y), r, before=clear_cache)  # noqa: B023 - called at once
        other = spec.replace(batch=9, seed=7)
        p2, X2, y2 = case(other, batch=9, seed=9)
        cached = seconds(lambda: network_gradient(other, p2, X2, y2), r)  # noqa: B023 - called at once
        rows += [(f"build, P = {spec.n_params} ({spec.label()})", build),
                 (f"cached call, same structure, batch 9 (P = {spec.n_params})", cached)]

    big = NetworkSpec(100, (Layer(100, "tanh"), Layer(10, "identity")), "mse")
    p, X, y = case(big)
    rows.append(("refused: P = 11110 > max_params", seconds(lambda: network_gradient(big, p, X, y), r)))

    slow = NetworkSpec(40, (Layer(40, "gelu"), Layer(40, "tanh"), Layer(2, "identity")), "mse")
    p, X, y = case(slow)
    clear_cache()
    for label in ("refused: timeout=0.5 s, P = 3362, first ask", "refused: timeout=0.5 s, asked again"):
        rows.append((label, seconds(lambda: network_gradient(slow, p, X, y, timeout=0.5, max_params=10**5), 1)))

    small = NetworkSpec(8, (Layer(8, "tanh"), Layer(1, "identity")), "mse")
    p, X, y = case(small)
    rows.append(("refused: max_terms=50, first ask", seconds(lambda: network_gradient(small, p, X, y, max_terms=50),
                                                             r, before=clear_cache)))
    rows.append(("refused: max_terms=50, remembered", seconds(lambda: network_gradient(small, p, X, y, max_terms=50), r)))

    width = max(len(label) for label, _ in rows)
    print(f"| {'what':{width}s} | seconds |\n|{'-' * (width + 2)}|---------|")
    for label, s in rows:
        print(f"| {label:{width}s} | {s:7.4f} |")
    print(f"\ncache: {cache_info()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
