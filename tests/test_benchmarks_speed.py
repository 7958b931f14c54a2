"""The speed benchmarks' plumbing: which variants run, and the ratios their reports print (never their speed)."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks import analysis_speed
from benchmarks.model_speed import MODES, BenchmarkConfig, Variant, report, variants_for
from lxmert.precision import cpu_has_bf16

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_variants_start_from_transformers_fp32():
    cpu = torch.device("cpu")
    names = [v.name for v in variants_for(BenchmarkConfig(precision="auto"), cpu)]
    assert names == ["transformers fp32", "ours fp32"] + (["ours bf16"] if cpu_has_bf16() else [])
    assert [v.name for v in variants_for(BenchmarkConfig(precision="fp32"), cpu)] == names[:2]
    forced = variants_for(BenchmarkConfig(precision="bf16", compile=True), cpu)
    assert [v.name for v in forced] == [
        "transformers fp32", "ours fp32", "ours bf16", "ours fp32 compiled", "ours bf16 compiled",
    ]  # fmt: skip


def test_the_report_prints_each_variants_speed_up_over_the_first():
    variants = [Variant("transformers", "fp32"), Variant("ours", "fp32"), Variant("ours", "bf16")]
    seconds = {"transformers fp32": 6.0, "ours fp32": 3.0, "ours bf16": 1.5}
    times = {
        clock: {(v.name, m): [seconds[v.name]] * 3 for v in variants for m in MODES}
        for clock in ("wall", "cpu")
    }
    text = report(BenchmarkConfig(repeats=3), torch.device("cpu"), variants, times, {})
    rows = [line.split() for line in text.splitlines() if line.startswith("train_step")]
    assert [row[-1] for row in rows] == ["1.00x", "2.00x", "4.00x"]  # cpu clock's ratio, last column


def test_analysis_speed_times_every_part_in_each_precision(capsys):
    threads = torch.get_num_threads()
    try:
        medians = analysis_speed.main(
            ["--preset", "tiny", "--regions", "4", "--ig-steps", "2", "--repeats", "1", "--agreement-examples", "2",
             "--threads", "1", "--precision", "bf16"]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert set(medians) == {"fp32", "bf16"}
    assert (
        set(medians["fp32"])
        == set(medians["bf16"])
        >= {"answers", "attention", "relevancy", "head_importance", "integrated_gradients"}
    )
    out = capsys.readouterr().out
    assert "fp32 / bf16" in out and "top-1 answers agree" in out


def test_analysis_speed_detects_the_readme_sample_with_the_shipped_detector(capsys):
    # The shipped detector is the torchvision network, which runs in fp32 only: it detects once per repeat in
    # fp32 while the analysis is timed in both precisions.
    threads = torch.get_num_threads()
    try:
        medians = analysis_speed.main(
            [
                *("--checkpoint", str(ROOT / "assets/default/model")),
                *("--detector", str(ROOT / "assets/default/detector")),
                *("--image", str(ROOT / "assets/samples/synth_000010.png")),
                *("--ig-steps", "2", "--repeats", "1", "--warmup", "0", "--agreement-examples", "0"),
                *("--threads", "1", "--precision", "bf16"),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert set(medians) == {"fp32", "bf16"}
    out = capsys.readouterr().out
    assert "detection fp32" in out and "detection bf16" not in out
