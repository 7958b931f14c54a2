"""Rollout and Chefer et al.'s relevancy on hand-computable cases, then on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analysis_toy import toy_example, toy_qa_model

from analysis.attention import AttentionMaps, collect_attention
from analysis.relevancy import (
    answer_gradients,
    chefer_relevancy,
    gradient_relevancy,
    raw_attention_relevancy,
    rollout_matrix,
    rollout_relevancy,
)

FAMILIES = ("lang_self", "vis_self", "cross_l2v", "cross_v2l", "x_lang_self", "x_vis_self")


def maps_of(tokens: list[str], num_regions: int, **families: list[np.ndarray]) -> AttentionMaps:
    """AttentionMaps from per-layer single-head (Tq, Tk) arrays; absent families have no layers."""
    T, R = len(tokens), num_regions
    sides = {"lang_self": (T, T), "vis_self": (R, R), "cross_l2v": (T, R), "cross_v2l": (R, T)}
    sides |= {"x_lang_self": (T, T), "x_vis_self": (R, R)}
    maps = {}
    for family in FAMILIES:
        layers = families.get(family, [])
        maps[family] = (
            np.stack([np.asarray(a, dtype=np.float64)[None] for a in layers])
            if layers
            else np.zeros((0, 1, *sides[family]))
        )
    return AttentionMaps(tokens, num_regions, maps)


def test_rollout_of_identity_attentions_is_identity():
    T, R = 4, 3
    maps = maps_of(["[CLS]", "a", "b", "[SEP]"], R, lang_self=[np.eye(T)] * 3, vis_self=[np.eye(R)] * 2)
    np.testing.assert_allclose(rollout_matrix(maps), np.eye(T + R))


def test_rollout_of_one_cross_layer_by_hand():
    # T = 2 ([CLS], w), R = 1. Cross step: each side keeps half of itself and takes half from the other modality;
    # then the language self-attention (uniform) mixes with its residual: rows [.75, .25] / [.25, .75].
    maps = maps_of(
        ["[CLS]", "w"], 1,
        cross_l2v=[[[1.0], [1.0]]], cross_v2l=[[[0.5, 0.5]]],
        x_lang_self=[[[0.5, 0.5], [0.5, 0.5]]], x_vis_self=[[[1.0]]],
    )  # fmt: skip
    expected = np.array([[0.375, 0.125, 0.5], [0.125, 0.375, 0.5], [0.25, 0.25, 0.5]])
    np.testing.assert_allclose(rollout_matrix(maps), expected)
    relevancy = rollout_relevancy(maps)
    np.testing.assert_allclose(relevancy.tokens, [0.0, 0.125])
    np.testing.assert_allclose(relevancy.regions, [0.5])


def test_raw_attention_reads_the_last_cross_layer():
    l2v = [[[0.2, 0.8], [0.5, 0.5]], [[0.9, 0.1], [0.3, 0.7]]]
    x_self = [np.full((2, 2), 0.5), [[0.4, 0.6], [0.5, 0.5]]]
    maps = maps_of(["[CLS]", "w"], 2, cross_l2v=l2v, cross_v2l=[np.full((2, 2), 0.5)] * 2, x_lang_self=x_self,
                   x_vis_self=[np.full((2, 2), 0.5)] * 2)  # fmt: skip
    relevancy = raw_attention_relevancy(maps)
    np.testing.assert_allclose(relevancy.regions, [0.9, 0.1])
    np.testing.assert_allclose(relevancy.tokens, [0.0, 0.6])


def as_torch(layers: list) -> list[torch.Tensor]:
    return [torch.as_tensor(np.asarray(a, dtype=np.float64))[None] for a in layers]  # (1 head, Tq, Tk)


def chefer(
    T: int, R: int, attn: dict[str, list], grad: dict[str, list] | None = None
) -> dict[str, np.ndarray]:
    attentions = {f: as_torch(attn.get(f, [])) for f in FAMILIES}
    gradients = {f: as_torch(grad[f]) if grad and f in grad else [torch.ones_like(a) for a in attentions[f]]
                 for f in FAMILIES}  # fmt: skip
    return {k: v.numpy() for k, v in chefer_relevancy(attentions, gradients, T, R).items()}


def test_self_attention_rule_by_hand():
    # R = (I + A2)(I + A1) with unit gradients: [[3, 1], [.75, 3.25]]; the [CLS] self-entry is zeroed.
    a1, a2 = [[0.5, 0.5], [0.0, 1.0]], [[1.0, 0.0], [0.5, 0.5]]
    r = chefer(2, 1, {"lang_self": [a1, a2]})
    np.testing.assert_allclose(r["R_tt"], [[0.0, 1.0], [0.75, 3.25]])
    np.testing.assert_allclose(r["R_ti"], 0.0)


def test_negative_gradients_are_clamped_away():
    a = [[0.5, 0.5], [0.0, 1.0]]
    r = chefer(2, 1, {"lang_self": [a]}, {"lang_self": [-np.ones((2, 2))]})
    np.testing.assert_allclose(r["R_tt"], [[0.0, 0.0], [0.0, 1.0]])


def test_co_attention_rule_uses_the_normalised_transposed_text_relevancy():
    # One language layer A, then one (last) cross layer with L→V map C: R_tt = I + A, so
    # R̄_tt = rownorm(A) + I and R_ti = R̄_ttᵀ C R̄_ii with R̄_ii = I (nothing reached the regions).
    a = np.array([[0.2, 0.8], [0.6, 0.4]])
    c = np.array([[0.7, 0.3], [0.1, 0.9]])
    zeros = np.zeros((2, 2))
    r = chefer(
        2, 2,
        {"lang_self": [a], "cross_l2v": [c], "cross_v2l": [zeros], "x_lang_self": [zeros], "x_vis_self": [zeros]},
    )  # fmt: skip
    normalised = a / a.sum(1, keepdims=True) + np.eye(2)
    np.testing.assert_allclose(r["R_ti"], normalised.T @ c)
    expected_tt = np.eye(2) + a
    expected_tt[0, 0] = 0.0  # the [CLS] self-entry is zeroed
    np.testing.assert_allclose(r["R_tt"], expected_tt)


def test_vision_to_language_of_an_earlier_layer_reaches_the_text_relevancy():
    # Layer 1: L→V C1 and V→L D1 from the initial state: R_ti = C1, R_it = D1.
    # Layer 2 (last, language branch only): R_ti += C2, R_tt += C2 · R_it = C2 · D1.
    c1, c2 = np.array([[0.5, 0.5], [0.2, 0.8]]), np.array([[0.9, 0.1], [0.4, 0.6]])
    d1 = np.array([[0.3, 0.7], [0.6, 0.4]])
    zeros = np.zeros((2, 2))
    r = chefer(
        2, 2,
        {"cross_l2v": [c1, c2], "cross_v2l": [d1, zeros], "x_lang_self": [zeros, zeros], "x_vis_self": [zeros] * 2},
    )  # fmt: skip
    np.testing.assert_allclose(r["R_ti"], c1 + c2)
    expected_tt = np.eye(2) + c2 @ d1
    expected_tt[0, 0] = 0.0
    np.testing.assert_allclose(r["R_tt"], expected_tt)
    np.testing.assert_allclose(r["R_it"], d1)


def test_each_cross_direction_gets_its_own_gradient(tokenizer):
    model = toy_qa_model()
    explained = answer_gradients(model, toy_example(tokenizer))
    attentions, gradients = explained.attentions, explained.gradients
    assert explained.target == int(explained.logits.argmax())
    # The last cross layer's vision branch never reaches [CLS]; its language branch does.
    assert gradients["cross_v2l"][-1].abs().max() == 0.0
    assert gradients["x_vis_self"][-1].abs().max() == 0.0
    assert gradients["cross_l2v"][-1].abs().max() > 0.0
    assert gradients["cross_v2l"][0].abs().max() > 0.0
    assert gradients["cross_l2v"][0].shape == attentions["cross_l2v"][0].shape


def test_contrastive_relevancy_explains_the_logit_difference(tokenizer):
    model = toy_qa_model()
    example = toy_example(tokenizer)
    explained_a = answer_gradients(model, example, target=1)
    attentions, grad_a = explained_a.attentions, explained_a.gradients
    grad_b = answer_gradients(model, example, target=3).gradients
    difference = {f: [ga - gb for ga, gb in zip(grad_a[f], grad_b[f], strict=True)] for f in grad_a}
    expected = chefer_relevancy(attentions, difference, example.num_tokens, example.num_regions)
    relevancy = gradient_relevancy(model, example, target=1, contrast=3)
    # Two float32 paths to one quantity: measured up to 2.1e-6 apart (relative) with 1 and 2 threads.
    np.testing.assert_allclose(relevancy.regions, expected["R_ti"][0].numpy(), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(relevancy.tokens, expected["R_tt"][0].numpy(), rtol=1e-4, atol=1e-9)
    assert relevancy.tokens[0] == 0.0 and relevancy.target == 1 and relevancy.contrast == 3
    with pytest.raises(IndexError, match="contrast"):
        gradient_relevancy(model, example, target=1, contrast=99)


def test_model_relevancy_has_one_score_per_token_and_region(tokenizer):
    model = toy_qa_model()
    example = toy_example(tokenizer)
    maps = collect_attention(model, example)
    for relevancy in (
        gradient_relevancy(model, example),
        rollout_relevancy(maps),
        raw_attention_relevancy(maps),
    ):
        assert relevancy.tokens.shape == (example.num_tokens,)
        assert relevancy.regions.shape == (example.num_regions,)
        assert np.isfinite(relevancy.tokens).all() and np.isfinite(relevancy.regions).all()
        assert (relevancy.regions >= 0).all()
    # Rollout rows are distributions over all inputs.
    np.testing.assert_allclose(rollout_matrix(maps).sum(1), 1.0)
