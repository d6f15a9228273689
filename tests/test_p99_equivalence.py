"""The black-box full check's verdicts and numbers are bit-for-bit those of the code before the
fixed-cost work of issue 20 (one comparison pass over all tensors, the noise probe on one
concatenated vector): ``Result.to_dict(arrays=True)`` minus ``seconds`` equals that of commit
1800b54 (before the fixed-cost work; with the probe beside x of ``Judge.code_kink_along``) for
correct and planted-bug networks, float32 and float64, kinks, zero gradients, every scheme, with
and without ``loss_fn``.

The old code runs here, on this machine, at test time (``git archive 1800b54 gradcheck`` into a
temporary directory, then this file as a script with it first on ``PYTHONPATH``): a fixture
recorded once holds one machine's BLAS rounding, and another CPU's matrix products differ in the
last bits (23 of these 67 records did on an AMD EPYC against a fixture from an Intel machine).
Needs git and the repository's history (a clone has both); skipped otherwise, saying why.

Since 1800b54 one behaviour changed on purpose: a float32 check may consult fn evaluated with
float64 parameters (``Judge.wider``); the comparison turns that off and
``tests/test_false_alarms.py`` and ``tests/test_check_wider.py`` test it.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # after PYTHONPATH (--write)

import gradcheck
from tests import checker_models as cm
from tests.test_check_kinks import kink_inputs, relu_net

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the commit whose numbers the check must reproduce
OLD = "1800b54"


def _loss_only(fn: Callable) -> Callable:
    return lambda p, X, y: fn(p, X, y)[0]


def _mlp99() -> tuple[Callable, dict, Any, Any, Callable]:
    """The benchmark's P = 99 tanh MLP (8-5-5-4, MSE, batch 16)."""
    rng = np.random.default_rng(7)
    widths = (8, 5, 5, 4)
    p = {}
    for i in range(3):
        p[f"W{i + 1}"] = rng.standard_normal((widths[i], widths[i + 1])) / math.sqrt(widths[i])
        p[f"b{i + 1}"] = 0.1 * rng.standard_normal(widths[i + 1])
    X, y = rng.standard_normal((16, 8)), rng.standard_normal((16, 4))

    def fn(q, X, y):
        a, acts = X, [X]
        for i in range(1, 4):
            z = a @ q[f"W{i}"] + q[f"b{i}"]
            a = np.tanh(z) if i < 3 else z
            acts.append(a)
        n = X.shape[0]
        loss = np.sum((a - y) ** 2) / n
        d = 2 * (a - y) / n
        g = {}
        for i in range(3, 0, -1):
            g[f"W{i}"], g[f"b{i}"] = acts[i - 1].T @ d, d.sum(axis=0)
            if i > 1:
                d = (d @ q[f"W{i}"].T) * (1 - acts[i - 1] ** 2)
        return loss, g
    return fn, p, X, y, _loss_only(fn)


def _zero_grads(dtype: Any) -> tuple[Callable, dict, Any, Any]:
    """``u`` does not enter the loss (an exactly-zero gradient); ``v``'s gradient is ~0 too."""
    p = {"w": np.array([0.3, -1.2, 2.0], dtype), "u": np.array([[1.0, -2.0], [0.5, 4.0]], dtype),
         "v": np.array([0.0, 0.0], dtype)}
    X = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.25]], dtype)
    y = np.array([0.1, -0.2], dtype)

    def fn(q, X, y):
        r = X @ q["w"] + 0 * q["v"].sum() - y
        return np.sum(r ** 2) / 2 + np.sum(q["v"] ** 4), {"w": X.T @ r, "u": np.zeros_like(q["u"]),
                                                          "v": 4 * q["v"] ** 3}
    return fn, p, X, y


def cases() -> dict[str, Callable[[], gradcheck.Result]]:
    out: dict[str, Callable[[], gradcheck.Result]] = {}

    def add(name: str, fn: Callable, p: dict, X: Any, y: Any, **options: Any) -> None:
        out[name] = lambda: gradcheck.check(fn, p, X, y, symbolic=False, quiet=True, **options)

    fn99, p99, X99, y99, loss99 = _mlp99()
    for scheme in ("central", "auto", "forward", "central4", "richardson"):
        add(f"mlp99-{scheme}-loss_fn", fn99, p99, X99, y99, scheme=scheme, loss_fn=loss99)
    add("mlp99-central-fn", fn99, p99, X99, y99, scheme="central")
    add("mlp99-central-rtol", fn99, p99, X99, y99, scheme="central", loss_fn=loss99, rtol=1e-3)
    add("mlp99-central-seed", fn99, p99, X99, y99, scheme="central", loss_fn=loss99, seed=3)
    add("mlp99-central-f32", fn99, {k: v.astype(np.float32) for k, v in p99.items()},
        X99.astype(np.float32), y99.astype(np.float32), scheme="central")
    for dtype in (np.float64, np.float32):
        tag = np.dtype(dtype).name
        for bug in (None, "factor_half", "one_element", "element_1e-4", "scaled_1e-4", "transpose", "sign"):
            fn = cm.functional_mlp(bug)
            p, (X, y) = cm.functional_params(dtype), cm.functional_batch(dtype)
            add(f"functional-{bug}-{tag}-central", fn, p, X, y, scheme="central", loss_fn=_loss_only(fn))
            add(f"functional-{bug}-{tag}-auto", fn, p, X, y)
        for bug in (None, "transpose", "stale_cache"):
            fn = cm.ClassMLP(bug)
            p, (X, y) = cm.class_params(dtype), cm.class_batch(dtype)
            add(f"class-{bug}-{tag}", fn, p, X, y, scheme="central")
        for bug in (None, "softmax_missing", "slopes_swapped", "factor_two"):
            fn = cm.dict_layers_fn(bug)
            p, (X, y) = cm.dict_params(dtype), cm.dict_batch(dtype)
            add(f"dict-{bug}-{tag}", fn, p, X, y, scheme="central")
        fz, pz, Xz, yz = _zero_grads(dtype)
        add(f"zero-{tag}-central", fz, pz, Xz, yz, scheme="central")
        add(f"zero-{tag}-auto", fz, pz, Xz, yz)
    # a float64 gradient of float32 parameters (the claimed precision is the coarser one)
    fn = cm.functional_mlp(None)
    p32, (X32, y32) = cm.functional_params(np.float32), cm.functional_batch(np.float32)
    add("functional-f32-params-f64-grads", lambda q, X, y: (lambda lg: (lg[0], {k: np.asarray(v, np.float64)
                                                                              for k, v in lg[1].items()}))(fn(q, X, y)),
        p32, X32, y32, scheme="central")
    # parameters of mixed dtypes (each tensor's steps and points in its own)
    pm = {k: v.astype(np.float32) if k in ("W1", "b2") else v for k, v in cm.functional_params(np.float64).items()}
    for bug in (None, "one_element"):
        fn = cm.functional_mlp(bug)
        add(f"functional-{bug}-mixed-dtypes", fn, pm, *cm.functional_batch(np.float64), scheme="central")
        add(f"functional-{bug}-mixed-dtypes-richardson", fn, pm, *cm.functional_batch(np.float64),
            scheme="richardson", loss_fn=_loss_only(fn))
    kp, kX, ky = kink_inputs()
    for convention in (0.0, 1.0, 0.5):
        add(f"kink-{convention}", relu_net(convention), kp, kX, ky, scheme="central")
    add("kink-bug", relu_net(0.0, bug_at=(1, 1)), kp, kX, ky, scheme="central")
    add("kink-no-detect", relu_net(0.0), kp, kX, ky, scheme="central", detect_kinks=False)
    add("kink-f32", relu_net(0.0), {k: v.astype(np.float32) for k, v in kp.items()}, kX.astype(np.float32),
        ky.astype(np.float32), scheme="central")
    return out


def record(result: gradcheck.Result) -> dict[str, Any]:
    d = result.to_dict(arrays=True)
    d.pop("seconds")
    return json.loads(json.dumps(d))


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> dict[str, Any]:
    """Every case's record by the code of :data:`OLD`, run now on this machine."""
    try:
        archive = subprocess.run(["git", "-C", ROOT, "archive", OLD, "gradcheck"], capture_output=True,
                                 check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"commit {OLD} is not available here ({exc}): a clone with its history runs this test")
    old = tmp_path_factory.mktemp("old")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    target = old / "records.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(old), ROOT])}
    run = subprocess.run([sys.executable, os.path.abspath(__file__), "--write", str(target)], env=env,
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"recording with {old}" in run.stdout, run.stdout  # the old code, not this checkout
    with open(target) as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(cases()))
def test_result_is_bit_for_bit_the_old_one(name, expected, monkeypatch):
    from gradcheck import judging
    monkeypatch.setattr(judging.Judge, "wider", lambda self: None)  # the one change since (module docstring)
    assert name in expected, f"{name} was not recorded by the old code"
    got = record(cases()[name]())
    want = expected[name]
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], f"{name}: {key} differs"


def test_fixture_covers_passes_failures_and_kinks(expected):
    passed = [v["passed"] for v in expected.values()]
    assert any(passed) and not all(passed)
    assert any(v["kinks"] for v in expected.values())
    assert any(v["notes"] for v in expected.values())


if __name__ == "__main__" and "--write" in sys.argv:  # python tests/test_p99_equivalence.py --write OUT
    print("recording with", gradcheck.__file__)
    out = sys.argv[sys.argv.index("--write") + 1]
    data = {name: record(run()) for name, run in sorted(cases().items())}
    with open(out, "w") as f:
        json.dump(data, f, sort_keys=True, separators=(",", ":"))
    print(f"{len(data)} cases, {sum(v['passed'] for v in data.values())} passed -> {out}")
