import copy
import math

import pytest
import torch
from lxmert_helpers import max_diff, perturb_, random_batch, transformers_config

from lxmert import ATTENTION_FAMILIES, LxmertForNLVR2, LxmertForPreTraining, LxmertForQuestionAnswering

OUTPUTS = (
    "language_output", "vision_output", "pooled_output", "prediction_logits", "cross_relationship_score",
    "question_answering_score", "obj_logits", "attr_logits", "feat_prediction",
)  # fmt: skip


def assert_outputs_close(a, b, names, atol=1e-5):
    for name in names:
        diff = max_diff(getattr(a, name), getattr(b, name))
        assert diff <= atol, f"{name} differs by {diff:.2e}"


def layers_of(config, family):
    return {"lang_self": config.l_layers, "vis_self": config.r_layers}.get(family, config.x_layers)


def random_head_mask(config):
    g = torch.Generator().manual_seed(1)
    return {f: (torch.rand(layers_of(config, f), config.num_attention_heads, generator=g) > 0.3).float()
            for f in ATTENTION_FAMILIES}  # fmt: skip


@pytest.mark.parametrize("with_head_mask", [False, True])
def test_fast_and_attention_returning_paths_agree(tiny_config, with_head_mask):
    batch = random_batch(tiny_config)
    head_mask = random_head_mask(tiny_config) if with_head_mask else None
    model = perturb_(LxmertForPreTraining(tiny_config)).eval()
    with torch.no_grad():
        fast = model(**batch, head_mask=head_mask)
        slow = model(**batch, head_mask=head_mask, output_attentions=True)
    assert fast.attentions is None and slow.attentions is not None
    assert_outputs_close(fast, slow, OUTPUTS)

    qa = perturb_(LxmertForQuestionAnswering(tiny_config)).eval()
    nlvr2 = perturb_(LxmertForNLVR2(tiny_config)).eval()
    pairs = random_batch(tiny_config, pairs=True)
    with torch.no_grad():
        assert_outputs_close(qa(**batch, head_mask=head_mask),
                             qa(**batch, head_mask=head_mask, output_attentions=True), ["logits"])  # fmt: skip
        assert_outputs_close(nlvr2(**pairs, head_mask=head_mask),
                             nlvr2(**pairs, head_mask=head_mask, output_attentions=True), ["logits"])  # fmt: skip


def test_attention_rows_are_distributions_that_ignore_padding(tiny_config):
    batch = random_batch(tiny_config)
    with torch.no_grad():
        out = LxmertForPreTraining(tiny_config).eval()(**batch, output_attentions=True)
    lang_pad = batch["attention_mask"] == 0  # (B, T)
    vis_pad = batch["visual_attention_mask"] == 0  # (B, R)
    key_padding = {"lang_self": lang_pad, "vis_self": vis_pad, "cross_l2v": vis_pad, "cross_v2l": lang_pad,
                   "x_lang_self": lang_pad, "x_vis_self": vis_pad}  # fmt: skip
    for family, probs in out.attentions.items():
        for i, p in enumerate(probs):
            assert torch.allclose(p.sum(-1), torch.ones(()), atol=1e-5), f"{family}[{i}] rows do not sum to 1"
            padded = p.masked_select(key_padding[family][:, None, None, :])
            assert padded.abs().max() < 1e-6, f"{family}[{i}] attends to padding"


def test_attentions_equal_transformers_for_the_three_families_it_returns(tiny_config):
    transformers = pytest.importorskip("transformers")
    hf = perturb_(transformers.LxmertForPreTraining(transformers_config(tiny_config))).eval()
    ours = LxmertForPreTraining(tiny_config).eval()
    ours.load_state_dict(hf.state_dict())
    batch = random_batch(tiny_config)
    with torch.no_grad():
        theirs = hf(**batch, output_attentions=True)
        mine = ours(**batch, output_attentions=True)
    for ours_name, hf_name in (("lang_self", "language_attentions"), ("vis_self", "vision_attentions"),
                               ("cross_l2v", "cross_encoder_attentions")):  # fmt: skip
        hf_probs = getattr(theirs, hf_name)
        for i, (a, b) in enumerate(zip(getattr(mine.attentions, ours_name), hf_probs, strict=True)):
            assert max_diff(a, b) <= 1e-5, (
                f"{ours_name}[{i}] differs from transformers by {max_diff(a, b):.2e}"
            )


def test_vision_to_language_attention_is_the_shared_module_run_backwards(tiny_config):
    """cross_v2l of the first cross layer, recomputed by hand from the encoders' outputs."""
    model = perturb_(LxmertForPreTraining(tiny_config)).eval()
    batch = random_batch(tiny_config)
    with torch.no_grad():
        out = model(**batch, output_attentions=True, output_hidden_states=True)
        lang = out.language_hidden_states[tiny_config.l_layers]  # input of cross layer 0
        vis = out.vision_hidden_states[tiny_config.r_layers]
        att = model.lxmert.encoder.x_layers[0].visual_attention.att
        B, H, d = lang.shape[0], tiny_config.num_attention_heads, tiny_config.head_dim
        q = att.query(vis).view(B, -1, H, d).transpose(1, 2)
        k = att.key(lang).view(B, -1, H, d).transpose(1, 2)
        pad = (batch["attention_mask"] == 0)[:, None, None, :]
        expected = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(pad, -math.inf).softmax(-1)
    assert max_diff(out.attentions.cross_v2l[0], expected) <= 1e-5


@pytest.mark.parametrize("family, weight", [
    ("lang_self", "lxmert.encoder.layer.{i}.attention.output.dense.weight"),
    ("vis_self", "lxmert.encoder.r_layers.{i}.attention.output.dense.weight"),
    ("x_lang_self", "lxmert.encoder.x_layers.{i}.lang_self_att.output.dense.weight"),
    ("x_vis_self", "lxmert.encoder.x_layers.{i}.visn_self_att.output.dense.weight"),
])  # fmt: skip
@pytest.mark.parametrize("output_attentions", [False, True])
def test_masking_a_head_equals_cutting_its_output_columns(tiny_config, family, weight, output_attentions):
    """A head contributes through its d columns of the output projection; zeroing them removes it exactly."""
    layer, head, d = 1, 2, tiny_config.head_dim
    model = perturb_(LxmertForPreTraining(tiny_config)).eval()
    cut = copy.deepcopy(model)
    with torch.no_grad():
        cut.state_dict()[weight.format(i=layer)][:, head * d : (head + 1) * d] = 0
    head_mask = {family: torch.ones(layers_of(tiny_config, family), tiny_config.num_attention_heads)}
    head_mask[family][layer, head] = 0
    batch = random_batch(tiny_config)
    with torch.no_grad():
        masked = model(**batch, head_mask=head_mask, output_attentions=output_attentions)
        expected = cut(**batch)
        plain = model(**batch)
    assert_outputs_close(masked, expected, OUTPUTS)
    assert (
        max_diff(masked.language_output, plain.language_output)
        + max_diff(masked.vision_output, plain.vision_output)
        > 1e-3
    ), "masking a head changed nothing"


def test_a_masked_head_keeps_its_probabilities_zeroed_in_the_returned_weights(tiny_config):
    model = LxmertForPreTraining(tiny_config).eval()
    head_mask = {"cross_l2v": torch.ones(tiny_config.x_layers, tiny_config.num_attention_heads)}
    head_mask["cross_l2v"][0] = 0  # every head of the first cross layer
    batch = random_batch(tiny_config)
    with torch.no_grad():
        out = model(**batch, head_mask=head_mask, output_attentions=True)
        fast = model(**batch, head_mask=head_mask)
    assert out.attentions.cross_l2v[0].abs().max() == 0
    assert out.attentions.cross_l2v[1].sum(-1).allclose(torch.ones(()), atol=1e-5)
    assert_outputs_close(out, fast, OUTPUTS)


def test_bf16_input_gradients_of_the_fast_path_match_the_attention_returning_path(tiny_config):
    # Under CPU bf16 with gradients the fast path takes SDPA's math kernel (lxmert.modeling._math_backward_pays);
    # its gradients must still be those of the explicit softmax(QKᵀ)V path, padding masks included.
    batch = random_batch(tiny_config)
    model = perturb_(LxmertForQuestionAnswering(tiny_config)).eval()
    grads = []
    for output_attentions in (False, True):
        feats = batch["visual_feats"].clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(**{**batch, "visual_feats": feats}, output_attentions=output_attentions).logits
            (grad,) = torch.autograd.grad(logits[:, 0].sum(), feats)
        grads.append(grad.float())
    scale = grads[1].abs().max()
    assert scale > 0
    assert max_diff(grads[0], grads[1]) <= 0.05 * scale


def test_the_math_kernel_is_chosen_only_for_a_reduced_precision_cpu_backward():
    from lxmert.modeling import _math_backward_pays

    bf16 = torch.zeros(2, dtype=torch.bfloat16, requires_grad=True)
    assert _math_backward_pays(bf16)
    assert not _math_backward_pays(torch.zeros(2, requires_grad=True))  # fp32: flash, as the parity tests run
    assert not _math_backward_pays(bf16.detach())
    with torch.no_grad():
        assert not _math_backward_pays(bf16)
