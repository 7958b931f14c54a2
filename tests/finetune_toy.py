"""A tiny fine-tuning world on disk: feature stores, VQA / GQA / NLVR2 split files and a pre-trained checkpoint.

Answers depend on the image features (the first feature of the first region), so a model that sees the images can
do better than one that does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lxmert.config import LxmertConfig
from lxmert.data.store import FeatureStoreWriter
from lxmert.data.task_files import write_json
from lxmert.modeling import LxmertForPreTraining
from lxmert.wordpiece import train_wordpiece

FEATURE_DIM = 8
PRETRAIN_ANSWERS = ["no", "yes", "red", "green", "2"]  # the checkpoint's QA head rows
VQA_ANSWERS = ["yes", "no", "red", "blue", "2", "3"]
GQA_ANSWERS = ["yes", "no", "left", "right", "cup"]


def _image(rng: np.random.Generator, img_id: str, num_boxes: int) -> dict:
    boxes = np.sort(rng.uniform(0, 100, (num_boxes, 4)).astype(np.float32).reshape(num_boxes, 2, 2), axis=1)
    return {
        "img_id": img_id,
        "img_h": 100,
        "img_w": 100,
        "num_boxes": num_boxes,
        "boxes": boxes.reshape(num_boxes, 4),  # rows (x1, y1), (x2, y2) sorted: x1 <= x2, y1 <= y2
        "features": rng.normal(size=(num_boxes, FEATURE_DIM)).astype(np.float32),
        "objects_id": np.zeros(num_boxes, np.int64),
        "objects_conf": np.ones(num_boxes, np.float32),
        "attrs_id": np.zeros(num_boxes, np.int64),
        "attrs_conf": np.ones(num_boxes, np.float32),
    }


def build(root: Path, images: int = 12, dropout: float = 0.1) -> dict[str, Path]:
    """Write the toy world under ``root``; returns its paths (``features``, ``vqa``, ``gqa``, ``nlvr2``, ``init``).

    ``dropout`` is the checkpoint's (0 makes training deterministic whatever the number of processes).
    """
    rng = np.random.default_rng(0)
    rows = [_image(rng, f"img{i}", 2 + i % 3) for i in range(images)]
    with FeatureStoreWriter(root / "features", num_boxes=4, feature_dim=FEATURE_DIM) as writer:
        for row in rows:
            writer.add(row)
    bright = {r["img_id"]: bool(r["features"][0, 0] > 0) for r in rows}
    count = {r["img_id"]: r["num_boxes"] for r in rows}

    vqa, gqa = {}, {}
    for split, ids in (("train", range(0, 8)), ("minival", range(8, 12))):
        vqa[split], gqa[split] = [], []
        for i in ids:
            img = f"img{i}"
            yes = "yes" if bright[img] else "no"
            vqa[split] += [
                {"question_id": i * 10 + 1, "img_id": img, "sent": "is it bright?", "answer_type": "yes/no",
                 "question_type": "is it", "label": {yes: 1.0, ("no" if yes == "yes" else "yes"): 0.3}},
                {"question_id": i * 10 + 2, "img_id": img, "sent": "how many things?", "answer_type": "number",
                 "question_type": "how many", "label": {str(min(count[img], 3)): 0.9}},
                {"question_id": i * 10 + 3, "img_id": img, "sent": "what colour is it?", "answer_type": "other",
                 "question_type": "what colour", "label": {"red" if bright[img] else "blue": 1.0, "pink": 0.3}},
            ]  # fmt: skip
            gqa[split] += [
                {"question_id": f"{i}01", "img_id": img, "sent": "is it bright?", "label": {yes: 1.0},
                 "types": {"structural": "verify", "semantic": "attr", "detailed": "verifyAttr"}},
                {"question_id": f"{i}02", "img_id": img, "sent": "which side is it on?",
                 "label": {"left" if bright[img] else "right": 1.0},
                 "types": {"structural": "query", "semantic": "rel", "detailed": "relS"}},
            ]  # fmt: skip
    for split in vqa:
        write_json(root / "vqa" / f"{split}.json", vqa[split])
        write_json(root / "gqa" / f"{split}.json", gqa[split])
    write_json(root / "vqa" / "trainval_label2ans.json", VQA_ANSWERS)
    write_json(root / "gqa" / "trainval_label2ans.json", GQA_ANSWERS)

    nlvr2 = {"train": [], "valid": []}
    for s in range(images // 2):
        split = "train" if s < 4 else "valid"
        for pair in range(2):
            a, b = f"img{(2 * s + pair) % images}", f"img{(2 * s + pair + 1) % images}"
            nlvr2[split].append(
                {"identifier": f"{split}-{s}-{pair}-0", "img0": a, "img1": b, "sent": "both are bright",
                 "uid": f"nlvr2_{split}_{s}_{pair}", "label": int(bright[a] and bright[b])}
            )  # fmt: skip
    for split, items in nlvr2.items():
        write_json(root / "nlvr2" / f"{split}.json", items)

    sentences = [d["sent"] for part in (*vqa.values(), *gqa.values(), *nlvr2.values()) for d in part]
    tokenizer = train_wordpiece(sentences * 3, vocab_size=60, out_path=root / "vocab.txt")
    torch.manual_seed(0)
    config = LxmertConfig.preset(
        "tiny", vocab_size=tokenizer.vocab_size, visual_feat_dim=FEATURE_DIM, num_qa_labels=len(PRETRAIN_ANSWERS),
        num_object_labels=10, num_attr_labels=17, l_layers=1, r_layers=1, x_layers=1,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )  # fmt: skip
    LxmertForPreTraining(config).save_pretrained(root / "init", tokenizer=tokenizer, answers=PRETRAIN_ANSWERS)
    return {
        "features": root / "features",
        "vqa": root / "vqa",
        "gqa": root / "gqa",
        "nlvr2": root / "nlvr2",
        "init": root / "init",
    }
