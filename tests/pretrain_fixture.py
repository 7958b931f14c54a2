"""A tiny pre-training world on disk, laid out like ``training.world``'s output.

Every image has ``REGIONS`` regions; a region's feature is one-hot of its object label, one-hot of its colour and
a little noise, so the object/attribute heads, the captions ("a red circle") and the colour questions are all
learnable. Layout: ``features/`` (a feature store), ``lxmert/mscoco_{train,nominival,minival}.json``,
``lxmert/all_ans.json``, ``objects_vocab.txt``, ``attributes_vocab.txt`` and ``vocab.txt``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lxmert.answers import AnswerTable
from lxmert.config import LxmertConfig
from lxmert.data.store import FeatureStores, FeatureStoreWriter
from lxmert.tokenization import LxmertTokenizer
from lxmert.wordpiece import train_wordpiece
from training.tasks.pretraining import (
    PretrainConfig,
    PretrainDataset,
    PretrainTask,
    read_pretrain_json,
)
from training.tasks.pretraining_run import model_config

SHAPES = ("circle", "square", "triangle", "star", "heart")
COLOURS = ("red", "green", "blue", "white")
REGIONS = 6
NOISE_DIMS = 3
FEATURE_DIM = len(SHAPES) + len(COLOURS) + NOISE_DIMS
SPLITS = {"mscoco_train": range(0, 10), "mscoco_nominival": range(10, 12), "mscoco_minival": range(12, 16)}


def _image(rng: np.random.Generator, index: int) -> dict:
    objects = rng.integers(len(SHAPES), size=REGIONS)
    colours = rng.integers(len(COLOURS), size=REGIONS)
    features = np.concatenate(
        [
            np.eye(len(SHAPES))[objects] * 2,
            np.eye(len(COLOURS))[colours] * 2,
            rng.normal(size=(REGIONS, NOISE_DIMS)),
        ],
        axis=1,
    ).astype(np.float32)
    corners = rng.uniform(0, 50, (REGIONS, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 50, (REGIONS, 2))], axis=1).astype(np.float32)
    return {
        "img_id": f"img{index:03d}",
        "img_h": 100,
        "img_w": 100,
        "num_boxes": REGIONS,
        "boxes": boxes,
        "features": features,
        "objects_id": objects.astype(np.int64),
        "objects_conf": rng.uniform(0.5, 1.0, REGIONS).astype(np.float32),
        "attrs_id": colours.astype(np.int64),
        "attrs_conf": rng.uniform(0.5, 1.0, REGIONS).astype(np.float32),
    }


def _datum(row: dict) -> dict:
    names = [(COLOURS[c], SHAPES[o]) for o, c in zip(row["objects_id"], row["attrs_id"], strict=True)]
    captions = [f"a {colour} {shape} ." for colour, shape in names[:3]] + [f"there is a {names[3][1]} here ."]
    questions = [f"what color is the {shape} ?" for _, shape in names[:3]]
    labels = [{colour: 1.0} for colour, _ in names[:3]]
    labels[0][COLOURS[(COLOURS.index(names[0][0]) + 1) % len(COLOURS)]] = 0.3  # a soft second answer
    return {"img_id": row["img_id"], "sentf": {"cap": captions, "vqa": questions}, "labelf": {"vqa": labels}}


def build_world(root: Path, seed: int = 0) -> Path:
    """Write the world under ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    rows = [_image(rng, i) for i in range(16)]
    with FeatureStoreWriter(root / "features", num_boxes=REGIONS, feature_dim=FEATURE_DIM) as writer:
        for row in rows:
            writer.add(row)
    (root / "lxmert").mkdir(parents=True)
    sentences = []
    for name, indices in SPLITS.items():
        data = [_datum(rows[i]) for i in indices]
        sentences += [s for d in data for sents in d["sentf"].values() for s in sents]
        (root / "lxmert" / f"{name}.json").write_text(json.dumps(data))
    answers = [{"ans": a, "dsets": ["vqa"]} for a in COLOURS] + [{"ans": s, "dsets": ["gqa"]} for s in SHAPES]
    (root / "lxmert" / "all_ans.json").write_text(json.dumps(answers))
    (root / "objects_vocab.txt").write_text("\n".join(SHAPES) + "\n")
    (root / "attributes_vocab.txt").write_text("\n".join(COLOURS) + "\n")
    train_wordpiece(sentences, 60, root / "vocab.txt")
    return root


def pretrain_setup(world: Path, **overrides) -> tuple[PretrainDataset, PretrainTask, LxmertConfig]:
    """The training data, task and tiny model config of ``world`` (QA on from the start unless overridden)."""
    config = PretrainConfig(world=str(world), preset="tiny", **{"qa_from_epoch": 0, **overrides})
    tokenizer = LxmertTokenizer(world / "vocab.txt")
    answers = AnswerTable.from_all_ans(config.answers_path())
    features = FeatureStores(config.feature_paths())
    data = PretrainDataset(
        read_pretrain_json(config.train_paths()), features, tokenizer, answers, config, seed=1
    )
    return (
        data,
        PretrainTask(tokenizer, answers, config),
        model_config(config, tokenizer, answers, features.feature_dim),
    )
