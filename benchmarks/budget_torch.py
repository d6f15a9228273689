"""A ~1e6-parameter torch model checked within a time budget, with one wrong tensor caught.

Run on demand (not part of the test suite; needs torch)::

    python benchmarks/budget_torch.py [--budget 60] [--batch 32] [--hidden 1024 256] [--dtype float64]

The model is an MLP ``784 -> 1024 -> tanh -> 256 -> tanh -> 10`` (1,068,810 parameters) with
torch's default init and MSE loss on a random batch, wrapped by
``gradcheck.adapters.torch.as_fn(model, loss)`` (float64) and checked with
``gradcheck.check(fn, params, X, y, loss_fn=fn.loss, budget=BUDGET)`` three ways:

* **correct**: torch autograd's gradient as it is (must pass);
* **wrong tensor**: the gradient of one tensor (``--wrong``, default ``2.weight``) scaled by
  ``1 + 1e-4`` (must fail, naming that tensor);
* **wrong element**: one element of ``0.weight`` off by ``1e-4`` relative (caught by the sample
  only with the probability the coverage line states; the directions catch it where it is large
  enough: see docs/checker.md, "Checking within a budget").

It prints, for each: wall-clock seconds, the verdict, the coverage line and the calls.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np

import gradcheck


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 256])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--wrong", default="2.weight", help="the tensor whose gradient is scaled by 1 + 1e-4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: on a busy 2-core machine 2 threads made each call ~20x slower)")
    parser.add_argument("--cases", nargs="+", default=["correct", "tensor", "element"])
    args = parser.parse_args()
    import torch

    from gradcheck.adapters import torch as gc_torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    widths = [784, *args.hidden, 10]
    layers: list = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    model = torch.nn.Sequential(*layers[:-1])
    fn, params = gc_torch.as_fn(model, torch.nn.MSELoss(), dtype=args.dtype)
    rng = np.random.default_rng(args.seed)
    X, y = rng.normal(size=(args.batch, 784)), rng.normal(size=(args.batch, 10))
    size = sum(v.size for v in params.values())
    print(f"MLP {' -> '.join(map(str, widths))}: {size:,} parameters in {len(params)} tensors, {args.dtype}, "
          f"batch {args.batch}, budget {args.budget:g} s, torch threads {torch.get_num_threads()}")

    def scaled(name: str, factor: float, index: tuple | None = None):
        def wrong(p, X_, y_):
            loss, grads = fn(p, X_, y_)
            grads = dict(grads)
            g = grads[name].copy()
            if index is None:
                g *= factor
            else:
                g[index] *= factor
            grads[name] = g
            return loss, grads
        return wrong

    cases = {"correct": (fn, True), "tensor": (scaled(args.wrong, 1 + 1e-4), False),
             "element": (scaled("0.weight", 1 + 1e-4, (17, 300)), False)}
    status = 0
    for case in args.cases:
        f, expected = cases[case]
        t0 = time.perf_counter()
        result = gradcheck.check(f, params, X, y, loss_fn=fn.loss, budget=args.budget, seed=args.seed)
        seconds = time.perf_counter() - t0
        cov = result.coverage or {}
        verdict = "passed" if result.passed else f"FAILED ({result.worst_param})"
        print(f"\n[{case}] {seconds:.1f} s (budget {args.budget:g} s), {result.calls:,} calls: {verdict}")
        print(f"  {cov.get('text')}")
        print(f"  estimated full check: {cov.get('full_calls', 0):,} calls, {cov.get('full_seconds', 0):.0f} s")
        print("  " + str(result).replace("\n", "\n  "))
        ok = result.passed == expected and (expected or case != "tensor" or result.worst_param == args.wrong)
        if case != "element" and not ok:
            status = 1
        if seconds > args.budget * 1.05:
            print(f"  OVER BUDGET: {seconds:.1f} s > {args.budget:g} s")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
