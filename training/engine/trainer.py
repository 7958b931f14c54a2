"""The shared trainer: one visible loop for pre-training and fine-tuning, on one CPU or many GPUs.

    for each optimiser step:  forward → losses dict → backward (× grad_accum) → clip → step → log / eval / save

A ``Task`` (``training/tasks/base.py``) supplies the batching, the named losses and the metrics; the trainer owns
everything else:

- **Batch size** ``batch_size`` is global: samples per optimiser step over all processes and accumulation
  micro-steps. Each process loads ``batch_size / (world_size × grad_accum)`` samples per micro-step, so a run's
  optimisation does not depend on how many processes share it.
- **Data order** is a function of ``(seed, epoch)``: a seeded permutation sharded like ``DistributedSampler``
  (``drop_last``). With per-item randomness also seeded by ``(seed, epoch, index)`` (``dataset.set_epoch``), one
  process and N processes see the same global batches.
- **Optimisation** follows the paper: AdamW (no decay on biases and LayerNorm weights), linear warm-up over
  ``warmup_ratio`` of the steps then linear decay to zero, gradient clipping (global, and optionally per tensor
  first as the authors' ``BertAdam`` does: ``max_tensor_grad_norm``), bf16 autocast (``precision``: fp32 master weights and losses), optional
  ``torch.compile``, DistributedDataParallel under ``torchrun``.
- **Checkpoints**: ``output/last.pt`` (model, optimiser, scheduler, step, epoch, batches done in the epoch and
  every process's RNG state, all as tensors and plain containers, so it is read back with ``weights_only=True``:
  no code runs from it), written atomically every ``save_every`` steps and at each epoch end. With
  ``resume`` a run restarts from it exactly where it stopped — mid-epoch included — and ends with the same weights
  as a run that was never interrupted. ``output/final/`` and ``output/best/`` (best ``task.main_metric`` on the
  validation set) are written with ``save_pretrained``.
- **Metrics**: one JSON object per line in ``output/metrics.jsonl``: ``split`` ("train" or "valid"), ``scope``
  ("step", "epoch" or "eval"), ``step``, ``epoch`` (fractional), ``time`` (training seconds since the run began,
  resumes included), ``loss`` and ``<name>_loss`` per loss, each task metric (e.g. ``mask_lm_acc``); train records
  add ``lr``, ``samples_per_s`` and ``grad_norm`` (the global norm before clipping, averaged over the window).
  The log is on disk before each checkpoint is; a resume drops the records logged after the checkpoint, and a last
  record that a kill or a full disk cut short.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from lxmert.checkpoints import METRICS_FILE, read_torch_file
from lxmert.errors import UnreadableFileError
from lxmert.fileio import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    read_json_lines,
    remove_stale_temp_files,
)
from lxmert.precision import PRECISIONS, autocast, resolve_precision
from training.tasks.base import MetricSums, Task, add_sums, metrics_from_sums

from . import distributed

CHECKPOINT_FILE = "last.pt"
RECORD_KEYS = ("split", "scope", "step", "epoch", "time")  # bookkeeping of every metrics record
SUMMARY_FILE = "summary.json"  # what a finished run reports: final validation scores, steps, time
CONFIG_FILE = "train_config.json"
# Fields that fix the data order and the optimisation trajectory: a resume with other values could not continue
# the same run.
RESUME_INVARIANTS = ("seed", "batch_size", "grad_accum", "epochs", "lr", "warmup_ratio")
# How a user of the commands built on TrainConfig's flags starts over instead of resuming.
RESTART_ADVICE = "use another --output or --no-resume"


@dataclass
class TrainConfig:
    """Everything the trainer needs; defaults are the paper's pre-training recipe (§4.1, AL ``lxmert_pretrain.py``)."""

    output: str = field(
        default="runs/train", metadata={"help": "output directory (checkpoints, metrics.jsonl)"}
    )
    epochs: int = field(default=20, metadata={"help": "training epochs"})
    batch_size: int = field(
        default=256,
        metadata={
            "help": "global batch: samples per optimiser step over all processes and accumulation steps"
        },
    )
    eval_batch_size: int = field(
        default=0, metadata={"help": "validation batch per process (0: the training batch per process)"}
    )
    lr: float = field(default=1e-4, metadata={"help": "peak learning rate"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "fraction of steps of linear warm-up"})
    weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay (not on biases/LayerNorm)"}
    )
    adam_eps: float = field(default=1e-6, metadata={"help": "AdamW epsilon (BertAdam's 1e-6)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0: no clipping)"})
    max_tensor_grad_norm: float = field(
        default=0.0,
        metadata={
            "help": "clip each parameter tensor's gradient to this norm before the global clip, as the authors' "
            "BertAdam does with 1.0 (0: off)"
        },
    )
    grad_accum: int = field(default=1, metadata={"help": "micro-steps accumulated per optimiser step"})
    seed: int = field(default=9595, metadata={"help": "seed of data order, masking and dropout"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes per training process"})
    precision: str = field(
        default="auto",
        metadata={
            "help": "bf16 (autocast: fp32 weights, optimiser and losses), fp32, or auto: bf16 on a GPU that has "
            "it, fp32 on a CPU (bf16 trains on a CPU with native bf16 when asked for)",
            "choices": PRECISIONS,
        },
    )
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    find_unused_parameters: bool = field(
        default=False, metadata={"help": "let DDP tolerate parameters that get no gradient in a step"}
    )
    save_every: int = field(default=1000, metadata={"help": "steps between checkpoints (0: epoch ends only)"})
    eval_every: int = field(default=0, metadata={"help": "steps between validations (0: epoch ends only)"})
    log_every: int = field(default=10, metadata={"help": "steps between train metric records"})
    max_steps: int = field(
        default=0,
        metadata={"help": "stop after this many steps; the LR schedule still spans all epochs (0: no limit)"},
    )
    resume: bool = field(default=True, metadata={"help": "continue from output/last.pt when it exists"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    threads: int = field(default=0, metadata={"help": "CPU threads per process (0: PyTorch's default)"})

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "grad_accum", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_batch_size", "num_workers", "save_every", "eval_every", "max_steps", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lr < 0:  # 0 is a command's "choose for me", resolved before training
            raise ValueError(f"lr must be >= 0, got {self.lr}")


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # the epoch in progress
    batches_done: int = 0  # micro-batches of ``epoch`` this process has consumed
    train_time: float = 0.0  # seconds spent in fit(), resumes included
    best: float | None = None  # best validation ``task.main_metric`` so far


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (seeded by ``seed + epoch``, ``drop_last``) cut to whole optimiser steps, and able
    to start part-way through an epoch."""

    def __init__(self, dataset: Dataset, num_per_rank: int, rank: int, world_size: int, seed: int):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.num_per_rank = num_per_rank
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start : self.num_per_rank])

    def __len__(self) -> int:
        return self.num_per_rank - self.start


def training_precision(requested: str, device: torch.device) -> str:
    """``bf16`` or ``fp32`` for ``TrainConfig.precision`` on ``device``.

    ``auto`` is bf16 on a GPU with bf16 but fp32 on a CPU even where it has native bf16: on a CPU, autocast costs
    more than it saves for the small models of tests and toy runs, and a CPU run's numbers stay those of earlier
    runs. ``bf16`` asks for it on a CPU too (``benchmarks.model_speed`` measures what it gains there).
    """
    if requested == "auto" and device.type == "cpu":
        return "fp32"
    return resolve_precision(requested, device)


def clip_gradients(model: nn.Module, max_norm: float, max_tensor_norm: float = 0.0) -> torch.Tensor:
    """Clip each tensor's gradient to ``max_tensor_norm``, then all of them together to ``max_norm`` (0: no
    clipping of that kind); returns the global norm before any clipping (a 0-d tensor: no device sync here)."""
    params = [p for p in model.parameters() if p.grad is not None]
    # Logged by the trainer: one exploding tensor shrinks every other tensor's step through the global clip.
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if max_tensor_norm > 0:
        for p in params:
            torch.nn.utils.clip_grad_norm_(p, max_tensor_norm)
        if max_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
    elif max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return norm


def linear_warmup_decay(warmup_steps: int, total_steps: int):
    """LR multiplier: 0 → 1 over ``warmup_steps``, then linearly → 0 at ``total_steps`` (BertAdam's warmup_linear)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def _move(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _move(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_move(v, device) for v in batch)
    return batch


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Every generator's state as tensors and plain containers (what ``weights_only=True`` reads back)."""
    name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": str(name),
            "key": torch.from_numpy(key.astype(np.int64)),  # uint32 words, widened for torch
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),  # (version, tuple of ints, None)
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    key = numpy["key"].numpy().astype(np.uint32)
    np.random.set_state((numpy["bit_generator"], key, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class Trainer:
    """Train ``model`` on ``task`` as ``config`` says.

    Args:
        model: the bare model (an ``LxmertPreTrainedModel``); it is moved to the device, wrapped for DDP and
            compilation as configured, and saved with ``save_pretrained``.
        task: batching, losses and metrics.
        config: the run's settings; ``lr`` > 0.
        restart_advice: how the command's user starts over, named when a checkpoint cannot be resumed (a
            command with other flags than TrainConfig's says its own).
    """

    def __init__(
        self, model: nn.Module, task: Task, config: TrainConfig, restart_advice: str = RESTART_ADVICE
    ):
        if config.lr <= 0:
            raise ValueError(f"lr must be > 0 to train, got {config.lr}")
        self.config = config
        self.restart_advice = restart_advice
        self.task = task
        if config.threads:
            torch.set_num_threads(config.threads)
        self.dist = distributed.init_distributed(config.device)
        self.device = self.dist.device
        self.model = model.to(self.device)
        self.output = Path(config.output)
        per_step = self.dist.world_size * config.grad_accum
        if config.batch_size % per_step:
            raise ValueError(
                f"batch_size {config.batch_size} is not divisible by world_size × grad_accum = "
                f"{self.dist.world_size} × {config.grad_accum}"
            )
        self.micro_batch = config.batch_size // per_step
        self.state = TrainState()
        self.precision = training_precision(config.precision, self.device)
        self.autocast = autocast(self.precision, self.device)

    # ------------------------------------------------------------------------------------------------------------
    # The loop
    # ------------------------------------------------------------------------------------------------------------

    def fit(self, train_dataset: Dataset, valid_dataset: Dataset | None = None) -> dict[str, Any]:
        """Train for ``config.epochs`` (or until ``max_steps``), validating and checkpointing on the way.

        Returns:
            ``{"step", "epoch", "train": last epoch's train metrics, "valid": last validation metrics,
            "best": best main-metric value}``.
        """
        cfg, main = self.config, self.dist.is_main
        steps_per_epoch = len(train_dataset) // cfg.batch_size
        if steps_per_epoch == 0:
            raise ValueError(
                f"{len(train_dataset)} training samples do not fill one batch of {cfg.batch_size}"
            )
        total_steps = steps_per_epoch * cfg.epochs
        sampler = ResumableSampler(
            train_dataset,
            steps_per_epoch * cfg.grad_accum * self.micro_batch,
            self.dist.rank,
            self.dist.world_size,
            cfg.seed,
        )
        loader = self._loader(train_dataset, self.micro_batch, sampler)
        optimizer = self._optimizer()
        schedule = linear_warmup_decay(round(cfg.warmup_ratio * total_steps), total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        if main:
            self.output.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.output)  # what a killed run's writes left
        self._resume_or_start(optimizer, scheduler)
        if main:
            _write_json(self.output / CONFIG_FILE, dataclasses.asdict(cfg))
        train_model, ddp_model = self._wrap(self.model)
        stop_at = min(total_steps, cfg.max_steps) if cfg.max_steps else total_steps
        batches_per_epoch = steps_per_epoch * cfg.grad_accum
        progress = tqdm(total=stop_at, initial=self.state.step, disable=not main, desc=self.task.name)
        window: MetricSums = {}  # since the last train record
        epoch_sums: MetricSums = {}
        window_steps, window_time = 0, 0.0  # optimiser steps and their seconds (eval and saving excluded)
        window_grad_norm = torch.zeros((), device=self.device)  # sum over the window's steps
        fit_start, time_before = time.perf_counter(), self.state.train_time
        # A resumed run reports what its log last recorded (a finished run resumed trains no further).
        train_metrics, valid_metrics = self._logged_metrics()

        while self.state.epoch < cfg.epochs and self.state.step < stop_at:
            epoch = self.state.epoch
            sampler.set_epoch(epoch)
            sampler.start = self.state.batches_done * self.micro_batch
            if hasattr(train_dataset, "set_epoch"):
                train_dataset.set_epoch(epoch)
            train_model.train()
            tick = time.perf_counter()
            for batch in loader:
                self.state.batches_done += 1
                # DDP all-reduces gradients only on the last micro-step of an optimiser step.
                boundary = self.state.batches_done % cfg.grad_accum == 0
                with nullcontext() if boundary or ddp_model is None else ddp_model.no_sync():
                    with self.autocast:
                        losses, stats = self.task.compute(train_model, _move(batch, self.device))
                    losses = {
                        name: value.float() for name, value in losses.items()
                    }  # fp32 whatever autocast did
                    if not losses:
                        raise ValueError(f"task {self.task.name} returned no losses")
                    loss = sum(losses.values())
                    if not torch.isfinite(loss):
                        bad = {k: float(v.detach()) for k, v in losses.items() if not torch.isfinite(v)}
                        raise FloatingPointError(f"non-finite loss at step {self.state.step}: {bad}")
                    (loss / cfg.grad_accum).backward()
                for sums in (window, epoch_sums):
                    _accumulate(sums, loss, losses, stats)
                if not boundary:
                    continue

                window_grad_norm += clip_gradients(self.model, cfg.max_grad_norm, cfg.max_tensor_grad_norm)
                lr = scheduler.get_last_lr()[0]  # the rate this step uses
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                self.state.step += 1
                self.state.train_time = time_before + time.perf_counter() - fit_start
                window_steps, window_time = window_steps + 1, window_time + time.perf_counter() - tick
                progress.update(1)

                if self.state.step % cfg.log_every == 0 or self.state.step == stop_at:
                    samples_per_s = window_steps * cfg.batch_size / window_time
                    record = self._log(
                        "train",
                        "step",
                        window,
                        batches_per_epoch,
                        lr=lr,
                        samples_per_s=samples_per_s,
                        grad_norm=float(window_grad_norm) / window_steps,
                    )
                    progress.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{lr:.2e}")
                    window, window_steps, window_time = {}, 0, 0.0
                    window_grad_norm = torch.zeros((), device=self.device)
                if valid_dataset is not None and cfg.eval_every and self.state.step % cfg.eval_every == 0:
                    valid_metrics = self._validate(valid_dataset, batches_per_epoch)
                if cfg.save_every and self.state.step % cfg.save_every == 0:
                    self.save_checkpoint(optimizer, scheduler)
                if self.state.step >= stop_at:
                    break
                tick = time.perf_counter()

            if self.state.batches_done < batches_per_epoch:  # stopped by max_steps part-way through the epoch
                self.save_checkpoint(optimizer, scheduler)
                break
            train_metrics = self._log("train", "epoch", epoch_sums, batches_per_epoch)
            epoch_sums = {}
            self.state.epoch, self.state.batches_done = epoch + 1, 0
            if valid_dataset is not None:
                valid_metrics = self._validate(valid_dataset, batches_per_epoch)
            self.save_checkpoint(optimizer, scheduler)

        progress.close()
        self._save_model(self.output / "final")
        return {
            "step": self.state.step,
            "epoch": self.state.epoch,
            "train": train_metrics,
            "valid": valid_metrics,
            "best": self.state.best,
        }

    def evaluate(self, dataset: Dataset) -> dict[str, float]:
        """Metrics of the bare model on ``dataset``, sharded over processes and added exactly."""
        size = self.config.eval_batch_size or self.micro_batch
        shard = list(range(self.dist.rank, len(dataset), self.dist.world_size))
        loader = self._loader(dataset, size, shard)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(0)  # the same masks and negatives at every validation
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), self.autocast:
            sums = self.task.evaluate(self.model, (_move(b, self.device) for b in loader))
        self.model.train(was_training)
        return metrics_from_sums(distributed.reduce_sums(sums, self.device))

    # ------------------------------------------------------------------------------------------------------------
    # Pieces of the loop
    # ------------------------------------------------------------------------------------------------------------

    def _loader(self, dataset: Dataset, batch_size: int, sampler) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=self.task.collate,
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
            # Its own generator, so that creating an iterator never draws from the global RNG (dropout's).
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    def _optimizer(self) -> torch.optim.Optimizer:
        # BERT's convention: no weight decay on biases and LayerNorm weights (all 1-d parameters).
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim < 2]
        groups = [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=self.config.lr, eps=self.config.adam_eps)

    def _wrap(self, model: nn.Module) -> tuple[nn.Module, DistributedDataParallel | None]:
        """The module to train through (DDP and/or compiled) and the DDP wrapper, if any (for ``no_sync``)."""
        ddp_model = None
        if self.dist.world_size > 1:
            model = ddp_model = DistributedDataParallel(
                model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.config.find_unused_parameters,
            )
        if self.config.compile:
            model = torch.compile(model)
        return model, ddp_model

    def _validate(self, dataset: Dataset, batches_per_epoch: int) -> dict[str, float]:
        metrics = self.evaluate(dataset)
        self._write_record("valid", "eval", metrics, batches_per_epoch)
        name = self.task.main_metric
        if name not in metrics:
            raise KeyError(f"task {self.task.name} has no validation metric {name!r}; got {sorted(metrics)}")
        value, best = metrics[name], self.state.best
        if best is None or (value > best if self.task.higher_is_better else value < best):
            self.state.best = value
            self._save_model(self.output / "best")
        return metrics

    def _logged_metrics(self) -> tuple[dict[str, Any], dict[str, float]]:
        """The last train-epoch record and the last validation metrics in the log, up to the current step."""
        train: dict[str, Any] = {}
        valid: dict[str, float] = {}
        path = self.output / METRICS_FILE
        if not path.exists():
            return train, valid
        for record in read_json_lines(path):
            if record["step"] > self.state.step:  # logged after the checkpoint this run resumed from
                continue
            if record["split"] == "train" and record["scope"] == "epoch":
                train = record
            elif record["split"] == "valid":
                valid = {k: v for k, v in record.items() if k not in RECORD_KEYS}
        return train, valid

    def _log(self, split: str, scope: str, sums: MetricSums, batches_per_epoch: int, **extra: float):
        metrics = metrics_from_sums(distributed.reduce_sums(sums, self.device))
        return self._write_record(split, scope, {**metrics, **extra}, batches_per_epoch)

    def _write_record(self, split: str, scope: str, metrics: dict[str, float], batches_per_epoch: int):
        record = {
            "split": split,
            "scope": scope,
            "step": self.state.step,
            "epoch": self.state.epoch + self.state.batches_done / batches_per_epoch,
            "time": round(self.state.train_time, 3),
            **metrics,
        }
        if self.dist.is_main:
            with open(self.output / METRICS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        return record

    # ------------------------------------------------------------------------------------------------------------
    # Checkpoints
    # ------------------------------------------------------------------------------------------------------------

    def save_checkpoint(self, optimizer: torch.optim.Optimizer, scheduler) -> None:
        """Write ``output/last.pt`` atomically (rank 0), with every process's RNG state."""
        rng_states = distributed.all_gather_object(_rng_state(self.device))
        if self.dist.is_main:
            checkpoint = {
                "model": self.model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "state": dataclasses.asdict(self.state),
                "rng": rng_states,
                "world_size": self.dist.world_size,
                "config": dataclasses.asdict(self.config),
            }
            _sync(self.output / METRICS_FILE)  # nothing the checkpoint has logged can be lost after it
            atomic_write(self.output / CHECKPOINT_FILE, lambda f: torch.save(checkpoint, f))
        distributed.barrier()

    def _resume_or_start(self, optimizer: torch.optim.Optimizer, scheduler) -> None:
        path = self.output / CHECKPOINT_FILE
        if not (self.config.resume and path.exists()):
            torch.manual_seed(self.config.seed + self.dist.rank)  # dropout differs per process
            if self.dist.is_main and (self.output / METRICS_FILE).exists():
                (self.output / METRICS_FILE).unlink()  # a fresh run starts a fresh log
            return
        try:
            checkpoint = read_torch_file(path)
            if (
                not isinstance(checkpoint, dict)
                or not {"config", "world_size", "state", "rng"} <= checkpoint.keys()
            ):
                raise UnreadableFileError(path, "not a checkpoint of this trainer")
        except UnreadableFileError as err:
            raise UnreadableFileError(path, f"{err.reason}; remove it, or {self.restart_advice}") from err
        saved = checkpoint["config"]
        changed = {
            k: (saved[k], getattr(self.config, k))
            for k in RESUME_INVARIANTS
            if saved[k] != getattr(self.config, k)
        }
        if checkpoint["world_size"] != self.dist.world_size:
            changed["world_size"] = (checkpoint["world_size"], self.dist.world_size)
        if changed:
            raise ValueError(
                f"cannot resume {path}: these settings differ from the checkpoint's (saved, now): {changed}; "
                f"{self.restart_advice}"
            )
        self.model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        self.state = TrainState(**checkpoint["state"])
        _set_rng_state(checkpoint["rng"][self.dist.rank], self.device)
        if self.dist.is_main:
            _truncate_metrics(self.output / METRICS_FILE, self.state.step)
            print(
                f"resuming {path}: step {self.state.step}, epoch {self.state.epoch}, "
                f"{self.state.batches_done} batches into it"
            )
        distributed.barrier()  # every process reads the log (_logged_metrics) only once it is whole again

    def _save_model(self, directory: Path) -> None:
        if self.dist.is_main:
            meta = {
                "task": self.task.name,
                "step": self.state.step,
                "epoch": self.state.epoch,  # whole epochs done, plus batches_done of the next
                "batches_done": self.state.batches_done,
                "train_config": dataclasses.asdict(self.config),
            }
            self.model.save_pretrained(directory, meta=meta, **self.task.save_pretrained_kwargs())
            self.task.save_extras(directory)
        distributed.barrier()


def _accumulate(sums: MetricSums, loss: torch.Tensor, losses: dict[str, torch.Tensor], stats) -> None:
    add_sums(sums, "loss", loss.detach(), 1.0)
    for name, value in losses.items():
        add_sums(sums, f"{name}_loss", value.detach(), 1.0)
    for name, (numerator, count) in stats.items():
        add_sums(sums, name, numerator, count)


def _write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2))


def _sync(path: Path) -> None:
    """Put what was appended to ``path`` on disk (if it exists)."""
    if path.exists():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _drop_torn_last_line(path: Path) -> None:
    """Drop the last line of the log when it has no newline and is not JSON: an append cut short by a kill or a
    full disk. Every record is written with its newline in one append, and the log is synced before each
    checkpoint, so such a record came after the last checkpoint and the resume would drop it anyway. A bad line
    that is followed by others is not an interrupted append; reading the log names it."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    head, _, last = data.rpartition(b"\n")
    try:
        json.loads(last)
    except (ValueError, RecursionError):  # not JSON, or a UnicodeDecodeError where a character was cut
        warnings.warn(
            f"{path}: dropped its last line, cut short ({len(last)} bytes, no newline) by an interrupted append",
            stacklevel=3,
        )
        atomic_write_bytes(path, head + b"\n" if head else b"")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records an interrupted run wrote after its last checkpoint, so a resumed log has no duplicates."""
    if not path.exists():
        return
    _drop_torn_last_line(path)
    kept = [record for record in read_json_lines(path) if record["step"] <= step]
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))


__all__ = [
    "METRICS_FILE",
    "RESTART_ADVICE",
    "SUMMARY_FILE",
    "ResumableSampler",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "linear_warmup_decay",
]
