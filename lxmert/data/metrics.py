"""Evaluators for the three fine-tuning tasks, as the official scripts and the authors' code score them.

- VQA: the soft score of bottom-up-attention-vqa ``tools/compute_softscore.py`` (0, 0.3, 0.6, 0.9, 1 for 0, 1, 2, 3,
  4+ annotators giving the answer), which the authors' ``VQAEvaluator`` sums over ``label[prediction]``; reported
  overall and per answer type (yes/no, number, other).
- GQA: exact match against the one gold answer, overall, binary / open as the official ``eval.py`` splits them
  (open = structural type ``query``), and per structural type where the data records it.
- NLVR2: accuracy and consistency as lil-lab/nlvr ``nlvr2/eval/metrics.py`` defines them: the identifier with its
  3rd ``-``-separated field blanked names a (set, sentence) group, and a group is consistent when every prediction
  in it is correct.

Every evaluator takes predictions keyed by the datum's id and the data as the task JSON holds it, returns a dict of
metric name → value in [0, 1], and refuses a prediction set that misses a datum (the official scripts do too).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

VQA_ANSWER_TYPES = ("yes/no", "number", "other")
YES_NO = frozenset({"yes", "no"})


def vqa_soft_score(num_matching: int) -> float:
    """Credit for an answer given by ``num_matching`` of the (usually 10) annotators: 0, .3, .6, .9, then 1.

    This is ``get_score`` of bottom-up-attention-vqa ``tools/compute_softscore.py``, the authors' label source; it
    approximates the official ``min(#matching / 3, 1)`` averaged over the ten leave-one-out subsets.
    """
    if num_matching < 0:
        raise ValueError(f"num_matching must be >= 0, got {num_matching}")
    return (0.0, 0.3, 0.6, 0.9)[num_matching] if num_matching < 4 else 1.0


def vqa_answer_type(datum: Mapping[str, Any]) -> str:
    """The datum's ``answer_type``; if absent, that of its best-scored answer (yes/no, a number, or other)."""
    if datum.get("answer_type"):
        return datum["answer_type"]
    label = datum.get("label") or {}
    if not label:
        return "other"
    best = max(label, key=label.get)
    if best in YES_NO:
        return "yes/no"
    return "number" if best.isdigit() else "other"


def gqa_is_open(datum: Mapping[str, Any]) -> bool:
    """Whether a GQA question is open (official eval.py: structural type ``query``) rather than binary.

    The authors' JSON drops the question types; then a question counts as binary when its gold answer is yes/no,
    which is what every verify/logical question and no query question answers (choose and compare questions
    answer with one of the two options named, so they fall on the open side of this fallback).
    """
    structural = gqa_structural_type(datum)
    if structural is not None:
        return structural == "query"
    return not (set(datum.get("label") or {}) <= YES_NO)


def gqa_structural_type(datum: Mapping[str, Any]) -> str | None:
    """The structural type (verify, query, choose, logical, compare) where the datum records it, else None."""
    types = datum.get("types")
    if isinstance(types, Mapping) and types.get("structural"):
        return types["structural"]
    return datum.get("structural") or None


def label_score(datum: Mapping[str, Any], prediction: str) -> float:
    """The credit a VQA or GQA datum gives ``prediction``: its score in the datum's ``label`` (VQA's soft score,
    GQA's 1.0 for the gold answer, so exact match), 0 for an answer the label does not hold.

    This is what the authors' evaluators add up per question (``label[prediction]``).
    """
    return float((datum.get("label") or {}).get(prediction, 0.0))


def nlvr2_correct(datum: Mapping[str, Any], prediction: Any) -> bool:
    """Whether an NLVR2 prediction (bool, 0/1 or ``"True"``/``"False"``) equals the datum's label."""
    return nlvr2_label(prediction) == nlvr2_label(datum["label"])


def datum_score(task: str, datum: Mapping[str, Any], prediction: Any) -> float:
    """One datum's credit under its task's own metric: ``vqa`` and ``gqa`` :func:`label_score`, ``nlvr2`` 1 for
    a correct truth value and 0 otherwise; the mean over a split is the task's accuracy.

    Raises:
        ValueError: an unknown task.
    """
    if task in ("vqa", "gqa"):
        return label_score(datum, prediction)
    if task == "nlvr2":
        return float(nlvr2_correct(datum, prediction))
    raise ValueError(f"unknown task {task!r}; expected vqa, gqa or nlvr2")


def _check_complete(predictions: Mapping[Any, Any], ids: Sequence[Any], task: str) -> None:
    missing = [i for i in ids if i not in predictions]
    if missing:
        shown = ", ".join(repr(i) for i in missing[:5])
        raise ValueError(
            f"{task}: {len(missing)} of {len(ids)} data have no prediction (e.g. {shown}); "
            "predict every datum of the split"
        )


def _means(sums: Mapping[str, float], counts: Mapping[str, int]) -> dict[str, float]:
    return {name: sums[name] / counts[name] for name in counts if counts[name]}


def vqa_scores(predictions: Mapping[Any, str], data: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """VQA soft-score accuracy overall and per answer type.

    Args:
        predictions: question_id → predicted answer string.
        data: VQA data with ``question_id`` and the soft ``label`` dict (and ``answer_type`` where known).

    Returns:
        ``accuracy`` and one entry per answer type present (``yes/no``, ``number``, ``other``).
    """
    _check_complete(predictions, [d["question_id"] for d in data], "VQA")
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for datum in data:
        score = label_score(datum, predictions[datum["question_id"]])
        for name in ("accuracy", vqa_answer_type(datum)):
            sums[name] += score
            counts[name] += 1
    return _means(sums, counts)


def gqa_scores(predictions: Mapping[Any, str], data: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """GQA exact-match accuracy overall, for binary and open questions, and per structural type where recorded.

    Args:
        predictions: question_id → predicted answer string.
        data: GQA data with ``question_id`` and ``label`` (the gold answer with score 1.0).

    Returns:
        ``accuracy``, ``binary``, ``open`` (each where such questions exist) and ``structural/<type>`` entries.
    """
    _check_complete(predictions, [d["question_id"] for d in data], "GQA")
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for datum in data:
        score = label_score(datum, predictions[datum["question_id"]])
        names = ["accuracy", "open" if gqa_is_open(datum) else "binary"]
        structural = gqa_structural_type(datum)
        if structural is not None:
            names.append(f"structural/{structural}")
        for name in names:
            sums[name] += score
            counts[name] += 1
    return _means(sums, counts)


def nlvr2_label(value: Any) -> bool:
    """An NLVR2 label as a bool: the authors' JSON has 0/1, the raw data and prediction CSVs ``True``/``False``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"an NLVR2 label must be 0/1 or True/False, got {value!r}")


def nlvr2_group(identifier: str) -> str:
    """The (set, sentence) group of an identifier: its 3rd ``-`` field blanked (``dev-850-0-1`` → ``dev-850--1``)."""
    fields = identifier.split("-")
    if len(fields) < 3:
        raise ValueError(f"NLVR2 identifier {identifier!r} is not of the form split-set-pair-sentence")
    fields[2] = ""
    return "-".join(fields)


def nlvr2_scores(predictions: Mapping[str, Any], data: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """NLVR2 accuracy and consistency (lil-lab/nlvr ``nlvr2/eval/metrics.py``).

    Args:
        predictions: identifier → predicted truth value (bool, 0/1 or ``"True"``/``"False"``).
        data: NLVR2 data with ``identifier`` and ``label``.

    Returns:
        ``accuracy`` (fraction of data predicted right) and ``consistency`` (fraction of (set, sentence) groups
        predicted right throughout).
    """
    _check_complete(predictions, [d["identifier"] for d in data], "NLVR2")
    correct = 0
    group_consistent: dict[str, bool] = {}
    for datum in data:
        right = nlvr2_correct(datum, predictions[datum["identifier"]])
        correct += right
        group = nlvr2_group(datum["identifier"])
        group_consistent[group] = group_consistent.get(group, True) and right
    if not data:
        return {}
    return {
        "accuracy": correct / len(data),
        "consistency": sum(group_consistent.values()) / len(group_consistent),
    }


__all__ = [
    "VQA_ANSWER_TYPES",
    "datum_score",
    "gqa_is_open",
    "gqa_scores",
    "gqa_structural_type",
    "label_score",
    "nlvr2_group",
    "nlvr2_correct",
    "nlvr2_label",
    "nlvr2_scores",
    "vqa_answer_type",
    "vqa_scores",
    "vqa_soft_score",
]
