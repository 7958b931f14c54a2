"""Smoke demo: a tiny LXMERT with random weights, end to end in a few seconds, nothing downloaded.

    python -m lxmert.demo

Trains a WordPiece vocabulary on a handful of sentences, builds the ``tiny`` preset with that vocabulary,
encodes one sentence with a masked word against random regions, and prints the output shapes, every attention
family, and the model's top guesses for the masked word. The weights are random, so the guesses are noise: this
shows that the pieces fit together, not that anything was learned.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

import torch

from .config import LxmertConfig
from .config_cli import add_dataclass_arguments, command_parser, dataclass_from_args
from .modeling import LxmertForPreTraining
from .wordpiece import train_wordpiece

CORPUS = (
    "a red cube sits left of a small blue sphere",
    "the green cylinder is behind the large metal cube",
    "how many yellow spheres are on the table",
    "is there a rubber ball right of the red cylinder",
    "what color is the object in front of the cube",
    "two small spheres and one large cylinder",
)


@dataclass
class DemoConfig:
    sentence: str = field(
        default="the red [MASK] is left of the blue sphere", metadata={"help": "a sentence with one [MASK]"}
    )
    regions: int = field(
        default=36, metadata={"help": "random regions per image (36 in the authors' features)"}
    )
    top_k: int = field(default=5, metadata={"help": "guesses to show for the masked word"})
    seed: int = field(default=0, metadata={"help": "seed of weights and regions"})


def run(cfg: DemoConfig) -> None:
    torch.manual_seed(cfg.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_wordpiece(CORPUS, vocab_size=200, out_path=tmp)
    config = LxmertConfig.preset("tiny", vocab_size=tokenizer.vocab_size)
    model = LxmertForPreTraining(config).eval()
    print(
        f"RANDOM WEIGHTS: tiny preset, {sum(p.numel() for p in model.parameters()):,} parameters, untrained"
    )
    print(f"WordPiece vocabulary of {tokenizer.vocab_size} trained on {len(CORPUS)} sentences")

    batch = tokenizer(cfg.sentence)  # "[MASK]" in the text becomes the mask token, as in BERT
    input_ids = batch["input_ids"]  # (1, T)
    mask_at = int((input_ids[0] == tokenizer.mask_token_id).nonzero()[0])
    visual_feats = torch.rand(1, cfg.regions, config.visual_feat_dim)  # (B, R, F) stand-in RoI features
    corners = torch.rand(1, cfg.regions, 2, 2).sort(dim=2).values  # x1 < x2 and y1 < y2
    visual_pos = corners.transpose(2, 3).flatten(2)  # (B, R, 4) as (x1, y1, x2, y2) in [0, 1]

    with torch.no_grad():
        out = model(
            input_ids=input_ids, visual_feats=visual_feats, visual_pos=visual_pos, output_attentions=True
        )
    print(f"\ntokens: {tokenizer.convert_ids_to_tokens(input_ids[0])}")
    for name in (
        "language_output",
        "vision_output",
        "pooled_output",
        "prediction_logits",
        "cross_relationship_score",
        "question_answering_score",
        "obj_logits",
        "attr_logits",
        "feat_prediction",
    ):
        print(f"{name:<26}{tuple(getattr(out, name).shape)}")
    print("\nattention families (per layer, B x H x queries x keys):")
    for family, probs in out.attentions.items():
        print(f"  {family:<12}{len(probs)} layers of {tuple(probs[0].shape)}")

    probs = out.prediction_logits[0, mask_at].softmax(-1)
    top = probs.topk(cfg.top_k)
    guesses = ", ".join(
        f"{tok} {p:.3f}"
        for tok, p in zip(tokenizer.convert_ids_to_tokens(top.indices), top.values.tolist(), strict=True)
    )
    print(f"\ntop-{cfg.top_k} for [MASK] (random weights, so noise): {guesses}")


def main(argv: list[str] | None = None) -> None:
    parser = command_parser(
        "python -m lxmert.demo", "Tiny random LXMERT, end to end (no training, no downloads)."
    )
    add_dataclass_arguments(parser, DemoConfig, "demo")
    cfg = dataclass_from_args(DemoConfig, parser.parse_args(argv))
    if cfg.sentence.count("[MASK]") != 1:
        parser.error("--sentence must contain exactly one [MASK]")
    run(cfg)


if __name__ == "__main__":
    main()
