"""obj36 TSV: byte-identical to the authors' writing recipe, streaming reads, clear errors."""

import base64
import csv
import io

import numpy as np
import pytest

from lxmert.data.tsv import FIELDNAMES, TsvWriter, iter_tsv, write_tsv


def make_row(rng, img_id, num_boxes=36, dim=8):
    xy = rng.uniform(0, 50, (num_boxes, 2)).astype(np.float32)
    return {
        "img_id": img_id,
        "img_h": 120,
        "img_w": 160,
        "objects_id": rng.integers(0, 1600, num_boxes).astype(np.int64),
        "objects_conf": rng.random(num_boxes, dtype=np.float32),
        "attrs_id": rng.integers(0, 400, num_boxes).astype(np.int64),
        "attrs_conf": rng.random(num_boxes, dtype=np.float32),
        "num_boxes": num_boxes,
        "boxes": np.concatenate([xy, xy + 60], axis=1),
        "features": rng.random((num_boxes, dim), dtype=np.float32),
    }


def authors_recipe(rows) -> bytes:
    """The extractor's writer, reimplemented from its description: DictWriter, tab, base64 of raw buffers."""
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, delimiter="\t", fieldnames=FIELDNAMES)
    for row in rows:
        item = {}
        for key in FIELDNAMES:
            value = row[key]
            item[key] = base64.b64encode(value.tobytes()).decode() if isinstance(value, np.ndarray) else value
        writer.writerow(item)
    return out.getvalue().encode("utf-8")


def test_written_tsv_is_byte_identical_to_the_authors_recipe(tmp_path):
    rng = np.random.default_rng(0)
    rows = [make_row(rng, "COCO_val2014_000000000042"), make_row(rng, "2375429", num_boxes=10)]
    write_tsv(tmp_path / "ours.tsv", rows)
    assert (tmp_path / "ours.tsv").read_bytes() == authors_recipe(rows)


def test_round_trip_restores_arrays_dtypes_and_shapes(tmp_path):
    rng = np.random.default_rng(1)
    rows = [make_row(rng, f"img{k}", num_boxes=5 + k) for k in range(4)]
    write_tsv(tmp_path / "a.tsv", rows)
    back = list(iter_tsv(tmp_path / "a.tsv"))
    assert [r["img_id"] for r in back] == [r["img_id"] for r in rows]
    for original, read in zip(rows, back, strict=True):
        for key in FIELDNAMES:
            if isinstance(original[key], np.ndarray):
                assert read[key].dtype == original[key].dtype, key
                np.testing.assert_array_equal(read[key], original[key], err_msg=key)
            else:
                assert read[key] == original[key], key


def test_reading_streams_rows_and_limit_stops_early(tmp_path):
    rng = np.random.default_rng(2)
    write_tsv(tmp_path / "a.tsv", [make_row(rng, "good")])
    with open(tmp_path / "a.tsv", "a", newline="") as f:
        f.write("broken\tline\r\n")
    rows = iter_tsv(tmp_path / "a.tsv")
    assert next(rows)["img_id"] == "good"  # the bad line is not read until asked for
    with pytest.raises(ValueError, match="line 2"):
        next(rows)
    assert [r["img_id"] for r in iter_tsv(tmp_path / "a.tsv", limit=1)] == ["good"]


def test_wide_feature_rows_beyond_csv_default_field_limit(tmp_path):
    rng = np.random.default_rng(3)
    row = make_row(rng, "big", num_boxes=36, dim=2048)  # ~400 KB of base64 in one field
    write_tsv(tmp_path / "big.tsv", [row])
    (back,) = iter_tsv(tmp_path / "big.tsv")
    np.testing.assert_array_equal(back["features"], row["features"])


def test_mismatched_array_length_is_reported(tmp_path):
    rng = np.random.default_rng(4)
    row = make_row(rng, "x", num_boxes=4)
    row["boxes"] = row["boxes"][:3]
    with pytest.raises(ValueError, match="boxes"):
        write_tsv(tmp_path / "bad.tsv", [row])
    assert not (tmp_path / "bad.tsv").exists()  # atomic: nothing half-written


def test_writer_aborts_on_error_and_leaves_no_file(tmp_path):
    rng = np.random.default_rng(5)
    with pytest.raises(RuntimeError):
        with TsvWriter(tmp_path / "a.tsv") as writer:
            writer.write(make_row(rng, "a"))
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
