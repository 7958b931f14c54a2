"""The error a refused or unreadable file raises, and how a command line reports it.

Loaders raise :class:`UnreadableFileError` for a file they will not use: truncated, corrupt, of the wrong kind, or
one that would run code to unpickle. Command-line entry points run their ``main`` through :func:`run_cli`, which
turns that error into one line on stderr and a non-zero exit; any other error keeps its traceback (a bug).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
EXIT_UNREADABLE_FILE = 2


class UnreadableFileError(ValueError):
    """A file that is refused or cannot be read; the message names the file and says why.

    Attributes:
        path: the file.
        reason: why it is refused, without the path.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        # A reason passed on from a reader that named the file already is not prefixed twice.
        super().__init__(reason if reason.startswith(str(self.path)) else f"{self.path}: {reason}")


def run_cli(main: Callable[..., T], *args: Any) -> T:
    """Call ``main(*args)``; an :class:`UnreadableFileError` exits with one line on stderr, without a traceback."""
    try:
        return main(*args)
    except UnreadableFileError as err:
        message = " ".join(str(err).split())  # one line, whatever the reason quotes
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_UNREADABLE_FILE) from None


__all__ = ["EXIT_UNREADABLE_FILE", "UnreadableFileError", "run_cli"]
