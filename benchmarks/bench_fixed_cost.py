"""The black-box full check against an older commit of gradcheck, as ratios to the 2P loop, in one run.

    python benchmarks/bench_fixed_cost.py --old 1d646a6                  # P = 99, 300 repeats
    python benchmarks/bench_fixed_cost.py --old 1d646a6 --sizes 99,979,9955

``check(net, params, X, y, scheme="central", loss_fn=net.loss, symbolic=False, quiet=True)`` on
bench_check.py's float64 tanh MLP ``8-h-h-4`` (MSE, batch 16), with this checkout's gradcheck
and with the one at ``--old`` (``git archive`` into a temporary directory, both imported in this
process), interleaved with bench_check.py's bare loop of 2P loss calls: each repeat times the
loop, the old check and the new one, in turn; medians. BLAS is pinned to one thread
(threadpoolctl). Also says whether both give the same ``Result.to_dict(arrays=True)`` (minus
``seconds``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from bench_check import HIDDEN, interleaved, two_p_loop
from sensitivity import MLP


def load(path: str) -> Any:
    """gradcheck.checker from ``path`` (the package imports lazily: bind its modules now)."""
    for k in [k for k in sys.modules if k == "gradcheck" or k.startswith("gradcheck.")]:
        del sys.modules[k]
    sys.path.insert(0, path)
    try:
        module = importlib.import_module("gradcheck.checker")
    finally:
        sys.path.remove(path)
    assert module.__file__ is not None and module.__file__.startswith(path), module.__file__
    return module


def full_check(module: Any, model: MLP, p: dict, X: Any, y: Any) -> Any:
    return lambda: module.check(model, p, X, y, scheme="central", loss_fn=model.loss, symbolic=False, quiet=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="a commit of this repository to compare with")
    ap.add_argument("--sizes", default="99", help="comma-separated P among 99, 979, 9955")
    ap.add_argument("--repeats", type=int, default=300, help="repeats at P = 99 (fewer at larger P)")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_info, threadpool_limits

    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", ROOT, "archive", args.old, "gradcheck"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        old, new = load(tmp), load(ROOT)
        blas = ", ".join(f"{i.get('internal_api')} {i.get('version')}" for i in threadpool_info())
        print(f"old: {args.old}; new: {ROOT}; BLAS: {blas}; load average {os.getloadavg()[0]:.2f}")
        with threadpool_limits(1):
            for P in (int(s) for s in args.sizes.split(",")):
                model = MLP((8, HIDDEN[P], HIDDEN[P], 4))
                p = model.init()
                X, y = model.batch()

                tools = {"2P loop": two_p_loop(model, p, X, y), "old": full_check(old, model, p, X, y),
                         "new": full_check(new, model, p, X, y)}
                dicts = []
                for name in ("old", "new"):
                    d = tools[name]().to_dict(arrays=True)
                    d.pop("seconds")
                    dicts.append(d)
                tools["2P loop"]()
                repeats = max(5, args.repeats * 99 // P)
                m = {k: float(np.median(v)) for k, v in interleaved(tools, repeats).items()}
                print(f"P = {P}: 2P loop {m['2P loop'] * 1e3:.2f} ms; old {m['old'] / m['2P loop']:.3f}x, "
                      f"new {m['new'] / m['2P loop']:.3f}x of it (new / old {m['new'] / m['old']:.3f}); "
                      f"{repeats} repeats; same results: {dicts[0] == dicts[1]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
