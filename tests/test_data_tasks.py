"""Task JSON readers on hand-made fixtures in the authors' formats, prediction files, VQA soft-score preprocessing."""

import json

import pytest

from lxmert.data.task_files import (
    load_gqa,
    load_nlvr2,
    load_pretrain,
    load_vqa,
    read_nlvr2_predictions,
    write_gqa_predictions,
    write_nlvr2_predictions,
    write_vqa_predictions,
)
from training.data.vqa_softscore import (
    answer_vocabulary,
    multiple_choice_answer,
    preprocess_answer,
    soft_label,
)

# One item of each file, as the authors' data/{vqa,gqa,nlvr2,lxmert}/*.json hold them.
VQA = [
    {
        "answer_type": "other",
        "img_id": "COCO_train2014_000000458752",
        "label": {"net": 1},
        "question_id": 458752000,
        "question_type": "what is this",
        "sent": "What is this photo taken looking through?",
    }
]
VQA_TEST = [  # the real test split has no label
    {
        "answer_type": "yes/no",
        "img_id": "COCO_test2015_000000262144",
        "question_id": 262144000,
        "question_type": "is the",
        "sent": "Is the ball flying towards the batter?",
    }
]
GQA = [
    {
        "img_id": "2375429",
        "label": {"pipe": 1.0},
        "question_id": "07333408",
        "sent": "What is on the white wall?",
    }
]
NLVR2 = [
    {
        "identifier": "train-10171-0-0",
        "img0": "train-10171-0-img0",
        "img1": "train-10171-0-img1",
        "label": 0,
        "sent": "An image shows one leather pencil case, displayed open with writing implements tucked inside.",
        "uid": "nlvr2_train_0",
    }
]
PRETRAIN = [
    {
        "img_id": "COCO_val2014_000000000042",
        "sentf": {
            "mscoco": ["A dog sits on a couch.", "A brown dog."],
            "vqa": ["What color is the dog?", "Is it?"],
        },
        "labelf": {"vqa": [{"brown": 1.0, "tan": 0.3}, {"yes": 0.9}]},
    }
]


def write(tmp_path, name, payload):
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return path


@pytest.mark.parametrize(
    "loader, payload",
    [(load_vqa, VQA), (load_vqa, VQA_TEST), (load_gqa, GQA), (load_nlvr2, NLVR2), (load_pretrain, PRETRAIN)],
)
def test_real_format_fixtures_load_unchanged(tmp_path, loader, payload):
    assert loader(write(tmp_path, "data.json", payload)) == payload


def test_missing_key_names_the_file_item_and_key(tmp_path):
    broken = [dict(VQA[0]), {k: v for k, v in VQA[0].items() if k != "question_type"}]
    with pytest.raises(ValueError, match=r"item 1: missing key 'question_type'"):
        load_vqa(write(tmp_path, "v.json", broken))


def test_wrong_types_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="question_id"):
        load_gqa(write(tmp_path, "g.json", [{**GQA[0], "question_id": 7333408}]))
    with pytest.raises(ValueError, match="0 or 1"):
        load_nlvr2(write(tmp_path, "n.json", [{**NLVR2[0], "label": 2}]))
    misaligned = [{**PRETRAIN[0], "labelf": {"vqa": [{"yes": 1.0}]}}]
    with pytest.raises(ValueError, match="not aligned"):
        load_pretrain(write(tmp_path, "p.json", misaligned))


def test_prediction_files_have_the_evaluators_layout(tmp_path):
    write_vqa_predictions(tmp_path / "vqa.json", {458752000: "net", 1: "2"})
    assert json.loads((tmp_path / "vqa.json").read_text()) == [
        {"answer": "net", "question_id": 458752000},
        {"answer": "2", "question_id": 1},
    ]
    write_gqa_predictions(tmp_path / "gqa.json", {"07333408": "pipe"})
    assert json.loads((tmp_path / "gqa.json").read_text()) == [
        {"prediction": "pipe", "questionId": "07333408"}
    ]
    write_nlvr2_predictions(tmp_path / "n.csv", {"test1-0-1-0": True, "test1-0-2-0": 0})
    assert (tmp_path / "n.csv").read_text() == "test1-0-1-0,True\ntest1-0-2-0,False\n"
    assert read_nlvr2_predictions(tmp_path / "n.csv") == {"test1-0-1-0": True, "test1-0-2-0": False}


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Two.", "2"),
        ("a Red!", "red"),
        ("the cat's toy", "cat's toy"),
        ("dont know", "don't know"),
        ("1,000", "1000"),
        ("3.5", "3.5"),  # a period before a digit stays
        ("left-hand", "left hand"),  # no space around '-': it becomes one
        ("yes - no", "yes no"),  # a space next to '-': it is dropped
        ("grey", "grey"),  # VQA's preprocessing keeps British spelling (the authors' normaliser does not)
    ],
)
def test_preprocess_answer_hand_computed(raw, expected):
    assert preprocess_answer(raw) == expected


def test_soft_label_counts_preprocessed_answers_and_drops_out_of_vocabulary():
    answers = ["Red", "red.", "red", "red", "orange", "orange", "rde", "a red", "red", "grey"]
    vocabulary = {"red": 0, "orange": 1, "grey": 2}
    assert soft_label(answers, vocabulary) == {"red": 1.0, "orange": 0.6, "grey": 0.3}
    assert soft_label(["red", "orange", "orange", "orange"], vocabulary) == {"red": 0.3, "orange": 0.9}
    assert multiple_choice_answer(["Two", "2", "3"]) == "2"


def test_answer_vocabulary_counts_distinct_questions():
    questions = [(1, "yes"), (1, "yes"), (2, "Yes"), (3, "no"), (4, "two"), (5, "2")]
    assert answer_vocabulary(questions, min_occurrence=2) == ["yes", "2"]
