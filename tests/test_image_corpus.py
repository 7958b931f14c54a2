"""Every kind of bad or odd image (tests/image_corpus.py) through every entry point: the loader, the shipped
detector, ``training.extract`` on a mixed folder, and the app's upload. Each gives its expected result or a clean
:class:`ImageError`; each stays under the memory budget, measured in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from app_harness import open_page, start_app
from app_toy_assets import build_assets
from image_corpus import Case, build_cases, write_cases
from PIL import Image

from lxmert.data.store import FeatureStore
from lxmert.detection import Detector, ImageError
from lxmert.detection.files import read_detector_config
from lxmert.detection.images import DEFAULT_MAX_BYTES, load_detector_image
from training.detection.extraction import ExtractConfig, extract, list_images

REPO = Path(__file__).resolve().parents[1]
SHIPPED_DETECTOR = REPO / "assets" / "default" / "detector"


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return build_cases()


@pytest.fixture(scope="module")
def corpus(cases: list[Case], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_cases(cases, tmp_path_factory.mktemp("corpus"))


def _outcome(call) -> tuple[int, int] | type[ImageError]:
    """What a call gives: the (width, height) it reports, or the class of the ImageError it raises."""
    try:
        return call()
    except ImageError as err:
        return type(err)


def test_the_corpus_has_at_least_40_kinds_readable_and_not(cases: list[Case]) -> None:
    assert len({case.kind for case in cases}) == len(cases) >= 40
    assert len({case.file_name for case in cases}) == len(cases)
    readable = sum(case.readable for case in cases)
    assert readable >= 20 and len(cases) - readable >= 15


def test_the_loader_gives_an_upright_rgb_image_or_a_clean_error(
    cases: list[Case], corpus: dict[str, Path]
) -> None:
    config = read_detector_config(SHIPPED_DETECTOR)
    for case in cases:
        got = _outcome(lambda case=case: load_detector_image(corpus[case.kind], config))
        if not case.readable:
            assert got is case.expected, case.kind
            continue
        assert not isinstance(got, type), f"{case.kind}: {got}"
        assert got.original_size == case.expected, case.kind
        assert got.image.mode == "RGB" and max(got.image.size) <= config.max_image_side, case.kind
        assert not got.image.info, f"{case.kind}: metadata kept"


def test_odd_modes_load_with_the_right_pixels(corpus: dict[str, Path]) -> None:
    """Spot checks against values computed by hand from how the corpus drew them."""

    def pixel(kind: str, xy: tuple[int, int]) -> tuple[int, ...]:
        return load_detector_image(corpus[kind], read_detector_config(SHIPPED_DETECTOR)).image.getpixel(xy)

    assert pixel("RGBA hiding black under transparency", (0, 0)) == (255, 255, 255)
    assert pixel("RGBA hiding black under transparency", (95, 0)) == (200, 30, 30)
    assert pixel("16-bit PNG", (95, 63)) == (255, 255, 255)  # 65535 -> 255, not clipped at 255 -> 1
    assert pixel("16-bit PNG", (0, 0)) == (0, 0, 0)
    assert pixel("float TIFF", (95, 63)) == (255, 255, 255)  # 1.0 -> 255
    # EXIF 6 turns the stored image's top-left corner to the top-right (8: to the bottom-left).
    stored = Image.open(corpus["EXIF orientation 6"]).getpixel((0, 0))
    for kind, xy in (("EXIF orientation 6", (63, 0)), ("EXIF orientation 8", (0, 95))):
        assert np.abs(np.subtract(pixel(kind, xy), stored)).max() <= 2, kind


def test_the_shipped_detector_detects_or_refuses_each_file(
    cases: list[Case], corpus: dict[str, Path]
) -> None:
    detector = Detector.from_pretrained(SHIPPED_DETECTOR)
    for case in cases:
        if not case.readable:
            assert _outcome(lambda case=case: detector([corpus[case.kind]])) is case.expected, case.kind
    readable = [case for case in cases if case.readable]
    for case, regions in zip(readable, detector([corpus[case.kind] for case in readable]), strict=True):
        assert (regions.image_width, regions.image_height) == case.expected, case.kind
        assert len(regions) == detector.config.num_regions and bool(regions.features.isfinite().all()), (
            case.kind
        )
        width, height = case.expected
        boxes = regions.boxes
        assert boxes[:, 0::2].max() <= width + 1e-3 and boxes[:, 1::2].max() <= height + 1e-3, case.kind


@pytest.mark.slow
def test_extract_stores_every_good_image_and_skips_and_counts_every_bad_one(
    cases: list[Case], corpus: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    write_cases(cases, folder)
    generator = np.random.default_rng(0)
    for index in range(6):  # plain photos between the odd files, in the same batch
        Image.fromarray(generator.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            folder / f"photo{index}.jpg"
        )
    odd_name = os.fsencode(folder) + b"/na\xefve.png"  # not valid UTF-8
    Image.new("RGB", (30, 20), (3, 4, 5)).save(odd_name.decode("utf-8", "surrogateescape"))
    Image.new("RGB", (30, 20), (3, 4, 5)).save(folder / "two\nlines.png")
    listed = dict(list_images(folder))
    by_file = {case.file_name: case for case in cases}
    bad = {
        img_id for img_id, path in listed.items() if path.name in by_file and not by_file[path.name].readable
    }
    good = set(listed) - bad
    assert len(bad) >= 15 and len(good) >= 30

    summary = extract(
        ExtractConfig(
            images=str(folder), out=str(tmp_path / "store"), detector=str(SHIPPED_DETECTOR), batch_size=64
        )
    )
    assert set(summary.skipped) == bad
    assert all("\n" not in reason and reason.startswith(str(folder)) for reason in summary.skipped.values())
    assert summary.written == len(good) and summary.finalized
    store = FeatureStore(tmp_path / "store")
    assert set(store.ids) == good
    assert {"na\\xefve", "two\\nlines"} <= set(summary.renamed)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_assets(tmp_path_factory.mktemp("assets"))


@pytest.mark.slow
def test_the_app_detects_each_upload_or_says_why_not(
    cases: list[Case], assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = start_app(assets, monkeypatch)
    app.sidebar.radio(key="source").set_value("Upload").run()
    open_page(app, "regions")
    allowed = {f".{suffix}" for suffix in app.sidebar.file_uploader[0].proto.type}
    for case in cases:
        # The browser offers only the uploader's types; a file of another type arrives renamed by its owner.
        name = case.file_name if Path(case.file_name).suffix in allowed else f"{case.file_name}.png"
        app.sidebar.file_uploader[0].set_value((name, case.data, "application/octet-stream")).run()
        assert not app.exception, (case.kind, [e.value for e in app.exception])
        errors = [e.value for e in app.error]
        if case.readable:
            assert not errors, (case.kind, errors)
            assert len(app.dataframe) == 1, case.kind
        else:
            assert len(errors) == 1 and "cannot be used" in errors[0] and case.file_name in errors[0], (
                case.kind
            )


# One child process takes every file of the corpus through the loader, then the app's preview and detection (as
# the app does: the preview decodes, detection reuses that decode). The cost of each step is the child's peak
# resident memory above what it held just before: /proc/self/clear_refs resets the peak (Linux), so imports, the
# detector's weights and earlier files are not counted. A fixed mmap threshold makes glibc return every large
# buffer when it is freed, so that one file's freed memory cannot hide the next one's cost. (A child per file
# would cost seconds of imports each.)
_CHILD = r"""
import gc, json, sys
from pathlib import Path
from lxmert.detection import ImageError
from lxmert.detection.files import read_detector_config
from lxmert.detection.images import load_detector_image
from app import loading, state
from app.config import AppConfig

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))

def measure(run):
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS:")
    try:
        kept, outcome = run(), "ok"
    except ImageError as err:
        kept, outcome = None, type(err).__name__
    peak = status("VmHWM:")
    gc.collect()
    return {"outcome": outcome, "peak": peak - before, "kept": status("VmRSS:") - before}

detector = sys.argv[1]
config = read_detector_config(detector)
app_config = AppConfig(assets_dir=Path(detector).parents[1], checkpoints_dir=Path(detector).parents[1])
loading.load_detector(detector, "cpu")
for name in sys.argv[2:]:
    path = Path(name)
    data = path.read_bytes()
    print(json.dumps({
        "loader": measure(lambda: load_detector_image(path, config)),
        "thumbnail": measure(lambda: state.show_thumbnail(state.ImageInput(data, path.name), app_config)),
        "detect": measure(lambda: loading.detect(detector, "cpu", data, path.name)),
    }), flush=True)
"""
MIB = 1 << 20


def _clear_refs_works() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _peak_table(cases: list[Case], results: list[dict]) -> str:
    """Each kind's largest step peak and what its steps kept, in MiB: the figures the test bounds."""
    lines = [f"{'kind':<62s} {'outcome':>22s} {'peak MiB':>9s} {'kept MiB':>9s}"]
    for case, measured in zip(cases, results, strict=True):
        peak = max(step["peak"] for step in measured.values()) / MIB
        kept = (measured["thumbnail"]["kept"] + measured["detect"]["kept"]) / MIB
        lines.append(f"{case.kind:<62s} {measured['loader']['outcome']:>22s} {peak:9.1f} {kept:9.1f}")
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.skipif(not _clear_refs_works(), reason="needs Linux's /proc/self/clear_refs to reset the peak")
def test_every_kind_stays_under_the_memory_budget(cases: list[Case], corpus: dict[str, Path]) -> None:
    assert (
        sum(case.heavy for case in cases) >= 5
    )  # the corpus holds large decodes and bombs, not just small files
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(SHIPPED_DETECTOR), *(str(corpus[case.kind]) for case in cases)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(cases)
    print(_peak_table(cases, results))  # shown with -s, and by pytest when an assertion below fails
    for case, measured in zip(cases, results, strict=True):
        outcome = "ok" if case.readable else case.expected.__name__
        assert measured["loader"]["outcome"] == measured["detect"]["outcome"] == outcome, (
            case.kind,
            measured,
        )
        assert measured["thumbnail"]["outcome"] == "ok", (case.kind, measured)  # no preview is a caption
        for entry, step in measured.items():
            assert step["peak"] < DEFAULT_MAX_BYTES, (case.kind, entry, measured)
            if not case.readable:  # refused from the header, or at the first bad byte: nothing large decoded
                assert step["peak"] < 16 * MIB, (case.kind, entry, measured)
        # What the app keeps cached: the decode (at most max_image_side = 4096 on a side, 64 MiB) and the display
        # copy, never the full-size image (20000x4000 is 305 MiB in Pillow's memory).
        assert measured["thumbnail"]["kept"] + measured["detect"]["kept"] < 128 * MIB, (case.kind, measured)
