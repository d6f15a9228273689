"""The property suite: the reference implementation against the oracles, for EVERY
activation x loss pair (an explicit parametrized grid, so no pair is left to chance) and both input
modes of :func:`gradcheck.strategies.cases`, with Hypothesis choosing topology, batch, dtype, init
and inputs within each cell:

* ``margin``: every pre-activation and the loss kept 0.05 away from kinks by construction (clean
  oracle comparisons);
* ``realistic``: ordinary initialization, data-like inputs, kinks crossed, float32 too: what users'
  code meets. ``result.passed`` is the verdict; the symbolic comparison leaves out the elements
  the checker marked as kinks (at a kink the code's subgradient convention and SymPy's may differ,
  both correct).

What is compared, and with what tolerance:
* analytic (reference backward) vs numerical (central differences): the checker's own tolerance
  model (gradcheck.compare: 10 x the estimate's error bound + 16 ulps), dtype-aware;
* analytic vs symbolic (SymPy, float64 cases small enough for it): max relative error <= 1e-8.
  Both are float64 evaluations of the same derivative by different formulas, which agree to
  ~1e3 ulps times the conditioning; 1e-8 leaves a wide margin while every derivative bug in the
  planted-bug catalogue is off by 1e-3 or far more;
* the oracles with each other: a disagreement beyond their error bounds is a problem of kind
  ``oracle_disagreement`` on the result (and fails it); the property asserts there is none.

On failure Hypothesis shrinks to the smallest failing network and the message ends with the
NetworkSpec repr that rebuilds it. ``hypothesis.target`` steers towards large errors.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings, target

import gradcheck
from gradcheck.result import Problem
from gradcheck.strategies import MODES, cases
from reference.activations import ACTIVATIONS, Activation
from reference.losses import LOSSES
from reference.network import Network

PAIRS = [(a, l) for a in ACTIVATIONS for l in LOSSES]
#: every cell in every input mode
CELLS = [(a, l, m) for a, l in PAIRS for m in MODES]
#: symbolic oracle for float64 cases with P x batch up to this (keeps each cell ~ a second)
SYMBOLIC_MAX_SIZE = 60
SYMBOLIC_RTOL = 1e-8
#: cells draw networks up to this many parameters (Hypothesis shrinks from there)
MAX_PARAMS = 120


def check_reference(case: Any, overrides: Mapping[str, Activation] | None = None) -> gradcheck.Result:
    spec = case.spec
    use_symbolic = spec.dtype == "float64" and spec.n_params * spec.batch <= SYMBOLIC_MAX_SIZE
    net = Network(spec, activations=overrides)
    return gradcheck.check(net, case.params, case.X, case.y, spec=spec, symbolic=use_symbolic,
                           scheme="central", name=spec.label())


def symbolic_error_off_kinks(result: gradcheck.Result) -> float | None:
    """Max relative error of the claimed gradient against the symbolic oracle (None without it):
    ``result.oracles["analytic_vs_symbolic"]``, which the checker takes over the elements with a
    derivative (kinks left out) that the estimate resolves, the same rule as its headline."""
    return result.oracles.get("analytic_vs_symbolic")


def cell_property(activation: str, loss: str, overrides: Mapping[str, Activation] | None = None,
                  mode: str = "margin"):
    """The property of one cell in one input mode, as a Hypothesis test function (call it to run it)."""

    @given(cases(activation=activation, loss=loss, max_params=MAX_PARAMS, max_batch=8, mode=mode))
    def prop(case):
        result = check_reference(case, overrides)
        err = result.max_rel_error
        if math.isfinite(err) and err > 0:
            target(math.log10(err), label="log10 max relative error")
        rebuild = f"\nrebuild: {case.spec!r}"
        disagreements = [p.message for p in result.problems if p.kind == "oracle_disagreement"]
        assert not disagreements, ("oracle disagreement: " + "; ".join(disagreements) + "\n"
                                   + str(result) + rebuild)
        assert result.passed, str(result) + rebuild
        status = result.symbolic_status
        assert status in (None, "ok") or status.startswith("skipped"), f"symbolic oracle broke: {status}{rebuild}"
        if mode == "margin":  # no kinks by construction: every element counts
            sym = result.oracles.get("analytic_vs_symbolic")
        else:
            sym = symbolic_error_off_kinks(result)
        if sym is not None:
            assert sym <= SYMBOLIC_RTOL, f"analytic vs symbolic {sym:.2e} > {SYMBOLIC_RTOL}{rebuild}"

    return prop


@pytest.mark.parametrize("activation, loss, mode", CELLS, ids=[f"{a}-{l}-{m}" for a, l, m in CELLS])
def test_reference_agrees_with_the_oracles(activation, loss, mode):
    cell_property(activation, loss, mode=mode)()


def _wrong_tanh() -> Activation:
    """tanh whose derivative forgot the square: 1 - tanh(z) instead of 1 - tanh(z)**2."""
    tanh = ACTIVATIONS["tanh"]
    return Activation("tanh", "a planted bug", tanh._f, lambda z: 1 - tanh.f(z))


def test_a_planted_registry_bug_fails_the_suite_and_shrinks():
    prop = settings(max_examples=30, derandomize=True, deadline=None, database=None)(
        cell_property("tanh", "mse", overrides={"tanh": _wrong_tanh()}))
    with pytest.raises(AssertionError) as info:
        prop()
    message = str(info.value)
    assert "gradcheck FAILED" in message and "rebuild: NetworkSpec(" in message
    # shrunk: the smallest failing network is one tanh layer of width 1 (no smaller one exists)
    rebuilt = eval(message.split("rebuild: ")[1].splitlines()[0],
                   {"NetworkSpec": gradcheck.NetworkSpec, "Layer": gradcheck.Layer})
    assert rebuilt.depth == 1 and rebuilt.layers[0].width == 1, message


def test_every_registry_entry_is_in_the_grid():
    assert {a for a, _ in PAIRS} == set(ACTIVATIONS) and {l for _, l in PAIRS} == set(LOSSES)
    assert len(PAIRS) == len(ACTIVATIONS) * len(LOSSES)
    assert set(CELLS) == {(a, l, m) for a, l in PAIRS for m in ("margin", "realistic")}


def test_an_oracle_disagreement_fails_the_property(monkeypatch):
    """A result that carries an oracle_disagreement problem fails the property even when the
    checker's verdict says passed, and the message names the pair."""
    real = gradcheck.check

    def disagreeing(*args, **kwargs):
        result = real(*args, **kwargs)
        result.problems.append(Problem(
            "oracle_disagreement", "numerical vs symbolic differ by 3.1e-04, beyond their bounds"))
        return result

    monkeypatch.setattr(gradcheck, "check", disagreeing)
    prop = settings(max_examples=1, derandomize=True, deadline=None)(cell_property("tanh", "mse"))
    with pytest.raises(AssertionError, match="oracle disagreement: numerical vs symbolic"):
        prop()
