"""The app words what the model says as the numbers allow: near-chance answers and match scores near 0.5 read as
uncertain, and the checkpoint card shows the scores its ``meta.json`` records (tests/app_toy_assets.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from app_harness import sample_example, start_app
from app_toy_assets import ANSWERS, build_assets
from streamlit.testing.v1 import AppTest

from analysis.forward import AnswerScore, predict_answers, run
from app.panels import answer_doubt, match_verdict
from lxmert.checkpoints import meta_scores
from training.release.default_assets import scores_from_summary

MATCH_ACCURACY = 0.75  # written into the toy parent's meta.json below


def scores(*probabilities: float) -> list[AnswerScore]:
    return [AnswerScore(i, f"a{i}", p, 0.0) for i, p in enumerate(probabilities)]


def test_a_clear_answer_is_not_doubted():
    assert answer_doubt(scores(0.80, 0.10, 0.05), num_answers=10) is None


def test_a_near_tie_is_uncertain_and_names_both_answers():
    doubt = answer_doubt(scores(0.46, 0.40, 0.10), num_answers=10)
    assert doubt is not None and doubt.startswith("Uncertain")
    assert "*a0* leads *a1* by only 6.0 points" in doubt


def test_a_best_answer_near_a_uniform_guess_is_uncertain():
    # 1/50 = 2%: 3% is below twice that, although it leads the second by more than the margin would need.
    doubt = answer_doubt(scores(0.03, 0.001), num_answers=50)
    assert doubt is not None and "near chance" in doubt and "2.0%" in doubt


def test_a_match_score_near_one_half_is_no_verdict():
    words = match_verdict(0.516, validation_accuracy=0.677)
    assert "matches the image" not in words
    assert "Too close to call: +1.6 points from 0.5" in words
    assert "right on 67.7% of validation pairs" in words


def test_a_clear_match_score_leans_and_says_how_far():
    assert "leans towards “does not match”, -30.0 points" in match_verdict(0.2)
    assert "not recorded" in match_verdict(0.2)


def test_scores_of_another_shape_are_refused_naming_the_field():
    assert meta_scores({}) == {}
    with pytest.raises(ValueError, match=r"scores\.valid\.accuracy"):
        meta_scores({"scores": {"valid": {"accuracy": "high"}}})
    with pytest.raises(ValueError, match="'scores'"):
        meta_scores({"scores": 0.6})


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    root = build_assets(tmp_path_factory.mktemp("assets"))
    meta = root / "default" / "pretrained" / "meta.json"
    recorded = json.loads(meta.read_text()) if meta.is_file() else {}
    meta.write_text(json.dumps({**recorded, "scores": {"valid": {"matched_acc": MATCH_ACCURACY}}}))
    return root


@pytest.fixture
def app(assets, monkeypatch) -> AppTest:
    return start_app(assets, monkeypatch)


def test_the_random_toy_answer_is_worded_as_uncertain(app, assets):
    loaded, inputs = sample_example(assets, "model")
    top = predict_answers(loaded.model, inputs, 2, loaded.answers.label2ans)
    # Random weights over 7 answers: the best is within twice the chance level and a few points of the second.
    assert top[0].probability < 2 / len(ANSWERS) and top[0].probability - top[1].probability < 0.15
    assert [w.value for w in app.warning if w.value.startswith("Uncertain")], [w.value for w in app.warning]


def test_the_match_score_shows_its_distance_from_one_half_and_the_heads_accuracy(app, assets):
    loaded, inputs = sample_example(assets, "pretrained")
    with torch.no_grad():
        probability = run(loaded.model, inputs).cross_relationship_score[0].softmax(-1)[1].item()
    text = app.get("progress")[0].proto.text
    assert f"{100 * (probability - 0.5):+.1f} points from 0.5" in text
    assert f"right on {MATCH_ACCURACY:.1%} of validation pairs" in text


def test_the_card_shows_the_recorded_scores(app):
    assert any(m.value == "Scores on validation: accuracy **0**" for m in app.markdown), [
        m.value for m in app.markdown
    ]


def test_export_writes_the_validation_and_chance_scores_of_a_run_summary_without_losses():
    summary = {
        "best": 0.6,
        "train": {"accuracy": 0.7, "loss": 0.4},
        "valid": {"accuracy": 0.6, "binary": 0.65, "loss": 0.8, "qa_loss": 0.8, "split": "valid"},
        "chance": {"matched_acc": 0.5, "feat_loss": 0.9},
        "train_seconds": 12.0,
    }
    scores = scores_from_summary(summary)
    assert scores == {"valid": {"accuracy": 0.6, "binary": 0.65}, "chance": {"matched_acc": 0.5}}
    assert meta_scores({"scores": scores}) == scores
