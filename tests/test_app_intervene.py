"""AppTest of the Intervene and Probe pages on the tiny random assets (tests/app_toy_assets.py).

Every kind of edit is applied through the page's widgets; the record it leaves must be the edit, and the answers
after it must be what ``analysis`` gives for the same edit applied by a script to the same files.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from app_harness import assert_clean, open_page, sample_query, start_app
from app_toy_assets import NUM_REGIONS, QUESTIONS, build_assets
from streamlit.testing.v1 import AppTest

from analysis.attention import collect_attention
from analysis.edits import Edit, apply_edits, least_important_heads
from analysis.export import read_export
from analysis.forward import predict_answers
from analysis.inputs import example_from_regions
from analysis.interventions import head_importance
from analysis.probe_curves import probe_study
from lxmert.checkpoints import load_checkpoint, save_pretrained
from lxmert.detection import Detector
from lxmert.detection.files import load_cached_regions, save_cached_regions

ATTENTION_SCALE = 30.0  # query and key weights: peaked attention that depends on the regions
OUTPUT_SCALE = 10.0  # cross-attention values and outputs and the answer head: answers that follow it
PRUNED = 8  # of the toy's 18 prunable heads: the least important move the answer least, by design


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """The toy assets with the sample's regions cached with distinct random features, and a default model whose
    attention is sharpened: the toy's small random weights attend almost uniformly to near-identical regions, so
    an edit would move its answers and maps less than a comparison's tolerance."""
    root = build_assets(tmp_path_factory.mktemp("assets"))
    detector_dir, image = root / "default" / "detector", (root / "samples" / "scene_0.png").read_bytes()
    regions = Detector.from_pretrained(detector_dir)([root / "samples" / "scene_0.png"])[0]
    features = torch.randn(regions.features.shape, generator=torch.Generator().manual_seed(2))
    save_cached_regions(detector_dir, image, dataclasses.replace(regions, features=features))
    loaded = load_checkpoint(root / "default" / "model")
    with torch.no_grad():
        for name, parameter in loaded.model.named_parameters():
            if name.endswith(("query.weight", "key.weight")):
                parameter.mul_(ATTENTION_SCALE)
            elif (
                "visual_attention.att.value" in name
                or "visual_attention.output.dense" in name
                or "answer_head" in name
            ):
                parameter.mul_(OUTPUT_SCALE)
    save_pretrained(
        loaded.model,
        root / "default" / "model",
        tokenizer=loaded.tokenizer,
        answers=loaded.answers.label2ans,
        meta=loaded.meta,
    )
    return root


@pytest.fixture(scope="module")
def script(assets):
    """What a script gets for the sample: the model, the example, and the detector's regions of every sample."""
    detector = Detector.from_pretrained(assets / "default" / "detector")
    loaded = load_checkpoint(assets / "default" / "model")
    image = (assets / "samples" / "scene_0.png").read_bytes()
    regions = load_cached_regions(assets / "default" / "detector", image)
    return loaded, example_from_regions(loaded.tokenizer, QUESTIONS[0], regions), detector


@pytest.fixture
def app(assets, monkeypatch) -> AppTest:
    return open_page(start_app(assets, monkeypatch), "intervene")


def shown_edits(app: AppTest) -> list[Edit]:
    return [Edit.from_dict(record) for record in json.loads(app.json[0].value)]


def assert_after_is_analysis(app: AppTest, script, edits: list[Edit]) -> None:
    """The page's answer probabilities and attention change after the edits are the script's for the same
    records, and the edits changed them (answers move little on a random model, attention visibly)."""
    loaded, example, _ = script
    edited = apply_edits(example, edits)
    mask = edited.head_mask(loaded.model.config)
    expected = predict_answers(
        loaded.model, edited.example, len(loaded.answers.label2ans), loaded.answers.label2ans, head_mask=mask
    )
    expected = {a.answer: a.probability for a in expected}
    table = app.dataframe[0].value  # the answers before and after
    for name, probability in zip(table["answer"], table["after"], strict=True):
        assert probability == pytest.approx(expected[name], abs=1e-5)

    def last_cross(maps) -> np.ndarray:
        return maps.select("cross_l2v", maps.num_layers("cross_l2v") - 1)

    before = last_cross(collect_attention(loaded.model, example))
    after = last_cross(collect_attention(loaded.model, edited.example, head_mask=mask))
    origin = np.array([-1 if o is None else o for o in edited.origin])
    change = after - before[:, np.maximum(origin, 0)]
    change[:, origin < 0] = np.nan
    shown = array(chart(app, "Change of language").z)
    np.testing.assert_allclose(shown, change, atol=1e-5)
    assert np.nanmax(np.abs(shown)) > 1e-3
    assert np.abs(table["after"] - table["before"]).max() > 1e-3


def array(value) -> np.ndarray:
    """A plotly JSON array: a list, or numpy's bytes as plotly writes them (``{"dtype", "bdata", "shape"}``)."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = [int(n) for n in str(value.get("shape", len(flat))).split(",")]
        return flat.reshape(shape).astype(float)
    return np.array(value, dtype=float)


def chart(app: AppTest, title: str):
    """The first trace of the chart whose title starts with ``title``."""
    for element in app.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        if spec["layout"].get("title", {}).get("text", "").startswith(title):
            return SimpleNamespace(**spec["data"][0])
    raise AssertionError(f"no chart titled {title!r}")


def region_key(app: AppTest, prefix: str) -> str:
    return next(w.key for w in app.selectbox if w.key and w.key.startswith(prefix))


def test_the_page_waits_for_an_edit(app):
    assert_clean(app)
    assert any("Apply an edit" in i.value for i in app.info)
    assert app.session_state["intervene_edits"] == []


def test_delete_is_recorded_and_answers_as_the_library_deletes(app, script):
    chooser = next(m for m in app.multiselect if m.key.startswith("intervene_delete"))
    chooser.set_value([0, 2]).run()
    app.button(key="intervene_apply").click().run()
    assert_clean(app)
    assert shown_edits(app) == [Edit("delete", (0, 2))]
    assert_after_is_analysis(app, script, [Edit("delete", (0, 2))])
    headers = [c for c in app.get("plotly_chart")]
    assert len(headers) >= 4  # answers, word and region relevancy, attention change


def test_move_is_recorded_with_its_box(app, script):
    app.radio(key="intervene_kind").set_value("move").run()
    app.selectbox(key=region_key(app, "intervene_move_region")).set_value(1).run()
    left = next(s for s in app.slider if s.key.endswith("_left"))
    top = next(s for s in app.slider if s.key.endswith("_top"))
    left.set_value(0).run()
    top.set_value(0).run()
    app.button(key="intervene_apply").click().run()
    assert_clean(app)
    (edit,) = shown_edits(app)
    _, example, _ = script
    x1, y1, x2, y2 = example.boxes[1].tolist()
    assert edit.kind == "move" and edit.regions == (1,)
    assert edit.box == pytest.approx((0.0, 0.0, x2 - x1, y2 - y1), abs=1.0)  # sliders hold whole pixels
    assert_after_is_analysis(app, script, [edit])


def test_add_copies_a_region_and_the_attention_change_has_an_empty_column_for_it(app, script):
    app.radio(key="intervene_kind").set_value("add").run()
    app.selectbox(key=region_key(app, "intervene_add_region")).set_value(3).run()
    app.button(key="intervene_apply").click().run()
    assert_clean(app)
    (edit,) = shown_edits(app)
    assert edit.kind == "add" and edit.regions == (3,)
    assert_after_is_analysis(app, script, [edit])
    # the region list now has the added one, offered to the next edit
    assert len(app.selectbox(key=region_key(app, "intervene_add_region")).options) == NUM_REGIONS + 1


def test_swap_then_undo_and_clear(app, script):
    app.radio(key="intervene_kind").set_value("swap").run()
    app.selectbox(key=region_key(app, "swap_a")).set_value(0).run()
    app.selectbox(key=region_key(app, "swap_b")).set_value(4).run()
    app.button(key="intervene_apply").click().run()
    assert shown_edits(app) == [Edit("swap", (0, 4))]
    assert_after_is_analysis(app, script, [Edit("swap", (0, 4))])
    app.radio(key="intervene_kind").set_value("delete").run()
    next(m for m in app.multiselect if m.key.startswith("intervene_delete")).set_value([1]).run()
    app.button(key="intervene_apply").click().run()
    assert shown_edits(app) == [Edit("swap", (0, 4)), Edit("delete", (1,))]
    assert_after_is_analysis(app, script, [Edit("swap", (0, 4)), Edit("delete", (1,))])
    app.button(key="intervene_undo").click().run()
    assert shown_edits(app) == [Edit("swap", (0, 4))]
    app.button(key="intervene_clear").click().run()
    assert app.session_state["intervene_edits"] == []
    assert_clean(app)


def test_silencing_heads_is_an_edit(app, script):
    app.multiselect(key="intervene_silence_families").set_value(["cross_l2v"]).run()
    assert_clean(app)
    (edit,) = shown_edits(app)
    config = script[0].model.config
    assert edit == Edit(
        "silence", heads=tuple(("cross_l2v", layer, h) for layer in range(config.x_layers) for h in range(2))
    )
    assert_after_is_analysis(app, script, [edit])


def test_pruning_removes_the_heads_the_gradient_ranks_lowest(app, script):
    loaded, example, _ = script
    app.slider(key="intervene_prune").set_value(PRUNED).run()
    assert_clean(app)
    (edit,) = shown_edits(app)
    target = predict_answers(loaded.model, example, 1)[0].index
    importance = head_importance(loaded.model, example, [target])
    assert edit == Edit("prune", heads=least_important_heads(importance, loaded.model.config, PRUNED))
    assert_after_is_analysis(app, script, [edit])


def test_the_export_carries_the_edits(app, assets, tmp_path):
    from app.results_interventions import edited_export

    edits = (Edit("delete", (2,)), Edit("silence", heads=(("lang_self", 0, 1),)))
    query = sample_query(assets)
    path = tmp_path / "edited.npz"
    path.write_bytes(edited_export(query, edits, 5))
    metadata, arrays = read_export(path)
    assert [Edit.from_dict(e) for e in metadata["edits"]] == list(edits)
    assert len(metadata["boxes"]) == NUM_REGIONS - 1  # the edited input's regions
    assert arrays["attention/cross_l2v"].shape[-1] == NUM_REGIONS - 1
    np.testing.assert_array_equal(arrays["extra/region_origin"], [0, 1, *range(3, NUM_REGIONS)])


def test_probe_page_draws_a_curve_per_stream_as_analysis_probes(app, assets, script):
    open_page(app, "probe")
    assert any("run on request" in i.value for i in app.info)
    app.button(key="probe_run").click().run()
    assert_clean(app)
    loaded, _, detector = script
    paths = sorted((assets / "samples").glob("*.png")) + sorted((assets / "samples" / "scenes").glob("*.png"))
    items = [
        (p.name, detector([p])[0], QUESTIONS if p.name == "scene_0.png" else (QUESTIONS[0],)) for p in paths
    ]
    expected = probe_study(
        loaded.model, loaded.tokenizer, items, detector.objects_vocab, detector.attributes_vocab
    ).points
    table = app.dataframe[0].value  # the probes
    label = app.selectbox(key="probe_label").value
    vision = [p for p in expected if p.label == label and p.stream == "vision"]
    config = loaded.model.config
    assert len(vision) == 1 + config.r_layers + config.x_layers
    shown = table[table["stream"] == "regions"]
    np.testing.assert_allclose(shown["probe accuracy"], [p.test_accuracy for p in vision], atol=1e-6)
    regions = next(
        SimpleNamespace(**t)
        for t in json.loads(app.get("plotly_chart")[0].proto.spec)["data"]
        if t["name"] == "regions"
    )
    depths = ["input", *(f"vision {i + 1}" for i in range(config.r_layers))]
    assert regions.x == depths + [f"cross {i + 1}" for i in range(config.x_layers)]
    np.testing.assert_allclose(array(regions.y), [p.test_accuracy for p in vision], atol=1e-6)
    app.toggle(key="probe_cross_modal").set_value(False).run()
    assert_clean(app)
    neighbours = app.dataframe[1].value
    assert len(neighbours) == 8
    # The query is the first region of the first sample, scene_0.png.
    assert "scene_0.png" not in set(neighbours["image"])


def test_edits_start_again_on_another_region_count(app):
    """Region indices of one input mean nothing on another: the list is cleared, not replayed on the wrong regions."""
    next(m for m in app.multiselect if m.key.startswith("intervene_delete")).set_value([5]).run()
    app.button(key="intervene_apply").click().run()
    assert len(app.session_state["intervene_edits"]) == 1
    app.sidebar.slider(key="num_regions").set_value(3).run()
    assert_clean(app)
    assert app.session_state["intervene_edits"] == []
    assert len(next(m for m in app.multiselect if m.key.startswith("intervene_delete")).options) == 3
