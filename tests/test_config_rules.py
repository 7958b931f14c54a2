"""Config fields checked by type and range; the strict readers name the file; answer tables name the file."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import pytest

from lxmert.answers import AnswerTable
from lxmert.checkpoints import CheckpointError, read_meta
from lxmert.config import FIELD_RULES, PRESETS, LxmertConfig
from lxmert.config_rules import ConfigError, Float, Int
from lxmert.data.task_files import load_task
from lxmert.detection.config import FIELD_RULES as DETECTOR_RULES
from lxmert.detection.config import PRESETS as DETECTOR_PRESETS
from lxmert.detection.config import DetectorConfig
from lxmert.detection.files import read_vocab
from lxmert.fileio import read_json, read_json_object, read_text

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "default"
BINARY = bytes(range(256))


def test_every_field_of_both_configs_has_exactly_one_rule():
    assert set(FIELD_RULES) == {f.name for f in dataclasses.fields(LxmertConfig)}
    assert set(DETECTOR_RULES) == {f.name for f in dataclasses.fields(DetectorConfig)}


def test_published_and_shipped_configs_pass():
    transformers = pytest.importorskip("transformers")
    # transformers' LxmertConfig defaults are unc-nlp/lxmert-base-uncased: BERT-base vocabulary (30522),
    # 9/5/5 layers, 1600 objects, 400 attributes, 9500 QA answers.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' bookkeeping keys we do not model
        published = LxmertConfig.from_dict(transformers.LxmertConfig().to_dict())
    assert (published.vocab_size, published.num_qa_labels, published.num_object_labels) == (30522, 9500, 1600)
    for num_qa_labels in (3129, 1842):  # the VQA and GQA heads
        LxmertConfig(num_qa_labels=num_qa_labels)
    for name in PRESETS:
        LxmertConfig.preset(name)
    for name in DETECTOR_PRESETS:
        DetectorConfig.preset(name)
    for checkpoint in ("model", "pretrained"):
        LxmertConfig.from_json_file(ASSETS / checkpoint / "config.json")
    DetectorConfig.from_json_file(ASSETS / "detector" / "config.json")


@pytest.mark.parametrize(
    "field, value, problem",
    [
        ("hidden_size", "64", "must be an integer, got str '64'"),
        ("num_attention_heads", True, "must be an integer, got bool True"),
        ("num_attention_heads", 0, r"must lie in \[1, 256\], got 0"),
        ("l_layers", None, "must be an integer, got NoneType None"),
        ("vocab_size", 10**9, r"must lie in \[1, 262144\], got 1000000000"),
        ("hidden_dropout_prob", float("nan"), "must be finite, got nan"),
        ("layer_norm_eps", 0.0, r"must lie in \(0.0, 1.0\], got 0.0"),
        ("hidden_act", "relu", r"must be one of \['gelu'\], got str 'relu'"),
        ("task_qa", 1, "must be true or false, got int 1"),
    ],
)
def test_a_bad_lxmert_field_is_named_with_its_file(tmp_path, field, value, problem):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LxmertConfig.preset("tiny").to_dict(), field: value}))
    with pytest.raises(ConfigError, match=rf"config\.json: LxmertConfig field '{field}' {problem}"):
        LxmertConfig.from_json_file(path)
    with pytest.raises(ConfigError, match=f"'{field}'"):  # the same check for a config built in code
        LxmertConfig.preset("tiny", **{field: value})


@pytest.mark.parametrize(
    "field, value, problem",
    [
        ("backbone", "vgg16", "must be one of"),
        ("num_classes", "1600", "must be an integer"),
        ("small_channels", [8, "16"], "item 1 must be an integer"),
        ("small_channels", [], "must have 1 to 16 items"),
        ("pixel_std", [0.25, 0.0, 0.25], r"item 1 must lie in \(0.0, 1.0\]"),
        ("pixel_mean", [0.5, 0.5], "must have 3 to 3 items"),
        ("anchor_ratios", 0.5, "must be a list, got float"),
        ("nms_threshold", float("inf"), "must be finite"),
        ("max_image_pixels", 10**13, "must lie in"),
    ],
)
def test_a_bad_detector_field_is_named_with_its_file(tmp_path, field, value, problem):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**DetectorConfig.preset("small").to_dict(), field: value}))
    with pytest.raises(ConfigError, match=rf"config\.json: DetectorConfig field '{field}' {problem}"):
        DetectorConfig.from_json_file(path)


def test_rules_take_their_bounds_and_refuse_bool_as_a_number():
    assert Int(1, 3).problem(3) is None and Int(1, 3).problem(4) and Int(1, 3).problem(False)
    assert Float(0, 1).problem(0) is None and Float(0, 1, above_low=True).problem(0)
    assert Float(0, 1).problem(True) and Float(0, 1).problem(float("-inf"))


@pytest.mark.parametrize(
    "content, problem",
    [
        (BINARY, r"is not UTF-8 text \(at byte 128\)"),
        (b'{"a": ', "is not valid JSON"),
        (b"[" * 100_000, "is not valid JSON: nested too deeply"),
        (b"[1, 2]", "must hold a JSON object, got a list"),
    ],
)
def test_the_strict_json_reader_names_the_file(tmp_path, content, problem):
    path = tmp_path / "odd.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"odd\.json {problem}"):
        read_json_object(path)
    assert read_meta(tmp_path / "missing") == {}


def test_read_meta_is_the_strict_reader_and_names_the_file(tmp_path):
    # The one way meta.json is read, by load_checkpoint and without the weights alike: absent is empty, anything
    # but a JSON object is refused by name.
    for content in (b'["a list"]', BINARY, b"3", b"{"):
        (tmp_path / "meta.json").write_bytes(content)
        with pytest.raises(CheckpointError, match="meta.json"):
            read_meta(tmp_path)
    (tmp_path / "meta.json").write_text('{"scores": {"accuracy": 0.5}}')
    assert read_meta(tmp_path) == {"scores": {"accuracy": 0.5}}


def test_text_readers_name_the_binary_file(tmp_path):
    vocab = tmp_path / "objects_vocab.txt"
    vocab.write_bytes(BINARY)
    for read in (read_vocab, read_text, read_json):
        with pytest.raises(ValueError, match=r"objects_vocab\.txt is not UTF-8"):
            read(vocab)
    data = tmp_path / "train.json"
    data.write_bytes(BINARY)
    with pytest.raises(ValueError, match=r"train\.json is not UTF-8"):
        load_task(data, "vqa")


@pytest.mark.parametrize(
    "values, problem",
    [
        ([1, 2], r"answer 0 is a int, expected a string"),
        (["yes", None], r"answer 1 is a NoneType"),
        ({"yes": 0, "no": True}, r"labels must be exactly 0\.\.1"),
        ({"yes": 0, "no": "1"}, r"labels must be exactly 0\.\.1"),
        ([{"ans": "yes", "dsets": 3}], r"must hold a JSON list of \{'ans': str"),
        ([{"ans": "yes", "dsets": [["vqa"]]}], r"must hold a JSON list of \{'ans': str"),
        ([{"ans": 7, "dsets": ["vqa"]}], r"answer 0 is a int"),
    ],
)
def test_a_bad_answer_table_is_a_value_error_naming_the_file(tmp_path, values, problem):
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(values))
    with pytest.raises(ValueError, match=rf"answers\.json.*{problem}"):
        AnswerTable.load(path)
