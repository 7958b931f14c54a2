"""The model set manifest: a round trip, and every way a manifest is refused, by field; a checkpoint named by its
hub id is checked against the local hub cache only."""

from __future__ import annotations

import json

import pytest

from lxmert.model_set_checks import checkpoint_problem
from lxmert.model_sets import (
    MODEL_SET_FILE,
    CheckpointEntry,
    ModelSet,
    ModelSetError,
    read_model_set,
    write_model_set,
)


def _manifest(root, **fields):
    values = {
        "format": "lxmert-model-set",
        "version": 1,
        "name": "real",
        "world": "real",
        "detector": "detector",
        "checkpoints": {"vqa": {"path": "vqa"}},
        **fields,
    }
    (root / MODEL_SET_FILE).write_text(json.dumps(values))
    return root


def test_round_trip_keeps_relative_paths_and_order(tmp_path):
    written = ModelSet(
        tmp_path,
        "LXMERT",
        "real",
        tmp_path / "detector",
        {
            "vqa": CheckpointEntry(tmp_path / "vqa", answers=tmp_path / "vqa" / "trainval_label2ans.json"),
            "authors": CheckpointEntry(tmp_path / "a" / "model_LXRT.pth", vocab=tmp_path / "a" / "vocab.txt"),
            "gqa": CheckpointEntry(hub="unc-nlp/lxmert-gqa-uncased", vocab=tmp_path / "a" / "vocab.txt"),
        },
        default="authors",
    )
    path = write_model_set(written)
    on_disk = json.loads(path.read_text())
    assert (
        on_disk["detector"] == "detector" and on_disk["checkpoints"]["authors"]["path"] == "a/model_LXRT.pth"
    )
    read = read_model_set(tmp_path)
    assert read == ModelSet(
        tmp_path.resolve(),
        **{k: getattr(written, k) for k in ("name", "world", "detector", "checkpoints", "default")},
    )
    assert list(read.checkpoints) == ["vqa", "authors", "gqa"]
    assert on_disk["checkpoints"]["gqa"] == {"hub": "unc-nlp/lxmert-gqa-uncased", "vocab": "a/vocab.txt"}
    assert (
        read.checkpoints["gqa"].path is None
        and read.checkpoints["gqa"].location == "unc-nlp/lxmert-gqa-uncased"
    )


def test_default_is_the_first_checkpoint_when_not_named(tmp_path):
    assert read_model_set(_manifest(tmp_path)).default == "vqa"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"format": "other"}, "not a lxmert-model-set version 1"),
        ({"version": 2}, "version 2"),
        ({"world": "mars"}, "world must be one of"),
        ({"detector": "/etc"}, "detector must be relative"),
        ({"detector": "../outside"}, "detector leads outside"),
        ({"detector": 3}, "detector must be a non-empty relative path"),
        ({"checkpoints": {}}, "checkpoints must be a non-empty object"),
        ({"checkpoints": {"a": "vqa"}}, r"checkpoints\['a'\] must be an object with a path or a hub id"),
        (
            {"checkpoints": {"a": {"vocab": "v.txt"}}},
            r"checkpoints\['a'\] must be an object with a path or a hub",
        ),
        (
            {"checkpoints": {"a": {"path": "x", "hub": "unc-nlp/lxmert-vqa-uncased"}}},
            r"checkpoints\['a'\] must be an object with a path or a hub id",
        ),
        (
            {"checkpoints": {"a": {"hub": "../../etc"}}},
            r"checkpoints\['a'\].hub must be a hub id \(owner/name\)",
        ),
        ({"checkpoints": {"a": {"hub": "/abs/path"}}}, r"checkpoints\['a'\].hub must be a hub id"),
        ({"checkpoints": {"a": {"hub": ["unc-nlp"]}}}, r"checkpoints\['a'\].hub must be a hub id"),
        (
            {"checkpoints": {"a": {"path": "x", "weights": "y"}}},
            r"checkpoints\['a'\] has unknown fields \['weights'\]",
        ),
        (
            {"checkpoints": {"a": {"path": "x", "vocab": "../../v.txt"}}},
            r"checkpoints\['a'\].vocab leads outside",
        ),
        ({"default": "gqa"}, "default 'gqa' is not one of the checkpoints"),
        ({"colour": "red"}, r"unknown fields \['colour'\]"),
        ({"name": ""}, "name must be a non-empty string"),
    ],
)
def test_bad_manifest_is_refused_naming_the_field(tmp_path, fields, message):
    with pytest.raises(ModelSetError, match=message) as caught:
        read_model_set(_manifest(tmp_path, **fields))
    assert str(tmp_path) in str(caught.value)


def test_a_symlink_out_of_the_set_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "set"
    root.mkdir()
    (root / "detector").symlink_to(outside)
    with pytest.raises(ModelSetError, match="detector leads outside"):
        read_model_set(_manifest(root))


def test_missing_or_broken_manifest_is_a_model_set_error(tmp_path):
    with pytest.raises(ModelSetError, match=MODEL_SET_FILE):
        read_model_set(tmp_path)
    (tmp_path / MODEL_SET_FILE).write_text("[1, 2]")
    with pytest.raises(ModelSetError, match="must hold a JSON object"):
        read_model_set(tmp_path)


def test_a_hub_checkpoint_is_checked_in_the_local_cache_and_never_downloaded(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    entry = CheckpointEntry(hub="unc-nlp/lxmert-vqa-uncased")
    problem = checkpoint_problem(entry, 2048)
    assert problem is not None
    assert "python -m lxmert.hub download vqa --to DIR" in problem
    assert str(tmp_path / "empty-cache" / "models--unc-nlp--lxmert-vqa-uncased") in problem
    assert not (tmp_path / "empty-cache").exists()  # nothing was fetched into it


def test_an_entry_is_a_path_or_a_hub_id_never_both_nor_neither(tmp_path):
    with pytest.raises(ValueError, match="either a path or a hub id"):
        CheckpointEntry(tmp_path, hub="unc-nlp/lxmert-vqa-uncased")
    with pytest.raises(ValueError, match="either a path or a hub id"):
        CheckpointEntry(vocab=tmp_path / "vocab.txt")
