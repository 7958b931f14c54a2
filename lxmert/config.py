"""LXMERT configuration: one dataclass whose defaults are the paper's base model, plus named presets.

Field names follow transformers' ``LxmertConfig`` so that a ``config.json`` written by
``LxmertForPreTraining.save_pretrained`` reads as ours; keys we do not model (``architectures``,
``transformers_version``, ...) are reported and dropped. Every field is checked by type and range
(:data:`FIELD_RULES`): a config file is untrusted input.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config_rules import Bool, ConfigError, Float, Int, OneOf, Rule, check_fields
from .fileio import atomic_write_text, read_json_object

# Upper bounds sit far above every published LXMERT/BERT size (vocabulary 30522, and 250002 for XLM-R; hidden 768
# to 1024; 9 + 5 + 5 layers; 9500 QA answers; 1600 objects, 400 attributes) and far below what would exhaust the
# memory of the machine that builds the model.
_LAYERS = Int(0, 128)
_LABELS = Int(1, 1 << 17)
_PROBABILITY = Float(0.0, 1.0)
FIELD_RULES: dict[str, Rule] = {
    "vocab_size": Int(1, 1 << 18),
    "hidden_size": Int(1, 1 << 13),
    "num_attention_heads": Int(1, 256),
    "intermediate_size": Int(1, 1 << 16),
    "hidden_act": OneOf(("gelu",)),  # the only activation the model implements
    "hidden_dropout_prob": _PROBABILITY,
    "attention_probs_dropout_prob": _PROBABILITY,
    "max_position_embeddings": Int(1, 1 << 16),
    "type_vocab_size": Int(1, 1 << 10),
    "initializer_range": Float(0.0, 10.0),
    "layer_norm_eps": Float(0.0, 1.0, above_low=True),
    "l_layers": _LAYERS,
    "r_layers": _LAYERS,
    "x_layers": _LAYERS,
    "visual_feat_dim": Int(1, 1 << 16),
    "visual_pos_dim": Int(1, 64),
    "num_object_labels": _LABELS,
    "num_attr_labels": _LABELS,
    "num_qa_labels": _LABELS,
    "share_cross_attention": Bool(),
    "task_mask_lm": Bool(),
    "task_matched": Bool(),
    "task_obj_predict": Bool(),
    "task_qa": Bool(),
    "visual_obj_loss": Bool(),
    "visual_attr_loss": Bool(),
    "visual_feat_loss": Bool(),
    "visual_loss_normalizer": Float(0.0, 1000.0, above_low=True),
}

# Query→key direction of each attention family, in the order the encoder computes them.
ATTENTION_FAMILIES = ("lang_self", "vis_self", "cross_l2v", "cross_v2l", "x_lang_self", "x_vis_self")


@dataclass
class LxmertConfig:
    # Language side: BERT-base uncased (paper §4.1).
    vocab_size: int = 30522
    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    # Encoder depths N_L, N_R, N_X (paper §2.2; the authors' class defaults 12/5/0 are overridden by their flags).
    l_layers: int = 9
    r_layers: int = 5
    x_layers: int = 5
    # Vision side: 36 Faster R-CNN regions, 2048-d RoI feature + (x1, y1, x2, y2) normalised to [0, 1].
    visual_feat_dim: int = 2048
    visual_pos_dim: int = 4
    # Output vocabularies: Visual Genome objects/attributes and the 9500-answer pre-training QA table.
    num_object_labels: int = 1600
    num_attr_labels: int = 400
    num_qa_labels: int = 9500
    # The authors apply one cross-attention module in both directions (their issue 69: ~0.5% better);
    # False gives each direction its own weights (``visual_attention`` is then language→vision only).
    share_cross_attention: bool = True
    # Pre-training heads that exist (and losses that are computed); all five tasks of the paper.
    task_mask_lm: bool = True
    task_matched: bool = True
    task_obj_predict: bool = True
    task_qa: bool = True
    visual_obj_loss: bool = True
    visual_attr_loss: bool = True
    visual_feat_loss: bool = True
    # 1 / 0.15: the visual losses are averaged over all regions although only 15% are masked.
    visual_loss_normalizer: float = 6.67

    def __post_init__(self) -> None:
        """Raises ConfigError naming the first field of the wrong type or out of range."""
        check_fields(self, FIELD_RULES)
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def family_layers(self) -> dict[str, int]:
        """Number of layers of each attention family (:data:`ATTENTION_FAMILIES`)."""
        return {"lang_self": self.l_layers, "vis_self": self.r_layers} | {
            family: self.x_layers for family in ATTENTION_FAMILIES[2:]
        }

    @property
    def visual_losses(self) -> tuple[str, ...]:
        """Masked-object heads that are on, in the authors' order."""
        flags = {"obj": self.visual_obj_loss, "attr": self.visual_attr_loss, "feat": self.visual_feat_loss}
        return tuple(name for name, on in flags.items() if on)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LxmertConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        # transformers writes bookkeeping keys we have no use for; anything else deserves a warning.
        bookkeeping = {
            "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "num_hidden_layers",
            "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings", "output_attentions",
            "output_hidden_states", "return_dict", "_name_or_path", "id2label", "label2id",
        }  # fmt: skip
        surprising = [k for k in unknown if k not in bookkeeping]
        if surprising:
            warnings.warn(f"LxmertConfig ignores unknown keys: {surprising}", stacklevel=2)
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_json_file(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json_file(cls, path: str | Path) -> LxmertConfig:
        """Read a ``config.json``.

        Raises:
            ValueError: naming the file, when it is not a UTF-8 JSON object; ConfigError (a ValueError) naming
                the file and the field, when a field has the wrong type or is out of range.
        """
        values = read_json_object(path)
        try:
            return cls.from_dict(values)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> LxmertConfig:
        """A registered preset (``base``, ``tiny``) with optional field overrides."""
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    "base": {},
    # Small enough to pre-train on a 2-core CPU in minutes; keeps every structural feature of the base model.
    "tiny": dict(
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        l_layers=2,
        r_layers=2,
        x_layers=2,
        visual_feat_dim=64,
    ),
}

__all__ = ["FIELD_RULES", "LxmertConfig", "PRESETS"]
