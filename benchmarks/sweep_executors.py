"""The sweep's executors compared, and the per-cell costs the shards balance on.

    python benchmarks/sweep_executors.py            # the same small sweep: serial, pool (jobs=2), local:2
    python benchmarks/sweep_executors.py --costs    # seconds per cell of the default sweep, by kind and dtype

Executors (the figures of docs/scaling.md): one sweep (``--activations tanh,relu,sigmoid,gelu
--losses mse,huber,bce --examples 1`` and every layer kind; 24 dense and 48 layer cells unless
changed with the options) is run once per executor, after one untimed serial warm-up (imports and
SymPy caches of the client process). Times are wall times of ``run_sweep`` on an executor opened
once: the first run (fresh workers: a spawned Dask worker imports gradcheck, SymPy and Hypothesis
on its first cell, a forked pool process inherits them), then the fastest of ``--repeat`` warm
runs; opening (the cluster's start) and closing are printed apart. Each row states warm seconds
per cell and the overhead per cell against the pool: ``(t_warm - t_pool_warm) / cells``. The
records of every run are compared with the serial ones (timing fields left out).
The pickled size of what travels per cell (the cell tuple one way, its ``(results, skipped)`` the
other) is printed too.

Costs (``--costs``): every cell of the default sweep (``SweepConfig()``: every activation x loss x
dtype, every layer kind in the rotating grid, ``--examples 3``) is checked serially in this
process, its wall time measured; printed is the mean per cell for each (kind, dtype), and the
ratio to a float64 dense cell: the table ``gradcheck.shards.COSTS``. Then, on these measured
times, how far the slowest of N shards is above the mean, for the ``--shard`` partition and for
round robin.
"""
from __future__ import annotations

import argparse
import os
import pickle
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradcheck import sweep
from gradcheck.sweep import SweepConfig, run_sweep


def _strip(value):
    """A record without its timing fields (``seconds``), for comparing executors."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def costs() -> None:
    cfg = SweepConfig(out=None, quiet=True)
    todo = sweep.sweep_cells(cfg)
    sweep.run_cell(todo[0])  # warm-up: imports and caches are not charged to the first cell
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    per_cell = []
    t_all = time.perf_counter()
    for item in todo:
        t0 = time.perf_counter()
        sweep.run_cell(item)
        kind, dtype = (item[1], item[4]) if item[0] == "layer" else ("dense", item[2])
        per_cell.append(time.perf_counter() - t0)
        seconds[(kind, dtype)].append(per_cell[-1])
    total = time.perf_counter() - t_all
    base = statistics.mean(seconds[("dense", "float64")])
    print(f"{len(todo)} cells of the default sweep in {total:.1f} s, serial, one process")
    print(f"{'kind':<12} {'dtype':<8} {'cells':>5} {'s/cell':>8} {'ratio':>6}")
    for (kind, dtype), vals in sorted(seconds.items()):
        mean = statistics.mean(vals)
        print(f"{kind:<12} {dtype:<8} {len(vals):>5} {mean:>8.3f} {mean / base:>6.2f}")
    # the partition (with the table in gradcheck.shards) against round robin, on these measured times
    from gradcheck.shards import shard_of

    total_cells = sum(per_cell)
    print("slowest shard / mean shard, these cells' measured seconds summed per shard:")
    for n in (2, 4, 8):
        balanced = max(sum(per_cell[i] for i in shard_of(todo, k, n)) for k in range(1, n + 1))
        robin = max(sum(per_cell[k::n]) for k in range(n))
        print(f"  {n} shards: --shard {balanced / (total_cells / n):.2f}, round robin {robin / (total_cells / n):.2f}")


def executors(args: argparse.Namespace) -> None:
    from gradcheck import executors as ex

    cfg = SweepConfig(activations=tuple(args.activations.split(",")), losses=tuple(args.losses.split(",")),
                      dtypes=("float64", "float32"), examples=1, out=None, quiet=True)
    todo = sweep.sweep_cells(cfg)
    print(f"{len(todo)} cells ({len(sweep.cells(cfg))} dense, {len(sweep.layer_cells(cfg))} layer), "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    up = pickle.dumps(todo[0], protocol=pickle.HIGHEST_PROTOCOL)
    t0 = time.perf_counter()
    serial = run_sweep(cfg, executor=ex.SerialExecutor())  # also the warm-up
    print(f"serial (warm-up, whole run) {time.perf_counter() - t0:.2f} s")
    per_cell = [len(pickle.dumps(sweep.run_cell(item), protocol=pickle.HIGHEST_PROTOCOL)) for item in todo[:24]]
    print(f"over the wire per cell: {len(up)} bytes out (the cell tuple with its SweepConfig), "
          f"{statistics.mean(per_cell) / 1024:.1f} kB back on average (max {max(per_cell) / 1024:.1f} kB; "
          f"Result objects, {len(serial.results) / len(todo):.1f} per cell)")
    reference = [_strip(r.to_dict()) for r in serial.results]
    rows = []
    for name in args.executors:
        t_start = time.perf_counter()
        executor = ex.open_executor(scheduler=name if name != "pool" else None, jobs=args.jobs)
        started = time.perf_counter() - t_start
        try:
            runs = []
            for _ in range(args.repeat + 1):  # the first run with fresh workers, then warm ones
                t0 = time.perf_counter()
                outcome = run_sweep(cfg, executor=executor)
                runs.append(time.perf_counter() - t0)
                same = [_strip(r.to_dict()) for r in outcome.results] == reference
        finally:
            t1 = time.perf_counter()
            executor.close()
            stopped = time.perf_counter() - t1
        rows.append((executor.name, runs[0], min(runs[1:]), started, stopped, same))
    pool = next((warm for n, _, warm, *_ in rows if n.startswith("pool")), None)
    print(f"{'executor':<28} {'first run':>9} {'warm run':>9} {'s/cell':>7} {'vs pool/cell':>12} "
          f"{'start':>6} {'stop':>6}  records")
    for name, first, warm, started, stopped, same in rows:
        extra = f"{(warm - pool) / len(todo) * 1000:+.1f} ms" if pool is not None else "-"
        print(f"{name:<28} {first:>9.2f} {warm:>9.2f} {warm / len(todo):>7.3f} {extra:>12} {started:>6.1f} "
              f"{stopped:>6.1f}  {'same as serial' if same else 'DIFFER'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--costs", action="store_true", help="per-cell costs of the default sweep")
    parser.add_argument("--activations", default="tanh,relu,sigmoid,gelu")
    parser.add_argument("--losses", default="mse,huber,bce")
    parser.add_argument("--jobs", type=int, default=2, help="pool processes (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="warm runs per executor, the fastest kept (default 3)")
    parser.add_argument("--executors", nargs="+", default=["pool", "local:2"],
                        help="pool and/or scheduler strings (local:N, tcp://host:8786); default: pool local:2")
    args = parser.parse_args()
    if args.costs:
        costs()
    else:
        executors(args)


if __name__ == "__main__":
    main()
