"""Masked-word and masked-object predictions and the ablation gauge, against direct model calls."""

from __future__ import annotations

import pytest
import torch
from analysis_toy import toy_example, toy_qa_model

from analysis.masked import (
    ablate_regions,
    ablation_gauge,
    aligned_regions,
    mask_words,
    masked_overview,
    predict_each_region,
    predict_each_word,
    predict_masked_regions,
    predict_masked_words,
)

OBJECT_NAMES = ["ball", "cube", "cone", "ring", "star", "disc"]


def lm_probs(model, input_ids, feats, pos):
    with torch.no_grad():
        return model(input_ids[None], feats[None], pos[None]).prediction_logits[0].softmax(-1)


def test_masked_words_match_a_direct_forward_pass(pretraining_model, tokenizer):
    example = toy_example(tokenizer)
    positions = [2, 5]
    predictions = predict_masked_words(pretraining_model, example, positions, tokenizer, top_k=3)
    ids = example.input_ids.clone()
    ids[positions] = tokenizer.mask_token_id
    probs = lm_probs(pretraining_model, ids, example.visual_feats, example.visual_pos)
    for prediction, p in zip(predictions, positions, strict=True):
        best = probs[p].topk(3)
        assert [c.index for c in prediction.fillers] == best.indices.tolist()
        assert [c.name for c in prediction.fillers] == tokenizer.convert_ids_to_tokens(best.indices)
        assert prediction.original == example.tokens[p]
        assert prediction.original_probability == pytest.approx(float(probs[p, example.input_ids[p]]))


def test_vision_conditions_ablate_the_right_regions(pretraining_model, tokenizer):
    example = toy_example(tokenizer)
    no_vision = predict_masked_words(pretraining_model, example, [6], tokenizer, vision="no_vision")[0]
    ids = mask_words(example, [6], tokenizer.mask_token_id).input_ids
    probs = lm_probs(pretraining_model, ids, torch.zeros_like(example.visual_feats), example.visual_pos)
    assert no_vision.fillers[0].probability == pytest.approx(float(probs[6].max()))
    aligned = predict_masked_words(
        pretraining_model, example, [6], tokenizer, vision="aligned_removed", aligned=[1, 3]
    )[0]
    feats = example.visual_feats.clone()
    feats[[1, 3]] = 0
    probs = lm_probs(pretraining_model, ids, feats, example.visual_pos)
    assert aligned.original_probability == pytest.approx(float(probs[6, example.input_ids[6]]))
    dropped = ablate_regions(example, [0, 4], "drop")
    assert dropped.num_regions == example.num_regions - 2
    assert torch.equal(dropped.visual_feats, example.visual_feats[[1, 2, 3]])


def test_each_word_batched_equals_one_at_a_time(pretraining_model, tokenizer):
    example = toy_example(tokenizer)
    batched = predict_each_word(pretraining_model, example, tokenizer, top_k=2)
    words = [i for i, t in enumerate(example.tokens) if t not in ("[CLS]", "[SEP]")]
    assert [p.position for p in batched] == words
    for prediction in batched:
        single = predict_masked_words(pretraining_model, example, [prediction.position], tokenizer, top_k=2)[
            0
        ]
        assert [c.index for c in prediction.fillers] == [c.index for c in single.fillers]
        assert prediction.original_probability == pytest.approx(single.original_probability, rel=1e-5)


def test_masked_regions_read_the_object_attribute_and_feature_heads(pretraining_model, tokenizer):
    example = toy_example(tokenizer)
    predictions = predict_masked_regions(pretraining_model, example, [1, 3], top_k=3)
    feats = example.visual_feats.clone()
    feats[[1, 3]] = 0
    with torch.no_grad():
        out = pretraining_model(example.input_ids[None], feats[None], example.visual_pos[None])
    for prediction in predictions:
        r = prediction.region
        assert [c.index for c in prediction.objects] == out.obj_logits[0, r].topk(3).indices.tolist()
        assert [c.index for c in prediction.attributes] == out.attr_logits[0, r].topk(3).indices.tolist()
        distances = torch.cdist(out.feat_prediction[0, r][None], example.visual_feats)[0]
        assert [i for i, _ in prediction.nearest_regions] == distances.argsort()[:3].tolist()
        assert prediction.original_object == int(example.object_ids[r])
    # Without the text every word is [MASK]: the prediction must equal a direct call on masked text.
    no_text = predict_masked_regions(
        pretraining_model, example, [1], text="no_text", mask_token_id=tokenizer.mask_token_id
    )[0]
    ids = torch.full_like(example.input_ids, tokenizer.mask_token_id)
    ids[0], ids[-1] = example.input_ids[0], example.input_ids[-1]
    feats = example.visual_feats.clone()
    feats[1] = 0
    with torch.no_grad():
        out = pretraining_model(ids[None], feats[None], example.visual_pos[None])
    assert no_text.objects[0].probability == pytest.approx(float(out.obj_logits[0, 1].softmax(-1).max()))
    with pytest.raises(ValueError, match="mask_token_id"):
        predict_masked_regions(pretraining_model, example, [1], text="no_text")


def test_each_region_batched_equals_one_at_a_time(pretraining_model, tokenizer):
    example = toy_example(tokenizer)
    batched = predict_each_region(pretraining_model, example, top_k=2, object_names=OBJECT_NAMES)
    for prediction in batched:
        single = predict_masked_regions(
            pretraining_model, example, [prediction.region], top_k=2, object_names=OBJECT_NAMES
        )[0]
        assert [c.name for c in prediction.objects] == [c.name for c in single.objects]
        assert prediction.objects[0].probability == pytest.approx(single.objects[0].probability, rel=1e-5)


def test_ablation_gauge_counts_what_single_predictions_say(pretraining_model, tokenizer):
    example = toy_example(tokenizer, "is there a ball left of the cube")
    gauge = ablation_gauge(pretraining_model, example, tokenizer, object_names=OBJECT_NAMES)
    words = [i for i, t in enumerate(example.tokens) if t not in ("[CLS]", "[SEP]")]
    for condition in ("image", "no_vision", "aligned_removed"):
        hits = []
        for p in words:
            aligned = aligned_regions(example, example.tokens[p], OBJECT_NAMES)
            prediction = predict_masked_words(
                pretraining_model, example, [p], tokenizer, 1, condition, aligned
            )[0]
            hits.append(prediction.fillers[0].index == int(example.input_ids[p]))
        assert gauge.word_accuracy[condition] == pytest.approx(sum(hits) / len(hits)), condition
    for condition in ("text", "no_text"):
        hits = [
            predict_masked_regions(pretraining_model, example, [r], 1, condition, tokenizer.mask_token_id)[0]
            .objects[0]
            .index
            == int(example.object_ids[r])
            for r in range(example.num_regions)
        ]
        assert gauge.object_accuracy[condition] == pytest.approx(sum(hits) / len(hits)), condition
    assert gauge.word_drop_without_vision == pytest.approx(
        gauge.word_accuracy["image"] - gauge.word_accuracy["no_vision"]
    )
    assert gauge.num_words == len(words)


def test_aligned_regions_match_detector_names(tokenizer):
    example = toy_example(tokenizer)
    for word in ("ball", "##cube", "Ring"):
        name = word.removeprefix("##").lower()
        expected = [r for r, i in enumerate(example.object_ids.tolist()) if OBJECT_NAMES[i] == name]
        assert aligned_regions(example, word, OBJECT_NAMES) == expected


def test_masked_predictions_need_pretraining_heads(tokenizer):
    with pytest.raises(ValueError, match="LxmertForPreTraining"):
        predict_masked_words(toy_qa_model(), toy_example(tokenizer), [1], tokenizer)


def test_masked_overview_equals_the_separate_calls(pretraining_model, tokenizer):
    example = toy_example(tokenizer, "is there a ball left of the cube")
    overview = masked_overview(pretraining_model, example, tokenizer, top_k=2, object_names=OBJECT_NAMES)
    words = predict_each_word(pretraining_model, example, tokenizer, top_k=2)
    regions = predict_each_region(pretraining_model, example, top_k=2, object_names=OBJECT_NAMES)
    gauge = ablation_gauge(pretraining_model, example, tokenizer, object_names=OBJECT_NAMES)
    assert [[c.index for c in w.fillers] for w in overview.words] == [
        [c.index for c in w.fillers] for w in words
    ]
    assert [r.nearest_regions[0][0] for r in overview.regions] == [r.nearest_regions[0][0] for r in regions]
    assert [r.objects[0].name for r in overview.regions] == [r.objects[0].name for r in regions]
    assert overview.gauge.word_accuracy == pytest.approx(gauge.word_accuracy)
    assert overview.gauge.object_probability == pytest.approx(gauge.object_probability)
