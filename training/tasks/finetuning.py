"""Fine-tune LXMERT on VQA, GQA or NLVR2 with the shared trainer.

    python -m training.finetune gqa            # the README's layout: the shipped pre-trained model, runs/world-kinds
    python -m training.finetune vqa --init runs/default/pretrain/best --output runs/finetune/vqa-pretrained
    python -m training.finetune gqa --from-scratch --output runs/finetune/gqa-scratch
    torchrun --nproc-per-node 4 -m training.finetune nlvr2 --init snap/pretrained/model_LXRT.pth \\
        --vocab bert-base-uncased/vocab.txt --data data/nlvr2 \\
        --features data/nlvr2_imgfeat/train,data/nlvr2_imgfeat/valid   # stores from python -m training.data.convert

Defaults are the paper's recipe (batch 32, 4 epochs, warm-up 10% then linear decay, clipping 5.0) on the README's
layout (:mod:`training.tasks.default_layout`: the shipped ``assets/default/pretrained`` and the synthetic world as
``scripts/build_default.sh`` writes it); a bare command that lacks any of it names what is missing and the command
that makes it. Without ``--lr`` the learning rate suits the model's width (:mod:`training.tasks.finetune_schedule`):
the paper's (5e-5 VQA and NLVR2, 1e-5 GQA) for the 768-wide base model, 1e-3 for the 64-wide tiny one; a run whose
last epoch still raised the validation score by more than two points says so. Point ``--data`` / ``--features`` at the
authors' files for the real tasks. Every trainer flag works here too (``--precision``, ``--resume``, ``--threads``
...); see ``--help`` after the task name. The task, its data settings and the tokenizer are saved beside ``best/``
and ``final/``, so ``python -m training.evaluate`` rebuilds everything from a checkpoint directory alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lxmert.checkpoints import MissingCheckpointFileError
from lxmert.config_cli import add_dataclass_arguments, command_parser, dataclass_from_args
from lxmert.fileio import atomic_write_text, read_json_lines, read_json_object
from lxmert.tokenization import VOCAB_FILE, LxmertTokenizer
from training.engine.trainer import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    RESTART_ADVICE,
    SUMMARY_FILE,
    TrainConfig,
    Trainer,
)
from training.tasks import FINETUNE_TASKS, get_task
from training.tasks.default_layout import PRETRAINED, command_making
from training.tasks.finetune_base import FinetuneDataConfig, FinetuneTask
from training.tasks.finetune_data import split_names
from training.tasks.finetune_schedule import finetune_lr, last_epoch_gain, still_learning_warning

FINETUNE_CONFIG_FILE = "finetune_config.json"  # the task and start point of a run, beside its last.pt
AUTO_LR = 0.0  # --lr's default: chosen by the model's width
LR_HELP = (
    "peak learning rate (0: chosen by the model's width: the paper's task rate at 768, 1e-3 at 64 and below)"
)


@dataclass
class FinetuneConfig:
    """Where the model starts."""

    init: str = field(
        default=PRETRAINED,
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


class MissingInputsError(FileNotFoundError):
    """What a fine-tuning run needs is not there; the message names each missing input and what makes it."""


def missing_inputs(name: str, start: FinetuneConfig, data: FinetuneDataConfig) -> list[str]:
    """One line per input of the run that does not exist: the checkpoint, the task data, the feature stores."""
    found: list[tuple[str, str, str]] = []  # (what is missing, its path, the flag that sets it)
    if not Path(start.init).exists():
        found.append(("the pre-trained checkpoint", start.init, "--init"))
    splits = [s for role in (data.train, data.valid) if role for s in split_names(role)]
    absent = [s for s in dict.fromkeys(splits) if not Path(data.data, f"{s}.json").is_file()]
    if absent:
        files = ", ".join(f"{s}.json" for s in absent)
        found.append((f"the {name} data ({files})", data.data, "--data"))
    for store in data.feature_paths:
        if not Path(store).is_dir():
            found.append(("the region features", store, "--features"))
    lines = []
    for what, path, flag in found:
        command = command_making(path)
        make = f"; to get it:\n      {command}" if command else f"; give {flag} the right path"
        lines.append(f"  - {what}: {path} ({flag}){make}")
    return lines


def require_inputs(name: str, start: FinetuneConfig, data: FinetuneDataConfig) -> None:
    """Raise :class:`MissingInputsError` listing every missing input at once (see :func:`missing_inputs`)."""
    lines = missing_inputs(name, start, data)
    if lines:
        raise MissingInputsError(
            f"fine-tuning {name} needs {len(lines)} input{'s' if len(lines) > 1 else ''} that "
            f"{'are' if len(lines) > 1 else 'is'} not there:\n" + "\n".join(lines) + "\n"
            "(bash scripts/build_default.sh makes them all and more, in about 2 hours on a 2-core CPU; or point the "
            "flags at your own)"
        )


def check_same_start(output: str | Path, record: dict[str, Any], restart_advice: str) -> None:
    """Refuse to resume ``output/last.pt`` from another task or start point than the one it was started from.

    The trainer checks the schedule; the start point (``--init``, ``--from-scratch``, ``--vocab``) is the fine-tuning
    run's own, recorded in ``output/finetune_config.json`` when it starts. Without the check, a rerun with
    ``--from-scratch`` would quietly continue the pre-trained run.
    """
    saved_path = Path(output, FINETUNE_CONFIG_FILE)
    if not (Path(output, CHECKPOINT_FILE).exists() and saved_path.is_file()):
        return
    saved = read_json_object(saved_path)
    changed = {key: (saved.get(key), value) for key, value in record.items() if saved.get(key) != value}
    if changed:
        raise ValueError(
            f"cannot resume {Path(output, CHECKPOINT_FILE)}: it started from another point (saved, now): "
            f"{changed}; {restart_advice}"
        )


def load_tokenizer(init: str, vocab: str, max_length: int) -> LxmertTokenizer:
    """The tokenizer of ``vocab``, or the one saved in checkpoint directory ``init``.

    Raises:
        MissingCheckpointFileError: naming the flag to pass, when there is no vocabulary (a command reports it
            in one line).
    """
    if vocab:
        if not Path(vocab).is_file():
            raise MissingCheckpointFileError(vocab, "no vocabulary there (--vocab)")
        path = Path(vocab)
    else:
        path = Path(init) / VOCAB_FILE
        if not path.is_file():
            raise MissingCheckpointFileError(
                init,
                f"has no {VOCAB_FILE} (the authors' .pth files have none): pass --vocab, the WordPiece "
                f"{VOCAB_FILE} it was trained with",
            )
    return LxmertTokenizer(path, max_length=max_length)


def build_parser(task_name: str) -> argparse.ArgumentParser:
    """The full command line of one task: its data flags, the start point and the trainer's flags."""
    task_class: type[FinetuneTask] = get_task(task_name)
    parser = command_parser(f"python -m training.finetune {task_name}", __doc__)
    parser.add_argument("task", choices=FINETUNE_TASKS, help="the task to fine-tune on")
    add_dataclass_arguments(parser, FinetuneConfig, "start point")
    add_dataclass_arguments(parser, task_class.config_class, f"{task_name} data", task_class.data_defaults)
    train_defaults = {**task_class.train_defaults, "output": f"runs/finetune/{task_name}", "lr": AUTO_LR}
    add_dataclass_arguments(parser, TrainConfig, "training", train_defaults)
    next(action for action in parser._actions if action.dest == "lr").help = LR_HELP
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


def finetune(
    name: str,
    start: FinetuneConfig,
    data,
    train: TrainConfig,
    restart_advice: str = RESTART_ADVICE,
    lr_flags: str = "--epochs / --lr",
) -> dict[str, Any]:
    """Build the task, its datasets and the model, then train; returns the trainer's summary and the ``lr`` used.

    Args:
        train: the trainer's settings; ``lr`` 0 (:data:`AUTO_LR`) picks the rate by the model's width.
        restart_advice: what the calling command's user does to start over (the trainer's refusal to resume
            names it).
        lr_flags: the calling command's flags for epochs and learning rate, named by the still-learning warning.

    Raises:
        MissingInputsError: the checkpoint, the task data or the features are not there.
    """
    task_class: type[FinetuneTask] = get_task(name)
    require_inputs(name, start, data)
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
    if train.lr == AUTO_LR:
        lr = finetune_lr(task_class.train_defaults["lr"], model.config.hidden_size)
        train = dataclasses.replace(train, lr=lr)
        lr_note = f"lr {lr:.2g}, chosen for a {model.config.hidden_size}-wide model"
    else:
        lr_note = f"lr {train.lr:.2g}"
    print(
        f"{name}: {len(train_set)} training, {len(valid_set) if valid_set else 0} validation items; "
        f"{'from scratch' if start.from_scratch else report or start.init}; {lr_note}; "
        f"{len(frozen)} parameter tensors the loss cannot reach are frozen"
    )
    trainer = Trainer(model, task, train, restart_advice)
    start_record = {"task": name, **dataclasses.asdict(start)}
    if train.resume:
        check_same_start(train.output, start_record, restart_advice)
    if trainer.dist.is_main:
        Path(train.output).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(train.output, FINETUNE_CONFIG_FILE), json.dumps(start_record, indent=2) + "\n")
    summary = {**trainer.fit(train_set, valid_set), "lr": train.lr}
    if trainer.dist.is_main:
        records = read_json_lines(Path(train.output, METRICS_FILE))
        gain = last_epoch_gain(records, task.main_metric)
        warning = still_learning_warning(gain, task.main_metric, train.lr, lr_flags)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        # The scores export_default and the app quote, as pre-training writes its own summary.json.
        record = {**summary, "train_seconds": trainer.state.train_time}
        atomic_write_text(Path(train.output, SUMMARY_FILE), json.dumps(record, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    name, start, data, train = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        summary = finetune(name, start, data, train)
    except MissingInputsError as err:
        raise SystemExit(f"error: {err}") from None
    print(json.dumps(summary, indent=1))
