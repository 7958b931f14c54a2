"""Start LXMERT's language encoder from BERT-style weights (paper §4.1: "initialised from BERT-base").

Any state dict whose ``embeddings.*`` and ``encoder.layer.<i>.*`` keys (optionally under ``bert.`` or ``module.``)
follow BERT's names fills the word/position/type embeddings and the first ``l_layers`` language layers; our names
are BERT's (``lxmert/modeling.py``), so this is a renaming. BERT layers beyond ``l_layers`` and every other key
(pooler, MLM and NSP heads) are left out: the authors' pre-training starts those from scratch too, except for the
names their ``from_pretrained`` happened to match, which we do not rely on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from lxmert.checkpoints import read_state_dict

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
LANGUAGE_PREFIXES = ("embeddings.", "encoder.layer.")


@dataclass
class BertInitReport:
    loaded: list[str] = field(default_factory=list)  # our keys filled from the file
    ignored: list[str] = field(default_factory=list)  # file keys with no place in the language encoder

    def __str__(self) -> str:
        return f"language encoder: {len(self.loaded)} tensors from BERT-style weights, {len(self.ignored)} ignored"


def language_key(key: str) -> str | None:
    """Our key for one BERT key, or None when it has no place in the language encoder.

    Old TensorFlow-converted checkpoints name LayerNorm parameters ``gamma``/``beta``; they become
    ``weight``/``bias``.
    """
    key = key.removeprefix("module.").removeprefix("bert.")
    key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
    return "lxmert." + key if key.startswith(LANGUAGE_PREFIXES) else None


def bert_language_state(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """BERT keys → our ``lxmert.embeddings.*`` / ``lxmert.encoder.layer.*`` keys; other keys are dropped."""
    return {language_key(k): v for k, v in state_dict.items() if language_key(k) is not None}


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a file, or from a directory holding ``model.safetensors`` / ``pytorch_model.bin``."""
    path = Path(path)
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return read_state_dict(path / name)
        raise FileNotFoundError(f"{path} holds none of {WEIGHT_FILES}")
    return read_state_dict(path)


def init_language_from_bert(model: nn.Module, path: str | Path) -> BertInitReport:
    """Copy BERT-style weights at ``path`` into ``model``'s language encoder, in place.

    Args:
        model: an LXMERT model with an ``lxmert`` submodule (``LxmertForPreTraining`` and the task models).
        path: a weights file or a directory holding one.

    Raises:
        ValueError: when no language-encoder tensor is found, or one has a shape the model does not (naming it).
    """
    source = read_weights(path)
    renamed = bert_language_state(source)
    own = model.state_dict()
    usable = {k: v for k, v in renamed.items() if k in own}
    if not usable:
        raise ValueError(
            f"{path} holds no BERT-style embeddings.* / encoder.layer.* tensors; first keys {list(source)[:5]}"
        )
    for key, value in usable.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(
                f"{path}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict(usable, strict=False)
    return BertInitReport(
        loaded=sorted(usable), ignored=sorted(k for k in source if language_key(k) not in usable)
    )


__all__ = ["BertInitReport", "bert_language_state", "init_language_from_bert", "language_key", "read_weights"]
