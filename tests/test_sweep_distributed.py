"""`gradcheck sweep --scheduler`: the cells on a real Dask ``LocalCluster`` (2 worker processes),
the same records as a serial run, and a worker killed in the middle of a cell: the cell runs again
elsewhere, is never lost and never counted twice. Skipped only when Dask is not installed (CI
installs the ``distributed`` extra, so these run there)."""
from __future__ import annotations

import functools
import json
import os
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from gradcheck import cli
from gradcheck.executors import INSTALL_HINT, LOCAL_CLUSTER_PORTS, CellLost, DaskExecutor, MissingDask, open_executor
from gradcheck.shards import cell_key
from gradcheck.sweep import SweepConfig, run_cell, run_sweep, sweep_cells
from tests.test_sweep_shards import CFG, untimed
from tests.test_sweep_shards import SMALL as SHARD_SMALL

needs_dask = pytest.mark.skipif(find_spec("distributed") is None,
                                reason=f"Dask distributed is not installed ({INSTALL_HINT})")

#: the small sweep of tests/test_sweep_shards.py, without its --jobs 1 (the scheduler runs the cells)
_at = SHARD_SMALL.index("--jobs")
SMALL = SHARD_SMALL[:_at] + SHARD_SMALL[_at + 2:]


@pytest.fixture(scope="module")
def serial_records():
    return [untimed(r.to_dict()) for r in run_sweep(CFG).results]


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 worker processes (one thread each), for the tests that connect by address."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  **LOCAL_CLUSTER_PORTS) as local:
        yield local


def die_once(fn, marker: str, victim: tuple, item: tuple):
    """Run ``fn(item)``, except the first time the ``victim`` cell runs anywhere: then the worker
    process dies on the spot (``os._exit``), mid-cell. The marker file makes the retry succeed."""
    if cell_key(item) == victim:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            with open(marker + ".retry", "a") as fh:
                fh.write(f"{os.getpid()}\n")
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os._exit(1)
    return fn(item)


class DyingOnce(DaskExecutor):
    """A DaskExecutor whose cells run through :func:`die_once`."""

    def __init__(self, address: str, marker: Path, victim: tuple):
        super().__init__(address)
        self.marker, self.victim = str(marker), victim

    def run(self, fn, items):
        return super().run(functools.partial(die_once, fn, self.marker, self.victim), items)


@needs_dask
def test_local_cluster_from_the_command_line_gives_the_serial_records(tmp_path, serial_records, capsys):
    code = cli.main(["sweep", *SMALL, "--scheduler", "local:2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "cells ran on dask LocalCluster (local:2)" in out
    doc = json.loads((tmp_path / "gradcheck.json").read_text())
    assert doc["meta"]["executor"] == "dask LocalCluster (local:2)"
    assert [untimed(r) for r in doc["results"]] == serial_records


@needs_dask
def test_a_worker_killed_mid_cell_gets_the_cell_retried_once(cluster, tmp_path, serial_records):
    todo = sweep_cells(CFG)
    victim = cell_key(todo[4])  # the first layer cell: dense cells have finished or are running
    marker = tmp_path / "killed"
    with DyingOnce(cluster.scheduler_address, marker, victim) as executor:
        assert len(executor.client.scheduler_info()["workers"]) == 2
        seen = []
        outcome_records = []
        for index, (results, _skipped) in executor.run(run_cell, todo):
            seen.append(index)
            outcome_records.append((index, results))
    # a worker really died in the victim cell, and another process ran it again
    killed = int(marker.read_text())
    retried = [int(p) for p in (tmp_path / "killed.retry").read_text().split()]
    assert len(retried) == 1 and retried[0] != killed
    # every cell came back exactly once, and in cell order the records are the serial ones
    assert sorted(seen) == list(range(len(todo)))
    records = [untimed(r.to_dict()) for _, results in sorted(outcome_records, key=lambda t: t[0]) for r in results]
    assert records == serial_records


@needs_dask
def test_run_sweep_on_a_cluster_by_address_with_a_killed_worker(cluster, tmp_path, serial_records):
    todo = sweep_cells(CFG)
    with DyingOnce(cluster.scheduler_address, tmp_path / "killed", cell_key(todo[1])) as executor:
        outcome = run_sweep(CFG, executor=executor)
    assert (tmp_path / "killed").exists() and (tmp_path / "killed.retry").exists()
    assert outcome.executor.startswith("dask tcp://") and outcome.cells == len(todo)
    assert [untimed(r.to_dict()) for r in outcome.results] == serial_records


def die_always(item: tuple):
    """A cell that kills every worker process that runs it."""
    os._exit(1)


@needs_dask
def test_a_cell_that_keeps_killing_workers_stops_the_sweep_naming_it():
    import dask
    import distributed

    # allowed-failures 0: the first death is one too many (the default, 3, takes 3 worker restarts)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1,
                                     **LOCAL_CLUSTER_PORTS) as local, \
            DaskExecutor(local.scheduler_address) as executor:
        with pytest.raises(CellLost, match=r"cell 0 \(tanh x mse float64\) was lost with every worker that ran it"):
            list(executor.run(die_always, sweep_cells(CFG)[:1]))


@needs_dask
def test_an_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(CellLost, match="cannot reach the Dask scheduler"):
        DaskExecutor("tcp://127.0.0.1:9", timeout=1)


def test_without_dask_the_error_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(MissingDask, match=r'pip install "gradcheck\[distributed\]"'):
        open_executor("local:2")
    assert cli.main(["sweep", *SMALL, "--scheduler", "local:2", "--no-report"]) == 2
    assert 'needs Dask distributed, which is not installed' in capsys.readouterr().err


def test_overrides_run_in_this_process_whatever_the_scheduler():
    cfg = SweepConfig(**{**CFG.__dict__, "layers": ("dense",), "scheduler": "local:2"})
    # overrides are objects of this process: serial, and no cluster is started for them
    outcome = run_sweep(cfg, overrides={})
    assert outcome.executor == "serial" and len(outcome.results) == 8


def test_bad_scheduler_values_are_usage_errors(capsys):
    for value in ("local:0", "local:x", ""):
        assert cli.main(["sweep", *SMALL, "--scheduler", value, "--no-report"]) == 2
        assert "--scheduler" in capsys.readouterr().err
