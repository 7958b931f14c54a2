"""The errors a user's input raises, and how a command line reports them.

Loaders raise :class:`UnreadableFileError` for a file they will not use: truncated, corrupt, of the wrong kind, or
one that would run code to unpickle; the detector's image loader raises its ``ImageError``, also an
:class:`InputError`. Command-line entry points run their ``main`` through :func:`run_cli`, which turns an
:class:`InputError`, or a path that does not exist, into one line on stderr and a non-zero exit; any other error
keeps its traceback (a bug).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
EXIT_UNREADABLE_FILE = 2


class InputError(ValueError):
    """An input the user gave that cannot be used; the message names it and says why."""


class UnreadableFileError(InputError):
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
    """Call ``main(*args)``; an :class:`InputError` or a missing path exits with one line on stderr, without a
    traceback."""
    try:
        return main(*args)
    except (InputError, FileNotFoundError) as err:
        message = " ".join(str(err).split())  # one line, whatever the reason quotes
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_UNREADABLE_FILE) from None


__all__ = ["EXIT_UNREADABLE_FILE", "InputError", "UnreadableFileError", "run_cli"]
