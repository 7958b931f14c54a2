"""A tiny world end to end: layout in the real formats, disjoint splits, same seed same bytes."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lxmert.answers import AnswerTable
from lxmert.data.task_files import load_gqa, load_nlvr2, load_pretrain, load_vqa
from lxmert.detection.files import read_vocab
from training.experiments.nlvr2_oracle import annotated_objects
from training.world.__main__ import parse_args
from training.world.generate import WorldConfig, balance_answers, build_world
from training.world.scenes import COLOURS, SHAPES
from training.world.statements import evaluate, read_statement

TINY = dict(
    images=30,
    nlvr2_fraction=0.4,
    pairs_per_statement=2,
    nlvr2_valid_fraction=0.34,
    nlvr2_test_fraction=0.34,
    min_vqa_answer_count=2,
    workers=1,
)


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "w"
    build_world(WorldConfig(out=str(out), seed=3, **TINY), progress=False)
    return out


def test_layout_is_in_the_real_formats(world):
    summary = json.loads((world / "world.json").read_text())
    assert summary["seed"] == 3 and summary["counts"]["images"] == 30
    assert len(list((world / "images").glob("*.png"))) == 30
    objects = read_vocab(world / "objects_vocab.txt")
    attributes = read_vocab(world / "attributes_vocab.txt")
    for split in ("train", "valid", "testdev"):
        assert load_gqa(world / f"gqa/{split}.json")
    for split in ("train", "nominival", "minival", "test"):
        assert load_vqa(world / f"vqa/{split}.json")
    for name in ("mscoco_train", "mscoco_nominival", "mscoco_minival"):
        data = load_pretrain(world / f"lxmert/{name}.json")
        assert all(len(d["sentf"]["synth_cap"]) == 5 for d in data)
    for split in ("train", "valid", "test"):
        assert load_nlvr2(world / f"nlvr2/{split}.json")
    vqa_table = AnswerTable.load(world / "vqa/trainval_ans2label.json")
    assert vqa_table == AnswerTable.load(world / "vqa/trainval_label2ans.json")
    assert all(a in vqa_table for d in load_vqa(world / "vqa/train.json") for a in d["label"])
    gqa_table = AnswerTable.load(world / "gqa/trainval_ans2label.json")
    assert all(a in gqa_table for d in load_gqa(world / "gqa/train.json") for a in d["label"])
    all_ans = AnswerTable.load(world / "lxmert/all_ans.json")
    assert {"yes", "no"} <= set(all_ans.label2ans)
    for entry in json.loads((world / "annotations/train.json").read_text()):
        assert (world / "images" / f"{entry['img_id']}.png").exists()
        for obj in entry["objects"]:
            assert objects[obj["label_id"]] == obj["label"]
            assert [attributes[i] for i in obj["attr_ids"]] == obj["attributes"]
            x1, y1, x2, y2 = obj["box"]
            assert 0 <= x1 < x2 <= entry["width"] and 0 <= y1 < y2 <= entry["height"]


def test_pretraining_images_never_appear_in_finetuning_validation_or_test(world):
    pretrained = {
        d["img_id"]
        for name in ("mscoco_train", "mscoco_nominival")
        for d in load_pretrain(world / f"lxmert/{name}.json")
    }
    held_out = {d["img_id"] for d in load_vqa(world / "vqa/minival.json") + load_vqa(world / "vqa/test.json")}
    held_out |= {d["img_id"] for split in ("valid", "testdev") for d in load_gqa(world / f"gqa/{split}.json")}
    assert pretrained and held_out and not pretrained & held_out
    splits = json.loads((world / "world.json").read_text())["splits"]
    assert sum(len(ids) for ids in splits.values()) == len({i for ids in splits.values() for i in ids}) == 30


def check_nlvr2_sets(world: Path, sentences: int) -> None:
    """NLVR2's identifier layout (split-set-pair-sentence); each sentence of a set has its own pairs of the set's
    images, no image twice in a sentence, and the label is the statement's truth on the ground truth."""
    for split in ("train", "valid", "test"):
        data = load_nlvr2(world / f"nlvr2/{split}.json")
        objects = {
            a["img_id"]: annotated_objects(a)
            for a in json.loads((world / "annotations" / f"nlvr2_{split}.json").read_text())
        }
        groups: dict[tuple[str, str], list[dict]] = {}
        for k, d in enumerate(data):
            found = re.fullmatch(rf"{split}-(\d+)-(\d+)-(\d+)", d["identifier"])
            assert found and d["uid"] == f"nlvr2_{split}_{k}"
            set_id, sentence = found[1], found[3]
            assert d["img0"].startswith(f"{split}-{set_id}-img") and d["img1"].startswith(
                f"{split}-{set_id}-img"
            )
            assert (world / "images" / f"{d['img0']}.png").exists()
            assert bool(d["label"]) == evaluate(
                read_statement(d["sent"]), objects[d["img0"]], objects[d["img1"]]
            )
            groups.setdefault((set_id, sentence), []).append(d)
        sets = {set_id for set_id, _ in groups}
        assert len(groups) == sentences * len(sets)
        for items in groups.values():
            assert len({d["sent"] for d in items}) == 1 and len(items) == TINY["pairs_per_statement"]
            images = [d[key] for d in items for key in ("img0", "img1")]
            assert len(set(images)) == len(images)


def test_nlvr2_follows_nlvr2_naming_and_sentences_have_several_pairs(world):
    check_nlvr2_sets(world, sentences=1)


def test_several_sentences_per_nlvr2_set_pair_the_set_images_anew(tmp_path):
    out = tmp_path / "sentences"
    build_world(WorldConfig(out=str(out), seed=3, nlvr2_sentences=3, **TINY), progress=False)
    check_nlvr2_sets(out, sentences=3)
    summary = json.loads((out / "world.json").read_text())
    assert sum(len(ids) for ids in summary["splits"].values()) == TINY["images"]
    pairings = {}
    for split in ("train", "valid", "test"):
        for d in load_nlvr2(out / f"nlvr2/{split}.json"):
            set_id, _, sentence = d["identifier"].split("-")[1:]
            pairings.setdefault((split, set_id), {}).setdefault(sentence, set()).add((d["img0"], d["img1"]))
    # the sentences of a set are not all judged on the same pairs
    assert any(len({frozenset(p) for p in by_sentence.values()}) > 1 for by_sentence in pairings.values())


def test_same_seed_same_bytes(world, tmp_path):
    again = tmp_path / "again"
    build_world(WorldConfig(out=str(again), seed=3, **TINY), progress=False)
    assert digest(again) == digest(world)


@pytest.mark.slow
def test_worker_processes_do_not_change_the_bytes(world, tmp_path):
    parallel = tmp_path / "parallel"
    build_world(WorldConfig(out=str(parallel), seed=3, **{**TINY, "workers": 2}), progress=False)
    assert digest(parallel) == digest(world)


def test_scene_kinds_reach_the_main_images_of_a_world(tmp_path):
    out = tmp_path / "kinds"
    build_world(WorldConfig(out=str(out), seed=3, scene_kinds=5, scene_kind_bias=1.0, **TINY), progress=False)
    splits = json.loads((out / "world.json").read_text())["splits"]
    for split in ("train", "nominival", "minival", "test"):
        images = json.loads((out / "annotations" / f"{split}.json").read_text())
        assert [i["img_id"] for i in images] == splits[split]
        for image in images:
            # kind k favours the shapes and colours whose index is k modulo 5: one kind per image, for both
            shape_kinds = {SHAPES.index(o["label"]) % 5 for o in image["objects"]}
            colour_kinds = {COLOURS.index(o["attributes"][0]) % 5 for o in image["objects"]}
            assert len(shape_kinds) == 1 and shape_kinds == colour_kinds


def test_scene_kinds_reach_the_nlvr2_images_of_a_world(tmp_path):
    # NLVR2 images come from the same kinds of scene as the pre-training images, as photographs do.
    out = tmp_path / "kinds"
    build_world(WorldConfig(out=str(out), seed=3, scene_kinds=5, scene_kind_bias=1.0, **TINY), progress=False)
    for split in ("train", "valid", "test"):
        images = json.loads((out / "annotations" / f"nlvr2_{split}.json").read_text())
        assert images
        for image in images:
            shape_kinds = {SHAPES.index(o["label"]) % 5 for o in image["objects"]}
            colour_kinds = {COLOURS.index(o["attributes"][0]) % 5 for o in image["objects"]}
            assert len(shape_kinds) == 1 and shape_kinds == colour_kinds


def test_balancing_caps_each_answer_within_its_family():
    questions = [{"answer": a, "types": {"detailed": "count"}} for a in ["1"] * 70 + ["2"] * 20 + ["3"] * 10]
    questions += [{"answer": "yes", "types": {"detailed": "exist"}}] * 5
    kept = balance_answers(questions, np.random.default_rng(0), ratio=1.2)
    counts = {a: sum(q["answer"] == a for q in kept) for a in ("1", "2", "3", "yes")}
    # caps recomputed on what is kept: 40 (of 100), 28 (of 70), 24, 22, 21, then 21 of 51 holds
    assert counts == {"1": 21, "2": 20, "3": 10, "yes": 5}


def test_cli_flags_map_to_config_fields():
    cfg = parse_args(["--out", "/tmp/x", "--images", "12", "--seed", "5", "--gqa-balance-ratio", "2.0"])
    assert (cfg.out, cfg.images, cfg.seed, cfg.gqa_balance_ratio) == ("/tmp/x", 12, 5, 2.0)
    with pytest.raises(ValueError, match="images"):
        WorldConfig(images=0)
    assert parse_args(["--scene-kinds", "5", "--scene-kind-bias", "0.9"]).scene_kinds == 5
    for bad in ({"scene_kinds": 0}, {"scene_kinds": 11}, {"scene_kind_bias": 1.5}):
        with pytest.raises(ValueError, match="scene_kind"):
            WorldConfig(**bad)
