"""Captum attributions: IG completeness within its delta, occlusion against direct model calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analysis_toy import toy_example, toy_pretraining_model, toy_qa_model

from analysis.attributions import (
    activation_bytes_per_row,
    ig_batch_size,
    integrated_gradients,
    region_baselines,
    region_occlusion,
    token_occlusion,
    word_baseline_ids,
)


def logit(model, example, target, ids=None, feats=None, pos=None) -> float:
    ids = example.input_ids if ids is None else ids
    feats = example.visual_feats if feats is None else feats
    pos = example.visual_pos if pos is None else pos
    with torch.no_grad():
        return float(model(ids[None], feats[None], pos[None]).logits[0, target])


@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_integrated_gradients_are_complete_within_their_delta(model, tokenizer, baseline):
    example = toy_example(tokenizer)
    target = 2
    attr = integrated_gradients(model, example, target, n_steps=32, region_baseline=baseline)
    here = logit(model, example, target)
    word_gap = here - logit(model, example, target, ids=word_baseline_ids(example))
    feats, pos = region_baselines(example, baseline)
    region_gap = here - logit(model, example, target, feats=feats, pos=pos)
    # Completeness: the attributions sum to f(x) − f(baseline), up to the reported delta.
    assert abs(attr.tokens.sum() - word_gap) <= abs(attr.token_delta) + 1e-6
    assert abs(attr.regions.sum() - region_gap) <= abs(attr.region_delta) + 1e-6
    # And the delta itself is small next to the gap at 32 steps on this smooth model.
    assert abs(attr.token_delta) < 0.02 * abs(word_gap)
    assert abs(attr.region_delta) < 0.02 * abs(region_gap)
    assert attr.token_gap == pytest.approx(word_gap, abs=1e-5)
    # [CLS] and [SEP] equal their baseline, so the straight path gives them nothing.
    assert attr.tokens[0] == 0.0 and attr.tokens[-1] == 0.0
    np.testing.assert_allclose(attr.regions, attr.region_features + attr.region_boxes)
    assert 0.0 <= attr.text_share <= 1.0


def test_word_baseline_is_pad_with_special_tokens_kept(tokenizer):
    example = toy_example(tokenizer)
    baseline = word_baseline_ids(example, pad_token_id=tokenizer.pad_token_id)
    assert baseline[0] == tokenizer.cls_token_id and baseline[-1] == tokenizer.sep_token_id
    assert (baseline[1:-1] == tokenizer.pad_token_id).all()


@pytest.mark.parametrize("baseline", ["zero", "mean", "drop"])
def test_region_occlusion_is_the_logit_drop_of_each_region(model, tokenizer, baseline):
    example = toy_example(tokenizer)
    target = 1
    scores = region_occlusion(model, example, target, baseline=baseline)
    here = logit(model, example, target)
    feat_base, pos_base = region_baselines(example, "mean" if baseline == "mean" else "zero")
    for r in range(example.num_regions):
        if baseline == "drop":
            kept = [j for j in range(example.num_regions) if j != r]
            occluded = logit(
                model, example, target, feats=example.visual_feats[kept], pos=example.visual_pos[kept]
            )
        else:
            feats, pos = example.visual_feats.clone(), example.visual_pos.clone()
            feats[r], pos[r] = feat_base[r], pos_base[r]
            occluded = logit(model, example, target, feats=feats, pos=pos)
        assert scores[r] == pytest.approx(here - occluded, abs=1e-5), r


def test_token_occlusion_replaces_one_token_by_pad(model, tokenizer):
    example = toy_example(tokenizer)
    scores = token_occlusion(model, example, target=0, pad_token_id=tokenizer.pad_token_id)
    here = logit(model, example, 0)
    for t in range(example.num_tokens):
        ids = example.input_ids.clone()
        ids[t] = tokenizer.pad_token_id
        assert scores[t] == pytest.approx(here - logit(model, example, 0, ids=ids), abs=1e-5), t


def test_ig_batch_size_fills_the_memory_budget(model):
    config = model.config
    per_row = activation_bytes_per_row(config, num_tokens=8, num_regions=5, value_bytes=4)
    # Hand count for the toy (D=16, I=32, H=2; 2/1/2 layers, F=16): 8·(8·16 + 2·32) = 1536 per token row.

    def layer(n: int, m: int) -> int:
        return n * (8 * 16 + 2 * 32) + 2 * 2 * n * m

    expected = 2 * layer(8, 8) + layer(5, 5) + 2 * (layer(8, 5) + layer(5, 8) + layer(8, 8) + layer(5, 5))
    assert per_row == 4 * (expected + 5 * (16 + 2 * 16))
    assert activation_bytes_per_row(config, 8, 5, value_bytes=2) * 2 == per_row
    assert ig_batch_size(config, 8, 5, n_steps=32, memory_budget=10 * per_row) == 10
    assert ig_batch_size(config, 8, 5, n_steps=32, memory_budget=100 * per_row) == 32
    assert ig_batch_size(config, 8, 5, n_steps=32, memory_budget=0) == 1


def test_integrated_gradients_do_not_depend_on_the_step_batch(model, tokenizer):
    example = toy_example(tokenizer)
    per_row = activation_bytes_per_row(model.config, example.num_tokens, example.num_regions, 4)
    whole = integrated_gradients(model, example, target=2, n_steps=8)
    chunked = integrated_gradients(model, example, target=2, n_steps=8, memory_budget=3 * per_row)
    np.testing.assert_allclose(chunked.tokens, whole.tokens, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(chunked.regions, whole.regions, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_report_their_progress_and_give_the_same_result(model, tokenizer):
    example = toy_example(tokenizer)
    told: list[tuple[float, str]] = []
    quiet = integrated_gradients(model, example, target=2, n_steps=8)
    reported = integrated_gradients(model, example, target=2, n_steps=8, progress=lambda *a: told.append(a))
    assert told == [(0.0, "the words, 8 steps"), (0.5, "the regions, 8 steps"), (1.0, "done")]
    np.testing.assert_allclose(reported.tokens, quiet.tokens, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(reported.regions, quiet.regions, rtol=1e-5, atol=1e-7)


def captum_integrated_gradients(model, example, target, contrast, n_steps, region_baseline, pad_token_id=0):
    """The attributions as Captum computes them: LIG on the word embeddings, IG on the regions (the reference)."""
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    inputs = example.model_inputs()
    ids, feats, pos, types = (
        inputs[k] for k in ("input_ids", "visual_feats", "visual_pos", "token_type_ids")
    )

    def score(input_ids, visual_feats, visual_pos):
        logits = model(input_ids, visual_feats, visual_pos, token_type_ids=types.expand(len(input_ids), -1))
        logits = (
            getattr(logits, "logits", None) if hasattr(logits, "logits") else logits.question_answering_score
        )
        return logits[:, target] - (logits[:, contrast] if contrast is not None else 0.0)

    embeddings = getattr(model, "lxmert", model).embeddings.word_embeddings
    words, word_delta = LayerIntegratedGradients(score, embeddings).attribute(
        ids,
        baselines=word_baseline_ids(example, pad_token_id)[None],
        additional_forward_args=(feats, pos),
        n_steps=n_steps,
        return_convergence_delta=True,
    )
    feat_base, pos_base = region_baselines(example, region_baseline)
    (feat_attr, pos_attr), region_delta = IntegratedGradients(lambda f, p, i: score(i, f, p)).attribute(
        (feats, pos),
        baselines=(feat_base[None], pos_base[None]),
        additional_forward_args=(ids,),
        n_steps=n_steps,
        return_convergence_delta=True,
    )
    return words[0].sum(-1), feat_attr[0].sum(-1), pos_attr[0].sum(-1), float(word_delta), float(region_delta)


@pytest.mark.parametrize(
    ("kind", "contrast", "region_baseline", "batch_rows"),
    [("qa", None, "zero", None), ("qa", 1, "mean", 3), ("pretraining", None, "mean", 5)],
)
def test_integrated_gradients_equal_captums(tokenizer, kind, contrast, region_baseline, batch_rows):
    model = toy_qa_model(seed=3) if kind == "qa" else toy_pretraining_model(seed=3, task_qa=True)
    example = toy_example(tokenizer)
    ours = integrated_gradients(
        model,
        example,
        target=2,
        contrast=contrast,
        n_steps=16,
        region_baseline=region_baseline,
        internal_batch_size=batch_rows,
    )
    words, feats, boxes, word_delta, region_delta = captum_integrated_gradients(
        model, example, 2, contrast, 16, region_baseline
    )
    scale = max(np.abs(ours.tokens).max(), np.abs(ours.regions).max())
    for mine, reference in [(ours.tokens, words), (ours.region_features, feats), (ours.region_boxes, boxes)]:
        np.testing.assert_allclose(mine, reference.detach().double().numpy(), rtol=1e-4, atol=1e-5 * scale)
    assert ours.token_delta == pytest.approx(word_delta, abs=1e-4 * scale)
    assert ours.region_delta == pytest.approx(region_delta, abs=1e-4 * scale)


def test_integrated_gradients_leave_the_models_gradients_and_flags_alone(model, tokenizer):
    flags = [p.requires_grad for p in model.parameters()]
    integrated_gradients(model, toy_example(tokenizer), target=2, n_steps=4)
    # Gradients are taken with respect to the inputs only: no parameter collects a .grad, none changes its flag.
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
