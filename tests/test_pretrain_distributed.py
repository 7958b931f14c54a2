"""Two processes under torchrun (gloo, CPU) compute what one process computes on the whole batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pretrain_ddp_probe import gradients
from pretrain_fixture import build_world

TESTS = Path(__file__).parent
ROOT = TESTS.parent


pytestmark = pytest.mark.usefixtures("single_thread")


def torchrun(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_two_processes_give_the_gradients_of_one(tmp_path):
    world = build_world(tmp_path / "world")
    torchrun(str(TESTS / "pretrain_ddp_probe.py"), str(world), str(tmp_path / "ddp.pt"))
    probe = torch.load(tmp_path / "ddp.pt", weights_only=True)
    (masked0, answered0), (masked1, answered1) = probe["counts"]
    # Unequal shares are the hard case: a plain average of per-process means would weight them wrongly.
    assert masked0 != masked1 and answered0 != answered1, probe["counts"]

    single, _ = gradients(world, rank=0, world_size=1)
    assert set(single) == set(probe["grads"])
    # Relative to each gradient's scale (at least 1): zeroed regions give the visual feature LayerNorm an input
    # of variance ~0, so visn_fc.bias gets gradients ~1e4 at init, whose float32 rounding is ~1e-3.
    worst = max(
        ((single[k] - probe["grads"][k]).abs().max().item() / max(1.0, single[k].abs().max().item()), k)
        for k in single
    )
    assert worst[0] < 1e-6, f"gradient of {worst[1]} differs by {worst[0]} (relative)"


@pytest.mark.slow
def test_pretraining_command_runs_on_two_processes(tmp_path):
    world = build_world(tmp_path / "world")
    out = tmp_path / "run"
    torchrun(
        "-m", "training.pretrain", "--world", str(world), "--preset", "tiny", "--output", str(out),
        "--epochs", "2", "--batch-size", "16", "--qa-from-epoch", "1", "--device", "cpu", "--log-every", "1",
    )  # fmt: skip
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["scope"] == "step"]
    # 84 pairs // 16 = 5 steps an epoch, not 10: the batch is global. The first epoch has no QA targets on either
    # process, and its head must still take part in DDP's gradient exchange.
    assert [r["step"] for r in steps] == list(range(1, 11))
    assert [r["qa_loss"] > 0 for r in steps] == [False] * 5 + [True] * 5, steps
    valid = [r for r in records if r["split"] == "valid"][-1]
    # 28 validation pairs, sharded 14 + 14: the matching accuracy's denominator shows every pair counted once.
    assert valid["matched_acc"] * 28 == pytest.approx(round(valid["matched_acc"] * 28))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 10 and (out / "final" / "model.safetensors").is_file()
