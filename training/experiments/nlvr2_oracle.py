"""The ceiling of the world's NLVR2: a symbolic oracle that reads each statement's text and checks it on the scenes.

The oracle knows nothing of how a statement was made: it parses the sentence (``read_statement``) and evaluates it
on the ground-truth objects of the two images (``annotations/nlvr2_<split>.json``). Its accuracy is the best a
model can reach that sees every object perfectly; anything below 1.0 would mean the text leaves the label open.
Beside it, the question-only baseline (``training.world.baselines``) and chance show where a model that does not
look stays.

    python -m training.experiments.nlvr2_oracle --world runs/world --split valid
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxmert.config_cli import add_dataclass_arguments, dataclass_from_args
from lxmert.data.task_files import load_nlvr2
from lxmert.fileio import read_json
from training.engine.metrics import nlvr2_scores
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


def oracle_scores(world: str | Path, split: str = "valid") -> dict[str, float]:
    """Accuracy and consistency of the oracle on a world's NLVR2 split (``nlvr2/<split>.json``)."""
    world = Path(world)
    items = load_nlvr2(world / "nlvr2" / f"{split}.json")
    annotations = read_json(world / "annotations" / f"nlvr2_{split}.json")
    objects = {a["img_id"]: annotated_objects(a) for a in annotations}
    return nlvr2_scores(oracle_predictions(items, objects), items)


@dataclass
class OracleConfig:
    world: str = field(metadata={"help": "world directory written by python -m training.world"})
    split: str = field(
        default="valid", metadata={"help": "NLVR2 split to score", "choices": ["train", "valid", "test"]}
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m training.experiments.nlvr2_oracle", description=__doc__)
    add_dataclass_arguments(parser, OracleConfig, "oracle")
    config = dataclass_from_args(OracleConfig, parser.parse_args(argv))
    scores = oracle_scores(config.world, config.split)
    print(json.dumps(scores))
    return scores


if __name__ == "__main__":
    main()
