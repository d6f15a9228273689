"""``check(..., budget=SECONDS | max_calls=N)``: the full check when it fits, else a stratified sample
of elements in every tensor plus random directions over all, with a coverage record
(:mod:`gradcheck.budget`; docs/checker.md, "Checking within a budget")."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

import gradcheck
from gradcheck import budget
from gradcheck.result import Result, coverage_text

N_IN, N_H, N_OUT = 30, 40, 3          # 1,363 parameters in 4 tensors
SMALL = 400                            # max_calls that forces a sample on them (the full check: ~1,400)


def problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {"W1": rng.normal(size=(N_IN, N_H)) / np.sqrt(N_IN), "b1": rng.normal(size=N_H) * 0.1,
              "W2": rng.normal(size=(N_H, N_OUT)) / np.sqrt(N_H), "b2": np.zeros(N_OUT)}
    X, y = rng.normal(size=(16, N_IN)), rng.normal(size=(16, N_OUT))
    return params, X, y


def fn(p, X, y):
    """A correct tanh MLP with MSE loss: smooth, analytic (so complex step is used)."""
    a = np.tanh(X @ p["W1"] + p["b1"])
    out = a @ p["W2"] + p["b2"]
    loss = np.mean(np.sum((out - y) ** 2, axis=1))
    d = 2 * (out - y) / len(X)
    dz = (d @ p["W2"].T) * (1 - a ** 2)
    return loss, {"W1": X.T @ dz, "b1": dz.sum(0), "W2": a.T @ d, "b2": d.sum(0)}


def planted(name: str, flat_index: int, delta: float):
    """fn with one claimed element off by ``delta`` (absolute)."""
    def wrong(p, X, y):
        loss, g = fn(p, X, y)
        g = dict(g)
        g[name] = g[name].copy()
        g[name].reshape(-1)[flat_index] += delta
        return loss, g
    return wrong


def claimed_of(f, params, X, y):
    return f(params, X, y)[1]


PARAMS, X, Y = problem()
G = max(float(np.max(np.abs(v))) for v in claimed_of(fn, PARAMS, X, Y).values())


# -- validation -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, error", [(0, ValueError), (-1, ValueError), (0.0, ValueError),
                                          (math.nan, ValueError), (math.inf, ValueError), ("x", TypeError),
                                          (True, TypeError), ([1.0], TypeError)])
def test_budget_is_validated_naming_it(value, error):
    with pytest.raises(error, match=r"^budget="):
        gradcheck.check(fn, PARAMS, X, Y, budget=value)


@pytest.mark.parametrize("value, error", [(0, ValueError), (-5, ValueError), (1.5, TypeError), ("10", TypeError),
                                          (False, TypeError)])
def test_max_calls_is_validated_naming_it(value, error):
    with pytest.raises(error, match=r"^max_calls="):
        gradcheck.check(fn, PARAMS, X, Y, max_calls=value)


def test_budget_is_refused_where_it_would_be_ignored():
    with pytest.raises(ValueError, match=r"^budget=10\.0: mode='fast'"):
        gradcheck.check(fn, PARAMS, X, Y, budget=10.0, mode="fast")
    with pytest.raises(ValueError, match=r"^max_calls=100: not with oracle='structured'"):
        gradcheck.check(fn, PARAMS, X, Y, max_calls=100, oracle="structured", spec=None)


# -- the full check when it fits ------------------------------------------------------------------------
@pytest.mark.parametrize("f", [fn, planted("W1", 7, 1e-6)], ids=["correct", "wrong"])
def test_full_check_when_it_fits_is_the_unbudgeted_check(f):
    plain = gradcheck.check(f, PARAMS, X, Y)
    for kwargs in ({"budget": 600.0}, {"max_calls": 10 ** 7}, {"budget": 600, "max_calls": 10 ** 7}):
        r = gradcheck.check(f, PARAMS, X, Y, **kwargs)
        assert r.coverage is not None and r.coverage["complete"] and r.coverage["directions"] == 0
        assert r.coverage["checked"] == r.coverage["total"] == 1363
        a, b = plain.to_dict(), r.to_dict()
        for d in (a, b):
            d.pop("seconds"), d.pop("coverage")
        assert a == b  # the same verdict, errors, elements and calls
        assert "the full check fit" in str(r)


# -- the sample ----------------------------------------------------------------------------------------------
def test_largest_entries_are_always_in_the_sample():
    claimed = claimed_of(fn, PARAMS, X, Y)
    for seed in range(20):
        for total in (8, 30, 200):
            order = budget.sample(PARAMS, claimed, total, seed)
            for k, p in PARAMS.items():
                assert int(np.argmax(np.abs(p))) in order[k][:2]
                assert int(np.argmax(np.abs(claimed[k]))) in order[k][:2]


def test_a_wrong_largest_entry_is_caught_under_every_seed():
    claimed = claimed_of(fn, PARAMS, X, Y)
    flat = int(np.argmax(np.abs(claimed["W1"])))
    f = planted("W1", flat, TINY)
    for seed in range(5):
        r = gradcheck.check(f, PARAMS, X, Y, max_calls=SMALL, seed=seed)
        assert not r.passed and r.worst is not None
        assert r.worst.index == list(np.unravel_index(flat, PARAMS["W1"].shape))


def relu_fn(p, X, y):
    """A correct ReLU MLP (kinks: the sample's kink handling and the directions' must not fail it)."""
    z = X @ p["W1"] + p["b1"]
    a = np.maximum(z, 0)
    out = a @ p["W2"] + p["b2"]
    loss = np.mean(np.sum((out - y) ** 2, axis=1))
    d = 2 * (out - y) / len(X)
    dz = (d @ p["W2"].T) * (z > 0)
    return loss, {"W1": X.T @ dz, "b1": dz.sum(0), "W2": a.T @ d, "b2": d.sum(0)}


@pytest.mark.parametrize("seed", range(6))
def test_a_correct_relu_network_passes_a_sampled_check(seed):
    params, X_, y_ = problem(seed)
    params = {k: (v.astype(np.float32) if seed % 2 else v) for k, v in params.items()}
    r = gradcheck.check(relu_fn, params, X_, y_, max_calls=SMALL, seed=seed)
    assert r.passed, str(r)
    assert not (r.coverage or {})["complete"]


def test_confirming_directions_tell_a_wrong_gradient_from_kinks():
    """At fast mode's float32 step a correct ReLU network's directional derivative is off by ~6%
    (kinks of many units crossed at once); at 4x and 8x smaller steps it agrees, while a wrong
    gradient's mismatch stays."""
    from gradcheck import numerical
    from gradcheck.contract import Tally

    params, X_, y_ = problem(1)
    work = {k: v.astype(np.float32) for k, v in params.items()}
    before = {k: v.copy() for k, v in work.items()}
    loss, claimed = relu_fn(work, X_, y_)

    def loss_of(p):
        return relu_fn(p, X_, y_)[0]
    noise, _ = numerical.noise_level(loss_of, work, loss)
    tally = Tally()
    assert not budget.confirm_directions(loss_of, work, claimed, loss, noise, 1, None, tally)[0]
    assert tally.calls == 4 * budget.CONFIRM_DIRECTIONS
    wrong = {**claimed, "W2": claimed["W2"] * 1.02}
    assert budget.confirm_directions(loss_of, work, wrong, loss, noise, 1, None, tally)[0]
    assert all(np.array_equal(work[k], before[k]) for k in work)


def test_allocation_is_exact_and_proportional():
    sizes = {"W1": 1200, "b1": 40, "W2": 120, "b2": 3}
    mandatory = {"W1": 2, "b1": 2, "W2": 2, "b2": 1}
    for total in (0, 7, 50, 189, 1000, 1363, 5000):
        counts = budget.allocate(sizes, mandatory, total)
        assert all(mandatory[k] <= counts[k] <= sizes[k] for k in sizes)
        assert sum(counts.values()) == min(max(total, 7), 1363)
    counts = budget.allocate(sizes, mandatory, 700)
    rest = {k: sizes[k] - mandatory[k] for k in sizes}
    for k in sizes:  # largest remainders: within one of the exact share
        assert abs(counts[k] - mandatory[k] - (700 - 7) * rest[k] / 1356) < 1


def test_every_stratum_is_represented():
    p = np.linspace(-1, 0.5, 1000)
    c = np.cos(np.arange(1000.0) + 0.3)
    first = budget.largest(p, c)
    assert first == [0, int(np.argmax(np.abs(c)))] and first[1] != 0
    for seed in range(5):
        order = budget.select(p, c, 52, np.random.default_rng(seed))
        assert list(order[:2]) == first and len(set(order.tolist())) == 52
        others = np.delete(np.arange(1000), first)
        bounds = np.linspace(0, others.size, 51).astype(int)
        strata = np.searchsorted(others, np.sort(order[2:]))  # positions among the others
        assert np.all((strata >= bounds[:-1]) & (strata < bounds[1:]))  # exactly one per stratum


def test_sampled_coverage_is_exact_and_deterministic_per_seed():
    r1 = gradcheck.check(fn, PARAMS, X, Y, max_calls=SMALL, seed=3)
    r2 = gradcheck.check(fn, PARAMS, X, Y, max_calls=SMALL, seed=3)
    assert r1.passed and r2.passed
    c1, c2 = dict(r1.coverage or {}), dict(r2.coverage or {})
    c1.pop("full_seconds"), c2.pop("full_seconds")
    assert c1 == c2 and not c1["complete"] and not c1["cut"]
    assert r1.calls == r2.calls <= SMALL and r1.max_rel_error == r2.max_rel_error
    per = c1["per_tensor"]
    assert {k: v[1] for k, v in per.items()} == {k: v.size for k, v in PARAMS.items()}
    assert c1["checked"] == sum(v[0] for v in per.values()) == c1["planned"]
    assert c1["total"] == 1363 and c1["tensors"] == 4 and c1["directions"] == budget.DIRECTIONS
    claimed = claimed_of(fn, PARAMS, X, Y)
    mandatory = {k: len(budget.largest(v, claimed[k])) for k, v in PARAMS.items()}
    assert {k: v[0] for k, v in per.items()} == budget.allocate({k: v.size for k, v in PARAMS.items()},
                                                                  mandatory, c1["planned"])
    # another seed: the same counts, other elements
    r3 = gradcheck.check(fn, PARAMS, X, Y, max_calls=SMALL, seed=4)
    assert (r3.coverage or {})["per_tensor"] == per
    assert not np.array_equal(budget.sample(PARAMS, claimed, c1["planned"], 3)["W1"],
                              budget.sample(PARAMS, claimed, c1["planned"], 4)["W1"])


def _in_sample(f, seed: int, name: str, flat: int, planned: int) -> bool:
    order = budget.sample(PARAMS, claimed_of(f, PARAMS, X, Y), planned, seed)
    return flat in set(order[name].tolist())


#: planted below what the directions resolve (their bound: >= 10 x 1.9 sigma / h ~ 1e-10 here),
#: far above what a sampled element's complex step resolves (~1e-14 x G)
TINY = 1e-11 * G


def _planned() -> int:
    return int((gradcheck.check(fn, PARAMS, X, Y, max_calls=SMALL).coverage or {})["planned"])


def test_a_wrong_element_in_the_sample_is_caught_and_localized():
    planned = _planned()
    order = budget.sample(PARAMS, claimed_of(fn, PARAMS, X, Y), planned, 0)
    flat = int(order["W1"][5])   # a stratum's pick, not one of the largest entries
    f = planted("W1", flat, TINY)
    assert _in_sample(f, 0, "W1", flat, planned)
    r = gradcheck.check(f, PARAMS, X, Y, max_calls=SMALL, seed=0)
    assert not r.passed and r.worst is not None
    assert r.worst.param == "W1" and r.worst.index == list(np.unravel_index(flat, PARAMS["W1"].shape))
    assert r.tensors["W1"].n_failed == 1 and r.tensors["W1"].shape == [N_IN, N_H]
    assert "coverage: checked" in str(r)
    # the same element outside the sample (another seed): nothing sees an error that small
    seed = next(s for s in range(1, 50) if not _in_sample(f, s, "W1", flat, planned))
    assert gradcheck.check(f, PARAMS, X, Y, max_calls=SMALL, seed=seed).passed


def test_a_wrong_element_outside_the_sample_is_caught_by_the_directions():
    planned = _planned()
    claimed = claimed_of(fn, PARAMS, X, Y)
    order = set(budget.sample(PARAMS, claimed, planned, 0)["W1"].tolist())
    flat = next(i for i in np.argsort(-np.abs(claimed["W1"].reshape(-1)))[5:] if int(i) not in order)
    f = planted("W1", int(flat), 1e-4 * abs(float(claimed["W1"].reshape(-1)[flat])))
    assert not _in_sample(f, 0, "W1", int(flat), planned)
    r = gradcheck.check(f, PARAMS, X, Y, max_calls=SMALL, seed=0)
    assert not r.passed
    assert r.worst is not None and r.worst.param == "W1"
    assert r.worst.index == list(np.unravel_index(int(flat), PARAMS["W1"].shape))
    assert any("bisection localized" in n for n in r.notes)
    # where bisection led joined the sample and was judged with the full check's error model
    assert r.worst.step == 1e-20 and r.scheme == "complex"   # the sample's complex step, not the ladder
    cov = r.coverage or {}
    assert cov["checked"] == cov["planned"] == planned + 1 and not r.tensors["W1"].passed
    assert r.diagnosis is not None and r.diagnosis.message.endswith("(read from the sampled elements only)")


def test_the_catch_rate_of_a_single_wrong_element_is_k_over_n():
    """Plant one wrong element (too small for the directions) at a random place of W1, many times,
    each with another seed: it is caught exactly when it is in the sample, and the rate of that is
    k/n (the stratified design: every element of a tensor is sampled with probability k_t/n_t).
    The observed count must lie within the 99.9% two-sided binomial interval of k/n (no luck)."""
    planned = _planned()
    claimed = claimed_of(fn, PARAMS, X, Y)
    mandatory = {k: len(budget.largest(v, claimed[k])) for k, v in PARAMS.items()}
    k = budget.allocate({n: v.size for n, v in PARAMS.items()}, mandatory, planned)["W1"]
    n = PARAMS["W1"].size
    rng = np.random.default_rng(2024)
    trials, caught = 120, 0
    for trial in range(trials):
        flat = int(rng.integers(n))
        f = planted("W1", flat, TINY)
        r = gradcheck.check(f, PARAMS, X, Y, max_calls=SMALL, seed=1000 + trial)
        assert (r.coverage or {})["per_tensor"]["W1"][0] == k
        assert (not r.passed) == _in_sample(f, 1000 + trial, "W1", flat, planned), trial
        caught += not r.passed
    p = k / n
    lo, hi = _binomial_interval(trials, p, 0.001)
    assert lo <= caught <= hi, (caught, trials * p, (lo, hi))


def _binomial_interval(n: int, p: float, alpha: float) -> tuple[int, int]:
    """The central (1 - alpha) interval of Binomial(n, p), exactly."""
    pmf = [math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(n + 1)]
    cdf = np.cumsum(pmf)
    lo = int(np.searchsorted(cdf, alpha / 2))
    hi = int(np.searchsorted(cdf, 1 - alpha / 2))
    return lo, hi


def test_the_directions_resolution_formula(monkeypatch):
    """A single wrong element outside the sample is caught by a sign direction exactly when
    |delta| |u_i| exceeds that direction's tolerance (docs/checker.md)::

        tau = 10 (1.90 sigma / h + |r1 - r2| / 3) + 16 eps sum_i |u_i| (|c_i| + max_t |c|) + 32 eps |D|

    (rounding of the Richardson directional derivative, the truncation seen between h and h/2, the
    claimed projection's ulps, the ulp floor; here the first two dominate: the ulp terms are
    ~1e-11). The verdict's own tolerance is recorded per direction and checked against the
    formula's dominant terms, then a planted element 30x above the largest tau is always caught and
    one 30x below the smallest never (here |u_i| = 1: every |x_i| < 1)."""
    from gradcheck import fastmode
    from gradcheck.compare import SAFETY

    taus: list[float] = []
    verdict = fastmode._directional_verdict

    def spy(*args, **kwargs):
        v = verdict(*args, **kwargs)
        tau = v["tol"] * abs(v["numerical"])          # |C - D| <= tau passes
        assert SAFETY * v["error"] <= tau <= SAFETY * v["error"] + 1e-10
        taus.append(tau)
        return v
    monkeypatch.setattr(fastmode, "_directional_verdict", spy)
    claimed = claimed_of(fn, PARAMS, X, Y)
    assert np.all(np.abs(PARAMS["W1"]) < 1)
    planned = _planned()
    rng = np.random.default_rng(5)
    for trial in range(4):
        seed = 50 + trial
        order = set(budget.sample(PARAMS, claimed, planned, seed)["W1"].tolist())
        flat = next(int(i) for i in rng.permutation(PARAMS["W1"].size) if int(i) not in order)
        taus.clear()
        assert gradcheck.check(fn, PARAMS, X, Y, max_calls=SMALL, seed=seed).passed
        assert len(taus) == budget.DIRECTIONS
        low, high = min(taus), max(taus)
        assert not gradcheck.check(planted("W1", flat, 30 * high), PARAMS, X, Y, max_calls=SMALL, seed=seed).passed
        assert gradcheck.check(planted("W1", flat, low / 30), PARAMS, X, Y, max_calls=SMALL, seed=seed).passed


# -- time budgets ------------------------------------------------------------------------------------------------
def test_a_time_budget_is_kept_and_a_slow_sample_is_cut():
    calls = [0]

    def slowing(p, X_, y_):
        calls[0] += 1
        time.sleep(0.0005 if calls[0] < 40 else 0.004)   # 8x slower once the sample starts
        return fn(p, X_, y_)
    r = gradcheck.check(slowing, PARAMS, X, Y, budget=1.0)
    cov = r.coverage or {}
    assert r.passed and not cov["complete"] and cov["cut"]
    assert any("ran slower than planned" in n for n in r.notes)
    assert cov["checked"] < cov["planned"]
    assert r.seconds < 1.0 + 0.5     # the reserve is for a failure's second looks; an idle one is kept


def _slow_wrong_w1(fn_seconds: float):
    """fn with W1's gradient scaled by 1 + 1e-4, taking ``fn_seconds`` a call, and its loss_fn (1 ms)."""
    def loss_fn(p, X_, y_):
        time.sleep(0.001)
        return fn(p, X_, y_)[0]

    def wrong(p, X_, y_):
        time.sleep(fn_seconds)
        loss, g = fn(p, X_, y_)
        return loss, {**g, "W1": g["W1"] * (1 + 1e-4)}
    return wrong, loss_fn


def test_second_looks_are_planned_at_the_cost_of_fn_not_of_the_loss():
    """A wrong tensor fails every sampled element of it; each second look then costs loss calls
    and two calls of fn (with its backward) beside x. With fn 30x dearer than loss_fn, planning the
    looks at the loss's price took 2.7 s under a 2 s budget; planned at both prices, 1.9 s (the rest
    left out and counted). The time budget adapts to the pace it measures, so a loaded machine
    slows what it plans, not the overrun; 1.25x is the margin."""
    wrong, loss_fn = _slow_wrong_w1(fn_seconds=0.03)
    r = gradcheck.check(wrong, PARAMS, X, Y, loss_fn=loss_fn, budget=2.0, quiet=True)
    cov = r.coverage or {}
    assert not r.passed and r.worst_param == "W1" and not cov["complete"]
    assert cov["not_reexamined"] > 0
    assert r.seconds < 1.25 * 2.0, r.seconds


def test_a_full_check_that_fit_caps_its_second_looks():
    """The full check fits the budget (1,363 complex-step calls of a 1 ms loss_fn), then every
    element of a wrong W1 fails its first look: 1,200 second looks of ~30 ms each (loss calls and
    fn's gradient beside x) took 15.7 s under a 5 s budget. Now each tensor gets its share of the
    looks the budget pays for, largest margins first; the rest are left out and counted, and the
    coverage is no longer complete. 1.25x only catches a gross overrun (see above)."""
    wrong, loss_fn = _slow_wrong_w1(fn_seconds=0.01)
    r = gradcheck.check(wrong, PARAMS, X, Y, loss_fn=loss_fn, budget=5.0, quiet=True)
    cov = r.coverage or {}
    assert not r.passed and r.worst_param == "W1", str(r)
    assert not cov["complete"] and cov["not_reexamined"] > 0 and cov["directions"] == 0
    assert cov["checked"] + cov["not_reexamined"] == cov["total"] == 1363
    assert any("could not be re-examined" in n for n in r.notes)
    assert r.seconds < 1.25 * 5.0, r.seconds


def test_overrun_is_never_silent():
    r = gradcheck.check(fn, PARAMS, X, Y, max_calls=5)   # less than the validation and noise probe need
    assert r.passed and (r.coverage or {})["overrun"]
    assert any(n.startswith("over budget: made") for n in r.notes)


# -- the record: JSON, explanation, report -----------------------------------------------------------------------
def test_coverage_text():
    cov = {"complete": False, "checked": 2048, "total": 1_000_000, "tensors": 8, "directions": 16, "budget": 30.0}
    assert coverage_text(cov) == "checked 2,048 of 1,000,000 elements in 8 tensors, plus 16 directions over all (budget 30 s)"
    full = {"complete": True, "checked": 1363, "total": 1363, "tensors": 4, "directions": 0, "max_calls": 10000}
    assert coverage_text(full) == "checked all 1,363 elements in 4 tensors (max_calls 10,000: the full check fit)"


def test_explain_line():
    r = gradcheck.check(fn, PARAMS, X, Y, max_calls=SMALL)
    cov = r.coverage or {}
    line = (f"  coverage: checked {cov['checked']:,} of 1,363 elements in 4 tensors, plus 16 directions over all "
            f"(max_calls {SMALL})")
    lines = str(r).splitlines()
    assert lines[1] == line
    w1 = cov["per_tensor"]["W1"]
    assert lines[2].startswith(f"  sampled: a single wrong element at a random place was in the sample with "
                               f"probability {100 * w1[0] / w1[1]:.3g}% (W1) to ")


def test_json_round_trip_with_coverage_and_old_json_loads(tmp_path):
    r = gradcheck.check(planted("W1", 3, 1e-3), PARAMS, X, Y, max_calls=SMALL)
    d = json.loads(json.dumps(r.to_dict()))
    back = Result.from_dict(d)
    assert back.coverage == r.coverage
    assert str(back) == str(r)
    old = dict(d)
    old.pop("coverage")
    assert Result.from_dict(old).coverage is None
    ok = gradcheck.check(fn, PARAMS, X, Y, budget=600.0)
    from gradcheck import report

    html = report.write([r, ok], tmp_path, title="budget").read_text(encoding="utf-8")
    assert (r.coverage or {})["text"] in html and "the full check fit" in html
    doc = json.loads((tmp_path / "gradcheck.json").read_text(encoding="utf-8"))
    assert doc["results"][0]["coverage"] == json.loads(json.dumps(r.to_dict()["coverage"]))
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(report.SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(doc)
    doc["results"][0]["coverage"]["checked"] = "many"
    assert not validator.is_valid(doc)


# -- a torch model through the adapter ----------------------------------------------------------------------------
def test_torch_model_of_1e5_parameters_within_a_budget():
    """An MLP 784 -> 128 -> tanh -> 10 (101,770 parameters) through gradcheck.adapters.torch, in
    float64, under budget=4 s (the full check would take ~200,000 calls).

    Tolerance argument: the sample is judged with the full check's error model, so a correct model
    passes as the full check does (tanh is smooth: no kinks; float64: central differences resolve
    ~1e-8 relative on ordinary entries). A tensor scaled by 1 + 1e-4 is caught because every
    tensor's largest-|claimed| entry is always sampled, and that entry is resolved far below 1e-4
    (its tolerance is ~1e-9 relative); in float64 the random directions see it too (their
    tolerance, ~16 eps P (mean + max)|c| plus rounding, is ~1e-7 relative here). In float32 neither
    would: a sampled element resolves ~1e-3 relative and the directions' ulp allowance alone is
    ~2e-6 sqrt(P) relative, so only errors of ~1e-2 and more are seen there.
    """
    torch = pytest.importorskip("torch")
    from gradcheck.adapters import torch as gc_torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.Tanh(), torch.nn.Linear(128, 10))
        f, params = gc_torch.as_fn(model, torch.nn.MSELoss())
        rng = np.random.default_rng(0)
        Xt, yt = rng.normal(size=(16, 784)), rng.normal(size=(16, 10))

        def wrong(p, X_, y_):
            loss, g = f(p, X_, y_)
            g = dict(g)
            g["0.weight"] = g["0.weight"] * (1 + 1e-4)
            return loss, g
        ok = gradcheck.check(f, params, Xt, yt, loss_fn=f.loss, budget=4.0)
        bad = gradcheck.check(wrong, params, Xt, yt, loss_fn=f.loss, budget=4.0)
    finally:
        torch.set_num_threads(threads)
    assert ok.passed, str(ok)
    assert not bad.passed and bad.worst_param == "0.weight", str(bad)
    for r in (ok, bad):
        cov = r.coverage or {}
        assert not cov["complete"] and cov["total"] == 101_770 and cov["checked"] >= 12
        assert r.seconds < 3 * 4.0   # not a timing test (a loaded machine), only a gross overrun
