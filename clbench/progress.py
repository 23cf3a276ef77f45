"""The progress display of `clbench suite` (runs done of total, running, failed, elapsed, ETA), the
status line of other long commands, and the training steps inside a run (`report_step`).

On a terminal one status line is redrawn in place and failures are printed above it as they
happen; elsewhere (CI logs, a file) every finished run is one plain line. `quiet` shows nothing.
"""
from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO

# who hears of training steps inside a run (the live line of `clbench run`), if anyone
_step_listener: ContextVar[Callable[[int, int | None], None] | None] = ContextVar("clbench_steps", default=None)


def report_step(step: int, total: int | None = None) -> None:
    """A learner finished training step `step` (from 1) of the current task, of `total` if known.
    Called by the built-in training loops (and free to call from a learner of your own); costs
    one lookup when nothing listens."""
    listener = _step_listener.get()
    if listener is not None:
        listener(step, total)


@contextmanager
def steps_to(listener: Callable[[int, int | None], None]) -> Iterator[None]:
    """Send the `report_step` calls made inside the block to `listener(step, total)`."""
    token = _step_listener.set(listener)
    try:
        yield
    finally:
        _step_listener.reset(token)


def format_seconds(seconds: float) -> str:
    """0:07, 12:34, 1:02:03."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def redraw(stream: TextIO, text: str) -> None:
    """Replace the terminal's current line with `text`, cut to the terminal's width."""
    width = shutil.get_terminal_size((100, 20)).columns - 1
    stream.write("\r\x1b[2K" + (text if len(text) <= width else text[:max(0, width - 1)] + "…"))
    stream.flush()


class SuiteProgress:
    """Counts of a suite being run, rendered to `stream` (stderr by default)."""

    def __init__(self, total: int, skipped: int, to_run: int, stream: TextIO | None = None,
                 live: bool | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.quiet = quiet
        self.total = total
        self.skipped = skipped
        self.to_run = to_run
        self.finished = 0
        self.failed = 0
        self.running: dict[str, float] = {}
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._width = len(str(total))

    # -- counts ---------------------------------------------------------------------------------
    @property
    def done(self) -> int:
        """Finished runs of the grid: skipped ones and those that finished now."""
        return self.skipped + self.finished - self.failed

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def eta(self) -> float | None:
        """Seconds left, from the pace of the runs that came back so far (None before the first)."""
        came_back = self.finished
        if came_back == 0:
            return None
        return (time.monotonic() - self.start) / came_back * (self.to_run - came_back)

    def status(self) -> str:
        eta = self.eta()
        return (f"[{self.done:>{self._width}}/{self.total} done] {len(self.running)} running, {self.failed} failed, "
                f"{format_seconds(time.monotonic() - self.start)} elapsed, "
                f"ETA {'?' if eta is None else format_seconds(eta)}")

    # -- events ---------------------------------------------------------------------------------
    def started(self, label: str) -> None:
        self.running[label] = time.monotonic()
        self._draw()

    def ended(self, label: str, ok: bool, seconds: float, reason: str | None = None) -> None:
        self.running.pop(label, None)
        self.finished += 1
        self.failed += 0 if ok else 1
        if self.quiet:
            return
        outcome = "ok    " if ok else "FAILED"
        line = f"{outcome} {label} ({seconds:.1f} s)" + ("" if ok else f": {reason}")
        if self.live:
            if not ok:
                self._print(line)
            self._draw(force=True)
        else:
            self._print(f"{line}  | {self.status()}")

    def tick(self) -> None:
        self._draw()

    def note(self, text: str) -> None:
        """A line of its own (e.g. the plan), printed unless quiet."""
        if not self.quiet:
            self._print(text)

    def close(self) -> None:
        if self.live and not self.quiet:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    # -- drawing --------------------------------------------------------------------------------
    def _print(self, line: str) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K")
        self.stream.write(line + "\n")
        self.stream.flush()
        if self.live:
            self._draw(force=True)

    def _draw(self, force: bool = False) -> None:
        if self.quiet or not self.live:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.2:
            return
        self._last_draw = now
        text = self.status()
        if self.running:
            text += "  " + ", ".join(self.running)
        redraw(self.stream, text)


class Status:
    """One live status line for a long command (`report`, `compare --out`): what it is doing now,
    redrawn in place on a terminal (stderr), silent when piped or `quiet`."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = (self.stream.isatty() if live is None else live) and not quiet
        self.start = time.monotonic()
        self._shown = float("-inf")

    def show(self, text: str, every: float = 0.0) -> None:
        """Show `text`, unless `every` > 0 and the line was redrawn less than `every` seconds ago
        (for callers that report many times a second)."""
        now = time.monotonic()
        if not self.live or now - self._shown < every:
            return
        self._shown = now
        redraw(self.stream, f"[{format_seconds(now - self.start)}] {text}")

    def clear(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
