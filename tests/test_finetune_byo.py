"""Bring-your-own data: reading question tables and converting them to the VQA format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lxmert.data.task_files import load_vqa
from training.tasks.own_data import assign_splits, convert, image_id, read_questions, write_data

CSV = """image,question,answer,split
a.png,What colour is the ball?,Red|red|red|blue,
a.png,How many balls?,two,
b.png,What colour is the ball?,blue,
sub/c.jpg,Is there a cat?,yes,
d.png,Is there a dog?,,
"""


def test_read_csv_rows(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text(CSV)
    rows = read_questions(path)
    assert [r["question_id"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["answers"] == ["Red", "red", "red", "blue"] and rows[4]["answers"] == []
    assert rows[0]["split"] is None


def test_read_json_rows_with_lists_and_ids(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps([
        {"image": "a.png", "question": "q1", "answer": ["x", "y"], "question_id": 7, "split": "valid"},
        {"image": "b.png", "question": "q2", "answer": "z", "question_id": "8"},
    ]))  # fmt: skip
    rows = read_questions(path)
    assert [(r["question_id"], r["answers"], r["split"]) for r in rows] == [
        (7, ["x", "y"], "valid"),
        (8, ["z"], None),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("image,question,answer\n,q,a\n", "row 1: missing 'image'"),
        ("image,question,answer,split\na.png,q,,train\n", "row 1: a train question needs an answer"),
        ("image,question,answer,split\na.png,q,a,dev\n", "split must be one of"),
        ("image,question,answer,question_id\na.png,q,a,x1\n", "question_id must be an integer"),
        ("image,question,answer,question_id\na.png,q,a,3\nb.png,q,a,3\n", "question_id 3 appears twice"),
    ],
)
def test_bad_rows_are_named(tmp_path, text, message):
    path = tmp_path / "q.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_questions(path)


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("q.json", b'[{"image": ', "is not valid JSON"),
        ("q.json", b"\xff\xfe[]", "is not UTF-8"),
        ("q.json", b"{}", "expected a JSON list"),
        ("q.csv", b"image,question,answer\n\xff.png,q,a\n", "is not UTF-8"),
    ],
)
def test_unreadable_question_files_are_named(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message) as err:
        read_questions(path)
    assert str(path) in str(err.value)


def test_split_assignment_keeps_images_whole(tmp_path):
    rows = [{"image": f"{i // 3}.png", "answers": ["a"], "split": None, "question_id": i} for i in range(30)]
    rows.append({"image": "z.png", "answers": [], "split": None, "question_id": 99})
    assign_splits(rows, valid_fraction=0.3, seed=0)
    split_of_image: dict[str, set] = {}
    for r in rows:
        split_of_image.setdefault(r["image"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of_image.values())
    assert sum(s == {"valid"} for s in split_of_image.values()) == 3  # ceil(0.3 × 10 images)
    assert split_of_image["z.png"] == {"test"}


def test_convert_to_vqa_format(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text(CSV)
    rows = read_questions(path)
    assign_splits(rows, valid_fraction=0.0, seed=0)
    splits, table = convert(rows, min_answer_count=1)
    # Best answers of the labelled questions, in order of first appearance: red, 2, blue, yes.
    assert table.label2ans == ["red", "2", "blue", "yes"]
    train = {d["question_id"]: d for d in splits["train"]}
    # Four annotators: "red" ×3 → 0.9, "blue" ×1 → 0.3 (VQA soft scores).
    assert train[1]["label"] == {"red": 0.9, "blue": 0.3} and train[1]["answer_type"] == "other"
    # One answer is taken as ground truth: 1.0; "two" is normalised to "2".
    assert train[2]["label"] == {"2": 1.0} and train[2]["answer_type"] == "number"
    assert train[4]["img_id"] == "sub/c" and train[4]["answer_type"] == "yes/no"
    assert train[2]["question_type"] == "how many"
    assert [d["question_id"] for d in splits["test"]] == [5] and "label" not in splits["test"][0]

    write_data(tmp_path / "data", splits, table)
    assert len(load_vqa(tmp_path / "data" / "train.json")) == 4  # the format training.finetune reads
    assert json.loads((tmp_path / "data" / "trainval_ans2label.json").read_text()) == {
        "red": 0, "2": 1, "blue": 2, "yes": 3,
    }  # fmt: skip


def test_min_answer_count_filters_rare_answers(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text(CSV)
    rows = read_questions(path)
    assign_splits(rows, valid_fraction=0.0, seed=0)
    with pytest.raises(ValueError, match="lower min_answer_count"):
        convert(rows, min_answer_count=2)


def test_image_id_is_the_relative_path_without_suffix():
    assert image_id("kitchen/001.jpg") == "kitchen/001"


def _square_image(path, colour: tuple[int, int, int], corner: int) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), (200, 200, 200))
    ImageDraw.Draw(image).rectangle([corner, corner, corner + 20, corner + 20], fill=colour)
    image.save(path)


def _save_init(tmp_path: Path, visual_feat_dim: int) -> None:
    """A tiny random ``LxmertForPreTraining`` at ``tmp_path/init`` for the square questions, with their word piece
    vocabulary (also at ``tmp_path/vocab.txt``) and the answers red, no and yes."""
    from lxmert.config import LxmertConfig
    from lxmert.modeling import LxmertForPreTraining
    from lxmert.wordpiece import train_wordpiece

    tokenizer = train_wordpiece(
        ["what colour is the square", "is there a square"] * 5, 40, tmp_path / "vocab.txt"
    )
    config = LxmertConfig.preset(
        "tiny", vocab_size=tokenizer.vocab_size, visual_feat_dim=visual_feat_dim, num_qa_labels=3, l_layers=1,
        r_layers=1, x_layers=1, num_object_labels=3, num_attr_labels=4,
    )  # fmt: skip
    LxmertForPreTraining(config).save_pretrained(
        tmp_path / "init", tokenizer=tokenizer, answers=["red", "no", "yes"]
    )


def _byo(tmp_path: Path, images: Path, epochs: int) -> Path:
    """Bring-your-own fine-tuning of ``tmp_path/init`` on ``images`` and ``tmp_path/questions.csv`` with the
    detector at ``tmp_path/detector``; returns its output directory."""
    from training.tasks.own_data import main

    out = tmp_path / "byo"
    main([
        "--images", str(images), "--questions", str(tmp_path / "questions.csv"), "--out", str(out),
        "--detector", str(tmp_path / "detector"), "--init", str(tmp_path / "init"), "--epochs", str(epochs),
        "--batch-size", "4", "--valid-fraction", "0.25", "--device", "cpu", "--threads", "1",
    ])  # fmt: skip
    return out


@pytest.mark.slow
def test_byo_end_to_end(tmp_path):
    """A folder of generated images + a CSV → features → a fine-tuned model → test predictions."""
    from lxmert.data.store import FeatureStore
    from tests.test_detection_model import tiny_detector

    images = tmp_path / "images"
    (images / "more").mkdir(parents=True)
    lines = ["image,question,answer"]
    for i in range(10):
        name = f"more/{i}.png" if i % 4 == 0 else f"{i}.png"
        red = i % 2 == 0
        _square_image(images / name, (220, 30, 30) if red else (30, 30, 220), 5 + 3 * i)
        answer = "red" if red else "blue"
        lines += [f"{name},What colour is the square?,{answer}|{answer}|{answer}|{answer}",
                  f"{name},Is there a square?,yes" if i < 8 else f"{name},Is there a square?,"]  # fmt: skip
    (tmp_path / "questions.csv").write_text("\n".join(lines) + "\n")

    tiny_detector().save_pretrained(tmp_path / "detector")
    _save_init(tmp_path, visual_feat_dim=32)
    out = _byo(tmp_path, images, epochs=2)

    assert sorted(FeatureStore(out / "features").ids) == sorted(
        [f"{i}" for i in range(10) if i % 4] + [f"more/{i}" for i in (0, 4, 8)]
    )
    train, valid = (load_vqa(out / "data" / f"{s}.json") for s in ("train", "valid"))
    assert len(train) + len(valid) == 18 and valid
    assert {d["img_id"] for d in train}.isdisjoint({d["img_id"] for d in valid})
    assert (out / "model" / "best" / "task_config.json").is_file()
    predictions = json.loads((out / "model" / "predictions" / "test_predict.json").read_text())
    assert sorted(p["question_id"] for p in predictions) == [18, 20]  # the two unanswered questions
    assert all(p["answer"] in ("red", "blue", "yes") for p in predictions)


def test_byo_stops_before_fine_tuning_when_an_image_cannot_be_extracted(tmp_path):
    """The question's image is unreadable: the error names it and why, instead of a missing-features error."""
    from tests.test_detection_model import tiny_detector
    from training.tasks.own_data import main

    images = tmp_path / "images"
    images.mkdir()
    _square_image(images / "good.png", (220, 30, 30), 5)
    _square_image(images / "fine.png", (30, 30, 220), 9)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (tmp_path / "questions.csv").write_text(
        "image,question,answer,split\ngood.png,What colour?,red,train\nfine.png,What colour?,blue,valid\n"
        "broken.jpg,What colour?,red,train\n"
    )
    tiny_detector().save_pretrained(tmp_path / "detector")
    with pytest.raises(ValueError, match=r"1 image of the questions could not be extracted.*broken\.jpg"):
        main([
            "--images", str(images), "--questions", str(tmp_path / "questions.csv"), "--out", str(tmp_path / "out"),
            "--detector", str(tmp_path / "detector"), "--init", str(tmp_path / "no-init"), "--device", "cpu",
        ])  # fmt: skip


@pytest.mark.slow  # writes a 260 MB pickle and a 260 MB detector directory; ResNet-101 on six small images
def test_byo_runs_on_a_detector_directory_converted_from_the_published_layout(tmp_path):
    """``lxmert.detection.convert`` on a detectron2 .pkl (random weights) gives a --detector that byo takes."""
    import pickle

    from butd_layouts import detectron2_weights

    from lxmert.data.store import FeatureStore
    from lxmert.detection import DetectorConfig
    from lxmert.detection.convert import main as convert

    (tmp_path / "vg.pkl").write_bytes(pickle.dumps({"model": detectron2_weights(3)}))
    convert([str(tmp_path / "vg.pkl"), "--out", str(tmp_path / "detector"), "--num-regions", "10"])
    # Smaller than the published 600 px and 300 proposals, for CPU time; still network="caffe".
    config = DetectorConfig.from_json_file(tmp_path / "detector" / "config.json")
    config.min_size, config.max_size, config.rpn_post_nms_top_n_test = 96, 128, 20
    config.to_json_file(tmp_path / "detector" / "config.json")

    images = tmp_path / "images"
    images.mkdir()
    lines = ["image,question,answer"]
    for i in range(6):
        answer = "red" if i % 2 == 0 else "blue"
        _square_image(images / f"{i}.png", (220, 30, 30) if answer == "red" else (30, 30, 220), 5 + 3 * i)
        lines += [f"{i}.png,What colour is the square?,{answer}", f"{i}.png,Is there a square?,yes" if i < 5
                  else f"{i}.png,Is there a square?,"]  # fmt: skip
    (tmp_path / "questions.csv").write_text("\n".join(lines) + "\n")
    _save_init(tmp_path, visual_feat_dim=2048)
    out = _byo(tmp_path, images, epochs=1)

    store = FeatureStore(out / "features")
    assert sorted(store.ids) == [str(i) for i in range(6)]
    assert (store.num_boxes, store.feature_dim) == (10, 2048)
    row = store.get("3")
    assert row["num_boxes"] == 10 and (row["img_h"], row["img_w"]) == (64, 64)
    assert 0 <= row["objects_id"].min() and row["objects_id"].max() < 1600
    predictions = json.loads((out / "model" / "predictions" / "test_predict.json").read_text())
    assert [p["question_id"] for p in predictions] == [12]
