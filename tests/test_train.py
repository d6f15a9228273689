"""SGD training and the origin document's XOR run."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import gradcheck
from reference.network import Network
from reference.train import XOR_SPEC, XOR_X, XOR_Y, reproduce_origin_xor, sgd_step, train

#: what the origin document's script prints after 10000 epochs
ORIGIN_OUTPUT = np.array([0.06029012, 0.94447222, 0.944367, 0.05997169])


def test_reproduces_the_origin_document_to_1e_8():
    out = reproduce_origin_xor()
    assert out.shape == (4, 1)
    # the document prints 8 decimals: agreement to 1e-8 is agreement to its last printed digit
    np.testing.assert_allclose(out.ravel(), ORIGIN_OUTPUT, atol=1e-8)


def test_origin_network_gradient_is_checked():
    net = Network(XOR_SPEC)
    result = gradcheck.check(net, net.init_params(), XOR_X, XOR_Y, spec=XOR_SPEC, symbolic=False)
    assert result.passed, str(result)


def test_training_reduces_the_loss_and_leaves_inputs_alone():
    net = Network(XOR_SPEC)
    params = net.init_params()
    before = {k: v.copy() for k, v in params.items()}
    run = train(net, params, XOR_X, XOR_Y, lr=0.5, epochs=300)
    assert run.losses[-1] < run.losses[0]
    assert all(np.array_equal(params[k], before[k]) for k in params)
    assert len(run.losses) == 300
    with pytest.raises(ValueError, match="epochs=-1"):
        train(net, params, XOR_X, XOR_Y, epochs=-1)


def test_sgd_step_is_gradient_descent():
    p = {"w": np.array([1.0, -2.0])}
    g = {"w": np.array([0.5, 0.5])}
    np.testing.assert_array_equal(sgd_step(p, g, 0.1)["w"], [0.95, -2.05])


def test_origin_run_needs_an_epoch():
    # zero epochs run no forward pass: there is no output to return (it used to return None)
    with pytest.raises(ValueError, match="epochs=0"):
        reproduce_origin_xor(epochs=0)
    run = subprocess.run([sys.executable, "-m", "reference.train", "--xor", "--epochs", "0"], capture_output=True,
                         text=True)
    assert run.returncode == 2 and "--epochs 0: expected an integer >= 1" in run.stderr


def test_command_line_prints_the_output():
    out = subprocess.run([sys.executable, "-m", "reference.train", "--xor"], capture_output=True, text=True,
                         check=True).stdout
    assert "0.06029012" in out and "0.94447222" in out and "0.05997169" in out
