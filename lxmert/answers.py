"""Answer tables: the authors' answer normaliser and an index ↔ answer-string table.

``normalize_answer`` is ``AnswerTable.convert_ans`` of the authors' ``src/pretrain/qa_answer_table.py``; it decides
which answers of a task table match the 9500-answer pre-training table, so it is kept character for character.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from .fileio import atomic_write_text, read_json

# The authors' ANS_CONVERT: articles on the two most frequent people answers, number words, British spelling.
ANSWER_CONVERT = {
    "a man": "man",
    "the man": "man",
    "a woman": "woman",
    "the woman": "woman",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "grey": "gray",
}


def normalize_answer(ans: str) -> str:
    """Normalise an answer string as the authors do before looking it up in an answer table.

    Lower-cases, drops one trailing ``.``, then a leading ``a ``, ``an `` and ``the `` (in that order, each at
    most once), then maps number words one..ten to digits and ``grey`` to ``gray``.

    Args:
        ans: a raw answer, e.g. ``"Two."`` or ``"the table"``.

    Returns:
        The normalised answer, e.g. ``"2"`` or ``"table"``; ``""`` for an empty answer.
    """
    if not ans:
        return ""
    ans = ans.lower()
    if ans[-1] == ".":
        ans = ans[:-1].strip()
    # Sequential ifs, not elif, as in the authors' code: "a the cat" loses both articles.
    if ans.startswith("a "):
        ans = ans[2:].strip()
    if ans.startswith("an "):
        ans = ans[3:].strip()
    if ans.startswith("the "):
        ans = ans[4:].strip()
    return ANSWER_CONVERT.get(ans, ans)


class AnswerTable:
    """An ordered answer vocabulary: ``label2ans[i]`` is the answer of classifier output ``i``.

    Args:
        answers: the answers in label order; they must be distinct strings.

    Raises:
        ValueError: an answer is not a string or appears twice (the message names its label).
    """

    def __init__(self, answers: Iterable[str]):
        self.label2ans: list[str] = list(answers)
        self.ans2label: dict[str, int] = {}
        for label, ans in enumerate(self.label2ans):
            if not isinstance(ans, str):
                raise ValueError(f"answer {label} is a {type(ans).__name__}, expected a string: {ans!r:.40}")
            if ans in self.ans2label:
                raise ValueError(f"answer {ans!r} appears twice (labels {self.ans2label[ans]} and {label})")
            self.ans2label[ans] = label

    def __len__(self) -> int:
        return len(self.label2ans)

    def __contains__(self, ans: object) -> bool:
        return ans in self.ans2label

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnswerTable) and self.label2ans == other.label2ans

    def __repr__(self) -> str:
        head = ", ".join(repr(a) for a in self.label2ans[:5])
        return f"AnswerTable({len(self)} answers: {head}{', ...' if len(self) > 5 else ''})"

    def label(self, ans: str, normalize: bool = True) -> int | None:
        """The label of ``ans`` (normalised first unless ``normalize=False``), or None if it is not in the table."""
        return self.ans2label.get(normalize_answer(ans) if normalize else ans)

    def answer(self, label: int) -> str:
        return self.label2ans[label]

    @classmethod
    def from_label2ans(cls, path: str | Path) -> AnswerTable:
        """Read the authors' ``trainval_label2ans.json``: a JSON list of answers in label order."""
        values = read_json(path)
        if not isinstance(values, list):
            raise ValueError(f"{path} must hold a JSON list of answers, got a {type(values).__name__}")
        return _table_from(path, values)

    @classmethod
    def from_ans2label(cls, path: str | Path) -> AnswerTable:
        """Read the authors' ``trainval_ans2label.json``: a JSON object answer → label, labels 0..N-1."""
        values = read_json(path)
        if not isinstance(values, dict):
            raise ValueError(f"{path} must hold a JSON object answer → label, got a {type(values).__name__}")
        labels = [
            label for label in values.values() if isinstance(label, int) and not isinstance(label, bool)
        ]
        if sorted(labels) != list(range(len(values))):
            raise ValueError(f"{path}: labels must be exactly 0..{len(values) - 1}, each once, as integers")
        return _table_from(path, sorted(values, key=values.__getitem__))

    @classmethod
    def from_all_ans(cls, path: str | Path, dsets: Sequence[str] | None = None) -> AnswerTable:
        """Read the authors' ``all_ans.json`` (a list of ``{"ans": str, "dsets": [str, ...]}``).

        Args:
            path: the file.
            dsets: keep only answers used by one of these data sets (e.g. ``["vqa", "gqa"]``); all if None.
        """
        values = read_json(path)
        if not isinstance(values, list) or not all(
            isinstance(v, dict)
            and "ans" in v
            and isinstance(v.get("dsets", []), list)
            and all(isinstance(d, str) for d in v.get("dsets", []))
            for v in values
        ):
            raise ValueError(f"{path} must hold a JSON list of {{'ans': str, 'dsets': [str, ...]}} objects")
        wanted = None if dsets is None else set(dsets)
        return _table_from(
            path, [v["ans"] for v in values if wanted is None or wanted & set(v.get("dsets", ()))]
        )

    @classmethod
    def load(cls, path: str | Path) -> AnswerTable:
        """Read any of the three layouts above, told apart by the JSON they hold.

        Raises:
            ValueError: naming the file, when it is not UTF-8 JSON in one of the layouts, or an answer is not a
                string or appears twice.
        """
        values = read_json(path)
        if isinstance(values, dict):
            return cls.from_ans2label(path)
        if isinstance(values, list) and values and isinstance(values[0], dict):
            return cls.from_all_ans(path)
        return cls.from_label2ans(path)

    def save(self, path: str | Path) -> None:
        """Write the answers as a JSON list in label order (the ``trainval_label2ans.json`` layout), atomically."""
        atomic_write_text(path, json.dumps(self.label2ans, ensure_ascii=False, indent=0) + "\n")

    def save_ans2label(self, path: str | Path) -> None:
        """Write the ``trainval_ans2label.json`` layout (JSON object answer → label), atomically."""
        atomic_write_text(path, json.dumps(self.ans2label, ensure_ascii=False, indent=0) + "\n")


def _table_from(path: str | Path, answers: list) -> AnswerTable:
    """The table of answers read from ``path``; a bad answer's message names the file."""
    try:
        return AnswerTable(answers)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


__all__ = ["ANSWER_CONVERT", "AnswerTable", "normalize_answer"]
