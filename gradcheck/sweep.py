"""``gradcheck sweep``: the main job. Checks the reference implementation over every
activation x loss pair, on networks that Hypothesis generates, against every applicable oracle,
and writes the report (``reports/index.html``, ``gradcheck.json``, ``junit.xml``).

Each (activation, loss, dtype) cell gets ``--examples`` cases from
:func:`gradcheck.strategies.cases` with a seed derived from the sweep seed and the cell's name, so
a sweep is reproducible cell by cell. Every case is checked against the numerical oracle; cases
small enough for SymPy (``--symbolic-max-size``) also against the symbolic one.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

DEFAULT_EXAMPLES = 2
DEFAULT_SEED = 0
DEFAULT_MAX_PARAMS = 200
#: symbolic oracle only where P x batch is at most this (SymPy build time grows fast with size)
DEFAULT_SYMBOLIC_MAX_SIZE = 120


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


@dataclass
class SweepOutcome:
    """Results of a sweep plus what is needed to summarise it."""

    results: list[Any] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: Path | None = None

    @property
    def failed(self) -> list[Any]:
        return [r for r in self.results if not r.passed]

    @property
    def passed(self) -> bool:
        return bool(self.results) and not self.failed


def cell_seed(seed: int, activation: str, loss: str, dtype: str) -> int:
    """A stable seed per cell (Python's hash() is salted per process; crc32 is not)."""
    return zlib.crc32(f"{seed}:{activation}:{loss}:{dtype}".encode())


def generate(activation: str, loss: str, dtype: str, examples: int, seed: int, max_params: int) -> list:
    """``examples`` cases for one cell, deterministic for ``seed`` (Hypothesis, generate phase only)."""
    from hypothesis import HealthCheck, Phase, given, settings  # noqa: PLC0415
    from hypothesis import seed as hseed  # noqa: PLC0415

    from gradcheck.strategies import cases  # noqa: PLC0415

    found: list = []
    strategy = cases(activation=activation, loss=loss, dtypes=(dtype,), max_params=max_params)

    @hseed(cell_seed(seed, activation, loss, dtype))
    @settings(max_examples=max(examples * 3, 3), database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(strategy)
    def collect(case):
        if len(found) < examples and all(repr(case.spec) != repr(c.spec) for c in found[-1:]):
            found.append(case)

    collect()
    return found[:examples]


def check_case(case: Any, activation: str, loss: str, symbolic_max_size: int,
               overrides: Mapping[str, Any] | None = None) -> Any:
    """Check one case of the reference network; the result carries its name and spec."""
    import gradcheck  # noqa: PLC0415
    from reference.network import Network  # noqa: PLC0415

    spec = case.spec
    net = Network(spec, activations=overrides)
    use_symbolic = spec.dtype == "float64" and spec.n_params * spec.batch <= symbolic_max_size
    name = f"{activation} x {loss} [{spec.label()}]"
    result = gradcheck.check(net, case.params, case.X, case.y, spec=spec, symbolic=use_symbolic,
                             name=name)
    if result.spec is None:
        result.spec = spec.to_dict()
    return result


def _check_cell(args: tuple) -> tuple[list, list[str]]:
    activation, loss, dtype, cfg, overrides = args
    from hypothesis.errors import InvalidArgument  # noqa: PLC0415

    try:
        cases = generate(activation, loss, dtype, cfg.examples, cfg.seed, cfg.max_params)
    except InvalidArgument as exc:
        return [], [f"{activation} x {loss} ({dtype}): {exc}"]
    return [check_case(c, activation, loss, cfg.symbolic_max_size, overrides) for c in cases], []


def cells(cfg: SweepConfig) -> list[tuple[str, str, str]]:
    from reference.activations import ACTIVATIONS  # noqa: PLC0415
    from reference.losses import LOSSES  # noqa: PLC0415

    acts = cfg.activations or tuple(ACTIVATIONS)
    losses = cfg.losses or tuple(LOSSES)
    for name, known, what in ((acts, ACTIVATIONS, "activation"), (losses, LOSSES, "loss")):
        unknown = [n for n in name if n not in known]
        if unknown:
            raise ValueError(f"unknown {what}(s) {unknown}; known: {', '.join(known)}")
    return [(a, l, d) for a in acts for l in losses for d in cfg.dtypes]


def run_sweep(cfg: SweepConfig, *, overrides: Mapping[str, Any] | None = None,
              progress: bool | None = None) -> SweepOutcome:
    """Run the sweep; ``overrides`` replaces activation registry entries (planted-bug tests)."""
    t0 = time.perf_counter()
    todo = [(a, l, d, cfg, overrides) for a, l, d in cells(cfg)]
    outcome = SweepOutcome()
    show = (not cfg.quiet) if progress is None else progress
    bar = _progress(len(todo), show)
    if cfg.jobs > 1 and overrides is None:
        with ProcessPoolExecutor(max_workers=cfg.jobs) as pool:
            for results, skipped in pool.map(_check_cell, todo, chunksize=4):
                outcome.results += results
                outcome.skipped += skipped
                bar.advance(results)
    else:
        for item in todo:
            results, skipped = _check_cell(item)
            outcome.results += results
            outcome.skipped += skipped
            bar.advance(results)
    bar.close()
    outcome.seconds = time.perf_counter() - t0
    return outcome


class _progress:
    """A rich progress bar (or nothing when quiet / not a terminal-friendly run)."""

    def __init__(self, total: int, show: bool):
        self.p = None
        if show:
            try:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415
                self.p = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("cells  {task.fields[failed]} failed"), TimeElapsedColumn(),
                                  transient=False)
                self.task = self.p.add_task("sweep", total=total, failed=0)
                self.failed = 0
                self.p.start()
            except ImportError:  # pragma: no cover - rich is a core dependency
                self.p = None

    def advance(self, results: list) -> None:
        if self.p is not None:
            self.failed += sum(not r.passed for r in results)
            self.p.update(self.task, advance=1, failed=self.failed)

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return "nan" if isinstance(x, float) and math.isnan(x) else f"{x:.1e}"


def summarize(outcome: SweepOutcome, cfg: SweepConfig) -> str:
    """The summary (plain text)."""
    import numpy as np  # noqa: PLC0415

    from gradcheck.result import ORACLE_PAIRS  # noqa: PLC0415

    res = outcome.results
    pairs = {(r.name.split(" [")[0]) for r in res}
    lines = [f"gradcheck sweep: {len(res)} checks over {len(pairs)} activation x loss pairs "
             f"({', '.join(cfg.dtypes)}), seed {cfg.seed}, {outcome.seconds:.1f} s",
             f"  passed {len(res) - len(outcome.failed)}, failed {len(outcome.failed)}",
             "  max relative error per check, median / worst (a passing worst is an entry too small for "
             "the estimate to resolve):"]
    for pair in ORACLE_PAIRS:
        parts = []
        for dtype in cfg.dtypes:
            vals = [r.oracles[pair] for r in res if pair in r.oracles and r.dtype == dtype]
            if vals:
                parts.append(f"{dtype} {_fmt(float(np.median(vals)))} / {_fmt(max(vals))} ({len(vals)} checks)")
        lines.append(f"    {pair.replace('_', ' ')}: " + ("; ".join(parts) if parts else "not run"))
    ratios = [(r.max_rel_error / r.tolerance, r) for r in res
              if r.passed and r.tolerance and math.isfinite(r.tolerance) and r.tolerance > 0]
    if ratios:
        ratio, r = max(ratios, key=lambda t: t[0])
        lines.append(f"  closest call: {ratio:.2f} x its tolerance ({_fmt(r.max_rel_error)} vs "
                     f"{_fmt(r.tolerance)}) in {r.name}")
    for r in outcome.failed[:20]:
        lines.append(f"  FAILED {r.name}: max rel error {_fmt(r.max_rel_error)} in {r.worst_param}")
        if r.diagnosis is not None:
            lines.append(f"         likely bug: {r.diagnosis.message}")
        elif r.problems:
            lines.append(f"         {r.problems[0].message}")
        if r.spec:
            from gradcheck.spec import NetworkSpec  # noqa: PLC0415
            lines.append(f"         rebuild: {NetworkSpec.from_dict(r.spec)!r}")
    failing_acts = sorted({r.name.split(" x ")[0] for r in outcome.failed})
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
            "examples per cell": cfg.examples, "dtypes": ", ".join(cfg.dtypes),
            "duration (s)": round(outcome.seconds, 2), "skipped cells": len(outcome.skipped)}
    outcome.report = report.write(outcome.results, cfg.out, title="gradcheck sweep", meta=meta)
    return outcome.report


# -- command line ---------------------------------------------------------------------------------
def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES,
                        help=f"generated networks per activation x loss x dtype cell (default {DEFAULT_EXAMPLES})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="sweep seed (default 0)")
    parser.add_argument("--activations", type=_names, help="comma-separated activation names (default: all)")
    parser.add_argument("--losses", type=_names, help="comma-separated loss names (default: all)")
    parser.add_argument("--dtype", type=_names, default=("float64", "float32"),
                        help="comma-separated dtypes (default: float64,float32)")
    parser.add_argument("--out", default="reports", help="report folder (default reports/)")
    parser.add_argument("--no-report", action="store_true", help="write no report files")
    parser.add_argument("--max-params", type=int, default=DEFAULT_MAX_PARAMS,
                        help=f"largest generated network, in parameters (default {DEFAULT_MAX_PARAMS})")
    parser.add_argument("--symbolic-max-size", type=int, default=DEFAULT_SYMBOLIC_MAX_SIZE,
                        help="symbolic oracle for float64 cases with params x batch up to this "
                             f"(default {DEFAULT_SYMBOLIC_MAX_SIZE}; 0 turns it off)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="worker processes over cells (default: min(2, cores))")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    for name in ("examples", "max_params", "jobs"):
        if getattr(args, name) < 1:
            raise SystemExit(f"gradcheck sweep: --{name.replace('_', '-')}={getattr(args, name)} must be >= 1")
    bad = [d for d in args.dtype if d not in ("float64", "float32")]
    if bad:
        raise SystemExit(f"gradcheck sweep: --dtype {bad[0]!r} must be float64 or float32")
    return SweepConfig(examples=args.examples, seed=args.seed, activations=args.activations or None,
                       losses=args.losses or None, dtypes=tuple(args.dtype),
                       out=None if args.no_report else args.out, max_params=args.max_params,
                       symbolic_max_size=args.symbolic_max_size, jobs=args.jobs, quiet=args.quiet)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    try:
        outcome = run_sweep(cfg, progress=not cfg.quiet and sys.stderr.isatty())
    except ValueError as exc:
        print(f"gradcheck sweep: {exc}", file=sys.stderr)
        return 2
    write_report(outcome, cfg, sys.argv[2:] if len(sys.argv) > 2 else [])
    print(summarize(outcome, cfg))
    return 0 if outcome.passed else 1
