"""Time our LxmertForPreTraining against transformers' on the same weights and inputs, in fp32 and bf16.

Both models get identical random weights (transformers' initialisation, copied into ours by key), the same
inputs (a batch of B sentences of T tokens with 15% masked, R regions), the same labels for all five pre-training
losses, the same thread count, and the same mode (eval for inference, train with dropout for the training
step). A training step is ``zero_grad → forward with every loss → backward → AdamW step``, fused AdamW on both
sides.

Variants: on a CPU, transformers fp32 (the baseline), ours fp32 and — where the CPU has native bf16, or with
``--precision bf16`` — ours under bf16 autocast (``lxmert.precision``; weights and optimiser stay fp32). On a GPU
both sides run in the resolved ``--precision`` (bf16 by default), and the MFU of each is printed: PyTorch's count
of the step's FLOPs over the device's dense bf16 peak (``benchmarks/mfu.py``).

Repeats alternate between the variants (forward and reverse order in turn) so that load from other processes
hits all alike; medians of wall time and, on a CPU, of process CPU time (which a busy shared machine inflates
less) are reported, with each variant's speed-up over the first.

Peak memory is that of one warm call above the level just before it, which already holds the weights, the
optimizer state and the previous step's gradients (freed by ``zero_grad`` at the start of the step): so it is
the activations, new gradients and workspace less those old gradients. ``torch.cuda.max_memory_allocated`` on a
GPU; on a CPU, where torch keeps no allocator statistics, each variant runs again in a fresh subprocess whose RSS
is sampled.

    python -m benchmarks.model_speed                      # base config, B=32, T=20, R=36
    python -m benchmarks.model_speed --repeats 10 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from benchmarks.mfu import count_flops, mfu
from lxmert import LxmertConfig, LxmertForPreTraining
from lxmert.config_cli import add_dataclass_arguments, command_parser, dataclass_from_args
from lxmert.modeling import IGNORE
from lxmert.precision import PRECISIONS, autocast, cpu_has_bf16, resolve_precision

SIDES = ("ours", "transformers")
MODES = ("inference", "train_step")


@dataclass(frozen=True)
class Variant:
    """One timed configuration: a model (``side``) in a precision."""

    side: str  # ours or transformers
    precision: str  # bf16 or fp32
    compiled: bool = False  # through torch.compile

    @property
    def name(self) -> str:
        return f"{self.side} {self.precision}" + (" compiled" if self.compiled else "")


@dataclass
class BenchmarkConfig:
    # The paper's model: 9/5/5 layers, hidden 768, 2048-d regions.
    preset: str = field(default="base", metadata={"help": "model preset (base, tiny)"})
    batch_size: int = field(
        default=32, metadata={"help": "sentence-image pairs (the authors' fine-tuning batch)"}
    )
    tokens: int = field(default=20, metadata={"help": "tokens per sentence (the authors' max_seq_length)"})
    regions: int = field(default=36, metadata={"help": "regions per image"})
    # The second call still pays one-off costs (kernel selection) on CPU.
    warmup: int = field(default=2, metadata={"help": "untimed calls per side and mode"})
    repeats: int = field(default=5, metadata={"help": "timed calls per side and mode"})
    threads: int = field(default=0, metadata={"help": "torch threads (0: default)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:1, ..."})
    precision: str = field(
        default="auto",
        metadata={
            "help": "GPU: both sides in this precision (auto: bf16); CPU: ours also in bf16 when auto finds native "
            "bf16 or when bf16 is asked for (transformers and ours always run in fp32 there)",
            "choices": PRECISIONS,
        },
    )
    memory: bool = field(default=True, metadata={"help": "measure peak memory"})
    compile: bool = field(
        default=False,
        metadata={"help": "also time ours through torch.compile in each precision (compiled in the warm-up)"},
    )
    seed: int = field(default=0, metadata={"help": "seed of weights and inputs"})


def build_models(cfg: BenchmarkConfig, device: torch.device, sides=SIDES) -> dict[str, nn.Module]:
    """Both models with transformers' random initialisation, ours a key-for-key copy."""
    import transformers

    config = LxmertConfig.preset(cfg.preset)
    fields = config.to_dict()
    fields.pop("share_cross_attention")  # transformers always shares the cross-attention
    torch.manual_seed(cfg.seed)
    theirs = transformers.LxmertForPreTraining(transformers.LxmertConfig(**fields))
    models: dict[str, nn.Module] = {}
    if "ours" in sides:
        ours = LxmertForPreTraining(config)
        ours.load_state_dict(theirs.state_dict())
        models["ours"] = ours.to(device)
    if "transformers" in sides:
        models["transformers"] = theirs.to(device)
    return models


def build_batch(
    cfg: BenchmarkConfig, config: LxmertConfig, device: torch.device
) -> dict[str, dict[str, Tensor]]:
    """Inputs and labels for every pre-training loss; 15% of the tokens are masked-LM targets."""
    g = torch.Generator().manual_seed(cfg.seed)
    B, T, R = cfg.batch_size, cfg.tokens, cfg.regions
    input_ids = torch.randint(1, config.vocab_size, (B, T), generator=g)
    labels = torch.where(torch.rand(B, T, generator=g) < 0.15, input_ids, torch.full_like(input_ids, IGNORE))
    confidence = torch.rand(B, R, generator=g)
    feats = torch.rand(B, R, config.visual_feat_dim, generator=g)
    inputs = {
        "input_ids": input_ids,
        "visual_feats": feats,
        "visual_pos": torch.rand(B, R, 4, generator=g),
        "attention_mask": torch.ones(B, T, dtype=torch.long),
        "token_type_ids": torch.zeros(B, T, dtype=torch.long),
    }
    targets = {
        "labels": labels,
        "matched_label": torch.randint(0, 2, (B,), generator=g),
        "ans": torch.randint(0, config.num_qa_labels, (B,), generator=g),
        "obj_labels": {
            "obj": (torch.randint(0, config.num_object_labels, (B, R), generator=g), confidence),
            "attr": (torch.randint(0, config.num_attr_labels, (B, R), generator=g), confidence),
            "feat": (feats, (torch.rand(B, R, generator=g) < 0.15).float()),
        },
    }
    return {"inputs": _to(inputs, device), "targets": _to(targets, device)}


def _to(tree, device: torch.device):
    if isinstance(tree, Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: _to(v, device) for k, v in tree.items()}
    return tuple(_to(v, device) for v in tree)


def variants_for(cfg: BenchmarkConfig, device: torch.device) -> list[Variant]:
    """The variants to time, the baseline (transformers) first."""
    precision = resolve_precision(cfg.precision, device)
    if device.type == "cuda":
        variants = [Variant("transformers", precision), Variant("ours", precision)]
    else:
        variants = [Variant("transformers", "fp32"), Variant("ours", "fp32")]
        variants += [Variant("ours", "bf16")] if precision == "bf16" else []
    if cfg.compile:
        variants += [Variant("ours", v.precision, compiled=True) for v in variants if v.side == "ours"]
    return variants


def make_steps(
    models: dict[str, nn.Module],
    batch: dict[str, dict[str, Tensor]],
    device: torch.device,
    variants: list[Variant],
) -> dict[tuple[str, str], Callable[[], None]]:
    """One callable per (variant name, mode); each runs one inference pass or one training step.

    The variants of one side share its model and optimizer: precision is chosen per call, by autocast, and a
    compiled variant runs the same module through ``torch.compile``.
    """
    # fused: one kernel per step instead of a dozen passes per tensor; the same optimizer on both sides.
    optimizers = {
        side: torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True) for side, model in models.items()
    }
    steps = {}
    # Compiled on the first call (a warm-up call), once per mode and precision.
    compiled = (
        {side: torch.compile(model) for side, model in models.items()}
        if any(v.compiled for v in variants)
        else {}
    )
    for variant in variants:
        model = (compiled if variant.compiled else models)[variant.side]
        optimizer = optimizers[variant.side]

        def inference(model=model, precision=variant.precision) -> None:
            model.eval()
            with torch.inference_mode(), autocast(precision, device):
                model(**batch["inputs"])

        def train_step(model=model, optimizer=optimizer, precision=variant.precision) -> None:
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with autocast(precision, device):
                loss = model(**batch["inputs"], **batch["targets"]).loss
            loss.backward()
            optimizer.step()

        steps[variant.name, "inference"] = inference
        steps[variant.name, "train_step"] = train_step
    return steps


def count_step_flops(model: nn.Module, batch: dict[str, dict[str, Tensor]], variant: Variant, device) -> dict:
    """FLOPs of one inference pass and of one training step's forward and backward (the optimizer adds none
    that the counter sees)."""

    def forward_backward() -> None:
        with autocast(variant.precision, device):
            loss = model(**batch["inputs"], **batch["targets"]).loss
        loss.backward()

    def forward() -> None:
        with torch.inference_mode(), autocast(variant.precision, device):
            model(**batch["inputs"])

    flops = {"inference": count_flops(forward), "train_step": count_flops(forward_backward)}
    model.zero_grad(set_to_none=True)
    return flops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(
    steps, cfg: BenchmarkConfig, device: torch.device, names: list[str]
) -> dict[str, dict[tuple[str, str], list[float]]]:
    """Wall-clock and process CPU seconds per call, the variants alternating within each repeat.

    CPU time is reported beside wall time because on a shared machine the wall clock also counts the time
    other processes held the cores.
    """
    times: dict[str, dict[tuple[str, str], list[float]]] = {
        "wall": {k: [] for k in steps},
        "cpu": {k: [] for k in steps},
    }
    for mode in MODES:
        for repeat in range(cfg.warmup + cfg.repeats):
            order = names if repeat % 2 == 0 else names[::-1]
            for name in order:
                _sync(device)
                wall, cpu = time.perf_counter(), time.process_time()
                steps[name, mode]()
                _sync(device)
                if repeat >= cfg.warmup:
                    times["wall"][name, mode].append(time.perf_counter() - wall)
                    times["cpu"][name, mode].append(time.process_time() - cpu)
    return times


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_above_start(fn: Callable[[], None], interval_s: float = 0.001) -> float:
    """MiB by which the process RSS rose above its starting level while ``fn`` ran, sampled every ``interval_s``."""
    start = peak = _rss_mib()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_mib())
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak, _rss_mib()) - start


def measure_memory_here(cfg: BenchmarkConfig, variant: Variant) -> dict[str, float]:
    """Peak memory of one call per mode above the level before it, in MiB, after one warm-up call."""
    device = resolve_device(cfg.device)
    models = build_models(cfg, device, sides=(variant.side,))
    batch = build_batch(cfg, LxmertConfig.preset(cfg.preset), device)
    steps = make_steps(models, batch, device, [variant])
    side = variant.name
    peaks = {}
    for mode in MODES:
        steps[side, mode]()  # the first call allocates optimizer state and warms up kernels
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            steps[side, mode]()
            torch.cuda.synchronize()
            peaks[mode] = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            peaks[mode] = _peak_rss_above_start(steps[side, mode])
    return peaks


def measure_memory(
    cfg: BenchmarkConfig, device: torch.device, variants: list[Variant]
) -> dict[tuple[str, str], float]:
    peaks = {}
    for variant in variants:
        if device.type == "cuda":
            result = measure_memory_here(cfg, variant)
        else:
            # A fresh process per variant, with glibc returning every block of 64 KiB or more to the system on
            # free, so that RSS follows the live tensors instead of keeping the high-water mark of earlier work.
            cmd = [sys.executable, "-m", "benchmarks.model_speed", "--memory-child", variant.side,
                   "--memory-precision", variant.precision, "--config-json", json.dumps(dataclasses.asdict(cfg))]  # fmt: skip
            cmd += ["--memory-compiled"] if variant.compiled else []
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            result = json.loads(out.strip().splitlines()[-1])
        for mode, mib in result.items():
            peaks[variant.name, mode] = mib
    return peaks


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def report(cfg, device, variants: list[Variant], times, peaks, flops=None) -> str:
    """A table with one row per mode and variant: median times, speed-up over the first variant, memory, MFU."""
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads, native bf16: {'yes' if cpu_has_bf16() else 'no'}"
    )
    clocks = ("wall",) if device.type == "cuda" else ("wall", "cpu")  # GPU work is not process CPU time
    baseline = variants[0].name
    header = f"{'mode':<12}{'variant':<20}"
    for clock in clocks:
        header += f"{clock + ' s':>10}{'vs ' + baseline:>24}"
    if peaks:
        header += f"{'peak MiB':>10}"
    if flops:
        header += f"{'TFLOP':>8}{'MFU':>7}"
    lines = [
        f"LXMERT {cfg.preset}: B={cfg.batch_size} T={cfg.tokens} R={cfg.regions}, {where}, "
        f"median of {cfg.repeats} after {cfg.warmup} warm-up, variants alternated (torch {torch.__version__})",
        header,
    ]
    for mode in MODES:
        for variant in variants:
            line = f"{mode:<12}{variant.name:<20}"
            for clock in clocks:
                ours = statistics.median(times[clock][variant.name, mode])
                theirs = statistics.median(times[clock][baseline, mode])
                line += f"{ours:>10.3f}{theirs / ours:>23.2f}x"
            if peaks:
                line += f"{peaks[variant.name, mode]:>10.0f}"
            if flops:
                seconds = statistics.median(times["wall"][variant.name, mode])
                utilisation = mfu(flops[mode], seconds, device)
                line += f"{flops[mode] / 1e12:>8.2f}" + (
                    f"{utilisation:>7.1%}" if utilisation else f"{'?':>7}"
                )
            lines.append(line)
    if peaks:
        kind = "CUDA allocator" if device.type == "cuda" else "process RSS (sampled every ms)"
        lines.append(f"peak memory: {kind} peak of one warm call above the level just before it")
    if flops:
        lines.append("MFU: PyTorch's FLOP count of the call (same for both sides) / time / dense bf16 peak")
    return "\n".join(lines)


def main() -> None:
    parser = command_parser("python -m benchmarks.model_speed", __doc__.split("\n\n")[0])
    add_dataclass_arguments(parser, BenchmarkConfig)
    parser.add_argument("--memory-child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--memory-precision", choices=("bf16", "fp32"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-compiled", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:  # internal: one variant's memory measurement in a fresh process
        cfg = BenchmarkConfig(**json.loads(args.config_json))
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        variant = Variant(args.memory_child, args.memory_precision, args.memory_compiled)
        print(json.dumps(measure_memory_here(cfg, variant)))
        return
    cfg = dataclass_from_args(BenchmarkConfig, args)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.threads = torch.get_num_threads()  # the memory subprocesses get the same count
    device = resolve_device(cfg.device)
    variants = variants_for(cfg, device)
    models = build_models(cfg, device)
    batch = build_batch(cfg, LxmertConfig.preset(cfg.preset), device)
    steps = make_steps(models, batch, device, variants)
    times = time_interleaved(steps, cfg, device, [v.name for v in variants])
    flops = count_step_flops(models["ours"], batch, variants[-1], device) if device.type == "cuda" else None
    del models, steps, batch
    peaks = measure_memory(cfg, device, variants) if cfg.memory else {}
    print(report(cfg, device, variants, times, peaks, flops))


if __name__ == "__main__":
    main()
