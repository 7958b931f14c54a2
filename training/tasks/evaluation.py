"""Predict a split with a checkpoint, write the official submission file, and score it when the split is labelled.

    python -m training.evaluate --checkpoint runs/finetune/vqa-pretrained/best --split test
    python -m training.evaluate --checkpoint runs/finetune/gqa/best --split testdev --data data/gqa \\
        --features data/vg_gqa_imgfeat/gqa_testdev
    python -m training.evaluate --checkpoint runs/pretrain/final --task vqa --split minival   # zero-shot QA head
    python -m training.evaluate --checkpoint snap/pretrained/model_LXRT.pth --vocab bert-base-uncased/vocab.txt \\
        --task vqa --split minival

A fine-tuned checkpoint (``training.finetune``'s ``best/`` or ``final/``) carries its task, data settings, answer
table and tokenizer; flags given here override its data settings (e.g. to score real data). Any other checkpoint
needs ``--task``: VQA/GQA then read the pre-trained QA head through the answer-string transfer, NLVR2 gets an
untrained head. One without a ``vocab.txt`` (the authors' ``.pth``) needs ``--vocab``, as in fine-tuning.
Predictions go to ``--out`` (default ``<checkpoint>/../predictions/<split>_predict.{json,csv}``) in the official
formats — VQA ``[{question_id, answer}]``, GQA ``[{questionId, prediction}]``, NLVR2 CSV ``identifier,True|False``
— and the metrics, when the split has labels, to ``<same name>_metrics.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from lxmert.checkpoints import ANSWERS_FILE, load_checkpoint
from lxmert.config_cli import parse_config
from lxmert.errors import UnreadableFileError
from lxmert.tokenization import VOCAB_FILE
from training.engine.distributed import resolve_device
from training.tasks import FINETUNE_TASKS, get_task
from training.tasks.finetune_base import TASK_CONFIG_FILE, FinetuneTask, read_task_config
from training.tasks.finetune_data import ABLATIONS
from training.tasks.finetuning import load_tokenizer


@dataclass
class EvaluateConfig:
    checkpoint: str = field(metadata={"help": "checkpoint directory (fine-tuned, or any with --task)"})
    split: str = field(
        default="", metadata={"help": "split(s) to predict, comma-separated (default: the valid split)"}
    )
    task: str = field(
        default="",
        metadata={"help": "task, for a checkpoint that is not fine-tuned", "choices": ("", *FINETUNE_TASKS)},
    )
    vocab: str = field(
        default="",
        metadata={"help": f"WordPiece {VOCAB_FILE} (default: the one in the checkpoint directory)"},
    )
    data: str = field(default="", metadata={"help": "task data folder (default: the checkpoint's)"})
    features: str = field(default="", metadata={"help": "feature store folder(s), comma-separated"})
    ablate: str = field(
        default="",
        metadata={"help": "override the checkpoint's modality ablation", "choices": ("", *ABLATIONS)},
    )
    limit: int = field(default=0, metadata={"help": "predict only the first N items of each split (0: all)"})
    batch_size: int = field(default=256, metadata={"help": "items per forward pass"})
    out: str = field(
        default="", metadata={"help": "prediction file (default: <checkpoint>/../predictions/...)"}
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    threads: int = field(default=0, metadata={"help": "CPU threads (0: PyTorch's default)"})


def build_task(cfg: EvaluateConfig) -> tuple[FinetuneTask, bool]:
    """The task of the checkpoint (or ``--task``) with the data settings overridden by the flags.

    Returns:
        The task and whether the checkpoint is a fine-tuned one of it.
    """
    checkpoint = Path(cfg.checkpoint)
    fine_tuned = (checkpoint / TASK_CONFIG_FILE).is_file()
    saved = read_task_config(checkpoint) if fine_tuned else {}
    name = cfg.task or saved.get("task")
    if not name:
        raise UnreadableFileError(
            checkpoint, f"not a fine-tuned checkpoint (no {TASK_CONFIG_FILE}): pass --task"
        )
    if saved and saved["task"] != name:
        raise ValueError(f"{checkpoint} was fine-tuned on {saved['task']!r}, not {name!r}")
    task_class: type[FinetuneTask] = get_task(name)
    known = {f.name for f in fields(task_class.config_class)}
    values: dict[str, Any] = {**task_class.data_defaults, **{k: v for k, v in saved.items() if k in known}}
    values.update({k: getattr(cfg, k) for k in ("data", "features", "ablate") if getattr(cfg, k)})
    values["limit"] = cfg.limit
    if fine_tuned and "answers" in known:
        values["answers"] = str(
            checkpoint / ANSWERS_FILE
        )  # the head's own table, whatever the data folder has
    data_config = task_class.config_class(**values)
    tokenizer = load_tokenizer(str(checkpoint), cfg.vocab, data_config.max_seq_length)
    return task_class(data_config, tokenizer), fine_tuned


def predict_split(
    task: FinetuneTask,
    model: torch.nn.Module,
    items: list[dict[str, Any]],
    batch_size: int,
    device: torch.device,
) -> dict[Any, Any]:
    """``{datum id: prediction}`` for every item."""
    loader = DataLoader(task.dataset(items), batch_size=batch_size, collate_fn=task.collate)
    predictions: dict[Any, Any] = {}
    model.eval().to(device)
    with torch.no_grad():
        for batch in loader:
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            for index, prediction in task.predict(model, batch):
                predictions[items[index][task.id_key]] = prediction
    return predictions


def evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    """Predict ``cfg.split`` with ``cfg.checkpoint``; write the predictions (and metrics, if labelled).

    Returns:
        ``{"task", "split", "items", "predictions": path, "metrics": {...} or None}``.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    task, fine_tuned = build_task(cfg)
    split = cfg.split or task.config.valid
    items = task.load_items(split)
    model = load_checkpoint(cfg.checkpoint).model if fine_tuned else task.build_model(cfg.checkpoint, False)
    task.check_model(model)
    predictions = predict_split(task, model, items, cfg.batch_size, resolve_device(cfg.device))

    record = {"task": task.name, "split": split, "checkpoint": cfg.checkpoint, "ablate": task.config.ablate}
    return task.publish_predictions(predictions, items, cfg.out, Path(cfg.checkpoint).parent, split, record)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(
        EvaluateConfig, argv, prog="python -m training.evaluate", doc=__doc__, title="evaluation"
    )
    print(json.dumps(evaluate(cfg), indent=1))
