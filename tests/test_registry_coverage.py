"""Every activation and loss of the reference registries is known to every oracle.

A new activation or loss is written once, in the registries (``reference/activations.py``,
``reference/losses.py``). The structure-aware oracle (:mod:`gradcheck.structured`) evaluates the
registries' forward values, so it needs nothing more (checked here). The SymPy oracle
(:mod:`gradcheck.symbolic`) must stay an *independent* statement of each function -- it never
imports the registries, and every derivative it gives comes from ``sympy.diff`` of its own
definition -- so a new entry needs a definition in ``gradcheck/symbolic/primitives.py`` too:
these tests fail, naming the entry, until it is written (and ``tests/test_symbolic_primitives.py``
then compares its derivatives with the registry's hand-written ones).
"""
from __future__ import annotations

import numpy as np
import pytest

from gradcheck import structured
from gradcheck.spec import Layer, NetworkSpec
from gradcheck.symbolic import primitives
from reference.activations import ACTIVATIONS
from reference.losses import LOSSES


def _differences(registry: set, oracle: set, table: str) -> str:
    missing, stale = sorted(registry - oracle), sorted(oracle - registry)
    return (f"{table}: missing {missing} (add a definition: values only, derivatives come from sympy.diff); "
            f"stale {stale} (no longer in the registry)")


def test_symbolic_oracle_defines_every_registry_activation():
    names = set(primitives.ACTIVATION_DEFS)
    assert names == set(ACTIVATIONS), _differences(set(ACTIVATIONS), names, "gradcheck.symbolic ACTIVATION_DEFS")


def test_symbolic_oracle_defines_every_registry_loss():
    names = set(primitives.LOSS_DEFS)
    assert names == set(LOSSES), _differences(set(LOSSES), names, "gradcheck.symbolic LOSS_DEFS")


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_symbolic_activation_has_the_registrys_shape_and_defaults(name):
    """Same kind (row-wise or elementwise) and the same parameters with the same defaults: a
    spec names an activation with its default parameters, so both must mean the same function."""
    ours, theirs = primitives.ACTIVATION_DEFS[name], ACTIVATIONS[name]
    assert ours.rowwise == (not theirs.elementwise), name
    assert dict(ours.params) == dict(theirs.params), name


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_structured_oracle_knows_every_registry_activation(name):
    spec = NetworkSpec(2, (Layer(3, name), Layer(2, "identity")), "mse", batch=2)
    oracle = structured.StructuredLoss(spec, np.zeros((2, 2)), np.zeros((2, 2)))
    assert oracle.acts[0].__self__ is ACTIVATIONS[name]


@pytest.mark.parametrize("name", list(LOSSES))
def test_structured_oracle_knows_every_registry_loss(name):
    assert callable(structured.loss_value_function(name))


def test_structured_batched_loss_forms_are_registry_losses():
    """The batched forms are a speed-up of registry losses (optional per loss), never extra names."""
    assert set(structured.BATCHED_LOSS_VALUES) <= set(LOSSES), sorted(set(structured.BATCHED_LOSS_VALUES) - set(LOSSES))
