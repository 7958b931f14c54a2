"""Examples, attention collection and per-head statistics on a tiny seeded model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analysis_toy import FEAT_DIM, toy_example, toy_pretraining_model

from analysis.attention import (
    AttentionMaps,
    attention_maps_from_output,
    collect_attention,
    cross_attention_modules,
    cross_modal_share,
    head_stats,
)
from analysis.forward import run
from analysis.inputs import batch_inputs, example_from_tensors
from analysis.interventions import delete_regions, head_mask


def test_example_from_tensors_strips_padding_and_keeps_regions_in_step(tokenizer):
    batch = tokenizer(["what colour is the ball"], max_length=12, padding="max_length")
    feats = torch.randn(1, 4, FEAT_DIM)
    pos = torch.rand(1, 4, 4)
    example = example_from_tensors(
        batch["input_ids"],
        feats,
        pos,
        tokenizer.convert_ids_to_tokens(batch["input_ids"][0]),
        attention_mask=batch["attention_mask"],
        visual_attention_mask=torch.tensor([[1, 0, 1, 1]]),
        object_ids=torch.tensor([[5, 6, 7, 8]]),
    )
    assert example.tokens == ["[CLS]", "what", "colour", "is", "the", "ball", "[SEP]"]
    assert example.num_regions == 3
    assert torch.equal(example.visual_feats, feats[0, [0, 2, 3]])
    assert example.object_ids.tolist() == [5, 7, 8]
    assert example.special_mask.tolist() == [True, False, False, False, False, False, True]


def test_example_rejects_mismatched_fields(tokenizer):
    example = toy_example(tokenizer)
    with pytest.raises(ValueError, match="object_ids"):
        type(example)(**{**example.__dict__, "object_ids": torch.zeros(example.num_regions + 1)})
    with pytest.raises(ValueError, match="differ"):
        batch_inputs([example, example.select_regions([0])])


def test_collect_attention_returns_every_family_as_the_model_computes_it(model, tokenizer):
    example = toy_example(tokenizer)
    maps = collect_attention(model, example)
    c = model.config
    T, R, H = example.num_tokens, example.num_regions, c.num_attention_heads
    expected = {
        "lang_self": (c.l_layers, H, T, T),
        "vis_self": (c.r_layers, H, R, R),
        "cross_l2v": (c.x_layers, H, T, R),
        "cross_v2l": (c.x_layers, H, R, T),
        "x_lang_self": (c.x_layers, H, T, T),
        "x_vis_self": (c.x_layers, H, R, R),
    }
    assert {f: m.shape for f, m in maps.maps.items()} == expected
    for family, attn in maps.maps.items():
        np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-5, err_msg=family)
    # The two cross directions come from one shared module yet are the two different computations.
    module = cross_attention_modules(model, 0)
    assert module["cross_l2v"] is module["cross_v2l"]
    assert maps.maps["cross_l2v"].shape != maps.maps["cross_v2l"].shape
    np.testing.assert_allclose(maps.token_to_regions(2, layer=1, head=0), maps.maps["cross_l2v"][1, 0, 2])
    np.testing.assert_allclose(
        maps.region_to_tokens(3), maps.maps["cross_v2l"][:, :, 3].mean((0, 1)), atol=1e-7
    )
    with pytest.raises(IndexError, match="region"):
        maps.region_to_tokens(R)


def test_deleting_a_region_equals_masking_it_out_of_every_map(model, tokenizer):
    example = toy_example(tokenizer)
    removed = 2
    kept = [r for r in range(example.num_regions) if r != removed]
    deleted = collect_attention(model, delete_regions(example, [removed]))
    mask = torch.ones(1, example.num_regions, dtype=torch.long)
    mask[0, removed] = 0
    with torch.no_grad():
        masked = attention_maps_from_output(
            run(model, example, output_attentions=True, visual_attention_mask=mask), example
        )
    for family, attn in masked.maps.items():
        rows = kept if family in ("vis_self", "cross_v2l", "x_vis_self") else slice(None)
        cols = kept if family in ("vis_self", "cross_l2v", "x_vis_self") else slice(None)
        if cols is kept:  # the masked region gets no attention at all
            assert np.abs(np.take(attn, [removed], axis=-1)).max() == 0.0, family
        reference = np.take(
            np.take(attn, np.arange(attn.shape[2])[rows], axis=2), np.arange(attn.shape[3])[cols], 3
        )
        np.testing.assert_allclose(deleted.maps[family], reference, atol=1e-5, err_msg=family)
        assert deleted.num_regions == example.num_regions - 1


def test_head_stats_on_hand_made_maps():
    tokens = ["[CLS]", "a", "b", "[SEP]"]
    uniform = np.full((1, 1, 4, 4), 0.25, dtype=np.float32)
    one_hot = np.zeros((1, 1, 4, 4), dtype=np.float32)
    one_hot[..., 0] = 1.0  # every token attends to [CLS] only
    to_regions = np.full((1, 1, 4, 2), 0.5, dtype=np.float32)
    maps = AttentionMaps(tokens, 2, {"lang_self": uniform, "x_lang_self": one_hot, "cross_l2v": to_regions})
    stats = head_stats(maps)
    np.testing.assert_allclose(stats.entropy["lang_self"], np.log(4), rtol=1e-6)
    np.testing.assert_allclose(stats.normalized_entropy["lang_self"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(stats.max_weight["lang_self"], 0.25)
    np.testing.assert_allclose(stats.cls_mass["lang_self"], 0.25)
    np.testing.assert_allclose(stats.sep_mass["lang_self"], 0.25)
    np.testing.assert_allclose(stats.entropy["x_lang_self"], 0.0)
    np.testing.assert_allclose(stats.cls_mass["x_lang_self"], 1.0)
    np.testing.assert_allclose(stats.sep_mass["x_lang_self"], 0.0)
    assert np.isnan(stats.cls_mass["cross_l2v"]).all()  # keys are regions: no [CLS] there


def test_cross_modal_share_matches_the_context_the_model_actually_projects(tokenizer):
    model = toy_pretraining_model()
    example = toy_example(tokenizer)
    c = model.config
    H, d = c.num_attention_heads, c.head_dim
    captured = []  # (input of the output projection, residual) per call of the shared module, l2v then v2l
    hooks = [
        cross_attention_modules(model, i)["cross_l2v"].output.register_forward_pre_hook(
            lambda module, args: captured.append((args[0].detach(), args[1].detach()))
        )
        for i in range(c.x_layers)
    ]
    try:
        with torch.no_grad():
            output = run(model, example, output_attentions=True, output_hidden_states=True)
    finally:
        for hook in hooks:
            hook.remove()
    share = cross_modal_share(model, output)
    for i in range(c.x_layers):
        for k, family in enumerate(("cross_l2v", "cross_v2l")):
            context, residual = captured[2 * i + k]
            dense = cross_attention_modules(model, i)[family].output.dense
            per_head = torch.stack(
                [
                    (context[0, :, h * d : (h + 1) * d] @ dense.weight[:, h * d : (h + 1) * d].T).norm(dim=-1)
                    for h in range(H)
                ]
            )  # (H, Tq)
            expected = (per_head / (per_head.sum(0) + residual[0].norm(dim=-1))).mean(-1)
            np.testing.assert_allclose(
                share[family][i], expected.detach().numpy(), rtol=1e-4, err_msg=f"{family} layer {i}"
            )
    # A masked head writes nothing.
    mask = head_mask(c, [("cross_l2v", 1, 0)])
    with torch.no_grad():
        masked = run(model, example, output_attentions=True, output_hidden_states=True, head_mask=mask)
    assert cross_modal_share(model, masked)["cross_l2v"][1, 0] == 0.0
