"""LXMERT pre-training: the five tasks of the paper (§3.1) on (image, sentence) pairs.

Recipe of the authors' ``src/pretrain/lxmert_data.py`` and ``lxmert_pretrain.py``:

- **Masked language modelling** — each WordPiece ([CLS], [SEP] and padding excluded) is picked with probability
  ``word_mask_rate`` (0.15); a picked token becomes [MASK] 80% of the time, a random vocabulary id 10%, and stays
  10%. Labels are the original ids at picked positions and -100 elsewhere.
- **Masked object prediction** — each region is picked with probability ``obj_mask_rate`` (0.15); its feature is
  zeroed 80% of the time, replaced by the feature of a random region of a random image of the data set 10%, and
  kept 10%. The model regresses the original feature at picked regions and classifies every region's detected
  object and attribute, weighted by the detector's confidence (see ``LxmertForPreTraining``).
- **Cross-modality matching** — with probability 0.5 the sentence is replaced by one of a different image. Its
  masked words are scored too, though the image no longer fits them (``mask_lm_on_mismatched``; UNITER scores
  matched pairs only).
- **Image QA** — for a matched sentence that is a question with a label, the target is one answer drawn from its
  soft label in proportion to the scores (answers outside the table dropped); -100 otherwise, and during the epochs
  before ``qa_from_epoch`` (the paper pre-trains 10 epochs without QA, then 10 with it).

All randomness of an item comes from ``numpy.random.default_rng([seed, epoch, index])``: an item is the same
whatever the number of processes or workers, and after a resume.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from lxmert.answers import AnswerTable
from lxmert.checkpoints import PRETRAIN_CONFIG_FILE
from lxmert.data.store import FeatureStores
from lxmert.fileio import atomic_write_text, read_json
from lxmert.modeling import IGNORE
from lxmert.tokenization import LxmertTokenizer
from training.engine import distributed

from .base import Losses, Stats, Task

MASK_TO_TOKEN, MASK_TO_RANDOM = 0.8, 0.9  # cumulative: 80% [MASK], 10% random, 10% unchanged
MATCH_NEGATIVE_RATE = 0.5
# The synthetic world's layout (training/world/generate.py): pre-training sees train + nominival, as the authors.
WORLD_TRAIN_FILES = ("lxmert/mscoco_train.json", "lxmert/mscoco_nominival.json")
WORLD_VALID_FILE = "lxmert/mscoco_minival.json"
WORLD_ANSWERS = "lxmert/all_ans.json"
WORLD_FEATURES = "features"
# Keys of an item that have one row per region (padded to the batch's largest image) and one entry per answer.
REGION_KEYS = (
    "visual_feats",
    "visual_pos",
    "visual_attention_mask",
    "obj_ids",
    "obj_conf",
    "attr_ids",
    "attr_conf",
    "feat_target",
    "feat_mask",
)
ANSWER_KEYS = {"ans_ids": -1, "ans_scores": 0.0}


LAYER_FIELDS = ("l_layers", "r_layers", "x_layers")


@dataclass
class PretrainConfig:
    """Pre-training data and objectives; defaults are the paper's, paths those of the synthetic world."""

    world: str = field(
        default="data/world", metadata={"help": "synthetic world directory: fills empty paths below"}
    )
    train_json: str = field(
        default="",
        metadata={
            "help": "comma-separated pre-training JSON files (default: WORLD/lxmert/mscoco_{train,nominival})"
        },
    )
    valid_json: str = field(
        default="", metadata={"help": "validation JSON files (default: WORLD/lxmert/mscoco_minival.json)"}
    )
    features: str = field(
        default="", metadata={"help": "comma-separated feature store directories (default: WORLD/features)"}
    )
    vocab: str = field(
        default="",
        metadata={
            "help": "WordPiece vocab.txt (default: WORLD/vocab.txt, else one trained into OUTPUT/vocab.txt)"
        },
    )
    vocab_size: int = field(default=1000, metadata={"help": "size of a WordPiece vocabulary trained here"})
    answers: str = field(
        default="", metadata={"help": "QA answer table (default: WORLD/lxmert/all_ans.json)"}
    )
    qa_sets: str = field(
        default="", metadata={"help": "comma-separated sources whose QA labels are used (default: all)"}
    )
    objects_vocab: str = field(
        default="",
        metadata={"help": "object label file sizing the object head (default: WORLD/objects_vocab.txt)"},
    )
    attributes_vocab: str = field(
        default="", metadata={"help": "attribute label file (default: WORLD/attributes_vocab.txt)"}
    )
    preset: str = field(default="base", metadata={"help": "model preset", "choices": ["base", "tiny"]})
    l_layers: int = field(default=-1, metadata={"help": "language layers (default -1: the preset's)"})
    r_layers: int = field(
        default=-1, metadata={"help": "object-relationship layers (default -1: the preset's)"}
    )
    x_layers: int = field(default=-1, metadata={"help": "cross-modality layers (default -1: the preset's)"})
    initializer_range: float = field(
        default=0.0, metadata={"help": "std of the initial weights (default 0: the preset's, 0.02)"}
    )
    dropout: float = field(
        default=-1.0, metadata={"help": "hidden and attention dropout (default -1: the preset's, 0.1)"}
    )
    init: str = field(
        default="", metadata={"help": "BERT-style weights for the language encoder (default: from scratch)"}
    )
    evaluate: str = field(
        default="",
        metadata={
            "help": "score this pre-trained checkpoint (with its vocabulary and answer table) on the validation "
            "pairs instead of training"
        },
    )
    task_mask_lm: bool = field(default=True, metadata={"help": "masked language modelling"})
    task_matched: bool = field(default=True, metadata={"help": "cross-modality matching"})
    task_obj_predict: bool = field(default=True, metadata={"help": "masked object prediction"})
    task_qa: bool = field(default=True, metadata={"help": "image question answering"})
    visual_losses: str = field(
        default="obj,attr,feat", metadata={"help": "masked-object losses: any of obj, attr, feat"}
    )
    word_mask_rate: float = field(default=0.15, metadata={"help": "probability of masking a word"})
    mask_lm_on_mismatched: bool = field(
        default=True,
        metadata={
            "help": "score masked words of mismatched pairs too, as the authors do (off: matched pairs only, as "
            "UNITER does; words are masked in every pair either way)"
        },
    )
    obj_mask_rate: float = field(default=0.15, metadata={"help": "probability of masking a region"})
    qa_from_epoch: int = field(default=10, metadata={"help": "first epoch (0-based) with the QA loss on"})
    max_seq_length: int = field(
        default=20, metadata={"help": "tokens per sentence, [CLS] and [SEP] included"}
    )
    max_images: int = field(
        default=0,
        metadata={
            "help": "use the first N images of each split (the authors' --tiny is 512, --fast 5000; 0: all)"
        },
    )

    def __post_init__(self) -> None:
        unknown = set(self.visual_loss_names) - {"obj", "attr", "feat"}
        if unknown:
            raise ValueError(f"unknown visual losses {sorted(unknown)}; choose from obj, attr, feat")
        for name in ("word_mask_rate", "obj_mask_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_images < 0:
            raise ValueError(f"max_images must be >= 0, got {self.max_images}")
        for name in LAYER_FIELDS:
            if getattr(self, name) < -1:
                raise ValueError(f"{name} must be >= 0 (or -1 for the preset's), got {getattr(self, name)}")
        if self.initializer_range < 0:
            raise ValueError(f"initializer_range must be >= 0, got {self.initializer_range}")
        if self.dropout > 1:
            raise ValueError(f"dropout must be at most 1, got {self.dropout}")

    def model_overrides(self) -> dict[str, Any]:
        """The model-shape fields set here, as overrides of the preset."""
        overrides = {name: getattr(self, name) for name in LAYER_FIELDS if getattr(self, name) >= 0}
        if self.initializer_range:
            overrides["initializer_range"] = self.initializer_range
        if self.dropout >= 0:
            overrides["hidden_dropout_prob"] = overrides["attention_probs_dropout_prob"] = self.dropout
        return overrides

    @property
    def visual_loss_names(self) -> tuple[str, ...]:
        return tuple(name for name in self.visual_losses.split(",") if name)

    def _paths(self, value: str, *world_files: str) -> list[Path]:
        """The comma-separated paths of ``value``, or the world's files when it is empty."""
        if value:
            return [Path(p) for p in value.split(",") if p]
        return [Path(self.world, name) for name in world_files]

    def train_paths(self) -> list[Path]:
        return self._paths(self.train_json, *WORLD_TRAIN_FILES)

    def valid_paths(self) -> list[Path]:
        return self._paths(self.valid_json, WORLD_VALID_FILE)

    def feature_paths(self) -> list[Path]:
        return self._paths(self.features, WORLD_FEATURES)

    def answers_path(self) -> Path:
        return self._paths(self.answers, WORLD_ANSWERS)[0]


# ----------------------------------------------------------------------------------------------------------------
# Masking and sampling (pure functions of a numpy Generator)
# ----------------------------------------------------------------------------------------------------------------


def mask_words(
    ids: np.ndarray,
    rng: np.random.Generator,
    rate: float,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """BERT's 80/10/10 word masking.

    Draws, in this order: ``u = rng.random(T)`` (a token is picked where ``u < rate``), ``a = rng.random(T)``
    (picked tokens become [MASK] where ``a < 0.8``, a random id where ``0.8 <= a < 0.9``, else stay) and
    ``rng.integers(vocab_size, size=T)`` (the random ids).

    Args:
        ids: ``(T,)`` token ids.
        rng: the item's generator.
        rate: probability of picking a token.
        mask_id: the [MASK] id.
        vocab_size: random replacements are drawn from ``[0, vocab_size)``, as the authors do.
        special_ids: ids never picked ([CLS], [SEP], [PAD]).

    Returns:
        ``(inputs, labels)``: the masked ids and ``(T,)`` targets, the original id where picked, -100 elsewhere.
    """
    ids = np.asarray(ids, dtype=np.int64)
    picked = (rng.random(ids.shape) < rate) & ~np.isin(ids, special_ids)
    action = rng.random(ids.shape)
    random_ids = rng.integers(vocab_size, size=ids.shape)
    inputs = ids.copy()
    inputs[picked & (action < MASK_TO_TOKEN)] = mask_id
    to_random = picked & (action >= MASK_TO_TOKEN) & (action < MASK_TO_RANDOM)
    inputs[to_random] = random_ids[to_random]
    return inputs, np.where(picked, ids, IGNORE)


def mask_objects(
    feats: np.ndarray,
    rng: np.random.Generator,
    rate: float,
    random_feature: Callable[[np.random.Generator], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """The authors' region masking: zero 80%, a random data set feature 10%, unchanged 10%.

    Draws ``u = rng.random(R)`` (picked where ``u < rate``) and ``a = rng.random(R)`` (zeroed where ``a < 0.8``,
    replaced where ``0.8 <= a < 0.9``), then one ``random_feature(rng)`` per replaced region, in order.

    Returns:
        ``(masked, feat_mask)``: the ``(R, F)`` features fed to the model and the ``(R,)`` float 0/1 mask of picked
        regions (the regression targets).
    """
    picked = rng.random(len(feats)) < rate
    action = rng.random(len(feats))
    masked = feats.copy()
    masked[picked & (action < MASK_TO_TOKEN)] = 0.0
    for row in np.flatnonzero(picked & (action >= MASK_TO_TOKEN) & (action < MASK_TO_RANDOM)):
        masked[row] = random_feature(rng)
    return masked, picked.astype(np.float32)


def sample_answer(answers: Sequence[tuple[int, float]], rng: np.random.Generator) -> int:
    """One answer label drawn in proportion to its soft score; -100 for no (positive) answer."""
    scores = np.array([score for _, score in answers], dtype=np.float64)
    if len(scores) == 0 or scores.sum() <= 0:
        return IGNORE
    return int(answers[rng.choice(len(answers), p=scores / scores.sum())][0])


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class PretrainItem:
    img_id: str
    source: str
    answers: list[tuple[int, float]]  # (answer label, soft score); empty for captions


def read_pretrain_json(paths: Sequence[str | Path], max_images: int = 0) -> list[dict[str, Any]]:
    """Concatenate the authors' pre-training files (lists of ``{img_id, sentf, labelf}``), cut to ``max_images``
    records when it is positive."""
    data = []
    for path in paths:
        try:
            values = read_json(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"no pre-training file at {path}") from None
        if not isinstance(values, list) or not all(isinstance(d, dict) and "sentf" in d for d in values):
            raise ValueError(f"{path} must hold a JSON list of {{img_id, sentf, labelf}} objects")
        data.extend(values)
    return data[:max_images] if max_images else data


class PretrainDataset(Dataset):
    """One item per (image, sentence), with masked words, masked regions, a matching negative and a QA target.

    Args:
        data: pre-training records ``{img_id, sentf: {source: [sent]}, labelf: {source: [{ans: score}]}}``.
        features: the images' features.
        tokenizer: WordPiece tokenizer.
        answers: the QA answer table.
        config: masking rates, objectives, QA sources and start epoch, sequence length.
        seed: with the epoch and index, seeds every item's randomness.
        qa_from_epoch: overrides ``config.qa_from_epoch`` (validation scores QA from the start).
    """

    def __init__(
        self,
        data: Sequence[dict[str, Any]],
        features: FeatureStores,
        tokenizer: LxmertTokenizer,
        answers: AnswerTable,
        config: PretrainConfig,
        seed: int = 0,
        qa_from_epoch: int | None = None,
    ):
        self.features, self.tokenizer, self.answers, self.config = features, tokenizer, answers, config
        self.seed, self.epoch = seed, 0
        self.qa_from_epoch = config.qa_from_epoch if qa_from_epoch is None else qa_from_epoch
        qa_sets = set(config.qa_sets.split(",")) - {""}
        self.items: list[PretrainItem] = []
        sentences: list[str] = []
        captions: list[bool] = []  # a sentence of a source without QA labels, which describes its image
        for datum in data:
            for source, sents in datum["sentf"].items():
                labels = datum.get("labelf", {}).get(source)
                use_labels = labels is not None and (not qa_sets or source in qa_sets)
                for i, sent in enumerate(sents):
                    scored = labels[i].items() if use_labels else ()
                    kept = [(self.answers.label(a), s) for a, s in scored]
                    self.items.append(
                        PretrainItem(datum["img_id"], source, [(a, s) for a, s in kept if a is not None])
                    )
                    sentences.append(sent)
                    captions.append(labels is None)
        if not self.items:
            raise ValueError("the pre-training data hold no sentences")
        self.is_caption = np.array(captions)
        self.image_ids = sorted({item.img_id for item in self.items})
        self.image_numbers = {img_id: number for number, img_id in enumerate(self.image_ids)}
        if len(self.image_ids) < 2:
            raise ValueError("matching negatives need sentences of at least two images")
        features.check(self.image_ids, "pre-training data")
        T = config.max_seq_length
        self.token_ids = np.full((len(sentences), T), tokenizer.pad_token_id, dtype=np.int64)
        for row, sent in enumerate(sentences):
            ids = tokenizer.encode(sent, T)
            self.token_ids[row, : len(ids)] = ids
        self.special_ids = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Items of ``epoch`` (masks, negatives, sampled answers) are drawn from ``(seed, epoch, index)``."""
        self.epoch = epoch

    def _random_feature(self, rng: np.random.Generator) -> np.ndarray:
        image = self.features.get(self.image_ids[rng.integers(len(self.image_ids))])
        return image["features"][rng.integers(image["num_boxes"])]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        cfg = self.config
        rng = np.random.default_rng([self.seed, self.epoch, index])
        item = self.items[index]
        sentence, matched = index, 1
        if cfg.task_matched and rng.random() < MATCH_NEGATIVE_RATE:
            matched = 0
            while self.items[sentence].img_id == item.img_id:
                sentence = int(rng.integers(len(self.items)))
        ids = self.token_ids[sentence]
        rate = cfg.word_mask_rate if cfg.task_mask_lm else 0.0
        input_ids, lm_labels = mask_words(
            ids, rng, rate, self.tokenizer.mask_token_id, self.tokenizer.vocab_size, self.special_ids
        )
        if not matched and not cfg.mask_lm_on_mismatched:
            # Masking stays the same in every pair, so [MASK] tokens do not give the matching label away.
            lm_labels[:] = IGNORE
        image = self.features.get(item.img_id)
        feats = image["features"]  # (R, F)
        rate = cfg.obj_mask_rate if cfg.task_obj_predict else 0.0
        masked_feats, feat_mask = mask_objects(feats, rng, rate, self._random_feature)
        qa_on = cfg.task_qa and matched and self.epoch >= self.qa_from_epoch
        ans = sample_answer(item.answers, rng) if qa_on else IGNORE
        R = len(feats)
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy((ids != self.tokenizer.pad_token_id).astype(np.int64)),
            "token_type_ids": torch.zeros(len(ids), dtype=torch.long),
            "lm_labels": torch.from_numpy(lm_labels),
            "visual_feats": torch.from_numpy(masked_feats),
            "visual_pos": torch.from_numpy(image["normalized_boxes"]),
            "visual_attention_mask": torch.ones(R, dtype=torch.long),
            "obj_ids": torch.from_numpy(image["objects_id"]),
            "obj_conf": torch.from_numpy(image["objects_conf"]),
            "attr_ids": torch.from_numpy(image["attrs_id"]),
            "attr_conf": torch.from_numpy(image["attrs_conf"]),
            "feat_target": torch.from_numpy(feats),
            "feat_mask": torch.from_numpy(feat_mask),
            "matched": torch.tensor(matched),
            "image_number": torch.tensor(self.image_numbers[item.img_id]),
            "caption": torch.tensor(bool(self.is_caption[sentence])),
            # The item whose sentence this is (another's if unmatched).
            "sentence_index": torch.tensor(sentence),
            "ans": torch.tensor(ans),
            "ans_ids": torch.tensor([a for a, _ in item.answers], dtype=torch.long),
            "ans_scores": torch.tensor([s for _, s in item.answers], dtype=torch.float32),
        }

    def majority_baselines(self) -> dict[str, float]:
        """What always predicting the most frequent target scores on this data: the chance level of each head."""
        words = Counter(t for t in self.token_ids.ravel().tolist() if t not in self.special_ids)
        answered = [item.answers for item in self.items if item.answers]
        answer_scores: Counter[int] = Counter()
        for answers in answered:
            for label, score in answers:
                answer_scores[label] += score
        objects, attrs = Counter(), Counter()
        per_image = Counter(item.img_id for item in self.items)
        for img_id, n_items in per_image.items():
            image = self.features.get(img_id)
            for key, counter in (("objects_id", objects), ("attrs_id", attrs)):
                for label, count in Counter(image[key].tolist()).items():
                    counter[label] += count * n_items
        baselines = {
            "mask_lm_acc": max(words.values()) / sum(words.values()),
            "matched_acc": max(MATCH_NEGATIVE_RATE, 1 - MATCH_NEGATIVE_RATE),
            "obj_acc": max(objects.values()) / sum(objects.values()),
            "attr_acc": max(attrs.values()) / sum(attrs.values()),
        }
        if self.is_caption.any():
            baselines["matched_acc_captions"] = baselines["matched_acc"]
        # The scores of PretrainTask.swapped_image_stats share their head's chance level.
        baselines["mask_lm_acc_matched"] = baselines["mask_lm_acc_swapped"] = baselines["mask_lm_acc"]
        if answered:
            qa_chance = max(answer_scores.values()) / len(answered)
            baselines["qa_score"] = baselines["qa_score_swapped"] = qa_chance
        return baselines


def pretrain_collate(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack items; regions are padded to the batch's largest image (mask 0), answer lists to the longest."""
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key in REGION_KEYS or key in ANSWER_KEYS:
            batch[key] = nn.utils.rnn.pad_sequence(
                values, batch_first=True, padding_value=ANSWER_KEYS.get(key, 0)
            )
        else:
            batch[key] = torch.stack(values)
    return batch


def word_hits(logits: Tensor, labels: Tensor, scored: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(correct, total) masked-word predictions, at the ``scored`` positions only when given."""
    hits = logits.argmax(-1) == labels
    if scored is None:
        return hits.sum(), torch.tensor(hits.numel())
    return (hits & scored).sum(), scored.sum()


def answer_score(logits: Tensor, batch: dict[str, Tensor], answered: Tensor) -> tuple[Tensor, Tensor]:
    """(sum, count) of the soft score of the predicted answer over the ``answered`` rows (the authors' evaluator)."""
    predicted = logits.argmax(-1, keepdim=True)  # (B, 1)
    soft = (batch["ans_scores"] * (batch["ans_ids"] == predicted)).sum(-1)  # (B,)
    return (soft * answered).sum(), answered.sum()


def other_image_rows(image_number: Tensor) -> Tensor | None:
    """For each row of a batch, the nearest following row (cyclically) that shows a different image; None when
    every row shows the same image."""
    rows = torch.arange(len(image_number), device=image_number.device)
    chosen = torch.full_like(rows, -1)
    for shift in range(1, len(rows)):
        candidate = (rows + shift) % len(rows)
        free = (chosen < 0) & (image_number[candidate] != image_number)
        chosen[free] = candidate[free]
        if (chosen >= 0).all():
            return chosen
    return None


# ----------------------------------------------------------------------------------------------------------------
# Task
# ----------------------------------------------------------------------------------------------------------------


class PretrainTask(Task):
    """The five pre-training losses of ``LxmertForPreTraining`` and an accuracy for every head.

    Metrics: ``mask_lm_acc`` (masked tokens), ``matched_acc`` (all pairs; ``matched_acc_captions`` on pairs whose
    sentence is a caption), ``qa_score`` (the soft score of the
    predicted answer on matched questions, the authors' evaluator), ``obj_acc`` / ``attr_acc`` (the detector's
    label on masked regions), and each loss (``feat_loss`` is the feature regression). Validation adds
    :meth:`swapped_image_stats`, the masked-word and QA scores with each sentence shown another image.

    Args:
        tokenizer: saved with the model.
        answers: the QA answer table, saved with the model.
        config: saved beside the model as ``pretrain_config.json``.
    """

    name = "pretrain"
    main_metric = "loss"  # the authors keep the checkpoint with the best validation loss
    higher_is_better = False

    def __init__(self, tokenizer: LxmertTokenizer, answers: AnswerTable, config: PretrainConfig):
        self.tokenizer, self.answers, self.config = tokenizer, answers, config

    def collate(self, items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        return pretrain_collate(items)

    def compute(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Losses, Stats]:
        lm_labels, ans = batch["lm_labels"], batch["ans"]  # (B, T), (B,)
        masked, answered = lm_labels != IGNORE, ans != IGNORE
        counts = torch.stack([masked.sum(), answered.sum()])
        out = model(
            input_ids=batch["input_ids"],
            visual_feats=batch["visual_feats"],
            visual_pos=batch["visual_pos"],
            attention_mask=batch["attention_mask"],
            visual_attention_mask=batch["visual_attention_mask"],
            token_type_ids=batch["token_type_ids"],
            labels=lm_labels,
            lm_positions=masked,
            obj_labels={
                "obj": (batch["obj_ids"], batch["obj_conf"]),
                "attr": (batch["attr_ids"], batch["attr_conf"]),
                "feat": (batch["feat_target"], batch["feat_mask"]),
            },
            matched_label=batch["matched"],
            ans=ans,
        )
        losses = dict(out.losses)
        if model.training and distributed.world_size() > 1:
            # Masked tokens and answered questions vary per process: weight each process's mean by its share.
            scale = distributed.global_mean_scale(counts)
            for name, factor in zip(("mask_lm", "qa"), scale, strict=True):
                if name in losses:
                    losses[name] = losses[name] * factor

        stats: Stats = {}
        masked_labels = lm_labels[masked]  # (N,): the rows of out.prediction_logits
        if out.prediction_logits is not None:
            stats["mask_lm_acc"] = word_hits(out.prediction_logits, masked_labels)
        if self.config.task_matched:  # the head scores every pair, but without the task its labels are all 1
            hits = out.cross_relationship_score.argmax(-1) == batch["matched"]
            stats["matched_acc"] = (hits.sum(), torch.tensor(len(hits)))
            # Captions describe their image; a question ("Is there a red star?") fits almost any image, so on
            # questions matching is mostly guesswork and the caption-only accuracy shows what can be learned.
            caption = batch["caption"]
            stats["matched_acc_captions"] = ((hits & caption).sum(), caption.sum())
        if out.question_answering_score is not None:
            stats["qa_score"] = answer_score(out.question_answering_score, batch, answered)
        regions = batch["feat_mask"].bool() & batch["visual_attention_mask"].bool()  # masked, real regions
        for key, logits in (("obj", out.obj_logits), ("attr", out.attr_logits)):
            if logits is not None:
                hits = (logits.argmax(-1) == batch[f"{key}_ids"]) & regions
                stats[f"{key}_acc"] = (hits.sum(), regions.sum())
        if not model.training:
            stats.update(self.swapped_image_stats(model, batch, out.prediction_logits, masked, answered))
        return losses, stats

    def swapped_image_stats(
        self, model: nn.Module, batch: dict[str, Tensor], lm_logits: Tensor, masked: Tensor, answered: Tensor
    ) -> Stats:
        """Does the model look? Masked-word accuracy on matched pairs with their own image
        (``mask_lm_acc_matched``) and with another image of the batch (``mask_lm_acc_swapped``), and the QA score
        with another image (``qa_score_swapped``). A model that ignores the image scores the same on both. A batch
        that shows a single image has no other to swap in: it is left out of these three scores (``qa_score``
        keeps it, so the two QA scores compare exactly only when no batch shows a single image)."""
        rows = other_image_rows(batch["image_number"])
        if rows is None:
            return {}
        out = model(
            input_ids=batch["input_ids"],
            visual_feats=batch["visual_feats"][rows],
            visual_pos=batch["visual_pos"][rows],
            attention_mask=batch["attention_mask"],
            visual_attention_mask=batch["visual_attention_mask"][rows],
            token_type_ids=batch["token_type_ids"],
            lm_positions=masked,
        )
        labels = batch["lm_labels"][masked]
        on_matched = batch["matched"].bool()[:, None].expand_as(masked)[masked]
        stats: Stats = {
            "mask_lm_acc_matched": word_hits(lm_logits, labels, on_matched),
            "mask_lm_acc_swapped": word_hits(out.prediction_logits, labels, on_matched),
        }
        if out.question_answering_score is not None:
            stats["qa_score_swapped"] = answer_score(out.question_answering_score, batch, answered)
        return stats

    def save_pretrained_kwargs(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "answers": self.answers}

    def save_extras(self, directory: Path) -> None:
        atomic_write_text(
            Path(directory) / PRETRAIN_CONFIG_FILE, json.dumps(asdict(self.config), indent=2) + "\n"
        )


def feature_regression_baseline(dataset: PretrainDataset, max_images: int = 500) -> float:
    """SmoothL1 (averaged over feature dimensions) of predicting the mean region feature: the feat loss at chance."""
    ids = dataset.image_ids[:max_images]
    feats = torch.from_numpy(np.concatenate([dataset.features.get(i)["features"] for i in ids]))
    return float(F.smooth_l1_loss(feats.mean(0).expand_as(feats), feats))


__all__ = [
    "FeatureStores",
    "PretrainConfig",
    "PretrainDataset",
    "PretrainTask",
    "feature_regression_baseline",
    "mask_objects",
    "mask_words",
    "pretrain_collate",
    "read_pretrain_json",
    "sample_answer",
]
