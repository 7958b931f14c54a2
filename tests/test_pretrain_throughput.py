"""The throughput benchmark runs the trainer's step on the tiny model and projects the paper's schedule from it."""

from __future__ import annotations

import pytest
import torch

from benchmarks.mfu import count_flops, peak_flops
from benchmarks.pretrain_throughput import PAPER_BATCH, PAPER_STEPS, ThroughputConfig, measure


def test_the_benchmark_times_a_step_and_projects_the_papers_schedule():
    result = measure(ThroughputConfig(preset="tiny", batch_size=4, steps=2, warmup=1, device="cpu"))
    assert result["seconds_per_step"] > 0
    assert result["samples_per_s"] == pytest.approx(4 / result["seconds_per_step"], rel=1e-2)
    days = PAPER_STEPS * PAPER_BATCH / result["samples_per_s"] / 86400
    assert result["paper_schedule_days"] == pytest.approx(days, rel=1e-3)  # four significant digits


def test_the_projection_is_in_hours_beside_the_papers_ten_days():
    result = measure(
        ThroughputConfig(preset="tiny", batch_size=4, steps=1, warmup=1, device="cpu", precision="fp32")
    )
    hours = PAPER_STEPS * PAPER_BATCH / result["samples_per_s"] / 3600
    assert result["paper_schedule_hours"] == pytest.approx(hours, rel=1e-2)
    assert result["paper_hours_on_4_titan_xp"] == 240
    assert result["speedup_over_paper"] == pytest.approx(240 / hours, rel=2e-2)
    assert result["tflops_per_step"] > 0 and result["mfu"] is None  # no peak for a CPU


def test_flops_are_counted_as_two_per_multiply_add():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    assert count_flops(lambda: layer(x)) == 2 * 3 * 8 * 4
    assert count_flops(lambda: layer(x.requires_grad_()).sum().backward()) == 3 * (2 * 3 * 8 * 4)


def test_peaks_match_the_most_specific_device_name():
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA L4") == 121e12 and peak_flops("NVIDIA L40S") == 362e12
    assert peak_flops("Tesla P100") is None
