"""Where the sweep's cells run: in this process, on a local process pool, or on a Dask cluster.

Every executor has one job: ``run(fn, items)`` calls ``fn(item)`` for each item somewhere and
yields ``(index, value)`` pairs *as the cells finish* (any order); the caller
(:func:`gradcheck.sweep.run_sweep`) keys them by index, keeps the first value of an index and puts
the records back in cell order. ``fn`` and the items must pickle for every executor but the
serial one (the sweep's are a module-level function and tuples of builtins and a dataclass).

=========================  ========================================================================
``open_executor(...)``     executor
=========================  ========================================================================
``None``, ``jobs=1``       :class:`SerialExecutor`: in this process, one cell after the other
``None``, ``jobs=N``       :class:`PoolExecutor`: a ``concurrent.futures.ProcessPoolExecutor`` of N
``"local:N"``              :class:`DaskExecutor` on a new ``LocalCluster`` of N worker processes
                           (one thread each), closed with the executor
``"tcp://host:8786"``      :class:`DaskExecutor`: a ``Client`` of that running scheduler (any address
                           ``distributed.Client`` takes; ``tls://``, ``ws://``, ``host:port``)
=========================  ========================================================================

Dask is imported only here and only for a scheduler: ``pip install "gradcheck[distributed]"``.
A worker that dies while it checks a cell loses the cell to the scheduler, which runs it again
on another worker (Dask's ``distributed.scheduler.allowed-failures``, 3 by default: a cell that
kills more workers than that fails the sweep with :class:`CellLost` naming it).
"""
from __future__ import annotations

import functools
import multiprocessing
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

__all__ = ["CellExecutor", "SerialExecutor", "PoolExecutor", "DaskExecutor", "CellLost", "LOCAL_CLUSTER_PORTS",
           "MissingDask", "open_executor", "parse_scheduler", "INSTALL_HINT"]

INSTALL_HINT = 'pip install "gradcheck[distributed]"'
_LOCAL = re.compile(r"local(?::(?P<n>\S*))?")
#: a LocalCluster on free ports (several at once on one machine), without a dashboard; its HTTP
#: server (health checks) on a free port too, not on 8787
LOCAL_CLUSTER_PORTS: dict[str, Any] = {"scheduler_port": 0, "dashboard_address": ":0",
                                       "scheduler_kwargs": {"dashboard": False}}


class MissingDask(ImportError):
    """``--scheduler`` without Dask installed."""


class CellLost(RuntimeError):
    """A cell that the cluster could not run (it killed too many workers, or the cluster went away)."""


class CellExecutor:
    """The interface: ``run`` yields ``(index, fn(items[index]))`` as cells finish; ``close`` frees
    what the executor started. A context manager."""

    name = "executor"

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Free processes and connections (nothing for the serial executor)."""

    def __enter__(self) -> CellExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(CellExecutor):
    """Each cell in this process, in order (what ``overrides`` and ``--jobs 1`` need)."""

    name = "serial"

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        for index, item in enumerate(items):
            yield index, fn(item)


@functools.lru_cache(maxsize=1)
def fresh_process_context() -> Any:
    """The multiprocessing context for gradcheck's worker processes: ``forkserver`` where available
    (children fork from a small server, never from the caller, which may run threads: forking a
    process that has imported JAX, a pytest session or a notebook can deadlock), else ``spawn``.
    One server per process, so one preload for every user of it: ``gradcheck`` and the grader
    (0.45 s to import, paid once by the server instead of by every graded file)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["gradcheck", "gradcheck.teach.grading"])
        return context
    return multiprocessing.get_context("spawn")


class PoolExecutor(CellExecutor):
    """A local ``ProcessPoolExecutor`` of ``jobs`` processes (:func:`fresh_process_context`); one
    task per cell."""

    def __init__(self, jobs: int):
        if jobs < 1:
            raise ValueError(f"jobs={jobs}: must be >= 1")
        self.jobs = jobs
        self.name = f"pool (jobs={jobs})"
        self._pool: ProcessPoolExecutor | None = None

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=fresh_process_context())
        futures = {self._pool.submit(fn, item): index for index, item in enumerate(items)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:  # an error or an abandoned iteration: drop what has not started
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def parse_scheduler(scheduler: str) -> int | str:
    """``"local:N"`` -> N (worker processes), ``"local"`` -> 0 (as many as cores), any other
    string -> itself (a scheduler address). Raises ValueError naming the bad value."""
    text = scheduler.strip()
    if not text:
        raise ValueError("--scheduler '': expected local:N or a scheduler address such as tcp://host:8786")
    m = _LOCAL.fullmatch(text)
    if m is None:
        return text
    n = m.group("n")
    if n is None:
        return 0
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"--scheduler {scheduler}: N in local:N must be a whole number >= 1")
    return int(n)


def _worker_version() -> str:
    """The gradcheck version a worker imports (run on every worker when a client connects)."""
    from gradcheck import __version__  # noqa: PLC0415

    return __version__


class DaskExecutor(CellExecutor):
    """Cells as Dask tasks on a ``distributed`` cluster: ``local:N`` starts a ``LocalCluster``
    (N worker processes, one thread each, no dashboard), an address connects to a running
    scheduler. Every worker must import the same gradcheck version as this process (checked
    when connecting)."""

    def __init__(self, scheduler: str, *, timeout: float = 30.0):
        try:
            import distributed  # noqa: PLC0415
        except ImportError as exc:
            raise MissingDask(f"--scheduler {scheduler} needs Dask distributed, which is not installed "
                              f"({exc}); {INSTALL_HINT}") from None
        self._distributed = distributed
        target = parse_scheduler(scheduler)
        self.cluster: Any = None
        if isinstance(target, int):
            import os  # noqa: PLC0415

            n = target or (os.cpu_count() or 1)
            self.cluster = distributed.LocalCluster(n_workers=n, processes=True, threads_per_worker=1,
                                                    **LOCAL_CLUSTER_PORTS)
            try:
                self.client = distributed.Client(self.cluster, timeout=timeout)
            except BaseException:
                self.cluster.close()
                raise
            self.name = f"dask LocalCluster (local:{n})"
        else:
            try:
                self.client = distributed.Client(target, timeout=timeout)
            except OSError as exc:
                raise CellLost(f"--scheduler {scheduler}: cannot reach the Dask scheduler: {exc}") from None
            self.name = f"dask {target}"
        self._check_versions()

    def _check_versions(self) -> None:
        mine = _worker_version()
        try:
            theirs = self.client.run(_worker_version)
        except Exception as exc:  # e.g. ModuleNotFoundError: gradcheck is not installed on a worker
            self.close()
            raise CellLost(f"cannot run gradcheck on the workers ({type(exc).__name__}: {exc}): install "
                           f"gradcheck {mine} on every worker") from None
        other = {w: v for w, v in theirs.items() if v != mine}
        if other:
            worker, version = sorted(other.items())[0]
            self.close()
            raise CellLost(f"worker {worker} runs gradcheck {version}, this process {mine}: "
                           "install the same version on every worker")

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        distributed = self._distributed
        token = uuid.uuid4().hex[:12]
        futures = [self.client.submit(fn, item, key=f"gradcheck-cell-{index}-{token}", pure=False)
                   for index, item in enumerate(items)]
        index_of = {f.key: i for i, f in enumerate(futures)}
        try:
            for future in distributed.as_completed(futures):
                index = index_of[future.key]
                if future.status == "error":
                    exc = future.exception()
                    if isinstance(exc, distributed.KilledWorker):
                        raise CellLost(f"cell {index} ({_label(items[index])}) was lost with every worker "
                                       f"that ran it ({exc}); see distributed.scheduler.allowed-failures") from None
                    raise exc
                value = future.result()
                future.release()  # the value is here now: the cluster may forget it
                yield index, value
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        client, cluster = getattr(self, "client", None), self.cluster
        self.cluster = None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _label(item: Any) -> str:
    """A cell tuple as text: ``tanh x mse float64`` or ``conv2d: relu x mae float32``."""
    if isinstance(item, tuple) and item and item[0] == "layer":
        return f"{item[1]}: {item[2]} x {item[3]} {item[4]}"
    if isinstance(item, tuple) and len(item) >= 3:
        return f"{item[0]} x {item[1]} {item[2]}"
    return repr(item)[:80]


def open_executor(scheduler: str | None = None, jobs: int = 1) -> CellExecutor:
    """The executor for ``scheduler`` (see the module's table), else a pool of ``jobs``
    processes (serial for 1). The caller closes it."""
    if scheduler:
        return DaskExecutor(scheduler)
    return PoolExecutor(jobs) if jobs > 1 else SerialExecutor()
