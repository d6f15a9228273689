"""The whole-network SymPy oracle against the reference backprop, and against its own ground truth.

Tolerance. The SymPy gradient and the reference backward pass are two float64 evaluations of the
same derivative by different operation orders, so they differ by rounding: each gradient entry is
a sum of ``batch x width`` path products of depth <= 3, whose rounding error is below ``1e-14``
of the tensor's magnitude at these sizes (the worst measured is ~1e-13 on a single tiny entry).
The error is ``|symbolic - reference| / (|reference| + 1e-6 * max|reference of the tensor|)`` and
must be ``<= 1e-10``: three orders above rounding, while a real backprop bug (sign, factor,
missing term, transposition) is off by 1e-3 or more. Against mpmath ground truth (``exact``), the
float SymPy gradient must also be within ``1e-14`` normwise (``||sym - exact|| / ||exact||``):
float64 rounding of a few dozen operations, far from anything a wrong derivative produces.
"""
from __future__ import annotations

import signal
import threading

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradcheck.spec import Layer, NetworkSpec
from gradcheck.symbolic import (
    SymbolicSkipped,
    cache_info,
    compile_gradient,
    exact_gradient,
    network_gradient,
)
from gradcheck.symbolic import network as symbolic_network
from gradcheck.symbolic.network import _Deadline, _grad_diff, _grad_graph, sample_loss
from gradcheck.symbolic.primitives import EPS, WEIGHT
from reference.activations import ACTIVATIONS
from reference.losses import LOSSES
from reference.network import Network
from reference.train import XOR_SPEC, XOR_X, XOR_Y

TOL = 1e-10
_LAST = {"probability": "sigmoid", "distribution": "softmax"}


def rel_error(a: dict, b: dict) -> float:
    """max over tensors of |a - b| / (|b| + 1e-6 max|b|), b the reference."""
    worst = 0.0
    assert set(a) == set(b)
    for k in b:
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        assert x.shape == y.shape, k
        floor = 1e-6 * np.max(np.abs(y)) + 1e-300
        worst = max(worst, float(np.max(np.abs(x - y) / (np.abs(y) + floor))))
    return worst


def normwise(a: dict, b: dict) -> float:
    """||a - b|| / ||b|| over all tensors together."""
    num = sum(float(np.sum((np.asarray(a[k]) - np.asarray(b[k])) ** 2)) for k in b)
    den = sum(float(np.sum(np.asarray(b[k]) ** 2)) for k in b)
    return (num / den) ** 0.5


def targets(loss: str, B: int, k: int, rng) -> np.ndarray:
    t = LOSSES[loss].target
    if t == "real":
        return rng.normal(size=(B, k))
    if t == "probability":
        return rng.uniform(0, 1, (B, k))
    if t == "sign":
        return rng.choice([-1.0, 1.0], (B, k))
    if t == "count":
        return rng.integers(0, 5, (B, k)).astype(np.float64)
    if t in ("class", "one_hot"):
        return np.eye(k)[rng.integers(0, k, B)]
    if t == "distribution":
        return rng.dirichlet(np.ones(k), B)
    raise AssertionError(f"no generator for target kind {t!r}")


def case(spec: NetworkSpec, seed: int = 0):
    rng = np.random.default_rng(seed)
    net = Network(spec)
    params = net.init_params()
    X = rng.normal(size=(spec.batch, spec.input_dim))
    y = targets(spec.loss, spec.batch, spec.output_dim, rng)
    return net, params, X, y


def _spec_for_loss(loss: str, hidden: str = "tanh", **kw) -> NetworkSpec:
    last = _LAST.get(LOSSES[loss].output, "identity")
    return NetworkSpec(3, (Layer(4, hidden), Layer(3, last)), loss, **{"batch": 5, **kw})


SPECS = (
    # every activation, as a hidden layer (depth 2) ...
    [NetworkSpec(3, (Layer(4, a), Layer(2, "identity")), "mse", batch=5) for a in ACTIVATIONS]
    # ... every loss, with the last activation it needs
    + [_spec_for_loss(loss) for loss in LOSSES]
    # depth 1, 3; without bias; a skip; float32 spec (evaluated in float64)
    + [NetworkSpec(4, (Layer(2, "sigmoid"),), "bce", batch=6),
       NetworkSpec(2, (Layer(3, "softplus", bias=False), Layer(3, "silu"), Layer(1, "identity", bias=False)),
                   "huber", batch=4),
       NetworkSpec(3, (Layer(3, "tanh"), Layer(4, "sigmoid"), Layer(3, "relu")), "mse", batch=4, skips=((0, 3),)),
       NetworkSpec(2, (Layer(3, "elu"), Layer(3, "gelu"), Layer(3, "softmax")), "categorical_cross_entropy",
                   batch=3, skips=((1, 3),)),
       NetworkSpec(3, (Layer(5, "leaky_relu", bias=False), Layer(3, "identity")), "softmax_cross_entropy", batch=7),
       XOR_SPEC]
)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.label())
def test_symbolic_matches_reference(spec):
    net, params, X, y = case(spec)
    if spec is XOR_SPEC:
        X, y = XOR_X, XOR_Y
    _, ref = net.loss_and_grads(params, X, y)
    sym = network_gradient(spec, params, X, y)
    assert all(v.dtype == np.float64 and v.shape == params[k].shape for k, v in sym.items())
    err = rel_error(sym, ref)
    assert err <= TOL, f"{spec.label()}: symbolic vs reference {err:.2e} > {TOL:g}"


def test_coverage_of_the_registries():
    assert {l.activation for s in SPECS for l in s.layers} == set(ACTIVATIONS)
    assert {s.loss for s in SPECS} == set(LOSSES)
    assert {s.depth for s in SPECS} >= {1, 2, 3}
    assert any(s.skips for s in SPECS) and any(not l.bias for s in SPECS for l in s.layers)


@pytest.mark.parametrize("spec", [SPECS[1], SPECS[3], SPECS[15], _spec_for_loss("kl_div", "gelu", batch=3),
                                  _spec_for_loss("hinge", "hard_tanh", batch=3), SPECS[-4]],
                         ids=lambda s: s.label())
def test_graph_method_equals_sympy_diff(spec):
    """The reverse walk over the expression gives SymPy's own diff, to rounding."""
    net, params, X, y = case(spec, seed=3)
    # generous time limits: this compares results, not speed, and CI machines are shared
    g = network_gradient(spec, params, X, y, method="graph", timeout=300)
    d = network_gradient(spec, params, X, y, method="diff", timeout=300)
    assert rel_error(g, d) <= 1e-12


def test_graph_method_equals_sympy_diff_exactly_on_a_small_expression():
    spec = NetworkSpec(2, (Layer(2, "tanh"), Layer(1, "sigmoid")), "bce", batch=1)
    built = sample_loss(spec)
    loss, theta, xs, ys = built.loss, built.theta, built.xs, built.ys
    named = sample_loss(spec, named=True)
    assert named.definitions and sp.simplify(named.expanded() - loss) == 0
    flat = [t for ts in theta.values() for t in ts]
    dl = _Deadline(60, "test")
    rng = np.random.default_rng(0)
    point = {s: sp.Rational(int(rng.integers(-9, 9)), 7) for s in flat + list(xs)}
    point.update({ys[0]: sp.Rational(1, 3), WEIGHT: 1, EPS: sp.Rational(1, 2**52)})
    graph_named = _grad_graph(named.loss, flat, dl, dict(named.definitions))
    for a, b, c in zip(_grad_graph(loss, flat, dl), _grad_diff(loss, flat, dl), graph_named):
        for _, (sym, value) in enumerate(reversed(named.definitions)):
            c = c.xreplace({sym: value})
        assert abs(sp.N((a - b).xreplace(point), 50)) < 1e-40
        assert abs(sp.N((c - b).xreplace(point), 50)) < 1e-40


@pytest.mark.parametrize("spec", [SPECS[2], SPECS[16 + list(LOSSES).index("softmax_cross_entropy")], SPECS[-3],
                                  XOR_SPEC], ids=lambda s: s.label())
def test_exact_agrees_with_float_symbolic(spec):
    net, params, X, y = case(spec, seed=5)
    if spec is XOR_SPEC:
        X, y = XOR_X, XOR_Y
    sym = network_gradient(spec, params, X, y)
    exact, mp = exact_gradient(spec, params, X, y, dps=50, return_mpf=True)
    assert rel_error(sym, exact) <= TOL
    assert normwise(sym, exact) <= 1e-14
    # more digits change nothing but, rarely, the last bit of the rounding
    assert rel_error(exact_gradient(spec, params, X, y, dps=80), exact) <= 2.3e-16
    k = next(iter(mp))
    assert mp[k].dtype == object and float(mp[k].flat[0]) == exact[k].flat[0]


def test_xor_truth_and_reference():
    net = Network(XOR_SPEC)
    params = net.init_params()
    _, ref = net.loss_and_grads(params, XOR_X, XOR_Y)
    exact = exact_gradient(XOR_SPEC, params, XOR_X, XOR_Y)
    assert rel_error(ref, exact) <= TOL and normwise(ref, exact) <= 1e-14


def test_class_index_targets_and_batch_reuse():
    spec = _spec_for_loss("softmax_cross_entropy", batch=4)
    net, params, X, _ = case(spec)
    idx = np.array([0, 2, 1, 2])
    _, ref = net.loss_and_grads(params, X, idx)
    assert rel_error(network_gradient(spec, params, X, idx), ref) <= TOL
    # the same compiled gradient serves another batch size, seed and init
    other = spec.replace(batch=9, seed=7, init="he")
    assert compile_gradient(other) is compile_gradient(spec)
    net2, p2, X2, y2 = case(other, seed=9)
    before = cache_info()
    g2 = network_gradient(other, p2, X2, y2)
    after = cache_info()
    assert after.builds == before.builds and after.hits == before.hits + 1  # evaluated, not rebuilt
    assert rel_error(g2, net2.loss_and_grads(p2, X2, y2)[1]) <= TOL


def _no_build(*args, **kwargs):
    raise AssertionError("a build was started")


def test_too_many_parameters_is_skipped_at_once(monkeypatch):
    """Refused before any SymPy work: no expression is built (timings: benchmarks/symbolic_speed.py)."""
    spec = NetworkSpec(100, (Layer(100, "tanh"), Layer(10, "identity")), "mse")
    net, params, X, y = case(spec)
    monkeypatch.setattr(symbolic_network, "sample_loss", _no_build)
    builds = cache_info().builds
    with pytest.raises(SymbolicSkipped, match=r"^skipped: too large \(P=11110, limit max_params=2000\)") as info:
        network_gradient(spec, params, X, y)
    assert info.value.kind == "size"
    with pytest.raises(SymbolicSkipped, match="too large"):
        exact_gradient(spec, params, X, y)
    assert cache_info().builds == builds


class FakeClock:
    """The time limit's clock, advancing ``step`` seconds at every read: the build sees its
    deadline pass after a known number of checks, whatever the machine's load."""

    def __init__(self, step: float) -> None:
        self.now, self.step, self.reads = 0.0, step, 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.step
        return self.now


_SLOW = NetworkSpec(40, (Layer(40, "gelu"), Layer(40, "tanh"), Layer(2, "identity")), "mse")


def test_time_limit_is_enforced():
    """A real 0.5 s limit on a build that takes seconds: refused as too slow (how long the refusal
    takes is measured by benchmarks/symbolic_speed.py, not asserted on a shared machine)."""
    net, params, X, y = case(_SLOW)
    with pytest.raises(SymbolicSkipped, match="too slow") as info:
        network_gradient(_SLOW, params, X, y, timeout=0.5, max_params=10**5)
    assert info.value.kind == "time"


def test_time_limit_is_cooperative_and_checked_often(monkeypatch):
    """The deadline is checked between small units of work: with a clock that moves 1 s per read
    and a 5 s limit, the build stops within layer 1, after a handful of checks."""
    net, params, X, y = case(_SLOW)
    clock = FakeClock(1.0)
    monkeypatch.setattr(symbolic_network, "_clock", clock)
    with pytest.raises(SymbolicSkipped, match=r"too slow \(P=3362: building layer 1 passed the time limit 5 s\)"):
        compile_gradient(_SLOW, timeout=5, max_params=10**5)
    assert clock.reads <= 8


def test_time_refusals_are_not_remembered_size_refusals_are(monkeypatch):
    """"Too slow" depends on the machine's load at that moment: asking again builds again. "Too
    large" is a property of the structure and the limits: remembered, no second build."""
    net, params, X, y = case(_SLOW)
    monkeypatch.setattr(symbolic_network, "_clock", FakeClock(1.0))
    for _ in range(2):
        builds = cache_info().builds
        with pytest.raises(SymbolicSkipped, match="too slow"):
            compile_gradient(_SLOW, timeout=5, max_params=10**5)
        assert cache_info().builds == builds + 1
    monkeypatch.setattr(symbolic_network, "_clock", FakeClock(0.0))  # time stands still
    spec = NetworkSpec(8, (Layer(8, "tanh"), Layer(1, "identity")), "mse")
    with pytest.raises(SymbolicSkipped, match="limit max_terms=50") as first:
        compile_gradient(spec, max_terms=50)
    assert first.value.kind == "size"
    before = cache_info()
    with pytest.raises(SymbolicSkipped, match="limit max_terms=50"):
        compile_gradient(spec, max_terms=50, timeout=3)  # the timeout is not part of a size refusal
    after = cache_info()
    assert after.builds == before.builds and after.hits == before.hits + 1
    assert after.refused <= after.maxsize and after.compiled <= after.maxsize


def test_skip_reason_and_kind_survive_pickling():
    import pickle

    for reason, kind in (("too slow (P=3: lambdify passed the time limit 1 s)", "time"),
                         ("too large (P=11110, limit max_params=2000)", "size")):
        again = pickle.loads(pickle.dumps(SymbolicSkipped(reason)))
        assert (again.reason, again.kind, str(again)) == (reason, kind, f"skipped: {reason}")


def test_caches_are_bounded_lrus(monkeypatch):
    """Both caches keep at most CACHE_SIZE entries, dropping the least recently used."""
    monkeypatch.setattr(symbolic_network, "CACHE_SIZE", 2)
    monkeypatch.setattr(symbolic_network, "_COMPILED", type(symbolic_network._COMPILED)())
    specs = [NetworkSpec(2, (Layer(w, "tanh"), Layer(1, "identity")), "mse") for w in (1, 2, 3)]
    first = compile_gradient(specs[0])
    compile_gradient(specs[1])
    assert compile_gradient(specs[0]) is first  # now the most recently used
    compile_gradient(specs[2])                  # drops specs[1]
    assert list(symbolic_network._COMPILED) == [(symbolic_network.structure_key(s), "graph")
                                                for s in (specs[0], specs[2])]


def test_no_signals_and_works_in_threads(monkeypatch):
    """The library installs no signal handler and sets no timer (a host program's SIGALRM is its
    own); builds, the time limit and the caches work from worker threads."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the symbolic oracle touched signals")

    if hasattr(signal, "setitimer"):
        monkeypatch.setattr(signal, "setitimer", forbidden)
    monkeypatch.setattr(signal, "signal", forbidden)
    spec = NetworkSpec(3, (Layer(3, "softsign"), Layer(2, "sin"), Layer(1, "identity")), "log_cosh", batch=4)
    net, params, X, y = case(spec, seed=11)
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["grad"] = network_gradient(spec, params, X, y)
            with pytest.raises(SymbolicSkipped, match="too slow"):
                network_gradient(_SLOW, *case(_SLOW)[1:], timeout=0.2, max_params=10**5)
            outcome["ok"] = True
        except BaseException as exc:  # reported in the main thread
            outcome["error"] = exc

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "error" not in outcome, outcome.get("error")
    assert outcome.get("ok") and rel_error(outcome["grad"], net.loss_and_grads(params, X, y)[1]) <= TOL


def test_expression_size_limit():
    spec = NetworkSpec(8, (Layer(8, "tanh"), Layer(1, "identity")), "mse")
    net, params, X, y = case(spec)
    with pytest.raises(SymbolicSkipped, match="limit max_terms=50"):
        network_gradient(spec, params, X, y, max_terms=50)


def test_invalid_use_raises_clear_errors():
    spec = SPECS[0]
    net, params, X, y = case(spec)
    with pytest.raises(ValueError, match="do not match"):
        network_gradient(spec, {"W1": params["W1"]}, X, y)
    with pytest.raises(ValueError, match="shape"):
        network_gradient(spec, {**params, "W1": params["W1"].T}, X, y)
    with pytest.raises(ValueError, match="X has shape"):
        network_gradient(spec, params, X[:, :2], y)
    with pytest.raises(ValueError, match="method"):
        network_gradient(spec, params, X, y, method="magic")
    with pytest.raises(ValueError, match="dps"):
        exact_gradient(spec, params, X, y, dps=10)
    with pytest.raises(ValueError, match="activation='nope'"):
        network_gradient(spec.replace(layers=[Layer(4, "nope"), Layer(2, "identity")]), params, X, y)
    # a spec given as its dict works the same
    assert rel_error(network_gradient(spec.to_dict(), params, X, y), network_gradient(spec, params, X, y)) == 0


_HIDDEN = sorted(a for a in ACTIVATIONS if a != "softmax")


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(acts=st.lists(st.sampled_from(_HIDDEN), min_size=0, max_size=2),
       loss=st.sampled_from(sorted(LOSSES)), width=st.integers(1, 3), batch=st.integers(1, 4),
       bias=st.booleans(), seed=st.integers(0, 100))
def test_random_small_specs(acts, loss, width, batch, bias, seed):
    last = _LAST.get(LOSSES[loss].output, "identity")
    n_out = max(LOSSES[loss].min_outputs, 2 if last == "softmax" else 1)
    spec = NetworkSpec(2, tuple(Layer(width, a, bias) for a in acts) + (Layer(n_out, last),), loss,
                       batch=batch, seed=seed)
    net, params, X, y = case(spec, seed)
    _, ref = net.loss_and_grads(params, X, y)
    assert rel_error(network_gradient(spec, params, X, y), ref) <= TOL


@pytest.mark.parametrize("activation", ["leaky_relu", "elu", "selu"])
def test_piecewise_condition_on_parameters_only(activation):
    """Batch 1, width 1: a Piecewise condition that depends only on parameters lambdifies to a
    numpy bool scalar; numpy.select refuses those, the oracle's select must not."""
    spec = NetworkSpec(1, (Layer(1, activation),), "huber", batch=1)
    net = Network(spec)
    params = net.init_params()
    X, y = np.array([[0.5]]), np.array([[0.3]])
    assert rel_error(network_gradient(spec, params, X, y), net(params, X, y)[1]) <= TOL
