"""A pre-training run killed mid-epoch (SIGKILL) and resumed ends with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pretrain_fixture import build_world
from safetensors.torch import load_file

from lxmert.fileio import is_temp_name

ROOT = Path(__file__).parent.parent


def command(world: Path, out: Path) -> list[str]:
    # 84 pairs // 8 = 10 steps per epoch, a checkpoint after every step; dropout stays on (the RNG must resume).
    return [
        sys.executable, "-m", "training.pretrain", "--world", str(world), "--preset", "tiny", "--output", str(out),
        "--epochs", "3", "--batch-size", "8", "--grad-accum", "2", "--qa-from-epoch", "1", "--save-every", "1",
        "--eval-every", "4", "--device", "cpu", "--threads", "1", "--seed", "5",
    ]  # fmt: skip


def checkpoint_step(path: Path) -> int:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["state"]["step"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return -1


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path):
    world = build_world(tmp_path / "world")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    subprocess.run(command(world, straight), cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)

    process = subprocess.Popen(
        command(world, broken), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 600
    while checkpoint_step(broken / "last.pt") < 13 and time.monotonic() < deadline:  # mid-way through epoch 2
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    killed_at = checkpoint_step(broken / "last.pt")
    assert 13 <= killed_at < 30, killed_at
    assert not (broken / "final").exists()

    resumed = subprocess.run(
        command(world, broken), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {broken / 'last.pt'}: step {killed_at}" in resumed.stdout
    assert not [p.name for p in broken.iterdir() if is_temp_name(p.name)], "the kill's temporaries remain"

    a = load_file(straight / "final" / "model.safetensors")
    b = load_file(broken / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs by {(a[name] - b[name]).abs().max()}"
    log = [line for line in (broken / "metrics.jsonl").read_text().splitlines() if '"scope": "step"' in line]
    assert len(log) == len(set(log)) == 30 // 10  # log_every 10: steps 10, 20, 30 once each
