"""Durable atomic writes (a file or a directory appears whole or not at all, and is on disk once it has appeared),
the clean-up of what an interrupted write leaves, and the reads of text and JSON: strict ones that name the file in
every error, and a lenient one for records that only inform.

Every write goes to a temporary ``.<name>.<8 random characters>.tmp`` beside its target, is flushed and fsynced,
renamed over the target with ``os.replace`` and made permanent by an fsync of the directory: after a crash or a
kill -9 the target holds the old contents or the new, never a mix, and a temporary may be left behind. Whatever
starts writing into a directory again calls :func:`remove_stale_temp_files` on it, and a directory write first
clears what a killed write of the same directory left beside it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"
OLD_SUFFIX = ".old"  # a directory's previous version, moved aside by atomic_directory until the new one is in
# mkstemp and mkdtemp name a temporary prefix + 8 characters of [a-z0-9_] + suffix; group 1 is the target's name.
_TEMP_NAME = re.compile(rf"\.(.+)\.[a-z0-9_]{{8}}(?:{re.escape(TEMP_SUFFIX)}|{re.escape(OLD_SUFFIX)})")


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of this module's temporaries (``.<target>.<8 random characters>.tmp``, or ``.old``
    for a directory's previous version)."""
    return _TEMP_NAME.fullmatch(name) is not None


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory below ``root`` (children first), and ``root`` itself."""
    for directory, _, files in os.walk(root, topdown=False):
        for name in files:
            _fsync_path(Path(directory, name))
        _fsync_path(Path(directory))


@contextmanager
def atomic_file(path: str | Path) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` once the block ends without an error and the data is on disk.

    If the block raises (or the process is interrupted), ``path`` keeps its old contents and the temporary is
    removed (or, after a kill, left for :func:`remove_stale_temp_files`).
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=TEMP_SUFFIX)
    tmp = Path(name)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide shipped files from other users
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(path.parent)  # makes the rename itself survive a crash


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write`` on a binary file that replaces ``path`` atomically and durably (see :func:`atomic_file`).

    ``write`` is anything that writes to a file object: ``lambda f: torch.save(obj, f)``,
    ``lambda f: np.save(f, array)``, ``lambda f: image.save(f, format="PNG")``.
    """
    with atomic_file(path) as f:
        write(f)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably (see :func:`atomic_write`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_link_or_copy(source: str | Path, path: str | Path) -> None:
    """Make ``path`` a hard link to ``source``, or a copy of it where the file system cannot link (another device,
    no link support); either way ``path`` is replaced atomically and durably (see :func:`atomic_file`).

    A link costs no space or time: meant for files that are never modified in place, such as the blobs of a
    download cache.
    """
    source, path = Path(source), Path(path)
    tmp = path.parent / f"{_temp_prefix(path)}{secrets.token_hex(4)}{TEMP_SUFFIX}"  # an is_temp_name
    try:
        os.link(source, tmp)
    except OSError:
        with open(source, "rb") as src:
            atomic_write(path, lambda f: shutil.copyfileobj(src, f, 1 << 20))
        return
    try:
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(path.parent)


def durable_append(path: str | Path, data: bytes) -> None:
    """Append ``data`` to ``path`` and return once it is on disk (for files whose committed length another,
    atomically written, record keeps: the feature store's columns)."""
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; on success it is synced to disk and replaces ``path``.

    What is written inside needs no atomic writes of its own: every file in it is fsynced before the rename.
    An existing ``path`` is moved aside first and deleted only once the new one is in place, so a failure at
    any point leaves either the old directory or the new one, never a mix (a kill between the two renames leaves
    the old one moved aside, which :func:`remove_stale_temp_files` puts back). On error the temporary directory
    is removed and ``path`` is untouched. It first removes what killed writes of ``path`` left beside it, so one
    directory takes one writer at a time.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A killed write of this directory (a world, a checkpoint) may have left a large temporary beside it, in a
    # parent that no run start cleans: runs/, where other targets' writes may be in progress.
    remove_stale_temp_files(path.parent, target=path.name)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path), suffix=TEMP_SUFFIX))
    try:
        yield tmp
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        if not path.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
            raise NotADirectoryError(f"{path} exists and is not a directory")
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path), suffix=OLD_SUFFIX))
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
    _fsync_path(path.parent)


def remove_stale_temp_files(directory: str | Path, target: str | None = None) -> list[Path]:
    """Delete the temporaries that interrupted writes left in ``directory`` (not below it); returns them.

    Only names of this module's pattern (:func:`is_temp_name`) are touched, and with ``target`` only those of
    writes to ``directory / target``. A directory's previous version that a kill left moved aside with nothing
    in its place is put back first, so the target holds the old version. Call it where a run starts writing into
    ``directory`` (or ``target``) again, never while another writer may be using it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    leftovers = {}  # leftover -> the target it was written for
    for entry in sorted(directory.iterdir()):
        match = _TEMP_NAME.fullmatch(entry.name)
        if match and target in (None, match.group(1)):
            leftovers[entry] = directory / match.group(1)
    for entry, original in leftovers.items():  # killed between atomic_directory's two renames
        previous = entry / "previous"
        if entry.name.endswith(OLD_SUFFIX) and previous.is_dir() and not os.path.lexists(original):
            os.replace(previous, original)
            _fsync_path(directory)
    removed = []
    for entry in leftovers:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


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


def read_json_lines(path: str | Path) -> list[dict[str, Any]]:
    """A UTF-8 JSON-lines file that must hold one object per line (a training run's log); blank lines are skipped.

    Raises:
        ValueError: naming the file and the line, when one is not JSON or not an object (or the file not UTF-8).
        OSError: when it cannot be read.
    """
    records = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} line {number} is not valid JSON: {err}") from err
        except RecursionError as err:
            raise ValueError(f"{path} line {number} is not valid JSON: nested too deeply") from err
        if not isinstance(value, dict):
            raise ValueError(f"{path} line {number} must hold a JSON object, got a {type(value).__name__}")
        records.append(value)
    return records


def path_inside(root: str | Path, value: Any) -> Path:
    """``root / value`` resolved, where ``value`` is a manifest's relative path that must stay inside ``root``
    once every symlink is resolved (a manifest is untrusted input and may not point anywhere else).

    Raises:
        ValueError: ``value`` is not a non-empty string, is absolute, or leads outside ``root`` (the message says
            which, and where it leads).
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty relative path, got {value!r}")
    if Path(value).is_absolute():
        raise ValueError(f"must be relative to {root}, got {value!r}")
    base = Path(root).resolve()
    resolved = (base / value).resolve()
    if not resolved.is_relative_to(base):
        raise ValueError(f"leads outside {base} (to {resolved})")
    return resolved


__all__ = [
    "atomic_directory",
    "atomic_file",
    "atomic_link_or_copy",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "durable_append",
    "is_temp_name",
    "path_inside",
    "read_json",
    "read_json_lines",
    "read_json_object",
    "read_json_record",
    "read_text",
    "remove_stale_temp_files",
]
