"""LXMERT (Tan & Bansal, EMNLP 2019): model, heads, checkpoint IO, tokenizer and detector."""

from .answers import AnswerTable, normalize_answer
from .checkpoints import LoadedCheckpoint, LoadReport, load_checkpoint, transfer_answer_head
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
from .tokenization import LxmertTokenizer
from .wordpiece import train_wordpiece

__all__ = [
    "ATTENTION_FAMILIES",
    "PRESETS",
    "AnswerTable",
    "LoadReport",
    "LoadedCheckpoint",
    "LxmertAttentions",
    "LxmertConfig",
    "LxmertForNLVR2",
    "LxmertForPreTraining",
    "LxmertForPreTrainingOutput",
    "LxmertForQuestionAnswering",
    "LxmertModel",
    "LxmertModelOutput",
    "LxmertTaskOutput",
    "LxmertTokenizer",
    "load_checkpoint",
    "normalize_answer",
    "train_wordpiece",
    "transfer_answer_head",
]
