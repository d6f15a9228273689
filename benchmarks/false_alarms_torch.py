"""False alarms on a correct float32 torch model whose steps cross ReLU kinks of other units.

Run on demand (not part of the test suite; needs torch)::

    python benchmarks/false_alarms_torch.py [--seeds N] [--dtype float32|float64]

The model is ``Conv2d(2, 3, 3, padding=1) -> BatchNorm2d(3) (training mode) -> ReLU -> Flatten ->
Linear(75, 2)`` with torch's default init, MSE loss, a batch of 4 images 5x5, checked with
``gradcheck.adapters.torch.as_fn(model, loss, dtype=None)`` (the model's own float32) and
``gradcheck.check(fn, params, X, y, loss_fn=fn.loss)`` with default options. torch autograd is
correct here, so every failure is a false alarm; it prints each one's explanation and the count.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gradcheck


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args()
    import torch

    from gradcheck.adapters import torch as gc_torch

    torch.set_num_threads(1)
    failures, kinks, unsettled, calls = 0, 0, 0, 0
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3),
                                    torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(3 * 5 * 5, 2))
        X, y = torch.randn(4, 2, 5, 5).numpy(), torch.randn(4, 2).numpy()
        fn, params = gc_torch.as_fn(model, torch.nn.MSELoss(), dtype=None if args.dtype == "float32" else "float64")
        result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
        kinks += sum(t.n_kinks for t in result.tensors.values())
        unsettled += sum(t.n_unsettled for t in result.tensors.values())
        calls += result.calls
        if not result.passed:
            failures += 1
            print(f"seed {seed}: FALSE ALARM\n{result}\n")
    print(f"{args.dtype}: {failures} false alarm(s) in {args.seeds} correct models; {kinks} kink and "
          f"{unsettled} unsettled elements left out; {calls / args.seeds:.0f} calls per check; "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
