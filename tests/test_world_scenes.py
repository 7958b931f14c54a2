"""Scenes: deterministic, boxes tight around visible pixels, occlusion bounded, vocabularies as VG files."""

import numpy as np
import pytest

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
    object_ink,
    read_vocab_file,
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
    objects, attributes = read_vocab_file(objects_path), read_vocab_file(attributes_path)
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
