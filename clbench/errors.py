"""The one error type the CLI turns into a one-line message and exit code 2, and the one way of
saying that a name is unknown."""
from __future__ import annotations

import difflib
from typing import Iterable


class UsageError(ValueError):
    """Bad input from a user: an unknown name, key or value. The message says what is valid."""


def unknown_name_error(kind: str, name: str, known: Iterable[str], context: str = "") -> UsageError:
    """An error for an unknown `name` that suggests the closest known names and lists them all."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UsageError(f"unknown {kind} {name!r}{context}{hint} (valid: {', '.join(known)})")


def one_line(err: BaseException) -> str:
    """An exception as the one line a failed run or import is reported by: "ValueError: the message"."""
    return f"{type(err).__name__}: {' '.join(str(err).split()) or '(no message)'}"


class RunFailed(RuntimeError):
    """A run that started and failed (its loss diverged, the learner raised). The failed run is
    recorded; `traceback_path` is the file holding its traceback."""

    def __init__(self, message: str, traceback_path) -> None:
        super().__init__(message)
        self.traceback_path = traceback_path
