"""The speed paths of issue 20: the structured oracle's chunks sized by what a perturbation changes,
the symbolic oracle's size check before SymPy is imported, and which oracles run by default."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gradcheck
from gradcheck import crosscheck, structured
from gradcheck.options import Options
from gradcheck.spec import Layer, NetworkSpec
from reference.network import Network
from tests.test_structured import case

# two skips leave layer 1 (its change is handed to layers 3 and 4 as the same array), a softmax
# hidden layer (recomputed whole), a layer without bias; float64 and float32
SKIPPY = [
    NetworkSpec(3, (Layer(4, "tanh"), Layer(4, "sigmoid", bias=False), Layer(4, "softplus"), Layer(4, "gelu"),
                    Layer(2, "identity")), "mse", batch=3, skips=((1, 3), (1, 4), (2, 4))),
    NetworkSpec(3, (Layer(5, "elu"), Layer(5, "softmax"), Layer(5, "tanh"), Layer(3, "identity")),
                "softmax_cross_entropy", batch=4, skips=((1, 3),), dtype="float32"),
]


@pytest.mark.parametrize("spec", SKIPPY, ids=lambda s: s.label())
@pytest.mark.parametrize("max_bytes", [1024, structured.MAX_BYTES])
def test_every_perturbed_value_is_the_loss_with_the_element_replaced(spec, max_bytes):
    """evaluate_points against the reference network with the element really replaced, for every
    element of every tensor, with one-element chunks and with the default chunks."""
    net, params, X, y = case(spec)
    oracle = structured.oracle_loss(spec, params, X, y, expected=net.loss(params, X, y), max_bytes=max_bytes)
    rng = np.random.default_rng(5)
    eps = np.finfo(spec.dtype).eps
    for name, value in params.items():
        points = [value + 1e-3 * rng.standard_normal(value.shape).astype(value.dtype),
                  value - 1e-3 * np.abs(value).astype(value.dtype)]
        got = oracle.evaluate_points(params, name, points)
        for e, j in itertools.product(range(value.size), range(len(points))):
            work = {k: v.copy() for k, v in params.items()}
            work[name].reshape(-1)[e] = points[j].reshape(-1)[e]
            want = net.loss(work, X, y)
            assert abs(got[e, j] - want) <= 64 * eps * max(1.0, abs(want)), (name, e, j)


def test_chunks_carry_one_column_until_the_next_matrix_product():
    """8-300-300-4 tanh, batch 16: perturbing W2 moves one column of layer 2 (16 values) and then
    the 4 outputs, so a chunk holds hundreds of elements; sized as if the whole layer moved it held
    16 (62,589 chunks at P = 1e6). Softmax layers and the output layer carry the whole layer."""
    spec = NetworkSpec(8, (Layer(300, "tanh"), Layer(300, "tanh"), Layer(4, "identity")), "mse", batch=16)
    oracle = structured.StructuredLoss(spec, np.zeros((16, 8)), np.zeros((16, 4)))
    assert oracle.row_bytes(2, 8) == structured.TEMPORARIES * 16 * (1 + 4) * 8
    assert oracle.row_bytes(3, 8) == structured.TEMPORARIES * 16 * 4 * 8           # output layer: whole
    assert oracle.chunk_rows(2, 8, 2) >= 400
    soft = NetworkSpec(8, (Layer(300, "softmax"), Layer(4, "identity")), "mse", batch=16)
    assert structured.StructuredLoss(soft, np.zeros((16, 8)), np.zeros((16, 4))).row_bytes(1, 8) == \
        structured.TEMPORARIES * 16 * (300 + 4) * 8
    assert structured.StructuredLoss(spec, np.zeros((16, 8)), np.zeros((16, 4)), max_bytes=1).chunk_rows(2, 8, 2) == 1


def test_the_size_check_uses_the_symbolic_oracles_own_limit():
    from gradcheck.symbolic import network as symbolic_network
    assert crosscheck.SYMBOLIC_MAX_PARAMS == symbolic_network.DEFAULT_MAX_PARAMS
    big = NetworkSpec(8, (Layer(200, "tanh"), Layer(4, "identity")), "mse", batch=4)
    small = NetworkSpec(2, (Layer(3, "tanh"), Layer(1, "identity")), "mse", batch=4)
    with pytest.raises(symbolic_network.SymbolicSkipped) as refused:
        symbolic_network.compile_gradient(big)
    assert crosscheck.size_refusal(big) == str(refused.value)
    assert crosscheck.size_refusal(small) is None


def test_a_too_large_spec_never_imports_sympy():
    """``check(..., spec=spec)`` on a network over the symbolic limit, with either oracle: SymPy
    (about 1 s to import) stays unloaded and the result says why the symbolic oracle was skipped."""
    code = textwrap.dedent("""
        import json, sys
        import numpy as np
        import gradcheck
        from gradcheck.spec import Layer, NetworkSpec
        from reference.network import Network
        spec = NetworkSpec(8, (Layer(200, "tanh"), Layer(4, "identity")), "mse", batch=4)
        net = Network(spec)
        params = net.init_params()
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((4, 8)), rng.standard_normal((4, 4))
        out = {}
        for oracle in ("numerical", "structured"):
            r = gradcheck.check(net.loss_and_grads, params, X, y, spec=spec, oracle=oracle, symbolic=True
                                if oracle == "structured" else None, loss_fn=net.loss, quiet=True)
            out[oracle] = [r.passed, r.symbolic_status]
        out["sympy"] = "sympy" in sys.modules
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["sympy"] is False
    for oracle in ("numerical", "structured"):
        passed, status = out[oracle]
        assert passed
        assert status == "skipped: too large (P=2604, limit max_params=2000)"


def test_which_oracles_run_by_default():
    """Black box + spec: the symbolic cross-check joins; structured (the fast path): only when
    asked for; symbolic=False turns it off everywhere."""
    spec = NetworkSpec(2, (Layer(3, "tanh"), Layer(1, "identity")), "mse", batch=4)
    assert Options(spec=spec).runs_symbolic
    assert not Options(spec=spec, oracle="structured").runs_symbolic
    assert Options(spec=spec, oracle="structured", symbolic=True).runs_symbolic
    assert not Options(spec=spec, symbolic=False).runs_symbolic
    assert not Options().runs_symbolic
    net = Network(spec)
    params = net.init_params()
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((4, 2)), rng.standard_normal((4, 1))
    fast = gradcheck.check(net.loss_and_grads, params, X, y, spec=spec, oracle="structured", quiet=True)
    assert fast.passed and fast.symbolic_status is None and "analytic_vs_symbolic" not in fast.oracles
    both = gradcheck.check(net.loss_and_grads, params, X, y, spec=spec, oracle="structured", symbolic=True,
                           quiet=True)
    assert both.passed and both.symbolic_status == "ok"
    black_box = gradcheck.check(net.loss_and_grads, params, X, y, spec=spec, quiet=True)
    assert black_box.passed and black_box.symbolic_status == "ok"


def test_fast_mode_holds_a_few_parameter_vectors():
    """fastmode.run at P ~ 250k: its own peak (tracemalloc, over what the caller holds) stays at a
    few parameter vectors (private copy, the noise probe's base copy, direction and temporary);
    storing the points and displacements of both steps took ~18."""
    import tracemalloc

    from gradcheck import fastmode

    spec = NetworkSpec(8, (Layer(500, "tanh"), Layer(500, "tanh"), Layer(4, "identity")), "mse", batch=8)
    net = Network(spec)
    params = net.init_params()
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((8, 8)), rng.standard_normal((8, 4))
    loss, claimed = net(params, X, y)
    P = sum(v.size for v in params.values())
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = fastmode.run(lambda w: net.loss(w, X, y), params, claimed, loss=loss, t0=0.0, calls=2, notes=[])
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert result.passed, str(result)
    assert peak / (8 * P) < 5.0


def test_sweep_draws_the_same_cases_as_the_full_hypothesis_run():
    """generate() asks Hypothesis for only the draws it keeps; the cases must be those of the old
    run that drew ``3 n + 3`` and kept the first ``n`` (the sweep's records stay the same)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    from gradcheck import sweep
    from gradcheck.strategies import cases

    def full_run(activation, loss, dtype, examples, seed, max_params, mode):
        found, drawn = [], [0]

        @hseed(sweep.cell_seed(seed, activation, loss, dtype, mode))
        @settings(max_examples=examples * 3 + 3, database=None, phases=[Phase.generate], deadline=None,
                  suppress_health_check=list(HealthCheck), derandomize=False)
        @given(cases(activation=activation, loss=loss, dtypes=(dtype,), max_params=max_params, mode=mode))
        def collect(case):
            drawn[0] += 1
            wanted = mode == "margin" or drawn[0] > 1
            if wanted and len(found) < examples and all(repr(case.spec) != repr(c.spec) for c in found[-1:]):
                found.append(case)

        collect()
        return found[:examples]

    for activation, loss, dtype in (("tanh", "mse", "float64"), ("relu", "softmax_cross_entropy", "float32")):
        for mode, n in sweep.mode_examples(3).items():
            with sweep._no_local_constants():
                new = sweep.generate(activation, loss, dtype, n, 0, sweep.DEFAULT_MAX_PARAMS, mode)
            with sweep._no_local_constants():
                old = full_run(activation, loss, dtype, n, 0, sweep.DEFAULT_MAX_PARAMS, mode)
            assert [repr(c.spec) for c in new] == [repr(c.spec) for c in old]
            for a, b in zip(new, old):
                assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
                assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)


def test_the_structured_oracle_shows_no_estimate_from_fns_per_call_time(monkeypatch):
    """The progress estimate is 2P calls of fn's measured time: right for the black-box oracle, and
    wildly wrong for the structured one (batched passes), which must not show it."""
    from gradcheck import progress

    started = []
    monkeypatch.setattr(progress, "start", lambda total, *a, **k: started.append(total))
    spec = NetworkSpec(3, (Layer(6, "tanh"), Layer(2, "identity")), "mse", batch=4)
    net, params, X, y = case(spec)
    assert gradcheck.check(net.loss_and_grads, params, X, y, spec=spec, oracle="structured", quiet=False)
    assert started == []
    assert gradcheck.check(net.loss_and_grads, params, X, y, quiet=False)
    assert started == [2 * sum(v.size for v in params.values())]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_scalar_parameter_goes_through_the_noise_probe(dtype):
    """0-d parameters (a learned temperature, a jax scalar) in the noise probe's directions, which
    are built in place for arrays: a correct gradient passes, a wrong one fails on that scalar."""
    X = np.linspace(-1, 1, 6, dtype=dtype)

    def fn(p, X, y, wrong=1.0):
        r = p["s"] * X - y
        return float(np.sum(r ** 2)), {"s": np.asarray(wrong * 2 * np.sum(r * X), dtype=dtype)}

    params = {"s": np.asarray(1.5, dtype=dtype)}
    assert gradcheck.check(fn, params, X, 0.5 * X, quiet=True)
    bad = gradcheck.check(lambda p, X, y: fn(p, X, y, wrong=0.5), params, X, 0.5 * X, quiet=True)
    assert not bad and bad.worst_param == "s"
