"""Edit records replay the library's counterfactuals; pruning as a mask is pruning; before/after; probe curves."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from analysis_toy import NUM_ATTRS, toy_example, toy_qa_model, toy_regions

from analysis.attention import collect_attention
from analysis.counterfactual import counterfactual
from analysis.edits import Edit, apply_edits, head_units, least_important_heads, module_heads
from analysis.export import export_json, export_npz, read_export
from analysis.forward import answer_logits, run
from analysis.interventions import add_region, delete_regions, move_region, pruned_heads, swap_features
from analysis.probe_curves import ATTRIBUTE_KINDS, OBJECT_LABEL, detected_labels, probe_study, token_labels
from analysis.probing import collect_states

EDITS = [
    Edit("delete", (0, 2)),
    Edit("move", (1,), (5.0, 6.0, 30.0, 40.0)),
    Edit("add", (0,), (50.0, 50.0, 70.0, 80.0)),
    Edit("swap", (0, 3)),
    Edit("silence", heads=(("lang_self", 0, 1),)),
    Edit("prune", heads=(("cross_l2v", 0, 0),)),
]


def test_records_survive_json_and_bad_ones_are_named():
    for edit in EDITS:
        assert Edit.from_dict(json.loads(json.dumps(edit.to_dict()))) == edit
    with pytest.raises(ValueError, match="unknown edit kind 'crop'"):
        Edit("crop", (1,))
    with pytest.raises(ValueError, match="swap edit names 2 region"):
        Edit("swap", (1,))
    with pytest.raises(ValueError, match="two different regions"):
        Edit("swap", (1, 1))
    with pytest.raises(ValueError, match="move edit needs box"):
        Edit("move", (1,))
    with pytest.raises(ValueError, match="at least one head"):
        Edit("silence")
    with pytest.raises(ValueError, match="'regions' must be a list of integers"):
        Edit.from_dict({"kind": "delete", "regions": ["0"]})
    with pytest.raises(ValueError, match="unknown fields"):
        Edit.from_dict({"kind": "delete", "regions": [0], "why": "test"})


def test_edits_replay_the_library_in_order(tokenizer):
    example = toy_example(tokenizer)
    edited = apply_edits(example, EDITS[:4])
    by_hand = delete_regions(example, (0, 2))  # regions 1, 3, 4 remain, as 0, 1, 2
    by_hand = move_region(by_hand, 1, (5.0, 6.0, 30.0, 40.0))
    by_hand = add_region(
        by_hand,
        by_hand.visual_feats[0],
        (50.0, 50.0, 70.0, 80.0),
        int(by_hand.object_ids[0]),
        int(by_hand.attr_ids[0]),
    )
    by_hand = swap_features(by_hand, 0, 3)
    for field in ("visual_feats", "visual_pos", "boxes", "object_ids", "attr_ids"):
        torch.testing.assert_close(getattr(edited.example, field), getattr(by_hand, field))
    assert edited.origin == [1, 3, 4, None]
    assert edited.head_mask(toy_qa_model().config) is None
    with pytest.raises(IndexError, match=r"edit 2 \(move region 4"):
        apply_edits(example, [Edit("delete", (0,)), Edit("move", (4,), (0.0, 0.0, 1.0, 1.0))])


def test_pruning_as_a_mask_is_the_librarys_pruning(model, tokenizer):
    example = toy_example(tokenizer)
    edited = apply_edits(example, [Edit("prune", heads=(("cross_l2v", 0, 1), ("x_vis_self", 0, 0)))])
    # The shared cross-attention module serves both directions: pruning names both.
    assert module_heads(model.config, edited.pruned) == [
        ("cross_l2v", 0, 1),
        ("cross_v2l", 0, 1),
        ("x_vis_self", 0, 0),
    ]
    with torch.no_grad():
        masked = answer_logits(run(model, example, head_mask=edited.head_mask(model.config)))
        with pruned_heads(model, module_heads(model.config, edited.pruned)):
            pruned = answer_logits(run(model, example))
        intact = answer_logits(run(model, example))
    torch.testing.assert_close(masked, pruned, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(masked, intact)


def test_least_important_heads_by_hand(model):
    config = model.config  # one cross layer shared by both directions, 2 heads
    importance = {family: np.full((n, 2), 9.0) for family, n in config.family_layers.items()}
    importance["lang_self"][0] = [5.0, 0.5]
    importance["cross_l2v"][0] = [0.2, 3.0]
    importance["cross_v2l"][0] = [0.2, 0.1]  # unit (cross, 0, 0) = 0.4, (cross, 0, 1) = 3.1
    units = head_units(importance, config)
    assert units[("cross", 0, 0)] == pytest.approx(0.4) and ("cross_l2v", 0, 0) not in units
    assert least_important_heads(importance, config, 1) == (("cross_l2v", 0, 0), ("cross_v2l", 0, 0))
    assert least_important_heads(importance, config, 2)[-1] == ("lang_self", 0, 1)
    with pytest.raises(ValueError, match="prunable heads"):
        least_important_heads(importance, config, len(units) + 1)


def test_counterfactual_without_edits_changes_nothing_and_aligns_regions(model, tokenizer):
    example = toy_example(tokenizer)
    same = counterfactual(model, example, [])
    np.testing.assert_allclose(same.before, same.after, atol=1e-6)
    np.testing.assert_allclose(same.attention_change, 0.0, atol=1e-6)
    np.testing.assert_allclose(same.region_relevancy_change, 0.0, atol=1e-6)
    edits = [Edit("delete", (1,)), Edit("add", (0,), (1.0, 2.0, 30.0, 30.0))]
    changed = counterfactual(model, example, edits, k=3)
    assert changed.origin == [0, 2, 3, 4, -1] and changed.edits == [e.to_dict() for e in edits]
    assert np.isnan(changed.attention_change[:, -1]).all() and np.isnan(changed.region_relevancy_change[-1])
    edited = apply_edits(example, edits).example
    with torch.no_grad():
        after = answer_logits(run(model, edited))[0].softmax(-1)
    np.testing.assert_allclose(changed.after, after[changed.answers].numpy(), atol=1e-6)
    maps_before, maps_after = collect_attention(model, example), collect_attention(model, edited)
    last = model.config.x_layers - 1
    expected = maps_after.select("cross_l2v", last)[:, 1] - maps_before.select("cross_l2v", last)[:, 2]
    np.testing.assert_allclose(changed.attention_change[:, 1], expected, atol=1e-6)


@pytest.mark.parametrize("writer", [export_npz, export_json])
def test_exports_carry_the_edits(model, tokenizer, tmp_path, writer):
    example = toy_example(tokenizer)
    maps = collect_attention(model, example)
    path = writer(tmp_path / f"x.{'npz' if writer is export_npz else 'json'}", example, maps, "toy",
                  edits=[e.to_dict() for e in EDITS])  # fmt: skip
    metadata, _ = read_export(path)
    assert [Edit.from_dict(e) for e in metadata["edits"]] == EDITS
    plain = writer(tmp_path / f"plain.{'npz' if writer is export_npz else 'json'}", example, maps, "toy")
    assert read_export(plain)[0]["edits"] == []


def test_detected_labels_split_attributes_by_kind():
    names = ["circle", "square"]
    attrs = [*ATTRIBUTE_KINDS["colour"], *ATTRIBUTE_KINDS["size"], *ATTRIBUTE_KINDS["fill"]]
    probs = torch.zeros(3, len(attrs))
    probs[0, attrs.index("blue")], probs[0, attrs.index("large")], probs[0, attrs.index("dotted")] = (
        0.2,
        0.3,
        0.1,
    )
    probs[1, attrs.index("red")], probs[1, attrs.index("small")], probs[1, attrs.index("solid")] = (
        0.1,
        0.1,
        0.6,
    )
    regions = dataclasses.replace(
        toy_regions(num_regions=3), attr_probs=probs, object_ids=torch.tensor([1, 0, 1])
    )
    regions = dataclasses.replace(regions, num_real=2)
    labels, classes = detected_labels(regions, names, attrs)
    assert labels[OBJECT_LABEL].tolist() == [1, 0, -1]  # the fill proposal has no label
    assert [classes["colour"][i] for i in labels["colour"][:2]] == ["blue", "red"]
    assert [classes["size"][i] for i in labels["size"][:2]] == ["large", "small"]
    assert [classes["fill"][i] for i in labels["fill"][:2]] == ["dotted", "solid"]
    other, _ = detected_labels(toy_regions(), names, ["a", "b", "c", "d"])
    assert set(other) == {OBJECT_LABEL, "top attribute"}


def test_a_word_takes_the_label_of_the_best_detection_it_names(model, tokenizer):
    regions = dataclasses.replace(toy_regions(num_regions=4), object_ids=torch.tensor([1, 0, 0, 1]))
    labels = {"colour": torch.tensor([3, 2, 1, 0])}
    example = toy_example(tokenizer, "what colour is the cube ball")
    example = dataclasses.replace(
        example,
        visual_feats=regions.features,
        visual_pos=regions.boxes / 100,
        boxes=regions.boxes,
        object_ids=regions.object_ids,
        attr_ids=regions.attr_ids,
        region_labels=labels,
    )
    bank = collect_states(model, [example])
    found = token_labels(bank, [regions.object_ids.tolist()], ["ball", "cube"], "colour")
    assert dict(zip(example.tokens, found.tolist(), strict=True)) == {
        "[CLS]": -1, "what": -1, "colour": -1, "is": -1, "the": -1, "cube": 3, "ball": 2, "[SEP]": -1,
    }  # fmt: skip


def test_probe_study_reads_a_label_written_into_the_features(model, tokenizer):
    """A colour written into the first feature dimensions is read at layer 0 of the vision stream."""
    g = torch.Generator().manual_seed(0)
    attrs = [f"attr{i}" for i in range(NUM_ATTRS)]
    items = []
    for k in range(12):
        regions = toy_regions(seed=k)
        colour = torch.randint(NUM_ATTRS, (len(regions),), generator=g)
        probs = torch.full((len(regions), NUM_ATTRS), 0.01).scatter(1, colour[:, None], 0.9)
        features = 0.3 * torch.randn(regions.features.shape, generator=g)
        features[torch.arange(len(regions)), colour] += 3.0
        items.append(
            (f"image{k}", dataclasses.replace(regions, attr_probs=probs, features=features), ["what colour"])
        )
    study = probe_study(model, tokenizer, items, [f"object{i}" for i in range(6)], attrs)
    config = model.config
    vision = [p for p in study.points if p.label == "top attribute" and p.stream == "vision"]
    assert [p.layer for p in vision] == list(range(1 + config.r_layers + config.x_layers))
    assert [p.stage for p in vision] == ["vision"] * (1 + config.r_layers) + ["cross"] * config.x_layers
    assert vision[0].test_accuracy >= 0.9 > vision[0].majority_accuracy
    assert any("language states" in note for note in study.notes)  # no word names an object class here


def test_the_attribute_kinds_are_the_synthetic_worlds():
    from training.world.scenes import ATTRIBUTE_LABELS, COLOURS, FILLS, SIZES

    assert ATTRIBUTE_KINDS == {"colour": COLOURS, "size": SIZES, "fill": FILLS}
    assert sum(ATTRIBUTE_KINDS.values(), ()) == ATTRIBUTE_LABELS
