"""Wall time of the structure-aware oracle against black-box finite differences on a small CNN.

    python benchmarks/structured_cnn.py              # 3 interleaved repeats, about 3 minutes
    python benchmarks/structured_cnn.py --quick      # 1 repeat, about 1 minute

The network: input 3x16x16, ``Conv2d(8, 3, padding=1, relu) -> MaxPool2d(2) -> BatchNorm() ->
Flatten() -> Layer(10)``, softmax cross-entropy, batch 16, float64 (P = 5370), the numpy reference
(``reference.network.Network``). Timed, each a full per-element check with central differences
(``scheme="central"``, ``symbolic=False``, ``quiet=True``):

* ``structured``: ``gradcheck.check(net, params, X, y, spec=spec, oracle="structured")``;
* ``numerical``: ``oracle="numerical"``, every finite difference a call of fn (forward and backward);
* ``numerical, loss_fn=``: the same with ``loss_fn=net.loss`` (differences skip the backward pass).

The runs are interleaved (each repeat times every variant once, in turn); the table shows medians
and the ratios measured in the same run. BLAS is pinned to one thread (threadpoolctl) so the
timings do not depend on what else the machine runs.
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

from bench_check import blas, interleaved

import gradcheck
from gradcheck.compare import SAFETY
from gradcheck.spec import BatchNorm, Conv2d, Flatten, Layer, MaxPool2d, NetworkSpec
from reference.network import Network

SPEC = NetworkSpec(input_dim=(3, 16, 16), layers=(
    Conv2d(8, 3, padding=1, activation="relu"), MaxPool2d(2), BatchNorm(), Flatten(), Layer(10, "identity")),
    loss="softmax_cross_entropy", batch=16, seed=0)


def problem() -> tuple[Network, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    net = Network(SPEC)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((SPEC.batch,) + SPEC.input_shape)
    y = rng.integers(0, SPEC.output_dim, SPEC.batch)
    return net, net.init_params(), X, y


def variants(net: Network, params, X, y) -> dict[str, Callable[[], Any]]:
    def verdict(**options):
        def run():
            r = gradcheck.check(net, params, X, y, scheme="central", symbolic=False, quiet=True, **options)
            assert r.passed, str(r)  # the reference network is correct: a failure would be a false alarm
            return r
        return run
    return {"structured": verdict(spec=SPEC, oracle="structured"),
            "numerical": verdict(oracle="numerical"),
            "numerical, loss_fn=": verdict(oracle="numerical", loss_fn=net.loss)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="structure-aware oracle vs black-box differences on a small CNN")
    parser.add_argument("--quick", action="store_true", help="one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3)")
    args = parser.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(1)
    except ImportError:  # pragma: no cover - the dev extra has it
        limit = None
        print("warning: threadpoolctl missing, BLAS threads not pinned")
    t0 = time.perf_counter()
    repeats = args.repeats or (1 if args.quick else 3)
    net, params, X, y = problem()
    P = sum(v.size for v in params.values())
    print(f"# structure-aware oracle on a CNN ({repeats} repeat{'s' if repeats > 1 else ''})\n")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}; BLAS: {blas()}\n")
    print(f"network: {SPEC.label()}, P = {P}\n")
    runs = variants(net, params, X, y)
    results = {name: run() for name, run in runs.items()}      # warm up, and keep one result each
    seconds = interleaved(runs, repeats)
    median = {k: float(np.median(v)) for k, v in seconds.items()}
    tracemalloc.start()
    runs["structured"]()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print("median seconds per check (ratio to structured, same run); central differences, float64, 1 BLAS thread\n")
    print("| oracle | median seconds | every run | loss evaluations | / structured |\n|---|---|---|---|---|")
    for name in runs:
        every = ", ".join(f"{t:.3f}" for t in seconds[name])
        print(f"| {name} | {median[name]:.3f} | {every} | {results[name].calls} | "
              f"{median[name] / median['structured']:.1f}x |")
    # the two oracles estimate the same gradient: their disagreement in units of the tolerance of
    # tests/test_structured_layers.py, SAFETY x (sum of the two error bounds)
    fast, slow = results["structured"].tensors, results["numerical"].tensors
    worst = max(float(np.max(np.abs(fast[k].numerical - slow[k].numerical) / (SAFETY * (fast[k].error + slow[k].error))))
                for k in params)
    print(f"\nstructured: peak memory {peak:.1f} MiB (tracemalloc; max_bytes 32 MiB); its estimates vs the "
          f"numerical oracle's: largest |difference| / (SAFETY x sum of their error bounds) = {worst:.3f}")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    if limit is not None:
        limit.restore_original_limits()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
