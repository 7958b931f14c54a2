"""Image question answering over an answer table: what VQA, GQA and your own QA data share.

The model is ``LxmertForQuestionAnswering``: the pooled [CLS] output through the answer head. A datum's target is
its soft-score vector over the answer table (``label[answer]`` at the answer's index), and the loss is the
authors' ``BCEWithLogitsLoss × N`` (or, with ``loss=ce``, their ``--mceLoss``: cross-entropy on the best answer).
A prediction is the arg-max answer and scores ``label[prediction]``, as the authors' evaluators score it, so the
running validation accuracy equals :mod:`lxmert.data.metrics` on the same predictions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lxmert.answers import AnswerTable
from lxmert.checkpoints import AUTHORS_ANSWERS_FILE, load_pretrained, qa_head_trained, read_config
from lxmert.modeling import IGNORE, LxmertForQuestionAnswering

from .base import Losses, Stats, scalar
from .finetune_base import FinetuneDataConfig, FinetuneTask
from .finetune_data import QADataset, pad_regions

HEAD_INITS = ("transfer", "fresh")
LOSSES = ("bce", "ce")


@dataclass
class QATaskConfig(FinetuneDataConfig):
    """QA data settings: the answer table, how the answer head starts, and the loss."""

    answers: str = field(
        default="", metadata={"help": f"the task's answer table (default: <data>/{AUTHORS_ANSWERS_FILE})"}
    )
    head: str = field(
        default="transfer",
        metadata={
            "help": "'transfer' copies the pre-trained QA head's rows by answer string (--loadLXMERTQA); "
            "'fresh' loads the encoder only and starts the head at random (--loadLXMERT)",
            "choices": HEAD_INITS,
        },
    )
    source_answers: str = field(
        default="",
        metadata={
            "help": "answer table of the checkpoint's QA head when it has no answers.json (all_ans.json)"
        },
    )
    loss: str = field(
        default="bce",
        metadata={
            "help": "'bce': BCE × answers on soft scores (authors); 'ce': CE on the best answer",
            "choices": LOSSES,
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head not in HEAD_INITS or self.loss not in LOSSES:
            raise ValueError(f"head must be one of {HEAD_INITS} and loss one of {LOSSES}")

    @property
    def answers_path(self) -> Path:
        return Path(self.answers) if self.answers else Path(self.data) / AUTHORS_ANSWERS_FILE


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Tensor]:
    """The model's keyword arguments from a collated batch."""
    keys = (
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "visual_feats",
        "visual_pos",
        "visual_attention_mask",
    )
    return {key: batch[key] for key in keys}


def best_answer_labels(target: Tensor) -> Tensor:
    """``(B,)`` index of each row's best-scored answer, ``IGNORE`` where no answer of the table is in the label."""
    return torch.where(target.amax(-1) > 0, target.argmax(-1), torch.full_like(target[:, 0], IGNORE).long())


class QATask(FinetuneTask):
    """Question answering over ``<data>/<split>.json`` and an answer table; subclasses name the data format."""

    config_class = QATaskConfig
    config: QATaskConfig

    def __init__(self, config: QATaskConfig, tokenizer):
        super().__init__(config, tokenizer)
        self.answers = AnswerTable.load(config.answers_path)

    def breakdowns(self, datum: dict[str, Any]) -> list[str]:
        """Names of the accuracy breakdowns ``datum`` counts in (answer type, question type ...)."""
        return []

    def dataset(self, items: list[dict[str, Any]]) -> QADataset:
        return QADataset(items, self.features, self.answers, self.breakdowns, self.config.ablate)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        text = self.tokenizer([i["sent"] for i in items], max_length=self.config.max_seq_length)
        feats, pos, mask = pad_regions([i["features"] for i in items], [i["boxes"] for i in items])
        return {
            **text,  # input_ids, attention_mask, token_type_ids: (B, T)
            "visual_feats": feats,  # (B, R, D)
            "visual_pos": pos,  # (B, R, 4)
            "visual_attention_mask": mask,  # (B, R)
            "target": torch.stack([i["target"] for i in items]),  # (B, N) soft scores
            "index": torch.tensor([i["index"] for i in items]),
            "breakdowns": [i["breakdowns"] for i in items],
        }

    def compute(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Losses, Stats]:
        target = batch["target"]  # (B, N)
        if self.config.loss == "bce":
            out = model(**model_inputs(batch), labels=target)
            loss = out.loss
        else:
            labels = best_answer_labels(target)
            answerable = labels != IGNORE
            out = model(**model_inputs(batch))
            # A batch with no answerable question has no CE terms; count it as zero loss rather than NaN.
            loss = (
                nn.functional.cross_entropy(out.logits[answerable], labels[answerable])
                if answerable.any()
                else out.logits.sum() * 0.0
            )
        scores = target.gather(1, out.logits.argmax(-1, keepdim=True)).squeeze(1)  # (B,) label[prediction]
        stats: Stats = {"accuracy": (scores.sum(), scalar(len(scores)))}
        for name in sorted({n for names in batch["breakdowns"] for n in names}):
            rows = torch.tensor([name in names for names in batch["breakdowns"]], device=scores.device)
            stats[name] = (scores[rows].sum(), scalar(int(rows.sum())))
        return {"qa": loss}, stats

    def predict(self, model: nn.Module, batch: dict[str, Any]) -> list[tuple[int, str]]:
        logits = model(**model_inputs(batch)).logits  # (B, N)
        labels = logits.argmax(-1).tolist()
        return [
            (int(i), self.answers.answer(label))
            for i, label in zip(batch["index"].tolist(), labels, strict=True)
        ]

    def build_model(self, init: str, from_scratch: bool) -> LxmertForQuestionAnswering:
        if self.config.head == "transfer" and not from_scratch:
            if qa_head_trained(init) is False:
                warnings.warn(
                    f"the QA head of {init} never trained (QA off, or saved before its qa_from_epoch): 'transfer' "
                    "copies initial weights; --head fresh starts the head from this task's own initialisation",
                    stacklevel=2,
                )
            source = AnswerTable.load(self.config.source_answers) if self.config.source_answers else None
            model = load_pretrained(
                LxmertForQuestionAnswering, init, source_answers=source, target_answers=self.answers
            )
            return model.train()
        if from_scratch:
            return LxmertForQuestionAnswering(read_config(init), num_labels=len(self.answers)).train()
        # The encoder only, read once; the head starts at this task's initialisation (--loadLXMERT).
        model = load_pretrained(
            LxmertForQuestionAnswering, init, {"num_qa_labels": len(self.answers)}, backbone_only=True
        )
        return model.train()

    def save_pretrained_kwargs(self) -> dict[str, Any]:
        return {**super().save_pretrained_kwargs(), "answers": self.answers}


__all__ = ["QATask", "QATaskConfig", "best_answer_labels", "model_inputs"]
