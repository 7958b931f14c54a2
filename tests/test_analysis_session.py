"""The app's one-call analysis bundle, and its JSON / NPZ export."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_toy import toy_example, toy_pretraining_model, toy_qa_model, toy_regions

from analysis.attention import collect_attention, head_stats
from analysis.export import export_json, export_npz, read_export
from analysis.interventions import head_importance
from analysis.relevancy import gradient_relevancy
from analysis.session import SessionConfig, analyze, analyze_example

OBJECT_NAMES = ["ball", "cube", "cone", "ring", "star", "disc"]


def test_analyze_computes_every_panel_for_a_pretraining_model(tokenizer):
    model = toy_pretraining_model()
    analysis = analyze(
        model,
        tokenizer,
        toy_regions(0),
        "what colour is the big ball",
        checkpoint_id="toy",
        object_names=OBJECT_NAMES,
        config=SessionConfig(ig_steps=8),
    )
    example = analysis.example
    assert analysis.target == analysis.answers[0].index
    assert set(analysis.relevancy) == {"raw_attention", "rollout", "gradient"}
    direct = gradient_relevancy(model, example, analysis.target)
    np.testing.assert_allclose(analysis.relevancy["gradient"].regions, direct.regions)
    np.testing.assert_allclose(
        analysis.attention.maps["cross_l2v"], collect_attention(model, example).maps["cross_l2v"]
    )
    assert set(analysis.head_stats.other_modality_share) == {"cross_l2v", "cross_v2l"}
    assert analysis.attributions.n_steps == 8
    assert analysis.region_occlusion.shape == (example.num_regions,)
    assert len(analysis.masked_words) == example.num_tokens - 2
    assert len(analysis.masked_regions) == example.num_regions
    assert analysis.gauge is not None and "aligned_removed" in analysis.gauge.word_accuracy
    assert set(analysis.head_importance) == set(analysis.attention.maps)
    assert all(seconds >= 0 for seconds in analysis.seconds.values())


def test_analyze_a_qa_model_skips_the_pretraining_panels(tokenizer):
    analysis = analyze_example(
        toy_qa_model(), tokenizer, toy_example(tokenizer), config=SessionConfig(attributions=False)
    )
    assert analysis.masked_words is None and analysis.gauge is None and analysis.attributions is None


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_export_round_trip(tokenizer, tmp_path, suffix):
    model = toy_qa_model()
    example = toy_example(tokenizer)
    maps = collect_attention(model, example)
    stats = head_stats(maps)
    extra = {"relevancy/regions": gradient_relevancy(model, example).regions}
    settings = {"seed": 0, "method": "attention"}
    writer = export_json if suffix == ".json" else export_npz
    path = writer(tmp_path / f"out{suffix}", example, maps, "runs/toy@step-10", settings, stats, extra)
    metadata, arrays = read_export(path)
    assert metadata["checkpoint"] == "runs/toy@step-10" and metadata["settings"] == settings
    assert metadata["tokens"] == example.tokens
    assert metadata["feature_hash"] == example.feature_hash()
    np.testing.assert_allclose(metadata["boxes"], example.boxes.numpy(), rtol=1e-6)
    np.testing.assert_allclose(metadata["normalized_boxes"], example.visual_pos.numpy(), rtol=1e-6)
    for family, attn in maps.maps.items():
        np.testing.assert_allclose(arrays[f"attention/{family}"], attn, atol=1e-6, err_msg=family)
    assert np.isnan(arrays["head_stats/cls_mass/cross_l2v"]).all()  # NaN survives JSON as null
    np.testing.assert_allclose(arrays["extra/relevancy/regions"], extra["relevancy/regions"], rtol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == [f"out{suffix}"]  # no temporary file left behind


def test_the_session_head_importance_and_relevancy_match_their_own_functions(tokenizer):
    model = toy_pretraining_model()
    example = toy_example(tokenizer)
    analysis = analyze_example(
        model, tokenizer, example, config=SessionConfig(attributions=False, masked=False)
    )
    importance = head_importance(model, example, [analysis.target])
    for family, values in importance.items():
        np.testing.assert_allclose(analysis.head_importance[family], values, rtol=1e-5, atol=1e-9)
    direct = gradient_relevancy(model, example, analysis.target)
    np.testing.assert_allclose(analysis.relevancy["gradient"].tokens, direct.tokens, rtol=1e-5, atol=1e-9)
    assert analysis.answers[0].index == analysis.target


def test_an_example_moves_every_tensor_to_the_device_and_keeps_the_rest(tokenizer):
    example = toy_example(tokenizer)
    example.region_labels["shape"] = example.object_ids.clone()
    moved = example.to("meta")  # a device every machine has; nothing is copied
    tensors = [
        moved.input_ids,
        moved.visual_feats,
        moved.boxes,
        moved.object_ids,
        moved.region_labels["shape"],
    ]
    assert all(t.device.type == "meta" for t in tensors)
    assert moved.tokens == example.tokens and moved.image_size == example.image_size
    assert example.input_ids.device.type == "cpu"  # the original is untouched
