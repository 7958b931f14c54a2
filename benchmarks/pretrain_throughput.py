"""Pre-training throughput: samples/s of the trainer's step, the paper's schedule projected from it, and MFU.

One step is what ``training.engine.trainer.Trainer`` does per batch: forward with all five losses (15% of words and of
regions masked, the masked LM scored at the masked words only, half the pairs mismatched, answers on the matched
half) → backward → clip to norm 1.0 → AdamW step, in the precision of ``--precision`` (auto: bf16 autocast on a GPU
or a CPU with native bf16, else fp32; ``lxmert.precision``). Inputs are random tensors already on the device, so
data loading is not counted (the feature store serves a batch in milliseconds).

The projection is ``670K steps × 256 samples / (samples/s)`` on this one device — the paper's 20 epochs (§4.1:
"roughly 670K optimization steps" at batch 256), which took 10 days on 4 Titan Xp. On a GPU the step's FLOPs
(counted by PyTorch: matrix products and attention, forward and backward) over the device's dense bf16 peak give
the MFU (``benchmarks/mfu.py`` holds the table of peaks).

    python -m benchmarks.pretrain_throughput                          # base model, batch 32, on GPU if present
    python -m benchmarks.pretrain_throughput --batch-size 256          # the paper's batch, on one GPU
    python -m benchmarks.pretrain_throughput --device cpu --threads 2 --steps 3
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import dataclass, field

import torch

from benchmarks.mfu import count_flops, mfu
from lxmert.config import LxmertConfig
from lxmert.config_cli import parse_config
from lxmert.modeling import IGNORE, LxmertForPreTraining
from lxmert.precision import PRECISIONS, autocast, resolve_precision
from training.engine.distributed import resolve_device
from training.engine.trainer import clip_gradients

PAPER_STEPS = 670_000
PAPER_BATCH = 256
PAPER_HOURS = 10 * 24  # "10 days on 4 Titan Xp" (§4.1)


@dataclass
class ThroughputConfig:
    preset: str = field(default="base", metadata={"help": "model preset", "choices": ["base", "tiny"]})
    batch_size: int = field(default=32, metadata={"help": "samples per step"})
    tokens: int = field(default=20, metadata={"help": "tokens per sentence (the authors' max_seq_length)"})
    regions: int = field(default=36, metadata={"help": "regions per image"})
    steps: int = field(default=5, metadata={"help": "timed steps (after the warm-up)"})
    warmup: int = field(default=2, metadata={"help": "untimed steps first"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=0, metadata={"help": "CPU threads (0: PyTorch's default)"})
    precision: str = field(
        default="auto",
        metadata={
            "help": "bf16 autocast, fp32, or auto (bf16 where the device runs it natively)",
            "choices": PRECISIONS,
        },
    )
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})


def random_batch(config: LxmertConfig, bench: ThroughputConfig, device: torch.device) -> dict:
    """Inputs and targets for all five losses, shaped as the pre-training collate makes them."""
    B, T, R, F = bench.batch_size, bench.tokens, bench.regions, config.visual_feat_dim
    labels = torch.full((B, T), IGNORE)
    masked = torch.rand(B, T) < 0.15
    labels[masked] = torch.randint(config.vocab_size, (int(masked.sum()),))
    matched = (torch.rand(B) < 0.5).long()
    ans = torch.where(matched.bool(), torch.randint(config.num_qa_labels, (B,)), IGNORE)
    feats = torch.rand(B, R, F)
    batch = {
        "input_ids": torch.randint(config.vocab_size, (B, T)),
        "visual_feats": feats,
        "visual_pos": torch.rand(B, R, 4),
        "attention_mask": torch.ones(B, T, dtype=torch.long),
        "labels": labels,
        "lm_positions": masked,  # the trainer scores the masked LM at the masked words only
        "obj_labels": {
            "obj": (torch.randint(config.num_object_labels, (B, R)), torch.rand(B, R)),
            "attr": (torch.randint(config.num_attr_labels, (B, R)), torch.rand(B, R)),
            "feat": (feats, (torch.rand(B, R) < 0.15).float()),
        },
        "matched_label": matched,
        "ans": ans,
    }
    return _to(batch, device)


def _to(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    return value


def measure(bench: ThroughputConfig) -> dict:
    """Seconds per step (median) and samples/s of the training step on ``bench.device``."""
    device = resolve_device(bench.device)
    if bench.threads:
        torch.set_num_threads(bench.threads)
    torch.manual_seed(0)
    config = LxmertConfig.preset(bench.preset)
    model = LxmertForPreTraining(config).to(device).train()
    step_model = torch.compile(model) if bench.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, eps=1e-6)
    batch = random_batch(config, bench, device)
    precision = resolve_precision(bench.precision, device)

    def step() -> None:
        with autocast(precision, device):
            loss = step_model(**batch).loss
        if not torch.isfinite(loss):
            raise FloatingPointError("non-finite loss in the benchmark step")
        loss.backward()
        clip_gradients(model, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(bench.warmup):
        step()
    # Counted on the plain model: the compiled one hides its matrix products from the counter.
    flops = count_flops(lambda: _forward_backward(model, batch, precision, device))
    optimizer.zero_grad(set_to_none=True)
    times = []
    for _ in range(bench.steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    samples_per_s = bench.batch_size / seconds
    hours = PAPER_STEPS * PAPER_BATCH / samples_per_s / 3600
    utilisation = mfu(flops, seconds, device)
    return {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "preset": bench.preset,
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "batch_size": bench.batch_size,
        "precision": precision,
        "seconds_per_step": _figure(seconds),
        "samples_per_s": _figure(samples_per_s),
        "tflops_per_step": _figure(flops / 1e12),
        "achieved_tflops_per_s": _figure(flops / seconds / 1e12),
        "mfu": None if utilisation is None else _figure(utilisation),
        "paper_schedule_hours": _figure(hours),
        "paper_schedule_days": _figure(hours / 24),
        "paper_hours_on_4_titan_xp": PAPER_HOURS,
        "speedup_over_paper": _figure(PAPER_HOURS / hours),
    }


def _figure(value: float) -> float:
    """Four significant digits: a slow CPU's 0.15 samples/s keeps its precision as a GPU's 1500 does."""
    return float(f"{value:.4g}")


def _forward_backward(model: torch.nn.Module, batch: dict, precision: str, device: torch.device) -> None:
    with autocast(precision, device):
        loss = model(**batch).loss
    loss.backward()


def main(argv: list[str] | None = None) -> None:
    bench = parse_config(ThroughputConfig, argv, prog="python -m benchmarks.pretrain_throughput", doc=__doc__)
    print(json.dumps({**measure(bench), "config": dataclasses.asdict(bench)}, indent=1))


if __name__ == "__main__":
    main()
