"""``gradcheck sweep --shard I/N``: a deterministic partition of the sweep's cells, balanced by cost.

The cells (:func:`gradcheck.sweep.sweep_cells`, in their fixed order) are given an estimated
cost (:func:`cell_cost`, from the measured table :data:`COSTS`), then assigned greedily, the
costliest first, each to the shard with the least cost so far (longest processing time first;
equal costs in an order fixed by a checksum of each cell's name, equal loads to the lower shard).
The result depends only on the sweep's configuration, never on the machine or on timings, so N
jobs on N machines split the cells exactly, with none left out and none run twice. Shard I runs its cells in the sweep's order;
``gradcheck report merge`` puts the N reports back together (:mod:`gradcheck.report.merge`).
"""
from __future__ import annotations

import heapq
import re
import zlib
from collections.abc import Sequence
from typing import Any

__all__ = ["COSTS", "cell_cost", "cell_key", "partition", "parse_shard", "shard_of"]

#: mean seconds of one cell relative to a float64 dense cell (3 examples, first order), per cell
#: kind and dtype. Measured with ``python benchmarks/sweep_executors.py --costs``: every cell of the
#: default sweep (608 cells, 36 s), serial, one process, 2 cores, 2026-12-01 (docs/scaling.md);
#: a float64 dense cell took 0.069 s. Unknown kinds cost 1.
COSTS: dict[tuple[str, str], float] = {
    ("dense", "float64"): 1.00, ("dense", "float32"): 0.65,
    ("attention", "float64"): 0.60, ("attention", "float32"): 0.32,
    ("avgpool2d", "float64"): 0.95, ("avgpool2d", "float32"): 0.25,
    ("batchnorm", "float64"): 5.09, ("batchnorm", "float32"): 0.41,
    ("conv1d", "float64"): 2.13, ("conv1d", "float32"): 0.35,
    ("conv2d", "float64"): 1.83, ("conv2d", "float32"): 0.40,
    ("dropout", "float64"): 1.07, ("dropout", "float32"): 0.32,
    ("embedding", "float64"): 0.48, ("embedding", "float32"): 0.15,
    ("flatten", "float64"): 0.71, ("flatten", "float32"): 0.25,
    ("layernorm", "float64"): 1.42, ("layernorm", "float32"): 0.24,
    ("lstm", "float64"): 1.85, ("lstm", "float32"): 0.49,
    ("maxpool2d", "float64"): 2.05, ("maxpool2d", "float32"): 0.29,
    ("rnn", "float64"): 0.89, ("rnn", "float32"): 0.22,
}
#: the examples the dense figures were measured with (dense cells scale with their case count)
COSTS_EXAMPLES = 3
#: a second-order sweep (``--order 2``) multiplies a dense cell's cost by this (measured: the 156
#: dense cells of 6 activations, every cell once, 0.076 s at order 1 and 0.532 s at order 2, serial)
ORDER2_FACTOR = 7.0

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)``, 1 <= I <= N; ValueError with a one-line message otherwise."""
    m = _SHARD.fullmatch(text or "")
    if m is None:
        raise ValueError(f"--shard {text}: expected I/N, e.g. 2/4 (shard I of N, 1-based)")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1:
        raise ValueError(f"--shard {text}: N must be >= 1")
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text}: I must be between 1 and N")
    return i, n


def cell_key(item: Sequence[Any]) -> tuple[str, str, str, str]:
    """``(kind, activation, loss, dtype)`` of a cell tuple of :func:`gradcheck.sweep.sweep_cells`
    (``kind`` is ``dense`` for the activation x loss grid)."""
    if item[0] == "layer":
        return (item[1], item[2], item[3], item[4])
    return ("dense", item[0], item[1], item[2])


def cell_cost(item: Sequence[Any]) -> float:
    """The estimated cost of a cell (:data:`COSTS`; dense cells scale with their examples and order)."""
    kind, _, _, dtype = cell_key(item)
    cost = COSTS.get((kind, dtype), 1.0)
    if kind == "dense":
        cfg = item[3]
        from gradcheck.sweep import mode_examples  # noqa: PLC0415

        cases = sum(mode_examples(cfg.examples).values())
        cost *= cases / sum(mode_examples(COSTS_EXAMPLES).values())
        if cfg.order == 2:
            cost *= ORDER2_FACTOR
    return cost


def partition(costs: Sequence[float], n: int, ties: Sequence[int] | None = None) -> list[int]:
    """The shard (1..n) of each cost: longest processing time first. Equal costs are taken in the
    order of ``ties`` (default: their index), each to the least loaded shard, the lower on a tie."""
    if n < 1:
        raise ValueError(f"n={n}: must be >= 1")
    tie = ties if ties is not None else range(len(costs))
    order = sorted(range(len(costs)), key=lambda i: (-costs[i], tie[i], i))
    loads = [(0.0, s) for s in range(1, n + 1)]  # a heap of (load so far, shard)
    shard = [0] * len(costs)
    for i in order:
        load, s = heapq.heappop(loads)
        shard[i] = s
        heapq.heappush(loads, (load + costs[i], s))
    return shard


def shard_of(items: Sequence[Sequence[Any]], i: int, n: int) -> list[int]:
    """The indices (in order) of the cells that shard ``i`` of ``n`` runs."""
    if not 1 <= i <= n:
        raise ValueError(f"--shard {i}/{n}: I must be between 1 and N")
    # equal costs in an order scattered by a checksum of the cell (stable across machines, unlike
    # hash()): taken in index order, the cells of one kind, which the grid rotates with a fixed
    # period, fell into the same shards in step (measured: 1.20 x the mean shard time for 4
    # shards of the default sweep, 1.14 with the checksum; round robin 1.33)
    ties = [zlib.crc32(":".join(cell_key(item)).encode()) for item in items]
    owner = partition([cell_cost(item) for item in items], n, ties)
    return [k for k, s in enumerate(owner) if s == i]
