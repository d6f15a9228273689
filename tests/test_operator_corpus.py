"""gradcheck's operator checks on correct hand-written numpy operators they were not written for,
and on planted bugs in their backward passes.

What is compared
    Each operator of tests/operator_corpus/ (logsumexp, softplus with a sharpness, group norm, a
    dilated depthwise conv1d, cumsum/cumprod, gather with repeated indices, masked softmax, a
    squared-distance matrix, a log-determinant and Mahalanobis term via Cholesky, Huber) is
    ``f`` with a hand-written VJP and JVP. ``gradcheck.check_vjp`` compares the CLAIMED
    vector-Jacobian products (every row of the Jacobian: a unit cotangent per output element,
    plus one dense random cotangent) and ``gradcheck.check_jvp`` the CLAIMED Jacobian-vector
    products (every column: a unit tangent per input element) with the checker's OWN ORACLES
    (finite differences of ``f``, or the complex step where ``f`` allows it, with their step
    ladders and kink handling). Nothing here computes a reference derivative: the operators were
    verified once, outside the test suite, against torch autograd in float64 (every Jacobian entry
    within ~1e-14 of the block's largest) and by <vjp(u), v> == <u, jvp(v)>.

Tolerance
    The checker's own model, with default options (``mode="auto"``, which takes the full Jacobian
    at these sizes): no test passes rtol or any other option. A correct operator failing is a
    false alarm of the checker, and weakening the test (rtol, xfail, other inputs) would hide
    exactly what this file exists to expose. Each planted bug changes the VJP of the inputs it
    touches by 7e-2 .. 17 relative (norm of the change over the norm of the true VJP, dense
    cotangent) -- orders above float64's tolerances and above float32's (~1e-3) -- so each must
    fail, with ``result.worst.input`` one of the inputs the bug touches.

Conditions that break checkers, built into the inputs
    * large offsets: logsumexp rows at +-50 (float32 ulp ~4e-6), a group-norm group at mean 20,
      points of a squared-distance matrix ~25 from the origin in the expanded form
      |x|^2 + |y|^2 - 2 x.y (each entry a small difference of terms ~700);
    * saturation and confidence: softplus(beta x) for beta x in -80..80 (d/dbeta's two terms
      cancel for large positive x), a logsumexp row and a masked-softmax row with one logit ~24-30
      above the rest (the other weights ~1e-11..1e-13);
    * exact zeros: masked softmax's -inf entries (probability and gradient exactly 0), cumprod
      factors exactly 0 (products exactly 0 after them; the division trick fails there),
      post-ReLU inputs of the convolution (Jacobian entries of w exactly 0), a gathered column
      never read, a coincident pair of points (D = 0, gradient 0);
    * kinks at ordinary values: Huber residuals exactly at +-delta (second derivative jumps) and
      at 0, softplus' stable form max(z, 0) + log1p(exp(-|z|)) at z = 0 exactly;
    * non-analytic code the complex step cannot use: abs, max, where, clip, np.linalg.cholesky;
    * float32: inputs, arithmetic and outputs all float32.

``str(result)`` is in every assertion message, so a failure explains itself.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradcheck
from tests.operator_corpus import BUGS, OPERATORS

DTYPES = [pytest.param(np.float64, id="float64"), pytest.param(np.float32, id="float32")]


def _inputs(op, dtype):
    inputs = op.inputs(np.random.default_rng(0), dtype)
    floating = {k: v.dtype for k, v in inputs.items() if v.dtype.kind == "f"}
    assert set(floating.values()) == {np.dtype(dtype)}, floating
    return inputs


def _computes_in(op, inputs, dtype):
    """The case is what it claims: outputs, VJPs and JVPs all in ``dtype`` (a float32 case must round
    in float32, not silently promote to float64)."""
    out = op.f(inputs)
    outs = out if isinstance(out, tuple) else (out,)
    assert all(np.asarray(o).dtype == np.dtype(dtype) for o in outs), [np.asarray(o).dtype for o in outs]
    ones = tuple(np.ones_like(o) for o in outs)
    grads = op.vjp(inputs, ones if isinstance(out, tuple) else ones[0])
    assert all(g.dtype == np.dtype(dtype) for g in grads.values()), {k: g.dtype for k, g in grads.items()}
    tangents = op.jvp(inputs, {k: np.ones_like(v) for k, v in inputs.items() if v.dtype.kind == "f"})
    tangents = tangents if isinstance(tangents, tuple) else (tangents,)
    assert all(np.asarray(t).dtype == np.dtype(dtype) for t in tangents), [np.asarray(t).dtype for t in tangents]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_correct_vjp_passes(name, dtype):
    op = OPERATORS[name]
    inputs = _inputs(op, dtype)
    _computes_in(op, inputs, dtype)
    result = gradcheck.check_vjp(op.f, op.vjp, inputs, name=name)
    assert result.operator["mode"] == "jacobian"
    assert result.passed, f"false alarm on the correct VJP of {name} ({op.description}), {np.dtype(dtype)}:\n{result}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_correct_jvp_passes(name, dtype):
    op = OPERATORS[name]
    inputs = _inputs(op, dtype)
    result = gradcheck.check_jvp(op.f, op.jvp, inputs, name=name)
    assert result.operator["mode"] == "jacobian"
    assert result.passed, f"false alarm on the correct JVP of {name} ({op.description}), {np.dtype(dtype)}:\n{result}"


#: planted bugs the checker is known not to fail (docs/checker.md, "Limits"), with why
KNOWN_LIMITS = {
    "cumsum_cumprod-cumprod_divide": "known limit (docs/checker.md): a backward wrong only exactly at a special "
                                     "value (prod / p at a factor exactly 0) and right beside it reads like a "
                                     "subgradient convention on a kink of the path; listed as such, not failed",
}
BUG_PARAMS = [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_LIMITS[name]))
              if name in KNOWN_LIMITS else name for name in sorted(BUGS)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bug_name", BUG_PARAMS)
def test_planted_vjp_bug_fails_and_is_localized(bug_name, dtype):
    bug = BUGS[bug_name]
    op = OPERATORS[bug.operator]
    result = gradcheck.check_vjp(op.f, bug.vjp, _inputs(op, dtype), name=bug_name)
    where = f"{bug_name} ({bug.description}), {np.dtype(dtype)}"
    assert not result.passed, f"planted bug not caught: {where}:\n{result}"
    assert result.worst is not None, f"{where}: no worst element:\n{result}"
    assert result.worst.input in bug.touched, (f"{where}: worst element on input {result.worst.input!r}, but the "
                                               f"bug is in {bug.touched}:\n{result}")
    assert result.worst.output is not None, f"{where}: the worst element names no output element:\n{result}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_known_limit_is_listed_at_the_zero_factors(dtype):
    """What the known limit leaves: the entries at the exactly-zero factors of cumprod are not
    failed, but listed as jumps of the code's gradient, where a reader sees them."""
    bug = BUGS["cumsum_cumprod-cumprod_divide"]
    op = OPERATORS[bug.operator]
    inputs = _inputs(op, dtype)
    result = gradcheck.check_vjp(op.f, bug.vjp, inputs)
    p = inputs["p"]
    # the first zero factor of each row (after it every product is 0 whichever way it is computed)
    first_zeros = {(r, int(np.argmax(p[r] == 0))) for r in range(p.shape[0]) if np.any(p[r] == 0)}
    listed = {tuple(e.index[len(e.output_index or []):]) for e in result.kinks if e.input == "p"}
    assert first_zeros and listed == first_zeros, (first_zeros, listed, str(result))
    assert "your gradient jumps exactly at these parameters" in str(result)
