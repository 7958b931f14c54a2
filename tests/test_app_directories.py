"""The app's scans of its configured directories: nothing outside them is followed, a bad entry costs only itself.

Unreadable entries are tested two ways: with real permission bits (as another user: a subprocess that drops root
privileges, since root reads everything), and, for the whole app in-process, by making the file system calls on one
directory fail as they do for an unreadable ``lost+found``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from app_harness import assert_clean, assert_no_exception, open_page, start_app
from app_toy_assets import build_assets

from app import loading
from app.directories import MAX_ENTRIES
from app.state import image_files, read_sample
from lxmert.checkpoints import CONFIG_FILE, WEIGHTS_FILE
from lxmert.tokenization import VOCAB_FILE

NOBODY = 65534


@pytest.fixture(autouse=True)
def fresh_scans():
    """Scans are cached for a minute; each test scans the directory as it has just made it."""
    loading.find_checkpoints.clear()
    yield
    loading.find_checkpoints.clear()


def fake_checkpoint(directory: Path) -> Path:
    """The three files the scan looks for (their content is never read by it)."""
    directory.mkdir(parents=True)
    for name in (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE):
        (directory / name).write_text("{}")
    return directory


def layout(tmp_path: Path) -> tuple[Path, Path]:
    """``checkpoints/runs/a/best`` and, outside the checkpoints directory, ``elsewhere/secret``."""
    checkpoints = tmp_path / "checkpoints"
    fake_checkpoint(checkpoints / "runs" / "a" / "best")
    elsewhere = fake_checkpoint(tmp_path / "elsewhere" / "secret")
    return checkpoints, elsewhere


def test_a_symlink_out_of_the_checkpoints_directory_is_neither_followed_nor_listed(tmp_path):
    checkpoints, elsewhere = layout(tmp_path)
    (checkpoints / "stolen").symlink_to(elsewhere, target_is_directory=True)
    (checkpoints / "runs" / "up").symlink_to(tmp_path, target_is_directory=True)
    scan = loading.find_checkpoints(str(checkpoints))
    assert scan.found == {"runs/a/best": str(checkpoints / "runs" / "a" / "best")}
    reasons = {Path(s.path).name: s.reason for s in scan.skipped}
    assert reasons.keys() == {"stolen", "up"}
    assert all(r.startswith(f"leads outside {checkpoints}") for r in reasons.values())


def test_a_checkpoint_whose_file_leads_outside_is_not_listed(tmp_path):
    checkpoints, elsewhere = layout(tmp_path)
    linked = checkpoints / "runs" / "b" / "best"
    fake_checkpoint(linked)
    (linked / WEIGHTS_FILE).unlink()
    (linked / WEIGHTS_FILE).symlink_to(elsewhere / WEIGHTS_FILE)
    scan = loading.find_checkpoints(str(checkpoints))
    assert list(scan.found) == ["runs/a/best"]
    assert any(s.path == str(linked / WEIGHTS_FILE) and "leads outside" in s.reason for s in scan.skipped)


def test_a_symlink_that_stays_inside_still_works(tmp_path):
    checkpoints, _ = layout(tmp_path)
    (checkpoints / "latest").symlink_to(Path("runs") / "a" / "best", target_is_directory=True)
    scan = loading.find_checkpoints(str(checkpoints))
    # One checkpoint, one name: the shallowest way to it (then the first by name).
    assert scan.found == {"latest": str(checkpoints / "runs" / "a" / "best")}
    assert scan.skipped == ()


def test_a_symlink_to_the_file_system_root_is_skipped_without_touching_anything_outside(
    tmp_path, monkeypatch
):
    checkpoints, _ = layout(tmp_path)
    (checkpoints / "root").symlink_to("/", target_is_directory=True)
    touched = record_file_system_calls(monkeypatch)
    scan = loading.find_checkpoints(str(checkpoints))
    assert list(scan.found) == ["runs/a/best"]
    assert [(Path(s.path).name, s.reason) for s in scan.skipped] == [
        ("root", f"leads outside {checkpoints} (to /)")
    ]
    outside = [p for p in touched if not Path(os.path.realpath(p)).is_relative_to(checkpoints)]
    assert not outside, f"the scan looked outside the checkpoints directory: {sorted(set(outside))[:5]}"


def test_symlink_loops_end_and_are_named(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    fake_checkpoint(checkpoints / "best")
    (checkpoints / "self").symlink_to(checkpoints / "self")
    (checkpoints / "ping").symlink_to(checkpoints / "pong")
    (checkpoints / "pong").symlink_to(checkpoints / "ping")
    (checkpoints / "sub").mkdir()
    (checkpoints / "sub" / "back").symlink_to(checkpoints, target_is_directory=True)  # inside, but a cycle
    scan = loading.find_checkpoints(str(checkpoints))
    assert scan.found == {"best": str(checkpoints / "best")}  # once, not once per lap of the cycle
    assert sorted((Path(s.path).name, s.reason) for s in scan.skipped) == [
        ("ping", "symlink loop"),
        ("pong", "symlink loop"),
        ("self", "symlink loop"),
    ]


def test_the_scan_visits_a_bounded_number_of_entries_and_says_so(tmp_path, monkeypatch):
    checkpoints, _ = layout(tmp_path)
    crowded = checkpoints / "crowded"
    crowded.mkdir()
    for i in range(MAX_ENTRIES + 500):
        (crowded / f"{i:05d}.log").touch()
    touched = record_file_system_calls(monkeypatch)
    scan = loading.find_checkpoints(str(checkpoints))
    assert scan.truncated
    assert touched.entries <= MAX_ENTRIES + 1  # the one past the budget tells that there were more


def test_the_scan_is_bounded_in_depth(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    fake_checkpoint(checkpoints / "1" / "2" / "3")
    fake_checkpoint(checkpoints / "1" / "2" / "3" / "4")
    assert list(loading.find_checkpoints(str(checkpoints), depth=3).found) == ["1/2/3"]


SCAN_AS_NOBODY = """
import json, os, sys
from app import loading  # every import before dropping privileges: the interpreter's own files may be root's
try:
    os.setgid({uid}); os.setuid({uid})
except PermissionError:
    sys.exit(77)
scan = loading.find_checkpoints(sys.argv[1])
print(json.dumps({{"found": scan.found, "skipped": [[s.path, s.reason] for s in scan.skipped]}}))
"""


def scan_as_another_user(root: Path) -> dict:
    """The scan run by a user who may not read what only its owner may (a subprocess dropping root, if root)."""
    if os.geteuid() != 0:
        scan = loading.find_checkpoints(str(root))
        return {"found": scan.found, "skipped": [[s.path, s.reason] for s in scan.skipped]}
    result = subprocess.run(
        [sys.executable, "-c", SCAN_AS_NOBODY.format(uid=NOBODY), str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    if result.returncode == 77:
        pytest.skip("this root may not drop its privileges (no CAP_SETUID)")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_unreadable_entry_is_skipped_and_named_once():
    # Permission bits need a directory every user may enter: not pytest's tmp_path, which is root's alone.
    base = Path(tempfile.mkdtemp(prefix="lxmert-dirs-"))
    if any(not parent.stat().st_mode & 0o001 for parent in base.parents):
        shutil.rmtree(base)
        pytest.skip(f"other users cannot reach {base.parent}")
    try:
        checkpoints = base / "checkpoints"
        fake_checkpoint(checkpoints / "runs" / "a" / "best")
        fake_checkpoint(checkpoints / "lost+found" / "old")
        for path in (base, *(p for p in checkpoints.rglob("*")), checkpoints):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (checkpoints / "lost+found").chmod(0o700)
        scan = scan_as_another_user(checkpoints)
    finally:
        (checkpoints / "lost+found").chmod(0o755)
        shutil.rmtree(base)
    assert scan["found"] == {"runs/a/best": str(checkpoints / "runs" / "a" / "best")}
    assert scan["skipped"] == [[str(checkpoints / "lost+found"), "permission denied"]]


def test_gallery_and_sidecars_do_not_lead_outside_the_samples(tmp_path):
    samples = tmp_path / "samples"
    (samples / "scenes").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.png").write_bytes(b"not yours")
    (outside / "private.json").write_text(json.dumps({"questions": ["a secret line"]}))
    (samples / "mine.png").write_bytes(b"png")
    (samples / "theirs.png").symlink_to(outside / "private.png")
    (samples / "mine.json").symlink_to(outside / "private.json")
    (samples / "scenes" / "shared.png").symlink_to(samples / "mine.png")
    assert [p.name for p in image_files(samples)] == ["mine.png"]
    assert [p.name for p in image_files(samples / "scenes", samples)] == ["shared.png"]
    assert read_sample(str(samples / "mine.png")).suggestions == ()


class Touched(list):
    """Paths the file system was asked about, and how many directory entries it handed back."""

    entries = 0


def record_file_system_calls(monkeypatch) -> Touched:
    touched = Touched()

    def listing(original):
        def wrapper(path=".", *args, **kwargs):
            touched.append(os.fspath(path))
            result = original(path, *args, **kwargs)
            if isinstance(result, list):
                touched.entries += len(result)
                return result
            return CountingIterator(result, touched)

        return wrapper

    def stat(original):
        def wrapper(path, *args, **kwargs):
            if isinstance(path, (str, bytes, os.PathLike)):
                touched.append(os.fsdecode(path))
            return original(path, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(os, "scandir", listing(os.scandir))
    monkeypatch.setattr(os, "listdir", listing(os.listdir))
    monkeypatch.setattr(os, "stat", stat(os.stat))
    return touched


class CountingIterator:
    """``os.scandir``'s iterator, counting the entries it yields."""

    def __init__(self, iterator, touched: Touched):
        self.iterator, self.touched = iterator, touched

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.iterator.close()

    def __iter__(self):
        for entry in self.iterator:
            self.touched.entries += 1
            yield entry


def deny(monkeypatch, directory: Path) -> None:
    """Make ``directory`` behave as one only its (other) owner may read: listing it or reaching into it fails
    with EACCES, while the directory itself can still be seen in its parent."""
    guarded = os.fspath(directory)

    def refused(path) -> bool:
        path = os.fsdecode(os.fspath(path)) if isinstance(path, (str, bytes, os.PathLike)) else ""
        return path.startswith(guarded + os.sep)

    def guard(original, *, listing: bool):
        def wrapper(path=".", *args, **kwargs):
            if refused(path) or (listing and os.fsdecode(os.fspath(path)) == guarded):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return original(path, *args, **kwargs)

        return wrapper

    for name, listing in (("scandir", True), ("listdir", True), ("stat", False), ("lstat", False)):
        monkeypatch.setattr(os, name, guard(getattr(os, name), listing=listing))


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    return build_assets(tmp_path_factory.mktemp("assets"))


def test_the_app_starts_normally_beside_bad_entries_and_names_them_once(assets, tmp_path, monkeypatch):
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(assets / "runs" / "a", checkpoints / "a")
    (checkpoints / "lost+found").mkdir()
    (checkpoints / "root").symlink_to("/", target_is_directory=True)
    (checkpoints / "self").symlink_to(checkpoints / "self")
    (checkpoints / "b").symlink_to(assets / "runs" / "b", target_is_directory=True)  # outside the directory
    deny(monkeypatch, checkpoints / "lost+found")
    app = start_app(assets, monkeypatch, checkpoints=checkpoints)
    for page in ("ask", "compare"):
        assert_clean(open_page(app, page))
        assert app.get("plotly_chart")
        assert app.sidebar.selectbox(key="checkpoint").options == [
            "default/model",
            "default/pretrained",
            "a/best",
        ]
        notes = [w.value for w in app.sidebar.warning]
        assert len(notes) == 1, notes
        for name, reason in (
            ("lost+found", "permission denied"),
            ("root", "leads outside"),
            ("self", "symlink loop"),
            ("b", "leads outside"),
        ):
            assert f"`{name}` ({reason}" in notes[0], (name, notes[0])


def test_the_app_says_when_its_search_stopped_early(assets, tmp_path, monkeypatch):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for i in range(MAX_ENTRIES + 1):
        (checkpoints / f"{i:05d}.log").touch()
    app = start_app(assets, monkeypatch, checkpoints=checkpoints)
    assert_no_exception(app)
    assert [w.value for w in app.sidebar.warning] == [
        f"The search of {checkpoints} stopped after {MAX_ENTRIES} entries: checkpoints beyond them are not listed."
    ]


def test_a_detector_leading_outside_the_assets_is_refused(assets, tmp_path, monkeypatch):
    copy = tmp_path / "assets"
    shutil.copytree(assets, copy, ignore=shutil.ignore_patterns("detector"))
    (copy / "default" / "detector").symlink_to(assets / "default" / "detector", target_is_directory=True)
    app = start_app(copy, monkeypatch)
    assert_no_exception(app)
    assert any("detector leads outside" in e.value for e in app.error), [e.value for e in app.error]
