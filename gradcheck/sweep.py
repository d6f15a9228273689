"""``gradcheck sweep``: the main job. Checks the reference implementation over every
activation x loss pair, on networks that Hypothesis generates, against every applicable oracle,
and writes the report (``reports/index.html``, ``gradcheck.json``, ``junit.xml``).

Each (activation, loss, dtype) cell gets ``--examples`` cases from
:func:`gradcheck.strategies.cases`, split between its two input modes (:func:`mode_examples`: half
each, the odd one to ``margin``, at least one of each; the default 3 is 2 + 1): ``margin`` (kinks
kept away by construction: clean oracle comparisons) and ``realistic`` (ordinary init, data-like
inputs, kinks crossed, float32 too). Each mode draws with a seed
derived from the sweep seed, the cell's name and the mode, so a sweep is reproducible cell by cell.
A check's name ends with its mode, e.g. ``relu x mae [2-3(relu)-1(relu) mae b4 float32] (realistic)``.
Every case is checked against the numerical oracle; float64 cases small enough for SymPy
(``--symbolic-max-size``) also against the symbolic one. A check fails when the code disagrees with
an oracle, or when the oracles disagree with each other beyond their error bounds (a problem of kind
``oracle_disagreement``): a wrong oracle inside a passing run is the worst outcome.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradcheck.executors import INSTALL_HINT

#: per cell: 2 in the margin mode (the simplest network, then a drawn one) and 1 in the realistic mode
DEFAULT_EXAMPLES = 3
DEFAULT_SEED = 0
DEFAULT_MAX_PARAMS = 200
#: symbolic oracle only where P x batch is at most this (SymPy build time grows fast with size)
DEFAULT_SYMBOLIC_MAX_SIZE = 120
#: the input modes every cell checks, in this order (``gradcheck.strategies.MODES``)
MODES = ("margin", "realistic")
#: the problem kind the checker reports when two oracles disagree beyond their error bounds
ORACLE_DISAGREEMENT = "oracle_disagreement"


@dataclass
class SweepConfig:
    """What to sweep. Defaults are the README's main job."""

    examples: int = DEFAULT_EXAMPLES
    seed: int = DEFAULT_SEED
    activations: tuple[str, ...] | None = None
    losses: tuple[str, ...] | None = None
    dtypes: tuple[str, ...] = ("float64", "float32")
    out: str | None = "reports"
    max_params: int = DEFAULT_MAX_PARAMS
    symbolic_max_size: int = DEFAULT_SYMBOLIC_MAX_SIZE
    jobs: int = 1
    quiet: bool = False
    #: 2: every case whose gradient passes also gets its Hessian-vector products checked
    #: (:func:`gradcheck.check_hvp` on the reference's R-operator, SymPy where small enough)
    order: int = 1
    #: layer kinds: ``dense`` is the activation x loss grid of dense networks; every other kind
    #: (:data:`gradcheck.layer_strategies.KINDS`) gets layer cells (:func:`layer_cells`). None: all
    layers: tuple[str, ...] | None = None
    #: ``rotate``: each kind meets every activation once, the loss and dtype rotating with it;
    #: ``full``: kind x activation x loss x dtype
    layer_grid: str = "rotate"
    #: where the cells run (:func:`gradcheck.executors.open_executor`): None, the local process pool
    #: of ``jobs`` workers (serial for 1); ``local:N``, a Dask ``LocalCluster`` of N worker
    #: processes; any other string, the address of a Dask scheduler (``tcp://host:8786``)
    scheduler: str | None = None
    #: ``(I, N)``: run only shard I of N (1-based; :func:`gradcheck.shards.shard_of`), None: every cell
    shard: tuple[int, int] | None = None


@dataclass
class SweepOutcome:
    """Results of a sweep plus what is needed to summarise it."""

    results: list[Any] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: Path | None = None
    #: what ran the cells (``serial``, ``pool (jobs=2)``, ``dask LocalCluster (local:2)``, ...)
    executor: str = ""
    #: cells run (those of the shard, with ``cfg.shard``)
    cells: int = 0

    @property
    def failed(self) -> list[Any]:
        return [r for r in self.results if not r.passed or oracle_disagreements(r)]

    @property
    def passed(self) -> bool:
        return bool(self.results) and not self.failed


def cell_seed(seed: int, activation: str, loss: str, dtype: str, mode: str = "margin") -> int:
    """A stable seed per cell and mode (Python's hash() is salted per process; crc32 is not).
    The margin mode keeps the seed of sweeps from before the realistic mode existed."""
    key = f"{seed}:{activation}:{loss}:{dtype}" + ("" if mode == "margin" else f":{mode}")
    return zlib.crc32(key.encode())


def mode_examples(examples: int) -> dict[str, int]:
    """How many of a cell's ``examples`` each mode checks: half each (the odd one to ``margin``),
    and at least one of each, so ``--examples 1`` checks two networks per cell."""
    return {"margin": max(1, examples - examples // 2), "realistic": max(1, examples // 2)}


def mode_of(result: Any) -> str | None:
    """The input mode a sweep check ran in, read from its name (``... (realistic)``), or None."""
    name = getattr(result, "name", None) or ""
    for mode in MODES:
        if name.endswith(f" ({mode})"):
            return mode
    return None


def oracle_disagreements(result: Any) -> list[Any]:
    """The result's ``oracle_disagreement`` problems (two oracles apart beyond their bounds)."""
    return [p for p in getattr(result, "problems", None) or [] if p.kind == ORACLE_DISAGREEMENT]


def generate(activation: str, loss: str, dtype: str, examples: int, seed: int, max_params: int,
             mode: str = "margin") -> list:
    """``examples`` cases for one cell in one input ``mode``, deterministic for ``seed``
    (Hypothesis, generate phase only).

    Hypothesis tries the simplest example first (the one-unit network, batch 1, the same for every
    seed). The margin mode keeps it: small enough for the symbolic oracle, it gives every float64
    cell its oracle-vs-oracle cross-check. The realistic mode skips it, so its networks are drawn
    ones. Consecutive repeats of a spec are skipped too.

    Hypothesis first draws only as many cases as the cell needs (the first draws of a seeded run
    are the same whatever ``max_examples`` says); only if a repeated spec was skipped does it run
    again with the full allowance. The draws after the cell's cases used to be made and thrown
    away: ~2/3 of the generation time."""
    from hypothesis import HealthCheck, Phase, given, settings  # noqa: PLC0415
    from hypothesis import seed as hseed  # noqa: PLC0415

    from gradcheck.strategies import cases  # noqa: PLC0415

    strategy = cases(activation=activation, loss=loss, dtypes=(dtype,), max_params=max_params,
                     mode=mode)
    needed = examples + (mode != "margin")
    found: list = []
    drawn = [0]
    for budget in dict.fromkeys((needed, examples * 3 + 3)):
        found.clear()
        drawn[0] = 0

        @hseed(cell_seed(seed, activation, loss, dtype, mode))
        @settings(max_examples=budget, database=None, phases=[Phase.generate], deadline=None,
                  suppress_health_check=list(HealthCheck), derandomize=False)
        @given(strategy)
        def collect(case):
            drawn[0] += 1
            wanted = mode == "margin" or drawn[0] > 1
            if wanted and len(found) < examples and all(repr(case.spec) != repr(c.spec) for c in found[-1:]):
                found.append(case)

        collect()
        if len(found) >= examples:
            break
    return found[:examples]


def check_case(case: Any, activation: str, loss: str, symbolic_max_size: int,
               overrides: Mapping[str, Any] | None = None, mode: str = "margin", order: int = 1,
               prefix: str = "") -> Any:
    """Check one case of the reference network; the result carries its name (ending with the
    input ``mode``) and spec. An oracle disagreement fails it even if the checker passed it. With
    ``order=2`` the second-order check joins (:func:`add_second_order`)."""
    import gradcheck  # noqa: PLC0415
    from gradcheck_reference.network import Network  # noqa: PLC0415

    spec = case.spec
    net = Network(spec, activations=overrides)
    use_symbolic = spec.dtype == "float64" and spec.n_params * spec.batch <= symbolic_max_size
    name = f"{prefix}{activation} x {loss} [{spec.label()}] ({mode})"
    # loss_fn: finite differences need the loss only (fn's backward pass would be wasted work);
    # check validates it against fn's loss at the base point. quiet: the sweep shows its own progress
    result = gradcheck.check(net, case.params, case.X, case.y, spec=spec, symbolic=use_symbolic,
                             name=name, loss_fn=net.loss, quiet=True)
    if result.spec is None:
        result.spec = spec.to_dict()
    if result.passed and oracle_disagreements(result):
        result.passed = False
        result.notes.append("failed by the sweep: the oracles disagree beyond their error bounds")
    if order == 2 and result.passed:
        add_second_order(result, net, case, use_symbolic)
    return result




def add_second_order(result: Any, net: Any, case: Any, use_symbolic: bool) -> None:
    """Check the reference network's Hessian-vector products (R-operator) of a case whose gradient
    passed: the pairs ``hvp_vs_numerical`` (differences of the gradient along random directions)
    and, where SymPy runs, ``hvp_vs_symbolic`` join the record's oracles; a failure fails the record
    with a ``second_order`` problem naming the worst Hessian entry."""
    import gradcheck  # noqa: PLC0415
    from gradcheck.result import SECOND_ORDER_PAIRS, Problem, failure_line  # noqa: PLC0415

    second = gradcheck.check_hvp(net, net.hvp, case.params, case.X, case.y, mode="random",
                                 spec=case.spec if use_symbolic else None, name=result.name)
    for pair in SECOND_ORDER_PAIRS:
        if pair in second.oracles:
            result.oracles[pair] = second.oracles[pair]
    if not second.passed:
        result.passed = False
        detail = failure_line(second).removeprefix("gradient check failed")
        result.problems.append(Problem("second_order", f"second order (Hessian-vector product) failed{detail}",
                                       second.worst_param))
        if second.diagnosis is not None and result.diagnosis is None:
            result.diagnosis = second.diagnosis


def _check_cell(args: tuple) -> tuple[list, list[str]]:
    if args[0] == "layer":
        return _check_layer_cell(args[1:])
    activation, loss, dtype, cfg, overrides = args
    from hypothesis.errors import InvalidArgument  # noqa: PLC0415

    results = []
    for mode, n in mode_examples(cfg.examples).items():
        try:
            cases = generate(activation, loss, dtype, n, cfg.seed, cfg.max_params, mode)
        except InvalidArgument as exc:  # the cell's options are impossible, whatever the mode
            return [], [f"{activation} x {loss} ({dtype}): {exc}"]
        results += [check_case(c, activation, loss, cfg.symbolic_max_size, overrides, mode, cfg.order)
                    for c in cases]
    return results, []


def generate_layer_case(kind: str, activation: str, loss: str, dtype: str, seed: int) -> Any:
    """One case of a layer cell (:func:`gradcheck.layer_strategies.layer_cases`), deterministic
    for ``seed`` (Hypothesis, generate phase only; the first draw is skipped: it is the same
    smallest network for every seed). Two draws are made (the third used to be made and thrown
    away; the first draws of a seeded run do not depend on ``max_examples``)."""
    from hypothesis import HealthCheck, Phase, given, settings  # noqa: PLC0415
    from hypothesis import seed as hseed  # noqa: PLC0415

    from gradcheck.layer_strategies import layer_cases  # noqa: PLC0415

    found: list = []

    @hseed(zlib.crc32(f"{seed}:layer:{kind}:{activation}:{loss}:{dtype}".encode()))
    @settings(max_examples=2, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(layer_cases(kind=kind, activation=activation, loss=loss, dtypes=(dtype,)))
    def collect(case):
        found.append(case)

    collect()
    return found[1] if len(found) > 1 else found[0]


def _check_layer_cell(args: tuple) -> tuple[list, list[str]]:
    kind, activation, loss, dtype, cfg = args
    case = generate_layer_case(kind, activation, loss, dtype, cfg.seed)
    result = check_case(case, activation, loss, cfg.symbolic_max_size, None, "realistic", 1,
                        prefix=f"{kind}: ")
    return [result], []


def layer_cells(cfg: SweepConfig) -> list[tuple[str, str, str, str]]:
    """``(kind, activation, loss, dtype)`` per layer cell. ``rotate`` (default): every kind meets
    every activation once, with the loss and the dtype rotating (each kind sees every loss and
    both dtypes several times); ``full``: the whole product."""
    from gradcheck.layer_strategies import KINDS  # noqa: PLC0415
    from gradcheck_reference.activations import ACTIVATIONS  # noqa: PLC0415
    from gradcheck_reference.losses import LOSSES  # noqa: PLC0415

    kinds = [k for k in (cfg.layers or ("dense",) + KINDS) if k != "dense"]
    acts = cfg.activations or tuple(ACTIVATIONS)
    losses = cfg.losses or tuple(LOSSES)
    if cfg.layer_grid == "full":
        return [(k, a, l, d) for k in kinds for a in acts for l in losses for d in cfg.dtypes]
    out = []
    for i, k in enumerate(kinds):
        for j, a in enumerate(acts):
            out.append((k, a, losses[(i + j) % len(losses)], cfg.dtypes[(i + j) % len(cfg.dtypes)]))
    return out


def cells(cfg: SweepConfig) -> list[tuple[str, str, str]]:
    """The dense grid: ``(activation, loss, dtype)`` (none when ``layers`` leaves ``dense`` out)."""
    from gradcheck.layer_strategies import KINDS  # noqa: PLC0415
    from gradcheck_reference.activations import ACTIVATIONS  # noqa: PLC0415
    from gradcheck_reference.losses import LOSSES  # noqa: PLC0415

    acts = cfg.activations or tuple(ACTIVATIONS)
    losses = cfg.losses or tuple(LOSSES)
    for name, known, what in ((acts, ACTIVATIONS, "activation"), (losses, LOSSES, "loss"),
                              (cfg.layers or (), ("dense",) + KINDS, "layer kind")):
        unknown = [n for n in name if n not in known]
        if unknown:
            raise ValueError(f"unknown {what}(s) {unknown}; known: {', '.join(known)}")
    if cfg.layer_grid not in ("rotate", "full"):
        raise ValueError(f"layer grid {cfg.layer_grid!r}: expected rotate or full")
    if cfg.layers is not None and "dense" not in cfg.layers:
        return []
    return [(a, l, d) for a in acts for l in losses for d in cfg.dtypes]


def run_cell(item: tuple) -> tuple[list, list[str]]:
    """Check one cell of :func:`sweep_cells` (what every executor runs): its records and skips.

    Hypothesis mixes into its draws, now and then, constants it reads from the source of the
    "local" (not installed) modules that happen to be imported in the process at that moment, so
    the same seed could draw other cases in a fresh worker, in a pytest session or after a
    report was written. The cell's cases are drawn with that pool empty, so they depend on the
    seed and the cell only, whatever process runs it."""
    with _no_local_constants(), warnings.catch_warnings():
        # on a Dask worker, the worker's own threads (heartbeats, ...) use the global `random`
        # module while a strategy draws, which Hypothesis reports as if the strategy had; the
        # cell's draws are seeded all the same (the records equal a serial run's)
        warnings.filterwarnings("ignore", message="Do not use the `random` module inside strategies")
        return _check_cell(item)


@contextlib.contextmanager
def _no_local_constants() -> Iterator[None]:
    try:  # Hypothesis internals (6.13x+); without them there is no such pool to pin
        from hypothesis.internal.conjecture import providers  # noqa: PLC0415

        original, cache, empty = providers._get_local_constants, providers.CONSTANTS_CACHE, providers.Constants()
    except (ImportError, AttributeError):  # pragma: no cover - another Hypothesis
        yield
        return
    cache.cache.clear()
    providers._get_local_constants = lambda: empty
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.cache.clear()


def sweep_cells(cfg: SweepConfig, overrides: Mapping[str, Any] | None = None) -> list[tuple]:
    """Every cell of the sweep, in its fixed order (the order of the records): the dense cells
    ``(activation, loss, dtype, cfg, overrides)``, then the layer cells ``("layer", kind,
    activation, loss, dtype, cfg)``. The shard (``cfg.shard``) is not applied here."""
    todo: list[tuple] = [(a, l, d, cfg, overrides) for a, l, d in cells(cfg)]
    # layer cells are checked to first order (second order is implemented for dense networks)
    todo += [("layer", k, a, l, d, cfg) for k, a, l, d in layer_cells(cfg)]
    return todo


def run_sweep(cfg: SweepConfig, *, overrides: Mapping[str, Any] | None = None,
              progress: bool | None = None, executor: Any = None) -> SweepOutcome:
    """Run the sweep; ``overrides`` replaces activation registry entries (planted-bug tests).

    The cells run on ``executor`` (a :class:`gradcheck.executors.CellExecutor`, left open) or else
    on the one ``cfg.scheduler`` / ``cfg.jobs`` name (opened and closed here). ``overrides`` are
    objects of this process: with them the cells run serially, whatever the executor. With
    ``cfg.shard = (I, N)`` only shard I's cells run (:func:`gradcheck.shards.shard_of`).

    Results come back in whatever order the cells finish; each cell's are kept once (by its
    index: a cell retried after its worker died is never counted twice) and the records are put
    in cell order, so the same seed gives the same records whatever the executor."""
    from gradcheck import executors, shards  # noqa: PLC0415

    t0 = time.perf_counter()
    todo = sweep_cells(cfg, overrides)
    if cfg.shard is not None:
        mine = shards.shard_of(todo, *cfg.shard)
        todo = [todo[i] for i in mine]
    outcome = SweepOutcome()
    show = (not cfg.quiet) if progress is None else progress
    bar = _progress(len(todo), show)
    own = executor is None or overrides is not None
    if overrides is not None:
        executor = executors.SerialExecutor()
    elif executor is None:
        executor = executors.open_executor(cfg.scheduler, cfg.jobs)
    done: dict[int, tuple[list, list[str]]] = {}
    try:
        for index, (results, skipped) in executor.run(run_cell, todo):
            if index in done:  # a cell whose result arrived twice (its first worker died late)
                continue
            done[index] = (results, skipped)
            bar.advance(results)
    finally:
        bar.close()
        if own:
            executor.close()
    outcome.executor, outcome.cells = executor.name, len(todo)
    missing = [i for i in range(len(todo)) if i not in done]
    if missing:  # pragma: no cover - every executor yields each cell or raises
        raise RuntimeError(f"{len(missing)} cell(s) never came back from {executor.name}")
    for index in range(len(todo)):
        results, skipped = done[index]
        outcome.results += results
        outcome.skipped += skipped
    outcome.seconds = time.perf_counter() - t0
    return outcome


class _progress:
    """A rich progress bar (or nothing when quiet / not a terminal-friendly run)."""

    def __init__(self, total: int, show: bool):
        self.p = None
        if show:
            try:
                from rich.progress import (  # noqa: PLC0415
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )
                self.p = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("cells  {task.fields[failed]} failed"), TimeElapsedColumn(),
                                  TextColumn("eta"), TimeRemainingColumn(),
                                  transient=False)
                self.task = self.p.add_task("sweep", total=total, failed=0)
                self.failed = 0
                self.p.start()
            except ImportError:  # pragma: no cover - rich is a core dependency
                self.p = None

    def advance(self, results: list) -> None:
        if self.p is not None:
            self.failed += sum(not r.passed or bool(oracle_disagreements(r)) for r in results)
            self.p.update(self.task, advance=1, failed=self.failed)

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return "nan" if isinstance(x, float) and math.isnan(x) else f"{x:.1e}"


def _pairs_named(message: str, result: Any) -> str:
    """The oracle pairs a disagreement is about: those its message names, else the oracle-vs-oracle
    pairs the result measured (with their errors)."""
    from gradcheck.result import ORACLE_PAIRS  # noqa: PLC0415

    text = message.lower()
    named = [p for p in ORACLE_PAIRS if p in text or p.replace("_", " ") in text]
    if named:
        return ", ".join(p.replace("_", " ") for p in named)
    measured = [f"{p.replace('_', ' ')} {_fmt(v)}" for p, v in (result.oracles or {}).items()
                if not p.startswith("analytic")]
    return ", ".join(measured) or "oracle pair not stated"


def _unprefixed(name: str) -> str:
    """A check's name without its layer-kind prefix (``conv2d: relu x mse [...]`` -> ``relu x mse [...]``)."""
    head, sep, rest = name.partition(": ")
    return rest if sep and " " not in head and " x " in rest else name


def summarize(outcome: SweepOutcome, cfg: SweepConfig) -> str:
    """The summary (plain text)."""
    import numpy as np  # noqa: PLC0415

    from gradcheck.result import ORACLE_PAIRS, SECOND_ORDER_PAIRS  # noqa: PLC0415

    res = outcome.results
    pairs = {_unprefixed(r.name).split(" [")[0] for r in res}
    kinds = sorted({r.name.split(": ")[0] for r in res if _unprefixed(r.name) != r.name})
    layered = sum(_unprefixed(r.name) != r.name for r in res)
    lines = [f"gradcheck sweep: {len(res)} checks over {len(pairs)} activation x loss pairs "
             f"({', '.join(cfg.dtypes)}), seed {cfg.seed}, {outcome.seconds:.1f} s",
             f"  passed {len(res) - len(outcome.failed)}, failed {len(outcome.failed)}",
             *([f"  layer kinds: {layered} checks over {len(kinds)} kinds ({', '.join(kinds)}), "
                f"{sum(_unprefixed(r.name) != r.name for r in outcome.failed)} failed"] if kinds else []),
             "  per input mode: " + "; ".join(
                 f"{mode} {sum(mode_of(r) == mode for r in res)} checks, "
                 f"{sum(mode_of(r) == mode for r in outcome.failed)} failed" for mode in MODES),
             "  max relative error per check over resolved entries, median / worst (a passing check is "
             "within its own tolerance; see the closest call):"]
    for pair in ORACLE_PAIRS + (SECOND_ORDER_PAIRS if cfg.order == 2 else ()):
        parts = []
        for dtype in cfg.dtypes:
            vals = [r.oracles[pair] for r in res if pair in r.oracles and r.dtype == dtype]
            if vals:
                parts.append(f"{dtype} {_fmt(float(np.median(vals)))} / {_fmt(max(vals))} ({len(vals)} checks)")
        lines.append(f"    {pair.replace('_', ' ')}: " + ("; ".join(parts) if parts else "not run"))
    passing = [r for r in res if r.passed and math.isfinite(r.margin)]
    if passing:  # the margin: largest error / tolerance over every judged element of a check
        r = max(passing, key=lambda r: r.margin)
        where = f" at {r.closest.label()} ({_fmt(r.closest.rel_error)} vs {_fmt(r.closest.tolerance)})" \
            if r.closest is not None else ""
        lines.append(f"  closest call: {r.margin:.3g} x its tolerance{where} in {r.name}")
    disagreeing = [r for r in outcome.failed if oracle_disagreements(r)]
    if disagreeing:
        lines.append(f"  oracle disagreements: {len(disagreeing)} check(s) where two oracles disagree "
                     "beyond their error bounds (a fault of the harness, not of the checked code)")
    for r in outcome.failed[:20]:
        lines.append(f"  FAILED {r.name}: max rel error {_fmt(r.max_rel_error)} in {r.worst_param}")
        for p in oracle_disagreements(r):
            lines.append(f"         oracle disagreement ({_pairs_named(p.message, r)}): {p.message}")
        others = [p for p in r.problems if p.kind != ORACLE_DISAGREEMENT]
        if r.diagnosis is not None:
            lines.append(f"         likely bug: {r.diagnosis.message}")
        elif others:
            lines.append(f"         {others[0].message}")
        if r.spec:
            from gradcheck.spec import NetworkSpec  # noqa: PLC0415
            lines.append(f"         rebuild: {NetworkSpec.from_dict(r.spec)!r}")
    failing_acts = sorted({_unprefixed(r.name).split(" x ")[0] for r in outcome.failed})
    if failing_acts:
        lines.append(f"  failing activations: {', '.join(failing_acts)}")
    for s in outcome.skipped:
        lines.append(f"  skipped {s}")
    if outcome.report is not None:
        lines.append(f"  report: {outcome.report}")
    return "\n".join(lines)


def write_report(outcome: SweepOutcome, cfg: SweepConfig, argv: Iterable[str] | None = None) -> Path | None:
    if cfg.out is None:
        return None
    from gradcheck import report  # noqa: PLC0415

    meta = {"command": "gradcheck sweep " + " ".join(argv or []), "seed": cfg.seed,
            "examples per cell": cfg.examples,
            "input modes per cell": ", ".join(f"{m} {n}" for m, n in mode_examples(cfg.examples).items()),
            "dtypes": ", ".join(cfg.dtypes),
            "duration (s)": round(outcome.seconds, 2), "skipped cells": len(outcome.skipped),
            **sweep_meta(cfg, outcome)}
    outcome.report = report.write(outcome.results, cfg.out, title="gradcheck sweep", meta=meta)
    return outcome.report


#: the SweepConfig fields that decide the cells and their records (what ``report merge`` compares)
CELL_SET_FIELDS = ("examples", "seed", "activations", "losses", "dtypes", "max_params", "symbolic_max_size",
                   "order", "layers", "layer_grid")


def sweep_meta(cfg: SweepConfig, outcome: SweepOutcome | None = None) -> dict[str, Any]:
    """What a sweep report's meta says for ``gradcheck report merge``: the gradcheck version, the
    configuration that defines the cell set (None written as ``"all"``), the number of cells of
    the whole sweep, the shard (``"I/N"``) and the executor."""
    from gradcheck import __version__  # noqa: PLC0415

    config = {}
    for name in CELL_SET_FIELDS:
        value = getattr(cfg, name)
        config[name] = "all" if value is None else list(value) if isinstance(value, tuple) else value
    meta: dict[str, Any] = {"gradcheck version": __version__, "sweep config": config,
                            "cells": len(sweep_cells(cfg))}
    if cfg.shard is not None:
        meta["shard"] = f"{cfg.shard[0]}/{cfg.shard[1]}"
    if outcome is not None and outcome.executor:
        meta["executor"] = outcome.executor
    return meta


# -- command line ---------------------------------------------------------------------------------
def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def configure(parser: argparse.ArgumentParser) -> None:
    # defaults are None: an option left out falls back to [tool.gradcheck.sweep] in pyproject.toml,
    # then to the library default (config_from_args)
    parser.add_argument("--examples", type=int, default=None,
                        help="generated networks per activation x loss x dtype cell, half in the kink-margin and "
                             "half in the realistic input mode, at least one of each "
                             f"(default {DEFAULT_EXAMPLES})")
    parser.add_argument("--seed", type=int, default=None, help=f"sweep seed (default {DEFAULT_SEED})")
    parser.add_argument("--activations", type=_names, help="comma-separated activation names (default: all)")
    parser.add_argument("--losses", type=_names, help="comma-separated loss names (default: all)")
    parser.add_argument("--dtype", type=_names, default=None,
                        help="comma-separated dtypes (default: float64,float32)")
    parser.add_argument("--out", default=None, help="report folder (default reports/)")
    parser.add_argument("--no-report", action="store_true", help="write no report files")
    parser.add_argument("--max-params", type=int, default=None,
                        help=f"largest generated network, in parameters (default {DEFAULT_MAX_PARAMS})")
    parser.add_argument("--symbolic-max-size", type=int, default=None,
                        help="symbolic oracle for float64 cases with params x batch up to this "
                             f"(default {DEFAULT_SYMBOLIC_MAX_SIZE}; 0 turns it off)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="worker processes over cells (default: min(2, cores))")
    parser.add_argument("--order", type=int, choices=(1, 2), default=None,
                        help="2: also check second order (Hessian-vector products of every case whose "
                             "gradient passes, against differences of the gradient and SymPy); default 1")
    parser.add_argument("--layers", type=_names, default=None,
                        help="comma-separated layer kinds: dense (the activation x loss grid of dense networks) "
                             "and any of conv1d, conv2d, maxpool2d, avgpool2d, batchnorm, layernorm, embedding, "
                             "attention, rnn, lstm, dropout, flatten (default: all)")
    parser.add_argument("--layer-grid", choices=("rotate", "full"), default=None,
                        help="rotate (default): each layer kind meets every activation once, loss and dtype "
                             "rotating; full: kind x activation x loss x dtype")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run the cells on a Dask distributed cluster: a scheduler address "
                             "(tcp://host:8786), or local:N for a new local cluster of N worker processes "
                             f"(needs {INSTALL_HINT}; --jobs is then ignored; docs/scaling.md)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="run only shard I of N (1-based): a fixed partition of the cells balanced by "
                             "their measured cost; gradcheck report merge joins the N reports")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.epilog = ("Options left out take their value from [tool.gradcheck.sweep] in the nearest "
                     "pyproject.toml, then the defaults above.")


def config_from_args(args: argparse.Namespace, settings: Any = None) -> SweepConfig:
    """The sweep's configuration: each option given on the command line, else its key in
    ``[tool.gradcheck.sweep]`` (``settings``, a :class:`gradcheck.config.Settings`; by default read
    from the pyproject.toml found from the working directory), else the library default."""
    from gradcheck import config  # noqa: PLC0415
    from gradcheck.cli import UsageError  # noqa: PLC0415

    for name in ("examples", "max_params", "jobs"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')}={value} must be >= 1")
    bad = [d for d in getattr(args, "dtype", None) or () if d not in ("float64", "float32")]
    if bad:
        raise UsageError(f"--dtype {bad[0]!r} must be float64 or float32")
    shard = None
    if getattr(args, "shard", None) is not None:
        from gradcheck.shards import parse_shard  # noqa: PLC0415
        try:
            shard = parse_shard(args.shard)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    try:
        cells(SweepConfig(activations=getattr(args, "activations", None) or None,
                          losses=getattr(args, "losses", None) or None,
                          layers=getattr(args, "layers", None) or None))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if settings is None:
        try:
            settings = config.for_directory()
        except config.ConfigError as exc:
            raise UsageError(str(exc)) from None
    table = dict(settings.sweep)

    def pick(option: str, key: str, default: Any) -> Any:
        given = getattr(args, option, None)
        return given if given not in (None, ()) else table.get(key, default)

    out = None if getattr(args, "no_report", False) else pick("out", "out", "reports")
    return SweepConfig(examples=pick("examples", "examples", DEFAULT_EXAMPLES),
                       seed=pick("seed", "seed", DEFAULT_SEED),
                       activations=pick("activations", "activations", None) or None,
                       losses=pick("losses", "losses", None) or None,
                       dtypes=tuple(pick("dtype", "dtypes", ("float64", "float32"))), out=out,
                       max_params=pick("max_params", "max_params", DEFAULT_MAX_PARAMS),
                       symbolic_max_size=pick("symbolic_max_size", "symbolic_max_size", DEFAULT_SYMBOLIC_MAX_SIZE),
                       jobs=pick("jobs", "jobs", min(2, os.cpu_count() or 1)),
                       quiet=bool(getattr(args, "quiet", False)),
                       order=pick("order", "order", 1),
                       layers=pick("layers", "layers", None) or None,
                       layer_grid=pick("layer_grid", "layer_grid", "rotate"),
                       scheduler=_scheduler(pick("scheduler", "scheduler", None)), shard=shard)


def _scheduler(value: str | None) -> str | None:
    """A ``--scheduler`` value checked (``local:N`` with N >= 1), as a UsageError."""
    from gradcheck.cli import UsageError  # noqa: PLC0415
    from gradcheck.executors import parse_scheduler  # noqa: PLC0415

    if value is None:
        return None
    try:
        parse_scheduler(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return value


def run(args: argparse.Namespace) -> int:
    from gradcheck.cli import UsageError, writable_folder  # noqa: PLC0415

    cfg = config_from_args(args)
    if cfg.out is not None and getattr(args, "out", None) is None:  # a given --out was checked by the cli
        why = writable_folder(cfg.out)
        if why:  # the default folder, or [tool.gradcheck.sweep] out (a path below the pyproject's folder)
            raise UsageError(("--out " if cfg.out == "reports" else "[tool.gradcheck.sweep] out: ") + why)
    from gradcheck.executors import CellLost, MissingDask  # noqa: PLC0415

    try:
        outcome = run_sweep(cfg, progress=not cfg.quiet and sys.stderr.isatty())
    except (ValueError, MissingDask, CellLost) as exc:
        print(f"gradcheck sweep: {exc}", file=sys.stderr)
        return 2
    write_report(outcome, cfg, sys.argv[2:] if len(sys.argv) > 2 else [])
    print(summarize(outcome, cfg))
    if cfg.shard is not None:
        print(f"  shard {cfg.shard[0]}/{cfg.shard[1]}: {outcome.cells} of {len(sweep_cells(cfg))} cells, "
              f"on {outcome.executor}; "
              "gradcheck report merge joins the shards' gradcheck.json")
        if outcome.cells == 0:  # more shards than cells: nothing to check is not a failure
            return 0
    elif cfg.scheduler is not None:
        print(f"  cells ran on {outcome.executor}")
    return 0 if outcome.passed else 1
