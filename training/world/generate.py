"""Build a synthetic world directory: images, detection ground truth, and every text file in the real formats.

Layout of ``DIR`` (``python -m training.world --out DIR --images N --seed S``)::

    world.json                      seed, config, counts, and the image ids of every split
    objects_vocab.txt               object labels (the shapes), one per line; line i is label_id i
    attributes_vocab.txt            attribute labels (colours, sizes, fills); line i is attr id i
    images/<img_id>.png             RGB scenes; main images are synth_000123, NLVR2 ones train-17-img3 (set 17)
    annotations/<split>.json        detection ground truth, a list of
                                    {img_id, width, height, background,
                                     objects: [{box: [x1, y1, x2, y2] (pixels), label, label_id,
                                                attributes: [colour, size, fill], attr_ids, visible_fraction}]}
                                    for split in train, nominival, minival, test, nlvr2_train, nlvr2_valid,
                                    nlvr2_test
    lxmert/mscoco_{train,nominival,minival}.json
                                    pre-training data {img_id, sentf, labelf}; sentf sources synth_cap (captions),
                                    synth_gqa and synth_vqa (questions, with labelf aligned)
    lxmert/all_ans.json             the pre-training QA answer table, [{ans, dsets}], most frequent first
    vqa/{train,nominival,minival,test}.json, vqa/trainval_{ans2label,label2ans}.json
    vqa/{split}_raw_answers.json    the 10 annotator answers behind each soft label
    gqa/{train,valid,testdev}.json, gqa/trainval_{ans2label,label2ans}.json
    nlvr2/{train,valid,test}.json

Splits follow the paper: the main images are split into train / nominival / minival / test; pre-training sees only
train + nominival (``mscoco_minival.json`` exists for its validation loss, as in the authors' code). VQA fine-tunes
on train + nominival and validates on minival; GQA's train is train + nominival, its valid is minival and its testdev
is test, so no fine-tuning validation or test image was seen in pre-training. NLVR2 has its own images.

Every image is generated from ``numpy.random.default_rng([seed, stream, index])``, so the output is the same bytes
whatever the number of worker processes.
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.pool
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lxmert.answers import AnswerTable, normalize_answer
from lxmert.data.task_files import write_json
from lxmert.fileio import atomic_directory
from training.data.vqa_softscore import (
    answer_vocabulary,
    multiple_choice_answer,
    preprocess_answer,
    soft_label,
)
from training.world.annotators import annotator_answers
from training.world.language import VQA_FAMILIES, Question, generate_captions, generate_questions
from training.world.scenes import (
    KIND_BIAS,
    MAX_SCENE_KINDS,
    Scene,
    render_scene,
    sample_scene,
    write_vocab_files,
)
from training.world.statements import sample_statement_set

FORMAT_VERSION = 1
MAIN_SPLITS = ("train", "nominival", "minival", "test")
PRETRAIN_FILES = {"mscoco_train": "train", "mscoco_nominival": "nominival", "mscoco_minival": "minival"}
PRETRAIN_TRAINING_SPLITS = ("train", "nominival")
GQA_SPLITS = {"train": ("train", "nominival"), "valid": ("minival",), "testdev": ("test",)}
NLVR2_SPLITS = ("train", "valid", "test")
CAPTION_SOURCE, GQA_SOURCE, VQA_SOURCE = "synth_cap", "synth_gqa", "synth_vqa"
# Random streams of default_rng([seed, stream, index]).
MAIN_STREAM, NLVR2_STREAM, SPLIT_STREAM, BALANCE_STREAM = 0, 1, 2, 3
NLVR2_POOL_FACTOR = 3  # an NLVR2 set draws 3 x pairs-per-statement scenes to pick balanced pairs from


@dataclass
class WorldConfig:
    """What to generate. Defaults give a world sized for a 2-core CPU pipeline."""

    out: str = field(
        default="data/world",
        metadata={"help": "output directory (replaced atomically when generation finishes)"},
    )
    images: int = field(default=3000, metadata={"help": "number of images to write, NLVR2 pairs included"})
    seed: int = field(default=0, metadata={"help": "random seed; the same seed gives the same bytes"})
    image_size: int = field(default=256, metadata={"help": "side of the square images in pixels"})
    nlvr2_fraction: float = field(
        default=0.2, metadata={"help": "share of the images used for NLVR2 image pairs"}
    )
    pairs_per_statement: int = field(
        default=4, metadata={"help": "image pairs judged against each NLVR2 sentence (for consistency)"}
    )
    nlvr2_sentences: int = field(
        default=1,
        metadata={
            "help": "NLVR2 sentences per set of images, each judged on its own pairs of the set's "
            f"{NLVR2_POOL_FACTOR} x pairs-per-statement images (a set then writes all of them)"
        },
    )
    captions_per_image: int = field(default=5, metadata={"help": "captions per main image"})
    scene_kinds: int = field(
        default=1,
        metadata={
            "help": "kinds of scene among the main images, each favouring its own shapes and colours, as a kitchen holds other things than a street (1: none)"
        },
    )
    scene_kind_bias: float = field(
        default=KIND_BIAS,
        metadata={
            "help": "chance that an object takes its scene kind's shape (and, apart, colour) instead of any"
        },
    )
    gqa_questions_per_image: int = field(
        default=10, metadata={"help": "GQA-style question candidates per image, before answer balancing"}
    )
    vqa_questions_per_image: int = field(default=5, metadata={"help": "VQA-style questions per image"})
    annotators: int = field(default=10, metadata={"help": "simulated annotator answers per VQA question"})
    nominival_fraction: float = field(
        default=0.1,
        metadata={"help": "share of main images in the nominival split (pre-training and VQA training)"},
    )
    minival_fraction: float = field(
        default=0.1,
        metadata={"help": "share of main images in minival (VQA minival, GQA valid; never pre-trained on)"},
    )
    test_fraction: float = field(
        default=0.1,
        metadata={"help": "share of main images in test (VQA test, GQA testdev; never pre-trained on)"},
    )
    nlvr2_valid_fraction: float = field(default=0.1, metadata={"help": "share of NLVR2 sentences in valid"})
    nlvr2_test_fraction: float = field(default=0.1, metadata={"help": "share of NLVR2 sentences in test"})
    min_vqa_answer_count: int = field(
        default=9,
        metadata={"help": "questions an answer needs to enter the VQA answer table (9 in the real one)"},
    )
    gqa_balance_ratio: float = field(
        default=1.2,
        metadata={"help": "cap on an answer's count within a GQA family, as a multiple of a uniform share"},
    )
    workers: int = field(default=0, metadata={"help": "worker processes (0 = one per CPU)"})

    def __post_init__(self) -> None:
        if self.images < 1:
            raise ValueError(f"images must be positive, got {self.images}")
        fractions = (self.nominival_fraction, self.minival_fraction, self.test_fraction)
        if min(fractions) < 0 or sum(fractions) >= 1:
            raise ValueError(f"split fractions {fractions} must be >= 0 and leave room for train")
        if self.pairs_per_statement < 1 or self.nlvr2_sentences < 1:
            raise ValueError(
                f"pairs_per_statement and nlvr2_sentences must be positive, got {self.pairs_per_statement} "
                f"and {self.nlvr2_sentences}"
            )
        if not 0 <= self.nlvr2_fraction < 1:
            raise ValueError(f"nlvr2_fraction must be in [0, 1), got {self.nlvr2_fraction}")
        if not 1 <= self.scene_kinds <= MAX_SCENE_KINDS or not 0 <= self.scene_kind_bias <= 1:
            raise ValueError(
                f"scene_kinds must be in [1, {MAX_SCENE_KINDS}] and scene_kind_bias in [0, 1], "
                f"got {self.scene_kinds} and {self.scene_kind_bias}"
            )


@dataclass(frozen=True)
class WorldPlan:
    """Which image ids go to which split."""

    main: dict[str, list[str]]
    nlvr2_sets: dict[str, int]


def _split_counts(total: int, fractions: list[float]) -> list[int]:
    """Counts for the later splits by rounding; the first split takes the rest."""
    rest = [round(total * f) for f in fractions]
    return [total - sum(rest), *rest]


def plan_world(cfg: WorldConfig) -> WorldPlan:
    num_sets = round(cfg.images * cfg.nlvr2_fraction / nlvr2_set_images(cfg))
    num_main = cfg.images - num_sets * nlvr2_set_images(cfg)
    ids = [f"synth_{k:06d}" for k in range(num_main)]
    order = np.random.default_rng([cfg.seed, SPLIT_STREAM]).permutation(num_main)
    counts = _split_counts(num_main, [cfg.nominival_fraction, cfg.minival_fraction, cfg.test_fraction])
    main, start = {}, 0
    for split, count in zip(MAIN_SPLITS, counts, strict=True):
        main[split] = sorted(ids[k] for k in order[start : start + count])
        start += count
    set_counts = _split_counts(num_sets, [cfg.nlvr2_valid_fraction, cfg.nlvr2_test_fraction])
    return WorldPlan(main, dict(zip(NLVR2_SPLITS, set_counts, strict=True)))


def _save_png(image, path: Path) -> None:
    # Written inside the world's atomic_directory, which syncs and renames the whole tree: no temporary per image.
    image.save(path, format="PNG", compress_level=1)  # fastest, and no larger on these images


def annotation(img_id: str, scene: Scene) -> dict[str, Any]:
    """Detection ground truth of one scene (the annotations/<split>.json entry)."""
    return {
        "img_id": img_id,
        "width": scene.width,
        "height": scene.height,
        "background": scene.background.kind,
        "objects": [
            {
                "box": list(o.box),
                "label": o.shape,
                "label_id": o.label_id,
                "attributes": list(o.attributes),
                "attr_ids": list(o.attr_ids),
                "visible_fraction": round(o.visible_fraction, 4),
            }
            for o in scene.objects
        ],
    }


def _question_record(q: Question) -> dict[str, Any]:
    return {
        "sent": q.sent,
        "answer": q.answer,
        "types": {"structural": q.structural, "semantic": q.semantic, "detailed": q.family},
        "program": q.program,
    }


def _vqa_answer_type(answer: str) -> str:
    if answer in ("yes", "no"):
        return "yes/no"
    return "number" if answer.isdigit() else "other"


def _main_scene_and_rng(cfg: WorldConfig, index: int) -> tuple[Scene, np.random.Generator]:
    rng = np.random.default_rng([cfg.seed, MAIN_STREAM, index])
    return sample_scene(rng, cfg.image_size, kinds=cfg.scene_kinds, kind_bias=cfg.scene_kind_bias), rng


def main_scene(cfg: WorldConfig, img_id: str) -> Scene:
    """The ground truth of main image ``img_id`` (``synth_000123``) of the world ``cfg`` makes, without the rest."""
    return _main_scene_and_rng(cfg, int(img_id.split("_")[1]))[0]


def _main_image_job(job: tuple[WorldConfig, str, int, str]) -> dict[str, Any]:
    cfg, img_id, index, out = job
    scene, rng = _main_scene_and_rng(cfg, index)
    _save_png(render_scene(scene), Path(out) / "images" / f"{img_id}.png")
    captions = generate_captions(scene, rng, cfg.captions_per_image)
    gqa = [_question_record(q) for q in generate_questions(scene, rng, cfg.gqa_questions_per_image)]
    vqa = [
        {
            "sent": q.sent,
            "answer": q.answer,
            "question_type": q.family,
            "answer_type": _vqa_answer_type(q.answer),
            "answers": annotator_answers(q.answer, rng, cfg.annotators),
        }
        for q in generate_questions(scene, rng, cfg.vqa_questions_per_image, VQA_FAMILIES)
    ]
    return {
        "img_id": img_id,
        "annotation": annotation(img_id, scene),
        "captions": captions,
        "gqa": gqa,
        "vqa": vqa,
    }


def nlvr2_set_images(cfg: WorldConfig) -> int:
    """Images one NLVR2 set writes: its sentence's pairs, or with several sentences the whole pool they pair from."""
    pairs = cfg.pairs_per_statement
    return 2 * pairs if cfg.nlvr2_sentences == 1 else NLVR2_POOL_FACTOR * pairs


def _nlvr2_set_job(job: tuple[WorldConfig, str, int, int, str]) -> dict[str, Any]:
    cfg, split, set_id, index, out = job
    rng = np.random.default_rng([cfg.seed, NLVR2_STREAM, index])
    pool, sentences = sample_statement_set(
        rng, cfg.pairs_per_statement, cfg.image_size, NLVR2_POOL_FACTOR, sentences=cfg.nlvr2_sentences,
        kinds=cfg.scene_kinds, kind_bias=cfg.scene_kind_bias,
    )  # fmt: skip
    if cfg.nlvr2_sentences == 1:  # only the pairs' images
        written = [k for _, pairs in sentences for i, j, _ in pairs for k in (i, j)]
    else:
        written = list(range(len(pool)))
    names = {k: f"{split}-{set_id}-img{k}" for k in written}
    annotations = []
    for k, img_id in names.items():
        _save_png(render_scene(pool[k]), Path(out) / "images" / f"{img_id}.png")
        annotations.append(annotation(img_id, pool[k]))
    items = [
        {
            "identifier": f"{split}-{set_id}-{pair_id}-{sentence}",
            "img0": names[i],
            "img1": names[j],
            "label": int(truth),
            "sent": statement.text,
            "family": statement.family,
        }
        for sentence, (statement, pairs) in enumerate(sentences)
        for pair_id, (i, j, truth) in enumerate(pairs)
    ]
    return {"split": split, "items": items, "annotations": annotations}


def _open_pool(workers: int) -> multiprocessing.pool.Pool | None:
    """A worker pool, or None to work in-process (workers == 1: tests, debugging)."""
    if workers == 1:
        return None
    # fork: workers inherit the imported modules instead of re-importing them (torch comes with lxmert).
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method).Pool(workers)


def _run_jobs(pool: multiprocessing.pool.Pool | None, function, jobs: list, bar: tqdm) -> Iterator[Any]:
    """Results in job order."""
    results = map(function, jobs) if pool is None else pool.imap(function, jobs, chunksize=8)
    for result in results:
        yield result
        bar.update(1)


def balance_answers(
    questions: list[dict[str, Any]], rng: np.random.Generator, ratio: float, max_rounds: int = 10
) -> list[dict[str, Any]]:
    """Drop questions until, within each family, no answer holds more than ``ratio`` × a uniform share.

    GQA balances answer distributions per question group so that priors do not answer the question; here the group is
    the family (template), the unit the question-only baseline conditions on. Dropping changes the shares, so the cap
    is recomputed on what is kept until nothing exceeds it.
    """
    by_family: dict[str, list[int]] = defaultdict(list)
    for position, q in enumerate(questions):
        by_family[q["types"]["detailed"]].append(position)
    keep = np.ones(len(questions), dtype=bool)
    for positions in by_family.values():
        for _ in range(max_rounds):
            by_answer: dict[str, list[int]] = defaultdict(list)
            for position in positions:
                if keep[position]:
                    by_answer[questions[position]["answer"]].append(position)
            cap = math.ceil(ratio * sum(map(len, by_answer.values())) / len(by_answer))
            over = [members for members in by_answer.values() if len(members) > cap]
            if not over:
                break
            for members in over:
                keep[rng.choice(members, size=len(members) - cap, replace=False)] = False
    return [q for q, kept in zip(questions, keep, strict=True) if kept]


def _gqa_files(images: dict[str, dict], plan: WorldPlan, cfg: WorldConfig) -> dict[str, list[dict[str, Any]]]:
    rng = np.random.default_rng([cfg.seed, BALANCE_STREAM])
    files = {}
    for name, splits in GQA_SPLITS.items():
        questions = []
        for split in splits:
            for img_id in plan.main[split]:
                for j, q in enumerate(images[img_id]["gqa"]):
                    question_id = f"{int(img_id.split('_')[1]):07d}{j:02d}"
                    questions.append({"img_id": img_id, "question_id": question_id, **q})
        kept = balance_answers(questions, rng, cfg.gqa_balance_ratio)
        files[name] = [
            {
                "img_id": q["img_id"],
                "label": {q["answer"]: 1.0},
                "question_id": q["question_id"],
                "sent": q["sent"],
                "types": q["types"],
                "program": q["program"],
            }
            for q in kept
        ]
    return files


def _vqa_files(images: dict[str, dict], plan: WorldPlan, cfg: WorldConfig) -> tuple[dict, dict, AnswerTable]:
    raw: dict[str, list[dict[str, Any]]] = {}
    for split in MAIN_SPLITS:
        raw[split] = []
        for img_id in plan.main[split]:
            number = int(img_id.split("_")[1])
            for j, q in enumerate(images[img_id]["vqa"]):
                raw[split].append({"img_id": img_id, "question_id": (number + 1) * 1000 + j, **q})
    # The vocabulary comes from every split with answers but test, as "trainval" does for real VQA.
    labelled = [q for split in ("train", "nominival", "minival") for q in raw[split]]
    table = AnswerTable(
        answer_vocabulary(
            ((q["question_id"], multiple_choice_answer(q["answers"])) for q in labelled),
            cfg.min_vqa_answer_count,
        )
    )
    files, raw_files = {}, {}
    for split, questions in raw.items():
        files[split] = [
            {
                "answer_type": q["answer_type"],
                "img_id": q["img_id"],
                "label": soft_label(q["answers"], table.ans2label),
                "question_id": q["question_id"],
                "question_type": q["question_type"],
                "sent": q["sent"],
            }
            for q in questions
        ]
        raw_files[split] = [
            {
                "question_id": q["question_id"],
                "answers": q["answers"],
                "multiple_choice_answer": multiple_choice_answer(q["answers"]),
                "true_answer": preprocess_answer(q["answer"]),
            }
            for q in questions
        ]
    return files, raw_files, table


def _pretrain_files(
    images: dict[str, dict], plan: WorldPlan, gqa: dict[str, list[dict]], vqa: dict[str, list[dict]]
) -> tuple[dict[str, list[dict]], list[dict[str, Any]]]:
    per_image: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for item in [d for split in GQA_SPLITS for d in gqa[split]]:
        per_image[item["img_id"]][GQA_SOURCE].append(item)
    for item in [d for split in MAIN_SPLITS for d in vqa[split]]:
        per_image[item["img_id"]][VQA_SOURCE].append(item)
    files = {}
    answer_sources: dict[str, Counter] = defaultdict(Counter)
    for name, split in PRETRAIN_FILES.items():
        data = []
        for img_id in plan.main[split]:
            sentf = {CAPTION_SOURCE: images[img_id]["captions"]}
            labelf = {}
            for source in (GQA_SOURCE, VQA_SOURCE):
                items = per_image[img_id][source]
                sentf[source] = [d["sent"] for d in items]
                labelf[source] = [d["label"] for d in items]
                if split in PRETRAIN_TRAINING_SPLITS:
                    for label in labelf[source]:
                        for ans in label:
                            answer_sources[normalize_answer(ans)][source] += 1
            data.append({"img_id": img_id, "labelf": labelf, "sentf": sentf})
        files[name] = data
    ranked = sorted(answer_sources, key=lambda a: (-sum(answer_sources[a].values()), a))
    all_ans = [{"ans": ans, "dsets": sorted(answer_sources[ans])} for ans in ranked]
    return files, all_ans


def build_world(cfg: WorldConfig, progress: bool = True) -> dict[str, Any]:
    """Generate the world into ``cfg.out`` (replacing it atomically) and return the world.json summary."""
    plan = plan_world(cfg)
    workers = cfg.workers or os.cpu_count() or 1
    with atomic_directory(cfg.out) as tmp:
        (tmp / "images").mkdir()
        write_vocab_files(tmp)
        main_jobs = [
            (cfg, img_id, int(img_id.split("_")[1]), str(tmp))
            for split in MAIN_SPLITS
            for img_id in plan.main[split]
        ]
        main_jobs.sort(key=lambda job: job[2])
        nlvr2_jobs, index = [], 0
        for split in NLVR2_SPLITS:
            for set_id in range(plan.nlvr2_sets[split]):
                nlvr2_jobs.append((cfg, split, set_id, index, str(tmp)))
                index += 1
        pool = _open_pool(workers)
        try:
            with tqdm(total=cfg.images, unit="img", disable=not progress, desc="world") as bar:
                images = {r["img_id"]: r for r in _run_jobs(pool, _main_image_job, main_jobs, bar)}
                nlvr2_results = []
                for result in _run_jobs(pool, _nlvr2_set_job, nlvr2_jobs, bar):
                    nlvr2_results.append(result)
                    bar.update(nlvr2_set_images(cfg) - 1)  # a job writes a whole set
        finally:
            if pool is not None:
                pool.close()
                pool.join()
        file_counts = _write_outputs(tmp, cfg, plan, images, nlvr2_results)
        summary = _summary(cfg, plan, images, nlvr2_results, file_counts)
        write_json(tmp / "world.json", summary, indent=1)
    return summary


def _write_outputs(
    tmp: Path, cfg: WorldConfig, plan: WorldPlan, images: dict, nlvr2_results: list[dict]
) -> dict[str, int]:
    """Write every file of the layout; returns the number of items of each task file, e.g. {"gqa/train": 123}."""
    counts = {}
    for split in MAIN_SPLITS:
        write_json(tmp / "annotations" / f"{split}.json", [images[i]["annotation"] for i in plan.main[split]])
    gqa = _gqa_files(images, plan, cfg)
    for name, data in gqa.items():
        write_json(tmp / "gqa" / f"{name}.json", data)
        counts[f"gqa/{name}"] = len(data)
    gqa_table = AnswerTable(sorted({a for name in ("train", "valid") for d in gqa[name] for a in d["label"]}))
    gqa_table.save(tmp / "gqa" / "trainval_label2ans.json")
    gqa_table.save_ans2label(tmp / "gqa" / "trainval_ans2label.json")
    vqa, vqa_raw, vqa_table = _vqa_files(images, plan, cfg)
    for split in MAIN_SPLITS:
        write_json(tmp / "vqa" / f"{split}.json", vqa[split])
        counts[f"vqa/{split}"] = len(vqa[split])
        write_json(tmp / "vqa" / f"{split}_raw_answers.json", vqa_raw[split])
    vqa_table.save(tmp / "vqa" / "trainval_label2ans.json")
    vqa_table.save_ans2label(tmp / "vqa" / "trainval_ans2label.json")
    pretrain, all_ans = _pretrain_files(images, plan, gqa, vqa)
    for name, data in pretrain.items():
        write_json(tmp / "lxmert" / f"{name}.json", data)
    write_json(tmp / "lxmert" / "all_ans.json", all_ans)
    for split in NLVR2_SPLITS:
        results = [r for r in nlvr2_results if r["split"] == split]
        items = [item for r in results for item in r["items"]]
        for uid, item in enumerate(items):
            item["uid"] = f"nlvr2_{split}_{uid}"
        write_json(tmp / "nlvr2" / f"{split}.json", items)
        counts[f"nlvr2/{split}"] = len(items)
        write_json(
            tmp / "annotations" / f"nlvr2_{split}.json", [a for r in results for a in r["annotations"]]
        )
    return counts


def _summary(
    cfg: WorldConfig, plan: WorldPlan, images: dict, nlvr2_results: list[dict], file_counts: dict[str, int]
) -> dict[str, Any]:
    splits = {split: ids for split, ids in plan.main.items()}
    for split in NLVR2_SPLITS:
        ids = [a["img_id"] for r in nlvr2_results if r["split"] == split for a in r["annotations"]]
        splits[f"nlvr2_{split}"] = ids
    counts = {
        "images": sum(len(ids) for ids in splits.values()),
        "objects": sum(len(r["annotation"]["objects"]) for r in images.values()),
        "captions": sum(len(r["captions"]) for r in images.values()),
    }
    counts.update(file_counts)
    return {
        "format_version": FORMAT_VERSION,
        "seed": cfg.seed,
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "workers")},
        "counts": counts,
        "pretraining_images": list(PRETRAIN_TRAINING_SPLITS),
        "splits": splits,
    }
