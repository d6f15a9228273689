"""gradcheck on correct real-world backprop it was not written for, and on planted bugs in it.

What is compared
    Each case (tests/false_alarm_corpus/) is hand-written backprop: cs231n-style numpy layers with
    forward/backward caches, and a PyTorch conv net through gradcheck.adapters.torch.as_fn. Its
    CLAIMED gradient (what its backward returns) is compared by gradcheck.check with the checker's
    OWN ORACLES (finite differences of the loss, or the complex step where the code allows it,
    with their step ladders and kink handling). Nothing here computes a reference gradient.

Tolerance
    The checker's own model, with default options: no test passes rtol (or any other option).
    Correct code must pass with the defaults -- a user's correct layer failing gradcheck is a false
    alarm, and weakening the test (rtol, xfail, skipping a seed) would hide exactly what this file
    exists to expose. The planted bugs are relative errors of O(1e-2..1) or more in the tensors
    they touch (a sign, a factor 1/N, 1/sqrt(d) or 1/D, a transposition, a missing term, an
    element off by one): many orders above any float64 tolerance, and above float32's (~1e-3), so
    each must fail, with result.worst_param naming a tensor the bug is in (and no untouched tensor
    failing).

Conditions that break checkers, one family per corpus module
    * exactly zero true gradients: sum(softmax(z)); sum(layernorm(x)) with gamma = 1 (dx = 0,
      claimed ~1e-17); a bias removed by batch norm; the rows of an embedding matrix no bag uses
      (a bag-of-embeddings mean, scattered back with np.add.at, one token repeated in a bag);
    * ill-conditioned but correct arithmetic: batch norm of inputs ~1000 standard deviations from
      zero (the input itself, or a dense layer's W, b before it); a tanh layer on raw features
      1000 + N(0, 1) with small W1 (the loss ~1000 times steeper, ~1e6 times more curved, in W1
      than in b1), then a linear layer and MSE; softmax cross-entropy with one
      logit 40 above the others after a dense layer; sigmoid outputs within a few float32 ulps of
      1 under binary cross-entropy on probabilities (in float32 the loss is a staircase there,
      steps far wider than a finite difference);
    * float32 (params, data and arithmetic all float32): every numpy case, and the torch conv net
      (Conv2d, BatchNorm2d in train mode, ReLU, Flatten, Linear) at torch's default init, 8 seeds;
    * layer norm, self-attention (plain and causal), an LSTM over 4 steps, a GRU over 3 steps,
      2x2 max pooling with ties (first maximum in row-major order gets the gradient), a ReLU MLP
      at He init, the cs231n two-layer net with the multiclass SVM (hinge) loss and L2
      regularization (ReLU and hinge kinks), an im2col/col2im 3x3 convolution -> ReLU -> 2x2
      average pooling -> softmax cross-entropy (images, filters and biases checked);
    * second batch: a language-model head with tied embeddings (E both looked up and used as the
      output projection: its gradient is the sum of both uses); a magnitude-pruned ReLU MLP with
      an L1 penalty, a third of its weights exactly 0 (the penalty's kink, subgradient sign(0) = 0:
      what a central difference gives there); a cosine-similarity loss on pairs through one shared
      map (the loss is invariant to A's scale); a pre-LayerNorm transformer block (single-head
      attention, tanh-approximated GELU MLP, two residuals); binary focal loss (gamma = 2) on a
      linear model with logits of magnitude 30-60 through a stable log-sigmoid (confidently right
      rows contribute gradients ~e^(-3|z|), confidently wrong ones O(1) per unit of a ~20 input).

Each numpy case runs twice: as written (numpy code accepts complex input, so the checker may use
the complex step) and via ``float_loss`` (``float(loss)`` returned, as training loops do: the
checker must difference the code in its own float32/float64 arithmetic).

``str(result)`` is in every assertion message, so a failure explains itself. torch cases are
skipped without torch. The whole file takes under 90 s with ``-n 0`` (~80 s, 1376 tests).
"""
from __future__ import annotations

import numpy as np
import pytest

import gradcheck
from tests.false_alarm_corpus import CASES, DTYPES, float_loss

PATHS = ("as_written", "float_loss")


def _paths(case):
    # the adapter refuses complex parameters, so torch cases only ever take central differences
    return ("as_written",) if case.needs_torch else PATHS


CORRECT = [pytest.param(name, dtype, seed, path, id=f"{name}-{dtype}-seed{seed}-{path}")
           for name, case in CASES.items() for dtype in DTYPES for seed in case.seeds for path in _paths(case)]

BUGGY = [pytest.param(name, bug, affected, dtype, path, id=f"{name}-{bug}-{dtype}-{path}")
         for name, case in CASES.items() for bug, affected in case.bugs.items()
         for dtype in DTYPES for path in _paths(case)]


@pytest.fixture
def build(request):
    """``build(name, dtype, seed, bug, path) -> (fn, params, X, y)``; torch cases import torch or
    skip, and run with one intra-op thread (restored afterwards): tiny models on a busy 2-core
    machine are many times slower with several."""
    restore = []

    def _build(name, dtype, seed=0, bug=None, path="as_written"):
        case = CASES[name]
        if case.needs_torch:
            torch = pytest.importorskip("torch")
            restore.append((torch, torch.get_num_threads()))
            torch.set_num_threads(1)
        fn, params, X, y = case.make(dtype, seed, bug=bug)
        return (float_loss(fn) if path == "float_loss" else fn), params, X, y

    yield _build
    for torch, n in restore:
        torch.set_num_threads(n)


def _computes_in(fn, params, X, y, dtype):
    """The case is what it claims: params, claimed gradients and the loss all in ``dtype``
    (float32 cases must round in float32, not silently promote to float64)."""
    loss, grads = fn(params, X, y)
    dt = np.dtype(dtype)
    assert all(v.dtype == dt for v in params.values()), {k: v.dtype for k, v in params.items()}
    assert all(np.asarray(g).dtype == dt for g in grads.values()), {k: np.asarray(g).dtype for k, g in grads.items()}
    assert isinstance(loss, float) or np.asarray(loss).dtype == dt, np.asarray(loss).dtype


@pytest.mark.parametrize("name, dtype, seed, path", CORRECT)
def test_correct_code_passes(build, name, dtype, seed, path):
    fn, params, X, y = build(name, dtype, seed, path=path)
    _computes_in(fn, params, X, y, dtype)
    result = gradcheck.check(fn, params, X, y)
    assert result.passed, f"false alarm on correct {name} ({dtype}, seed {seed}, {path}):\n{result}"


@pytest.mark.parametrize("name, bug, affected, dtype, path", BUGGY)
def test_planted_bug_fails_and_is_localized(build, name, bug, affected, dtype, path):
    fn, params, X, y = build(name, dtype, 0, bug=bug, path=path)
    result = gradcheck.check(fn, params, X, y)
    where = f"{name} with bug {bug!r} ({dtype}, {path})"
    assert not result.passed, f"planted bug not caught: {where}:\n{result}"
    assert result.worst_param in affected, (f"{where}: worst_param {result.worst_param!r}, but the bug is in "
                                            f"{affected}:\n{result}")
    failing = {k for k, t in result.tensors.items() if not t.passed}
    assert failing <= set(affected), (f"{where}: untouched tensors reported failing: "
                                      f"{sorted(failing - set(affected))}:\n{result}")
