"""Click-linked views in AppTest: a click on a cell of the attention map or on a box selects that word or region on
every view of the page, and the dropdowns (the keyboard path) follow it and still lead.

AppTest has no handle on a Plotly chart's selection (``st.session_state`` refuses writes to a chart's key), so
:func:`click` sends what the browser sends: the chart's selection state as a widget value, with the point built from
the figure the app drew, alongside every other widget's state. That needs AppTest's ``_tree`` and ``_run``, the two
steps ``AppTest.run`` itself takes.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from app_harness import SAMPLE, assert_no_exception, open_page, start_app
from app_toy_assets import NUM_REGIONS, QUESTIONS, build_assets
from streamlit.testing.v1 import AppTest

from analysis.inputs import example_from_regions
from lxmert.checkpoints import load_checkpoint
from lxmert.detection import Detector


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    return build_assets(tmp_path_factory.mktemp("assets"))


@pytest.fixture(scope="module")
def reference(assets):
    """The sample's regions and tokens as a script gets them, independent of the app."""
    regions = Detector.from_pretrained(assets / "default" / "detector")([assets / "samples" / SAMPLE])[0]
    tokens = example_from_regions(
        load_checkpoint(assets / "default" / "model").tokenizer, QUESTIONS[0], regions
    )
    return regions, list(tokens.tokens)


@pytest.fixture
def app(assets, monkeypatch) -> AppTest:
    return start_app(assets, monkeypatch)


def chart(app: AppTest, key: str):
    return next(c for c in app.get("plotly_chart") if c.key == key)


def figure(app: AppTest, key: str) -> dict:
    return json.loads(chart(app, key).proto.spec)


def click(app: AppTest, key: str, tag: list | None = None, *, at: tuple | None = None) -> AppTest:
    """Click the point of chart ``key`` whose customdata starts with ``tag`` (e.g. ``["region", 3]``), or the one at
    ``at`` = (x, y), as a browser does: the chart's new selection state goes to the server with every other
    widget's, and the script reruns."""
    drawn = chart(app, key)
    for curve, trace in enumerate(json.loads(drawn.proto.spec)["data"]):
        if trace.get("type") != "scatter":  # plotly reports clicks on markers only
            continue
        customdata = trace.get("customdata")
        for index, (x, y) in enumerate(zip(trace.get("x") or [], trace.get("y") or [], strict=True)):
            data = customdata[index] if isinstance(customdata, list) else None
            if (tag is not None and isinstance(data, list) and data[: len(tag)] == tag) or (x, y) == at:
                point = {
                    "curve_number": curve,
                    "point_number": index,
                    "point_index": index,
                    "x": x,
                    "y": y,
                    "customdata": data,
                }
                states = app._tree.get_widget_states()
                state = states.widgets.add()
                state.id = drawn.proto.id
                state.string_value = json.dumps(
                    {"selection": {"points": [point], "point_indices": [index], "box": [], "lasso": []}}
                )
                app._run(states)
                assert_no_exception(app)
                assert not app.warning, [w.value for w in app.warning]
                return app
    raise AssertionError(f"chart {key} has no point tagged {tag} or at {at}")


def dashed_boxes(spec: dict) -> list[tuple[float, float, float, float]]:
    """The boxes outlined as selected (black dashes) in a figure."""
    return [
        (s["x0"], s["y0"], s["x1"], s["y1"])
        for s in spec["layout"].get("shapes", [])
        if s["line"].get("dash") == "dash"
    ]


def box(regions, r: int) -> tuple[float, ...]:
    return tuple(pytest.approx(v, abs=1e-3) for v in regions.boxes[r].tolist())


def region_key(app: AppTest, prefix: str) -> str:
    return next(w.key for w in [*app.selectbox, *app.multiselect] if w.key and w.key.startswith(prefix))


def outlined_chips(chips: str) -> list[str]:
    """The words outlined as selected among a view's word chips."""
    return re.findall(r"<span [^>]*outline:[^>]*>([^<]*)</span>", chips)


def outlined_lines(spec: dict) -> tuple[list[int], list[int]]:
    """The rows and columns of a heatmap outlined as selected (a row's outline spans the columns, and the other way
    round; every map here has more than one of each)."""
    shapes = spec["layout"].get("shapes", [])
    rows = [round(s["y0"] + 0.5) for s in shapes if s["x1"] - s["x0"] > 1]
    columns = [round(s["x0"] + 0.5) for s in shapes if s["y1"] - s["y0"] > 1]
    return rows, columns


def test_a_click_on_a_cross_attention_cell_selects_its_word_and_region_everywhere(app, reference):
    regions, tokens = reference
    assert_no_exception(open_page(app, "attention"))
    token_key, region_key_ = region_key(app, "attention_token"), region_key(app, "attention_region")
    # The defaults: the question's last word ("What color is the circle?"), and region 0.
    assert (app.selectbox(key=token_key).value, app.selectbox(key=region_key_).value) == (
        tokens.index("circle"),
        0,
    )
    # The default map is language → vision with every token drawn: row = token position, column = region.
    click(app, "attention_map", ["cell", 2, 5])
    assert app.selectbox(key=token_key).value == 2
    assert app.selectbox(key=region_key_).value == 5
    assert figure(app, "word_on_image")["layout"]["title"]["text"] == f"“{tokens[2]}” → regions"
    assert dashed_boxes(figure(app, "word_on_image")) == [box(regions, 5)]
    label = app.selectbox(key=region_key_).format_func(5)
    chips = next(m.value for m in app.markdown if f"region {html.escape(label)} → words" in m.value)
    assert outlined_chips(chips) == [html.escape(tokens[2])]
    assert outlined_lines(figure(app, "attention_map")) == ([2], [5])


def test_with_special_tokens_hidden_a_cell_still_selects_the_word_drawn_there(app):
    assert_no_exception(open_page(app, "attention"))
    app.toggle(key="attention_hide_special").set_value(True).run()
    click(app, "attention_map", ["cell", 0, 1])  # the first row drawn is the word after [CLS]
    assert app.selectbox(key=region_key(app, "attention_token")).value == 1
    assert outlined_lines(figure(app, "attention_map")) == ([0], [1])


def test_a_vision_to_language_cell_selects_the_region_of_its_row_and_the_word_of_its_column(app):
    assert_no_exception(open_page(app, "attention"))
    app.selectbox(key="attention_family").set_value("cross_v2l").run()
    click(app, "attention_map", ["cell", 6, 3])
    assert app.selectbox(key=region_key(app, "attention_region")).value == 6
    assert app.selectbox(key=region_key(app, "attention_token")).value == 3
    assert outlined_lines(figure(app, "attention_map")) == ([6], [3])


def test_a_click_on_a_box_selects_its_region_and_the_dropdown_still_leads(app, reference):
    regions, tokens = reference
    word = tokens.index("circle")
    assert_no_exception(open_page(app, "attention"))
    token_key, region_key_ = region_key(app, "attention_token"), region_key(app, "attention_region")
    click(app, "word_on_image", ["region", 3])
    assert app.selectbox(key=region_key_).value == 3
    assert app.selectbox(key=token_key).value == word  # a box says nothing about the word
    assert dashed_boxes(figure(app, "word_on_image")) == [box(regions, 3)]
    assert outlined_lines(figure(app, "attention_map")) == ([word], [3])
    # The keyboard path: the dropdown moves the selection on every view, and a later click moves it again.
    app.selectbox(key=region_key_).set_value(6).run()
    assert dashed_boxes(figure(app, "word_on_image")) == [box(regions, 6)]
    assert outlined_lines(figure(app, "attention_map")) == ([word], [6])
    click(app, "attention_map", ["cell", 1, 2])
    assert (app.selectbox(key=token_key).value, app.selectbox(key=region_key_).value) == (1, 2)


def test_regions_page_selects_the_clicked_region(app, reference):
    regions, _ = reference
    assert_no_exception(open_page(app, "regions"))
    click(app, "detections", ["region", 5])
    assert app.selectbox(key=region_key(app, "regions_region")).value == 5
    label = html.escape(app.selectbox(key=region_key(app, "regions_region")).format_func(5))
    box_text = ", ".join(f"{v:.0f}" for v in regions.boxes[5].tolist())
    assert any(m.value.startswith(f"<b>{label}</b>") and f"box ({box_text})" in m.value for m in app.markdown)
    assert dashed_boxes(figure(app, "detections")) == [box(regions, 5)]


def test_a_click_on_a_box_masks_its_region_and_a_second_click_unmasks_it(app, reference):
    regions, _ = reference
    assert_no_exception(open_page(app, "masked_object"))
    chooser = region_key(app, "masked_regions")

    def masked_headings() -> list[str]:
        return [m.value.split("**")[1] for m in app.markdown if m.value.startswith("**Region")]

    click(app, "masked_boxes", ["region", 3])
    assert app.multiselect(key=chooser).value == [0, 3]
    assert masked_headings() == ["Region 0", "Region 3"]
    assert dashed_boxes(figure(app, "masked_boxes")) == [box(regions, 0), box(regions, 3)]
    click(app, "masked_boxes", ["region", 0])
    assert app.multiselect(key=chooser).value == [3]
    assert masked_headings() == ["Region 3"]
    click(app, "masked_boxes", ["region", 3])  # nothing masked: the image stays, to click on
    assert app.multiselect(key=chooser).value == []
    assert any("Select at least one region" in i.value for i in app.info)
    assert dashed_boxes(figure(app, "masked_boxes")) == []


def test_attributions_give_the_clicked_regions_score_and_rank(app, reference):
    regions, _ = reference
    assert_no_exception(open_page(app, "attributions"))
    click(app, "explanation", ["region", 2])
    selector = app.selectbox(key=region_key(app, "attribution_region"))
    assert selector.value == 2
    assert dashed_boxes(figure(app, "explanation")) == [box(regions, 2)]
    scores = {row["region"]: row["relevancy"] for row in app.dataframe[0].value.to_dict("records")}
    assert len(scores) == NUM_REGIONS  # the table lists every region here, so it holds the rank's reference
    label = selector.format_func(2)
    line = next(m.value for m in app.markdown if m.value.startswith(f"**{label}**"))
    expected_rank = 1 + sum(abs(v) > abs(scores[label]) for v in scores.values())
    assert f"relevancy {scores[label]:.3g}, rank {expected_rank} of {NUM_REGIONS}" in line


def test_a_click_on_the_head_grid_shows_that_head_in_the_map(app):
    assert_no_exception(open_page(app, "attention"))
    click(app, "head_grid", at=("h2", "v→l 1"))
    assert app.selectbox(key="attention_family").value == "cross_v2l"
    assert (app.selectbox(key="map_layer").value, app.selectbox(key="map_head").value) == (0, 1)
    click(app, "head_grid", at=("mean", "x-lang 2"))
    assert app.selectbox(key="attention_family").value == "x_lang_self"
    assert (app.selectbox(key="map_layer").value, app.selectbox(key="map_head").value) == (1, None)
