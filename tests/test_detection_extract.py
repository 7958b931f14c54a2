"""Extraction: every image exactly once, unreadable files skipped by name, interrupted runs resume to the same store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lxmert.detection import Detector
from tests.test_detection_model import tiny_detector
from training.data.store import FeatureStore
from training.data.tsv import iter_tsv
from training.extract import ExtractConfig, extract, list_images, main

COLUMNS = ("objects_id", "objects_conf", "attrs_id", "attrs_conf", "boxes", "features")


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("detector")
    tiny_detector().save_pretrained(path)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    (root / "nested").mkdir(parents=True)
    generator = np.random.default_rng(0)
    for index in range(5):
        pixels = generator.integers(0, 255, (48 + 8 * index, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{index}.png")
    Image.new("L", (40, 30), 90).save(root / "nested" / "grey.jpg")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "notes.txt").write_text("not an image")
    return root


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


def test_listing_finds_images_recursively_and_ignores_other_files(folder: Path) -> None:
    ids = [img_id for img_id, _ in list_images(folder)]
    assert ids == ["corrupt", "img0", "img1", "img2", "img3", "img4", "nested/grey"]
    Image.new("RGB", (4, 4)).save(folder / "img0.jpg")
    with pytest.raises(ValueError, match="img0"):
        list_images(folder)


def test_full_run_writes_every_readable_image_once_and_the_tsv(
    folder: Path, detector_dir: Path, tmp_path: Path
) -> None:
    summary = extract(_config(folder, detector_dir, tmp_path / "store", tsv=str(tmp_path / "obj36.tsv")))
    assert summary.finalized and summary.remaining == 0
    assert summary.written == 6
    assert list(summary.skipped) == ["corrupt"] and "corrupt.jpg" in summary.skipped["corrupt"]
    rows = _rows(tmp_path / "store")
    assert sorted(rows) == ["img0", "img1", "img2", "img3", "img4", "nested/grey"]
    assert (rows["img2"]["img_h"], rows["img2"]["img_w"], rows["img2"]["num_boxes"]) == (64, 64, 10)
    tsv = {row["img_id"]: row for row in iter_tsv(tmp_path / "obj36.tsv")}
    _assert_same_stores(tsv, rows)
    expected = Detector.from_pretrained(detector_dir)([folder / "img3.png"])[0]
    np.testing.assert_allclose(rows["img3"]["features"], expected.features.numpy(), rtol=1e-5, atol=1e-5)


def test_stopped_run_resumes_without_duplicates_or_losses(
    folder: Path, detector_dir: Path, tmp_path: Path
) -> None:
    extract(_config(folder, detector_dir, tmp_path / "reference"))
    # The first three in id order are corrupt (skipped), img0 and img1.
    first = extract(_config(folder, detector_dir, tmp_path / "store", max_images=3))
    assert (first.written, list(first.skipped), first.finalized, first.remaining) == (
        2,
        ["corrupt"],
        False,
        4,
    )
    with pytest.raises(ValueError, match="not finalized"):
        FeatureStore(tmp_path / "store")
    second = extract(_config(folder, detector_dir, tmp_path / "store"))
    assert (second.already_present, second.written, second.finalized) == (2, 4, True)
    ids = (tmp_path / "store" / "ids.txt").read_text().splitlines()
    assert len(ids) == len(set(ids)) == 6
    _assert_same_stores(_rows(tmp_path / "store"), _rows(tmp_path / "reference"))


def test_crash_inside_the_loop_resumes_to_the_same_store(
    folder: Path, detector_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extract(_config(folder, detector_dir, tmp_path / "reference"))
    real_detect = Detector.detect
    calls = []

    def crash_on_third_batch(self, images):
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real_detect(self, images)

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
    _assert_same_stores(_rows(tmp_path / "store"), _rows(tmp_path / "reference"))


def test_cli_reports_skipped_files(folder: Path, detector_dir: Path, tmp_path: Path, capsys) -> None:
    main(["--images", str(folder), "--out", str(tmp_path / "store"), "--detector", str(detector_dir)])
    printed = capsys.readouterr().out
    assert "6 images extracted" in printed and "skipped corrupt" in printed and "complete" in printed
