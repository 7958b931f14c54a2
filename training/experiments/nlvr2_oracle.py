"""The ceiling of the world's NLVR2: a symbolic oracle that reads each statement's text and checks it on the scenes.

The oracle knows nothing of how a statement was made: it parses the sentence (``read_statement``) and evaluates it
on the ground-truth objects of the two images (``annotations/nlvr2_<split>.json``). Its accuracy is the best a
model can reach that sees every object perfectly; anything below 1.0 would mean the text leaves the label open.
With ``--features`` it checks the statements about shapes on the detector's confident regions instead: what the
region labels a model reads still tell.
``--kinds`` scores what knowing each image's scene kind alone allows (``kind_scores``): the label most often given
to the same sentence about images of the same two kinds in training. Where it comes close to the oracle, the
statements can be settled without finding the objects they name.
Beside them, the question-only baseline (``training.world.template_priors``) and chance show where a model that does
not look stays.

    python -m training.experiments.nlvr2_oracle --world runs/world --split valid
    python -m training.experiments.nlvr2_oracle --world runs/world --features runs/features --threshold 0.7
    python -m training.experiments.nlvr2_oracle --world runs/world --kinds
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxmert.config_cli import parse_config
from lxmert.data.metrics import nlvr2_scores
from lxmert.data.store import FeatureStores
from lxmert.data.task_files import load_nlvr2
from lxmert.detection.files import read_vocab
from lxmert.fileio import read_json
from training.world.scenes import kind_labels
from training.world.statements import evaluate, read_statement


@dataclass(frozen=True)
class SeenObject:
    """An object as the ground truth (or a perfect detector) describes it."""

    shape: str
    colour: str
    size: str
    fill: str


def annotated_objects(annotation: Mapping[str, Any]) -> list[SeenObject]:
    """The objects of one ``annotations/<split>.json`` entry."""
    return [SeenObject(o["label"], *o["attributes"]) for o in annotation["objects"]]


def detected_objects(
    row: Mapping[str, Any], objects_vocab: Sequence[str], threshold: float
) -> list[SeenObject]:
    """The regions of a feature-store row detected with at least ``threshold`` confidence, as shapes.

    A region carries a single attribute label (its likeliest of colour, size and fill), so only its shape is kept
    and statements about colours cannot be checked on detections.
    """
    return [
        SeenObject(objects_vocab[label], "", "", "")
        for label, confidence in zip(row["objects_id"], row["objects_conf"], strict=True)
        if confidence >= threshold
    ]


def oracle_predictions(
    items: Sequence[Mapping[str, Any]], objects: Mapping[str, Sequence[Any]]
) -> dict[str, bool]:
    """Identifier → the truth of the item's sentence, parsed from its text, on the objects of its two images.

    Raises:
        KeyError: an item's image has no entry in ``objects``.
        ValueError: a sentence is not one of the world's statements.
    """
    return {
        item["identifier"]: evaluate(
            read_statement(item["sent"]), objects[item["img0"]], objects[item["img1"]]
        )
        for item in items
    }


def oracle_scores(
    world: str | Path, split: str = "valid", features: str = "", threshold: float = 0.5
) -> tuple[dict[str, float], int]:
    """Accuracy and consistency of the oracle on a world's NLVR2 split (``nlvr2/<split>.json``), and the pairs scored.

    Args:
        features: a feature store of the world's images: check the statements on the detector's regions
            (``detected_objects``) instead of the ground truth, for the statements that name no colour.
        threshold: the detection confidence a region needs to count as an object.
    """
    world = Path(world)
    items = load_nlvr2(world / "nlvr2" / f"{split}.json")
    if features:
        items = [i for i in items if "colour" not in read_statement(i["sent"]).params["attrs"]]
        stores, vocab = FeatureStores([features]), read_vocab(world / "objects_vocab.txt")
        images = {image for item in items for image in (item["img0"], item["img1"])}
        objects = {image: detected_objects(stores.get(image), vocab, threshold) for image in images}
    else:
        annotations = read_json(world / "annotations" / f"nlvr2_{split}.json")
        objects = {a["img_id"]: annotated_objects(a) for a in annotations}
    return nlvr2_scores(oracle_predictions(items, objects), items), len(items)


def scene_kind(objects: Sequence[SeenObject], kinds: int) -> int:
    """The kind of scene whose favoured shapes and colours (``kind_labels``) the objects take most often."""

    def typical(kind: int) -> int:
        shapes, colours = kind_labels(kind, kinds)
        return sum((o.shape in shapes) + (o.colour in colours) for o in objects)

    return max(range(kinds), key=typical)


def kind_predictions(
    train: Sequence[Mapping[str, Any]], items: Sequence[Mapping[str, Any]], kind_of: Mapping[str, int]
) -> dict[str, bool]:
    """Identifier → the training majority label of the item's sentence about images of its two kinds; of the
    sentence alone where training never saw that pairing of kinds; True where it never saw the sentence."""
    votes: dict[tuple, Counter] = {}
    for item in train:
        for key in ((item["sent"], kind_of[item["img0"]], kind_of[item["img1"]]), (item["sent"],)):
            votes.setdefault(key, Counter())[bool(item["label"])] += 1

    def majority(item: Mapping[str, Any]) -> bool:
        for key in ((item["sent"], kind_of[item["img0"]], kind_of[item["img1"]]), (item["sent"],)):
            if key in votes:
                (label, _), *_ = sorted(votes[key].items(), key=lambda kv: (-kv[1], not kv[0]))
                return label
        return True

    return {item["identifier"]: majority(item) for item in items}


def kind_scores(world: str | Path, split: str = "valid") -> tuple[dict[str, float], int]:
    """Accuracy and consistency on a world's NLVR2 split of :func:`kind_predictions`, each image's kind read from
    its ground-truth objects (``scene_kind``), and the pairs scored."""
    world = Path(world)
    kinds = read_json(world / "world.json")["config"]["scene_kinds"]
    train, items = (load_nlvr2(world / "nlvr2" / f"{s}.json") for s in ("train", split))
    kind_of = {
        a["img_id"]: scene_kind(annotated_objects(a), kinds)
        for s in ("train", split)
        for a in read_json(world / "annotations" / f"nlvr2_{s}.json")
    }
    return nlvr2_scores(kind_predictions(train, items, kind_of), items), len(items)


@dataclass
class OracleConfig:
    world: str = field(metadata={"help": "world directory written by python -m training.world"})
    split: str = field(
        default="valid", metadata={"help": "NLVR2 split to score", "choices": ["train", "valid", "test"]}
    )
    features: str = field(
        default="",
        metadata={"help": "feature store: check the colour-free statements on its detected regions instead"},
    )
    threshold: float = field(default=0.5, metadata={"help": "confidence a detected region needs to count"})
    kinds: bool = field(
        default=False, metadata={"help": "score the scene-kind baseline (kind_scores) instead of the oracle"}
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    config = parse_config(
        OracleConfig, argv, prog="python -m training.experiments.nlvr2_oracle", doc=__doc__, title="oracle"
    )
    if config.kinds:
        scores, pairs = kind_scores(config.world, config.split)
    else:
        scores, pairs = oracle_scores(config.world, config.split, config.features, config.threshold)
    print(json.dumps({**scores, "pairs": pairs}))
    return scores


if __name__ == "__main__":
    main()
