"""A tiny seeded LXMERT, vocabulary and example shared by the analysis tests."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from analysis.inputs import Example, example_from_regions
from lxmert import LxmertConfig, LxmertForPreTraining, LxmertForQuestionAnswering
from lxmert.detection.regions import Regions
from lxmert.tokenization import SPECIAL_TOKENS, LxmertTokenizer

WORDS = "what colour is the ball cube red blue left of big small a there".split()
NUM_ANSWERS, NUM_OBJECTS, NUM_ATTRS, NUM_REGIONS, FEAT_DIM = 5, 6, 4, 5, 16


def toy_config(**overrides) -> LxmertConfig:
    fields = dict(
        vocab_size=len(SPECIAL_TOKENS) + len(WORDS),
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=24,
        l_layers=2,
        r_layers=1,
        x_layers=2,
        visual_feat_dim=FEAT_DIM,
        num_object_labels=NUM_OBJECTS,
        num_attr_labels=NUM_ATTRS,
        num_qa_labels=NUM_ANSWERS,
    )
    return LxmertConfig(**{**fields, **overrides})


def toy_tokenizer(directory: Path) -> LxmertTokenizer:
    path = Path(directory) / "vocab.txt"
    path.write_text("".join(t + "\n" for t in (*SPECIAL_TOKENS, *WORDS)))
    return LxmertTokenizer(path)


def _like_trained(model: nn.Module) -> nn.Module:
    """Wider weights and non-zero biases, as a trained model has: BERT's init (std 0.02, zero biases) makes every
    map near-uniform, and a zero bias makes LayerNorm(visn_fc(0)) singular at the zero baseline."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" not in name and "layer_norm" not in name:
                param.normal_(0.0, 0.3 if name.endswith("bias") else 0.25)
    return model.eval()


def toy_pretraining_model(seed: int = 0, **overrides) -> LxmertForPreTraining:
    torch.manual_seed(seed)
    return _like_trained(LxmertForPreTraining(toy_config(**overrides)))


def toy_qa_model(seed: int = 0, **overrides) -> LxmertForQuestionAnswering:
    torch.manual_seed(seed)
    return _like_trained(LxmertForQuestionAnswering(toy_config(**overrides)))


def toy_regions(seed: int = 0, num_regions: int = NUM_REGIONS) -> Regions:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num_regions, 2, generator=g) * 60
    wh = 10 + torch.rand(num_regions, 2, generator=g) * 30
    return Regions(
        boxes=torch.cat([xy, xy + wh], dim=1),
        features=torch.randn(num_regions, FEAT_DIM, generator=g).relu(),
        object_ids=torch.randint(NUM_OBJECTS, (num_regions,), generator=g),
        object_conf=torch.rand(num_regions, generator=g),
        attr_probs=torch.rand(num_regions, NUM_ATTRS, generator=g).softmax(-1),
        image_height=100,
        image_width=100,
        num_real=num_regions,
    )


def toy_example(
    tokenizer: LxmertTokenizer, question: str = "what colour is the big ball", seed: int = 0
) -> Example:
    return example_from_regions(tokenizer, question, toy_regions(seed))
