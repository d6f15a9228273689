"""The origin document's XOR network, written the way the document writes it, and checked.

The document trains a 2-2-1 sigmoid network on XOR with hand-written backpropagation: a forward
pass, an error ``y - output``, deltas scaled by ``sigmoid_derivative`` of each layer's *output*,
then ``weights += input.T . delta * learning_rate`` for every weight matrix and bias. Below is one
such training step as a function of a dict of weights, so gradcheck can run it on copies:

    gradcheck check examples/origin_xor_step.py:factory

The update adds ``learning_rate * (-dL/dW)`` for ``L = 0.5 * sum((y - output)**2)``, so that is
the loss the step is checked against (``gradcheck.adapters.numpy_style.from_update_step`` turns
the update into ``grads = -(new - old) / lr``).
"""
from __future__ import annotations

import numpy as np

from gradcheck.adapters.numpy_style import from_update_step

# the truth table the document learns
X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
y = np.array([[0], [1], [1], [0]], dtype=np.float64)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def sigmoid_derivative(s):
    """The slope of the sigmoid written in terms of its output ``s = sigmoid(z)``: s (1 - s)."""
    return s * (1 - s)


def initial_weights(seed: int = 42) -> dict[str, np.ndarray]:
    """Uniform [0, 1) draws in the document's order: input->hidden, hidden->output, then biases."""
    rand = np.random.RandomState(seed).rand
    return {"weights_input_hidden": rand(2, 2), "weights_hidden_output": rand(2, 1),
            "bias_hidden": rand(1, 2), "bias_output": rand(1, 1)}


def forward(w, X):
    """Hidden and final activations for the batch ``X``."""
    hidden_output = sigmoid(np.dot(X, w["weights_input_hidden"]) + w["bias_hidden"])
    final_output = sigmoid(np.dot(hidden_output, w["weights_hidden_output"]) + w["bias_output"])
    return hidden_output, final_output


def half_squared_error(w, X, y):
    """The objective the document's update descends: 0.5 * sum((y - output)^2)."""
    _, final_output = forward(w, X)
    return 0.5 * np.sum((y - final_output) ** 2)


def train_step(w, X, y, learning_rate):
    """One epoch of the document's loop: forward, error, deltas, in-place updates of ``w``."""
    hidden_output, final_output = forward(w, X)

    # how far off the output is, scaled by the output sigmoid's slope
    error = y - final_output
    d_output = error * sigmoid_derivative(final_output)

    # the same error sent back through the output weights (before they change)
    error_hidden = d_output.dot(w["weights_hidden_output"].T)
    d_hidden = error_hidden * sigmoid_derivative(hidden_output)

    # every weight moves along input.T . delta; biases along the summed delta
    w["weights_hidden_output"] += hidden_output.T.dot(d_output) * learning_rate
    w["bias_output"] += np.sum(d_output, axis=0, keepdims=True) * learning_rate
    w["weights_input_hidden"] += X.T.dot(d_hidden) * learning_rate
    w["bias_hidden"] += np.sum(d_hidden, axis=0) * learning_rate


def train(epochs: int = 10000, learning_rate: float = 0.1):
    """The document's training loop; returns the final weights and the last forward pass's output."""
    w = initial_weights()
    final_output = None
    for _ in range(epochs):
        _, final_output = forward(w, X)
        train_step(w, X, y, learning_rate)
    return w, final_output


def factory(step=train_step):
    """What ``gradcheck check`` calls: the step, as the checker's contract, at the initial weights."""
    fn, params = from_update_step(step, half_squared_error, initial_weights())
    return {"fn": fn, "params": params, "X": X, "y": y, "loss_fn": fn.loss,
            "name": f"origin XOR {getattr(step, '__name__', 'step')}"}


if __name__ == "__main__":
    import gradcheck

    case = factory()
    print(gradcheck.check(case["fn"], case["params"], case["X"], case["y"], name=case["name"],
                          loss_fn=case["loss_fn"]))
    _, out = train()
    print("Output after training:")
    print(out)
