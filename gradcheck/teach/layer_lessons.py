"""Layer lessons: classic bugs in the backward pass of a network layer kind (convolution, pooling,
normalization, attention, recurrence, embedding), checked on a whole network with
:func:`gradcheck.check`.

Each :class:`LayerLesson` names a pair of :mod:`gradcheck.teach.layer_bugs` (a key of ``PAIRS``):
a wrong backward for one layer kind and its correct twin, both written in full and differing only
by the bug. The lesson's network is the reference ``Network(spec, layers={kind: LayerKind(kind,
ref.init, ref.forward, backward)})``: the reference network with that kind's backward replaced.
The code a lesson shows is :func:`gradcheck.teach.base.code_diff` of the two functions; the
twin computes what the reference kind's backward computes (``tests/test_teach_layers.py``).

What gradcheck should say: the check fails, every failing tensor (the worst one too) is one of
``tensors`` (the layer's own parameters, or those of the layers before it when the bug is in the
gradient it passes down: a wrong dx shows up upstream), and the diagnosis is ``expected`` (a
pattern of :mod:`gradcheck.diagnose`), or None where the error follows no pattern. The fix (the
network with the twin) must pass. Every layer lesson runs in float64.

Adding one: write the wrong backward and its twin in :mod:`gradcheck.teach.layer_bugs`, register
them in ``PAIRS``, and append a ``LayerLesson(...)`` to :data:`LAYER_LESSONS`.
"""
from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradcheck.spec import (
    LSTM,
    RNN,
    Attention,
    AvgPool2d,
    BatchNorm,
    Conv2d,
    Embedding,
    Flatten,
    Layer,
    LayerNorm,
    MaxPool2d,
    NetworkSpec,
)
from gradcheck.teach import layer_bugs
from gradcheck.teach.base import Case, code_diff
from gradcheck.teach.textbook import batch
from gradcheck_reference.layers import LayerKind, get_layer
from gradcheck_reference.network import Network


@dataclass(frozen=True)
class LayerLesson:
    """A backward-pass bug of one layer kind, checked on a whole network, and what gradcheck should say."""

    name: str
    title: str
    kind: str  # the layer kind whose backward is replaced (a key of reference.layers.LAYERS)
    bug: str  # a key of gradcheck.teach.layer_bugs.PAIRS
    setup: Callable[[], Case]
    why: str
    expected: str | None  # the diagnosis pattern, or None: caught and localized, no pattern claimed
    tensors: tuple[str, ...]  # every failing tensor, the worst one included, is one of these
    fix_note: str
    twin: str | None = None  # the operator lesson with the same bug, checked with check_vjp

    #: network lessons only (kept so code that walks every lesson reads one interface)
    activation = None
    derivation = None
    demo = None

    @property
    def topic(self) -> str:
        return f"{self.kind} layer"

    @property
    def passes(self) -> bool:
        return False

    def case(self) -> Case:
        return self.setup()

    @property
    def wrong_backward(self) -> Callable:
        return layer_bugs.PAIRS[self.bug][0]

    @property
    def right_backward(self) -> Callable:
        return layer_bugs.PAIRS[self.bug][1]

    def layer_kind(self, fixed: bool = False) -> LayerKind:
        """The reference kind with the wrong backward (or its correct twin) in place of its own."""
        ref = get_layer(self.kind)
        return LayerKind(self.kind, ref.init, ref.forward, self.right_backward if fixed else self.wrong_backward,
                         ref.conventions)

    def build(self, fixed: bool = False) -> Network:
        """The reference network of the lesson's spec, with the kind's backward replaced."""
        return Network(self.case().spec, layers={self.kind: self.layer_kind(fixed)})

    def diff(self) -> list[tuple[list[str], list[str]]]:
        """The hunks in which the wrong backward differs from its twin: [(wrong lines, right lines)],
        each hunk dedented as a whole (a line deep inside loops reads from its first column)."""
        hunks = []
        for w, r in code_diff(self.wrong_backward, self.right_backward):
            both = textwrap.dedent("\n".join(w + r)).split("\n")
            hunks.append((both[:len(w)], both[len(w):]))
        return hunks

    @property
    def wrong(self) -> str:
        return "\n".join(line for w, _ in self.diff() for line in w)

    @property
    def right(self) -> str:
        return "\n".join(line for _, r in self.diff() for line in r)

    def source(self, fixed: bool = False) -> str:
        """The whole backward function as written with the bug (or without it)."""
        return textwrap.dedent(inspect.getsource(self.right_backward if fixed else self.wrong_backward))

    def where(self, fixed: bool = False) -> str:
        return (self.right_backward if fixed else self.wrong_backward).__name__

    def expects(self) -> str:
        """What gradcheck should name, as ``--list`` shows it."""
        return f"{self.expected or 'no pattern'} in {', '.join(self.tensors)}"


# -- the networks ------------------------------------------------------------------------------------
def _case(spec: NetworkSpec, *, vocab: int | None = None, seed: int = 0) -> Case:
    """The spec's reference initialisation and a deterministic batch: standard normal inputs (integer
    indices in ``[0, vocab)`` for an embedding) and standard normal targets."""
    X, y = batch(spec, seed=seed)
    if vocab is not None:
        X = np.random.default_rng(2000 + seed).integers(0, vocab, size=(spec.batch, *spec.input_shape))
    return Case(spec, Network(spec).init_params(), X, y)


def _cnn(*block, size: int = 6) -> Callable[[], Case]:
    """A 1 x size x size image through a tanh conv (3 x 3, padding 1, 2 channels), then ``block``,
    flattened into a linear output of 2; mean squared error, batch 3."""
    def setup() -> Case:
        spec = NetworkSpec(input_dim=(1, size, size), layers=(
            Conv2d(2, 3, padding=1, activation="tanh"), *block, Flatten(), Layer(2, "identity")), loss="mse", batch=3)
        return _case(spec)
    return setup


def _dense_norm(norm, act: str) -> Callable[[], Case]:
    """4 inputs, a dense layer of 6 (``act``), ``norm``, a tanh layer of 5, a linear output of 2; batch 5."""
    def setup() -> Case:
        spec = NetworkSpec(input_dim=4, layers=(Layer(6, act), norm, Layer(5, "tanh"), Layer(2, "identity")),
                           loss="mse", batch=5)
        return _case(spec)
    return setup


def attention_net() -> Case:
    """Sequences of 4 steps of 3 features, a tanh dense layer of 6 on every step, two-head
    self-attention (3 features a head), flattened into a linear output of 2; batch 3."""
    spec = NetworkSpec(input_dim=(4, 3), layers=(Layer(6, "tanh"), Attention(2), Flatten(), Layer(2, "identity")),
                       loss="mse", batch=3)
    return _case(spec)


def _recurrent(cell) -> Callable[[], Case]:
    """Sequences of ``steps`` x 3 through ``cell``, every hidden state flattened into a linear output of 2."""
    def setup() -> Case:
        steps = 5 if isinstance(cell, RNN) else 4
        spec = NetworkSpec(input_dim=(steps, 3), layers=(cell, Flatten(), Layer(2, "identity")), loss="mse", batch=3)
        return _case(spec)
    return setup


def embedding_net() -> Case:
    """3 sequences of 6 tokens from a vocabulary of 5 (18 tokens: every row is picked several times),
    embedded in 3 dimensions, flattened, a tanh layer of 4, a linear output of 2."""
    spec = NetworkSpec(input_dim=(6,), layers=(Embedding(5, 3), Flatten(), Layer(4, "tanh"), Layer(2, "identity")),
                       loss="mse", batch=3)
    return _case(spec, vocab=5)


CONV1 = ("conv1.W", "conv1.b")

LAYER_LESSONS: tuple[LayerLesson, ...] = (
    LayerLesson(
        "net-conv-dx-assign", "conv2d backward writing dx by assignment: overlapping windows overwrite each other",
        "conv2d", "conv2d_backward_assign", _cnn(Conv2d(3, 3)),
        "With stride 1 and a 3x3 kernel the windows of the second conv overlap: an input pixel is read by up to 9 "
        "output positions of every filter, so its gradient is the SUM of what they send back. Assigning the window "
        "keeps only the last window (and filter) that wrote it. dW and db, accumulated with +=, stay right, so the "
        "conv's own parameters pass: the wrong dx shows in the layer before it, conv1. Through a whole network "
        "the error has no single ratio, so no pattern is named (check_vjp on the operator alone names it "
        "overwrites_accumulation: see conv-dx-assign).",
        "input_gradient", CONV1, "dxp[n, :, i * s:i * s + k, j * s:j * s + k] += w[f] * dy[n, f, i, j]", "conv-dx-assign"),
    LayerLesson(
        "net-conv-stride", "conv2d backward that forgets the stride when it scatters dx back",
        "conv2d", "conv2d_backward_no_stride", _cnn(Conv2d(3, 3, stride=2), size=7),
        "Output (i, j) of a stride-2 conv reads the window starting at row 2i, column 2j. The backward must send "
        "its gradient back to that window; `dxp[n, :, i:i + k, j:j + k]` sends it to the window at (i, j), as if "
        "the stride were 1: the last rows and columns get nothing, the others the wrong pixels' gradients. dW "
        "reads the cached windows (already strided), so the strided conv's own parameters pass and the error shows "
        "in conv1, by no pattern.",
        "input_gradient", CONV1, "dxp[n, :, i * s:i * s + k, j * s:j * s + k]: the window output (i, j) read"),
    LayerLesson(
        "net-avgpool-wrong-count", "avgpool backward dividing by the window's width instead of its size",
        "avgpool2d", "avgpool2d_backward_wrong_count", _cnn(AvgPool2d(2)),
        "The mean of a 2x2 window is its sum / 4: each of its 4 elements has derivative 1/4. Dividing by size "
        "(2) instead of size**2 (4) doubles the gradient of every element, so everything below the pool (conv1.W, "
        "conv1.b) is exactly twice the right size, and everything above it is right. gradcheck reads the ratio: "
        "factor_two (the factor is size, 2 here).",
        "factor_two", CONV1, "divide by size * size, the number of elements in a window", "avgpool-wrong-count"),
    LayerLesson(
        "net-maxpool-grad-to-window", "maxpool backward sending the gradient to the whole window",
        "maxpool2d", "maxpool2d_backward_whole_window", _cnn(MaxPool2d(2)),
        "max over a 2x2 window moves with its maximum only: the derivative is 1 at the argmax and 0 at the three "
        "other elements. Routing dy to every element claims gradient through three pixels that do not affect the "
        "loss at all, so conv1's gradients come out wrong by no ratio (the right share is there, plus three wrong "
        "ones); the layers after the pool are right.",
        "input_gradient", CONV1, "a mask with a single 1 at the window's argmax (the first maximum, as the forward's argmax)",
        "maxpool-grad-to-window"),
    LayerLesson(
        "net-batchnorm-stats-constant", "batchnorm backward with the batch mean and variance taken as constants",
        "batchnorm", "batchnorm_backward_stats_constant", _dense_norm(BatchNorm(), "identity"),
        "In training mode the mean and variance are those of the batch itself: moving any x[n, j] moves the mean "
        "and the variance of feature j, so dx has two more terms than dy * gamma / sqrt(var + eps), the means of "
        "dxhat and of dxhat * xhat. Here a linear layer feeds the batchnorm, so its bias b1 shifts every sample "
        "of a feature by the same amount and the batch mean takes it right back out: the loss does not depend on "
        "b1 at all, its numerical gradient is exactly 0. The wrong backward, missing the mean term, claims a "
        "gradient for b1, and gradcheck names that: unused_parameter on b1, with W1 also wrong by no exact "
        "relation.",
        "unused_parameter", ("W1", "b1"),
        "dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), the means over the batch",
        "batchnorm-stats-constant"),
    LayerLesson(
        "net-layernorm-batch-axis", "layernorm backward taking its means over the batch axis",
        "layernorm", "layernorm_backward_batch_axis", _dense_norm(LayerNorm(), "tanh"),
        "Layer norm normalises each sample over its own features: the mean and variance are per row, and the "
        "backward's two means run over the last axis. Copied from batchnorm, axis=0 mixes samples that never "
        "interact in forward, so the gradient reaching the dense layer below is wrong (W1, b1) while gamma, beta "
        "and everything above are right. No pattern: each element is off by its own amount.",
        "input_gradient", ("W1", "b1"), "axis=-1: the means over the features of each sample", "layernorm-batch-axis"),
    LayerLesson(
        "net-attention-missing-scale", "attention backward without the 1/sqrt(d) of the scores",
        "attention", "attention_backward_no_scale", attention_net,
        "The scores are S = Q K^T / sqrt(dh), so dQ = dS K / sqrt(dh) and dK = dS^T Q / sqrt(dh). Without the "
        "scale both are sqrt(dh) times too large (dh = 3 features a head here): attn2.Wq and attn2.Wk by exactly "
        "sqrt(3) = 1.732, which gradcheck reads as a constant factor (a scale used in forward but not in "
        "backward). dx adds the wrong query and key paths to the right value path, so the dense layer below "
        "(W1, b1) is wrong too, by no single factor; Wv and Wo are right.",
        "constant_factor", ("W1", "b1", "attn2.Wq", "attn2.Wk"), "dq = ds @ k * scale and dk = ds.T @ q * scale",
        "attention-missing-scale"),
    LayerLesson(
        "net-rnn-no-carry", "RNN backward that forgets the gradient from the next time step",
        "rnn", "rnn_backward_no_carry", _recurrent(RNN(4)),
        "h_t reaches the loss through its own output and through h_{t+1} = tanh(x_{t+1} Wx + h_t Wh + b). "
        "Backprop through time adds both: dh = dy[t] + dh_next. With dh = dy[t] each step's gradient stops at "
        "its own output (truncated BPTT of length 1), so every RNN parameter is wrong (Wx, Wh, b) by no ratio; "
        "the dense output layer is right.",
        "input_gradient", ("rnn1.Wx", "rnn1.Wh", "rnn1.b"), "dh = dy[:, t] + dh_next", "rnn-no-carry"),
    LayerLesson(
        "net-lstm-no-forget-gate", "LSTM backward that drops the forget gate from the cell gradient",
        "lstm", "lstm_backward_no_forget_gate", _recurrent(LSTM(3)),
        "c_t = f * c_{t-1} + i * g, so the gradient that c_t sends back to c_{t-1} is dc * f. Passing dc on "
        "unchanged treats every forget gate as 1: each step's cell gradient is too large by its own 1/f, no "
        "common ratio. All three LSTM parameters are wrong; the dense output layer is right.",
        "input_gradient", ("lstm1.Wx", "lstm1.Wh", "lstm1.b"), "dc_next = dc * f", "lstm-no-forget-gate"),
    LayerLesson(
        "net-embedding-assign", "embedding backward that assigns instead of accumulating repeated indices",
        "embedding", "embedding_backward_assign", embedding_net,
        "y = E[idx] copies row idx[n, t] of E for every token; a token that appears twice reads the same row "
        "twice, so that row's gradient is the sum over its occurrences. `de[idx] = dy` writes one row per token "
        "and a repeated index keeps only its last write (`de[idx] += dy` does the same: numpy buffers it). With "
        "18 tokens over 5 rows every row repeats, so E is wrong and nothing else is.",
        "input_gradient", ("embed1.E",), "np.add.at(de, idx, dy): an unbuffered += that adds repeated indices",
        "embedding-assign"),
)

__all__ = ["LayerLesson", "LAYER_LESSONS"]
