"""A tiny, seeded, randomly initialised assets directory laid out like ``assets/``, for the app's tests.

    <root>/default/model_set.json  the default model set: the detector below, model (selected first), pretrained
    <root>/default/detector/   a small Faster R-CNN (random weights) and its vocabularies
    <root>/default/model/      LxmertForQuestionAnswering: the answering default
    <root>/default/pretrained/ LxmertForPreTraining with every head: its "parent"
    <root>/runs/{a,b}/best/    two more QA checkpoints, each with a metrics.jsonl beside it, to compare
    <root>/samples/            three gallery images (one with a sidecar of questions), two more in scenes/

The weights are random, so predictions mean nothing; the tests check the app's plumbing and compare it with
``analysis`` called directly on the same files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from analysis_toy import toy_config
from PIL import Image, ImageDraw

from lxmert import LxmertConfig, LxmertForPreTraining, LxmertForQuestionAnswering
from lxmert.checkpoints import save_pretrained
from lxmert.detection import Detector, DetectorConfig, FasterRCNNWithAttributes
from lxmert.model_sets import CheckpointEntry, ModelSet, write_model_set
from lxmert.tokenization import SPECIAL_TOKENS, LxmertTokenizer

OBJECTS = ("circle", "square", "triangle", "star")
ATTRIBUTES = ("red", "green", "blue", "small", "large")
ANSWERS = ("red", "green", "blue", "yes", "no", "2", "3")
WORDS = "what color is the circle square triangle star red green blue how many shapes are there ? a left of".split()
QUESTIONS = ("What color is the circle?", "How many shapes are there?")
FEATURE_DIM = 32
NUM_REGIONS = 8


def _config(**overrides) -> LxmertConfig:
    """The analysis tests' tiny sizes (``tests/analysis_toy.py``) with this world's vocabularies."""
    fields = dict(
        vocab_size=len(SPECIAL_TOKENS) + len(WORDS),
        visual_feat_dim=FEATURE_DIM,
        num_object_labels=len(OBJECTS),
        num_attr_labels=len(ATTRIBUTES),
        num_qa_labels=len(ANSWERS),
    )
    return toy_config(**{**fields, **overrides})


def toy_detector(
    objects: Sequence[str] = OBJECTS, attributes: Sequence[str] = ATTRIBUTES, feature_dim: int = FEATURE_DIM
) -> Detector:
    """A small Faster R-CNN with random weights that names ``objects`` and ``attributes`` and gives
    ``feature_dim``-d region features, ``NUM_REGIONS`` regions an image."""
    config = DetectorConfig.preset(
        "small",
        small_channels=(8, 16, 32),
        feature_dim=feature_dim,
        num_classes=len(objects),
        num_attributes=len(attributes),
        class_embed_dim=8,
        attr_hidden_dim=16,
        num_regions=NUM_REGIONS,
    )
    return Detector(FasterRCNNWithAttributes(config), list(objects), list(attributes))


def scene_image(seed: int, size: int = 96) -> Image.Image:
    """A few flat shapes on grey, like a (much simpler) synthetic-world scene."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y = rng.integers(5, size - 30, 2)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.ellipse([int(x), int(y), int(x) + 22, int(y) + 22], fill=colour)
    return image


def _metrics(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lines = []
    for step in range(0, 50, 10):
        lines.append(
            {
                "split": "train",
                "scope": "step",
                "step": step,
                "loss": float(2 / (1 + step) + rng.random() * 0.1),
            }
        )
    lines.append({"split": "valid", "scope": "eval", "step": 50, "loss": 0.5, "accuracy": 0.4 + 0.1 * seed})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def build_assets(root: Path, detector: Detector | None = None, world: str = "synthetic") -> Path:
    """Write the tiny assets tree under ``root`` and return ``root``.

    Args:
        detector: the default detector (the tiny random one when None); the models take its feature size.
        world: what the default set says it knows (``model_set.json``).
    """
    torch.manual_seed(0)
    default = root / "default"
    (default).mkdir(parents=True)
    detector = detector or toy_detector()
    detector.save_pretrained(default / "detector")
    sizes = dict(
        visual_feat_dim=detector.config.feature_dim,
        num_object_labels=len(detector.objects_vocab),
        num_attr_labels=len(detector.attributes_vocab),
    )
    vocab = root / "vocab.txt"
    vocab.write_text("".join(t + "\n" for t in (*SPECIAL_TOKENS, *WORDS)))
    tokenizer = LxmertTokenizer(vocab)
    meta = {"recipe": "random weights for tests", "scores": {"valid": {"accuracy": 0.0}}}
    save_pretrained(
        LxmertForQuestionAnswering(_config(**sizes)).eval(),
        default / "model",
        tokenizer=tokenizer,
        answers=ANSWERS,
        meta=meta,
    )
    save_pretrained(
        LxmertForPreTraining(_config(**sizes)).eval(),
        default / "pretrained",
        tokenizer=tokenizer,
        answers=ANSWERS,
    )
    write_model_set(
        ModelSet(
            default,
            "Toy set",
            world,
            default / "detector",
            {name: CheckpointEntry(default / name) for name in ("model", "pretrained")},
        )
    )
    for seed, name in enumerate(("a", "b")):
        torch.manual_seed(100 + seed)
        run = root / "runs" / name
        save_pretrained(
            LxmertForQuestionAnswering(_config(**sizes)).eval(),
            run / "best",
            tokenizer=tokenizer,
            answers=ANSWERS,
        )
        _metrics(run / "metrics.jsonl", seed)
    samples = root / "samples"
    (samples / "scenes").mkdir(parents=True)
    for i in range(3):
        scene_image(i).save(samples / f"scene_{i}.png")
    (samples / "scene_0.json").write_text(json.dumps({"questions": list(QUESTIONS)}))
    for i in range(3, 5):
        scene_image(i).save(samples / "scenes" / f"scene_{i}.png")
    return root


__all__ = ["ANSWERS", "ATTRIBUTES", "NUM_REGIONS", "OBJECTS", "QUESTIONS", "build_assets", "scene_image"]
