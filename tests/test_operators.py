"""check_vjp / check_jvp on small hand-written operators: verdicts, localization to the output and
input element, diagnoses, and the harness's behaviour on faults and misuse.

Tolerances are the checker's own (derived per element from the dtype and the estimate's error); the
assertions here are about verdicts and where a failure is reported, and about the size of the
errors a correct operator shows: float64 below 1e-8 (the default scheme reaches ~1e-13), float32
below 1e-2 (the float32 step's rounding, eps^(2/3) ~ 4e-5 relative, times the conditioning).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import gradcheck
from gradcheck.result import Result

RNG = np.random.default_rng(7)


def tanh_layer(inp):
    return np.tanh(inp["x"] @ inp["W"] + inp["b"])


def tanh_layer_vjp(inp, g):
    h = tanh_layer(inp)
    dz = g * (1 - h * h)
    return {"x": dz @ inp["W"].T, "W": inp["x"].T @ dz, "b": dz.sum(axis=0)}


def tanh_layer_jvp(inp, t):
    h = tanh_layer(inp)
    return (1 - h * h) * (t["x"] @ inp["W"] + inp["x"] @ t["W"] + t["b"])


def layer_inputs(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((4, 3)).astype(dtype), "W": rng.standard_normal((3, 5)).astype(dtype),
            "b": rng.standard_normal(5).astype(dtype)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["jacobian", "random"])
def test_correct_layer_passes_in_both_modes_and_dtypes(dtype, mode):
    r = gradcheck.check_vjp(tanh_layer, tanh_layer_vjp, layer_inputs(dtype), mode=mode)
    assert r.passed, str(r)
    assert r.max_rel_error < (1e-8 if dtype == np.float64 else 1e-2)
    assert r.operator["kind"] == "vjp" and r.operator["mode"] == mode
    r = gradcheck.check_jvp(tanh_layer, tanh_layer_jvp, layer_inputs(dtype), mode=mode)
    assert r.passed, str(r)


def test_full_jacobian_blocks_have_output_then_input_shape_and_true_values():
    inp = layer_inputs()
    r = gradcheck.check_vjp(tanh_layer, tanh_layer_vjp, inp, mode="jacobian")
    block = r.tensors["dout/dx"]
    assert block.shape == [4, 5, 4, 3]
    h = tanh_layer(inp)
    n, o, m, i = 1, 2, 1, 0   # d out[n, o] / d x[m, i] = (1 - h^2)[n, o] W[i, o] if n == m
    assert block.numerical[n, o, m, i] == pytest.approx((1 - h[n, o] ** 2) * inp["W"][i, o], rel=1e-12)
    assert block.numerical[n, o, 0, i] == 0
    # the full Jacobian costs about 2P calls of f (P = 32 input elements), not one 2P per row
    assert r.operator["f_calls"] < 6 * 32
    assert r.operator["derivative_calls"] >= 20   # one f_vjp per row at least


def test_wrong_bias_gradient_is_localized_to_output_and_input_element():
    def vjp_one_sample_bias(inp, g):
        d = tanh_layer_vjp(inp, g)
        d["b"] = (g * (1 - tanh_layer(inp) ** 2))[0]   # the batch sum forgotten
        return d
    r = gradcheck.check_vjp(tanh_layer, vjp_one_sample_bias, layer_inputs())
    assert not r.passed
    w = r.worst
    assert w.input == "b" and w.output == "out" and w.param == "dout/db"
    assert w.output_index[0] != 0 and w.claimed == 0        # rows of samples 1..3 get nothing
    assert w.output_index[1] == w.index[-1]
    assert w.label() == f"d out[{w.output_index[0]}, {w.output_index[1]}] / d b[{w.index[-1]}]"
    assert not r.tensors["dout/db"].passed
    assert r.tensors["dout/dx"].passed and r.tensors["dout/dW"].passed
    assert "d out[" in gradcheck.result.failure_line(r)


def test_wrong_jvp_is_localized_to_output_element_and_input():
    def jvp_missing_x_term(inp, t):
        h = tanh_layer(inp)
        return (1 - h * h) * (inp["x"] @ t["W"] + t["b"])
    r = gradcheck.check_jvp(tanh_layer, jvp_missing_x_term, layer_inputs())
    assert not r.passed
    assert r.worst.input == "x" and r.worst.output == "out"
    assert not r.tensors["dout/dx"].passed and r.tensors["dout/dW"].passed and r.tensors["dout/db"].passed
    r = gradcheck.check_jvp(tanh_layer, jvp_missing_x_term, layer_inputs(), mode="random")
    assert not r.passed and r.worst.input == "x"
    assert r.tensors["out (tangent on W)"].passed


def rnn2(inp):
    x, h0, W = inp["x"], inp["h0"], inp["W"]
    h1 = np.tanh(x[0] + h0 @ W)
    h2 = np.tanh(x[1] + h1 @ W)
    return (h1, h2)


def rnn2_vjp(inp, cot, carry=True):
    h0, W = inp["h0"], inp["W"]
    h1, h2 = rnn2(inp)
    d1, d2 = cot
    dz2 = d2 * (1 - h2 ** 2)
    dh1 = d1 + (dz2 @ W.T if carry else 0)
    dz1 = dh1 * (1 - h1 ** 2)
    return {"x": np.stack([dz1, dz2]), "h0": dz1 @ W.T, "W": np.outer(h1, dz2) + np.outer(h0, dz1)}


def rnn_inputs():
    rng = np.random.default_rng(3)
    return {"x": rng.standard_normal((2, 3)), "h0": rng.standard_normal(3), "W": 0.5 * rng.standard_normal((3, 3))}


def test_tuple_outputs_and_missing_path_diagnosis():
    assert gradcheck.check_vjp(rnn2, rnn2_vjp, rnn_inputs()).passed
    r = gradcheck.check_vjp(rnn2, lambda i, c: rnn2_vjp(i, c, carry=False), rnn_inputs())
    assert not r.passed
    assert r.worst.output == "out1"                          # the later output ...
    assert r.tensors["dout0/dx"].passed                      # ... the first step's own path is right
    assert not r.tensors["dout1/dh0"].passed
    assert r.diagnosis is not None and r.diagnosis.pattern == "missing_path"
    assert "'out1'" in r.diagnosis.message and "'h0'" in r.diagnosis.message


def embedding(inp):
    return inp["W"][inp["idx"]]


def embedding_vjp(inp, g):
    dW = np.zeros_like(inp["W"])
    np.add.at(dW, inp["idx"], g)
    return {"W": dW}


def embedding_vjp_assigns(inp, g):
    dW = np.zeros_like(inp["W"])
    dW[inp["idx"]] = g
    return {"W": dW}


def test_integer_inputs_are_constants_and_assignment_is_diagnosed():
    inp = {"W": RNG.standard_normal((5, 3)), "idx": np.array([0, 2, 0, 4])}
    r = gradcheck.check_vjp(embedding, embedding_vjp, inp)
    assert r.passed, str(r)
    assert r.operator["constants"] == ["idx"] and list(r.operator["inputs"]) == ["W"]
    r = gradcheck.check_vjp(embedding, embedding_vjp_assigns, inp)
    assert not r.passed
    assert r.worst.index[0] == 0 or r.worst.index[-2] == 0   # row 0 is the repeated index
    assert r.diagnosis.pattern == "overwrites_accumulation"
    # the dense cotangent alone also catches it (random mode), on W's row 0 only
    r = gradcheck.check_vjp(embedding, embedding_vjp_assigns, inp, mode="random")
    assert not r.passed and {e.index[0] for e in r.failures} == {0}


def test_dict_outputs_none_gradient_and_wrt():
    def f(inp):
        return {"sum": inp["a"] + inp["b"], "scaled": 3.0 * inp["a"]}

    def vjp(inp, cot):
        assert set(cot) == {"sum", "scaled"}
        return {"a": cot["sum"] + 3.0 * cot["scaled"], "b": cot["sum"], "c": None}

    inp = {"a": RNG.standard_normal(3), "b": RNG.standard_normal(3), "c": RNG.standard_normal(2)}
    r = gradcheck.check_vjp(f, vjp, inp)
    assert r.passed, str(r)                       # c gets no gradient: None checked as zero, rightly
    assert set(r.operator["outputs"]) == {"sum", "scaled"}
    r = gradcheck.check_vjp(f, lambda i, c: {**vjp(i, c), "b": None}, inp)
    assert not r.passed and r.worst.input == "b"  # None where the true gradient is not zero
    r = gradcheck.check_vjp(f, lambda i, c: {"a": vjp(i, c)["a"]}, inp, wrt=["a"])
    assert r.passed and list(r.operator["inputs"]) == ["a"]


def test_kinks_at_ordinary_init_are_not_failures():
    def relu_layer(inp):
        return np.maximum(inp["x"] @ inp["W"], 0)

    def relu_vjp(inp, g):
        z = inp["x"] @ inp["W"]
        dz = g * (z > 0)
        return {"x": dz @ inp["W"].T, "W": inp["x"].T @ dz}
    inp = {"x": np.array([[1.0, -1.0], [0.5, 0.25]]), "W": np.array([[1.0, 2.0], [1.0, 0.5]])}  # z[0, 0] = 0
    r = gradcheck.check_vjp(relu_layer, relu_vjp, inp)
    assert r.passed, str(r)
    assert r.kinks


def _log_softmax(inp):
    z = inp["z"]
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _log_softmax_vjp(inp, g, *, bug=False):
    z = inp["z"]
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    s = e / e.sum(axis=-1, keepdims=True)
    return {"z": g - (0 if bug else s) * g.sum(axis=-1, keepdims=True)}


@pytest.mark.parametrize("seed", range(10))
def test_confident_float32_log_softmax_passes_and_a_dropped_row_sum_fails(seed):
    """One logit 16 above the rest per row: the Jacobian entry ``1 - s`` (~5e-7) keeps 3 bits in
    float32 and no finite difference of the float32 output resolves it. The checker's float64
    second opinion (fn promotes) judges those entries; without it every seed failed. The row-sum
    term dropped (an O(1) error on every entry off the diagonal) still fails."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((3, 4))
    z[np.arange(3), rng.integers(0, 4, 3)] += 16.0
    inp = {"z": z.astype(np.float32)}
    r = gradcheck.check_vjp(_log_softmax, _log_softmax_vjp, inp, mode="jacobian")
    assert r.passed, str(r)
    bad = gradcheck.check_vjp(_log_softmax, lambda i, g: _log_softmax_vjp(i, g, bug=True), inp, mode="jacobian")
    assert not bad.passed and bad.worst.input == "z", str(bad)


def test_an_operator_failure_explains_the_tolerance_its_row_used():
    """Each Jacobian row is its own check with its own gradient scale; the explanation's terms must
    add up to the tolerance that row applied (it printed the largest row's scale instead)."""
    from gradcheck.tolerance import MODEL
    z = np.random.default_rng(0).standard_normal((3, 4))
    r = gradcheck.check_vjp(_log_softmax, lambda i, g: _log_softmax_vjp(i, g, bug=True), {"z": z}, mode="jacobian")
    w = r.worst
    assert not r.passed and w.output == "out" and w.scale is not None and w.scale < r.scale, str(r)
    eps = np.finfo(np.float64).eps
    terms = MODEL.safety * w.error_bound + w.claimed_noise * MODEL.safety + MODEL.analytic_ulps * eps * (
        abs(w.numerical) + w.scale)
    assert w.tolerance * abs(w.numerical) == pytest.approx(terms, rel=1e-6)
    assert f"the check's gradient scale {w.scale:.2e}" in str(r)


def test_caller_inputs_untouched_and_mutation_reported():
    inp = layer_inputs()
    before = {k: v.copy() for k, v in inp.items()}

    def vjp_mutating(i, g):
        d = tanh_layer_vjp(i, g)
        i["W"] *= 0.5          # writes into what it was given
        return d
    r = gradcheck.check_vjp(tanh_layer, vjp_mutating, inp)
    assert not r.passed
    assert r.problems[0].kind == "mutates_input" and "f or f_vjp modified inputs['W']" in r.problems[0].message
    for k in inp:
        assert inp[k].tobytes() == before[k].tobytes()


def test_nondeterministic_backward_and_nondet_tol():
    state = {"n": 0}

    def vjp_jitter(i, g):
        state["n"] += 1
        d = tanh_layer_vjp(i, g)
        d["W"] = d["W"] + 1e-9 * (state["n"] % 2)
        return d
    r = gradcheck.check_vjp(tanh_layer, vjp_jitter, layer_inputs(), mode="random")
    assert not r.passed and r.problems[0].kind == "nondeterministic"
    assert "f or f_vjp is not deterministic" in r.problems[0].message
    r = gradcheck.check_vjp(tanh_layer, vjp_jitter, layer_inputs(), mode="random", nondet_tol=1e-8)
    assert r.passed, str(r)


@pytest.mark.parametrize("vjp, kind, words", [
    (lambda i, g: (_ for _ in ()).throw(RuntimeError("boom")), "raised", "f_vjp raised RuntimeError: boom"),
    (lambda i, g: [1, 2], "bad_grads", "f_vjp must return a dict"),
    (lambda i, g: {"x": 0 * i["x"], "W": 0 * i["W"]}, "missing_key", "f_vjp's result lacks 'b'"),
    (lambda i, g: {**tanh_layer_vjp(i, g), "z": None}, "extra_key", "'z' that are not inputs"),
    (lambda i, g: {**tanh_layer_vjp(i, g), "W": np.zeros((5, 3))}, "shape",
     "f_vjp(...)['W'] has shape (5, 3), expected (3, 5) (the shape of inputs['W']) (transposed?)"),
    (lambda i, g: {**tanh_layer_vjp(i, g), "b": np.full(5, np.nan)}, "non_finite_grad", "f_vjp(...)['b'] is nan"),
])
def test_faults_of_the_backward_are_specific_failures(vjp, kind, words):
    r = gradcheck.check_vjp(tanh_layer, vjp, layer_inputs())
    assert not r.passed
    assert r.problems[0].kind == kind
    assert words in r.problems[0].message
    assert words.split(" ")[0] in str(r)


def test_faults_of_f():
    r = gradcheck.check_vjp(lambda i: np.where(i["x"] > 0, np.nan, i["x"]), tanh_layer_vjp, layer_inputs())
    assert not r.passed and r.problems[0].kind == "non_finite_output" and "'out' is nan" in r.problems[0].message
    r = gradcheck.check_vjp(lambda i: (), tanh_layer_vjp, layer_inputs())
    assert r.problems[0].kind == "bad_return"


def test_misuse_raises_naming_the_argument():
    inp = layer_inputs()
    with pytest.raises(TypeError, match="f must be callable"):
        gradcheck.check_vjp(None, tanh_layer_vjp, inp)
    with pytest.raises(TypeError, match=r"inputs\['x'\] must be a numpy array, got list \(use np.asarray\)"):
        gradcheck.check_vjp(tanh_layer, tanh_layer_vjp, {"x": [1.0]})
    with pytest.raises(ValueError, match=r"wrt=\['q'\]: 'q' is not an input"):
        gradcheck.check_vjp(tanh_layer, tanh_layer_vjp, inp, wrt=["q"])
    with pytest.raises(ValueError, match=r"mode='full': expected one of 'auto', 'jacobian', 'random'"):
        gradcheck.check_vjp(tanh_layer, tanh_layer_vjp, inp, mode="full")
    with pytest.raises(ValueError, match=r"inputs\['x'\] has a non-finite value at x\[0, 0\]"):
        gradcheck.check_vjp(tanh_layer, tanh_layer_vjp, {**inp, "x": np.full((4, 3), np.inf)})
    with pytest.raises(ValueError, match="no floating array"):
        gradcheck.check_vjp(embedding, embedding_vjp, {"W": np.arange(6).reshape(3, 2), "idx": np.array([0])})
    with pytest.raises(ValueError, match="cotangents=0"):
        gradcheck.check_vjp(tanh_layer, tanh_layer_vjp, inp, cotangents=0)


def test_observers_see_one_result_per_operator_check():
    seen: list[Result] = []
    gradcheck.checker.observers.append(seen.append)
    try:
        gradcheck.check_vjp(tanh_layer, tanh_layer_vjp, layer_inputs())
    finally:
        gradcheck.checker.observers.remove(seen.append)
    assert len(seen) == 1 and seen[0].operator["kind"] == "vjp"


def test_result_round_trips_through_json():
    r = gradcheck.check_vjp(rnn2, lambda i, c: rnn2_vjp(i, c, carry=False), rnn_inputs())
    back = Result.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.worst.label() == r.worst.label() and back.operator == r.operator
    assert str(back).splitlines()[0] == str(r).splitlines()[0]


def test_assert_vjp_message_names_the_element():
    with pytest.raises(AssertionError, match=r"gradient check failed: d out1\["):
        gradcheck.assert_vjp(rnn2, lambda i, c: rnn2_vjp(i, c, carry=False), rnn_inputs())
    gradcheck.assert_jvp(tanh_layer, tanh_layer_jvp, layer_inputs())


def test_failing_float32_check_reports_float32():
    """A failing sub-check is falsy (Result.__bool__ is passed): the merged labels must still come
    from it (dtype, scheme), so the tolerance text speaks of float32 ulps."""
    def vjp_wrong(inp, g):
        d = tanh_layer_vjp(inp, g)
        d["W"] = 1.5 * d["W"]
        return d
    r = gradcheck.check_vjp(tanh_layer, vjp_wrong, layer_inputs(np.float32))
    assert not r.passed and r.dtype == "float32"
    assert "ulp of float32" in str(r)


def test_report_shows_operator_entries_by_their_labels(tmp_path):
    """The HTML report and gradcheck.json of operator checks name entries as output/input pairs."""
    from gradcheck import report
    r = gradcheck.check_vjp(rnn2, lambda i, c: rnn2_vjp(i, c, carry=False), rnn_inputs(), name="rnn2")
    html = report.write([r], tmp_path).read_text()
    assert r.worst.label() in html
    assert f"{r.worst.param}[" not in html     # never the block name with the raw concatenated index


# -- random-mode JVPs: the combined direction ----------------------------------------------------------
def _bilinear_f(inputs):
    return inputs["x"] @ inputs["W"]


def _bilinear_jvp(inputs, tangents):
    return tangents["x"] @ inputs["W"] + inputs["x"] @ tangents["W"]


def _interaction_bug_jvp(inputs, tangents):
    """Right for each input alone; when both move it keeps only the x term (an `if/else` instead of a sum)."""
    if np.any(tangents["x"]):
        return tangents["x"] @ inputs["W"]
    return inputs["x"] @ tangents["W"]


def test_random_jvp_skips_the_combined_direction_when_linear_and_checks_it_when_not():
    """A linear JVP: the per-input random checks pass and the combined direction, which linearity
    implies, adds no sub-check. An interaction bug (each input right alone, wrong together) is not
    linear: the combined direction is then checked against differences of f and fails there."""
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((3, 4)), "W": rng.standard_normal((4, 2))}
    ok = gradcheck.check_jvp(_bilinear_f, _bilinear_jvp, inputs, mode="random")
    assert ok.passed
    assert not any("all inputs" in name for name in ok.tensors)
    bad = gradcheck.check_jvp(_bilinear_f, _interaction_bug_jvp, inputs, mode="random")
    assert not bad.passed
    assert bad.worst.display.endswith("(tangent on all inputs)")
    assert all(t.passed for name, t in bad.tensors.items() if "all inputs" not in name)
