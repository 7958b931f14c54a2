"""``training.extract`` under torchrun (two gloo CPU processes) writes the store one process writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lxmert.data.store import FeatureStore
from lxmert.data.tsv import iter_tsv
from training.detection.extraction import ExtractConfig, extract

ROOT = Path(__file__).parent.parent
COLUMNS = ("objects_id", "objects_conf", "attrs_id", "attrs_conf", "boxes", "features")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven readable images of four sizes (one nested) and a corrupt file, which one rank must skip."""
    root = tmp_path_factory.mktemp("images")
    (root / "sub").mkdir()
    generator = np.random.default_rng(1)
    for index in range(6):
        pixels = generator.integers(0, 255, (40 + 8 * (index % 3), 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{index}.png")
    Image.fromarray(generator.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / "sub" / "deep.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


@pytest.fixture(scope="module")
def single(folder: Path, detector_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store (and TSV) of one process."""
    out = tmp_path_factory.mktemp("single")
    summary = extract(
        ExtractConfig(
            images=str(folder), out=str(out / "store"), detector=str(detector_dir), batch_size=2,
            device="cpu", num_threads=1, tsv=str(out / "obj36.tsv"),
        )
    )  # fmt: skip
    assert summary.finalized and summary.written == 7 and list(summary.skipped) == ["broken"]
    return out


def torchrun(folder: Path, detector_dir: Path, out: Path, *extra: str) -> str:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "training.extract", "--images", str(folder), "--out", str(out / "store"),
        "--detector", str(detector_dir), "--batch-size", "2", "--device", "cpu", "--num-threads", "1",
        "--tsv", str(out / "obj36.tsv"), *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _assert_same_store(actual: Path, expected: Path) -> None:
    """Same ids in the same row order, same sizes, and the same arrays row by row."""
    got, want = FeatureStore(actual), FeatureStore(expected)
    assert got.ids == want.ids
    for row in range(len(want)):
        a, b = got.get_row(row), want.get_row(row)
        assert (a["img_h"], a["img_w"], a["num_boxes"]) == (b["img_h"], b["img_w"], b["num_boxes"])
        for column in COLUMNS:
            np.testing.assert_allclose(a[column], b[column], rtol=1e-5, atol=1e-5, err_msg=column)


def _same_tsv(actual: Path, expected: Path) -> None:
    got, want = list(iter_tsv(actual)), list(iter_tsv(expected))
    assert [r["img_id"] for r in got] == [r["img_id"] for r in want]


@pytest.mark.slow  # three torchrun launches of two processes each
def test_two_processes_write_the_store_of_one(folder: Path, detector_dir: Path, single: Path, tmp_path: Path):
    printed = torchrun(folder, detector_dir, tmp_path)
    _assert_same_store(tmp_path / "store", single / "store")
    _same_tsv(tmp_path / "obj36.tsv", single / "obj36.tsv")
    assert not (tmp_path / "store" / "shards").exists(), "the merged shards are deleted"
    # Rank 0 reports for both: every image, including the one rank 1 skipped.
    assert "7 images extracted, 0 already" in printed and "skipped broken" in printed, printed
    assert printed.count("images extracted") == 1


@pytest.mark.slow
def test_a_stopped_sharded_run_resumes_to_the_same_store(
    folder: Path, detector_dir: Path, single: Path, tmp_path: Path
):
    # Each process stops after one image: rank 0 takes broken (skipped), rank 1 takes img0.
    printed = torchrun(folder, detector_dir, tmp_path, "--max-images", "1")
    assert "1 images extracted" in printed and "rerun the same command" in printed, printed
    assert (tmp_path / "store" / "ids.txt").read_text().splitlines() == ["img0"]
    with pytest.raises(ValueError, match="not finalized"):
        FeatureStore(tmp_path / "store")
    printed = torchrun(folder, detector_dir, tmp_path)
    assert "6 images extracted, 1 already" in printed and "complete" in printed, printed
    _assert_same_store(tmp_path / "store", single / "store")
