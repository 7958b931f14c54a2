"""The task evaluators against hand-computed cases."""

import pytest

from lxmert.data.metrics import (
    gqa_is_open,
    gqa_scores,
    nlvr2_group,
    nlvr2_label,
    nlvr2_scores,
    vqa_answer_type,
    vqa_scores,
    vqa_soft_score,
)


def test_vqa_soft_score_steps():
    assert [vqa_soft_score(k) for k in range(7)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        vqa_soft_score(-1)


VQA_DATA = [
    {"question_id": 1, "answer_type": "yes/no", "label": {"yes": 1.0, "no": 0.3}},
    {"question_id": 2, "answer_type": "yes/no", "label": {"no": 1.0}},
    {"question_id": 3, "answer_type": "number", "label": {"2": 0.9, "3": 0.6}},
    {"question_id": 4, "answer_type": "other", "label": {"red": 0.3, "blue": 1.0}},
    {"question_id": 5, "answer_type": "other", "label": {}},
]


def test_vqa_scores_overall_and_per_type():
    predictions = {1: "no", 2: "no", 3: "2", 4: "red", 5: "anything", 99: "extra ids are ignored"}
    scores = vqa_scores(predictions, VQA_DATA)
    # 0.3 + 1.0 + 0.9 + 0.3 + 0.0 over 5 questions.
    assert scores["accuracy"] == pytest.approx(2.5 / 5)
    assert scores["yes/no"] == pytest.approx(1.3 / 2)
    assert scores["number"] == pytest.approx(0.9)
    assert scores["other"] == pytest.approx(0.3 / 2)


def test_vqa_scores_refuses_missing_predictions():
    with pytest.raises(ValueError, match="2 of 5 data have no prediction"):
        vqa_scores({1: "yes", 2: "no", 3: "2"}, VQA_DATA)


def test_vqa_answer_type_fallback_from_best_answer():
    assert vqa_answer_type({"label": {"yes": 0.3, "no": 1.0}}) == "yes/no"
    assert vqa_answer_type({"label": {"3": 1.0, "red": 0.3}}) == "number"
    assert vqa_answer_type({"label": {"red": 1.0}}) == "other"
    assert vqa_answer_type({"answer_type": "number", "label": {"red": 1.0}}) == "number"


GQA_DATA = [
    {"question_id": "a", "label": {"yes": 1.0}, "types": {"structural": "verify"}},
    {"question_id": "b", "label": {"pipe": 1.0}, "types": {"structural": "query"}},
    {"question_id": "c", "label": {"left": 1.0}, "types": {"structural": "choose"}},
    {"question_id": "d", "label": {"cup": 1.0}, "types": {"structural": "query"}},
]


def test_gqa_scores_binary_open_structural():
    scores = gqa_scores({"a": "yes", "b": "cup", "c": "left", "d": "cup"}, GQA_DATA)
    assert scores["accuracy"] == pytest.approx(3 / 4)
    # choose is binary in the official eval (open = structural "query" only).
    assert scores["binary"] == pytest.approx(2 / 2)
    assert scores["open"] == pytest.approx(1 / 2)
    assert scores["structural/query"] == pytest.approx(1 / 2)
    assert scores["structural/verify"] == 1.0 and scores["structural/choose"] == 1.0


def test_gqa_binary_fallback_without_types():
    assert not gqa_is_open({"label": {"no": 1.0}})
    assert gqa_is_open({"label": {"pipe": 1.0}})
    scores = gqa_scores({"x": "no", "y": "cup"}, [{"question_id": "x", "label": {"yes": 1.0}},
                                                    {"question_id": "y", "label": {"cup": 1.0}}])  # fmt: skip
    assert scores == {"accuracy": 0.5, "binary": 0.0, "open": 1.0}


def test_nlvr2_group_blanks_third_field():
    assert nlvr2_group("dev-850-0-1") == "dev-850--1"
    assert nlvr2_group("test1-3-12-0") == "test1-3--0"
    with pytest.raises(ValueError):
        nlvr2_group("dev-850")


def test_nlvr2_label_forms():
    assert nlvr2_label(1) is True and nlvr2_label(0) is False
    assert nlvr2_label("True") is True and nlvr2_label("false") is False
    with pytest.raises(ValueError):
        nlvr2_label(2)


def test_nlvr2_accuracy_and_consistency_groups():
    data = [
        # Group dev-1--0: three image pairs for sentence 0 of set 1.
        {"identifier": "dev-1-0-0", "label": 1},
        {"identifier": "dev-1-1-0", "label": 0},
        {"identifier": "dev-1-2-0", "label": "True"},
        # Group dev-1--1: another sentence of the same set.
        {"identifier": "dev-1-0-1", "label": 0},
        # Group dev-2--0.
        {"identifier": "dev-2-0-0", "label": 1},
        {"identifier": "dev-2-1-0", "label": 1},
    ]
    predictions = {
        "dev-1-0-0": True,
        "dev-1-1-0": "True",  # wrong: group dev-1--0 is inconsistent
        "dev-1-2-0": 1,
        "dev-1-0-1": "False",
        "dev-2-0-0": True,
        "dev-2-1-0": "true",
    }
    scores = nlvr2_scores(predictions, data)
    assert scores["accuracy"] == pytest.approx(5 / 6)
    assert scores["consistency"] == pytest.approx(2 / 3)


def test_nlvr2_refuses_missing_predictions():
    with pytest.raises(ValueError, match="NLVR2: 1 of 1"):
        nlvr2_scores({}, [{"identifier": "dev-1-0-0", "label": 1}])
