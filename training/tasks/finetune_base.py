"""What VQA, GQA and NLVR2 share as fine-tuning tasks: their data settings, initialisation, and prediction files.

A fine-tuning task is a :class:`~training.tasks.base.Task` (what the shared trainer reads) that also knows

- its data: a folder of split files in the authors' formats plus feature stores (``FinetuneDataConfig``), and the
  paper's fine-tuning recipe as ``train_defaults`` over the trainer's pre-training defaults;
- its model: built from a pre-trained checkpoint (QA head transferred by answer string where the task has one)
  or, with ``from_scratch``, the same architecture and vocabulary at random initialisation;
- its predictions: one answer per datum, keyed as the official evaluator keys them, written in the official
  submission format and scored by :mod:`lxmert.data.metrics`.
"""

from __future__ import annotations

import dataclasses
import json
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn
from torch.utils.data import Dataset

from lxmert.data.store import FeatureStores
from lxmert.fileio import atomic_write_text, read_json_object
from lxmert.tokenization import LxmertTokenizer

from .base import Task
from .finetune_data import ABLATIONS, load_splits, split_names

TASK_CONFIG_FILE = "task_config.json"

# The paper's fine-tuning recipe (§4.2; AL run/*_finetune.bash): batch 32, 4 epochs, BertAdam with 10% warm-up and
# linear decay, gradient clipping at 5.0. The learning rate is per task (5e-5 VQA / NLVR2, 1e-5 GQA).
FINETUNE_TRAIN_DEFAULTS: dict[str, Any] = {
    "batch_size": 32,
    "epochs": 4,
    "warmup_ratio": 0.1,
    "max_grad_norm": 5.0,
    "log_every": 10,
}


@dataclass
class FinetuneDataConfig:
    """Where a task's data is and how to read it; per-task defaults come from the task class's ``data_defaults``."""

    data: str = field(default="", metadata={"help": "folder of the task's split files (<split>.json)"})
    features: str = field(
        default="",
        metadata={"help": "feature store folder(s), comma-separated, searched in order for each image"},
    )
    train: str = field(
        default="", metadata={"help": "training splits, comma-separated (e.g. train,nominival)"}
    )
    valid: str = field(default="", metadata={"help": "validation split(s) that pick the best checkpoint"})
    max_seq_length: int = field(
        default=20, metadata={"help": "tokens per sentence, [CLS] and [SEP] included"}
    )
    ablate: str = field(
        default="none",
        metadata={
            "help": "single-modality baseline: 'vision' blanks every image (question only), "
            "'language' empties every sentence (image only)",
            "choices": ABLATIONS,
        },
    )
    limit: int = field(
        default=0,
        metadata={"help": "use only the first N items of each split, like the authors' --tiny (0: all)"},
    )

    def __post_init__(self) -> None:
        if self.ablate not in ABLATIONS:
            raise ValueError(f"ablate must be one of {ABLATIONS}, got {self.ablate!r}")
        if self.limit < 0 or self.max_seq_length < 2:
            raise ValueError("limit must be >= 0 and max_seq_length >= 2")

    @property
    def feature_paths(self) -> list[str]:
        return [p.strip() for p in self.features.split(",") if p.strip()]


class FinetuneTask(Task):
    """A fine-tuning task over a task folder and feature stores.

    Args:
        config: the data settings (a ``config_class`` instance).
        tokenizer: the tokenizer of the model being fine-tuned.
    """

    main_metric = "accuracy"
    higher_is_better = True
    config_class: ClassVar[type[FinetuneDataConfig]] = FinetuneDataConfig
    data_defaults: ClassVar[dict[str, Any]]  # FinetuneDataConfig defaults for this task
    train_defaults: ClassVar[dict[str, Any]]  # TrainConfig defaults for this task
    id_key: ClassVar[str]  # the datum field that keys predictions
    prediction_file: ClassVar[str]  # file name pattern of a split's predictions, "{split}" filled in

    def __init__(self, config: FinetuneDataConfig, tokenizer: LxmertTokenizer):
        self.config = config
        self.tokenizer = tokenizer
        self._features: FeatureStores | None = None

    @classmethod
    def default_config(cls, **overrides: Any) -> FinetuneDataConfig:
        """The task's data config: the class defaults, then ``data_defaults``, then ``overrides``."""
        return cls.config_class(**{**cls.data_defaults, **overrides})

    # -- data ------------------------------------------------------------------------------------------------------

    @property
    def features(self) -> FeatureStores:
        if self._features is None:
            if not self.config.feature_paths:
                raise ValueError(f"{self.name}: no feature store given (--features)")
            self._features = FeatureStores(self.config.feature_paths)
        return self._features

    @staticmethod
    @abstractmethod
    def read_split(path: Path) -> list[dict[str, Any]]:
        """The items of one split file, checked."""

    def load_items(self, splits: str) -> list[dict[str, Any]]:
        """The items of ``splits`` (comma-separated names of files in the data folder), cut to ``limit``."""
        items = []
        for name in split_names(splits):
            part = load_splits(self.config.data, name, self.read_split)
            items.extend(part[: self.config.limit] if self.config.limit else part)
        return items

    @abstractmethod
    def dataset(self, items: list[dict[str, Any]]) -> Dataset:
        """The torch dataset over ``items`` (with this task's features and ablation)."""

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        """Training and validation datasets of the configured splits."""
        splits = {"train": self.config.train, "valid": self.config.valid}
        items = {role: self.load_items(names) for role, names in splits.items() if names}
        for role, part in items.items():
            if not part:
                raise ValueError(
                    f"{self.name}: the {role} splits {splits[role]!r} of {self.config.data} hold no items"
                )
            if not self.is_labelled(part):
                raise ValueError(f"{self.name}: the {role} splits {splits[role]!r} hold unlabelled items")
        return self.dataset(items["train"]), self.dataset(items["valid"]) if "valid" in items else None

    # -- model -----------------------------------------------------------------------------------------------------

    @abstractmethod
    def build_model(self, init: str, from_scratch: bool) -> nn.Module:
        """The model to fine-tune, in training mode.

        Args:
            init: a pre-trained checkpoint (our, transformers' or the authors' layout); its config and weights
                are used, and its QA head is re-indexed to this task's answers where the task has one.
            from_scratch: build ``init``'s architecture but keep the random initialisation (the paper's
                "scratch" rows; the authors' ``--fromScratch``).
        """

    def check_model(self, model: nn.Module) -> None:
        """Raise if the model's visual input size is not the feature stores' (a detector/checkpoint mismatch)."""
        expected, found = model.config.visual_feat_dim, self.features.feature_dim
        if expected != found:
            raise ValueError(
                f"the model takes {expected}-d region features but {self.config.features} holds {found}-d ones: "
                "extract features with the detector the checkpoint was pre-trained on"
            )

    def freeze_unreachable(self, model: nn.Module, batch: dict[str, Any]) -> list[str]:
        """Freeze the parameters this task's loss cannot reach; returns their names.

        The heads read the pooled [CLS] output, which the vision side of the last cross-modality layer (its
        self-attention and feed-forward) never reaches. Those weights get no gradient, so training leaves them
        as they are either way; frozen, DDP neither waits for their gradients nor traces the model outputs they
        produce (``vision_output``), which ``find_unused_parameters`` would trip over. Found by one backward
        pass on ``batch`` rather than by name, so every configuration (unshared cross-attention, no cross
        layers) is covered.
        """
        losses, _ = self.compute(model, batch)
        sum(losses.values()).backward()
        unreachable = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
        for name, p in model.named_parameters():
            p.grad = None
            if name in unreachable:
                p.requires_grad_(False)
        return unreachable

    # -- predictions -----------------------------------------------------------------------------------------------

    @abstractmethod
    def predict(self, model: nn.Module, batch: dict[str, Any]) -> list[tuple[int, Any]]:
        """``(dataset index, prediction)`` for every item of a collated batch (model in eval mode)."""

    @staticmethod
    @abstractmethod
    def write_predictions(path: Path, predictions: Mapping[Any, Any]) -> None:
        """Write ``{datum id: prediction}`` in the official submission format."""

    @staticmethod
    @abstractmethod
    def score(predictions: Mapping[Any, Any], items: list[dict[str, Any]]) -> dict[str, float]:
        """The official metrics of ``predictions`` on labelled ``items``."""

    @staticmethod
    def is_labelled(items: Iterable[dict[str, Any]]) -> bool:
        """Whether every item carries a label (a test split's may not)."""
        return all("label" in item for item in items)

    @classmethod
    def publish_predictions(
        cls,
        predictions: Mapping[Any, Any],
        items: list[dict[str, Any]],
        out: str | Path,
        directory: str | Path,
        split: str,
        record: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Write ``predictions`` in the official format and, when ``items`` are labelled, their scores beside them.

        Args:
            out: the prediction file; '' for ``<directory>/predictions/<prediction_file of split>``.
            record: what the run was (task, split, checkpoint, ...), written with the scores.

        Returns:
            ``record`` with ``items``, ``predictions`` (the file) and ``metrics`` (None when unlabelled); also
            written to ``<prediction file stem>_metrics.json`` when there are metrics.
        """
        path = (
            Path(out)
            if out
            else Path(directory, "predictions", cls.prediction_file.format(split=split.replace(",", "+")))
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        cls.write_predictions(path, predictions)
        metrics = cls.score(predictions, items) if cls.is_labelled(items) else None
        result = {**record, "items": len(items), "predictions": str(path), "metrics": metrics}
        if metrics is not None:
            atomic_write_text(
                path.with_name(path.stem + "_metrics.json"), json.dumps(result, indent=2) + "\n"
            )
        return result

    # -- checkpoint extras -----------------------------------------------------------------------------------------

    def save_pretrained_kwargs(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer}

    def save_extras(self, directory: Path) -> None:
        """Write the task's data settings beside the model, so ``training.evaluate`` can rebuild the task."""
        payload = {"task": self.name, **dataclasses.asdict(self.config)}
        atomic_write_text(directory / TASK_CONFIG_FILE, json.dumps(payload, indent=2) + "\n")


def read_task_config(directory: str | Path) -> dict[str, Any]:
    """The ``task_config.json`` a fine-tuned checkpoint holds: ``task`` plus its data settings."""
    path = Path(directory) / TASK_CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no {TASK_CONFIG_FILE}: it is not a fine-tuned checkpoint")
    return read_json_object(path)


__all__ = [
    "FINETUNE_TRAIN_DEFAULTS",
    "FinetuneDataConfig",
    "FinetuneTask",
    "TASK_CONFIG_FILE",
    "read_task_config",
]
