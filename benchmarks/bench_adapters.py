"""Adapter overhead, and gradcheck against each framework's own checker, on the same model.

    python benchmarks/bench_adapters.py [--repeat 5] [--hidden 12]

Model: a float64 tanh MLP 4 -> hidden -> 3 with mean squared error, batch 16 (P = 99 at
hidden=12), the same weights in every framework. For each installed framework:

* per call: the adapter's ``fn`` (loss and gradient) and ``fn.loss`` (loss only) against the same
  computation written directly in the framework (ratio = adapter / direct);
* per check: ``gradcheck.check(fn, params, X, y, loss_fn=fn.loss)`` against the time of the
  same number of direct framework evaluations (what the adapter and the checker add on top), and
  against the framework's own checker in the same run: ``torch.autograd.gradcheck`` (defaults),
  ``jax.test_util.check_grads`` and ``autograd.test_util.check_grads`` (``order=1,
  modes=["rev"]``: one random projection, constant cost, far coarser; see docs/checker.md).

micrograd (pure-Python scalars) runs a smaller problem: batch 4, hidden 4 (P = 35); the numpy
row is the origin document's XOR step (examples/origin_xor_step.py, P = 9). Times are the best
of ``--repeat`` runs, one BLAS/intra-op thread. Frameworks not installed are skipped, saying so.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import gradcheck

N_IN, N_OUT, BATCH = 4, 3, 16


def best(f: Callable[[], Any], repeat: int, inner: int = 1) -> float:
    """Best wall time of ``repeat`` runs of ``inner`` calls, per call."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(inner):
            f()
        times.append((time.perf_counter() - t) / inner)
    return min(times)


def problem(hidden: int):
    rng = np.random.default_rng(0)
    params = {"W1": rng.standard_normal((N_IN, hidden)) / 2, "b1": rng.standard_normal(hidden) * 0.1,
              "W2": rng.standard_normal((hidden, N_OUT)) / np.sqrt(hidden), "b2": rng.standard_normal(N_OUT) * 0.1}
    return params, rng.standard_normal((BATCH, N_IN)), rng.standard_normal((BATCH, N_OUT))


class Row(dict):
    pass


def check_row(name: str, fn, params, X, y, direct_grad, direct_loss, peer_name, peer, repeat) -> Row:
    call = best(lambda: fn(params, X, y), repeat, 20)
    call_direct = best(direct_grad, repeat, 20)
    loss = best(lambda: fn.loss(params, X, y), repeat, 20)
    loss_direct = best(direct_loss, repeat, 20)
    result = gradcheck.check(fn, params, X, y, loss_fn=fn.loss)
    assert result.passed, str(result)
    t_check = best(lambda: gradcheck.check(fn, params, X, y, loss_fn=fn.loss), repeat)
    grad_calls = 2  # check calls fn twice (validation, determinism); every other call is loss-only
    floor = grad_calls * call_direct + (result.calls - grad_calls) * loss_direct
    row = Row(framework=name, P=sum(v.size for v in params.values()), call_us=call * 1e6,
              call_ratio=call / call_direct, loss_us=loss * 1e6, loss_ratio=loss / loss_direct,
              calls=result.calls, check_s=t_check, floor_s=floor, check_ratio=t_check / floor,
              max_rel_error=result.max_rel_error, scheme=result.scheme, peer=peer_name, peer_s=None)
    if peer is not None:
        peer()  # warm-up (jit tracing)
        row["peer_s"] = best(peer, repeat)
    return row


def bench_torch(hidden: int, repeat: int) -> Row:
    import copy

    import torch

    from gradcheck.adapters.torch import as_fn

    torch.set_num_threads(1)
    p, X, y = problem(hidden)
    model = torch.nn.Sequential(torch.nn.Linear(N_IN, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, N_OUT))
    with torch.no_grad():  # the shared weights (torch stores W as (out, in))
        model[0].weight.copy_(torch.tensor(p["W1"].T)), model[0].bias.copy_(torch.tensor(p["b1"]))
        model[2].weight.copy_(torch.tensor(p["W2"].T)), model[2].bias.copy_(torch.tensor(p["b2"]))
    mse = torch.nn.MSELoss()
    fn, params = as_fn(model, mse)
    m64 = copy.deepcopy(model).double()
    Xt, yt = torch.tensor(X), torch.tensor(y)
    leaves = list(m64.parameters())

    def direct_grad():
        m64.zero_grad(set_to_none=True)
        loss = mse(m64(Xt), yt)
        torch.autograd.grad(loss, leaves)
        return loss.item()

    def direct_loss():
        with torch.no_grad():
            return mse(m64(Xt), yt).item()

    names = [n for n, _ in m64.named_parameters()]
    inputs = tuple(t.detach().clone().requires_grad_() for t in m64.parameters())

    def peer():
        f = lambda *ps: mse(torch.func.functional_call(m64, dict(zip(names, ps)), (Xt,)), yt)  # noqa: E731
        assert torch.autograd.gradcheck(f, inputs)

    return check_row("torch", fn, params, X, y, direct_grad, direct_loss, "torch.autograd.gradcheck", peer, repeat)


def _jnp_loss(jnp):
    def loss(p, X, y):
        return jnp.mean((jnp.tanh(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"] - y) ** 2)
    return loss


def bench_jax(hidden: int, repeat: int) -> Row:
    import jax
    import jax.numpy as jnp
    from jax.test_util import check_grads

    from gradcheck.adapters.jax import as_fn

    p, X, y = problem(hidden)
    loss = _jnp_loss(jnp)
    fn, params = as_fn(loss, p)  # enables x64
    pj = {k: jnp.asarray(v) for k, v in p.items()}
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    vg, lj = jax.jit(jax.value_and_grad(loss)), jax.jit(loss)
    vg(pj, Xj, yj), lj(pj, Xj, yj)

    def direct_grad():
        v, g = vg(pj, Xj, yj)
        return jax.block_until_ready(g)

    def direct_loss():
        return float(lj(pj, Xj, yj))

    def peer():
        check_grads(lambda q: loss(q, Xj, yj), (pj,), order=1, modes=["rev"])

    return check_row("jax (jit)", fn, params, X, y, direct_grad, direct_loss, "jax check_grads(rev)", peer, repeat)


def bench_autograd(hidden: int, repeat: int) -> Row:
    import autograd
    import autograd.numpy as anp
    from autograd.test_util import check_grads

    from gradcheck.adapters.autograd import as_fn

    p, X, y = problem(hidden)
    loss = _jnp_loss(anp)
    fn, params = as_fn(loss, p)
    vg = autograd.value_and_grad(loss)

    def peer():
        check_grads(lambda q: loss(q, X, y), modes=["rev"], order=1)(p)

    return check_row("autograd", fn, params, X, y, lambda: vg(p, X, y), lambda: loss(p, X, y),
                     "autograd check_grads(rev)", peer, repeat)


def bench_micrograd(hidden: int, repeat: int) -> Row:
    import random

    from micrograd import nn
    from micrograd.engine import Value

    from gradcheck.adapters.micrograd import as_fn

    _, X, y = problem(hidden)
    X, y = X[:4], y[:4]  # pure-Python scalars: a smaller problem (batch 4, hidden 4: P = 35)
    random.seed(0)
    model = nn.MLP(N_IN, [4, N_OUT])  # relu hidden layer (0.1.0 has no tanh)
    Xl, yl = X.tolist(), y.tolist()

    def loss(m, X, y):
        total = Value(0.0)
        for x, t in zip(X, y):
            for o, ti in zip(m(x), t):
                total = total + (o - ti) ** 2
        return total * (1.0 / (len(X) * len(y[0])))

    fn, params = as_fn(model, loss)

    def direct_grad():
        model.zero_grad()
        out = loss(model, Xl, yl)
        out.backward()
        return out.data

    return check_row("micrograd", fn, params, X, y, direct_grad, lambda: loss(model, Xl, yl).data, "-", None,
                     max(1, repeat // 2))


def bench_update_step(hidden: int, repeat: int) -> Row:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "origin_xor_step.py"
    spec = importlib.util.spec_from_file_location("origin_xor_step", path)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    case = ex.factory()
    fn, params = case["fn"], case["params"]
    w = ex.initial_weights()
    return check_row("numpy update step (XOR)", fn, params, ex.X, ex.y,
                     lambda: ex.train_step({k: v.copy() for k, v in w.items()}, ex.X, ex.y, 0.1),
                     lambda: ex.half_squared_error(w, ex.X, ex.y), "-", None, repeat)


BENCHES = {"torch": bench_torch, "jax": bench_jax, "autograd": bench_autograd, "micrograd": bench_micrograd,
           "numpy": bench_update_step}


def table(rows: list[Row]) -> str:
    head = ("framework", "P", "fn us (x direct)", "fn.loss us (x direct)", "calls", "check s", "x direct evals",
            "peer", "peer s", "check/peer", "max rel err", "scheme")
    lines = [head]
    for r in rows:
        peer = r["peer_s"]
        lines.append((r["framework"], str(r["P"]), f"{r['call_us']:.0f} ({r['call_ratio']:.2f}x)",
                      f"{r['loss_us']:.0f} ({r['loss_ratio']:.2f}x)", str(r["calls"]), f"{r['check_s']:.4f}",
                      f"{r['check_ratio']:.2f}x", r["peer"], "-" if peer is None else f"{peer:.4f}",
                      "-" if peer is None else f"{r['check_s'] / peer:.2f}x", f"{r['max_rel_error']:.1e}", r["scheme"]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = [" | ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=12)
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), default=None)
    args = parser.parse_args(argv)
    rows = []
    for name, bench in BENCHES.items():
        if args.only and name not in args.only:
            continue
        try:
            rows.append(bench(args.hidden, args.repeat))
        except ImportError as exc:
            print(f"skipped {name}: {exc}")
    print(table(rows))
    print("\nfn / fn.loss: one adapter call vs the same computation written directly in the framework.\n"
          "x direct evals: check time / (2 direct loss+grad calls + (calls - 2) direct loss calls).\n"
          "peer: the framework's own checker on the same model (one random projection for jax/autograd).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
