"""The smallest cross-modality matching problem, to measure how long a model takes to start learning it.

    python -m training.matching_toy --model lxmert --l-layers 2 --r-layers 2 --x-layers 2 --initializer-range 0.02
    python -m training.matching_toy --model mlp
    python -m training.matching_toy --l-layers 1 --r-layers 0 --x-layers 1 --initializer-range 0.2 --dropout 0 \
        --filler-words 8 --shapes 50 --regions 36

A sentence is ``[CLS] shape [SEP]`` (with ``--filler-words N``, the shape word among N words that say nothing about
the image, as in a caption); an image is ``regions`` one-hot shape features at random boxes; the pair
matches when the shape is among the regions. Half the pairs match and the word is drawn so that neither the word
alone nor the image alone says anything about the label: like image-text matching with negatives from other images,
it is a pure interaction, with no first-order signal for gradient descent to start from. An MLP on (word one-hot,
shape histogram) solves it in a few hundred steps; the run shows whether, and when, LXMERT's pooled [CLS] does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lxmert.config import LxmertConfig
from lxmert.config_cli import parse_config
from lxmert.modeling import LxmertForPreTraining


@dataclass
class MatchingToyConfig:
    model: str = field(default="lxmert", metadata={"help": "model", "choices": ["lxmert", "mlp"]})
    shapes: int = field(default=10, metadata={"help": "number of shape words"})
    regions: int = field(default=6, metadata={"help": "regions per image"})
    filler_words: int = field(
        default=0, metadata={"help": "words around the shape word, drawn from their own vocabulary (0: none)"}
    )
    filler_vocab: int = field(default=20, metadata={"help": "size of the filler words' vocabulary"})
    hidden_size: int = field(default=64, metadata={"help": "hidden size (the tiny preset's)"})
    l_layers: int = field(default=2, metadata={"help": "language layers"})
    r_layers: int = field(default=2, metadata={"help": "object-relationship layers"})
    x_layers: int = field(default=2, metadata={"help": "cross-modality layers"})
    initializer_range: float = field(default=0.02, metadata={"help": "std of the normal weight init"})
    dropout: float = field(default=0.1, metadata={"help": "hidden and attention dropout"})
    steps: int = field(default=1000, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=64, metadata={"help": "pairs per step"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate (constant)"})
    log_every: int = field(default=100, metadata={"help": "steps between accuracy lines"})
    seed: int = field(default=0, metadata={"help": "seed of weights and pairs"})

    def __post_init__(self) -> None:
        if self.filler_words < 0 or self.filler_vocab < 1:
            raise ValueError(
                f"--filler-words must be >= 0 and --filler-vocab >= 1 (got {self.filler_words}, {self.filler_vocab})"
            )


def toy_pairs(
    batch_size: int,
    shapes: int,
    regions: int,
    generator: torch.Generator,
    filler_words: int = 0,
    filler_vocab: int = 20,
) -> dict[str, Tensor]:
    """``batch_size`` pairs: ``word`` (B,), its sentence ``input_ids`` (B, T) (:func:`toy_sentences`),
    ``region_shapes`` (B, R) and ``matched`` (B,), half of them 1.

    The word is drawn uniformly among the shapes that are present (matched) or absent (unmatched) from its image,
    so P(matched | word) = 1/2 for every word.
    """
    region_shapes = torch.randint(shapes, (batch_size, regions), generator=generator)
    present = torch.zeros(batch_size, shapes, dtype=torch.bool).scatter_(1, region_shapes, True)
    matched = torch.rand(batch_size, generator=generator) < 0.5
    # An image holding every shape (or none) cannot give an unmatched (matched) word: flip its label instead.
    matched = torch.where(present.all(1), True, torch.where(~present.any(1), False, matched))
    candidates = (present == matched[:, None]).float()
    word = torch.multinomial(candidates, 1, generator=generator).squeeze(1)
    input_ids = toy_sentences(word, shapes, filler_words, filler_vocab, generator)
    return {"word": word, "input_ids": input_ids, "region_shapes": region_shapes, "matched": matched.long()}


def toy_sentences(
    word: Tensor, shapes: int, filler_words: int, filler_vocab: int, generator: torch.Generator
) -> Tensor:
    """``(B, filler_words + 3)`` token ids: ``[CLS]``, the shape word among ``filler_words`` random fillers (at a
    random position per row), ``[SEP]``. Ids: shapes ``0..shapes-1``, ``[CLS]`` = ``shapes``, ``[SEP]`` =
    ``shapes + 1``, fillers from ``shapes + 2``.

    A caption names a few objects among many words that say nothing about the image; the fillers are those words.
    """
    batch = len(word)
    cls, sep = torch.full((batch, 1), shapes), torch.full((batch, 1), shapes + 1)
    if filler_words == 0:  # draws nothing, so the pairs of a run without fillers stay as they were
        return torch.cat([cls, word[:, None], sep], 1)
    fillers = torch.randint(filler_vocab, (batch, filler_words), generator=generator) + shapes + 2
    position = torch.randint(filler_words + 1, (batch, 1), generator=generator)
    slots = torch.arange(filler_words + 1).expand(batch, -1)
    # Row i: fillers before ``position[i]``, the word there, the remaining fillers after it.
    body = torch.cat([fillers, fillers[:, :1]], 1)
    body = torch.where(slots < position, body, body.roll(1, dims=1))
    body = torch.where(slots == position, word[:, None], body)
    return torch.cat([cls, body, sep], 1)


class ToyMLP(nn.Module):
    """The reference: an MLP that sees the word and the image's shape histogram side by side."""

    def __init__(self, shapes: int, hidden: int):
        super().__init__()
        self.shapes = shapes
        self.net = nn.Sequential(nn.Linear(2 * shapes, hidden), nn.GELU(), nn.Linear(hidden, 2))

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        word, region_shapes = batch["word"], batch["region_shapes"]
        histogram = F.one_hot(region_shapes, self.shapes).amax(1).float()
        return self.net(torch.cat([F.one_hot(word, self.shapes).float(), histogram], -1))


class ToyLxmert(nn.Module):
    """LXMERT's matching head on ``[CLS] word [SEP]`` and one-hot region features at random boxes."""

    def __init__(self, config: MatchingToyConfig):
        super().__init__()
        self.shapes = config.shapes
        self.lxmert = LxmertForPreTraining(
            LxmertConfig.preset(
                "tiny",
                hidden_size=config.hidden_size,
                intermediate_size=2 * config.hidden_size,
                # the shapes, [CLS], [SEP], the fillers (none without them, so such runs stay as they were)
                vocab_size=config.shapes + 2 + (config.filler_vocab if config.filler_words else 0),
                visual_feat_dim=config.shapes,
                l_layers=config.l_layers,
                r_layers=config.r_layers,
                x_layers=config.x_layers,
                initializer_range=config.initializer_range,
                hidden_dropout_prob=config.dropout,
                attention_probs_dropout_prob=config.dropout,
                task_mask_lm=False,
                task_obj_predict=False,
                task_qa=False,
            )
        )

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        region_shapes = batch["region_shapes"]
        out = self.lxmert(
            input_ids=batch["input_ids"],
            visual_feats=F.one_hot(region_shapes, self.shapes).float(),
            visual_pos=torch.rand(*region_shapes.shape, 4),
        )
        return out.cross_relationship_score


def train_matching_toy(config: MatchingToyConfig) -> dict[str, float | list[float]]:
    """Train on fresh pairs every step; the accuracy of each logging interval and on 2048 held-out pairs."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = ToyMLP(config.shapes, config.hidden_size) if config.model == "mlp" else ToyLxmert(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    sizes, fillers = (config.shapes, config.regions), (config.filler_words, config.filler_vocab)
    curve, hits = [], []
    for step in range(1, config.steps + 1):
        batch = toy_pairs(config.batch_size, *sizes, generator, *fillers)
        model.train()
        logits = model(batch)
        loss = F.cross_entropy(logits, batch["matched"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        hits.append((logits.argmax(-1) == batch["matched"]).float().mean().item())
        if step % config.log_every == 0:
            curve.append(sum(hits) / len(hits))
            hits = []
            print(f"step {step}: train accuracy {curve[-1]:.3f} (loss {loss.item():.3f})", flush=True)
    held_out = toy_pairs(2048, *sizes, torch.Generator().manual_seed(config.seed + 1), *fillers)
    model.eval()
    with torch.no_grad():
        predicted = model(held_out).argmax(-1)
    accuracy = (predicted == held_out["matched"]).float().mean().item()
    share = held_out["matched"].float().mean().item()
    return {"accuracy": accuracy, "chance": max(share, 1 - share), "curve": curve}


def main(argv: list[str] | None = None) -> dict[str, float | list[float]]:
    config = parse_config(MatchingToyConfig, argv, prog="python -m training.matching_toy", doc=__doc__)
    result = train_matching_toy(config)
    print(json.dumps({"config": asdict(config), **result}))
    return result
