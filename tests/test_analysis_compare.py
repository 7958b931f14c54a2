"""Checkpoint comparison: CKA and JS divergence invariants, comparisons of a model with itself, metrics files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from analysis_toy import toy_example, toy_qa_model

from analysis.compare import (
    attention_divergence,
    compare_checkpoints,
    js_divergence,
    linear_cka,
    moved_heads,
    read_metrics,
    representation_cka,
    training_curves,
)


def test_linear_cka_invariances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ rotation + 5.0) == pytest.approx(1.0)  # rotation, scale and shift
    assert linear_cka(x, x[:, :4]) < 1.0
    assert linear_cka(x, rng.normal(size=(50, 8))) < 0.5
    with pytest.raises(ValueError, match="same items"):
        linear_cka(x, x[:10])


def test_js_divergence_bounds():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    q = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(js_divergence(p, q), [0.0, 1.0])  # identical; disjoint supports (in bits)
    assert js_divergence(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(
        0.5 * (np.log2(2 / 1.5)) + 0.5 * (0.5 * np.log2(0.5 / 0.75) + 0.5 * np.log2(0.5 / 0.25))
    )


def test_a_checkpoint_compared_with_itself(tokenizer):
    example = toy_example(tokenizer)
    model = toy_qa_model(seed=0)
    comparison = compare_checkpoints(
        {"a": model, "b": toy_qa_model(seed=0)},
        example,
        cka_examples=[example, toy_example(tokenizer, seed=1)],
    )
    assert not comparison.shifts["b"].top1_changed
    assert comparison.shifts["b"].topk_overlap == 1.0
    assert comparison.shifts["b"].total_variation == pytest.approx(0.0, abs=1e-6)
    for family, divergence in comparison.divergence["b"].items():
        np.testing.assert_allclose(divergence, 0.0, atol=1e-6, err_msg=family)
    for stream, cka in comparison.cka["b"].items():
        np.testing.assert_allclose(np.diag(cka), 1.0, rtol=1e-5, err_msg=stream)


def test_different_checkpoints_move_heads(tokenizer):
    example = toy_example(tokenizer)
    comparison = compare_checkpoints(
        {"a": toy_qa_model(seed=0), "b": toy_qa_model(seed=1)}, example, top_heads=3
    )
    heads = comparison.moved_heads["b"]
    assert len(heads) == 3 and heads[0][3] >= heads[1][3] >= heads[2][3] > 0
    family, layer, head, value = heads[0]
    assert comparison.divergence["b"][family][layer, head] == value
    assert value == max(v.max() for v in comparison.divergence["b"].values())
    assert comparison.cka == {}


def test_divergence_skips_families_of_different_depth(tokenizer):
    from analysis.attention import collect_attention

    example = toy_example(tokenizer)
    shallow = collect_attention(toy_qa_model(l_layers=1), example)
    deep = collect_attention(toy_qa_model(), example)
    divergence = attention_divergence(deep, shallow)
    assert "lang_self" not in divergence and "vis_self" in divergence
    assert moved_heads(divergence, top=1)[0][0] != "lang_self"
    cka = representation_cka(
        toy_qa_model(), toy_qa_model(l_layers=1), [example, toy_example(tokenizer, seed=1)]
    )
    assert cka["lang"].shape == (1 + 2 + 2, 1 + 1 + 2)


def test_metrics_are_read_tolerantly(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint-10").mkdir(parents=True)
    lines = [
        json.dumps({"step": 1, "split": "train", "scope": "step", "loss": 2.0, "lr": 1e-4}),
        "{not json",
        "",
        json.dumps([1, 2]),
        json.dumps(
            {"step": 2, "split": "train", "scope": "step", "loss": 1.5, "lr": 1e-4, "note": "x", "done": True}
        ),
        json.dumps({"epoch": 1, "split": "valid", "accuracy": 0.4, "loss": float("nan")}),
        '{"step": 3, "split": "tra',  # cut short by a crash
    ]
    (run / "metrics.jsonl").write_text("\n".join(lines))
    records = read_metrics(run / "checkpoint-10")  # found in the run directory above the checkpoint
    assert len(records) == 3
    curves = training_curves(records)
    assert curves["train/step/loss"] == ([1.0, 2.0], [2.0, 1.5])
    assert curves["valid/accuracy"] == ([1.0], [0.4])
    assert "valid/loss" not in curves and "train/step/note" not in curves and "train/step/done" not in curves
    with pytest.raises(FileNotFoundError):
        read_metrics(tmp_path / "elsewhere")


def test_metrics_that_are_not_a_run_log_are_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "metrics.jsonl")  # reading a pipe would never end
    with pytest.raises(ValueError, match="not a regular file"):
        read_metrics(run)
    big = tmp_path / "big"
    big.mkdir()
    (big / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n" + " " * 2048)
    with pytest.raises(ValueError, match="more than"):
        read_metrics(big, max_bytes=1024)
    assert read_metrics(big, max_bytes=4096) == [{"step": 1, "loss": 1.0}]


def test_the_app_reads_no_metrics_outside_its_directories(tmp_path):
    from app.results import curves

    outside, root = tmp_path / "outside", tmp_path / "checkpoints"
    outside.mkdir()
    (outside / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    (root / "run" / "best").mkdir(parents=True)
    (root / "run" / "metrics.jsonl").symlink_to(outside / "metrics.jsonl")
    with pytest.raises(ValueError, match="leads outside the app's directories"):
        curves(str(root / "run" / "best"), (str(root),))
    assert curves(str(root / "run" / "best"), (str(root), str(outside)))["loss"] == ([1.0], [2.0])
    assert curves(str(root / "none"), (str(root),)) is None
