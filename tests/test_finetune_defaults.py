"""``python -m training.finetune gqa`` with no flags: what it says when nothing is prepared, and a run on the
README's layout; the learning rate chosen by the model's width; the still-learning warning."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from training.tasks import default_layout
from training.tasks import finetuning as finetune
from training.tasks.finetune_schedule import (
    PRIOR_MARGIN,
    STILL_LEARNING_GAIN,
    finetune_lr,
    last_epoch_gain,
    no_better_than_prior_warning,
    still_learning_warning,
)

ROOT = Path(__file__).resolve().parents[1]


def test_bare_command_names_each_missing_input_and_its_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing prepared, not even the shipped checkpoint
    with pytest.raises(SystemExit) as stopped:
        finetune.main(["gqa"])
    message = str(stopped.value)
    assert message.startswith("error: fine-tuning gqa needs 3 inputs that are not there")
    assert "vocab" not in message
    for what, path in (
        ("the pre-trained checkpoint", "assets/default/pretrained"),
        ("the gqa data (train.json, valid.json)", "runs/world-kinds/gqa"),
        ("the region features", "runs/default/features"),
    ):
        assert f"{what}: {path}" in message
    assert default_layout.MAKES["runs/world-kinds"] in message
    assert default_layout.MAKES["runs/default/features"] in message


def test_defaults_agree_with_the_build_script():
    """The script fine-tunes GQA on the same world, features and splits the bare command reads."""
    script = (ROOT / "scripts" / "build_default.sh").read_text()
    _, start, data, _ = finetune.parse_args(["gqa"])
    assert start.init == "assets/default/pretrained" and (ROOT / start.init / "vocab.txt").is_file()
    runs = {"$RUNS": "runs", "$OUT": "runs/default"}
    line = next(line for line in script.splitlines() if line.startswith("finetune gqa "))
    for variable, value in runs.items():
        line = line.replace(variable, value)
    assert line.startswith(
        f"finetune gqa {data.data} {data.features} --train {data.train} --valid {data.valid} "
    )
    for path, command in default_layout.MAKES.items():
        if command.startswith("python -m training.world"):  # the world step of the script, same flags
            flags = command.removeprefix(f"python -m training.world --out {path} ")
            world = path.removeprefix("runs/")
            assert f"--out $RUNS/{world} {flags}" in " ".join(script.replace("\\\n", " ").split())


@pytest.mark.slow  # a 40-image world, its regions by the shipped detector, 4 epochs of the shipped tiny model
def test_bare_command_trains_on_the_documented_layout(tmp_path, monkeypatch, capsys):
    from training.detection.extraction import ExtractConfig, extract
    from training.world.generate import WorldConfig, build_world

    monkeypatch.chdir(tmp_path)
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    build_world(
        WorldConfig(out="runs/world-kinds", images=40, seed=0, scene_kinds=5, workers=1), progress=False
    )
    extract(ExtractConfig(images="runs/world-kinds", out="runs/default/features", detector="assets/default/detector",
                          num_threads=1))  # fmt: skip
    finetune.main(["gqa"])
    printed = capsys.readouterr().out
    assert "lr 0.001, chosen for a 64-wide model" in printed
    records = [json.loads(line) for line in Path("runs/finetune/gqa/metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["split"] == "valid"]
    assert [r["epoch"] for r in valid] == [1, 2, 3, 4]
    task_config = json.loads(Path("runs/finetune/gqa/best/task_config.json").read_text())
    assert (task_config["train"], task_config["valid"]) == ("train", "valid")
    shutil.rmtree("runs")


def test_learning_rate_by_width():
    assert finetune_lr(5e-5, 768) == finetune_lr(5e-5, 4096) == 5e-5  # the paper's, for base and wider
    assert finetune_lr(1e-5, 64) == finetune_lr(5e-5, 16) == 1e-3  # the tiny preset's
    # Halfway in log(width) between 64 and 768 is halfway in log(rate): the geometric means.
    middle = math.sqrt(64 * 768)
    assert finetune_lr(1e-5, round(middle)) == pytest.approx(math.sqrt(1e-5 * 1e-3), rel=0.01)
    rates = [finetune_lr(1e-5, width) for width in (64, 128, 256, 512, 768)]
    assert rates == sorted(rates, reverse=True)


def test_bare_lr_is_chosen_and_an_explicit_one_kept():
    assert finetune.parse_args(["gqa"])[3].lr == finetune.AUTO_LR
    assert finetune.parse_args(["gqa", "--lr", "2e-4"])[3].lr == 2e-4


def test_last_epoch_gain_reads_validation_records():
    records = [
        {"split": "train", "epoch": 1.0, "accuracy": 0.9},
        {"split": "valid", "epoch": 1.0, "accuracy": 0.50},
        {"split": "valid", "epoch": 1.5, "accuracy": 0.60},  # eval_every: mid-epoch records
        {"split": "valid", "epoch": 2.0, "accuracy": 0.62},
        {"split": "valid", "epoch": 3.0, "accuracy": 0.70},
    ]
    assert last_epoch_gain(records, "accuracy") == pytest.approx(0.08)
    assert last_epoch_gain(records[:3], "accuracy") is None  # not a whole epoch between first and last
    assert last_epoch_gain([], "accuracy") is None
    warning = still_learning_warning(0.08, "accuracy", 5e-5, "--epochs / --lr")
    assert "+0.080 in the last epoch" in warning and "--epochs / --lr" in warning
    assert still_learning_warning(STILL_LEARNING_GAIN, "accuracy", 5e-5, "") is None
    assert still_learning_warning(None, "accuracy", 5e-5, "") is None


def test_a_score_at_the_prior_is_flagged():
    assert "no better than the question-only prior's 0.491" in no_better_than_prior_warning(
        0.463, 0.491, "--lr"
    )
    assert no_better_than_prior_warning(0.491 + PRIOR_MARGIN / 2, 0.491, "--lr") is not None
    assert no_better_than_prior_warning(0.491 + 2 * PRIOR_MARGIN, 0.491, "--lr") is None


def test_extraction_defaults_to_the_shipped_detector():
    from training.detection.extraction import ExtractConfig

    detector = Path(__file__).resolve().parents[1] / ExtractConfig(images="x", out="y").detector
    assert (detector / "config.json").is_file() and (detector / "objects_vocab.txt").is_file()
