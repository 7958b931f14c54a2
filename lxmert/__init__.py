"""LXMERT (Tan & Bansal, EMNLP 2019): model, heads, checkpoint IO, tokenizer and detector."""

from .config import PRESETS, LxmertConfig
from .modeling import (
    ATTENTION_FAMILIES,
    LxmertAttentions,
    LxmertForNLVR2,
    LxmertForPreTraining,
    LxmertForPreTrainingOutput,
    LxmertForQuestionAnswering,
    LxmertModel,
    LxmertModelOutput,
    LxmertTaskOutput,
)

__all__ = [
    "ATTENTION_FAMILIES",
    "PRESETS",
    "LxmertAttentions",
    "LxmertConfig",
    "LxmertForNLVR2",
    "LxmertForPreTraining",
    "LxmertForPreTrainingOutput",
    "LxmertForQuestionAnswering",
    "LxmertModel",
    "LxmertModelOutput",
    "LxmertTaskOutput",
]
