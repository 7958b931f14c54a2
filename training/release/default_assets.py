"""Copy the trained default detector and models into ``assets/``, with their recipe and scores, plus sample images.

    python -m training.export_default --detector runs/default/detector --pretrained runs/default/pretrain/best \\
        --qa runs/default/finetune/gqa-pretrained/best --world runs/world --out assets

Writes ``OUT/default/{detector,pretrained,model}`` (each checkpoint with its ``metrics.jsonl`` so the app can draw
training curves, and a ``meta.json`` holding the recipe and the measured scores) and ``OUT/samples/`` (a small
gallery and a pool of scenes, all from the world's held-out ``test`` split, never seen in training). The shipped
detector's regions of every sample are cached in ``OUT/default/detector/regions/``, so the app answers on a sample
without loading the detector (``lxmert.detection.files``).
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lxmert.checkpoints import METRICS_FILE, SCORES_KEY, load_checkpoint, meta_scores
from lxmert.config_cli import parse_config
from lxmert.detection import Detector
from lxmert.detection.files import ATTRIBUTES_FILE, read_vocab, save_cached_regions, write_attribute_kinds
from lxmert.fileio import atomic_directory, read_json_object
from lxmert.model_sets import CheckpointEntry, ModelSet, write_model_set
from training.world.generate import WorldConfig, main_scene
from training.world.language import execute, generate_questions
from training.world.scenes import ATTRIBUTE_LABELS, COLOURS, FILLS, SIZES, Scene

# The world's attributes by kind, in the order a description names them ("large blue striped star").
WORLD_ATTRIBUTE_KINDS = {"size": SIZES, "colour": COLOURS, "fill": FILLS}

RECIPE = "bash scripts/build_default.sh"
DEFAULT_SET_NAME = "Synthetic world (shipped default)"
# The tables of a run's summary.json that are scores of the saved checkpoint (the train table is of the last epoch).
SCORED_SPLITS = ("valid", "chance")
SUGGESTIONS = 5  # questions suggested per sample image
SUGGESTION_STREAM = 7  # a random stream of its own, apart from the world's (training/world/generate.py)


@dataclass
class ExportConfig:
    detector: str = field(default="runs/default/detector", metadata={"help": "trained detector directory"})
    detector_eval: str = field(
        default="runs/default/detector-train/eval_test.json",
        metadata={"help": "the detector's held-out evaluation"},
    )
    pretrained: str = field(default="runs/default/pretrain/best", metadata={"help": "pre-trained checkpoint"})
    qa: str = field(
        default="runs/default/finetune/gqa-pretrained/best", metadata={"help": "QA fine-tuned checkpoint"}
    )
    world: str = field(default="runs/world", metadata={"help": "the world both were trained on"})
    out: str = field(default="assets", metadata={"help": "assets directory to write into"})
    gallery: int = field(default=6, metadata={"help": "images in the sample gallery"})
    scenes: int = field(default=40, metadata={"help": "images in the pool of synthetic scenes"})


def _json(path: Path) -> dict[str, Any]:
    return read_json_object(path) if path.is_file() else {}


def _run_dir(checkpoint: Path) -> Path:
    """The training run a checkpoint (``RUN/best`` or ``RUN/final``) belongs to."""
    return checkpoint.parent if (checkpoint.parent / METRICS_FILE).is_file() else checkpoint


def scores_from_summary(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A run's ``summary.json`` as the ``scores`` of ``meta.json`` (:func:`lxmert.checkpoints.meta_scores`): its
    validation and chance tables, losses left out (they are not scores a reader compares)."""
    scores = {
        split: {
            metric: value
            for metric, value in summary[split].items()
            if isinstance(value, int | float) and not isinstance(value, bool) and not metric.endswith("loss")
        }
        for split in SCORED_SPLITS
        if isinstance(summary.get(split), dict)
    }
    return meta_scores({SCORES_KEY: scores})


def export_checkpoint(source: Path, target: Path, meta: dict[str, Any]) -> None:
    """Re-save a checkpoint in our format with ``meta`` and its run's metrics file."""
    loaded = load_checkpoint(source)
    answers = loaded.answers.label2ans if loaded.answers is not None else None
    loaded.model.save_pretrained(target, tokenizer=loaded.tokenizer, answers=answers, meta=loaded.meta | meta)
    metrics = _run_dir(source) / METRICS_FILE
    if metrics.is_file():
        shutil.copyfile(metrics, target / METRICS_FILE)


def refers_to_visible(program: list[dict[str, Any]], scene: Scene) -> bool:
    """Whether every object a question's program looks for (each ``select`` and ``relate``) is in the scene."""
    return all(
        execute(program[: k + 1], scene)
        for k, step in enumerate(program)
        if step["op"] in ("select", "relate")
    )


def suggested_questions(scene: Scene, count: int, rng: np.random.Generator) -> list[str]:
    """Up to ``count`` questions about what is in ``scene``, from its ground truth: the world's GQA-style families,
    kept when :func:`refers_to_visible`, open questions first (the first is what the app pre-fills)."""
    visible = [q for q in generate_questions(scene, rng, 4 * count) if refers_to_visible(q.program, scene)]
    visible.sort(key=lambda q: q.structural != "query")  # stable: otherwise in the order drawn
    return [q.sent for q in visible[:count]]


def sample_suggestions(world: WorldConfig, img_id: str, count: int = SUGGESTIONS) -> dict[str, list[str]]:
    """The sidecar ``<img_id>.json`` of a sample image: ``{"questions": [...]}`` the app offers as suggestions."""
    rng = np.random.default_rng([world.seed, SUGGESTION_STREAM, int(img_id.split("_")[1])])
    return {"questions": suggested_questions(main_scene(world, img_id), count, rng)}


def export_samples(
    world: Path, out: Path, gallery: int, scenes: int, questions_per_image: int = SUGGESTIONS
) -> None:
    """Held-out world images: the first ``gallery`` into ``out/``, the next ``scenes`` into ``out/scenes/``.

    Each image gets a sidecar ``<id>.json`` of questions about what is in it (:func:`sample_suggestions`).
    """
    summary = read_json_object(world / "world.json")
    test_ids = summary["splits"]["test"]
    if len(test_ids) < gallery + scenes:
        raise ValueError(f"the world's test split has {len(test_ids)} images, {gallery + scenes} are wanted")
    config = WorldConfig(**summary["config"])
    with atomic_directory(out) as tmp:
        (tmp / "scenes").mkdir()
        for i, img_id in enumerate(test_ids[: gallery + scenes]):
            dest = tmp if i < gallery else tmp / "scenes"
            shutil.copyfile(world / "images" / f"{img_id}.png", dest / f"{img_id}.png")
            sidecar = sample_suggestions(config, img_id, questions_per_image)
            (dest / f"{img_id}.json").write_text(json.dumps(sidecar, indent=1) + "\n")


def cache_sample_regions(detector_dir: Path, samples: Path) -> int:
    """Detect every sample image (gallery and scenes) once and cache its regions beside the detector.

    Returns the number of images. The image goes through the same decoding as in the app, so the cached regions are
    the ones the app would detect.
    """
    detector = Detector.from_pretrained(detector_dir)
    images = sorted(samples.glob("*.png")) + sorted((samples / "scenes").glob("*.png"))
    for path in images:
        data = path.read_bytes()
        regions = detector.detect([detector.load_image(Image.open(io.BytesIO(data)))])[0]
        save_cached_regions(detector_dir, data, regions)
    return len(images)


def write_default_set(default: Path) -> Path:
    """The ``model_set.json`` that makes ``default/`` the app's default model set: the synthetic world's detector,
    the QA model (selected first) and the pre-trained one."""
    return write_model_set(
        ModelSet(
            default,
            DEFAULT_SET_NAME,
            "synthetic",
            default / "detector",
            {name: CheckpointEntry(default / name) for name in ("model", "pretrained")},
            default="model",
        )
    )


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(
        ExportConfig, argv, prog="python -m training.export_default", doc=__doc__, title="export"
    )
    out, world = Path(cfg.out), Path(cfg.world)
    default = out / "default"
    detector_eval = _json(Path(cfg.detector_eval))
    with atomic_directory(default / "detector") as tmp:
        shutil.copytree(cfg.detector, tmp, dirs_exist_ok=True)
        (tmp / "meta.json").write_text(
            json.dumps({"recipe": RECIPE, "eval_test": detector_eval}, indent=2) + "\n"
        )
        if read_vocab(tmp / ATTRIBUTES_FILE) == list(ATTRIBUTE_LABELS):  # a detector of the world
            write_attribute_kinds(tmp, WORLD_ATTRIBUTE_KINDS)
    pretrained = Path(cfg.pretrained)
    export_checkpoint(
        pretrained,
        default / "pretrained",
        {"recipe": RECIPE, SCORES_KEY: scores_from_summary(_json(_run_dir(pretrained) / "summary.json"))},
    )
    qa = Path(cfg.qa)
    export_checkpoint(
        qa,
        default / "model",
        {"recipe": RECIPE, SCORES_KEY: scores_from_summary(_json(_run_dir(qa) / "summary.json"))},
    )
    write_default_set(default)
    export_samples(world, out / "samples", cfg.gallery, cfg.scenes)
    cached = cache_sample_regions(default / "detector", out / "samples")
    print(f"wrote {default} and {out / 'samples'} (regions of {cached} samples cached)")
