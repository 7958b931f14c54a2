"""The shared trainer on a toy QA task: the loop learns, logs, checkpoints and resumes to the same weights."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import random
import tempfile

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from lxmert.config import LxmertConfig
from lxmert.config_cli import add_dataclass_arguments, dataclass_from_args
from lxmert.modeling import LxmertForQuestionAnswering
from training.engine.trainer import (
    ResumableSampler,
    TrainConfig,
    Trainer,
    _rng_state,
    _set_rng_state,
    clip_gradients,
    linear_warmup_decay,
)
from training.tasks.base import Task

R, T, F = 4, 6, 8


pytestmark = pytest.mark.usefixtures("single_thread")


class ToyQA(Dataset):
    """The second token names the answer (token 5 + label): learnable from the language side in a few steps."""

    def __init__(self, n: int, vocab: int, labels: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(5, vocab, (n, T), generator=g)
        self.feats = torch.randn(n, R, F, generator=g)
        self.pos = torch.rand(n, R, 4, generator=g)
        self.labels = torch.randint(0, labels, (n,), generator=g)
        self.input_ids[:, 1] = 5 + self.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids[i],
            "visual_feats": self.feats[i],
            "visual_pos": self.pos[i],
            "labels": self.labels[i],
        }


class ToyQATask(Task):
    name = "toy_qa"
    main_metric = "acc"
    higher_is_better = True

    def compute(self, model, batch):
        out = model(batch["input_ids"], batch["visual_feats"], batch["visual_pos"], labels=batch["labels"])
        correct = (out.logits.argmax(-1) == batch["labels"]).sum()
        return {"qa": out.loss}, {"acc": (correct, torch.tensor(len(batch["labels"])))}


def toy_model(seed: int = 0, dropout: float = 0.1) -> LxmertForQuestionAnswering:
    torch.manual_seed(seed)
    config = LxmertConfig.preset(
        "tiny", vocab_size=30, visual_feat_dim=F, num_qa_labels=3, l_layers=1, r_layers=1, x_layers=1,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )  # fmt: skip
    return LxmertForQuestionAnswering(config)


def toy_config(tmp_path, **overrides) -> TrainConfig:
    values = dict(
        output=str(tmp_path),
        epochs=2,
        batch_size=8,
        lr=1e-3,
        warmup_ratio=0.1,
        seed=3,
        save_every=0,
        log_every=2,
        device="cpu",
        precision="fp32",
    )
    return TrainConfig(**{**values, **overrides})


def read_records(path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("max_norm", "max_tensor_norm", "expected"),
    [
        (0.0, 0.0, ([0.0, 3.0], [4.0])),  # untouched
        (1.0, 0.0, ([0.0, 0.6], [0.8])),  # the global norm 5 scaled to 1
        (0.0, 1.0, ([0.0, 1.0], [1.0])),  # each tensor to norm 1 (BertAdam)
        (1.0, 1.0, ([0.0, 0.5**0.5], [0.5**0.5])),  # each to 1, then the two together (norm √2) to 1
    ],
)
def test_clip_gradients_by_tensor_then_globally(max_norm, max_tensor_norm, expected):
    model = torch.nn.ModuleDict(
        {"a": torch.nn.Linear(1, 2, bias=False), "b": torch.nn.Linear(1, 1, bias=False)}
    )
    model.a.weight.grad = torch.tensor([[0.0], [3.0]])
    model.b.weight.grad = torch.tensor([[4.0]])
    assert float(clip_gradients(model, max_norm, max_tensor_norm)) == pytest.approx(5.0)
    torch.testing.assert_close(model.a.weight.grad.flatten(), torch.tensor(expected[0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(model.b.weight.grad.flatten(), torch.tensor(expected[1]), atol=1e-5, rtol=0)


def test_the_logged_gradient_norm_is_the_norm_before_clipping(tmp_path):
    data = ToyQA(16, 30, 3)
    model = toy_model(dropout=0.0)  # the trainer's forward is then reproducible below
    reference = copy.deepcopy(model)
    # One step over the whole dataset, clipped far below its norm.
    config = toy_config(tmp_path, epochs=1, batch_size=16, log_every=1, max_grad_norm=1e-3)
    Trainer(model, ToyQATask(), config).fit(data)

    batch = {key: torch.stack([data[i][key] for i in range(len(data))]) for key in data[0]}
    losses, _ = ToyQATask().compute(reference.train(), batch)
    sum(losses.values()).backward()
    expected = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in reference.parameters() if p.grad is not None])
    )
    (record,) = [r for r in read_records(tmp_path) if r["split"] == "train" and r["scope"] == "step"]
    assert record["grad_norm"] == pytest.approx(float(expected), rel=1e-4)
    assert record["grad_norm"] > 1e-2


def test_fit_learns_logs_and_saves(tmp_path):
    data = ToyQA(64, 30, 3)
    config = toy_config(tmp_path, epochs=6, lr=3e-3, log_every=4)
    result = Trainer(toy_model(), ToyQATask(), config).fit(data, ToyQA(32, 30, 3, seed=1))

    records = read_records(tmp_path)
    train = [r for r in records if r["split"] == "train" and r["scope"] == "step"]
    valid = [r for r in records if r["split"] == "valid"]
    assert [r["step"] for r in train] == list(range(4, 49, 4))  # 8 steps/epoch × 6
    assert len(valid) == 6 and valid[-1]["epoch"] == 6.0
    for key in ("loss", "qa_loss", "acc", "lr", "samples_per_s", "grad_norm", "time", "epoch"):
        assert key in train[0], key
    assert train[-1]["loss"] < 0.5 * train[0]["loss"], (train[0]["loss"], train[-1]["loss"])
    assert result["valid"]["acc"] > 0.6  # chance is ~1/3
    assert result["best"] == max(r["acc"] for r in valid)
    for name in ("final", "best"):
        assert (tmp_path / name / "model.safetensors").is_file(), name
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "train_config.json").is_file()
    reloaded = LxmertForQuestionAnswering.from_pretrained(tmp_path / "final")
    meta = json.loads((tmp_path / "final" / "meta.json").read_text())
    assert (meta["step"], meta["epoch"], meta["batches_done"]) == (48, 6, 0)
    assert reloaded.answer_head.logit_fc[3].weight.shape == (3, 128)

    # Running the finished run's command again trains no further and reports the same scores (a recipe resumes).
    again = Trainer(toy_model(), ToyQATask(), config).fit(data, ToyQA(32, 30, 3, seed=1))
    assert again == result
    assert read_records(tmp_path) == records


def test_resume_mid_epoch_gives_the_same_weights(tmp_path):
    data = ToyQA(40, 30, 3)  # 5 steps per epoch with batch 8, and dropout on: the RNG state matters
    straight = Trainer(toy_model(), ToyQATask(), toy_config(tmp_path / "a", grad_accum=2)).fit(data)

    first = Trainer(toy_model(), ToyQATask(), toy_config(tmp_path / "b", grad_accum=2, max_steps=7))
    assert first.fit(data)["step"] == 7  # stopped in epoch 2, two steps in
    resumed_model = toy_model(seed=123)  # different init: everything must come from the checkpoint
    resumed = Trainer(resumed_model, ToyQATask(), toy_config(tmp_path / "b", grad_accum=2)).fit(data)

    assert straight["step"] == resumed["step"] == 10
    a = LxmertForQuestionAnswering.from_pretrained(tmp_path / "a" / "final").state_dict()
    b = resumed_model.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs by {(a[name] - b[name]).abs().max()}"
    steps = [r["step"] for r in read_records(tmp_path / "b") if r["scope"] == "step"]
    assert steps == sorted(set(steps)), "the resumed log repeats steps"


def test_resume_refuses_a_changed_batch_size(tmp_path):
    data = ToyQA(16, 30, 3)
    Trainer(toy_model(), ToyQATask(), toy_config(tmp_path, max_steps=1)).fit(data)
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(toy_model(), ToyQATask(), toy_config(tmp_path, batch_size=4)).fit(data)


def test_resume_names_a_metrics_line_it_cannot_read(tmp_path):
    data = ToyQA(16, 30, 3)
    Trainer(toy_model(), ToyQATask(), toy_config(tmp_path, max_steps=1, log_every=1)).fit(data)
    with open(tmp_path / "metrics.jsonl", "a") as log:
        log.write('{"split": "train", "step": \n')
    lines = len((tmp_path / "metrics.jsonl").read_text().splitlines())
    with pytest.raises(ValueError, match=rf"metrics\.jsonl line {lines} is not valid JSON"):
        Trainer(toy_model(), ToyQATask(), toy_config(tmp_path)).fit(data)


def test_resume_names_a_bad_line_in_the_middle_of_the_metrics(tmp_path):
    data = ToyQA(16, 30, 3)
    Trainer(toy_model(), ToyQATask(), toy_config(tmp_path, max_steps=2, log_every=1)).fit(data)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) >= 2
    lines[0] = lines[0][: len(lines[0]) // 2]  # cut short, yet followed by whole records: not a torn append
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"metrics\.jsonl line 1 is not valid JSON"):
        Trainer(toy_model(), ToyQATask(), toy_config(tmp_path)).fit(data)


def test_resume_drops_a_torn_last_metrics_line_with_a_warning(tmp_path):
    """A kill or a full disk during an append leaves the last record cut short, without its newline: it was logged
    after the last checkpoint (the log is on disk before a checkpoint is), so resuming drops it and says so."""
    data = ToyQA(16, 30, 3)
    Trainer(toy_model(), ToyQATask(), toy_config(tmp_path, max_steps=1, log_every=1)).fit(data)
    whole = read_records(tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as log:
        log.write('{"split": "train", "scope": "step", "step": 2, "lo')
    with pytest.warns(UserWarning, match=r"metrics\.jsonl: dropped its last line"):
        Trainer(toy_model(), ToyQATask(), toy_config(tmp_path, max_steps=2, log_every=1)).fit(data)
    records = read_records(tmp_path)  # every line is a whole record again
    assert records[: len(whole)] == whole
    assert [r["step"] for r in records if r["scope"] == "step"] == [1, 2]


def test_non_finite_loss_stops_training(tmp_path):
    class Exploding(ToyQATask):
        def compute(self, model, batch):
            losses, stats = super().compute(model, batch)
            return {**losses, "bad": losses["qa"] * float("nan")}, stats

    with pytest.raises(FloatingPointError, match="bad"):
        Trainer(toy_model(), Exploding(), toy_config(tmp_path)).fit(ToyQA(16, 30, 3))


def test_batch_must_split_over_accumulation(tmp_path):
    with pytest.raises(ValueError, match="not divisible"):
        Trainer(toy_model(), ToyQATask(), toy_config(tmp_path, batch_size=6, grad_accum=4))


def test_schedule_warms_up_then_decays_to_zero():
    factor = linear_warmup_decay(warmup_steps=5, total_steps=105)
    assert [factor(s) for s in (0, 1, 5, 55, 105, 200)] == [0.0, 0.2, 1.0, 0.5, 0.0, 0.0]


def test_sampler_shards_one_permutation_and_resumes_part_way():
    data = list(range(23))
    whole = list(ResumableSampler(data, 20, rank=0, world_size=1, seed=7))
    shards = [list(ResumableSampler(data, 10, rank=r, world_size=2, seed=7)) for r in range(2)]
    g = torch.Generator().manual_seed(7)
    perm = torch.randperm(23, generator=g).tolist()
    assert whole == perm[:20]
    # Rank r takes every other index: the first 2k of the permutation are the first k of each shard.
    assert sorted(shards[0][:3] + shards[1][:3]) == sorted(perm[:6])
    late = ResumableSampler(data, 20, rank=0, world_size=1, seed=7)
    late.start = 12
    assert list(late) == perm[12:20] and len(late) == 8
    late.set_epoch(1)
    assert list(late) != perm[12:20]


def test_cli_flags_map_to_config_fields():
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, TrainConfig, defaults={"lr": 5e-5})
    args = parser.parse_args(["--batch-size", "32", "--precision", "fp32", "--grad-accum", "2"])
    config = dataclass_from_args(TrainConfig, args)
    assert (config.batch_size, config.precision, config.grad_accum, config.lr) == (32, "fp32", 2, 5e-5)
    assert config.warmup_ratio == TrainConfig.warmup_ratio
    flags = {a.dest for a in parser._actions if a.dest != "help"}
    assert flags == {f.name for f in dataclasses.fields(TrainConfig)}
    assert all(a.help for a in parser._actions)


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    device = torch.device("cpu")
    np.random.seed(11)
    random.seed(12)
    torch.manual_seed(13)
    np.random.standard_normal()  # leaves numpy's second Gaussian cached: part of the state
    saved = _rng_state(device)
    expected = (np.random.standard_normal(3).tolist(), random.random(), torch.rand(3).tolist())

    torch.save({"rng": [saved]}, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)["rng"][0]
    np.random.seed(0)  # anything else
    random.seed(0)
    torch.manual_seed(0)
    _set_rng_state(loaded, device)
    assert (np.random.standard_normal(3).tolist(), random.random(), torch.rand(3).tolist()) == expected


def test_the_checkpoint_loads_with_weights_only(tmp_path):
    Trainer(toy_model(), ToyQATask(), toy_config(tmp_path, max_steps=1)).fit(ToyQA(16, 30, 3))
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    assert checkpoint["state"]["step"] == 1 and len(checkpoint["rng"]) == 1


def test_a_killed_run_s_temporaries_are_removed_when_the_run_starts_again(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    # What kill -9 during torch.save / save_pretrained leaves: names made by the atomic writers' mkstemp/mkdtemp.
    fd, stale_checkpoint = tempfile.mkstemp(dir=tmp_path, prefix=".last.pt.", suffix=".tmp")
    os.close(fd)
    stale_model = tempfile.mkdtemp(dir=tmp_path, prefix=".final.", suffix=".tmp")
    (tmp_path / "notes.tmp").write_text("the user's")

    Trainer(toy_model(), ToyQATask(), toy_config(tmp_path, max_steps=1)).fit(ToyQA(16, 30, 3))
    assert not os.path.exists(stale_checkpoint) and not os.path.exists(stale_model)
    assert (tmp_path / "notes.tmp").read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
