"""SGD training of a reference network, and the origin document's XOR run reproduced with it.

``python -m reference.train --xor`` prints the origin document's final outputs.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from gradcheck.spec import Layer, NetworkSpec

from .network import Network

Array = np.ndarray

#: the origin document's network: 2 inputs, 2 sigmoid hidden units, 1 sigmoid output, half SSE,
#: weights and biases from np.random.seed(42) + np.random.rand (W1, W2, b1, b2 in that order)
XOR_SPEC = NetworkSpec(input_dim=2, layers=(Layer(2, "sigmoid"), Layer(1, "sigmoid")),
                       loss="half_sse", batch=4, init="uniform", seed=42)
XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=np.float64)


@dataclass
class TrainResult:
    """Final parameters, the loss before each epoch's update, and the last forward pass's output."""

    params: dict[str, Array]
    losses: list[float] = field(default_factory=list)
    last_output: Array | None = None


def sgd_step(params: Mapping[str, Array], grads: Mapping[str, Array], lr: float) -> dict[str, Array]:
    """``p - lr * dL/dp`` for every parameter (new arrays; the inputs are not touched)."""
    return {name: params[name] - lr * grads[name] for name in params}


def train(network: Network, params: Mapping[str, Array], X, y, *, lr: float = 0.1,
          epochs: int = 1000) -> TrainResult:
    """Full-batch gradient descent for ``epochs`` steps; returns a :class:`TrainResult`."""
    if epochs < 0:
        raise ValueError(f"epochs={epochs!r}: expected an integer >= 0")
    current = {k: np.array(v, copy=True) for k, v in params.items()}
    result = TrainResult(current)
    for _ in range(epochs):
        out, cache = network.forward(current, X)
        network.update_running_stats(cache)  # batch normalization's running statistics, if any
        result.losses.append(network.loss_fn.value(out, y))
        result.last_output = out
        current = sgd_step(current, network.backward(current, cache, y), lr)
    result.params = current
    return result


def reproduce_origin_xor(epochs: int = 10000, lr: float = 0.1) -> Array:
    """The origin document's XOR run; returns the (4, 1) output of the last epoch's forward pass.

    Its update ``W += lr * X.T @ ((y - out) * out * (1 - out))`` is exactly gradient descent on
    ``0.5 * sum((y - out)**2)``, so the reference network with that loss reproduces it.
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs!r}: expected an integer >= 1 (the result is the last epoch's output)")
    network = Network(XOR_SPEC)
    out = train(network, network.init_params(), XOR_X, XOR_Y, lr=lr, epochs=epochs).last_output
    assert out is not None  # set by every epoch, and there was at least one
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference.train", description=__doc__)
    parser.add_argument("--xor", action="store_true", help="reproduce the origin document's XOR run")
    parser.add_argument("--epochs", type=int, default=10000)
    args = parser.parse_args(argv)
    if not args.xor:
        parser.print_help()
        return 2
    if args.epochs < 1:
        parser.error(f"--epochs {args.epochs}: expected an integer >= 1")
    out = reproduce_origin_xor(epochs=args.epochs)
    print("Output after training:")
    print(np.array2string(out, precision=8))
    return 0


if __name__ == "__main__":
    sys.exit(main())
