"""NetworkSpec: immutability, JSON round trip, repr that rebuilds it, validation naming the field."""
from __future__ import annotations

import dataclasses

import pytest

from gradcheck.spec import Layer, NetworkSpec

SPEC = NetworkSpec(input_dim=3, layers=(Layer(4, "tanh"), Layer(4, "relu", bias=False), Layer(2, "sigmoid")),
                   loss="bce", batch=5, dtype="float32", init="he", seed=7)


def test_json_round_trip_and_repr_rebuild():
    spec = NetworkSpec(3, (Layer(4, "tanh"), Layer(4, "relu", False), Layer(4, "gelu"), Layer(2, "identity")),
                       "mse", batch=5, dtype="float32", init="he", seed=7, skips=((1, 3),))
    assert NetworkSpec.from_json(spec.to_json()) == spec
    assert NetworkSpec.from_dict(spec.to_dict()) == spec
    assert eval(repr(spec), {"NetworkSpec": NetworkSpec, "Layer": Layer}) == spec
    assert hash(spec) == hash(NetworkSpec.from_json(spec.to_json()))


def test_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SPEC.batch = 3


def test_structure():
    assert SPEC.param_shapes() == {"W1": (3, 4), "b1": (4,), "W2": (4, 4), "W3": (4, 2), "b3": (2,)}
    assert SPEC.n_params == 12 + 4 + 16 + 8 + 2
    assert SPEC.output_dim == 2 and SPEC.depth == 3
    assert SPEC.structure_key() == SPEC.replace(seed=99, init="normal").structure_key()
    assert SPEC.structure_key() != SPEC.replace(batch=6).structure_key()
    assert SPEC.label() == "3-4(tanh)-4(relu,nobias)-2(sigmoid) bce b5 float32"


@pytest.mark.parametrize("change, message", [
    ({"input_dim": 0}, "NetworkSpec.input_dim=0: expected an integer >= 1"),
    ({"batch": 2.5}, "NetworkSpec.batch=2.5: expected an integer >= 1"),
    ({"dtype": "float16"}, "NetworkSpec.dtype='float16': expected one of ('float64', 'float32')"),
    ({"init": "zeros"}, "NetworkSpec.init='zeros': expected one of"),
    ({"layers": ()}, "NetworkSpec.layers=(): expected at least one Layer"),
    ({"layers": (Layer(0, "tanh"),)}, "NetworkSpec.layers[0].width=0: expected an integer >= 1"),
    ({"layers": (Layer(2, ""),)}, "NetworkSpec.layers[0].activation='': expected an activation name"),
    ({"loss": None}, "NetworkSpec.loss=None: expected a loss name"),
    ({"seed": -1}, "NetworkSpec.seed=-1: expected an integer >= 0"),
    ({"skips": ((0, 1),)}, "NetworkSpec.skips[0]=(0, 1): expected 0 <= source < target - 1"),
    ({"skips": ((0, 3),)}, "NetworkSpec.skips[0]=(0, 3): expected equal widths, got 3 (source) and 2 (target)"),
])
def test_validation_names_field_and_value(change, message):
    with pytest.raises(ValueError) as info:
        dataclasses.replace(SPEC, **change)
    assert str(info.value).startswith(message)


def test_from_dict_rejects_unknown_and_missing_fields():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['depth'\]"):
        NetworkSpec.from_dict({**SPEC.to_dict(), "depth": 3})
    with pytest.raises(ValueError, match=r"missing field\(s\) \['loss'\]"):
        NetworkSpec.from_dict({"input_dim": 2, "layers": [{"width": 1, "activation": "tanh"}]})
    with pytest.raises(TypeError, match="expects a dict"):
        NetworkSpec.from_dict("spec")
