"""The app's renderer on hand-computed cases: heat painting, colour ranges, grids, labels and escaping."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app import render


def white(size: int = 10) -> Image.Image:
    return Image.new("RGB", (size, size), (255, 255, 255))


def test_heat_image_paints_each_box_and_dims_the_rest():
    boxes = np.array([[2, 2, 5, 5], [4, 4, 8, 8]], dtype=float)
    painted = np.asarray(render.heat_image(white(), boxes, np.array([1.0, 0.5])))[..., 0]
    floor = round(255 * render.HEAT_FLOOR)  # 64
    half = round(255 * (render.HEAT_FLOOR + (1 - render.HEAT_FLOOR) * 0.5))  # 159
    assert painted[0, 0] == floor  # outside every box
    assert painted[3, 3] == 255  # the stronger box
    assert painted[4, 4] == 255  # overlap: the maximum wins
    assert painted[6, 6] == half  # the weaker box alone
    # Signed scores light up by magnitude: -1 paints as brightly as +1.
    signed = np.asarray(render.heat_image(white(), boxes[:1], np.array([-1.0])))[..., 0]
    assert signed[3, 3] == 255 and signed[0, 0] == floor


def test_heat_image_of_all_zero_scores_is_uniformly_dim():
    painted = np.asarray(render.heat_image(white(), np.array([[0, 0, 10, 10]], float), np.zeros(1)))
    assert (painted == round(255 * render.HEAT_FLOOR)).all()


def test_colour_ranges_are_symmetric_for_signed_scores_and_start_at_zero_otherwise():
    assert render._colour_range(np.array([-0.5, 2.0])) == (-2.0, 2.0)
    assert render._colour_range(np.array([0.2, 0.4])) == (0.0, 0.4)
    assert render._colour_range(np.zeros(3)) == (0.0, 1.0)  # never an empty range


def test_matrix_heatmap_checks_labels_and_stretches_on_request():
    matrix = np.array([[0.2, 0.3], [0.25, 0.25]])
    with pytest.raises(ValueError, match="labels are 1 rows"):
        render.matrix_heatmap(matrix, ["a"], ["x", "y"], title="t", row_title="r", column_title="c")
    plain = render.matrix_heatmap(matrix, ["a", "b"], ["x", "y"], title="t", row_title="r", column_title="c")
    assert (plain.data[0].zmin, plain.data[0].zmax) == (0.0, 0.3)
    stretched = render.matrix_heatmap(
        matrix, ["a", "b"], ["x", "y"], title="t", row_title="r", column_title="c", stretch=True
    )
    assert (stretched.data[0].zmin, stretched.data[0].zmax) == (0.2, 0.3)


def test_head_grid_appends_the_row_mean_and_outlines_the_selected_cell():
    values = np.array([[0.1, 0.3], [0.5, 0.9]])
    figure = render.head_grid_figure(
        values, ["l→v 1", "l→v 2"], title="t", colorbar_title="c", selected=(1, 2)
    )
    table = np.asarray(figure.data[0].z)
    np.testing.assert_allclose(table[:, -1], [0.2, 0.7])
    assert list(figure.data[0].x) == ["h1", "h2", "mean"]
    (shape,) = figure.layout.shapes
    assert (shape.x0, shape.x1, shape.y0, shape.y1) == (1.5, 2.5, 0.5, 1.5)


def test_tokens_are_escaped_and_must_match_their_scores():
    html = render.token_highlight_html(["<script>", "ok"], np.array([0.1, 0.9]))
    assert "<script>" not in html and "&lt;script&gt;" in html
    with pytest.raises(ValueError, match="2 tokens but 1 scores"):
        render.token_highlight_html(["a", "b"], np.array([1.0]))


def test_only_detections_are_badged_and_only_the_top_scores_annotated():
    boxes = np.array([[0, 0, 4, 4], [5, 5, 9, 9], [1, 1, 3, 3]], dtype=float)
    labels = ["0 red circle", "1 blue square", "2 red star"]
    figure = render.detections_figure(white(), boxes, labels, np.ones((3, 2)), num_labelled=2)
    assert [a.text for a in figure.layout.annotations] == ["<b>0</b>", "<b>1</b>"]
    assert len(figure.data) == 1 + 3  # the image and one outline per box
    scored = render.region_scores_figure(
        white(), boxes, np.array([0.1, 0.7, 0.4]), labels, title="t", top_k=2
    )
    assert [a.text for a in scored.layout.annotations] == ["<b>1</b>", "<b>2</b>"]


def test_the_app_imports_analysis_and_lxmert_but_never_training():
    import ast
    from pathlib import Path

    imported = set()
    for path in (Path(render.__file__).parent).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    assert {"analysis", "lxmert", "app"} <= imported
    assert "training" not in imported
