"""Inputs and transformers counterparts shared by the model and checkpoint tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lxmert.config import LxmertConfig


def random_batch(
    config: LxmertConfig, B: int = 3, T: int = 7, R: int = 5, pairs: bool = False
) -> dict[str, Tensor]:
    """Random tokens and regions with some padding on both sides; ``pairs`` gives NLVR2's (B, 2, R, ·)."""
    lead = (B, 2) if pairs else (B,)
    attention_mask = torch.ones(B, T, dtype=torch.long)
    attention_mask[0, T - 2 :] = 0
    visual_attention_mask = torch.ones(*lead, R)
    if pairs:
        visual_attention_mask[1, 0, R - 2 :] = 0  # the first image of the second statement
    else:
        visual_attention_mask[1, R - 2 :] = 0
    return {
        "input_ids": torch.randint(1, config.vocab_size, (B, T)),
        "visual_feats": torch.randn(*lead, R, config.visual_feat_dim),
        "visual_pos": torch.rand(*lead, R, 4),
        "attention_mask": attention_mask,
        "visual_attention_mask": visual_attention_mask,
        "token_type_ids": torch.zeros(B, T, dtype=torch.long),
    }


def perturb_(model: nn.Module, scale: float = 0.05) -> nn.Module:
    """Add noise to every parameter, so zero biases and unit LayerNorms cannot hide a swapped tensor."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model


def transformers_config(config: LxmertConfig):
    """transformers' LxmertConfig with the same fields as ours."""
    import transformers

    fields = config.to_dict()
    fields.pop("share_cross_attention")  # transformers always shares
    return transformers.LxmertConfig(**fields)


def max_diff(a: Tensor, b: Tensor) -> float:
    return (a - b).abs().max().item()


def authors_task_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A QA model's state (ours or transformers', same keys) as the authors' ``BEST.pth`` of VQA/GQA holds it: the
    encoder under ``lxrt_encoder.model.bert.``, the head ``logit_fc``."""
    return {
        k.replace("lxmert.", "lxrt_encoder.model.bert.", 1).replace(
            "answer_head.logit_fc.", "logit_fc.", 1
        ): v
        for k, v in state.items()
    }
