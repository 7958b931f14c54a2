"""Checkpoint IO: our directory format, transformers' LXMERT directories and the authors' ``.pth`` files.

Every foreign layout has one pure ``state_dict → state_dict`` converter, chosen by the keys it holds (as timm's
``checkpoint_filter_fn``), into one *canonical* layout — the keys of our ``LxmertForPreTraining``, which are also
transformers' — plus a top-level ``logit_fc.*`` for the NLVR2 head:

======================================  ==========================================================================
layout (how it is recognised)           conversion
======================================  ==========================================================================
ours / transformers (``lxmert.*``)      none
a bare encoder (``embeddings.*`` …)     prefix ``lxmert.``
authors' pre-training (``bert.*``)      strip ``module.`` (``--multiGPU``), ``bert.`` → ``lxmert.``
authors' task (``lxrt_encoder.*``)      ``lxrt_encoder.model.[module.]bert.`` → ``lxmert.``; ``logit_fc.`` →
                                        ``answer_head.logit_fc.`` when it reads one pooled vector (VQA, GQA), kept
                                        when it reads the 2×hidden NLVR2 pair
======================================  ==========================================================================

A canonical state dict is then cut to the target model (``LxmertModel`` drops the ``lxmert.`` prefix; keys the
model lacks are *unexpected*, parameters the file lacks are *missing*), checked for shapes, and copied in place, so
the masked-LM decoder stays tied to the word embeddings. Pickled files are read with ``weights_only=True`` only:
nothing in a checkpoint is executed.

A checkpoint is untrusted input. Its config is checked field by field (``LxmertConfig``), its tensors must be
finite and fit the model (checked on a skeleton on the ``meta`` device, before any memory is allocated for the
model the config describes), its answer table must hold one string per row of the QA head, its ``meta.json`` must
be a JSON object. Whatever is wrong raises :class:`CheckpointError` (a ValueError) naming the file and the field
or tensor.

Our directory format::

    config.json        LxmertConfig.to_json_file
    model.safetensors  the state dict, the tied decoder weight stored once (as the word embeddings)
    vocab.txt          optional: the tokenizer's WordPiece vocabulary
    answers.json       optional: the QA head's answers in label order (the authors' label2ans layout)
    meta.json          optional: a JSON object, free-form (training recipe, scores, ...)

A transformers directory is read the same way (``pytorch_model.bin`` in place of ``model.safetensors``), with the
authors' ``trainval_label2ans.json`` as its answer table when it has no ``answers.json``. A checkpoint without its
own vocabulary or answer table (the authors' ``.pth`` files) is given them as files: ``load_checkpoint(path,
vocab=..., answers=...)``. :func:`outline_checkpoint` reads what a checkpoint needs (region feature size, vocabulary,
answers) from tensor shapes alone, without reading its weights.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .answers import AnswerTable, normalize_answer
from .config import LxmertConfig
from .errors import UnreadableFileError
from .fileio import atomic_directory, atomic_write_text, read_json_object, read_json_record
from .hub_cache import resolve_checkpoint_path
from .modeling import (
    LxmertForNLVR2,
    LxmertForPreTraining,
    LxmertForQuestionAnswering,
    LxmertModel,
    LxmertPreTrainedModel,
)
from .tokenization import VOCAB_FILE, LxmertTokenizer

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TORCH_WEIGHTS_FILE = "pytorch_model.bin"  # transformers' pickled layout
ANSWERS_FILE = "answers.json"
AUTHORS_ANSWERS_FILE = "trainval_label2ans.json"  # the authors' answer table, beside a downloaded task model
META_FILE = "meta.json"
PRETRAIN_CONFIG_FILE = "pretrain_config.json"  # what pre-training saves beside the model: its recipe
METRICS_FILE = "metrics.jsonl"  # a training run's log, beside its best/ and final/ (the app draws its curves)
SCORES_KEY = "scores"  # meta.json's measured scores: split → metric → value (see meta_scores)

TIED_DECODER = "cls.predictions.decoder.weight"
WORD_EMBEDDINGS = "lxmert.embeddings.word_embeddings.weight"
ANSWER_ROWS = "answer_head.logit_fc.3."  # the answer classifier: one row per answer
VISUAL_FEATURES = "lxmert.encoder.visn_fc.visn_fc.weight"  # hidden × region feature size
StateDict = dict[str, Tensor]


class CheckpointError(UnreadableFileError):
    """A checkpoint that cannot be loaded as it is: a file unreadable, malformed, or inconsistent with the others.

    The message names the file, and the field or tensor at fault. An :class:`UnreadableFileError` (so a ValueError),
    so that a command line or a page that reports bad input in one clause reports this too.
    """


class MissingCheckpointFileError(CheckpointError, FileNotFoundError):
    """A file the checkpoint needs is absent (also a FileNotFoundError)."""


@contextmanager
def _checkpoint_errors(path: Path) -> Iterator[None]:
    """Re-raise a reader's ValueError or OSError as a CheckpointError that names ``path`` (unless the message
    names it already)."""
    try:
        yield
    except CheckpointError:
        raise
    except UnreadableFileError as err:
        raise CheckpointError(err.path, err.reason) from err
    except (OSError, ValueError) as err:
        raise CheckpointError(path, str(err)) from err


# ----------------------------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AnswerTransfer:
    """Outcome of copying QA-head rows by answer string."""

    matched: int
    unmatched: list[str]  # target answers with no row in the source table; their rows are zero

    def __str__(self) -> str:
        total = self.matched + len(self.unmatched)
        return (
            f"{self.matched} of {total} answers found in the source answer head, {len(self.unmatched)} zeroed"
        )


@dataclass
class LoadReport:
    """What a load did: the layout it recognised and the keys it could not place."""

    source: str
    layout: str  # "lxmert", "bare-encoder", "transformers", "authors-pretraining" or "authors-task"
    missing_keys: list[str] = field(default_factory=list)  # the model's, left at their initial values
    unexpected_keys: list[str] = field(default_factory=list)  # the file's, not used
    answer_transfer: AnswerTransfer | None = None

    def __str__(self) -> str:
        lines = [f"loaded {self.source} ({self.layout} layout)"]
        if self.missing_keys:
            lines.append(f"  missing (left at init): {_summarise(self.missing_keys)}")
        if self.unexpected_keys:
            lines.append(f"  unexpected (ignored): {_summarise(self.unexpected_keys)}")
        if self.answer_transfer:
            lines.append(f"  answer head: {self.answer_transfer}")
        return "\n".join(lines)


def _summarise(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} keys: {shown}" + (", ..." if len(keys) > limit else "")


# ----------------------------------------------------------------------------------------------------------------
# Layout converters: foreign state dict → canonical state dict (pure functions)
# ----------------------------------------------------------------------------------------------------------------


def _renamed(state_dict: Mapping[str, Tensor], rename) -> StateDict:
    out: StateDict = {}
    for key, value in state_dict.items():
        new = rename(key)
        if new in out:
            raise ValueError(f"two checkpoint keys map to {new!r} (one of them {key!r})")
        out[new] = value
    return out


def _strip_module(key: str) -> str:
    # nn.DataParallel inserts "module." at the wrapped module, at the front or (task models) mid-key.
    return key.removeprefix("module.").replace(".module.", ".")


def convert_authors_pretraining(state_dict: Mapping[str, Tensor]) -> StateDict:
    """The authors' ``*_LXRT.pth`` (``[module.]bert.*`` + head keys) → canonical keys."""

    def rename(key: str) -> str:
        key = _strip_module(key)
        return "lxmert." + key.removeprefix("bert.") if key.startswith("bert.") else key

    return _renamed(state_dict, rename)


def convert_authors_task(state_dict: Mapping[str, Tensor]) -> StateDict:
    """The authors' fine-tuned ``BEST.pth`` (``lxrt_encoder.model.bert.*`` + ``logit_fc.*``) → canonical keys.

    The head's place is decided by what it reads: a VQA/GQA head takes one pooled vector (hidden wide) and
    becomes ``answer_head.logit_fc``; the NLVR2 head takes the concatenated pair (2×hidden) and stays
    ``logit_fc``, where our ``LxmertForNLVR2`` keeps it.
    """
    state_dict = {_strip_module(k): v for k, v in state_dict.items()}
    pooler = "lxrt_encoder.model.bert.pooler.dense.weight"
    if pooler not in state_dict:
        raise ValueError(f"an authors' task checkpoint must hold {pooler!r}")
    hidden = state_dict[pooler].shape[0]
    head_in = state_dict["logit_fc.0.weight"].shape[1] if "logit_fc.0.weight" in state_dict else hidden

    def rename(key: str) -> str:
        if key.startswith("lxrt_encoder.model.bert."):
            return "lxmert." + key.removeprefix("lxrt_encoder.model.bert.")
        if key.startswith("logit_fc.") and head_in == hidden:
            return "answer_head." + key
        return key

    return _renamed(state_dict, rename)


def convert_bare_encoder(state_dict: Mapping[str, Tensor]) -> StateDict:
    """An ``LxmertModel`` state dict (ours or transformers', ``embeddings.*``/``encoder.*``/``pooler.*``)."""
    return {"lxmert." + k: v for k, v in state_dict.items()}


# Checked in order; the first whose test holds converts. Ours/transformers' full-model keys need no converter.
CONVERTERS = (
    ("authors-task", lambda keys: any(k.startswith(("lxrt_encoder.", "module.lxrt_encoder.")) for k in keys),
     convert_authors_task),
    ("authors-pretraining", lambda keys: any(k.startswith(("bert.", "module.bert.")) for k in keys),
     convert_authors_pretraining),
    ("bare-encoder", lambda keys: any(k.startswith("embeddings.") for k in keys), convert_bare_encoder),
)  # fmt: skip


def to_canonical(state_dict: Mapping[str, Tensor]) -> tuple[StateDict, str]:
    """Recognise a state dict's layout by its keys and convert it to canonical keys.

    Returns:
        The converted state dict and the layout's name (``"lxmert"`` when no conversion was needed).
    """
    keys = list(state_dict)
    for name, recognises, convert in CONVERTERS:
        if recognises(keys):
            return convert(state_dict), name
    if any(k.startswith("lxmert.") for k in keys):
        return dict(state_dict), "lxmert"
    raise ValueError(f"unrecognised checkpoint layout; its first keys are {keys[:5]}")


def for_model(canonical: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """Cut a canonical state dict to ``model``'s key space (``LxmertModel`` has no ``lxmert.`` prefix)."""
    if isinstance(model, LxmertModel):
        return {k.removeprefix("lxmert."): v for k, v in canonical.items()}
    return dict(canonical)


# ----------------------------------------------------------------------------------------------------------------
# QA-head transfer by answer string
# ----------------------------------------------------------------------------------------------------------------


def transfer_answer_head(
    state_dict: Mapping[str, Tensor],
    source_answers: Sequence[str] | AnswerTable,
    target_answers: Sequence[str] | AnswerTable,
) -> tuple[StateDict, AnswerTransfer]:
    """Re-index the answer classifier from one answer table to another by answer string.

    Row ``i`` of the new ``answer_head.logit_fc.3.{weight,bias}`` is the source row of the answer that
    normalises (:func:`~lxmert.answers.normalize_answer`) to the same string as target answer ``i``. As in the
    authors' ``load_lxmert_qa`` (``--loadLXMERTQA``), a target answer the source never saw gets a zero row: its
    logit starts at exactly 0 rather than at a random value. The rest of the state dict is passed through.

    Args:
        state_dict: canonical keys, with the source answer head (one row per source answer).
        source_answers: the answers of the source head in row order (e.g. the 9500-answer ``all_ans.json``).
        target_answers: the task's answers in label order.

    Returns:
        A new state dict with the re-indexed rows, and how many answers matched.

    Raises:
        ValueError: the state dict has no answer head, or its rows do not match ``source_answers``.
    """
    source = list(source_answers.label2ans if isinstance(source_answers, AnswerTable) else source_answers)
    target = list(target_answers.label2ans if isinstance(target_answers, AnswerTable) else target_answers)
    weight, bias = state_dict.get(ANSWER_ROWS + "weight"), state_dict.get(ANSWER_ROWS + "bias")
    if weight is None or bias is None:
        raise ValueError(f"the checkpoint has no answer head ({ANSWER_ROWS}weight/bias) to transfer")
    if weight.shape[0] != len(source):
        raise ValueError(
            f"{ANSWER_ROWS}weight has {weight.shape[0]} rows but the source answer table has {len(source)} answers"
        )
    source_row: dict[str, int] = {}
    for row, ans in enumerate(source):
        source_row.setdefault(normalize_answer(ans), row)  # first spelling wins, as a dict lookup would
    new_weight = weight.new_zeros(len(target), weight.shape[1])
    new_bias = bias.new_zeros(len(target))
    unmatched = []
    for label, ans in enumerate(target):
        row = source_row.get(normalize_answer(ans))
        if row is None:
            unmatched.append(ans)
            continue
        new_weight[label] = weight[row]
        new_bias[label] = bias[row]
    out = dict(state_dict)
    out[ANSWER_ROWS + "weight"], out[ANSWER_ROWS + "bias"] = new_weight, new_bias
    return out, AnswerTransfer(matched=len(target) - len(unmatched), unmatched=unmatched)


# ----------------------------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------------------------


_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\s*\n|$)", re.DOTALL)


def _torch_load_failure(path: Path, err: Exception) -> UnreadableFileError:
    """Why ``torch.load(path, weights_only=True)`` failed, in one line: a refusal or a corrupt file."""
    message = str(err)
    refused = _REFUSED_GLOBAL.search(message)
    if refused:
        return UnreadableFileError(
            path,
            f"refused: its pickle asks for {refused.group(1)}, and only tensors, numbers, strings and plain "
            "containers are loaded (weights_only=True): no code runs from a file",
        )
    detail = _UNPICKLER_REASON.search(message)
    reason = " ".join((detail.group(1) if detail else message).split())
    return UnreadableFileError(path, f"not a readable PyTorch file (truncated or corrupt?): {reason[:300]}")


def read_torch_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Read a ``torch.save`` file with ``weights_only=True``: tensors, numbers, strings and plain containers.

    Raises:
        UnreadableFileError: naming the file, when its pickle would need any other object (a class or function
            it names: code that would run) or the file is truncated or corrupt.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (
        Exception
    ) as err:  # a bad file raises many types: EOFError, OSError, RuntimeError, UnpicklingError...
        raise _torch_load_failure(path, err) from err


def read_state_dict(path: str | Path) -> StateDict:
    """Read a ``.safetensors`` file, or a pickled ``.pth``/``.bin`` one with ``weights_only=True``.

    Raises:
        UnreadableFileError: naming the file, when it is truncated, corrupt, holds something other than a flat
            dict of tensors, or would need code execution to unpickle.
        MissingCheckpointFileError: when there is no file at ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpointFileError(path, "no checkpoint file there")
    if path.suffix == ".safetensors":
        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError) as err:
            raise UnreadableFileError(
                path, f"not a readable safetensors file (truncated or corrupt?): {err}"
            ) from err
    loaded = read_torch_file(path)
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise UnreadableFileError(path, f"holds a {type(loaded).__name__}, not a flat state dict of tensors")
    return dict(loaded)


def _find_weights(directory: Path) -> Path:
    for name in (WEIGHTS_FILE, TORCH_WEIGHTS_FILE):
        if (directory / name).is_file():
            return directory / name
    found = sorted(p.name for p in directory.iterdir())
    raise MissingCheckpointFileError(
        directory, f"holds neither {WEIGHTS_FILE} nor {TORCH_WEIGHTS_FILE}; found {found}"
    )


def _check_finite(state: Mapping[str, Tensor], path: Path) -> None:
    """Refuse a file with NaN or infinite weights: they would silently turn every output into NaN."""
    for key, tensor in state.items():
        if not tensor.is_floating_point() or not tensor.numel():
            continue
        # One pass without a mask (0.09 s for the base model's weights, not 1.4 s): NaN propagates through
        # min and max, and an infinity is one of them.
        low, high = torch.aminmax(tensor)
        if not (math.isfinite(low) and math.isfinite(high)):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                path, f"tensor {key!r} holds {bad} NaN or infinite values (of {tensor.numel()})"
            )


def _check_answer_count(answers: AnswerTable, canonical: Mapping[str, Tensor], path: Path) -> None:
    rows = canonical.get(ANSWER_ROWS + "weight")
    if rows is not None and rows.dim() >= 1 and rows.shape[0] != len(answers):
        raise CheckpointError(
            path,
            f"holds {len(answers)} answers but the QA head ({ANSWER_ROWS}weight) has {rows.shape[0]} rows",
        )


@dataclass
class _Source:
    """What a checkpoint path holds before a model exists."""

    path: Path
    canonical: StateDict
    layout: str
    config: LxmertConfig | None  # from config.json, if any
    answers: AnswerTable | None  # from answers.json, if any


def _answers_beside(directory: Path) -> Path | None:
    """The answer table a checkpoint directory holds: ours, else the authors' (None when it holds neither)."""
    # exists(), not is_file(): a directory in a file's place is an error, not an absent file.
    return next(
        (directory / n for n in (ANSWERS_FILE, AUTHORS_ANSWERS_FILE) if (directory / n).exists()), None
    )


def _given_file(path: str | Path, what: str) -> Path:
    """A file named by the caller, which must be there."""
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpointFileError(path, f"no {what} there")
    return path


def _read_answers(path: Path) -> AnswerTable:
    """An answer table in any of the authors' layouts (:meth:`AnswerTable.load`), errors naming the file."""
    with _checkpoint_errors(path):
        return AnswerTable.load(path)


def _read_source(path: str | Path, answers_file: str | Path | None = None) -> _Source:
    """Read and check a checkpoint's files (raises CheckpointError naming the file at fault).

    Args:
        path: the checkpoint directory or file.
        answers_file: its answer table, in place of the one the directory holds.
    """
    path = Path(path)
    config_values, answers = None, None
    config_file = path / CONFIG_FILE
    if answers_file is not None:
        answers_file = _given_file(answers_file, "answer table")
    if path.is_dir():
        weights = _find_weights(path)
        answers_file = answers_file or _answers_beside(path)
        with _checkpoint_errors(path):
            config_values = read_json_object(config_file) if config_file.exists() else None
    elif path.is_file():
        weights = path
    else:
        raise MissingCheckpointFileError(path, "no checkpoint there")
    if answers_file is not None:
        answers = _read_answers(answers_file)
    with _checkpoint_errors(weights):
        state = read_state_dict(weights)
        _check_finite(state, weights)
        canonical, layout = to_canonical(state)
    if answers is not None:
        _check_answer_count(answers, canonical, answers_file)
    if layout in ("lxmert", "bare-encoder") and config_values and "model_type" in config_values:
        layout = "transformers"  # same keys as ours; only transformers' config.json says model_type
    config = None
    if config_values is not None:
        with _checkpoint_errors(config_file):
            config = LxmertConfig.from_dict(config_values)
    return _Source(weights, canonical, layout, config, answers)


# The heads of LXMERT, by the prefix of their keys in our layout.
HEADS = ("answer_head", "cls.predictions", "cls.seq_relationship", "obj_predict_head")


@dataclass(frozen=True)
class CheckpointOutline:
    """What a checkpoint needs and holds, read from its tensor shapes without reading its weights.

    Attributes:
        weights: its weights file.
        layout: as in :class:`LoadReport`.
        visual_feat_dim: the size of the region features it reads.
        vocab_size: the rows of its word embeddings.
        qa_rows: the rows of its QA head, None without one.
        vocab: its vocabulary file (given, or ``vocab.txt`` in its directory), None when it has none.
        answers: its answer table (given, or the one its directory holds), None when it has none.
        heads: the heads its tensors hold, by the prefix of their keys in our layout (``answer_head``,
            ``cls.predictions``, ``cls.seq_relationship``, ``obj_predict_head``).
    """

    weights: Path
    layout: str
    visual_feat_dim: int
    vocab_size: int
    qa_rows: int | None
    vocab: Path | None
    answers: AnswerTable | None
    heads: frozenset[str] = frozenset()


def _tensor_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, from a safetensors header or a memory-mapped torch zip file (no tensor is read)."""
    if not weights.is_file():
        raise MissingCheckpointFileError(weights, "no checkpoint file there")
    if weights.suffix == ".safetensors":
        try:
            with safe_open(weights, framework="pt") as file:
                return {key: tuple(file.get_slice(key).get_shape()) for key in file.keys()}  # noqa: SIM118
        except (SafetensorError, OSError) as err:
            raise UnreadableFileError(
                weights, f"not a readable safetensors file (truncated or corrupt?): {err}"
            ) from err
    if zipfile.is_zipfile(weights):  # torch.save's format since 1.6: mapped, so only the pickle is read
        try:
            loaded = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:  # as read_torch_file: a bad file raises many types
            raise _torch_load_failure(weights, err) from err
    else:  # the legacy format (the authors' files may be in it) cannot be mapped
        loaded = read_torch_file(weights)
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise UnreadableFileError(
            weights, f"holds a {type(loaded).__name__}, not a flat state dict of tensors"
        )
    return {key: tuple(value.shape) for key, value in loaded.items()}


def outline_checkpoint(
    path: str | Path, *, vocab: str | Path | None = None, answers: str | Path | None = None
) -> CheckpointOutline:
    """What the checkpoint at ``path`` needs and holds, without reading its weights (see :func:`load_checkpoint`).

    The vocabulary and the answer table are read and checked against the tensor shapes as loading checks them:
    every id of the vocabulary must index a word embedding, and the answer table must have one answer per row of
    the QA head.

    Raises:
        CheckpointError: naming the file, when a file is missing, unreadable or malformed, the vocabulary or the
            answer table does not fit the tensors, or the tensors lack the word embeddings or the region feature
            projection.
    """
    path = resolve_checkpoint_path(path)
    weights = _find_weights(path) if path.is_dir() else path
    if answers is not None:
        answers_file: Path | None = _given_file(answers, "answer table")
    else:
        answers_file = _answers_beside(path) if path.is_dir() else None
    if vocab is not None:
        vocab_file: Path | None = _given_file(vocab, "vocabulary")
    else:
        vocab_file = path / VOCAB_FILE if path.is_dir() and (path / VOCAB_FILE).exists() else None
    with _checkpoint_errors(weights):
        shapes = _tensor_shapes(weights)
        # Shapes on the meta device go through the same converters as the weights would.
        canonical, layout = to_canonical({k: torch.empty(s, device="meta") for k, s in shapes.items()})
    for key in (WORD_EMBEDDINGS, VISUAL_FEATURES):
        if key not in canonical or canonical[key].dim() != 2:
            raise CheckpointError(weights, f"has no 2-d {key!r}: not an LXMERT checkpoint")
    vocab_size = canonical[WORD_EMBEDDINGS].shape[0]
    if vocab_file is not None:
        _read_tokenizer(vocab_file, vocab_size)
    table = None
    if answers_file is not None:
        table = _read_answers(answers_file)
        _check_answer_count(table, canonical, answers_file)
    rows = canonical.get(ANSWER_ROWS + "weight")
    return CheckpointOutline(
        weights=weights,
        layout=layout,
        visual_feat_dim=canonical[VISUAL_FEATURES].shape[1],
        vocab_size=vocab_size,
        qa_rows=None if rows is None or rows.dim() < 1 else rows.shape[0],
        vocab=vocab_file,
        answers=table,
        heads=frozenset(h for h in HEADS if any(k.startswith(h + ".") for k in canonical)),
    )


# ----------------------------------------------------------------------------------------------------------------
# Config inference from tensor shapes
# ----------------------------------------------------------------------------------------------------------------


def _layer_count(keys: list[str], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def infer_config(canonical: Mapping[str, Tensor], **overrides: Any) -> LxmertConfig:
    """Rebuild the config a canonical state dict was made with, from its tensor shapes.

    Sizes, layer counts, label counts and which heads exist all show in the shapes; the number of attention
    heads does not. It is taken as hidden_size / 64 (BERT's head width, the only one the authors used) when
    ``hidden_size`` is 768, and must otherwise come in ``overrides``. Fields that leave no trace (dropout,
    ``layer_norm_eps``, ...) keep their defaults unless overridden.

    Raises:
        ValueError: when a needed tensor is absent or the head count cannot be known.
    """
    keys = list(canonical)

    def shape(key: str) -> tuple[int, ...]:
        if key not in canonical:
            raise ValueError(f"cannot infer the config: the checkpoint has no {key!r}; pass a config")
        return tuple(canonical[key].shape)

    vocab_size, hidden = shape(WORD_EMBEDDINGS)
    first_ffn = next((k for k in keys if re.search(r"\.(intermediate|lang_inter)\.dense\.weight$", k)), None)
    values: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "max_position_embeddings": shape("lxmert.embeddings.position_embeddings.weight")[0],
        "type_vocab_size": shape("lxmert.embeddings.token_type_embeddings.weight")[0],
        "intermediate_size": shape(first_ffn)[0] if first_ffn else LxmertConfig.intermediate_size,
        "visual_feat_dim": shape(VISUAL_FEATURES)[1],
        "visual_pos_dim": shape("lxmert.encoder.visn_fc.box_fc.weight")[1],
        "l_layers": _layer_count(keys, "lxmert.encoder.layer."),
        "r_layers": _layer_count(keys, "lxmert.encoder.r_layers."),
        "x_layers": _layer_count(keys, "lxmert.encoder.x_layers."),
        "share_cross_attention": not any(".visual_attention_v2l." in k for k in keys),
        "task_obj_predict": any(k.startswith("obj_predict_head.") for k in keys),
        "task_qa": any(k.startswith("answer_head.") for k in keys),
    }
    if values["task_qa"]:
        values["num_qa_labels"] = shape(ANSWER_ROWS + "weight")[0]
    if values["task_obj_predict"]:
        decoders = "obj_predict_head.decoder_dict."
        values["visual_obj_loss"] = decoders + "obj.weight" in canonical
        values["visual_attr_loss"] = decoders + "attr.weight" in canonical
        values["visual_feat_loss"] = decoders + "feat.weight" in canonical
        if values["visual_obj_loss"]:
            values["num_object_labels"] = shape(decoders + "obj.weight")[0]
        if values["visual_attr_loss"]:
            values["num_attr_labels"] = shape(decoders + "attr.weight")[0]
    values.update(overrides)
    if "num_attention_heads" not in values:
        if values["hidden_size"] != 768:
            raise ValueError(
                f"cannot infer num_attention_heads for hidden_size {values['hidden_size']} from tensor shapes; "
                "pass config={'num_attention_heads': ...} or a full LxmertConfig"
            )
        values["num_attention_heads"] = 12
    return LxmertConfig(**values)


def read_config(path: str | Path) -> LxmertConfig:
    """The architecture of a checkpoint, without building a model: its ``config.json`` alone when the directory
    has one, else the config inferred from its tensor shapes (:func:`infer_config`).

    Raises:
        CheckpointError: naming the file, when it is unreadable or malformed.
    """
    path = Path(path)
    config_file = path / CONFIG_FILE
    if path.is_dir() and config_file.exists():
        with _checkpoint_errors(config_file):
            return LxmertConfig.from_dict(read_json_object(config_file))
    source = _read_source(path)
    with _checkpoint_errors(path):
        return _resolve_config(source, None)


def _resolve_config(source: _Source, config: LxmertConfig | Mapping[str, Any] | None) -> LxmertConfig:
    """A given LxmertConfig wins; a dict overrides the file's config (or the one inferred from shapes)."""
    if isinstance(config, LxmertConfig):
        return config
    overrides = dict(config or {})
    if source.config is not None:
        return dataclasses.replace(source.config, **overrides)
    return infer_config(source.canonical, **overrides)


# ----------------------------------------------------------------------------------------------------------------
# Loading into a model
# ----------------------------------------------------------------------------------------------------------------


def load_state_into(
    model: nn.Module,
    path: str | Path,
    *,
    source_answers: Sequence[str] | AnswerTable | None = None,
    target_answers: Sequence[str] | AnswerTable | None = None,
    backbone_only: bool = False,
    strict: bool = False,
) -> LoadReport:
    """Load any supported checkpoint into an existing model, in place.

    Args:
        model: any of our LXMERT models.
        path: our or transformers' directory, or an authors' ``.pth`` (or a ``.bin``/``.safetensors``) file.
        source_answers: the answers of the checkpoint's QA head in row order; defaults to its ``answers.json``.
        target_answers: with this, the checkpoint's QA head is re-indexed to these answers by answer string
            (:func:`transfer_answer_head`), as the authors' ``--loadLXMERTQA`` does.
        backbone_only: load only the ``lxmert.*`` encoder and leave every head at init (``--loadLXMERT``).
        strict: raise if any key is missing or unexpected instead of only reporting it.

    Returns:
        The report, also stored on ``model.load_report`` and logged.

    Raises:
        ValueError: when a tensor's shape does not fit the model (naming the tensor and both shapes), or the
            file cannot be read.
    """
    source = _read_source(path)
    return _load_source(model, source, source_answers, target_answers, backbone_only, strict)


def _load_source(
    model: nn.Module,
    source: _Source,
    source_answers: Sequence[str] | AnswerTable | None,
    target_answers: Sequence[str] | AnswerTable | None,
    backbone_only: bool,
    strict: bool,
) -> LoadReport:
    state, report = _fitted_state(model, source, source_answers, target_answers, backbone_only, strict)
    model.load_state_dict(state, strict=False)
    model.load_report = report
    logger.info("%s", report)
    return report


def _fitted_state(
    model: nn.Module,
    source: _Source,
    source_answers: Sequence[str] | AnswerTable | None,
    target_answers: Sequence[str] | AnswerTable | None,
    backbone_only: bool,
    strict: bool,
) -> tuple[StateDict, LoadReport]:
    """The tensors of ``source`` that go into ``model``, checked to fit it, and the report of what was left out.

    Only shapes, dtypes and keys of ``model`` are read, so it may be a skeleton on the ``meta`` device.
    """
    canonical = dict(source.canonical)
    report = LoadReport(source=str(source.path), layout=source.layout)
    dropped: list[str] = []
    if backbone_only:
        dropped = [k for k in canonical if not k.startswith("lxmert.")]
        canonical = {k: v for k, v in canonical.items() if k.startswith("lxmert.")}
    if target_answers is not None:
        source_answers = source_answers if source_answers is not None else source.answers
        if source_answers is None:
            raise ValueError(
                f"{source.path} has no {ANSWERS_FILE}: pass source_answers (the checkpoint's answer table, "
                "e.g. the authors' all_ans.json) to transfer the answer head"
            )
        with _checkpoint_errors(source.path):
            canonical, report.answer_transfer = transfer_answer_head(
                canonical, source_answers, target_answers
            )
    _untie_check(canonical, source.path)

    state = for_model(canonical, model)
    own = model.state_dict()
    tied = _tied_keys(model)
    misfits = [
        f"tensor {key!r} has shape {tuple(value.shape)} but the model expects {tuple(own[key].shape)}"
        for key, value in state.items()
        if key in own and value.shape != own[key].shape
    ] + [
        f"tensor {key!r} has dtype {value.dtype} but the model expects {own[key].dtype}"
        for key, value in state.items()
        if key in own and value.is_floating_point() != own[key].is_floating_point()
    ]
    if misfits:
        shown = "\n  ".join(misfits[:10]) + ("\n  ..." if len(misfits) > 10 else "")
        raise CheckpointError(source.path, f"does not fit this config ({len(misfits)} tensors):\n  {shown}")
    state = {k: v for k, v in state.items() if k not in tied}
    report.missing_keys = sorted(set(own) - set(state) - tied)
    report.unexpected_keys = sorted((set(state) - set(own)) | set(dropped))
    if strict and (report.missing_keys or report.unexpected_keys):
        raise CheckpointError(source.path, f"strict load refused, the model is unchanged:\n{report}")
    return {k: v for k, v in state.items() if k in own}, report


def _build(
    cls: type[LxmertPreTrainedModel],
    config: LxmertConfig,
    source: _Source,
    source_answers: Sequence[str] | AnswerTable | None = None,
    target_answers: Sequence[str] | AnswerTable | None = None,
    backbone_only: bool = False,
    strict: bool = False,
    complete: bool = False,
) -> LxmertPreTrainedModel:
    """``cls(config)`` with the source's weights, once a skeleton on the ``meta`` device has shown that they fit.

    The skeleton costs no memory, so a config whose sizes disagree with the file (a 10^9-word vocabulary beside
    a 30522-row embedding) is refused before anything is allocated for it.

    Args:
        complete: refuse a file that lacks any of the model's parameters (they would be left at random init).
    """
    with torch.device("meta"):
        skeleton = cls(config)
    _, report = _fitted_state(skeleton, source, source_answers, target_answers, backbone_only, strict)
    if complete and report.missing_keys:
        raise CheckpointError(
            source.path, f"lacks {_summarise(report.missing_keys)} that {cls.__name__} with its config needs"
        )
    model = cls(config)
    _load_source(model, source, source_answers, target_answers, backbone_only, strict)
    return model


def _tied_keys(model: nn.Module) -> set[str]:
    """State-dict keys that alias a parameter already listed under an earlier key (the tied LM decoder)."""
    seen: set[int] = set()
    tied = set()
    for key, value in model.state_dict(keep_vars=True).items():
        if id(value) in seen:
            tied.add(key)
        seen.add(id(value))
    return tied


def _untie_check(canonical: StateDict, path: Path) -> None:
    """Drop the decoder copy of a tied checkpoint; warn if the file's decoder was not really tied."""
    decoder = canonical.pop(TIED_DECODER, None)
    embeddings = canonical.get(WORD_EMBEDDINGS)
    if decoder is not None and embeddings is not None and not torch.equal(decoder, embeddings):
        logger.warning(
            "%s: %s differs from %s; the model ties them, so the word embeddings are used for both",
            path,
            TIED_DECODER,
            WORD_EMBEDDINGS,
        )


def load_pretrained(
    cls: type[LxmertPreTrainedModel],
    path: str | Path,
    config: LxmertConfig | Mapping[str, Any] | None = None,
    *,
    source_answers: Sequence[str] | AnswerTable | None = None,
    target_answers: Sequence[str] | AnswerTable | None = None,
    backbone_only: bool = False,
    strict: bool = False,
) -> LxmertPreTrainedModel:
    """Build ``cls`` with the checkpoint's config and load its weights (``cls.from_pretrained``).

    Args:
        cls: the model class to build.
        path: our or transformers' directory, or an authors' ``.pth`` (or ``.bin``/``.safetensors``) file; or a
            hub id (``"unc-nlp/lxmert-gqa-uncased"``), read from the local Hugging Face cache
            (:mod:`lxmert.hub_cache`).
        config: an ``LxmertConfig`` used as is, or a dict of fields overriding the checkpoint's ``config.json``
            (or, without one, the config inferred from tensor shapes: :func:`infer_config`).
        source_answers, target_answers, backbone_only, strict: as in :func:`load_state_into`. With
            ``target_answers`` a QA model gets one output per target answer.

    Returns:
        The model in eval mode, with ``model.load_report``.

    Raises:
        CheckpointError: naming the file and the field or tensor, when a file is unreadable or malformed, or the
            weights do not fit the config (checked before the model is allocated).
    """
    path = resolve_checkpoint_path(path)
    source = _read_source(path)
    with _checkpoint_errors(path):
        resolved = _resolve_config(source, config)
    if target_answers is not None:
        resolved = dataclasses.replace(resolved, num_qa_labels=len(target_answers))
    return _build(cls, resolved, source, source_answers, target_answers, backbone_only, strict).eval()


# ----------------------------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------------------------


def save_pretrained(
    model: LxmertPreTrainedModel,
    directory: str | Path,
    *,
    tokenizer: LxmertTokenizer | None = None,
    answers: Sequence[str] | AnswerTable | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model (and optionally its tokenizer, answer table and notes) as one directory, atomically.

    The directory is assembled beside ``directory`` and renamed into place; an existing one is replaced only
    once the new one is complete.

    Args:
        model: the model to save.
        directory: where the checkpoint goes.
        tokenizer: written as ``vocab.txt``.
        answers: the QA head's answers in label order, written as ``answers.json``; their number must match
            the head.
        meta: anything JSON-serialisable, written as ``meta.json``.

    Returns:
        The directory.
    """
    directory = Path(directory)
    head = getattr(model, "answer_head", None)
    if answers is not None and head is not None and len(answers) != head.logit_fc[-1].out_features:
        raise ValueError(
            f"{len(answers)} answers given for a QA head of {head.logit_fc[-1].out_features} outputs"
        )
    tied = _tied_keys(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in tied}
    with atomic_directory(directory) as tmp:
        model.config.to_json_file(tmp / CONFIG_FILE)
        save_file(state, tmp / WEIGHTS_FILE, metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(tmp)
        if answers is not None:
            (answers if isinstance(answers, AnswerTable) else AnswerTable(answers)).save(tmp / ANSWERS_FILE)
        if meta is not None:
            atomic_write_text(tmp / META_FILE, json.dumps(dict(meta), indent=2, sort_keys=True) + "\n")
    return directory


# ----------------------------------------------------------------------------------------------------------------
# Everything a checkpoint holds, for the app and the analysis
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class LoadedCheckpoint:
    model: LxmertPreTrainedModel
    tokenizer: LxmertTokenizer | None
    answers: AnswerTable | None
    meta: dict[str, Any]


def model_class_for(canonical: Mapping[str, Tensor]) -> type[LxmertPreTrainedModel]:
    """The model class whose heads a canonical state dict holds."""
    keys = list(canonical)
    if any(k.startswith("logit_fc.") for k in keys):
        return LxmertForNLVR2
    if any(k.startswith(("cls.", "obj_predict_head.")) for k in keys):
        return LxmertForPreTraining
    if any(k.startswith("answer_head.") for k in keys):
        return LxmertForQuestionAnswering
    return LxmertModel


def load_checkpoint(
    path: str | Path,
    model_class: type[LxmertPreTrainedModel] | None = None,
    config: LxmertConfig | Mapping[str, Any] | None = None,
    *,
    vocab: str | Path | None = None,
    answers: str | Path | None = None,
) -> LoadedCheckpoint:
    """Load a model with its tokenizer, answer table and notes, whatever the checkpoint's layout.

    Args:
        path: a checkpoint directory or file, or a hub id in the local cache (see :func:`load_pretrained`).
        model_class: the class to build; by default the one whose heads the checkpoint holds (NLVR2, pre-training,
            QA, or the bare encoder).
        config: as in :func:`load_pretrained`.
        vocab: a ``vocab.txt`` for a checkpoint without one (the authors' ``*_LXRT.pth`` and task ``.pth``); it
            replaces the directory's own.
        answers: an answer table in any of the authors' layouts (``trainval_label2ans.json``, ...) for a checkpoint
            without one; it replaces the directory's own.

    Returns:
        The model in eval mode; the tokenizer, answers and meta when the directory has ``vocab.txt``,
        ``answers.json`` (or ``trainval_label2ans.json``) and ``meta.json``, or they are given (None / empty
        otherwise).

    Raises:
        CheckpointError: naming the file and the field or tensor, when any file is missing, unreadable or malformed,
            the files disagree (answers and QA head, vocabulary and embeddings, config and tensor shapes), or the
            weights lack a parameter of the model; a MissingCheckpointFileError for a hub id the local cache
            lacks, saying how to fetch it.
    """
    path = resolve_checkpoint_path(path)
    source = _read_source(path, answers)
    cls = model_class or model_class_for(source.canonical)
    with _checkpoint_errors(path):
        resolved = _resolve_config(source, config)
    tokenizer, meta = None, {}
    if vocab is not None:
        tokenizer = _read_tokenizer(_given_file(vocab, "vocabulary"), resolved.vocab_size)
    elif path.is_dir() and (path / VOCAB_FILE).exists():
        tokenizer = _read_tokenizer(path / VOCAB_FILE, resolved.vocab_size)
    model = _build(cls, resolved, source, complete=True)
    if path.is_dir():
        meta = read_meta(path)
    return LoadedCheckpoint(model=model.eval(), tokenizer=tokenizer, answers=source.answers, meta=meta)


def _read_tokenizer(vocab_file: Path, vocab_size: int) -> LxmertTokenizer:
    """The checkpoint's tokenizer, whose every id must index the model's ``vocab_size`` word embeddings."""
    with _checkpoint_errors(vocab_file):
        tokenizer = LxmertTokenizer(vocab_file)
    largest = max(tokenizer.vocab.values())
    if largest >= vocab_size:
        raise CheckpointError(
            vocab_file, f"has ids up to {largest}, beyond the model's vocab_size {vocab_size}"
        )
    return tokenizer


def read_meta(directory: str | Path) -> dict[str, Any]:
    """A checkpoint directory's ``meta.json`` without loading its weights; empty when the directory has none.

    Raises:
        CheckpointError: naming the file, when it cannot be read or is not a JSON object.
    """
    path = Path(directory) / META_FILE
    if not path.exists():
        return {}
    with _checkpoint_errors(path):
        return read_json_object(path)


def meta_scores(meta: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The scores a checkpoint's ``meta.json`` records under ``"scores"``: split → metric → value, e.g.
    ``{"valid": {"accuracy": 0.60}, "chance": {...}}``; empty when it records none.

    The one schema: ``training.export_default`` writes it and the app's checkpoint card reads it.

    Raises:
        ValueError: naming the field, when ``scores`` is not a table of tables of numbers.
    """
    scores = meta.get(SCORES_KEY, {})
    if not isinstance(scores, dict):
        raise ValueError(
            f"meta.json: {SCORES_KEY!r} must be an object of splits, got {type(scores).__name__}"
        )
    for split, table in scores.items():
        if not isinstance(table, dict):
            raise ValueError(f"meta.json: {SCORES_KEY}.{split} must be an object of metrics")
        for metric, value in table.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"meta.json: {SCORES_KEY}.{split}.{metric} must be a number, got {value!r}")
    return scores


def qa_head_trained(directory: str | Path) -> bool | None:
    """Whether the QA head of a pre-training output (``OUTPUT/best``, ``OUTPUT/final``) ever trained: False when the
    QA task was off or the checkpoint was saved before ``qa_from_epoch``; None when the directory does not say (not
    our pre-training output, or one saved before ``meta.json`` recorded the epoch)."""
    config, meta = read_json_record(Path(directory) / PRETRAIN_CONFIG_FILE), read_meta(directory)
    if not config:
        return None
    if not config.get("task_qa", True):
        return False
    if "epoch" not in meta or "qa_from_epoch" not in config:
        return None
    epoch, start = meta["epoch"], config["qa_from_epoch"]
    return epoch > start or (epoch == start and meta.get("batches_done", 0) > 0)


__all__ = [
    "HEADS",
    "AnswerTransfer",
    "CheckpointError",
    "CheckpointOutline",
    "LoadReport",
    "LoadedCheckpoint",
    "MissingCheckpointFileError",
    "convert_authors_pretraining",
    "convert_authors_task",
    "convert_bare_encoder",
    "for_model",
    "infer_config",
    "load_checkpoint",
    "load_pretrained",
    "load_state_into",
    "meta_scores",
    "model_class_for",
    "outline_checkpoint",
    "qa_head_trained",
    "read_config",
    "read_meta",
    "read_state_dict",
    "read_torch_file",
    "save_pretrained",
    "to_canonical",
    "transfer_answer_head",
]
