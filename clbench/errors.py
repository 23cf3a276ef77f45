"""The one error type the CLI turns into a one-line message and exit code 2."""
from __future__ import annotations


class UsageError(ValueError):
    """Bad input from a user: an unknown name, key or value. The message says what is valid."""
