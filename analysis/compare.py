"""Checkpoint comparison: the same inputs through two or more checkpoints.

Answers and top-k shifts, per-head Jensen–Shannon divergence of attention and the heads that moved most, linear CKA
of the hidden states per layer (Kornblith et al., 2019), and the training curves each run logged.
"""

from __future__ import annotations

import json
import math
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lxmert.checkpoints import METRICS_FILE

from .attention import AttentionMaps, collect_attention
from .forward import AnswerScore, answer_logits, run, top_answers
from .inputs import Example


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence in bits (in [0, 1]) between distributions along the last axis."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(a > 0, a * np.log2(np.where(a > 0, a, 1.0) / np.where(b > 0, b, 1.0)), 0.0).sum(-1)

    return np.clip((kl(p, m) + kl(q, m)) / 2, 0.0, 1.0)


def attention_divergence(a: AttentionMaps, b: AttentionMaps) -> dict[str, np.ndarray]:
    """Family → (L, H) JS divergence between two models' maps of one example, averaged over query rows.

    Families whose shapes differ (different depths or head counts) are left out.
    """
    if a.tokens != b.tokens or a.num_regions != b.num_regions:
        raise ValueError("attention maps of different inputs cannot be compared head by head")
    return {
        family: js_divergence(a.maps[family], b.maps[family]).mean(-1)
        for family in a.maps
        if family in b.maps and a.maps[family].shape == b.maps[family].shape
    }


def moved_heads(divergence: dict[str, np.ndarray], top: int = 10) -> list[tuple[str, int, int, float]]:
    """The ``top`` (family, layer, head, divergence) with the largest divergence, largest first."""
    rows = [
        (family, layer, head, float(value))
        for family, values in divergence.items()
        for (layer, head), value in np.ndenumerate(values)
    ]
    return sorted(rows, key=lambda row: -row[3])[:top]


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between two representations of the same n items, (n, d1) and (n, d2).

    ``‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F)`` on column-centred X, Y: 1 for representations equal up to rotation
    and isotropic scaling, invariant to both.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same items on both sides, got {x.shape[0]} and {y.shape[0]} rows")
    x, y = x - x.mean(0), y - y.mean(0)
    denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(np.linalg.norm(y.T @ x) ** 2 / denominator) if denominator > 0 else 0.0


def hidden_states(model: nn.Module, examples: Sequence[Example]) -> dict[str, list[np.ndarray]]:
    """Stream → per-layer (items, D) hidden states of every token (``lang``) or region (``vis``) of ``examples``.

    Layer 0 is the encoder input; language layers run through the language encoder then the cross layers, vision
    through the relationship encoder then the cross layers.
    """
    per_layer: dict[str, list[list[np.ndarray]]] = {"lang": [], "vis": []}
    with torch.no_grad():
        for example in examples:
            output = run(model, example, output_hidden_states=True)
            for stream, states in (
                ("lang", output.language_hidden_states),
                ("vis", output.vision_hidden_states),
            ):
                if not per_layer[stream]:
                    per_layer[stream] = [[] for _ in states]
                for layer, state in enumerate(states):
                    per_layer[stream][layer].append(state[0].float().cpu().numpy())
    return {stream: [np.concatenate(rows) for rows in layers] for stream, layers in per_layer.items()}


def representation_cka(
    model_a: nn.Module, model_b: nn.Module, examples: Sequence[Example]
) -> dict[str, np.ndarray]:
    """Stream → (layers of a, layers of b) linear CKA between every pair of layers, over all tokens / regions."""
    states_a, states_b = hidden_states(model_a, examples), hidden_states(model_b, examples)
    return {
        stream: np.array([[linear_cka(x, y) for y in states_b[stream]] for x in states_a[stream]])
        for stream in states_a
    }


@dataclass
class AnswerShift:
    """How a model's answers differ from the reference model's on one example.

    Attributes:
        top1_changed: the best answer differs.
        topk_overlap: share of the reference's top-k also in this model's top-k.
        reference_top_probability: this model's probability of the reference's best answer.
        total_variation: half the L1 distance of the two answer distributions (same answer table only, else None).
    """

    top1_changed: bool
    topk_overlap: float
    reference_top_probability: float | None
    total_variation: float | None


def _answer_key(answer: AnswerScore) -> int | str:
    return answer.answer if answer.answer is not None else answer.index


def answer_shift(
    reference: Sequence[AnswerScore],
    other: Sequence[AnswerScore],
    other_probs: np.ndarray,
    reference_probs: np.ndarray,
    same_table: bool,
    other_names: Sequence[str] | None,
) -> AnswerShift:
    """Compare two top-k lists (by answer string where known, else by index)."""
    ref_keys, other_keys = [_answer_key(a) for a in reference], [_answer_key(a) for a in other]
    best = reference[0]
    if same_table:
        ref_top_prob = float(other_probs[best.index])
    elif other_names is not None and best.answer in other_names:
        ref_top_prob = float(other_probs[list(other_names).index(best.answer)])
    else:
        ref_top_prob = None
    return AnswerShift(
        top1_changed=ref_keys[0] != other_keys[0],
        topk_overlap=len(set(ref_keys) & set(other_keys)) / len(ref_keys),
        reference_top_probability=ref_top_prob,
        total_variation=float(np.abs(other_probs - reference_probs).sum() / 2) if same_table else None,
    )


@dataclass
class CheckpointComparison:
    """Two or more checkpoints on one example; the first is the reference.

    Attributes:
        names: the checkpoints, reference first.
        answers: name → top-k answers.
        shifts: name → answer shift from the reference (others only).
        divergence: name → family → (L, H) JS divergence of attention from the reference.
        moved_heads: name → the heads whose attention moved most.
        cka: name → stream → (layers, layers) CKA with the reference (when examples were given for it).
    """

    names: list[str]
    answers: dict[str, list[AnswerScore]]
    shifts: dict[str, AnswerShift]
    divergence: dict[str, dict[str, np.ndarray]]
    moved_heads: dict[str, list[tuple[str, int, int, float]]]
    cka: dict[str, dict[str, np.ndarray]]


def compare_checkpoints(
    models: dict[str, nn.Module],
    example: Example,
    cka_examples: Sequence[Example] = (),
    top_k: int = 5,
    answer_names: dict[str, Sequence[str]] | None = None,
    top_heads: int = 10,
) -> CheckpointComparison:
    """Run ``example`` through every model and compare each with the first.

    Args:
        models: name → model, the reference first; all must read the same tokens and regions.
        example: the input.
        cka_examples: examples whose tokens and regions make up the CKA's items (empty = no CKA; one example has
            too few items for a meaningful CKA).
        top_k: answers listed per model.
        answer_names: name → answer table, to compare answers by string across different tables.
        top_heads: how many moved heads to list.
    """
    if len(models) < 2:
        raise ValueError("compare_checkpoints needs at least two models")
    answer_names = answer_names or {}
    names = list(models)
    answers, probs, maps = {}, {}, {}
    for name, model in models.items():
        with torch.no_grad():
            logits = answer_logits(run(model, example))[0]
        probs[name] = logits.float().softmax(-1).cpu().numpy()
        answers[name] = top_answers(logits, top_k, answer_names.get(name))
        maps[name] = collect_attention(model, example)
    reference = names[0]
    shifts, divergence, moved, cka = {}, {}, {}, {}
    for name in names[1:]:
        same_table = probs[name].shape == probs[reference].shape and (
            answer_names.get(name) == answer_names.get(reference)
        )
        shifts[name] = answer_shift(
            answers[reference],
            answers[name],
            probs[name],
            probs[reference],
            same_table,
            answer_names.get(name),
        )
        divergence[name] = attention_divergence(maps[reference], maps[name])
        moved[name] = moved_heads(divergence[name], top_heads)
        if cka_examples:
            cka[name] = representation_cka(models[reference], models[name], cka_examples)
    return CheckpointComparison(names, answers, shifts, divergence, moved, cka)


# ----------------------------------------------------------------------------------------------------------------
# Training curves
# ----------------------------------------------------------------------------------------------------------------


# A run's log is a few MB; a larger file is not one, and reading it would stall the page.
MAX_METRICS_BYTES = 64 * 2**20


def metrics_path(path: str | Path) -> Path:
    """The metrics file of a run: ``path`` itself, ``path/metrics.jsonl``, or the parent's (a checkpoint inside a
    run directory)."""
    path = Path(path)
    for candidate in (path, path / METRICS_FILE, path.parent / METRICS_FILE):
        if candidate.exists() and not candidate.is_dir():  # a pipe or device is refused by read_metrics
            return candidate
    raise FileNotFoundError(f"no {METRICS_FILE} at {path} or its parent")


def read_metrics(path: str | Path, max_bytes: int = MAX_METRICS_BYTES) -> list[dict]:
    """The JSON objects of a JSON-lines metrics file; blank, malformed and non-object lines are skipped.

    Raises:
        FileNotFoundError: there is no metrics file (see :func:`metrics_path`).
        ValueError: the file is not a regular file (a device or a pipe would never end) or is larger than
            ``max_bytes``.
    """
    file = metrics_path(path)
    status = file.stat()
    if not stat.S_ISREG(status.st_mode):
        raise ValueError(f"{file} is not a regular file")
    if status.st_size > max_bytes:
        raise ValueError(
            f"{file} holds {status.st_size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB read"
        )
    records = []
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash or a concurrent write
        if isinstance(record, dict):
            records.append(record)
    return records


def training_curves(records: Sequence[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """Series name → (x, y) of every numeric field, named ``split/scope/field`` by the record's ``split`` and
    ``scope`` where it has them (the trainer's ``train``/``valid`` and ``step``/``epoch``/``eval``).

    x is the record's ``step``, else its ``epoch``, else its position in the file.
    """
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for position, record in enumerate(records):
        x = record.get("step", record.get("epoch", position))
        if not isinstance(x, (int, float)) or isinstance(x, bool):
            continue
        prefix = "".join(f"{record[k]}/" for k in ("split", "scope") if isinstance(record.get(k), str))
        for key, value in record.items():
            if key in ("step", "epoch") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            xs, ys = curves.setdefault(prefix + key, ([], []))
            xs.append(float(x))
            ys.append(float(value))
    return curves


__all__ = [
    "AnswerShift",
    "CheckpointComparison",
    "METRICS_FILE",
    "answer_shift",
    "attention_divergence",
    "compare_checkpoints",
    "hidden_states",
    "js_divergence",
    "linear_cka",
    "metrics_path",
    "moved_heads",
    "read_metrics",
    "representation_cka",
    "training_curves",
]
