"""The shipped sample images ask about what is in them: their suggestions come from each scene's ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from training.release.default_assets import export_samples, refers_to_visible, sample_suggestions
from training.world.generate import WorldConfig, build_world, main_scene
from training.world.language import execute
from training.world.scenes import Background, Scene, SceneObject, compute_relations, render_scene

SAMPLES = Path(__file__).resolve().parents[1] / "assets" / "samples"
# The world the shipped samples come from (scripts/build_default.sh: runs/world-kinds).
SHIPPED_WORLD = WorldConfig(images=3000, seed=0, scene_kinds=5)


def hand_scene() -> Scene:
    """A small red circle left of a large blue square."""
    objects = [
        SceneObject(
            "circle", "red", "small", "solid", (35.0, 125.0), 15.0, 0.0, box=(20.0, 110.0, 50.0, 140.0)
        ),
        SceneObject(
            "square", "blue", "large", "striped", (128.0, 128.0), 33.0, 0.0, box=(95.0, 95.0, 161.0, 161.0)
        ),
    ]
    background = Background("gradient", (90, 90, 90), (60, 60, 60), 0)
    return Scene(256, 256, background, objects, compute_relations(objects, 256))


def select(**attrs) -> dict:
    return {"op": "select", "arg": attrs}


def test_a_question_is_about_the_scene_only_when_everything_it_looks_for_is_there():
    scene = hand_scene()
    circle_colour = [
        select(shape="circle"),
        {"op": "unique", "deps": [0]},
        {"op": "query", "arg": "colour", "deps": [1]},
    ]
    assert refers_to_visible(circle_colour, scene) and execute(circle_colour, scene) == "red"
    assert not refers_to_visible([select(shape="star"), {"op": "exist", "deps": [0]}], scene)
    either = [
        select(colour="red"),
        {"op": "exist", "deps": [0]},
        select(shape="star"),
        {"op": "exist", "deps": [2]},
    ]
    assert not refers_to_visible(
        [*either, {"op": "or", "deps": [1, 3]}], scene
    )  # "yes", but no star is there
    square_right_of_circle = [
        select(shape="circle"),
        {"op": "unique", "deps": [0]},
        select(),
        {"op": "relate", "arg": ["right of", {"shape": "square"}], "deps": [2, 1]},
        {"op": "exist", "deps": [3]},
    ]
    assert refers_to_visible(square_right_of_circle, scene)
    square_left_of_circle = [
        *square_right_of_circle[:3],
        {"op": "relate", "arg": ["left of", {"shape": "square"}], "deps": [2, 1]},
    ]
    assert not refers_to_visible([*square_left_of_circle, {"op": "exist", "deps": [3]}], scene)


def test_every_shipped_sample_is_its_scene_and_suggests_questions_from_its_ground_truth():
    images = sorted(SAMPLES.glob("*.png")) + sorted((SAMPLES / "scenes").glob("*.png"))
    assert len(images) >= 6
    for image in images:
        scene = main_scene(SHIPPED_WORLD, image.stem)
        # The regenerated ground truth draws the very pixels shipped: it is this image's.
        assert np.array_equal(
            np.asarray(render_scene(scene)), np.asarray(Image.open(image).convert("RGB"))
        ), image
        sidecar = json.loads(image.with_suffix(".json").read_text())
        assert sidecar == sample_suggestions(SHIPPED_WORLD, image.stem), image.name
        assert len(sidecar["questions"]) == 5
        # The first (pre-filled) suggestion names a shape, colour, size or pattern that one of its objects has.
        first = sidecar["questions"][0].lower()
        present = {value for o in scene.objects for value in (o.shape, o.colour, o.size, o.fill)}
        assert any(value in first for value in present) or "objects" in first, (image.name, first)


def test_export_writes_each_sample_with_suggestions_from_the_world_it_was_made_in(tmp_path):
    """export_samples rebuilds each scene from world.json's config, so its suggestions are about that image."""
    config = WorldConfig(out=str(tmp_path / "world"), images=60, seed=5, scene_kinds=2, workers=1)
    build_world(config, progress=False)
    export_samples(tmp_path / "world", tmp_path / "samples", gallery=1, scenes=2)
    images = sorted((tmp_path / "samples").glob("*.png")) + sorted(
        (tmp_path / "samples" / "scenes").glob("*.png")
    )
    assert len(images) == 3
    for image in images:
        scene = main_scene(config, image.stem)
        assert np.array_equal(np.asarray(render_scene(scene)), np.asarray(Image.open(image).convert("RGB")))
        assert json.loads(image.with_suffix(".json").read_text()) == sample_suggestions(config, image.stem)
