"""Fine-tune LXMERT on VQA, GQA or NLVR2 with the shared trainer.

    python -m training.finetune vqa --init runs/pretrain/final --output runs/finetune/vqa-pretrained
    python -m training.finetune gqa --init runs/pretrain/final --from-scratch --output runs/finetune/gqa-scratch
    torchrun --nproc-per-node 4 -m training.finetune nlvr2 --init snap/pretrained/model_LXRT.pth \\
        --vocab bert-base-uncased/vocab.txt --data data/nlvr2 \\
        --features data/nlvr2_imgfeat/train,data/nlvr2_imgfeat/valid   # stores from python -m training.data.convert

Defaults are the paper's recipe (batch 32, 4 epochs, warm-up 10% then linear decay, clipping 5.0; lr 5e-5 for VQA
and NLVR2, 1e-5 for GQA) and the authors' splits, read from the synthetic world unless ``--data`` / ``--features``
point at the real files. Every trainer flag works here too (``--precision``, ``--resume``, ``--threads`` ...); see
``--help`` after the task name. The task, its data settings and the tokenizer are saved beside ``best/`` and
``final/``, so ``python -m training.evaluate`` rebuilds everything from a checkpoint directory alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lxmert.config_cli import add_dataclass_arguments, dataclass_from_args
from lxmert.fileio import atomic_write_text
from lxmert.tokenization import VOCAB_FILE, LxmertTokenizer
from training.engine.trainer import SUMMARY_FILE, TrainConfig, Trainer
from training.tasks import FINETUNE_TASKS, get_task
from training.tasks.finetune_base import FinetuneTask


@dataclass
class FinetuneConfig:
    """Where the model starts."""

    init: str = field(
        default="runs/pretrain/final",
        metadata={"help": "pre-trained checkpoint: our directory, a transformers one or the authors' .pth"},
    )
    from_scratch: bool = field(
        default=False,
        metadata={
            "help": "keep the checkpoint's architecture and vocabulary but not its weights (--fromScratch)"
        },
    )
    vocab: str = field(
        default="", metadata={"help": f"WordPiece {VOCAB_FILE} (default: the one in the --init directory)"}
    )


def load_tokenizer(init: str, vocab: str, max_length: int) -> LxmertTokenizer:
    """The tokenizer of ``vocab``, or the one saved in checkpoint directory ``init``."""
    path = Path(vocab) if vocab else Path(init) / VOCAB_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no vocabulary at {path}: pass --vocab (the checkpoint's WordPiece vocab.txt)"
        )
    return LxmertTokenizer(path, max_length=max_length)


def build_parser(task_name: str) -> argparse.ArgumentParser:
    """The full command line of one task: its data flags, the start point and the trainer's flags."""
    task_class: type[FinetuneTask] = get_task(task_name)
    parser = argparse.ArgumentParser(
        prog=f"python -m training.finetune {task_name}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("task", choices=FINETUNE_TASKS, help="the task to fine-tune on")
    add_dataclass_arguments(parser, FinetuneConfig, "start point")
    add_dataclass_arguments(parser, task_class.config_class, f"{task_name} data", task_class.data_defaults)
    train_defaults = {**task_class.train_defaults, "output": f"runs/finetune/{task_name}"}
    add_dataclass_arguments(parser, TrainConfig, "training", train_defaults)
    return parser


def parse_args(argv: list[str]) -> tuple[str, FinetuneConfig, object, TrainConfig]:
    """Task name and the three configs of a command line (the task name decides the flags and defaults)."""
    first = argparse.ArgumentParser(prog="python -m training.finetune", add_help=False)
    first.add_argument("task", choices=FINETUNE_TASKS, help="the task to fine-tune on")
    if not argv or argv[0].startswith("-"):
        first.print_usage(sys.stderr)
        raise SystemExit(f"name the task first: one of {', '.join(FINETUNE_TASKS)}")
    name = first.parse_known_args(argv[:1])[0].task
    args = build_parser(name).parse_args(argv)
    task_class = get_task(name)
    return (
        name,
        dataclass_from_args(FinetuneConfig, args),
        dataclass_from_args(task_class.config_class, args),
        dataclass_from_args(TrainConfig, args),
    )


def finetune(name: str, start: FinetuneConfig, data, train: TrainConfig) -> dict:
    """Build the task, its datasets and the model, then train; returns the trainer's summary."""
    task_class: type[FinetuneTask] = get_task(name)
    tokenizer = load_tokenizer(start.init, start.vocab, data.max_seq_length)
    task = task_class(data, tokenizer)
    train_set, valid_set = task.datasets()
    torch.manual_seed(train.seed)  # the new head's (or, from scratch, every weight's) initialisation
    model = task.build_model(start.init, start.from_scratch)
    task.check_model(model)
    frozen = task.freeze_unreachable(
        model, task.collate([train_set[i] for i in range(min(2, len(train_set)))])
    )
    report = getattr(model, "load_report", None)
    print(
        f"{name}: {len(train_set)} training, {len(valid_set) if valid_set else 0} validation items; "
        f"{'from scratch' if start.from_scratch else report or start.init}; "
        f"{len(frozen)} parameter tensors the loss cannot reach are frozen"
    )
    trainer = Trainer(model, task, train)
    summary = trainer.fit(train_set, valid_set)
    if trainer.dist.is_main:
        payload = {"task": name, **dataclasses.asdict(start)}
        atomic_write_text(Path(train.output, "finetune_config.json"), json.dumps(payload, indent=2) + "\n")
        # The scores export_default and the app quote, as pre-training writes its own summary.json.
        record = {**summary, "train_seconds": trainer.state.train_time}
        atomic_write_text(Path(train.output, SUMMARY_FILE), json.dumps(record, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    name, start, data, train = parse_args(sys.argv[1:] if argv is None else argv)
    summary = finetune(name, start, data, train)
    print(json.dumps(summary, indent=1))
