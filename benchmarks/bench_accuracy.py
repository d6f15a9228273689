"""Accuracy of gradient oracles against mpmath ground truth, and the cost of the SymPy oracle.

Run on demand (not part of CI)::

    python3 benchmarks/bench_accuracy.py            # both tables, ~2 minutes on 2 cores
    python3 benchmarks/bench_accuracy.py --quick    # smaller timing sweep

Table 1: for a tanh MLP (4-8-6-1, P = 101, MSE, batch 16) and the origin document's sigmoid XOR
net (2-2-1, half SSE, batch 4), the normwise error ``||g - t|| / ||t||`` and the max elementwise
relative error ``max |g - t| / |t|`` (over ``t != 0``) of each gradient ``g`` against the truth
``t`` = :func:`gradcheck.symbolic.exact_gradient` at 50 digits. Finite differences are written
here (fixed, documented steps) and, when available, taken from :mod:`gradcheck.numerical`.

Table 2: SymPy build time (expression, differentiation, CSE, lambdify) and evaluation time vs
the number of parameters P, for both differentiation methods, with a fresh cache per size.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gradcheck.spec import Layer, NetworkSpec
from gradcheck.symbolic import (
    SymbolicSkipped,
    clear_cache,
    compile_gradient,
    exact_gradient,
    network_gradient,
)
from reference.network import Network
from reference.train import XOR_SPEC, XOR_X, XOR_Y

Params = dict[str, np.ndarray]
EPS = float(np.finfo(np.float64).eps)


# -- a complex-safe forward pass (the reference casts to float; complex step needs this) --------
def complex_loss(spec: NetworkSpec) -> Callable[[Params, np.ndarray, np.ndarray], complex]:
    """The loss of the tanh/identity/sigmoid + mse/half_sse networks used here, for complex params."""
    act = {"tanh": np.tanh, "identity": lambda z: z, "sigmoid": lambda z: 1 / (1 + np.exp(-z))}

    def loss(params: Params, X: np.ndarray, y: np.ndarray):
        a = X
        for i, layer in enumerate(spec.layers, start=1):
            z = a @ params[f"W{i}"]
            if layer.bias:
                z = z + params[f"b{i}"]
            a = act[layer.activation](z)
        if spec.loss == "mse":
            return np.sum((a - y) ** 2) / a.shape[0]
        if spec.loss == "half_sse":
            return 0.5 * np.sum((y - a) ** 2)
        raise ValueError(spec.loss)
    return loss


# -- finite differences: one element at a time on a private copy ---------------------------------
def finite_differences(f: Callable[[Params], float], params: Params, scheme: str, step: Callable) -> Params:
    """``scheme``: central (2 calls), central4 (4 calls), complex (1 call) per element."""
    work = {k: v.astype(np.complex128 if scheme == "complex" else np.float64).copy() for k, v in params.items()}
    grad = {}
    for name, arr in work.items():
        flat = arr.reshape(-1)
        g = np.empty(flat.size)
        for i in range(flat.size):
            x = flat[i]
            h = step(float(np.real(x)))
            if scheme == "central":
                flat[i] = x + h
                fp = f(work)
                flat[i] = x - h
                fm = f(work)
                g[i] = (fp - fm) / (2 * h)
            elif scheme == "central4":
                vals = []
                for o in (2, 1, -1, -2):
                    flat[i] = x + o * h
                    vals.append(f(work))
                g[i] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
            elif scheme == "complex":
                flat[i] = x + 1j * h
                g[i] = np.imag(f(work)) / h
            flat[i] = x
        grad[name] = g.reshape(arr.shape)
    return grad


def errors(g: Params, truth: Params) -> tuple[float, float]:
    """(normwise, max elementwise) relative error of ``g`` against ``truth``."""
    num = math.sqrt(sum(float(np.sum((g[k] - truth[k]) ** 2)) for k in truth))
    den = math.sqrt(sum(float(np.sum(truth[k] ** 2)) for k in truth))
    elem = max(float(np.max(np.abs(g[k] - truth[k])[truth[k] != 0] / np.abs(truth[k][truth[k] != 0]),
                            initial=0.0)) for k in truth)
    return num / den, elem


def accuracy_rows(spec: NetworkSpec, params: Params, X: np.ndarray, y: np.ndarray) -> list[tuple[str, float, float]]:
    net = Network(spec)
    truth = exact_gradient(spec, params, X, y, dps=50)
    real_loss = lambda p: net.loss(p, X, y)  # noqa: E731
    cplx = complex_loss(spec)
    assert abs(cplx(params, X, y) - real_loss(params)) <= 1e-14 * abs(real_loss(params))
    cplx_loss = lambda p: cplx(p, X, y)  # noqa: E731
    rows = []
    grads = {
        "central, h = 1e-6": finite_differences(real_loss, params, "central", lambda x: 1e-6),
        "central, h = eps^(1/3) max(1,abs x)": finite_differences(
            real_loss, params, "central", lambda x: EPS ** (1 / 3) * max(1.0, abs(x))),
        "4th-order central, h = eps^(1/5) max(1,abs x)": finite_differences(
            real_loss, params, "central4", lambda x: EPS ** (1 / 5) * max(1.0, abs(x))),
        "complex step, h = 1e-20": finite_differences(cplx_loss, params, "complex", lambda x: 1e-20),
    }
    try:  # the checker's own finite differences, when that module is present
        from gradcheck import numerical

        for scheme in ("central", "central4", "richardson", "complex"):
            fn = cplx_loss if scheme == "complex" else real_loss
            grads[f"gradcheck.numerical.estimate({scheme!r})"] = numerical.estimate(fn, params, scheme=scheme).grad
    except ImportError:
        pass
    grads["SymPy float64 (graph)"] = network_gradient(spec, params, X, y, method="graph")
    grads["SymPy float64 (diff)"] = network_gradient(spec, params, X, y, method="diff", timeout=60)
    grads["reference analytic (backprop)"] = net.loss_and_grads(params, X, y)[1]
    for label, g in grads.items():
        rows.append((label, *errors({k: np.asarray(v, np.float64) for k, v in g.items()}, truth)))
    return rows


# -- cost of the SymPy oracle vs P ---------------------------------------------------------------
def mlp(width: int, depth: int = 2) -> NetworkSpec:
    return NetworkSpec(4, tuple(Layer(width, "tanh") for _ in range(depth)) + (Layer(1, "identity"),), "mse",
                       batch=16)


def time_build(spec: NetworkSpec, method: str, timeout: float) -> dict:
    import sympy.core.cache

    clear_cache()
    sympy.core.cache.clear_cache()
    net = Network(spec)
    params = net.init_params()
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(spec.batch, spec.input_dim)), rng.normal(size=(spec.batch, 1))
    t0 = time.perf_counter()
    try:
        network_gradient(spec, params, X, y, method=method, timeout=timeout, max_params=10**6)
    except SymbolicSkipped as e:
        return {"P": spec.n_params, "build": time.perf_counter() - t0, "skipped": str(e)}
    build = time.perf_counter() - t0
    c = compile_gradient(spec, method=method, max_params=10**6)
    t0 = time.perf_counter()
    reps = 20
    for _ in range(reps):
        network_gradient(spec, params, X, y, method=method, max_params=10**6)
    evaluate = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    exact_gradient(spec, params, X, y, method=method, max_params=10**6)
    exact_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact_gradient(spec, params, X, y, method=method, max_params=10**6)
    exact = time.perf_counter() - t0
    return {"P": spec.n_params, "build": build, "stages": c.build_seconds, "eval": evaluate,
            "cse": c.n_cse, "exact_first": exact_first, "exact": exact}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a shorter timing sweep")
    args = ap.parse_args(argv)
    print(f"# bench_accuracy  python {platform.python_version()}  numpy {np.__version__}  "
          f"cores {os.cpu_count()}  {platform.machine()}")

    print("\n## Accuracy against mpmath truth (50 digits)\n")
    tanh_spec = NetworkSpec(4, (Layer(8, "tanh"), Layer(6, "tanh"), Layer(1, "identity")), "mse", batch=16, seed=1)
    rng = np.random.default_rng(1)
    cases = [
        (f"tanh MLP 4-8-6-1, P={tanh_spec.n_params}, mse, batch 16", tanh_spec, Network(tanh_spec).init_params(),
         rng.normal(size=(16, 4)), rng.normal(size=(16, 1))),
        (f"sigmoid XOR 2-2-1, P={XOR_SPEC.n_params}, half_sse, batch 4", XOR_SPEC, Network(XOR_SPEC).init_params(),
         XOR_X, XOR_Y),
    ]
    for title, spec, params, X, y in cases:
        print(f"{title}\n")
        print(f"| {'gradient':45s} | {'normwise':>9s} | {'max elementwise':>15s} |")
        print(f"|{'-' * 47}|{'-' * 11}|{'-' * 17}|")
        for label, nw, el in accuracy_rows(spec, params, X, y):
            print(f"| {label:45s} | {nw:9.1e} | {el:15.1e} |")
        print()

    print("## SymPy oracle cost vs P (tanh MLP 4-w-w-1, batch 16; fresh caches)\n")
    widths = [4, 8, 16, 32, 48] if args.quick else [4, 8, 12, 16, 24, 32, 40, 48, 64, 80, 96, 128]
    print(f"| {'method':6s} | {'P':>5s} | {'build s':>7s} | {'expr':>5s} | {'diff':>5s} | {'cse':>5s} | "
          f"{'lambdify':>8s} | {'eval ms':>7s} | {'exact s':>7s} | {'exact 1st s':>11s} |")
    print("|--------|-------|---------|-------|-------|-------|----------|---------|---------|-------------|")
    for method, ws, timeout in (("graph", widths, 60.0), ("diff", [4, 6, 8, 10, 12, 16], 30.0)):
        for w in ws:
            r = time_build(mlp(w), method, timeout)
            if "skipped" in r:
                print(f"| {method:6s} | {r['P']:5d} | {r['build']:7.2f} | {r['skipped']}")
                break
            st = r["stages"]
            print(f"| {method:6s} | {r['P']:5d} | {r['build']:7.2f} | {st['expression']:5.2f} | "
                  f"{st['differentiate']:5.2f} | {st['cse']:5.2f} | {st['lambdify']:8.2f} | "
                  f"{r['eval'] * 1e3:7.2f} | {r['exact']:7.3f} | {r['exact_first']:11.2f} |")
            if r["build"] > 20:
                break
    print("\n'build' is the first network_gradient call (expression + differentiation + CSE + "
          "lambdify + one evaluation);\n'eval' a cached call; 'exact' exact_gradient at 50 digits "
          "(its first call also compiles the mpmath function).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
