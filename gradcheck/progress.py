"""Progress of a long check: a bar on a terminal, a log line now and then otherwise, silence when asked.

Before the element-by-element pass the checker knows how many calls it will make and how long
one call takes (it timed the two validation calls), so it can say up front when a check will take
a while and which faster paths exist. A check estimated under :data:`SHOW_AFTER` seconds shows
nothing. Silent under ``check(..., quiet=True)`` and, by default, inside the pytest plugin unless
pytest runs with ``-v`` (the plugin sets :func:`quiet_by_default` for its tests).
"""
from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

#: a check estimated to take longer than this (seconds) reports its progress
SHOW_AFTER = 3.0
#: ... and longer than this names the faster paths
SUGGEST_AFTER = 30.0
#: seconds between two log lines when stderr is not a terminal
LOG_EVERY = 10.0

_quiet_default: contextvars.ContextVar[bool] = contextvars.ContextVar("gradcheck_quiet", default=False)


@contextlib.contextmanager
def quiet_by_default(quiet: bool = True) -> Iterator[None]:
    """Within this block, checks that were not given ``quiet=`` are (not) silent."""
    token = _quiet_default.set(quiet)
    try:
        yield
    finally:
        _quiet_default.reset(token)


def is_quiet(quiet: bool | None) -> bool:
    """``quiet`` as given, else the default of the enclosing :func:`quiet_by_default` block."""
    return _quiet_default.get() if quiet is None else bool(quiet)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Counts calls of the loss against the expected total and shows how far the check is."""

    def __init__(self, total: int, per_call: float, label: str, faster: list[str], *,
                 stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.total, self.per_call, self.label = max(1, total), per_call, label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.done = 0
        self.t0 = time.perf_counter()
        self.last_log = self.t0
        self.bar: Any = None
        estimate = total * per_call
        self.headline = (f"gradcheck: checking {label}: about {total:,} calls of "
                         f"{per_call * 1e3:.3g} ms, ~{_duration(estimate)}")
        self.hint = ("faster: " + "; ".join(faster)) if faster and estimate > SUGGEST_AFTER else ""
        if self.tty:
            from rich.console import Console  # noqa: PLC0415 - only for a long check on a terminal
            from rich.progress import (  # noqa: PLC0415 - as above
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar  # noqa: PLC0415 - as above
            console = Console(file=self.stream)
            console.print(self.headline + (f"\n{self.hint}" if self.hint else ""), highlight=False)
            self.bar = Bar(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TextColumn("calls"),
                           TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                           console=console, transient=True)
            self.task = self.bar.add_task(label, total=self.total)
            self.bar.start()
        else:
            print(self.headline, file=self.stream, flush=True)
            if self.hint:
                print(f"gradcheck: {self.hint}", file=self.stream, flush=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(self.task, completed=min(self.done, self.total))
            return
        now = time.perf_counter()
        if now - self.last_log >= LOG_EVERY:
            self.last_log = now
            elapsed = now - self.t0
            rate = self.done / elapsed if elapsed > 0 else 0.0
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(f"gradcheck: {self.label}: {min(100, 100 * self.done // self.total)}% "
                  f"({self.done:,}/{self.total:,} calls), {_duration(elapsed)} elapsed, "
                  f"~{_duration(max(0.0, left))} left", file=self.stream, flush=True)

    def retarget(self, total: int, label: str | None = None) -> None:
        """The expected total changed (a budgeted sample grows or shrinks with the measured pace)."""
        self.total = max(1, total, self.done)
        if label is not None:
            self.label = label
        if self.bar is not None:
            self.bar.update(self.task, total=self.total, completed=min(self.done, self.total),
                            description=self.label)

    def counting(self, loss_of: Callable[[dict], Any]) -> Callable[[dict], Any]:
        """``loss_of`` that advances this progress on each call (a batched oracle is kept as is)."""
        if hasattr(loss_of, "evaluate_points"):
            return loss_of

        def counted(w: dict) -> Any:
            value = loss_of(w)
            self.advance()
            return value
        return counted

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def start(total: int, per_call: float, *, quiet: bool | None, label: str,
          faster: list[str]) -> Progress | None:
    """A :class:`Progress` when the check is estimated to take over :data:`SHOW_AFTER` seconds
    and is not quiet; otherwise None."""
    if is_quiet(quiet) or total * per_call <= SHOW_AFTER:
        return None
    return Progress(total, per_call, label, faster)
