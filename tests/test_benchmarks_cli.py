"""The extraction and loader benchmarks' command lines: the flags and defaults they had, and the README's commands."""

from __future__ import annotations

import pytest

from benchmarks import extraction_drift, extraction_speed, loader_memory


def test_extraction_speed_defaults_and_the_readme_command():
    assert extraction_speed.parse_args([]) == extraction_speed.ExtractionSpeedConfig(
        detector="",
        preset="small",
        images=32,
        photos="",
        precisions="fp32",
        image_size=256,
        batch_sizes="1,8",
        num_threads=2,
        cpu_only=False,
        seed=0,
        out="",
    )
    cfg = extraction_speed.parse_args(
        "--preset vg --photos tests/data/coco --images 3 --batch-sizes 1 --precisions fp32,bf16 "
        "--cpu-only --num-threads 1 --image-size 64 --seed 3 --detector d --out r.json --stages --stage-repeats 5".split()
    )
    assert (cfg.stages, cfg.stage_repeats) == (True, 5)
    assert extraction_speed.parse_args([]).stages is False
    assert (cfg.preset, cfg.photos, cfg.images, cfg.cpu_only) == ("vg", "tests/data/coco", 3, True)
    assert (cfg.num_threads, cfg.image_size, cfg.seed, cfg.detector, cfg.out) == (1, 64, 3, "d", "r.json")
    assert cfg.batch_size_list == [1] and cfg.precision_list == ["fp32", "bf16"]
    assert extraction_speed.parse_args(["--batch-sizes", "2,16"]).batch_size_list == [2, 16]


def test_extraction_speed_refuses_an_unknown_precision_or_an_empty_photo_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        extraction_speed.parse_args(["--precisions", "fp32,int8"])
    assert "unknown precisions ['int8']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        extraction_speed.parse_args(["--photos", str(tmp_path)])
    assert f"{tmp_path} holds no files" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        extraction_speed.parse_args(["--preset", "nope"])


def test_extraction_drift_defaults_and_the_documented_commands(capsys):
    assert extraction_drift.parse_args([]) == extraction_drift.DriftConfig(
        device="cpu", precisions="bf16", photos=str(extraction_drift.PHOTOS), num_threads=2, out=""
    )
    assert extraction_drift.PHOTOS.name == "coco" and any(extraction_drift.PHOTOS.glob("*.jpg"))
    cfg = extraction_drift.parse_args(["--device", "cuda", "--precisions", "bf16,fp16"])
    assert cfg.device == "cuda" and cfg.precision_list == ["bf16", "fp16"]
    with pytest.raises(SystemExit):
        extraction_drift.parse_args(["--precisions", "half"])
    assert "unknown precisions ['half']" in capsys.readouterr().err


def test_loader_memory_defaults_and_the_readme_command():
    assert loader_memory.parse_args([]) == loader_memory.LoaderMemoryConfig(
        store="/tmp/loader_memory_store",
        images=20000,
        num_boxes=36,
        feature_dim=2048,
        workers=4,
        batch_size=64,
        delete=False,
    )
    cfg = loader_memory.parse_args(
        "--store /tmp/s --images 20000 --workers 4 --delete --num-boxes 10 --feature-dim 8 --batch-size 2".split()
    )
    assert cfg == loader_memory.LoaderMemoryConfig("/tmp/s", 20000, 10, 8, 4, 2, True)
