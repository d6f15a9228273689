"""check_vjp / check_jvp on the operator catalog (gradcheck.teach.operators): hand-written numpy
layers written the way users write them (conv2d with stride and padding, pooling, batch and layer
norm, attention, an LSTM step, an unrolled RNN, an embedding with repeated indices, a ReLU layer
with kinks at ordinary init).

Every correct operator must pass in float64 and float32 (the checker's own per-element tolerances:
a false alarm here is a bug of the checker), and every planted backward bug must fail with its
worst element on one of the inputs the bug touches -- and, in Jacobian mode, named together with
the output element.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradcheck
from gradcheck.teach.operators import BUGS, OPERATORS


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_correct_operator_passes_vjp_and_jvp(name, dtype):
    op = OPERATORS[name]
    inputs = op.make_inputs(np.random.default_rng(0), dtype)
    r = gradcheck.check_vjp(op.f, op.vjp, inputs, name=name)
    assert r.passed, str(r)
    r = gradcheck.check_jvp(op.f, op.jvp, inputs, name=name)
    assert r.passed, str(r)


#: the diagnosis each bug must get (None: no named pattern is claimed for it)
DIAGNOSED = {"softmax_no_rowsum": "low_rank_error", "batchnorm_stats_constant": "low_rank_error",
             "conv2d_overlap_dx_assign": "overwrites_accumulation", "embedding_assign": "overwrites_accumulation",
             "rnn_no_carry": "missing_path", "linear_bias_first_sample": "overwrites_accumulation"}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(BUGS))
def test_planted_backward_bug_is_caught_and_localized(name, dtype):
    bug = BUGS[name]
    op = OPERATORS[bug.operator]
    r = gradcheck.check_vjp(op.f, bug.vjp, op.make_inputs(np.random.default_rng(0), dtype))
    assert not r.passed
    assert r.worst.input in bug.wrong_inputs
    if r.operator["mode"] == "jacobian":
        assert r.worst.output is not None and r.worst.label().startswith("d ")
    if name in DIAGNOSED:
        assert r.diagnosis is not None and r.diagnosis.pattern == DIAGNOSED[name], str(r)


def test_a_wrong_jvp_is_caught_on_every_operator():
    """A forward-mode rule 1% off on one output is caught and localized to that output."""
    for name, op in OPERATORS.items():
        inputs = op.make_inputs(np.random.default_rng(1), np.float64)

        def off(inp, t, op=op):
            out = op.jvp(inp, t)
            if isinstance(out, tuple):
                return (out[0] * 1.01,) + tuple(out[1:])
            if isinstance(out, dict):
                first = next(iter(out))
                return {**out, first: out[first] * 1.01}
            return out * 1.01
        r = gradcheck.check_jvp(op.f, off, inputs, mode="random")
        assert not r.passed, name
        first_output = gradcheck.operators.Structure.of(op.f(inputs)).names[0]
        assert r.worst.output == first_output, name
