"""The question-only baseline on hand-made data: the majority answer per template, scored by the task evaluators."""

import pytest

from training.tasks.answer_priors import OVERALL, answer_shares
from training.world.template_priors import task_baseline


def gqa(qid, family, answer, structural="verify"):
    return {
        "question_id": qid,
        "img_id": "1",
        "sent": "?",
        "label": {answer: 1.0},
        "types": {"detailed": family, "structural": structural},
    }


def test_gqa_majority_per_template():
    train = [gqa("a", "exist", "yes"), gqa("b", "exist", "yes"), gqa("c", "exist", "no")]
    train += [
        gqa("d", "query_colour", "red", "query"),
        gqa("e", "query_colour", "blue", "query"),
        gqa("f", "query_colour", "red", "query"),
    ]
    valid = [
        gqa("g", "exist", "yes"),
        gqa("h", "exist", "no"),
        gqa("i", "query_colour", "blue", "query"),
        gqa("j", "unseen", "yes"),
    ]
    report = task_baseline("gqa", train, valid)
    assert report.shares["exist"] == (3, "yes", pytest.approx(2 / 3))
    assert report.per_template == {
        "exist": 0.5,
        "query_colour": 0.0,
        "unseen": 1.0,
    }  # unseen -> overall majority "yes"
    assert report.scores["accuracy"] == pytest.approx(0.5)
    assert report.scores["open"] == 0.0 and report.scores["binary"] == pytest.approx(2 / 3)


def test_vqa_scores_soft_labels():
    def vqa(qid, qtype, label):
        return {
            "question_id": qid,
            "img_id": "1",
            "sent": "?",
            "question_type": qtype,
            "answer_type": "other",
            "label": label,
        }

    train = [
        vqa(1, "how many", {"2": 1.0}),
        vqa(2, "how many", {"2": 0.6, "3": 1.0}),
        vqa(3, "how many", {"2": 1.0}),
    ]
    valid = [vqa(4, "how many", {"2": 0.3, "3": 1.0})]
    report = task_baseline("vqa", train, valid)
    assert report.shares["how many"][1] == "2" and report.scores["accuracy"] == pytest.approx(0.3)


def test_nlvr2_constant_prediction_is_never_consistent_on_mixed_sets():
    def item(ident, label):
        return {
            "identifier": ident,
            "img0": "x",
            "img1": "y",
            "sent": "s",
            "uid": ident,
            "label": label,
            "family": "f",
        }

    train = [item("train-0-0-0", 1), item("train-0-1-0", 1), item("train-0-2-0", 0)]
    valid = [item("dev-0-0-0", 1), item("dev-0-1-0", 0)]
    report = task_baseline("nlvr2", train, valid)
    assert report.scores == {"accuracy": 0.5, "consistency": 0.0}


def test_answer_shares_include_the_overall_row():
    data = [{"t": "a", "y": 1}, {"t": "a", "y": 1}, {"t": "b", "y": 2}, {"t": "b", "y": 3}]
    shares = answer_shares(data, lambda d: d["t"], lambda d: d["y"])
    assert shares["a"] == (2, 1, 1.0) and shares[OVERALL] == (4, 1, 0.5)
