"""Detector training CLI on a miniature world: batches, resume equals an uninterrupted run, evaluation."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lxmert.detection import Detector
from training.detection import train as detector_cli
from training.world.generate import annotation
from training.world.scenes import render_scene, sample_scene, write_vocab_files

TINY = dict(
    small_channels=(8, 16), feature_dim=32, min_size=64, max_size=64, anchor_sizes=(8, 16, 32),
    rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=40,
    rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=40,
    roi_batch_size_per_image=16, class_embed_dim=8, attr_hidden_dim=16, num_regions=12,
)  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A world directory with the generator's layout: 6 train and 3 test scenes of 64x64 pixels."""
    root = tmp_path_factory.mktemp("world")
    write_vocab_files(root)
    (root / "images").mkdir()
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 3)):
        entries = []
        for index in range(count):
            img_id = f"{split}_{index}"
            scene = sample_scene(rng, size=64, num_objects=2)
            render_scene(scene).save(root / "images" / f"{img_id}.png")
            entries.append(annotation(img_id, scene))
        (root / "annotations" / f"{split}.json").write_text(json.dumps(entries))
    (root / "tiny.json").write_text(json.dumps(TINY))
    return root


def _args(world: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--world", str(world), "--out", str(tmp_path / "detector"), "--work-dir", str(tmp_path / "work"),
        "--detector-config", str(world / "tiny.json"), "--train-splits", "train", "--eval-split", "test",
        "--steps", "4", "--batch-size", "2", "--checkpoint-every", "2", "--num-threads", "1", "--no-half",
        *extra,
    ]  # fmt: skip


def test_batches_cover_each_epoch_and_depend_only_on_seed_and_step() -> None:
    epoch = [detector_cli.batch_indices(10, 3, seed=5, step=s) for s in range(3)]
    assert sorted(i for batch in epoch for i in batch) == sorted(set(i for batch in epoch for i in batch))
    assert all(len(batch) == 3 for batch in epoch)
    assert detector_cli.batch_indices(10, 3, seed=5, step=1) == epoch[1]
    assert detector_cli.batch_indices(10, 3, seed=5, step=3) != epoch[0], "a new epoch reshuffles"


def test_world_targets_shift_labels_and_attributes_past_background(world: Path) -> None:
    data = detector_cli.WorldDetections(world, ["train"])
    entry = data.entries[0]["objects"][0]
    target = data.target(0)
    assert target["labels"][0] == entry["label_id"] + 1
    assert target["attributes"][0].tolist() == [a + 1 for a in entry["attr_ids"]]
    assert torch.equal(target["boxes"][0], torch.tensor(entry["box"], dtype=torch.float32))
    with pytest.raises(FileNotFoundError, match="minival"):
        detector_cli.WorldDetections(world, ["minival"])


def test_attribute_groups_are_the_world_factors(world: Path) -> None:
    _, attributes = detector_cli.world_vocabularies(world)
    groups = detector_cli.attribute_groups(attributes)
    assert [attributes[i] for i in groups["size"]] == ["small", "medium", "large"]
    assert sorted(i for ids in groups.values() for i in ids) == list(range(len(attributes)))


def test_training_starts_by_removing_a_killed_run_s_temporaries(world: Path, tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "detector"
    stale = []
    for directory, name in ((work, "checkpoint.pt"), (out, "model.safetensors")):
        directory.mkdir()
        fd, leftover = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")  # as kill -9 leaves
        os.close(fd)
        stale.append(leftover)
    cfg = detector_cli.DetectorTrainConfig(
        world=str(world), out=str(out), work_dir=str(work), detector_config=str(world / "tiny.json"),
        train_splits="train", steps=1, batch_size=2, checkpoint_every=1, num_threads=1, half=False,
    )  # fmt: skip
    detector_cli.train(cfg)
    assert not any(os.path.exists(p) for p in stale)
    assert torch.load(work / "checkpoint.pt", weights_only=True)["step"] == 1
    assert sorted(p.name for d in (work, out) for p in d.iterdir() if p.name.startswith(".")) == []


@pytest.mark.slow
def test_resumed_training_equals_an_uninterrupted_run(world: Path, tmp_path: Path, monkeypatch) -> None:
    report = detector_cli.main(_args(world, tmp_path / "straight"))
    assert set(report.ap) <= set(Detector.from_pretrained(tmp_path / "straight" / "detector").objects_vocab)
    assert (tmp_path / "straight" / "work" / "eval_test.json").is_file()

    real_batch_indices = detector_cli.batch_indices

    def interrupt_at_step_3(num_items, batch_size, seed, step):
        if step == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real_batch_indices(num_items, batch_size, seed, step)

    monkeypatch.setattr(detector_cli, "batch_indices", interrupt_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        detector_cli.main(_args(world, tmp_path / "resumed"))
    assert torch.load(tmp_path / "resumed" / "work" / "checkpoint.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(detector_cli, "batch_indices", real_batch_indices)
    detector_cli.main(_args(world, tmp_path / "resumed", "--resume"))

    # A time-boxed run (--stop-after) saves a detector part-way through the same schedule, then resumes.
    detector_cli.main(_args(world, tmp_path / "boxed", "--stop-after", "2"))
    assert torch.load(tmp_path / "boxed" / "work" / "checkpoint.pt", weights_only=True)["step"] == 2
    assert (tmp_path / "boxed" / "detector" / "model.safetensors").is_file()
    detector_cli.main(_args(world, tmp_path / "boxed", "--resume"))

    # --resume with nothing to resume from starts at step 0: the same command serves a first run and a restart.
    detector_cli.main(_args(world, tmp_path / "fresh", "--resume"))

    straight = load_file(tmp_path / "straight" / "detector" / "model.safetensors")
    for run in ("resumed", "boxed", "fresh"):
        weights = load_file(tmp_path / run / "detector" / "model.safetensors")
        assert straight.keys() == weights.keys()
        for name in straight:
            torch.testing.assert_close(
                weights[name], straight[name], msg=lambda m, n=name, r=run: f"{r} {n}: {m}"
            )


def test_a_non_finite_loss_is_an_error(world: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(
        detector_cli.FasterRCNNWithAttributes,
        "forward",
        lambda self, images, targets=None: {"x": torch.tensor(float("nan"))},
    )
    with pytest.raises(FloatingPointError, match="step 0"):
        detector_cli.main(_args(world, tmp_path))
