"""Atomic writes (a file or a directory appears whole or not at all), and a lenient read of the JSON records beside
them."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide shipped files from other users
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json_record(path: str | Path) -> dict[str, Any]:
    """A JSON object file's contents, or an empty dict when it is absent, unreadable or not an object (a record
    that only informs)."""
    try:
        return read_json_object(path)
    except (OSError, ValueError):
        return {}


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's contents.

    Raises:
        ValueError: naming the file, when its bytes are not UTF-8 (a binary file, another encoding).
        OSError: when it cannot be read (absent, a directory, no permission); the message names it.
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (at byte {err.start})") from err


def read_json(path: str | Path) -> Any:
    """A UTF-8 JSON file's value.

    Raises:
        ValueError: naming the file, when it is not UTF-8, not JSON, or nested too deeply to parse.
        OSError: when it cannot be read.
    """
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    except RecursionError as err:  # "[[[[..." nested thousands deep
        raise ValueError(f"{path} is not valid JSON: nested too deeply") from err


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A UTF-8 JSON file that must hold an object (a config, a checkpoint's notes).

    Raises:
        ValueError: naming the file, when it is not UTF-8, not JSON, or holds something other than an object.
        OSError: when it cannot be read.
    """
    value = read_json(path)
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got a {type(value).__name__}")
    return value


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to a temporary file beside ``path``, then rename it into place."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; on success it replaces ``path``.

    An existing ``path`` is moved aside first and deleted only once the new one is in place, so a failure at
    any point leaves either the old directory or the new one, never a mix. On error the temporary directory is
    removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        if not path.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
            raise NotADirectoryError(f"{path} exists and is not a directory")
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
        os.replace(path, old / "previous")
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old / "previous", path)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_json",
    "read_json_object",
    "read_json_record",
    "read_text",
]
