"""The throughput benchmark runs the trainer's step on the tiny model and projects the paper's schedule from it."""

from __future__ import annotations

import pytest

from benchmarks.pretrain_throughput import PAPER_BATCH, PAPER_STEPS, ThroughputConfig, measure


def test_the_benchmark_times_a_step_and_projects_the_papers_schedule():
    result = measure(ThroughputConfig(preset="tiny", batch_size=4, steps=2, warmup=1, device="cpu"))
    assert result["seconds_per_step"] > 0
    assert result["samples_per_s"] == pytest.approx(4 / result["seconds_per_step"], rel=1e-2)
    days = PAPER_STEPS * PAPER_BATCH / result["samples_per_s"] / 86400
    assert result["paper_schedule_days"] == pytest.approx(days, abs=0.1)
