"""Faithfulness of explanations: Chefer et al.'s perturbation test, over a data set and per example.

The protocol is the one of ``Transformer-MM-Explainability/lxmert/lxmert/perturbation.py``: each method scores the
tokens and regions for the model's predicted answer; the scores are min-max normalised; at each fraction p of
``[0, .25, .5, .75, .8, .85, .9, .95, 1]`` the top ``int((1 − p) · n)`` items are kept and the rest *dropped* (regions'
features and boxes removed; tokens removed, [CLS] and [SEP] always kept, the rest in their original order). The
*negative* test removes the least relevant first (higher is better), the *positive* test the most relevant first
(lower is better). Accuracy is the soft score of the argmax answer; the AUC is the trapezoid over the fractions,
x = 0 included, in percent.

Methods: ``raw_attention``, ``rollout``, ``gradient`` (Chefer et al.), ``integrated_gradients`` (LIG on words, IG on
regions), ``occlusion`` (each region dropped / each word replaced by [PAD]), and ``random`` as the floor.

Run over a directory of images with their detector (``python -m analysis.faithfulness --help``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lxmert.config_cli import add_dataclass_arguments, command_parser, dataclass_from_args
from lxmert.errors import run_cli
from lxmert.fileio import atomic_write_text

from .attention import collect_attention
from .attributions import integrated_gradients, region_occlusion, token_occlusion
from .datasets import QAItem, load_qa_items
from .forward import answer_logits, run
from .inputs import Example
from .relevancy import gradient_relevancy, raw_attention_relevancy, rollout_relevancy

FRACTIONS = (0.0, 0.25, 0.5, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
METHODS = ("raw_attention", "rollout", "gradient", "integrated_gradients", "occlusion", "random")
TESTS = ("image_negative", "image_positive", "text_negative", "text_positive")


@dataclass
class ExplainConfig:
    """Settings of the explanation methods under test."""

    ig_steps: int = 32  # integration steps of IG on words and regions
    ig_region_baseline: str = "zero"  # zero (the pre-training object mask) or mean
    pad_token_id: int = 0  # [PAD], the word baseline of IG and occlusion
    seed: int = 1234  # the random ordering's seed, as Chefer et al.'s sampling seed


def explain(
    model: nn.Module, example: Example, method: str, target: int, config: ExplainConfig, index: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(T,) token scores and (R,) region scores of ``method`` for answer ``target`` (larger = more relevant).

    Args:
        index: the example's position in the data set, which seeds the ``random`` method.
    """
    if method in ("raw_attention", "rollout"):
        maps = collect_attention(model, example)
        relevancy = raw_attention_relevancy(maps) if method == "raw_attention" else rollout_relevancy(maps)
        return relevancy.tokens, relevancy.regions
    if method == "gradient":
        relevancy = gradient_relevancy(model, example, target)
        return relevancy.tokens, relevancy.regions
    if method == "integrated_gradients":
        attr = integrated_gradients(
            model,
            example,
            target,
            n_steps=config.ig_steps,
            region_baseline=config.ig_region_baseline,
            pad_token_id=config.pad_token_id,
        )
        return attr.tokens, attr.regions
    if method == "occlusion":
        regions = (
            region_occlusion(model, example, target, baseline="drop") if example.num_regions > 1 else None
        )
        tokens = token_occlusion(model, example, target, pad_token_id=config.pad_token_id)
        return tokens, np.zeros(example.num_regions) if regions is None else regions
    if method == "random":
        rng = np.random.default_rng([config.seed, index])
        return rng.random(example.num_tokens), rng.random(example.num_regions)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def _min_max(scores: np.ndarray) -> np.ndarray:
    """Chefer et al.'s min-max normalisation (a constant map becomes all zeros)."""
    span = scores.max() - scores.min() if scores.size else 0.0
    return (scores - scores.min()) / span if span > 0 else np.zeros_like(scores, dtype=np.float64)


def kept_items(scores: np.ndarray, fraction: float, positive: bool) -> list[int]:
    """Indices kept when ``fraction`` of the items is removed, in their original order.

    Negative test: the most relevant are kept (least relevant removed first); positive: the least relevant.
    Ties keep the earlier item first, so the order does not depend on the sort's stability elsewhere.
    """
    count = int((1 - fraction) * len(scores))
    ranking = -_min_max(np.asarray(scores, dtype=np.float64)) if positive else _min_max(np.asarray(scores))
    order = np.argsort(-ranking, kind="stable")  # best kept first
    return sorted(order[:count].tolist())


def perturbed(
    example: Example, scores: np.ndarray, modality: str, fraction: float, positive: bool
) -> Example:
    """The example with ``fraction`` of its regions (``image``) or words (``text``) removed by ``scores``."""
    if modality == "image":
        if len(scores) != example.num_regions:
            raise ValueError(f"{len(scores)} region scores for {example.num_regions} regions")
        return example.select_regions(kept_items(scores, fraction, positive))
    if modality == "text":
        if len(scores) != example.num_tokens:
            raise ValueError(f"{len(scores)} token scores for {example.num_tokens} tokens")
        special = example.special_mask
        words = (~special).nonzero().flatten().tolist()
        kept_words = [words[i] for i in kept_items(np.asarray(scores)[words], fraction, positive)]
        return example.select_tokens(sorted(special.nonzero().flatten().tolist() + kept_words))
    raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")


def area_under_curve(fractions: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoid area under values (in [0, 1]) over fractions, in percent, as ``np.trapz(acc × 100, x)``."""
    x, y = np.asarray(fractions, dtype=np.float64), np.asarray(values, dtype=np.float64) * 100
    return float(((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2).sum())


def perturbation_logits(
    model: nn.Module,
    example: Example,
    scores: np.ndarray,
    modality: str,
    positive: bool,
    fractions: Sequence[float] = FRACTIONS,
) -> torch.Tensor:
    """(fractions, A) answer logits of the example perturbed at each fraction."""
    with torch.no_grad():
        return torch.stack(
            [
                answer_logits(run(model, perturbed(example, scores, modality, fraction, positive)))[0]
                for fraction in fractions
            ]
        )


@dataclass
class FaithfulnessTable:
    """AUCs of the perturbation tests, method × test, with the mean accuracy curves behind them.

    Attributes:
        auc: method → test → AUC in percent (negative tests: higher is better; positive: lower is better).
        curves: method → test → mean accuracy at each fraction.
        fractions: the removal fractions.
        num_examples: how many examples were averaged.
        accuracy: the unperturbed accuracy of the model on them.
        settings: what produced the table (methods' settings, data, checkpoint).
        seconds: wall time per method.
    """

    auc: dict[str, dict[str, float]]
    curves: dict[str, dict[str, list[float]]]
    fractions: list[float]
    num_examples: int
    accuracy: float
    settings: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_markdown(self) -> str:
        header = "| method | image negative ↑ | image positive ↓ | text negative ↑ | text positive ↓ |"
        lines = [header, "|---|---|---|---|---|"]
        for method, row in self.auc.items():
            lines.append(f"| {method} | " + " | ".join(f"{row[test]:.2f}" for test in TESTS) + " |")
        return "\n".join(lines)


def faithfulness_table(
    model: nn.Module,
    items: Sequence[QAItem],
    methods: Sequence[str] = METHODS,
    fractions: Sequence[float] = FRACTIONS,
    config: ExplainConfig | None = None,
) -> FaithfulnessTable:
    """Chefer et al.'s perturbation tests of every method over ``items``, explaining the predicted answers.

    Args:
        model: a QA model (or a pre-training model with its QA head).
        items: examples with their soft answer labels.
        methods: which of :data:`METHODS` to test.
        fractions: removal fractions; 0 first.
        config: the methods' settings.
    """
    config = config or ExplainConfig()
    if not items:
        raise ValueError("faithfulness_table needs at least one item")
    sums = {m: {t: np.zeros(len(fractions)) for t in TESTS} for m in methods}
    seconds = dict.fromkeys(methods, 0.0)
    correct = 0.0
    # A table over a data set takes minutes (about 0.4 s per question and method on a 2-core CPU).
    for index, item in enumerate(tqdm(items, desc="faithfulness", unit="question", leave=False)):
        with torch.no_grad():
            target = int(answer_logits(run(model, item.example))[0].argmax())
        correct += item.label.get(target, 0.0)
        for method in methods:
            start = time.perf_counter()
            tokens, regions = explain(model, item.example, method, target, config, index)
            for test in TESTS:
                modality, direction = test.split("_")
                scores = regions if modality == "image" else tokens
                logits = perturbation_logits(
                    model, item.example, scores, modality, direction == "positive", fractions
                )
                sums[method][test] += [item.label.get(int(answer), 0.0) for answer in logits.argmax(-1)]
            seconds[method] += time.perf_counter() - start
    n = len(items)
    curves = {m: {t: (s / n).tolist() for t, s in tests.items()} for m, tests in sums.items()}
    return FaithfulnessTable(
        auc={m: {t: area_under_curve(fractions, c) for t, c in tests.items()} for m, tests in curves.items()},
        curves=curves,
        fractions=list(fractions),
        num_examples=n,
        accuracy=correct / n,
        settings={"methods": list(methods), **asdict(config)},
        seconds=seconds,
    )


@dataclass
class ExampleFaithfulness:
    """Per-example perturbation curves for the app: how the explained answer fares as items are removed.

    Attributes:
        target: the explained answer.
        probability: method → test → probability of ``target`` at each fraction.
        kept_answer: method → test → 1 where ``target`` is still the top answer, else 0.
        auc: method → test → AUC of ``probability`` in percent.
        fractions: the removal fractions.
    """

    target: int
    probability: dict[str, dict[str, list[float]]]
    kept_answer: dict[str, dict[str, list[float]]]
    auc: dict[str, dict[str, float]]
    fractions: list[float]


def example_faithfulness(
    model: nn.Module,
    example: Example,
    target: int | None = None,
    methods: Sequence[str] = METHODS,
    fractions: Sequence[float] = FRACTIONS,
    config: ExplainConfig | None = None,
) -> ExampleFaithfulness:
    """The perturbation tests on one example, measured by the explained answer's probability (no labels needed)."""
    config = config or ExplainConfig()
    if target is None:
        with torch.no_grad():
            target = int(answer_logits(run(model, example))[0].argmax())
    probability, kept, auc = {}, {}, {}
    for method in methods:
        tokens, regions = explain(model, example, method, target, config)
        probability[method], kept[method], auc[method] = {}, {}, {}
        for test in TESTS:
            modality, direction = test.split("_")
            scores = regions if modality == "image" else tokens
            logits = perturbation_logits(model, example, scores, modality, direction == "positive", fractions)
            probability[method][test] = logits.softmax(-1)[:, target].tolist()
            kept[method][test] = (logits.argmax(-1) == target).float().tolist()
            auc[method][test] = area_under_curve(fractions, probability[method][test])
    return ExampleFaithfulness(target, probability, kept, auc, list(fractions))


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class FaithfulnessConfig:
    """A faithfulness run: checkpoint, data, sample and methods. Defaults follow Chefer et al.'s script."""

    checkpoint: str = field(
        metadata={"help": "QA (or pre-training) checkpoint directory with vocab.txt and answers.json"}
    )
    detector: str = field(metadata={"help": "detector directory the checkpoint's features came from"})
    questions: str = field(metadata={"help": "task JSON: list of {img_id, sent, label {answer: score}}"})
    images: str = field(metadata={"help": "directory holding <img_id>.png/.jpg"})
    num_samples: int = field(
        default=10000, metadata={"help": "questions sampled, all if fewer (Chefer et al.'s --num-samples)"}
    )
    seed: int = field(default=1234, metadata={"help": "sampling and random-baseline seed (Chefer et al.'s)"})
    methods: tuple[str, ...] = field(
        default=METHODS, metadata={"help": "methods to test", "choices": METHODS}
    )
    fractions: tuple[float, ...] = field(
        default=FRACTIONS, metadata={"help": "removal fractions, 0 first (Chefer et al.'s schedule)"}
    )
    out: str = field(default="", metadata={"help": "write the table (AUCs, curves, settings) as JSON here"})
    ig_steps: int = field(default=32, metadata={"help": "integration steps of IG"})
    ig_region_baseline: str = field(
        default="zero", metadata={"help": "IG region baseline", "choices": ("zero", "mean")}
    )


def parse_args(argv: Sequence[str] | None = None) -> FaithfulnessConfig:
    p = command_parser("python -m analysis.faithfulness", __doc__.split("\n\n")[0])
    add_dataclass_arguments(p, FaithfulnessConfig, "faithfulness")
    config = dataclass_from_args(FaithfulnessConfig, p.parse_args(argv))
    if config.fractions[0] != 0.0 or sorted(config.fractions) != list(config.fractions):
        p.error(f"--fractions must rise from 0, got {list(config.fractions)}")
    return config


def main(argv: Sequence[str] | None = None) -> FaithfulnessTable:
    config = parse_args(argv)
    from lxmert.checkpoints import load_checkpoint
    from lxmert.detection.detector import Detector

    loaded = load_checkpoint(config.checkpoint)
    if loaded.tokenizer is None or loaded.answers is None:
        raise ValueError(f"{config.checkpoint} lacks vocab.txt or answers.json; both are needed here")
    items = load_qa_items(
        config.questions,
        loaded.tokenizer,
        loaded.answers,
        Detector.from_pretrained(config.detector),
        config.images,
        config.num_samples,
        config.seed,
    )
    explain_config = ExplainConfig(
        ig_steps=config.ig_steps,
        ig_region_baseline=config.ig_region_baseline,
        pad_token_id=loaded.tokenizer.pad_token_id,
        seed=config.seed,
    )
    table = faithfulness_table(loaded.model, items, config.methods, config.fractions, explain_config)
    table.settings.update(asdict(config))
    print(f"{table.num_examples} examples, accuracy {100 * table.accuracy:.2f}%")
    print(table.to_markdown())
    if config.out:
        Path(config.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(config.out, json.dumps(asdict(table), indent=1) + "\n")
    return table


__all__ = [
    "ExampleFaithfulness",
    "ExplainConfig",
    "FRACTIONS",
    "FaithfulnessConfig",
    "FaithfulnessTable",
    "METHODS",
    "TESTS",
    "area_under_curve",
    "example_faithfulness",
    "explain",
    "faithfulness_table",
    "kept_items",
    "perturbation_logits",
    "perturbed",
]


if __name__ == "__main__":
    run_cli(main)
