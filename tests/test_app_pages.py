"""AppTest smoke and behaviour tests of every page, on a tiny random default model (tests/app_toy_assets.py).

The app runs in-process; ``LXMERT_ASSETS_DIR`` points it at the tiny assets. Results are checked against
``analysis`` called directly on the same files, the way a script would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from app_harness import (
    SAMPLE,
    answer_headlines,
    assert_clean,
    first_answer,
    open_page,
    sample_example,
    sample_query,
    start_app,
)
from app_toy_assets import NUM_REGIONS, QUESTIONS, build_assets, scene_image
from streamlit.testing.v1 import AppTest

from analysis.compare import read_metrics, training_curves
from analysis.export import read_export
from analysis.faithfulness import METHODS as FAITHFULNESS_METHODS
from analysis.forward import predict_answers, run
from analysis.inputs import example_from_regions
from analysis.interventions import head_mask
from analysis.masked import ablation_gauge
from app.config import PRECISION_ENV, AppConfig
from lxmert.checkpoints import load_checkpoint
from lxmert.detection import Detector
from lxmert.precision import autocast, cpu_has_bf16
from training.release.default_assets import cache_sample_regions

PAGES = ("regions", "ask", "attention", "masked_word", "masked_object", "attributions", "compare")


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    return build_assets(tmp_path_factory.mktemp("assets"))


@pytest.fixture
def app(assets, monkeypatch) -> AppTest:
    return start_app(assets, monkeypatch)


def charts(app: AppTest) -> list:
    return app.get("plotly_chart")


def script_answer(assets: Path, image: Path, question: str, k: int = 5):
    """What a script gets from ``analysis`` for the same files: the reference the app must agree with."""
    detector = Detector.from_pretrained(assets / "default" / "detector")
    regions = detector([image])[0]
    loaded = load_checkpoint(assets / "default" / "model")
    example = example_from_regions(loaded.tokenizer, question, regions)
    return predict_answers(loaded.model, example, k, loaded.answers.label2ans)


def test_opens_on_the_default_model_with_an_answer(app):
    assert_clean(app)
    assert app.sidebar.selectbox(key="checkpoint").value == "default/model"
    assert app.sidebar.text_input(key="text").value == QUESTIONS[0]  # the sample's sidecar suggestion
    assert app.sidebar.slider(key="num_regions").value == NUM_REGIONS
    assert answer_headlines(app)
    assert len(charts(app)) == 2  # the answers and the detections


def test_regions_page_lists_every_region(app):
    open_page(app, "regions")
    assert_clean(app)
    assert len(app.dataframe[0].value) == NUM_REGIONS


@pytest.mark.parametrize("page", PAGES)
def test_every_page_draws_without_errors(app, page):
    open_page(app, page)
    assert_clean(app)
    assert charts(app), f"page {page} drew no figure"


def test_ask_shows_the_answer_analysis_gives_from_a_script(app, assets):
    open_page(app, "ask")
    expected = script_answer(assets, assets / "samples" / SAMPLE, QUESTIONS[0])
    answer, probability = first_answer(app)
    assert answer == expected[0].answer
    assert probability == pytest.approx(100 * expected[0].probability, abs=0.05)


def test_match_score_is_the_matching_head_of_the_pretrained_parent(app, assets):
    open_page(app, "ask")
    assert any("default/pretrained" in i.value for i in app.info)  # QA model has no matching head: says so
    loaded, example = sample_example(assets, "pretrained")
    with torch.no_grad():
        expected = run(loaded.model, example).cross_relationship_score[0].softmax(-1)[1].item()
    assert app.metric[0].value == f"{expected:.1%}"


def test_fewer_regions_reach_the_model(app):
    app.sidebar.slider(key="num_regions").set_value(3).run()
    open_page(app, "regions")
    assert len(app.dataframe[0].value) == 3
    open_page(app, "attention")
    assert_clean(app)
    assert (
        len(app.selectbox(key=next(k for k in _keys(app) if k.startswith("attention_region"))).options) == 3
    )


def _keys(app: AppTest) -> list[str]:
    return [w.key for w in app.selectbox if w.key]


def test_attention_families_layers_and_heads_can_be_chosen(app):
    open_page(app, "attention")
    app.selectbox(key="attention_family").set_value("vis_self").run()
    app.selectbox(key="map_layer").set_value(0).run()
    app.selectbox(key="map_head").set_value(1).run()
    assert_clean(app)
    app.selectbox(key="attention_statistic").set_value("other_modality_share").run()
    assert_clean(app)
    app.toggle(key="attention_hide_special").set_value(True).run()
    assert_clean(app)


def test_masked_word_without_a_selection_asks_for_one(app):
    open_page(app, "masked_word")
    pills = app.get("button_group")[0]
    pills.set_value([]).run()
    assert any("Select at least one word" in i.value for i in app.info)


def test_masked_object_predicts_each_chosen_region(app):
    open_page(app, "masked_object")
    chooser = app.multiselect[0]
    chooser.set_value([1, 2]).run()
    assert_clean(app)
    assert [m.value.split("**")[1] for m in app.markdown if m.value.startswith("**Region")] == [
        "Region 1",
        "Region 2",
    ]


@pytest.mark.parametrize("method", ["gradient", "rollout", "raw_attention", "ig", "occlusion"])
def test_every_attribution_method_draws(app, method):
    open_page(app, "attributions")
    app.selectbox(key="attribution_method").set_value(method).run()
    assert_clean(app)
    assert charts(app)


def test_deletion_tests_run_on_request(app):
    open_page(app, "attributions")
    app.toggle(key="run_faithfulness").set_value(True).run()
    assert_clean(app)
    assert len(charts(app)) == 2
    assert len(app.dataframe[-1].value) == len(FAITHFULNESS_METHODS)  # one AUC row per method


def test_compare_lists_checkpoints_of_the_configured_directory(app):
    open_page(app, "compare")
    options = app.multiselect(key="compare_checkpoints").options
    assert set(options) == {"default/model", "default/pretrained", "runs/a/best", "runs/b/best"}
    assert any("No metrics.jsonl" in c.value for c in app.caption)  # the defaults were not trained here


def test_compare_shows_training_curves_as_logged(app, assets):
    open_page(app, "compare")
    app.multiselect(key="compare_checkpoints").set_value(["runs/a/best", "runs/b/best"]).run()
    assert_clean(app)
    logged = training_curves(read_metrics(assets / "runs" / "b" / "best"))
    series = app.selectbox(key="compare_metric").value
    assert series in logged and series.endswith("loss")
    train_losses = [
        json.loads(line)["loss"]
        for line in (assets / "runs" / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert logged[series][1][-1] in train_losses  # the series is the file's numbers, not a transformation
    assert any(f"`runs/b/best` {logged[series][1][-1]:.4g}" in c.value for c in app.caption)


def test_compare_with_cka(app):
    open_page(app, "compare")
    before = len(charts(app))
    app.toggle(key="compare_cka").set_value(True).run()
    assert_clean(app)
    assert len(charts(app)) == before + 2  # language and vision CKA


def test_an_upload_that_is_not_an_image_gets_a_message(app):
    app.sidebar.radio(key="source").set_value("Upload").run()
    assert any("Upload an image" in i.value for i in app.info)
    app.sidebar.file_uploader[0].set_value(("notes.png", b"this is not a png", "image/png")).run()
    assert not app.exception
    assert any("cannot be used" in e.value and "notes.png" in e.value for e in app.error)


def test_an_uploaded_image_is_detected(app):
    import io

    buffer = io.BytesIO()
    scene_image(7).save(buffer, format="JPEG")
    app.sidebar.radio(key="source").set_value("Upload").run()
    app.sidebar.file_uploader[0].set_value(("mine.jpg", buffer.getvalue(), "image/jpeg")).run()
    open_page(app, "regions")
    assert_clean(app)
    assert len(app.dataframe[0].value) == NUM_REGIONS


def test_a_random_scene_comes_from_the_pool(app):
    app.sidebar.radio(key="source").set_value("Random scene").run()
    first = app.session_state["scene"]
    assert Path(first).parent.name == "scenes"
    app.sidebar.button[0].click().run()
    assert app.session_state["scene"] != first
    assert_clean(app)


def test_missing_assets_are_explained_not_a_traceback(tmp_path, monkeypatch):
    app = start_app(tmp_path, monkeypatch)
    assert not app.exception
    assert any("detector" in e.value for e in app.error)
    assert any("assets/default" in i.value for i in app.info)


def test_silencing_every_cross_head_answers_as_analysis_does_with_that_head_mask(app, assets):
    cross = ["cross_l2v", "cross_v2l"]
    app.multiselect(key="silence_families").set_value(cross).run()
    assert_clean(app)
    headline = answer_headlines(app)[1]
    loaded, example = sample_example(assets)
    config = loaded.model.config
    heads = [
        (f, layer, h)
        for f in cross
        for layer in range(config.x_layers)
        for h in range(config.num_attention_heads)
    ]
    expected = predict_answers(
        loaded.model, example, 5, loaded.answers.label2ans, head_mask=head_mask(config, heads)
    )
    assert headline.startswith(f"### Answer: **{expected[0].answer}**  \n{expected[0].probability:.1%}")
    assert app.session_state["silence_heads"] == []  # whole families only; no single heads chosen


def test_attention_export_reads_back_with_the_inputs_tokens(app, assets, tmp_path):
    from app.results import attention_export, tokens

    open_page(app, "attention")
    assert app.get("download_button")
    query = sample_query(assets)
    path = tmp_path / "attention.npz"
    path.write_bytes(attention_export(query))
    metadata, arrays = read_export(path)
    assert metadata["tokens"] == tokens(query)
    assert metadata["checkpoint"] == "default/model"
    assert arrays["attention/cross_l2v"].shape[-2:] == (len(metadata["tokens"]), NUM_REGIONS)


def test_ablation_gauge_matches_analysis(app, assets):
    open_page(app, "masked_word")
    app.toggle(key="run_gauge").set_value(True).run()
    assert_clean(app)
    detector = Detector.from_pretrained(assets / "default" / "detector")
    loaded = load_checkpoint(assets / "default" / "pretrained")
    example = example_from_regions(
        loaded.tokenizer, QUESTIONS[0], detector([assets / "samples" / "scene_0.png"])[0]
    )
    expected = ablation_gauge(
        loaded.model, example, loaded.tokenizer, detector.objects_vocab, detector.attributes_vocab
    )
    shown = {m.label: m.value for m in app.metric}
    assert shown["Word accuracy lost without the image"] == f"{expected.word_drop_without_vision:+.0%}"
    assert shown["Object accuracy lost without the text"] == f"{expected.object_drop_without_text:+.0%}"


def _encoded(image, fmt: str, **options) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, convert, fmt",
    [
        ("rgba.png", "RGBA", "PNG"),
        ("cmyk.jpg", "CMYK", "JPEG"),
        ("grey16.png", "I;16", "PNG"),
        ("anim.gif", "P", "GIF"),
    ],
)
def test_uploads_in_other_modes_are_detected(app, name, convert, fmt):
    image = (
        scene_image(3).convert("L").convert(convert) if convert == "I;16" else scene_image(3).convert(convert)
    )
    app.sidebar.radio(key="source").set_value("Upload").run()
    app.sidebar.file_uploader[0].set_value((name, _encoded(image, fmt), "image/" + fmt.lower())).run()
    open_page(app, "regions")
    assert_clean(app)
    assert len(app.dataframe[0].value) == NUM_REGIONS


def test_a_truncated_upload_gets_a_message(app):
    data = _encoded(scene_image(3), "JPEG")
    app.sidebar.radio(key="source").set_value("Upload").run()
    app.sidebar.file_uploader[0].set_value(("cut.jpg", data[: len(data) // 2], "image/jpeg")).run()
    assert not app.exception
    assert any("cannot be used" in e.value and "cut.jpg" in e.value for e in app.error)


def test_a_sample_with_cached_regions_is_answered_without_the_detector(tmp_path, monkeypatch):
    """The shipped samples' regions are cached, so the first answer needs neither the detector nor torchvision."""
    root = build_assets(tmp_path)
    assert cache_sample_regions(root / "default" / "detector", root / "samples") == 5

    def refuse(*args, **kwargs):
        raise AssertionError("the detector was loaded although the sample's regions are cached")

    monkeypatch.setattr(Detector, "from_pretrained", refuse)
    app = start_app(root, monkeypatch)
    assert_clean(app)
    sample = app.sidebar.selectbox(key="sample").value
    monkeypatch.undo()
    expected = script_answer(root, sample, QUESTIONS[0], k=1)[0]
    headline = answer_headlines(app)[0]
    assert f"**{expected.answer}**" in headline


def app_in(precision: str, assets: Path, monkeypatch) -> AppTest:
    return start_app(assets, monkeypatch, env={PRECISION_ENV: precision})


def precision_caption(app: AppTest) -> str:
    return next(c.value for c in app.sidebar.caption if c.value.startswith("Model precision: "))


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
def test_the_app_runs_bf16_when_set_and_says_so(assets, monkeypatch):
    app = app_in("bf16", assets, monkeypatch)
    assert_clean(app)
    assert precision_caption(app).startswith("Model precision: bf16")
    loaded, example = sample_example(assets)
    with autocast("bf16", "cpu"):
        expected = predict_answers(loaded.model, example, 1, loaded.answers.label2ans)[0]
    answer, probability = first_answer(app)
    assert answer == expected.answer
    assert probability == pytest.approx(100 * expected.probability, abs=0.05)


def test_the_app_says_fp32_when_asked(app):
    assert precision_caption(app).startswith("Model precision: fp32")


def test_auto_keeps_a_small_model_in_fp32(assets, monkeypatch):
    """The toy checkpoints are far below BF16_MIN_HIDDEN, where bf16 would be slower than fp32."""
    app = app_in("auto", assets, monkeypatch)
    assert_clean(app)
    assert precision_caption(app).startswith("Model precision: fp32")


def test_a_bad_precision_setting_is_named(monkeypatch):
    monkeypatch.setenv(PRECISION_ENV, "fp16")
    with pytest.raises(ValueError, match="LXMERT_PRECISION must be one of"):
        AppConfig.from_env()
