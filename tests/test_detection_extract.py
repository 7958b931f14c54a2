"""Extraction: every image once, unreadable files skipped by name, interrupted runs resume to one store."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lxmert.data.store import FeatureStore
from lxmert.data.tsv import iter_tsv
from lxmert.detection import Detector
from training.detection.extraction import ExtractConfig, extract, list_images, main

COLUMNS = ("objects_id", "objects_conf", "attrs_id", "attrs_conf", "boxes", "features")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    (root / "nested").mkdir()
    generator = np.random.default_rng(0)
    for index in range(5):
        pixels = generator.integers(0, 255, (48 + 8 * index, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{index}.png")
    Image.new("L", (40, 30), 90).save(root / "nested" / "grey.jpg")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def reference(folder: Path, detector_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One uninterrupted run through the CLI: its summary, what it printed, where the store and TSV are."""
    out = tmp_path_factory.mktemp("reference")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        summary = main(
            ["--images", str(folder), "--out", str(out / "store"), "--detector", str(detector_dir),
             "--batch-size", "2", "--tsv", str(out / "obj36.tsv")]
        )  # fmt: skip
    return {
        "summary": summary,
        "printed": printed.getvalue(),
        "store": out / "store",
        "tsv": out / "obj36.tsv",
    }


def _config(folder: Path, detector_dir: Path, out: Path, **overrides) -> ExtractConfig:
    return ExtractConfig(
        images=str(folder), out=str(out), detector=str(detector_dir), batch_size=2, **overrides
    )


def _rows(path: Path) -> dict[str, dict]:
    store = FeatureStore(path)
    return {img_id: store.get(img_id) for img_id in store.ids}


def _assert_same_stores(actual: dict[str, dict], expected: dict[str, dict]) -> None:
    assert sorted(actual) == sorted(expected)
    for img_id, row in expected.items():
        for column in COLUMNS:
            np.testing.assert_allclose(
                actual[img_id][column], row[column], rtol=1e-5, atol=1e-5, err_msg=column
            )


def test_listing_finds_images_recursively_and_ignores_other_files(folder: Path, tmp_path: Path) -> None:
    ids = [img_id for img_id, _ in list_images(folder)]
    assert ids == ["corrupt", "img0", "img1", "img2", "img3", "img4", "nested/grey"]
    for name in ("same.png", "same.jpg"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    with pytest.raises(ValueError, match="same"):
        list_images(tmp_path)


def test_full_run_writes_every_readable_image_once_and_the_tsv(
    reference: dict, folder: Path, detector_dir: Path
) -> None:
    summary = reference["summary"]
    assert summary.finalized and summary.remaining == 0
    assert summary.written == 6
    assert list(summary.skipped) == ["corrupt"] and "corrupt.jpg" in summary.skipped["corrupt"]
    rows = _rows(reference["store"])
    assert sorted(rows) == ["img0", "img1", "img2", "img3", "img4", "nested/grey"]
    assert (rows["img2"]["img_h"], rows["img2"]["img_w"], rows["img2"]["num_boxes"]) == (64, 64, 10)
    tsv = {row["img_id"]: row for row in iter_tsv(reference["tsv"])}
    _assert_same_stores(tsv, rows)
    expected = Detector.from_pretrained(detector_dir)([folder / "img3.png"])[0]
    np.testing.assert_allclose(rows["img3"]["features"], expected.features.numpy(), rtol=1e-5, atol=1e-5)


def test_cli_reports_skipped_files(reference: dict) -> None:
    printed = reference["printed"]
    assert "6 images extracted" in printed and "skipped corrupt" in printed and "complete" in printed


def test_stopped_run_resumes_without_duplicates_or_losses(
    folder: Path, detector_dir: Path, reference: dict, tmp_path: Path
) -> None:
    # The first three in id order are corrupt (skipped), img0 and img1.
    first = extract(_config(folder, detector_dir, tmp_path / "store", max_images=3))
    assert (first.written, list(first.skipped), first.remaining) == (2, ["corrupt"], 4)
    assert not first.finalized
    with pytest.raises(ValueError, match="not finalized"):
        FeatureStore(tmp_path / "store")
    second = extract(_config(folder, detector_dir, tmp_path / "store"))
    assert (second.already_present, second.written, second.finalized) == (2, 4, True)
    ids = (tmp_path / "store" / "ids.txt").read_text().splitlines()
    assert len(ids) == len(set(ids)) == 6
    _assert_same_stores(_rows(tmp_path / "store"), _rows(reference["store"]))


def test_crash_inside_the_loop_resumes_to_the_same_store(
    folder: Path, detector_dir: Path, reference: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_detect = Detector.detect
    calls = []

    def crash_on_third_batch(self, images, **kwargs):
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real_detect(self, images, **kwargs)

    monkeypatch.setattr(Detector, "detect", crash_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        extract(_config(folder, detector_dir, tmp_path / "store"))
    monkeypatch.setattr(Detector, "detect", real_detect)
    committed = (tmp_path / "store" / "ids.txt").read_text().splitlines()
    assert len(committed) == sum(calls[:2]), "the two finished batches are on disk"
    summary = extract(_config(folder, detector_dir, tmp_path / "store"))
    assert summary.already_present == len(committed) and summary.finalized
    ids = (tmp_path / "store" / "ids.txt").read_text().splitlines()
    assert len(ids) == len(set(ids)) == 6
    _assert_same_stores(_rows(tmp_path / "store"), _rows(reference["store"]))
