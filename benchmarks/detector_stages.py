"""Where the caffe network's time goes: seconds, FLOPs and the fraction of the CPU's peak, stage by stage.

A stage begins where a module's forward begins or ends (forward hooks on the network's own modules), so the
network runs unchanged. The stages of one image (``CaffeFasterRCNN.forward``):

    pre-processing          to tensor, resize, BGR, mean subtraction
    res1 .. res4            the backbone's stem and stages, on the whole image
    RPN + proposal NMS      the RPN head, decoding, NMS, the top ``rpn_post_nms_top_n_test`` proposals
    RoIPool                 the pooled 14x14 maps of the proposals
    res5                    res5 on every proposal, mean-pooled
    box head + class NMS    class scores, per-class boxes, the per-class selection of the regions
    attribute head          class embedding, the attribute MLP

FLOPs are PyTorch's count (``torch.utils.flop_counter``: 2 per multiply-add of the convolutions and matrix
products) per stage. The peak is measured in the same run: a 4096x4096 matrix product in float32 and in bfloat16
on the same threads. Wall time and this process's CPU time are both reported: on a shared machine the wall
time depends on the other jobs, the CPU time less so (each stage's CPU-based rate is its FLOPs over its CPU
seconds divided by the thread count, set against the peak's, computed the same way).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lxmert.detection import Detector
from lxmert.detection.images import LoadedImage, to_tensor

# (stage, module, event): the stage begins at that module's forward "pre" (start) or "post" (end) event; a
# stage ends where the next begins, the last one where the model returns.
BOUNDARIES = (
    ("res1 (stem)", "backbone.stem", "pre"),
    ("res2", "backbone.res2", "pre"),
    ("res3", "backbone.res3", "pre"),
    ("res4", "backbone.res4", "pre"),
    ("RPN + proposal NMS", "backbone", "post"),
    ("RoIPool", "proposal_generator", "post"),
    ("res5", "roi_heads.res5", "pre"),
    ("box head + class NMS", "roi_heads.res5", "post"),
)
FIRST_STAGE = "pre-processing"
# The attribute head runs inside the box predictor, between its class scores and its box deltas: its modules'
# intervals are taken out of the stage around them.
ATTRIBUTE_STAGE, ATTRIBUTE_SPANS = (
    "attribute head",
    (
        ("roi_heads.box_predictor.cls_embedding", "roi_heads.box_predictor.fc_attr"),
        ("roi_heads.box_predictor.attr_score", "roi_heads.box_predictor.attr_score"),
    ),
)
STAGES = (FIRST_STAGE, *(stage for stage, _, _ in BOUNDARIES), ATTRIBUTE_STAGE)
# The modules whose FLOPs make each stage's.
STAGE_MODULES = {
    "res1 (stem)": ("backbone.stem",),
    "res2": ("backbone.res2",),
    "res3": ("backbone.res3",),
    "res4": ("backbone.res4",),
    "RPN + proposal NMS": ("proposal_generator",),
    "res5": ("roi_heads.res5",),
    "box head + class NMS": ("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred"),
    ATTRIBUTE_STAGE: ("roi_heads.box_predictor.fc_attr", "roi_heads.box_predictor.attr_score"),
}


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


@contextmanager
def _events(
    model: nn.Module, points: set[tuple[str, str]]
) -> Iterator[dict[tuple[str, str], tuple[float, float]]]:
    """Records the (wall, CPU) clock of each (module, "pre" | "post") event in ``points`` while open."""
    seen: dict[tuple[str, str], tuple[float, float]] = {}

    def recorder(key: tuple[str, str]) -> Callable[..., None]:
        def record(*_) -> None:  # returns None: a hook's return value would replace the module's input/output
            seen[key] = _clock()

        return record

    handles = []
    for name, event in points:
        module = model.get_submodule(name)
        register = module.register_forward_pre_hook if event == "pre" else module.register_forward_hook
        handles.append(register(recorder((name, event))))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _points() -> set[tuple[str, str]]:
    points = {(module, event) for _, module, event in BOUNDARIES}
    for first, last in ATTRIBUTE_SPANS:
        points |= {(first, "pre"), (last, "post")}
    return points


def stage_seconds(detector: Detector, loaded: LoadedImage, precision: str) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of each of :data:`STAGES` for one image through the network, in ``precision``."""
    model = detector.model
    with torch.inference_mode(), detector.autocast(precision), _events(model, _points()) as seen:
        start = _clock()
        model([to_tensor(loaded.image).to(detector.device)])
        end = _clock()
    marks = [(FIRST_STAGE, start)] + [(stage, seen[(module, event)]) for stage, module, event in BOUNDARIES]
    marks.append(("", end))
    seconds = {
        stage: (following[0] - begin[0], following[1] - begin[1])
        for (stage, begin), (_, following) in zip(marks, marks[1:], strict=False)
    }
    attribute = [0.0, 0.0]
    for first, last in ATTRIBUTE_SPANS:
        for clock in (0, 1):
            attribute[clock] += seen[(last, "post")][clock] - seen[(first, "pre")][clock]
    box_head = seconds["box head + class NMS"]
    seconds["box head + class NMS"] = (box_head[0] - attribute[0], box_head[1] - attribute[1])
    seconds[ATTRIBUTE_STAGE] = (attribute[0], attribute[1])
    return seconds


def stage_flops(detector: Detector, loaded: LoadedImage) -> dict[str, int]:
    """FLOPs of each of :data:`STAGES` for one image (one untimed float32 run; the count is the same in any
    precision)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        detector.model([to_tensor(loaded.image).to(detector.device)])
    prefix = type(detector.model).__name__
    counts = {
        name.removeprefix(prefix + "."): sum(ops.values()) for name, ops in counter.get_flop_counts().items()
    }
    return {stage: sum(counts.get(module, 0) for module in STAGE_MODULES.get(stage, ())) for stage in STAGES}


def matmul_peak(dtype: torch.dtype, size: int = 4096, repeats: int = 3) -> tuple[float, float]:
    """(wall, CPU-based) FLOP/s of a ``size`` square matrix product in ``dtype`` on this process's threads; the
    CPU-based rate is FLOPs over CPU seconds times the thread count."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start = _clock()
    for _ in range(repeats):
        a @ b
    end = _clock()
    flops = 2 * size**3 * repeats
    return flops / (end[0] - start[0]), flops / (end[1] - start[1]) * torch.get_num_threads()


PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def profile(detector: Detector, loaded: LoadedImage, precisions: list[str], repeats: int) -> list[dict]:
    """Each stage's median wall and CPU seconds, FLOPs and fraction of the peak, per precision; printed too.

    The precisions alternate within each repeat (forward, then reverse order), and the peaks are measured between
    repeats, so that other jobs on the machine weigh on all of them alike.
    """
    flops = stage_flops(detector, loaded)
    times: dict[str, list[dict[str, tuple[float, float]]]] = {precision: [] for precision in precisions}
    peaks: dict[str, list[tuple[float, float]]] = {precision: [] for precision in precisions}
    load = []
    for precision in precisions:
        stage_seconds(detector, loaded, precision)  # warm-up: folded weights, oneDNN's kernels
    for repeat in range(repeats):
        load.append(os.getloadavg()[0])
        for precision in precisions if repeat % 2 == 0 else precisions[::-1]:
            peaks[precision].append(matmul_peak(PEAK_DTYPES[precision]))
            times[precision].append(stage_seconds(detector, loaded, precision))
    rows = []
    for precision in precisions:
        peak_wall = statistics.median(p[0] for p in peaks[precision])
        peak_cpu = statistics.median(p[1] for p in peaks[precision])
        threads = torch.get_num_threads()
        print(
            f"{precision}: {precision} matrix-product peak {peak_wall / 1e9:.0f} GFLOP/s wall, {peak_cpu / 1e9:.0f} "
            f"CPU-based; {threads} threads; medians of {repeats}; load average {min(load):.1f}-{max(load):.1f}"
        )
        print(
            f"  {'stage':22s} {'GFLOP':>7s} {'wall ms':>8s} {'CPU ms':>8s} {'% peak wall':>11s} {'% peak CPU':>10s}"
        )
        for stage in [*STAGES, "total"]:
            if stage == "total":
                wall = statistics.median(sum(w for w, _ in run.values()) for run in times[precision])
                cpu = statistics.median(sum(c for _, c in run.values()) for run in times[precision])
                gflop = sum(flops.values()) / 1e9
            else:
                wall = statistics.median(run[stage][0] for run in times[precision])
                cpu = statistics.median(run[stage][1] for run in times[precision])
                gflop = flops.get(stage, 0) / 1e9
            of_wall = 100 * gflop * 1e9 / wall / peak_wall if wall > 0 else 0.0
            of_cpu = 100 * gflop * 1e9 * threads / cpu / peak_cpu if cpu > 0 else 0.0
            print(
                f"  {stage:22s} {gflop:7.1f} {wall * 1e3:8.0f} {cpu * 1e3:8.0f} {of_wall:11.1f} {of_cpu:10.1f}"
            )
            rows.append(
                {
                    "precision": precision,
                    "stage": stage,
                    "gflop": round(gflop, 3),
                    "wall_ms": round(wall * 1e3, 1),
                    "cpu_ms": round(cpu * 1e3, 1),
                    "percent_of_peak_wall": round(of_wall, 1),
                    "percent_of_peak_cpu": round(of_cpu, 1),
                    "peak_gflops_wall": round(peak_wall / 1e9, 1),
                    "peak_gflops_cpu": round(peak_cpu / 1e9, 1),
                    "threads": threads,
                    "load_average": [min(load), max(load)],
                }
            )
    return rows
