"""Feature store: random access equals the TSV rows, resumable atomic writes, cheap pickling, shared workers."""

import copy
import json
import os
import pickle
import tempfile

import numpy as np
import pytest
import torch
from test_data_tsv import make_row
from torch.utils.data import DataLoader

from lxmert.data.store import FeatureStore, FeatureStoreWriter
from lxmert.data.tsv import FIELDNAMES, write_tsv
from training.data.convert import main as convert_main

DIM = 8


def write_store(path, rows, **kwargs):
    with FeatureStoreWriter(path, num_boxes=36, feature_dim=DIM, **kwargs) as writer:
        for row in rows:
            writer.add(row)
    return FeatureStore(path)


def assert_same_row(got, expected):
    for key in FIELDNAMES:
        if isinstance(expected[key], np.ndarray):
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
            assert got[key].dtype == expected[key].dtype, key
        else:
            assert got[key] == expected[key], key


def test_get_by_id_returns_the_written_rows_with_their_own_box_count(tmp_path):
    rng = np.random.default_rng(0)
    rows = [make_row(rng, f"img{k}", num_boxes=3 + k, dim=DIM) for k in range(6)]
    store = write_store(tmp_path / "s", rows)
    assert len(store) == 6 and store.ids == [r["img_id"] for r in rows]
    for row in reversed(rows):
        assert_same_row(store.get(row["img_id"]), row)
    assert "img3" in store and "nope" not in store
    with pytest.raises(KeyError, match="nope"):
        store.get("nope")


def test_normalized_boxes_divide_by_width_and_height(tmp_path):
    rng = np.random.default_rng(1)
    row = make_row(rng, "a", num_boxes=2, dim=DIM)
    row["boxes"] = np.array([[0, 0, 160, 120], [16, 12, 80, 60]], dtype=np.float32)
    store = write_store(tmp_path / "s", [row])
    expected = np.array([[0, 0, 1, 1], [0.1, 0.1, 0.5, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(store.get("a")["normalized_boxes"], expected, rtol=1e-6)


def test_boxes_outside_the_image_are_an_error(tmp_path):
    rng = np.random.default_rng(2)
    row = make_row(rng, "a", num_boxes=1, dim=DIM)
    row["boxes"] = np.array([[0, 0, 200, 10]], dtype=np.float32)  # img_w is 160
    store = write_store(tmp_path / "s", [row])
    with pytest.raises(ValueError, match="outside"):
        store.get("a")


def test_resume_skips_committed_ids_and_drops_a_half_written_batch(tmp_path):
    rng = np.random.default_rng(3)
    rows = [make_row(rng, f"img{k}", num_boxes=4, dim=DIM) for k in range(5)]
    path = tmp_path / "s"
    writer = FeatureStoreWriter(path, num_boxes=36, feature_dim=DIM, commit_every=2)
    for row in rows[:3]:
        writer.add(row)  # img0, img1 committed; img2 only buffered
    # A crash in the middle of the next commit: bytes appended, manifest not yet updated.
    with open(path / "features.bin", "ab") as f:
        f.write(b"\x01" * 1000)
    del writer

    resumed = FeatureStoreWriter(path, num_boxes=36, feature_dim=DIM, commit_every=2)
    assert resumed.count == 2 and resumed.has("img1") and not resumed.has("img2")
    assert [resumed.add(r) for r in rows] == [False, False, True, True, True]
    store = resumed.finalize()
    assert store.ids == ["img0", "img1", "img2", "img3", "img4"]
    for row in rows:
        assert_same_row(store.get(row["img_id"]), row)


def test_resume_removes_the_temporaries_of_an_interrupted_manifest_or_index_write(tmp_path):
    rng = np.random.default_rng(9)
    path = tmp_path / "s"
    writer = FeatureStoreWriter(path, num_boxes=36, feature_dim=DIM)
    writer.add(make_row(rng, "img0", num_boxes=4, dim=DIM))
    writer.commit()
    # What kill -9 during the manifest's or finalize's atomic write leaves (the writers' mkstemp names).
    stale = []
    for name in ("manifest.json", "index_ids.npy"):
        fd, leftover = tempfile.mkstemp(dir=path, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        stale.append(leftover)
    resumed = FeatureStoreWriter(path, num_boxes=36, feature_dim=DIM)
    assert resumed.count == 1 and not any(os.path.exists(p) for p in stale)
    resumed.finalize()
    assert sorted(p.name for p in path.iterdir() if p.name.startswith(".")) == []


def test_unfinished_store_cannot_be_read_and_settings_must_match(tmp_path):
    rng = np.random.default_rng(4)
    writer = FeatureStoreWriter(tmp_path / "s", num_boxes=36, feature_dim=DIM, commit_every=1)
    writer.add(make_row(rng, "a", num_boxes=2, dim=DIM))
    with pytest.raises(ValueError, match="not finalized"):
        FeatureStore(tmp_path / "s")
    with pytest.raises(ValueError, match="feature_dim"):
        FeatureStoreWriter(tmp_path / "s", num_boxes=36, feature_dim=DIM + 1)


@pytest.mark.parametrize("manifest", [b"[1, 2]", b"{not json", b"\xff\xfe"])
def test_a_manifest_that_is_not_a_json_object_is_an_error_naming_it(tmp_path, manifest):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "manifest.json").write_bytes(manifest)
    with pytest.raises(ValueError, match="manifest.json"):
        FeatureStore(tmp_path / "s")


def test_rejects_rows_that_do_not_fit(tmp_path):
    rng = np.random.default_rng(5)
    writer = FeatureStoreWriter(tmp_path / "s", num_boxes=4, feature_dim=DIM)
    with pytest.raises(ValueError, match="num_boxes=5"):
        writer.add(make_row(rng, "many", num_boxes=5, dim=DIM))
    with pytest.raises(ValueError, match="features"):
        writer.add(make_row(rng, "wide", num_boxes=2, dim=DIM + 1))


def test_float16_store_reads_back_as_float32(tmp_path):
    rng = np.random.default_rng(6)
    row = make_row(rng, "a", num_boxes=3, dim=DIM)
    store = write_store(tmp_path / "s", [row], feature_dtype="float16")
    got = store.get("a")["features"]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, row["features"], atol=1e-3)
    assert (tmp_path / "s" / "features.bin").stat().st_size == 36 * DIM * 2


def test_pickle_carries_no_data(tmp_path):
    rng = np.random.default_rng(7)
    store = write_store(tmp_path / "s", [make_row(rng, f"i{k}", dim=DIM) for k in range(50)])
    store.get("i0")  # opens the maps
    assert len(pickle.dumps(store)) < 2000
    # copy.deepcopy rebuilds from the same reduced state as unpickling would (no pickle is loaded in this repo)
    assert_same_row(copy.deepcopy(store).get("i7"), store.get("i7"))


def test_dataloader_workers_read_the_same_data(tmp_path):
    rng = np.random.default_rng(8)
    rows = [make_row(rng, f"i{k}", num_boxes=36, dim=DIM) for k in range(12)]
    store = write_store(tmp_path / "s", rows)

    class Features(torch.utils.data.Dataset):
        def __len__(self):
            return len(store)

        def __getitem__(self, index):
            return torch.from_numpy(store.get_row(index)["features"])

    loaded = torch.cat(list(DataLoader(Features(), batch_size=4, num_workers=2)))
    expected = torch.from_numpy(np.stack([r["features"] for r in rows]))
    assert torch.equal(loaded, expected)


def test_convert_command_turns_a_tsv_into_a_store_and_resumes(tmp_path, capsys):
    rng = np.random.default_rng(9)
    rows = [make_row(rng, f"COCO_{k}", num_boxes=36, dim=DIM) for k in range(7)]
    write_tsv(tmp_path / "a.tsv", rows)
    argv = ["--tsv", str(tmp_path / "a.tsv"), "--out", str(tmp_path / "s"), "--feature-dim", "0"]
    convert_main([*argv, "--commit-every", "3"])
    store = FeatureStore(tmp_path / "s")
    assert store.ids == [r["img_id"] for r in rows]
    assert_same_row(store.get("COCO_5"), rows[5])
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["count"] == 7 and manifest["feature_dim"] == DIM
    convert_main(argv)  # run again: everything is already there
    assert "0 images added, 7 already in the store" in capsys.readouterr().out
