"""A corpus of correct, hand-written backprop code (and planted-bug variants of it) that exercises
what makes gradient checkers raise false alarms: exactly-zero true gradients, ill-conditioned but
correct arithmetic, float32 rounding, ReLU kinks and max-pooling ties, L1 kinks at pruned (zero)
weights, a parameter used twice (tied embeddings), saturated logits, and a whole transformer block.

Every case is a factory ``make(dtype="float64" | "float32", seed=0, bug=None | name)`` returning
``(fn, params, X, y)`` in gradcheck's contract ``fn(params, X, y) -> (loss, grads)``; for float32
the parameters, the data and the whole forward/backward computation are float32. ``bug`` plants
one classic derivative mistake; :data:`CASES` says which tensors each bug makes wrong.

Every numpy ``fn`` accepts complex arrays as written (numpy code usually does), so gradcheck may
pick the complex step for it; :func:`float_loss` gives the same code returning ``float(loss)``, as
training loops do, which is not complex-safe: the checker must then difference the code in its own
float64/float32 arithmetic, where the offsets, cancellations and float32 rounding bite.

Modules (one per family): :mod:`.softmax`, :mod:`.sigmoid`, :mod:`.normalization`, :mod:`.attention`,
:mod:`.recurrent`, :mod:`.recurrent_gru`, :mod:`.pooling`, :mod:`.mlp`, :mod:`.svm`,
:mod:`.convolution`, :mod:`.embedding`, :mod:`.offsets`, :mod:`.tied`, :mod:`.pruning`, :mod:`.cosine`,
:mod:`.transformer`, :mod:`.focal` (numpy) and :mod:`.torch_models` (PyTorch via the adapter; torch is
imported only when a torch case is built).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.false_alarm_corpus import (
    attention,
    convolution,
    cosine,
    embedding,
    focal,
    mlp,
    normalization,
    offsets,
    pooling,
    pruning,
    recurrent,
    recurrent_gru,
    sigmoid,
    softmax,
    svm,
    tied,
    torch_models,
    transformer,
)
from tests.false_alarm_corpus._common import DTYPES


@dataclass(frozen=True)
class Case:
    """One corpus entry: ``make(dtype, seed, bug)``, the seeds to check, and its planted bugs
    (bug name -> the tensors the bug makes wrong; the checker must name one of them)."""

    name: str
    family: str
    make: Callable
    seeds: tuple[int, ...] = tuple(range(10))
    bugs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    needs_torch: bool = False


#: the ill-conditioned cases are cheap and their rounding varies most from draw to draw: more seeds
ILL_SEEDS = tuple(range(20))

CASES: dict[str, Case] = {c.name: c for c in [
    Case("softmax_sum", "softmax", softmax.make_softmax_sum, bugs=softmax.SOFTMAX_SUM_BUGS),
    Case("softmax_xent_confident", "softmax", softmax.make_softmax_xent_confident, seeds=ILL_SEEDS,
         bugs=softmax.XENT_BUGS),
    Case("bce_confident", "sigmoid", sigmoid.make_bce_confident, seeds=ILL_SEEDS, bugs=sigmoid.BCE_BUGS),
    Case("layernorm_sum", "normalization", normalization.make_layernorm_sum,
         bugs=normalization.LAYERNORM_SUM_BUGS),
    Case("layernorm_dense", "normalization", normalization.make_layernorm_dense,
         bugs=normalization.LAYERNORM_DENSE_BUGS),
    Case("batchnorm_offset", "normalization", normalization.make_batchnorm_offset, seeds=ILL_SEEDS,
         bugs=normalization.BATCHNORM_OFFSET_BUGS),
    Case("batchnorm_dense_offset", "normalization", normalization.make_batchnorm_dense_offset, seeds=ILL_SEEDS,
         bugs=normalization.BATCHNORM_DENSE_BUGS),
    Case("attention", "attention", attention.make_attention, bugs=attention.ATTENTION_BUGS),
    Case("attention_causal", "attention", attention.make_attention_causal, bugs=attention.CAUSAL_BUGS),
    Case("lstm", "recurrent", recurrent.make_lstm, bugs=recurrent.LSTM_BUGS),
    Case("maxpool_scaled_ties", "pooling", pooling.make_maxpool_scaled_ties, bugs=pooling.SCALED_TIES_BUGS),
    Case("maxpool_input_ties", "pooling", pooling.make_maxpool_input_ties, bugs=pooling.INPUT_TIES_BUGS),
    Case("relu_mlp", "mlp", mlp.make_relu_mlp, bugs=mlp.MLP_BUGS),
    Case("svm_two_layer", "svm", svm.make_svm_two_layer, bugs=svm.SVM_BUGS),
    Case("conv_relu_pool", "convolution", convolution.make_conv_relu_pool, bugs=convolution.CONV_BUGS),
    Case("embedding_bag", "embedding", embedding.make_embedding_bag, bugs=embedding.EMBEDDING_BUGS),
    Case("gru", "gru", recurrent_gru.make_gru, bugs=recurrent_gru.GRU_BUGS),
    Case("large_offset_tanh", "offsets", offsets.make_large_offset_tanh, seeds=ILL_SEEDS,
         bugs=offsets.OFFSET_BUGS),
    Case("tied_embeddings", "tied", tied.make_tied_embeddings, bugs=tied.TIED_BUGS),
    Case("l1_pruned", "pruning", pruning.make_l1_pruned, bugs=pruning.PRUNING_BUGS),
    Case("cosine_loss", "cosine", cosine.make_cosine_loss, bugs=cosine.COSINE_BUGS),
    Case("transformer_block", "transformer", transformer.make_transformer_block,
         bugs=transformer.TRANSFORMER_BUGS),
    Case("focal_extreme", "focal", focal.make_focal_extreme, seeds=ILL_SEEDS, bugs=focal.FOCAL_BUGS),
    Case("convnet", "torch", torch_models.make_convnet, seeds=tuple(range(8)), needs_torch=True),
    Case("convnet_custom", "torch", torch_models.make_convnet_custom, seeds=(0, 1),
         bugs=torch_models.CONVNET_BUGS, needs_torch=True),
]}


def float_loss(fn: Callable[[dict, Any, Any], Any]) -> Callable[[dict, Any, Any], Any]:
    """``fn`` returning ``float(loss)`` (a Python float, as a training loop logs it): the same
    gradient code, but no longer analytic in complex arguments (``float`` drops the imaginary part),
    so gradcheck cannot use the complex step and differences fn in its own precision."""

    def fn_float_loss(params, X, y):
        loss, grads = fn(params, X, y)
        return float(loss), grads

    return fn_float_loss


__all__ = ["CASES", "Case", "DTYPES", "ILL_SEEDS", "float_loss"]
