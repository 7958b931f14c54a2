"""Scenes: deterministic, boxes tight around visible pixels, occlusion bounded, vocabularies as VG files."""

import numpy as np
import pytest

from lxmert.detection.files import read_vocab
from training.world.scenes import (
    ATTRIBUTE_LABELS,
    COLOUR_RGB,
    COLOURS,
    FILLS,
    MAX_OBJECTS,
    MIN_OBJECTS,
    MIN_VISIBLE_FRACTION,
    OBJECT_LABELS,
    SHAPES,
    SIZES,
    kind_labels,
    object_ink,
    render_scene,
    sample_scene,
    write_vocab_files,
)


def test_vocabularies_have_the_promised_sizes():
    assert len(SHAPES) == 10 and len(COLOURS) == 10 and len(SIZES) == 3 and len(FILLS) >= 3
    assert len(set(ATTRIBUTE_LABELS)) == len(ATTRIBUTE_LABELS)


def test_same_seed_same_scene_and_pixels():
    a = sample_scene(np.random.default_rng(7))
    b = sample_scene(np.random.default_rng(7))
    assert a == b
    assert render_scene(a).tobytes() == render_scene(b).tobytes()
    assert render_scene(a).mode == "RGB" and render_scene(a).size == (256, 256)
    assert sample_scene(np.random.default_rng(8)) != a


def test_one_kind_of_scene_draws_what_the_world_drew_before_kinds_existed():
    # pinned from the sampler before ``kinds`` was added (commit 765b337), so default worlds keep their bytes
    scene = sample_scene(np.random.default_rng(7), kinds=1, kind_bias=0.9)
    assert [(o.shape, o.colour) for o in scene.objects] == [
        ("square", "blue"), ("hexagon", "purple"), ("heart", "orange"), ("heart", "white"), ("circle", "orange"),
        ("circle", "brown"), ("star", "purple"), ("pentagon", "green"), ("arrow", "yellow"), ("circle", "green"),
    ]  # fmt: skip
    assert scene.objects[0].box == (51.0, 47.0, 124.0, 120.0)


def test_scenes_of_a_kind_favour_its_shapes_and_colours():
    kinds_seen = set()
    for seed in range(30):
        scene = sample_scene(np.random.default_rng(seed), kinds=5, kind_bias=1.0)
        shapes, colours = kind_labels(scene.kind, 5)
        assert shapes == SHAPES[scene.kind :: 5] and len(shapes) == len(colours) == 2
        assert all(o.shape in shapes and o.colour in colours for o in scene.objects)
        kinds_seen.add(scene.kind)
    assert kinds_seen == set(range(5))
    # With bias b an object takes its kind's shape with chance b + (1 - b) * 2/10 (0.6 at b = 0.5; std 0.02 here),
    # and its colour apart from its shape.
    shape_hits = colour_hits = both = total = 0
    for seed in range(150):
        scene = sample_scene(np.random.default_rng(seed), kinds=5, kind_bias=0.5, num_objects=4)
        shapes, colours = kind_labels(scene.kind, 5)
        for o in scene.objects:
            shape_hits += o.shape in shapes
            colour_hits += o.colour in colours
            both += o.shape in shapes and o.colour in colours
            total += 1
    assert total == 600
    assert 0.52 < shape_hits / total < 0.68 and 0.52 < colour_hits / total < 0.68
    assert 0.28 < both / total < 0.44  # 0.36 if independent


@pytest.mark.parametrize("seed", range(5))
def test_boxes_are_tight_around_visible_pixels_and_occlusion_is_bounded(seed):
    scene = sample_scene(np.random.default_rng(seed))
    assert MIN_OBJECTS <= len(scene.objects) <= MAX_OBJECTS
    inks = [object_ink(o, scene.width, scene.height) for o in scene.objects]
    for k, obj in enumerate(scene.objects):
        covered = np.zeros_like(inks[k])
        for later in inks[k + 1 :]:
            covered |= later
        visible = inks[k] & ~covered
        rows, cols = np.nonzero(visible)
        assert obj.box == (cols.min(), rows.min(), cols.max() + 1.0, rows.max() + 1.0)
        assert visible.sum() / inks[k].sum() == pytest.approx(obj.visible_fraction)
        assert obj.visible_fraction >= MIN_VISIBLE_FRACTION


def test_object_colour_shows_inside_its_visible_box():
    scene = sample_scene(np.random.default_rng(3))
    pixels = np.asarray(render_scene(scene))
    top = scene.objects[-1]  # drawn last, so nothing hides it
    x1, y1, x2, y2 = (int(v) for v in top.box)
    ink = object_ink(top, scene.width, scene.height)[y1:y2, x1:x2]
    matching = np.all(pixels[y1:y2, x1:x2] == COLOUR_RGB[top.colour], axis=-1) & ink
    assert matching.sum() > 0.3 * ink.sum()  # the rest is pattern shade or rim


def test_relations_follow_box_centres():
    scene = sample_scene(np.random.default_rng(11), num_objects=6)
    for r in scene.relations:
        a, b = scene.objects[r.subject].box_centre, scene.objects[r.object].box_centre
        if r.predicate == "left of":
            assert a[0] < b[0]
        if r.predicate == "above":
            assert a[1] < b[1]
        if r.predicate == "larger than":
            assert SIZES.index(scene.objects[r.subject].size) > SIZES.index(scene.objects[r.object].size)
    # left of / right of are mirror images of each other
    lefts = {(r.subject, r.object) for r in scene.relations if r.predicate == "left of"}
    rights = {(r.object, r.subject) for r in scene.relations if r.predicate == "right of"}
    assert lefts == rights


def test_ids_index_the_vocabulary_files(tmp_path):
    objects_path, attributes_path = write_vocab_files(tmp_path)
    objects, attributes = read_vocab(objects_path), read_vocab(attributes_path)
    assert objects == list(OBJECT_LABELS) and attributes == list(ATTRIBUTE_LABELS)
    obj = sample_scene(np.random.default_rng(0)).objects[0]
    assert objects[obj.label_id] == obj.shape
    assert [attributes[i] for i in obj.attr_ids] == [obj.colour, obj.size, obj.fill]


def test_preview_sheet_draws_the_box_and_tiles_scenes():
    from training.world.preview import BOX_COLOUR, contact_sheet, draw_annotated

    scene = sample_scene(np.random.default_rng(0), num_objects=1)
    tile = np.asarray(draw_annotated(scene, scale=2))
    x2, y2 = (int(v) * 2 for v in scene.objects[0].box[2:])
    assert tuple(tile[y2 - 1, x2 - 1]) == BOX_COLOUR  # bottom-right corner of the doubled box
    sheet = contact_sheet([scene, scene, scene], columns=2, scale=2, gap=6)
    assert sheet.size == (2 * 512 + 6, 2 * 512 + 6)
