import math

import pytest
import torch
from lxmert_helpers import random_batch

from lxmert import LxmertForNLVR2, LxmertForPreTraining, LxmertForQuestionAnswering, LxmertModel


def pretraining_labels(config, batch):
    B, T = batch["input_ids"].shape
    R = batch["visual_feats"].shape[1]
    labels = torch.full((B, T), -100)
    labels[:, 1:3] = torch.randint(0, config.vocab_size, (B, 2))
    weight = torch.rand(B, R)
    return {
        "labels": labels,
        "matched_label": torch.tensor([1, 0, 1]),
        "ans": torch.tensor([2, -100, 5]),
        "obj_labels": {
            "obj": (torch.randint(0, config.num_object_labels, (B, R)), weight),
            "attr": (torch.randint(0, config.num_attr_labels, (B, R)), weight),
            "feat": (torch.randn(B, R, config.visual_feat_dim), weight),
        },
    }


def test_every_output_has_its_shape(tiny_config):
    c = tiny_config
    B, T, R, D, H = 3, 7, 5, c.hidden_size, c.num_attention_heads
    batch = random_batch(c, B, T, R)
    out = LxmertForPreTraining(c).eval()(**batch, output_attentions=True, output_hidden_states=True)
    assert out.language_output.shape == (B, T, D)
    assert out.vision_output.shape == (B, R, D)
    assert out.pooled_output.shape == (B, D)
    assert out.prediction_logits.shape == (B, T, c.vocab_size)
    assert out.cross_relationship_score.shape == (B, 2)
    assert out.question_answering_score.shape == (B, c.num_qa_labels)
    assert out.obj_logits.shape == (B, R, c.num_object_labels)
    assert out.attr_logits.shape == (B, R, c.num_attr_labels)
    assert out.feat_prediction.shape == (B, R, c.visual_feat_dim)
    assert [s.shape for s in out.language_hidden_states] == [(B, T, D)] * (1 + c.l_layers + c.x_layers)
    assert [s.shape for s in out.vision_hidden_states] == [(B, R, D)] * (1 + c.r_layers + c.x_layers)
    expected = {
        "lang_self": (c.l_layers, (B, H, T, T)),
        "vis_self": (c.r_layers, (B, H, R, R)),
        "cross_l2v": (c.x_layers, (B, H, T, R)),
        "cross_v2l": (c.x_layers, (B, H, R, T)),
        "x_lang_self": (c.x_layers, (B, H, T, T)),
        "x_vis_self": (c.x_layers, (B, H, R, R)),
    }
    for family, probs in out.attentions.items():
        layers, shape = expected[family]
        assert [p.shape for p in probs] == [shape] * layers, family
    assert out.loss is None and out.losses == {}

    base = LxmertModel(c).eval()(**batch)
    assert (
        base.pooled_output.shape == (B, D) and base.attentions is None and base.language_hidden_states is None
    )
    qa = LxmertForQuestionAnswering(c, num_labels=17).eval()(**batch)
    assert qa.logits.shape == (B, 17) and qa.question_answering_score is qa.logits
    pair = LxmertForNLVR2(c).eval()(**random_batch(c, B, T, R, pairs=True), output_attentions=True)
    assert pair.logits.shape == (B, 2)
    assert pair.attentions.cross_l2v[0].shape == (2 * B, H, T, R)  # each statement is encoded once per image


def assert_every_parameter_learns(model, loss, unused_prefixes=()):
    assert torch.isfinite(loss), f"loss is {loss}"
    loss.backward()
    for name, p in model.named_parameters():
        if name.startswith(unused_prefixes):
            assert p.grad is None, f"{name} cannot reach the loss yet received a gradient"
            continue
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("share_cross_attention", [True, False])
def test_pretraining_every_parameter_gets_a_gradient_from_the_five_tasks(tiny_config, share_cross_attention):
    tiny_config.share_cross_attention = share_cross_attention
    model = LxmertForPreTraining(tiny_config).train()
    batch = random_batch(tiny_config)
    out = model(**batch, **pretraining_labels(tiny_config, batch))
    assert set(out.losses) == {"mask_lm", "matched", "obj", "attr", "feat", "qa"}
    assert torch.allclose(out.loss, sum(out.losses.values()))
    assert_every_parameter_learns(model, out.loss)


def last_vision_branch(config):
    """A task head reads only the [CLS] token, so the last cross layer's vision-side blocks cannot affect it."""
    last = f"lxmert.encoder.x_layers.{config.x_layers - 1}."
    return tuple(last + block for block in ("visn_self_att.", "visn_inter.", "visn_output."))


def test_qa_every_parameter_gets_a_gradient_with_soft_and_hard_labels(tiny_config):
    model = LxmertForQuestionAnswering(tiny_config).train()
    batch = random_batch(tiny_config)
    hard = model(**batch, labels=torch.tensor([0, 3, 12])).loss
    soft_labels = torch.zeros(3, tiny_config.num_qa_labels)
    soft_labels[0, 2], soft_labels[1, 4] = 1.0, 0.3
    soft = model(**batch, labels=soft_labels).loss
    assert_every_parameter_learns(model, hard + soft, last_vision_branch(tiny_config))


def test_nlvr2_every_parameter_gets_a_gradient(tiny_config):
    model = LxmertForNLVR2(tiny_config).train()
    out = model(**random_batch(tiny_config, pairs=True), labels=torch.tensor([1, 0, 1]))
    assert_every_parameter_learns(model, out.loss, last_vision_branch(tiny_config))


def test_scoring_the_masked_lm_at_its_positions_only_changes_no_loss_or_gradient(tiny_config):
    torch.manual_seed(0)
    model = LxmertForPreTraining(tiny_config).train()
    batch = random_batch(tiny_config)
    labels = pretraining_labels(tiny_config, batch)
    positions = labels["labels"] != -100

    def run(**kwargs):
        torch.manual_seed(1)  # the same dropout masks in both runs
        model.zero_grad()
        out = model(**batch, **labels, **kwargs)
        out.loss.backward()
        return out, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    full, full_grads = run()
    only, only_grads = run(lm_positions=positions)
    assert only.prediction_logits.shape == (int(positions.sum()), tiny_config.vocab_size)
    # Fewer rows take other kernels: measured 0 and 9e-10 apart at 1 and 2 threads, up to 2.4e-7 with 2 threads
    # beside a busy process; 1e-5 leaves 40 times that.
    close = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(only.prediction_logits, full.prediction_logits[positions], **close)
    for name in full.losses:
        torch.testing.assert_close(only.losses[name], full.losses[name], **close)
    assert only_grads.keys() == full_grads.keys()
    for name, grad in full_grads.items():
        torch.testing.assert_close(only_grads[name], grad, msg=name, **close)


def test_masked_lm_loss_at_init_is_about_log_vocab(tiny_config):
    config = tiny_config.__class__.preset("tiny", vocab_size=3000, visual_feat_dim=24)
    model = LxmertForPreTraining(config).eval()
    batch = random_batch(config, B=8, T=12)
    labels = torch.randint(0, config.vocab_size, batch["input_ids"].shape)
    with torch.no_grad():
        loss = model(**batch, labels=labels).losses["mask_lm"]
    # Weights of std 0.02 give near-uniform predictions: cross-entropy ln(V) plus a little.
    assert loss.item() == pytest.approx(math.log(config.vocab_size), abs=0.05)


def test_mismatched_only_batch_gives_a_zero_qa_loss(tiny_config):
    model = LxmertForPreTraining(tiny_config).eval()
    out = model(**random_batch(tiny_config), ans=torch.full((3,), -100))
    assert out.losses["qa"].item() == 0.0


def test_bad_inputs_are_refused(tiny_config):
    model = LxmertModel(tiny_config)
    batch = random_batch(tiny_config)
    with pytest.raises(ValueError, match="visual_feats"):
        model(input_ids=batch["input_ids"])
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        model(**{**batch, "input_ids": torch.ones(3, 100, dtype=torch.long), "attention_mask": None})
    with pytest.raises(KeyError, match="unknown attention family 'cross'"):
        model(**batch, head_mask={"cross": torch.ones(2, 4)})
    with pytest.raises(ValueError, match=r"head_mask\['vis_self'\] has shape \(3, 4\), expected \(2, 4\)"):
        model(**batch, head_mask={"vis_self": torch.ones(3, 4)})
    with pytest.raises(ValueError, match=r"\(B, 2, R, F\)"):
        LxmertForNLVR2(tiny_config)(**batch)
