"""The black-box full check against the floors it cannot go below, measured in one run.

    python benchmarks/bench_floors.py                    # P = 99, 979, 9955
    python benchmarks/bench_floors.py --sizes 99 --repeats 300

On bench_check.py's float64 tanh MLP ``8-h-h-4`` (MSE, batch 16; it accepts complex input), with
``loss_fn=model.loss, symbolic=False, quiet=True``, BLAS pinned to one thread, each repeat timing
every row once in turn (medians):

* **2P loop**: 2P real loss calls, one element moved at a time (the floor of any black-box
  central-difference check; issue 20's yardstick).
* **contract floor, central**: the calls a central-difference check makes by contract, with no
  arithmetic around them: 2 calls of fn (the validation pair: nondeterminism and mutation
  checks), 1 ``loss_fn`` call (does it agree with fn?), 16 loss calls along two random directions
  (the rounding-noise probe that sets steps and tolerances), then the 2P loop.
* **P complex loop**: P loss calls in complex arithmetic, one element moved by ``1e-20j`` at a
  time (the floor of the complex step); its contract floor adds the 24 fixed calls (the above
  and the complex-step test's 5).
* **ours central**: ``check(..., scheme="central")``; **ours default**: ``scheme="auto"``,
  which takes the complex step on this complex-safe code.

The ratios say where the time goes: ours over its contract floor is the harness's own arithmetic;
the contract floor over the 2P loop is the fixed calls; the complex loop over the 2P loop is what
one complex evaluation costs against two real ones on this BLAS (the user's code, not ours).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench_check import HIDDEN, blas, interleaved, two_p_loop
from sensitivity import MLP

import gradcheck

#: fixed calls of a central check besides fn's two: 1 loss_fn agreement + 16 noise-probe calls
FIXED_LOSS_CALLS = 17
#: the complex-step test adds 1 complex and 4 real calls
COMPLEX_TEST_REAL, COMPLEX_TEST_COMPLEX = 4, 1


def contract_floor(model: MLP, p: dict, X: np.ndarray, y: np.ndarray, *, complex_step: bool) -> Callable[[], None]:
    """The calls the check makes by contract, bare: 2 of fn, the fixed loss calls, then 2P real
    calls (central) or P complex ones (complex step)."""
    loop = complex_loop(model, p, X, y) if complex_step else two_p_loop(model, p, X, y)
    fixed = FIXED_LOSS_CALLS + (COMPLEX_TEST_REAL if complex_step else 0)
    cp = {k: v.astype(np.complex128) for k, v in p.items()}

    def run() -> None:
        model(p, X, y)
        model(p, X, y)
        for _ in range(fixed):
            model.loss(p, X, y)
        if complex_step:
            model.loss(cp, X, y)
        loop()
    return run


def complex_loop(model: MLP, p: dict, X: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    """P complex loss calls, each element moved by 1e-20j in place on a private complex copy."""
    def run() -> None:
        w = {k: v.astype(np.complex128) for k, v in p.items()}
        for v in w.values():
            flat = v.reshape(-1)
            for i in range(flat.size):
                x = flat[i]
                flat[i] = x + 1e-20j
                model.loss(w, X, y)
                flat[i] = x
    return run


def ours(model: MLP, p: dict, X: np.ndarray, y: np.ndarray, scheme: str) -> Callable[[], None]:
    def run() -> None:
        r = gradcheck.check(model, p, X, y, scheme=scheme, loss_fn=model.loss, symbolic=False, quiet=True)
        assert r.passed and r.scheme == ("complex" if scheme == "auto" else scheme), r
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[99, 979, 9955], choices=[99, 979, 9955])
    ap.add_argument("--repeats", type=int, default=200, help="repeats at P = 99 (fewer at larger P)")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    print(f"BLAS: {blas()}; load average {os.getloadavg()[0]:.2f}")
    with threadpool_limits(1):
        for P in args.sizes:
            model = MLP((8, HIDDEN[P], HIDDEN[P], 4))
            p = model.init()
            X, y = model.batch()
            rows = {"2P loop": two_p_loop(model, p, X, y),
                    "contract floor, central": contract_floor(model, p, X, y, complex_step=False),
                    "ours central": ours(model, p, X, y, "central"),
                    "P complex loop": complex_loop(model, p, X, y),
                    "contract floor, complex": contract_floor(model, p, X, y, complex_step=True),
                    "ours default (complex step)": ours(model, p, X, y, "auto")}
            for run in rows.values():
                run()
            repeats = max(5, args.repeats * 99 // P)
            m = {k: float(np.median(v)) for k, v in interleaved(rows, repeats).items()}
            base = m["2P loop"]
            print(f"\nP = {P} ({repeats} repeats; 2P loop {base * 1e3:.3g} ms)")
            for name, s in m.items():
                print(f"  {name:30s} {s * 1e3:9.3f} ms  {s / base:5.2f}x of the 2P loop")
            print(f"  ours central / its contract floor         {m['ours central'] / m['contract floor, central']:.3f}")
            print(f"  ours default / its contract floor         "
                  f"{m['ours default (complex step)'] / m['contract floor, complex']:.3f}")
            print(f"  one complex call / one real call          {2 * m['P complex loop'] / base:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
