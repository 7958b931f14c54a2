"""What a click selects: Plotly selection points → region, cell, word (app/selection.py), and the click targets and
selection marks the renderer adds for them, on hand-made cases."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from app import render
from app.selection import Pick, cell_pick, clicked_cell, clicked_region, toggled


def point(customdata) -> dict:
    """One point as Streamlit hands it over (snake_case plotly event fields)."""
    return {
        "curve_number": 1,
        "point_number": 0,
        "point_index": 0,
        "x": 1.0,
        "y": 2.0,
        "customdata": customdata,
    }


def test_a_click_on_a_box_names_its_region_and_nothing_else_does():
    assert clicked_region([point(["region", 4, "4 red circle"])]) == 4
    assert clicked_region([]) is None
    # A head-grid cell ([row, column, value]), a heatmap cell and a point without customdata select no region.
    assert clicked_region([point([2, 3, 0.5]), point(["cell", 1, 2]), {"x": 0, "y": 0}]) is None
    # The first region among the points wins, whatever came before it.
    assert clicked_region([point(["cell", 1, 2]), point(["region", 7]), point(["region", 2])]) == 7


def test_a_click_on_a_cell_names_its_row_and_column():
    assert clicked_cell([point(["cell", 3, 5, "3 what", "5 red circle", 0.25])]) == (3, 5)
    assert clicked_cell([point(["region", 3])]) is None
    assert clicked_cell([point(["cell", 3])]) is None  # too short to hold a cell
    assert clicked_cell([point("cell")]) is None  # a string is not a tag and its numbers
    assert clicked_cell([point(["cell", "x", 1])]) is None


def test_a_cross_attention_cell_selects_its_word_and_its_region():
    words = [1, 2, 3, 4]  # [CLS] at 0 and [SEP] at 5 hidden from the rows
    regions = list(range(6))
    assert cell_pick(("lang", "vis"), words, regions, (2, 5)) == Pick(token=3, region=5)
    # Vision → language: the row is the region, the column the word.
    assert cell_pick(("vis", "lang"), regions, words, (5, 0)) == Pick(token=1, region=5)


def test_a_self_attention_cell_selects_its_query():
    assert cell_pick(("lang", "lang"), [0, 1, 2], [0, 1, 2], (2, 0)) == Pick(token=2, region=None)
    assert cell_pick(("vis", "vis"), [0, 1, 2], [0, 1, 2], (0, 2)) == Pick(token=None, region=0)


def test_a_cell_outside_the_map_is_named():
    with pytest.raises(ValueError, match=r"cell \(3, 0\) is outside the 3 × 2 map"):
        cell_pick(("lang", "vis"), [0, 1, 2], [0, 1], (3, 0))


def test_toggling_adds_a_region_at_the_end_or_removes_it():
    assert toggled([0, 4], 2) == [0, 4, 2]
    assert toggled([0, 4, 2], 4) == [0, 2]
    assert toggled([], 1) == [1]


BOXES = np.array([[0, 0, 10, 20], [30, 40, 50, 44]], dtype=float)


def test_every_box_gets_a_click_target_at_its_centre_tagged_with_its_region():
    figure = render.detections_figure(
        Image.new("RGB", (60, 60)), BOXES, ["0 red circle", "1 blue square"], np.array([0.9, 0.8])
    )
    render.clickable_regions(figure, BOXES, ["0 red circle", "1 blue square"])
    targets = figure.data[-1]
    centres = {
        clicked_region([point(list(c))]): (x, y)
        for x, y, c in zip(targets.x, targets.y, targets.customdata, strict=True)
    }
    assert centres == {0: (5.0, 10.0), 1: (40.0, 42.0)}


def test_where_dots_overlap_the_click_goes_to_the_best_detection():
    # Plotly gives a click on overlapping markers to the one drawn last; three boxes share a centre here.
    boxes = np.array([[0, 0, 10, 10], [2, 2, 8, 8], [1, 1, 9, 9], [40, 40, 50, 50]], dtype=float)
    figure = render.clickable_regions(go.Figure(), boxes, ["a", "b", "c", "d"], num_labelled=2)
    drawn = [clicked_region([point(list(c))]) for c in figure.data[-1].customdata]
    assert drawn == [3, 2, 1, 0]  # fill proposals first, then the detections, the best one last
    assert figure.data[-1].marker.size == 9  # plotly would give a tie to a smaller dot, whatever the order


def test_a_clickable_heatmap_has_one_target_per_cell_with_its_value_and_names():
    matrix = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    figure = render.matrix_heatmap(
        matrix, ["w0", "w1"], ["r0", "r1", "r2"], title="t", row_title="q", column_title="k", clickable=True
    )
    heatmap, targets = figure.data
    assert heatmap.hoverinfo == "skip"  # the targets carry the hover, or it would hide theirs
    assert len(targets.x) == matrix.size
    for x, y, data in zip(targets.x, targets.y, targets.customdata, strict=True):
        assert clicked_cell([point(list(data))]) == (y, x)  # the target sits on the cell it names
        assert data[3:] == [f"w{y}", f"r{x}", matrix[y, x]]
    plain = render.matrix_heatmap(
        matrix, ["w0", "w1"], ["r0", "r1", "r2"], title="t", row_title="q", column_title="k"
    )
    assert len(plain.data) == 1


def test_marks_outline_the_selected_boxes_rows_and_columns():
    figure = render.mark_regions(
        render.detections_figure(Image.new("RGB", (60, 60)), BOXES, ["a", "b"], np.array([0.9, 0.8])),
        BOXES[1:],
    )
    assert {(s.x0, s.y0, s.x1, s.y1) for s in figure.layout.shapes} == {(30, 40, 50, 44)}
    matrix = np.zeros((2, 3))
    figure = render.mark_lines(
        render.matrix_heatmap(
            matrix, ["a", "b"], ["c", "d", "e"], title="t", row_title="q", column_title="k"
        ),
        rows=[1],
        columns=[2],
    )
    row, column = figure.layout.shapes
    assert (row.x0, row.x1, row.y0, row.y1) == (-0.5, 2.5, 0.5, 1.5)
    assert (column.x0, column.x1, column.y0, column.y1) == (1.5, 2.5, -0.5, 1.5)


def test_the_selected_word_is_outlined_among_the_chips():
    chips = render.token_highlight_html(["a", "b<", "c"], np.array([0.1, 0.2, 0.3]), marked=[1])
    outlined = [part for part in chips.split("<span ")[1:] if "outline:" in part]
    assert len(outlined) == 1 and outlined[0].endswith(">b&lt;</span>")
    assert "outline:" not in render.token_highlight_html(["a"], np.array([0.1]))
