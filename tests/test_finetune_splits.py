"""A split the command line names must hold items: an empty one is refused before training, naming it."""

from __future__ import annotations

import shutil

import pytest
from finetune_toy import build

from training.tasks import finetuning as finetune


def test_an_empty_validation_split_is_named(tmp_path):
    toy = build(tmp_path / "toy")
    data = tmp_path / "nlvr2"
    shutil.copytree(toy["nlvr2"], data)
    (data / "valid.json").write_text("[]\n")
    with pytest.raises(ValueError, match=r"nlvr2: the valid splits 'valid' of .*nlvr2 hold no items"):
        finetune.main(
            ["nlvr2", "--init", str(toy["init"]), "--data", str(data), "--features", str(toy["features"])]
            + ["--output", str(tmp_path / "out"), "--epochs", "1", "--batch-size", "4", "--device", "cpu"]
            + ["--threads", "1"]
        )
