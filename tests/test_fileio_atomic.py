"""Durable atomic writes: a file appears whole or not at all, is on disk (fsync of the file and of its directory)
before it replaces the old one, and the temporary files an interrupted write leaves are removed on the next start.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lxmert import fileio
from lxmert.fileio import (
    atomic_directory,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_temp_files,
)


@pytest.fixture
def synced(monkeypatch) -> list[tuple[str, int]]:
    """Every fsync and replace, in order: ("fsync", inode) or ("replace", inode of what was moved)."""
    events: list[tuple[str, int]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", os.stat(src).st_ino))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_a_write_syncs_the_file_then_renames_it_then_syncs_the_directory(tmp_path: Path, synced) -> None:
    path = tmp_path / "result.json"
    atomic_write_text(path, '{"a": 1}\n')
    file_inode, directory_inode = path.stat().st_ino, tmp_path.stat().st_ino
    assert synced == [("fsync", file_inode), ("replace", file_inode), ("fsync", directory_inode)]
    assert json.loads(path.read_text()) == {"a": 1}
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_torch_and_numpy_write_through_a_callback(tmp_path: Path, synced) -> None:
    atomic_write(tmp_path / "w.pt", lambda f: torch.save({"w": torch.arange(3)}, f))
    atomic_write(tmp_path / "a.npy", lambda f: np.save(f, np.arange(4)))
    assert torch.equal(torch.load(tmp_path / "w.pt", weights_only=True)["w"], torch.arange(3))
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2, 3]
    assert [kind for kind, _ in synced] == ["fsync", "replace", "fsync"] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "w.pt"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    atomic_write_bytes(path, b"old contents")

    def half_then_fail(f: io.BufferedWriter) -> None:
        f.write(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, lambda f: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_directory_is_synced_file_by_file_before_it_is_renamed(tmp_path: Path, synced) -> None:
    target = tmp_path / "final"
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("{}")  # a plain write inside: the directory commit syncs it
        (tmp / "sub").mkdir()
        (tmp / "sub" / "vocab.txt").write_text("a\n")
    inodes = {name: (target / name).stat().st_ino for name in ("config.json", "sub/vocab.txt", "sub", ".")}
    first_replace = synced.index(("replace", inodes["."]))
    synced_before = {inode for kind, inode in synced[:first_replace] if kind == "fsync"}
    assert {inodes["config.json"], inodes["sub/vocab.txt"], inodes["sub"], inodes["."]} <= synced_before
    assert synced[-1] == ("fsync", tmp_path.stat().st_ino)


def test_stale_temporaries_of_ours_are_removed_and_nothing_else(tmp_path: Path) -> None:
    # What a kill -9 in the middle of each of our writes leaves: a file and a directory named by mkstemp/mkdtemp.
    fd, stale_file = tempfile.mkstemp(dir=tmp_path, prefix=".last.pt.", suffix=".tmp")
    os.close(fd)
    stale_dir = tempfile.mkdtemp(dir=tmp_path, prefix=".final.", suffix=".tmp")
    Path(stale_dir, "model.safetensors").write_bytes(b"partial")
    kept = ["last.pt", "notes.tmp", ".last.pt.tmp", ".hidden", ".final.abc.old", ".x.abcdefgh.tmp.keep"]
    for name in kept:
        (tmp_path / name).write_text("mine")
    (tmp_path / "sub").mkdir()
    nested = tmp_path / "sub" / ".last.pt.abcd1234.tmp"
    nested.write_text("another directory's")

    removed = remove_stale_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == sorted([Path(stale_file).name, Path(stale_dir).name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "sub"])
    assert nested.exists(), "only the directory given is cleaned"
    assert remove_stale_temp_files(tmp_path / "missing") == []


def _leftover(parent: Path, target: str, suffix: str, files: dict[str, str]) -> Path:
    """A directory as a killed atomic_directory(parent / target) leaves it (named by mkdtemp), holding files."""
    directory = Path(tempfile.mkdtemp(dir=parent, prefix=f".{target}.", suffix=suffix))
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory


def test_a_directory_write_first_removes_what_a_killed_write_of_that_directory_left(tmp_path: Path) -> None:
    # A world or a checkpoint written beside others (runs/world-a, runs/world-b): a killed run's half-written
    # temporary, and the previous version that a kill during its deletion left, are the target's own leftovers;
    # the temporary of another target may be a write in progress and stays.
    target = tmp_path / "world"
    target.mkdir()
    (target / "world.json").write_text("old")
    half_written = _leftover(tmp_path, "world", ".tmp", {"images/0.png": "part"})
    half_deleted = _leftover(tmp_path, "world", ".old", {"previous/world.json": "older"})
    in_progress = _leftover(tmp_path, "world-b", ".tmp", {"images/0.png": "theirs"})
    with atomic_directory(target) as tmp:
        (tmp / "world.json").write_text("new")
    assert (target / "world.json").read_text() == "new"
    assert not half_written.exists() and not half_deleted.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["world", in_progress.name])


def test_a_kill_between_the_two_renames_of_a_directory_write_leaves_the_old_directory(tmp_path: Path) -> None:
    # atomic_directory moves the old directory aside, then renames the new one in: a kill between the two leaves
    # neither at the target. The next start puts the old one back (the new one may be any interrupted write).
    target = tmp_path / "best"
    moved_aside = _leftover(tmp_path, "best", ".old", {"previous/model.safetensors": "old weights"})
    new = _leftover(tmp_path, "best", ".tmp", {"model.safetensors": "new weights"})
    removed = remove_stale_temp_files(tmp_path)
    assert (target / "model.safetensors").read_text() == "old weights"
    assert sorted(p.name for p in removed) == sorted([moved_aside.name, new.name])
    assert [p.name for p in tmp_path.iterdir()] == ["best"]
    assert fileio.is_temp_name(moved_aside.name) and fileio.is_temp_name(new.name)


def test_the_temporary_name_pattern_matches_what_the_writer_creates(tmp_path: Path, monkeypatch) -> None:
    seen: list[str] = []
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        seen.append(Path(name).name)
        return fd, name

    monkeypatch.setattr(fileio.tempfile, "mkstemp", mkstemp)
    atomic_write_bytes(tmp_path / "checkpoint.pt", b"x")
    assert len(seen) == 1 and fileio.is_temp_name(seen[0])


def test_a_link_shares_the_source_and_replaces_the_target_whole(tmp_path: Path, synced) -> None:
    source, target = tmp_path / "blob", tmp_path / "out" / "pytorch_model.bin"
    source.write_bytes(b"weights")
    target.parent.mkdir()
    target.write_bytes(b"an older, different file")
    fileio.atomic_link_or_copy(source, target)
    assert os.path.samefile(source, target) and target.read_bytes() == b"weights"
    assert [kind for kind, _ in synced][-2:] == ["replace", "fsync"]  # renamed in, then the directory synced
    assert sorted(p.name for p in target.parent.iterdir()) == ["pytorch_model.bin"]


def test_where_no_link_can_be_made_the_file_is_copied_atomically(tmp_path: Path, monkeypatch) -> None:
    source, target = tmp_path / "blob", tmp_path / "copy.bin"
    source.write_bytes(b"x" * 3_000_000)

    def cross_device(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(fileio.os, "link", cross_device)
    fileio.atomic_link_or_copy(source, target)
    assert not os.path.samefile(source, target) and target.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "copy.bin"]
