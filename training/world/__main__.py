"""``python -m training.world --out DIR --images N --seed S``: generate a synthetic world (see generate.py)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from training.world.generate import WorldConfig, build_world

HELP = {
    "out": "output directory (replaced atomically when generation finishes)",
    "images": "number of images to write, NLVR2 pairs included",
    "seed": "random seed; the same seed gives the same bytes",
    "image_size": "side of the square images in pixels",
    "nlvr2_fraction": "share of the images used for NLVR2 image pairs",
    "pairs_per_statement": "image pairs judged against each NLVR2 sentence (for consistency)",
    "captions_per_image": "captions per main image",
    "scene_kinds": "kinds of scene among the main images, each favouring its own shapes and colours, as a kitchen "
    "holds other things than a street (1: none)",
    "scene_kind_bias": "chance that an object takes its scene kind's shape (and, apart, colour) instead of any",
    "gqa_questions_per_image": "GQA-style question candidates per image, before answer balancing",
    "vqa_questions_per_image": "VQA-style questions per image",
    "annotators": "simulated annotator answers per VQA question",
    "nominival_fraction": "share of main images in the nominival split (pre-training and VQA training)",
    "minival_fraction": "share of main images in minival (VQA minival, GQA valid; never pre-trained on)",
    "test_fraction": "share of main images in test (VQA test, GQA testdev; never pre-trained on)",
    "nlvr2_valid_fraction": "share of NLVR2 sentences in valid",
    "nlvr2_test_fraction": "share of NLVR2 sentences in test",
    "min_vqa_answer_count": "questions an answer needs to enter the VQA answer table (9 in the real one)",
    "gqa_balance_ratio": "cap on an answer's count within a GQA family, as a multiple of a uniform share",
    "workers": "worker processes (0 = one per CPU)",
}


def parse_args(argv: list[str] | None = None) -> WorldConfig:
    parser = argparse.ArgumentParser(prog="python -m training.world", description=__doc__)
    for field in dataclasses.fields(WorldConfig):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), default=field.default, help=HELP[field.name])
    return WorldConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    start = time.perf_counter()
    summary = build_world(cfg)
    print(json.dumps(summary["counts"], indent=1))
    print(f"world written to {cfg.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
