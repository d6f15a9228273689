"""Sensitivity of gradient checkers: the smallest planted error each one flags, and false alarms.

Run on demand (not part of the test suite)::

    python benchmarks/sensitivity.py [--quick] [--networks N]

Two measurements:

* **Detection thresholds.** A numpy tanh MLP (``8-h-h-4``, MSE, batch 16, float64) whose claimed
  gradient is wrong in one of two ways: one element of ``W2`` of median magnitude multiplied by
  ``1 + delta``, or the whole of ``W2`` multiplied by ``1 + delta``. For each checker the
  smallest ``delta`` on a half-decade grid (1e-1 ... 1e-13) that it flags, with every larger
  ``delta`` flagged too. Peers get the same wrong gradient: torch through a custom
  ``autograd.Function`` whose backward returns it, JAX through ``custom_vjp`` (reverse mode only,
  since forward mode is unavailable on custom_vjp), scipy's ``check_grad`` through its ``grad``
  argument. scipy returns only an error norm, no verdict: its row is the ``delta`` at which that
  norm reaches twice its value on correct code (what a user comparing numbers could notice).
* **False alarms.** ``gradcheck.check`` on many random *correct* reference networks (activations
  and losses from the registries, depth 1-3, float64 and float32), in the default mode, with
  4th-order differences and with the structured oracle; and the complex step on a complex-safe
  numpy MLP. Every failure there is a false alarm.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gradcheck
from gradcheck.spec import Layer, NetworkSpec

Params = dict[str, np.ndarray]
GRID = [10.0 ** (-e / 2) for e in range(2, 27)]  # 1e-1 ... 1e-13, half decades


# -- the model: a plain numpy MLP, complex-safe (for the complex step) -----------------------------
ACTS: dict[str, tuple[Callable, Callable]] = {  # value and derivative, both complex-safe
    "tanh": (np.tanh, lambda z, a: 1 - a * a),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z, a: a * (1 - a)),
    "sin": (np.sin, lambda z, a: np.cos(z)),
    "softplus": (lambda z: np.log1p(np.exp(z)), lambda z, a: 1 / (1 + np.exp(-z))),
}


class MLP:
    """``widths[0] -> ... -> widths[-1]``, ``act`` on hidden layers, identity output, MSE (sum over
    outputs, mean over the batch). Written for this benchmark, independent of ``reference``."""

    def __init__(self, widths: tuple[int, ...], act: str = "tanh") -> None:
        self.widths, self.act = tuple(widths), act
        self.f, self.df = ACTS[act]

    @property
    def spec(self) -> NetworkSpec:
        layers = tuple(Layer(w, self.act) for w in self.widths[1:-1]) + (Layer(self.widths[-1], "identity"),)
        return NetworkSpec(self.widths[0], layers, "mse", batch=16)

    def init(self, seed: int = 0) -> Params:
        rng = np.random.default_rng(seed)
        p = {}
        for i, (a, b) in enumerate(zip(self.widths[:-1], self.widths[1:]), start=1):
            p[f"W{i}"] = rng.normal(0, 1 / math.sqrt(a), (a, b))
            p[f"b{i}"] = rng.normal(0, 0.1, b)
        return p

    def batch(self, seed: int = 1, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        return rng.standard_normal((n, self.widths[0])), rng.standard_normal((n, self.widths[-1]))

    def loss(self, p: Params, X, y) -> Any:
        a = X
        L = len(self.widths) - 1
        for i in range(1, L + 1):
            z = a @ p[f"W{i}"] + p[f"b{i}"]
            a = self.f(z) if i < L else z
        return np.sum((a - y) ** 2) / X.shape[0]

    def __call__(self, p: Params, X, y) -> tuple[float, Params]:
        L = len(self.widths) - 1
        acts, pre = [X], []
        for i in range(1, L + 1):
            z = acts[-1] @ p[f"W{i}"] + p[f"b{i}"]
            pre.append(z)
            acts.append(self.f(z) if i < L else z)
        out = acts[-1]
        d = 2 * (out - y) / X.shape[0]
        g = {}
        for i in range(L, 0, -1):
            if i < L:
                d = d * self.df(pre[i - 1], acts[i])
            g[f"W{i}"] = acts[i - 1].T @ d
            g[f"b{i}"] = d.sum(axis=0)
            d = d @ p[f"W{i}"].T
        return float(np.sum((out - y) ** 2) / X.shape[0]), {k: g[k] for k in p}


def planted(model: MLP, key: str, index: tuple | None, delta: float) -> Callable:
    """``model`` with its claimed gradient of ``key`` wrong: element ``index`` (or, when None, the
    whole tensor) multiplied by ``1 + delta``."""
    def fn(p, X, y):
        loss, g = model(p, X, y)
        wrong = g[key].copy()
        if index is None:
            wrong *= 1 + delta
        else:
            wrong[index] *= 1 + delta
        return loss, {**g, key: wrong}
    return fn


def median_index(g: np.ndarray) -> tuple:
    flat = int(np.argsort(np.abs(g).ravel())[g.size // 2])
    return tuple(int(v) for v in np.unravel_index(flat, g.shape))


# -- peers: the same (possibly wrong) claimed gradient, seen through each tool ----------------------
def torch_flags(fn: Callable, model: MLP, p: Params, X, y, fast: bool = False) -> bool:
    import torch

    keys = list(p)

    class Claimed(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *ts):
            ctx.save_for_backward(*ts)
            return torch.tensor(model.loss({k: t.detach().numpy() for k, t in zip(keys, ts)}, X, y),
                                dtype=torch.float64)

        @staticmethod
        def backward(ctx, go):
            _, g = fn({k: t.detach().numpy() for k, t in zip(keys, ctx.saved_tensors)}, X, y)
            return tuple(torch.from_numpy(np.ascontiguousarray(g[k])) * go for k in keys)

    inputs = tuple(torch.tensor(p[k], dtype=torch.float64, requires_grad=True) for k in keys)
    ok = torch.autograd.gradcheck(Claimed.apply, inputs, raise_exception=False, fast_mode=fast)
    return not ok


def jax_flags(fn: Callable, model: MLP, p: Params, X, y) -> bool:
    import jax
    import jax.numpy as jnp
    from jax.test_util import check_grads

    jax.config.update("jax_enable_x64", True)
    keys = list(p)

    def jloss(ps):
        a = jnp.asarray(X)
        L = len(model.widths) - 1
        for i in range(1, L + 1):
            z = a @ ps[f"W{i}"] + ps[f"b{i}"]
            a = jnp.tanh(z) if i < L else z
        return jnp.sum((a - y) ** 2) / X.shape[0]

    @jax.custom_vjp
    def f(ps):
        return jloss(ps)

    def fwd(ps):
        return jloss(ps), ps

    def bwd(ps, go):
        _, g = fn({k: np.asarray(ps[k]) for k in keys}, X, y)
        return ({k: jnp.asarray(g[k]) * go for k in keys},)

    f.defvjp(fwd, bwd)
    try:
        check_grads(f, ({k: jnp.asarray(v) for k, v in p.items()},), order=1, modes=("rev",))
    except AssertionError:
        return True
    return False


def scipy_error(fn: Callable, model: MLP, p: Params, X, y) -> float:
    from scipy.optimize import check_grad

    keys = list(p)
    shapes = [p[k].shape for k in keys]
    sizes = [p[k].size for k in keys]

    def unflat(v):
        out, i = {}, 0
        for k, s, n in zip(keys, shapes, sizes):
            out[k] = v[i:i + n].reshape(s)
            i += n
        return out

    x0 = np.concatenate([p[k].ravel() for k in keys])
    return float(check_grad(lambda v: model.loss(unflat(v), X, y),
                            lambda v: np.concatenate([fn(unflat(v), X, y)[1][k].ravel() for k in keys]), x0))


def ours(fn: Callable, model: MLP, p: Params, X, y, **options: Any) -> bool:
    return not gradcheck.check(fn, p, X, y, symbolic=False, **options).passed


def tools(model: MLP, with_peers: bool = True) -> dict[str, Callable[[Callable, Params, Any, Any], bool]]:
    """name -> flags(fn, params, X, y): does this checker report ``fn``'s gradient as wrong?"""
    spec = model.spec
    out = {
        "ours (default: complex step, this code is complex-safe)":
            lambda fn, p, X, y: ours(fn, model, p, X, y, loss_fn=model.loss),
        "ours central": lambda fn, p, X, y: ours(fn, model, p, X, y, scheme="central", loss_fn=model.loss),
        "ours central4": lambda fn, p, X, y: ours(fn, model, p, X, y, scheme="central4", loss_fn=model.loss),
        "ours structured": lambda fn, p, X, y: ours(fn, model, p, X, y, spec=spec, oracle="structured"),
        "ours fast": lambda fn, p, X, y: ours(fn, model, p, X, y, mode="fast", loss_fn=model.loss),
    }
    if with_peers:
        for name, probe in (("torch", "torch"), ("jax", "jax")):
            try:
                __import__(probe)
            except ImportError:
                continue
            if name == "torch":
                out["torch.autograd.gradcheck"] = lambda fn, p, X, y: torch_flags(fn, model, p, X, y)
                out["torch gradcheck fast_mode"] = lambda fn, p, X, y: torch_flags(fn, model, p, X, y, fast=True)
            else:
                out["jax check_grads (rev)"] = lambda fn, p, X, y: jax_flags(fn, model, p, X, y)
        try:
            import scipy.optimize  # noqa: F401
            baseline: dict[str, float] = {}

            def scipy_flags(fn, p, X, y):
                if "correct" not in baseline:
                    baseline["correct"] = scipy_error(model, model, p, X, y)
                return scipy_error(fn, model, p, X, y) > 2 * baseline["correct"]
            out["scipy check_grad (norm doubles; no verdict)"] = scipy_flags
        except ImportError:
            pass
    return out


def threshold(flags: Callable[[float], bool]) -> float:
    """The smallest grid ``delta`` flagged with every larger one flagged too (inf: none)."""
    found = math.inf
    for delta in GRID:
        if not flags(delta):
            break
        found = delta
    return found


def thresholds(hidden: int = 25, with_peers: bool = True, key: str = "W2") -> dict[str, tuple[float, float]]:
    """Per tool: (single median element, whole tensor) detection threshold on an 8-h-h-4 MLP."""
    model = MLP((8, hidden, hidden, 4))
    p = model.init()
    X, y = model.batch()
    index = median_index(model(p, X, y)[1][key])
    out = {}
    for name, flags in tools(model, with_peers).items():
        one = threshold(lambda d, flags=flags: flags(planted(model, key, index, d), p, X, y))
        whole = threshold(lambda d, flags=flags: flags(planted(model, key, None, d), p, X, y))
        out[name] = (one, whole)
    return out


# -- false alarms on correct code -------------------------------------------------------------------
HIDDEN_ACTS = ["tanh", "sigmoid", "softplus", "gelu", "silu", "elu", "gelu_tanh", "sin", "softsign", "mish"]
LOSSES = ["mse", "softmax_cross_entropy", "huber", "log_cosh"]


def random_case(rng: np.random.Generator):
    from reference.network import Network

    depth = int(rng.integers(1, 4))
    loss = LOSSES[int(rng.integers(len(LOSSES)))]
    out = int(rng.integers(2, 5))
    layers = tuple(Layer(int(rng.integers(2, 10)), HIDDEN_ACTS[int(rng.integers(len(HIDDEN_ACTS)))],
                         bias=bool(rng.random() < 0.85)) for _ in range(depth - 1)) + (Layer(out, "identity"),)
    dtype = "float32" if rng.random() < 0.25 else "float64"
    spec = NetworkSpec(int(rng.integers(1, 8)), layers, loss, batch=int(rng.integers(1, 17)), dtype=dtype,
                       seed=int(rng.integers(1 << 30)), init=("normal", "xavier", "he")[int(rng.integers(3))])
    net = Network(spec)
    X = rng.standard_normal((spec.batch, spec.input_dim)).astype(dtype)
    y = (rng.integers(0, out, spec.batch) if loss == "softmax_cross_entropy"
         else rng.standard_normal((spec.batch, out)).astype(dtype))
    return spec, net, net.init_params(), X, y


def false_alarms(n: int, seed: int = 0) -> dict[str, tuple[int, int]]:
    """Per mode: (false alarms, checks) on ``n`` random correct networks."""
    rng = np.random.default_rng(seed)
    counts = {m: [0, 0] for m in ("default", "central4", "structured", "complex step (numpy MLP)")}
    for _ in range(n):
        spec, net, p, X, y = random_case(rng)
        for mode, options in (("default", {}), ("central4", {"scheme": "central4", "loss_fn": net.loss}),
                              ("structured", {"spec": spec, "oracle": "structured"})):
            r = gradcheck.check(net, p, X, y, symbolic=False, **options)
            counts[mode][0] += not r.passed
            counts[mode][1] += 1
        model = MLP((int(rng.integers(1, 8)),) + tuple(int(rng.integers(2, 10)) for _ in range(int(rng.integers(1, 3))))
                    + (int(rng.integers(1, 4)),), act=list(ACTS)[int(rng.integers(len(ACTS)))])
        mp = model.init(int(rng.integers(1 << 30)))
        mX, my = model.batch(int(rng.integers(1 << 30)), n=int(rng.integers(1, 17)))
        r = gradcheck.check(model, mp, mX, my, scheme="complex", loss_fn=model.loss, symbolic=False)
        counts["complex step (numpy MLP)"][0] += not (r.passed and r.scheme == "complex")
        counts["complex step (numpy MLP)"][1] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


def fmt(delta: float) -> str:
    return "not flagged" if math.isinf(delta) else f"{delta:.0e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small network, few false-alarm cases")
    parser.add_argument("--networks", type=int, default=None, help="random correct networks (default 300)")
    args = parser.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits
        pinned = threadpool_limits(1)
    except ImportError:  # pragma: no cover - the dev extra has it
        pinned = None
        print("warning: threadpoolctl missing, BLAS threads not pinned")
    try:
        t0 = time.perf_counter()
        hidden = 5 if args.quick else 25
        print(f"detection thresholds, 8-{hidden}-{hidden}-4 tanh MLP, MSE, batch 16, float64, W2")
        print("| checker | one median element x (1+delta) | whole W2 x (1+delta) |\n|---|---|---|")
        for name, (one, whole) in thresholds(hidden).items():
            print(f"| {name} | {fmt(one)} | {fmt(whole)} |")
        n = args.networks or (20 if args.quick else 300)
        print(f"\nfalse alarms on {n} random correct networks")
        print("| mode | false alarms | checks |\n|---|---|---|")
        for mode, (bad, total) in false_alarms(n).items():
            print(f"| {mode} | {bad} | {total} |")
        print(f"\n{time.perf_counter() - t0:.1f} s")
    finally:
        if pinned is not None:
            pinned.restore_original_limits()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
