"""Bounded scans of the app's configured directories that never lead outside them.

Every entry is resolved before it is used, and kept only when it lies inside the directory the scan started from:
a symlink to ``/``, to a home directory or to another user's runs is skipped, not followed. An entry that cannot be
read (an unreadable ``lost+found``, a broken symlink, a symlink loop) is skipped too, so one bad entry costs only
itself. Each skipped entry is named with its reason, for the app to list once. The number of entries a scan visits is
capped, so a directory of 100k files costs a bounded time; a scan that reached the cap says so.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

# Entries one scan visits at most (a checkpoints directory holds a few runs of a handful of files each).
MAX_ENTRIES = 5000


@dataclass(frozen=True)
class Skipped:
    """An entry a scan did not use, and why.

    Attributes:
        path: where it was listed (its own path, not a symlink's target).
        reason: why it was skipped ("leads outside ...", "permission denied", "symlink loop", ...).
    """

    path: str
    reason: str


@dataclass(frozen=True)
class Entry:
    """An entry of a scanned directory, resolved and inside the root.

    Attributes:
        name: its name in the directory it was listed in (a symlink's own name, not its target's).
        path: its resolved path.
        is_dir: whether it is a directory (after following a symlink).
    """

    name: str
    path: Path
    is_dir: bool


@dataclass
class Listing:
    """The usable entries of one directory; ``complete`` when none was skipped and the budget did not run out."""

    entries: list[Entry]
    complete: bool


@dataclass
class Scanner:
    """Lists directories inside ``root``, counting entries against one budget and collecting what it skipped.

    Attributes:
        root: the resolved directory nothing may lead outside of.
        max_entries: the budget of entries over every listing of this scan.
        visited: entries listed so far.
        skipped: every entry skipped so far, with its reason.
        truncated: whether the budget ran out (later listings are then empty).
    """

    root: Path
    max_entries: int = MAX_ENTRIES
    visited: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    truncated: bool = False

    def listing(self, directory: Path) -> Listing:
        """The entries of ``directory`` (a resolved path inside the root) that are readable and stay inside the root,
        sorted by name."""
        if self.truncated:
            return Listing([], False)
        entries: list[Entry] = []
        complete = True
        try:
            with os.scandir(directory) as iterator:
                for entry in iterator:
                    if self.visited >= self.max_entries:
                        self.truncated = True
                        return Listing(sorted(entries, key=lambda e: e.name), False)
                    self.visited += 1
                    usable = self._entry(entry)
                    if usable is None:
                        complete = False
                    else:
                        entries.append(usable)
        except OSError as err:
            self._skip(directory, _reason(err))
            complete = False
        return Listing(sorted(entries, key=lambda e: e.name), complete)

    def _entry(self, entry: os.DirEntry) -> Entry | None:
        path = Path(entry.path)
        try:
            if not entry.is_symlink():  # listed in a directory inside the root, so inside too
                return Entry(entry.name, path, entry.is_dir())
            target = path.resolve(strict=True)
            if not target.is_relative_to(self.root):
                self._skip(path, f"leads outside {self.root} (to {target})")
                return None
            return Entry(entry.name, target, target.is_dir())
        except RuntimeError:  # Python < 3.13 reports a symlink loop this way
            self._skip(path, "symlink loop")
        except OSError as err:
            self._skip(path, _reason(err))
        return None

    def _skip(self, path: Path, reason: str) -> None:
        self.skipped.append(Skipped(str(path), reason))


def _reason(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(err, FileNotFoundError):
        return "broken symlink or vanished"
    return err.strerror.lower() if err.strerror else str(err)


def scanner(root: str | Path, max_entries: int = MAX_ENTRIES) -> Scanner | None:
    """A scanner confined to ``root`` resolved, or None when ``root`` is not a readable directory."""
    try:
        resolved = Path(root).resolve(strict=True)
        return Scanner(resolved, max_entries) if resolved.is_dir() else None
    except (OSError, RuntimeError):
        return None


def inside(path: str | Path, root: str | Path) -> bool:
    """Whether ``path``, with every symlink resolved, exists and lies inside ``root`` (resolved too)."""
    try:
        return Path(path).resolve(strict=True).is_relative_to(Path(root).resolve(strict=True))
    except (OSError, RuntimeError):
        return False


def problems(directory: str | Path, root: str | Path, depth: int = 1) -> list[Skipped]:
    """What keeps ``directory`` from being read safely: it, or an entry down to ``depth`` levels below it, is
    unreadable or leads outside ``root``. Empty when there is nothing wrong."""
    scan = scanner(root)
    target = Path(directory)
    try:
        resolved = target.resolve(strict=True)
    except (OSError, RuntimeError) as err:
        return [Skipped(str(target), _reason(err) if isinstance(err, OSError) else "symlink loop")]
    if scan is None or not resolved.is_relative_to(scan.root):
        return [Skipped(str(target), f"leads outside {root} (to {resolved})")]
    frontier = [resolved]
    for _ in range(depth):
        frontier = [e.path for d in frontier for e in scan.listing(d).entries if e.is_dir]
    return scan.skipped


def describe_skipped(skipped: list[Skipped], bases: list[Path], limit: int = 8) -> str:
    """One message naming the skipped entries (the first ``limit`` of them, relative to the first of ``bases`` that
    holds them) and why each was skipped."""

    def shown(path: str) -> str:
        for base in bases:
            if Path(path).is_relative_to(base):
                return str(Path(path).relative_to(base))
        return path

    listed = "; ".join(f"`{shown(s.path)}` ({s.reason})" for s in skipped[:limit])
    more = f"; and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return f"Skipped {len(skipped)} unusable {'entry' if len(skipped) == 1 else 'entries'}: {listed}{more}."


__all__ = [
    "MAX_ENTRIES",
    "Entry",
    "Listing",
    "Scanner",
    "Skipped",
    "describe_skipped",
    "inside",
    "problems",
    "scanner",
]
