"""The app's one renderer: every picture of attention, relevancy and attribution is drawn here.

Inputs are plain data (numpy arrays, lists of labels, PIL images) as ``analysis/`` returns them; outputs are plotly
figures, PIL images or HTML strings for Streamlit to show. One box renderer and one pair of colour scales serve all
methods, so a map from raw attention, rollout, Chefer relevancy or Integrated Gradients reads the same way:

- unsigned scores (attention, relevancy) use ``SEQUENTIAL`` from 0 up;
- signed scores (attributions) use ``DIVERGING`` centred on 0, red for evidence for the answer, blue against.

Directions are always named query → key: a words × regions heatmap has the language queries as rows.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import sample_colorscale

from app.selection import CELL, REGION

SEQUENTIAL = "Viridis"
DIVERGING = "RdBu_r"
# Distinct box colours for plain detections (plotly's qualitative "Dark24", enough for 24 boxes, then repeated).
BOX_PALETTE = (
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86", "#EB663B", "#511CFB",
    "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7",
    "#DA60CA", "#6C4516", "#0D2A63", "#AF0038",
)  # fmt: skip
# How dark the unattended part of an image gets in a heat overlay: pixel × (FLOOR + (1 - FLOOR) × heat).
HEAT_FLOOR = 0.25
_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), template="plotly_white")


def _signed(scores: np.ndarray) -> bool:
    return bool(np.nanmin(scores) < 0) if scores.size else False


def _colour_range(scores: np.ndarray) -> tuple[float, float]:
    """Symmetric around 0 for signed scores, [0, max] for unsigned ones (never an empty range)."""
    top = float(np.nanmax(np.abs(scores))) if scores.size else 0.0
    top = top if top > 0 else 1.0
    return (-top, top) if _signed(scores) else (0.0, top)


def _colours(scores: np.ndarray, scale: str, low: float, high: float) -> list[str]:
    positions = np.clip((np.asarray(scores, dtype=float) - low) / (high - low), 0.0, 1.0)
    return sample_colorscale(scale, positions.tolist())


def region_labels(object_names: Sequence[str], attr_names: Sequence[str] | None = None) -> list[str]:
    """``"3 red circle"``: region index, then attribute and object, as rows and columns of every figure."""
    attrs = attr_names if attr_names is not None else [""] * len(object_names)
    return [
        f"{i} {a} {o}".replace("  ", " ") for i, (a, o) in enumerate(zip(attrs, object_names, strict=True))
    ]


# ---------------------------------------------------------------------------------------------------------------
# Boxes on the image
# ---------------------------------------------------------------------------------------------------------------


def heat_image(image: Image.Image, boxes: np.ndarray, scores: np.ndarray) -> Image.Image:
    """Dim the image outside high-scoring boxes: each box paints its score, the maximum wins where boxes overlap.

    This is the box painting of Chefer et al.'s LXMERT notebook, on magnitudes so that signed attributions light
    up whichever way they point.

    Args:
        image: the RGB image the boxes were detected in.
        boxes: (R, 4) pixel (x1, y1, x2, y2).
        scores: (R,) one score per box.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width = rgb.shape[:2]
    heat = np.zeros((height, width), dtype=np.float32)
    magnitude = np.abs(np.asarray(scores, dtype=np.float32))
    top = float(magnitude.max()) if magnitude.size else 0.0
    if top > 0:
        for (x1, y1, x2, y2), value in zip(np.asarray(boxes), magnitude / top, strict=True):
            c1, r1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
            c2, r2 = min(int(np.ceil(x2)), width), min(int(np.ceil(y2)), height)
            heat[r1:r2, c1:c2] = np.maximum(heat[r1:r2, c1:c2], value)
    shaded = rgb * (HEAT_FLOOR + (1.0 - HEAT_FLOOR) * heat)[..., None]
    return Image.fromarray(shaded.round().astype(np.uint8))


# Badges: a region's number on the image, its full label in the legend. Sizes in screen pixels at BADGE_FONT
# (Plotly's default font is narrower than this per digit, so a badge is never drawn larger than its place).
BADGE_FONT = 11
BADGE_CHAR_PX, BADGE_PAD_PX, BADGE_HEIGHT_PX = 8.0, 8.0, 17.0
FILL_LEGEND = "dotted: fill proposal, no confident label"
LEGEND_ROW_PX = 19
OTHER_LEGEND = "no outline: outside the top {k}"


def _overlaps(rect: np.ndarray, placed: np.ndarray) -> np.ndarray:
    """Whether ``rect`` (4,) overlaps each of ``placed`` (N, 4) by more than an edge."""
    if len(placed) == 0:
        return np.zeros(0, dtype=bool)
    return (
        (rect[0] < placed[:, 2])
        & (placed[:, 0] < rect[2])
        & (rect[1] < placed[:, 3])
        & (placed[:, 1] < rect[3])
    )


def _candidates(box: np.ndarray, w: float, h: float) -> list[tuple[float, float]]:
    """Top-left corners of a w × h badge touching ``box``, in order of preference: above its top-left corner,
    inside it, at its other corners, beside it."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [
        (x1, y1 - h), (x1, y1), (x2 - w, y1 - h), (x2 - w, y1), (x1, y2), (x1, y2 - h), (x2 - w, y2),
        (x2 - w, y2 - h), (x1 - w, y1), (x2, y1), (x1 - w, y2 - h), (x2, y2 - h),
    ]  # fmt: skip


def _places(box: np.ndarray, w: float, h: float, width: float, height: float) -> Iterator[np.ndarray]:
    """Rectangles of a w × h badge inside the image, best first: touching ``box`` (:func:`_candidates`), then
    every place on a grid of half a badge's height, nearest the box's top-left corner first."""
    for x, y in _candidates(box, w, h):
        if x >= 0 and y >= 0 and x + w <= width and y + h <= height:
            yield np.array([x, y, x + w, y + h])
    step = max(h / 2, 1.0)
    xs = np.arange(0.0, max(width - w, 0.0) + 1e-9, step)
    ys = np.arange(0.0, max(height - h, 0.0) + 1e-9, step)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    order = np.argsort(((grid - np.asarray(box[:2], dtype=float)) ** 2).sum(axis=1), kind="stable")
    for x, y in grid[order]:
        yield np.array([x, y, x + w, y + h])


def place_badges(boxes: np.ndarray, sizes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Where each box's badge goes: (N, 4) rectangles (x1, y1, x2, y2), no two overlapping, in box order.

    A badge touches its box where it can (:func:`_candidates`, inside the image); else it takes the free place
    inside the image nearest the box's top-left corner (the figure draws a leader line to it); when the image is
    full, it goes in a column right of the image (x from ``width``), one row per badge.

    Args:
        boxes: (N, 4) image pixels (x1, y1, x2, y2), in the order badges are placed (most important first).
        sizes: (N, 2) each badge's width and height in image pixels.
        width, height: the image's size.
    """
    boxes, sizes = (
        np.asarray(boxes, dtype=float).reshape(-1, 4),
        np.asarray(sizes, dtype=float).reshape(-1, 2),
    )
    placed = np.zeros((0, 4))
    column_y = 0.0
    for box, (w, h) in zip(boxes, sizes, strict=True):
        choice = next(
            (rect for rect in _places(box, w, h, width, height) if not _overlaps(rect, placed).any()), None
        )
        if choice is None:
            choice = np.array([width, column_y, width + w, column_y + h])
            column_y += h
        placed = np.vstack([placed, choice])
    return placed


def _touches(rect: np.ndarray, box: np.ndarray) -> bool:
    return bool(rect[0] <= box[2] and box[0] <= rect[2] and rect[1] <= box[3] and box[1] <= rect[3])


def _plot_height(image: Image.Image) -> int:
    """The height in screen pixels of the plot area that shows ``image`` in :func:`_image_figure`."""
    return max(310, min(590, image.height + 10))


def _pixels_per_unit(image: Image.Image) -> float:
    """Screen pixels per image pixel in :func:`_image_figure`, where the plot area's height limits the image (the
    legend has a margin of its own, so that it never takes room from the image)."""
    return _plot_height(image) / image.height


def badge_rectangles(image: Image.Image, boxes: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """The badges' rectangles in image pixels (:func:`place_badges`) for ``texts`` drawn on ``image``'s figure."""
    scale = _pixels_per_unit(image)
    sizes = np.array(
        [[(BADGE_PAD_PX + BADGE_CHAR_PX * len(t)) / scale, BADGE_HEIGHT_PX / scale] for t in texts]
    )
    return place_badges(boxes, sizes, image.width, image.height)


def _add_badges(
    figure: go.Figure, image: Image.Image, boxes: np.ndarray, texts: Sequence[str], colours: Sequence[str]
) -> None:
    """Number badges that never overlap, each joined to its box by a leader line when placed away from it."""
    rects = badge_rectangles(image, boxes, texts)
    for rect, box, text, colour in zip(rects, np.asarray(boxes, dtype=float), texts, colours, strict=True):
        if not _touches(rect, box):
            cx, cy = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
            figure.add_shape(
                type="line",
                x0=cx,
                y0=cy,
                x1=float(np.clip(cx, box[0], box[2])),
                y1=float(np.clip(cy, box[1], box[3])),
                line=dict(color=colour, width=1),
            )
        figure.add_annotation(
            x=float(rect[0]),
            y=float(rect[1]),
            text=f"<b>{html.escape(text)}</b>",
            showarrow=False,
            xanchor="left",
            yanchor="top",
            width=(rect[2] - rect[0]) * _pixels_per_unit(image) - 2,
            height=(rect[3] - rect[1]) * _pixels_per_unit(image) - 2,
            font=dict(size=BADGE_FONT, color="white"),
            bgcolor=colour,
            borderpad=0,
        )
    if len(rects) and rects[:, 2].max() > image.width:  # some badges went to the column right of the image
        figure.update_xaxes(range=[0, float(rects[:, 2].max())])


def _box_trace(
    box: np.ndarray,
    colour: str,
    hover: str,
    width: float,
    *,
    name: str | None = None,
    group: str | None = None,
    dash: str | None = None,
) -> go.Scatter:
    """One box outline, hoverable anywhere inside; with ``name``, listed in the legend (``group``ed)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return go.Scatter(
        x=[x1, x2, x2, x1, x1],
        y=[y1, y1, y2, y2, y1],
        mode="lines",
        line=dict(color=colour, width=width, dash=dash),
        fill="toself",
        fillcolor="rgba(0,0,0,0)",
        hoveron="fills+points",
        hoverinfo="text",
        text=hover,
        name=name,
        legendgroup=group,
        showlegend=name is not None,
    )


def _image_figure(image: Image.Image, title: str, legend_rows: int = 0) -> go.Figure:
    """The image on pixel axes (y down), with room below it for a legend of ``legend_rows`` entries."""
    figure = go.Figure(go.Image(z=np.asarray(image.convert("RGB")), hoverinfo="skip"))
    figure.update_xaxes(visible=False, range=[0, image.width])
    figure.update_yaxes(visible=False, range=[image.height, 0], scaleanchor="x")
    legend_height = LEGEND_ROW_PX * legend_rows + (8 if legend_rows else 0)
    margin = {**_LAYOUT["margin"], "b": _LAYOUT["margin"]["b"] + legend_height}
    figure.update_layout(
        title=title,
        height=_plot_height(image) + margin["t"] + margin["b"],
        template=_LAYOUT["template"],
        margin=margin,
        legend=dict(orientation="v", yanchor="top", y=-0.01, x=0, font=dict(size=11), tracegroupgap=0),
    )
    return figure


def detections_figure(
    image: Image.Image,
    boxes: np.ndarray,
    labels: Sequence[str],
    confidences: np.ndarray,
    *,
    num_labelled: int | None = None,
    title: str = "Detected regions",
    numbers: Sequence[int] | None = None,
    details: Sequence[str] | None = None,
) -> go.Figure:
    """The image with one outlined box per region, a number badge on each detection and its label in the legend.

    Args:
        image: the RGB image.
        boxes: (R, 4) pixel (x1, y1, x2, y2).
        labels: R strings, e.g. from :func:`region_labels`.
        confidences: (R,) or (R, 2) object (and attribute) confidence per region.
        num_labelled: the first this many boxes (the detections) get a colour, a badge and a legend entry; the
            rest (proposals that fill the fixed count) a thin dotted outline, one legend entry for all, and hover
            only. All are labelled when None.
        numbers: the region number each badge shows (default 0, 1, …), for a figure of some regions only.
        details: per region, what hovering on it shows (HTML, escaped by the caller); label and confidences if
            None.
    """
    labelled = len(labels) if num_labelled is None else num_labelled
    figure = _image_figure(image, title, legend_rows=labelled + (labelled < len(labels)))
    boxes = np.asarray(boxes)
    confidences = np.asarray(confidences, dtype=float).reshape(len(labels), -1)
    numbers = list(range(len(labels))) if numbers is None else list(numbers)

    def hover(i: int) -> str:
        if details is not None:
            return details[i]
        return f"{html.escape(labels[i])}<br>confidence {' · '.join(f'{c:.2f}' for c in confidences[i])}"

    # Fill boxes first, so that the labelled detections are drawn on top of them.
    for n, i in enumerate(range(labelled, len(labels))):
        figure.add_trace(
            _box_trace(
                boxes[i],
                "rgba(200,200,200,0.9)",  # light on a dark image, and seen in the legend on white
                hover(i) + "<br>(fill proposal)",
                1.0,
                name=FILL_LEGEND if n == 0 else None,
                group="fill",
                dash="dot",
            )
        )
    colours = [BOX_PALETTE[i % len(BOX_PALETTE)] for i in range(labelled)]
    for i in range(labelled):
        conf = f" ({confidences[i][0]:.2f})"
        figure.add_trace(_box_trace(boxes[i], colours[i], hover(i), 2.0, name=html.escape(labels[i]) + conf))
    _add_badges(figure, image, boxes[:labelled], [str(n) for n in numbers[:labelled]], colours)
    return figure


def region_scores_figure(
    image: Image.Image,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[str],
    *,
    title: str,
    top_k: int = 5,
    colorbar_title: str = "score",
    details: Sequence[str] | None = None,
) -> go.Figure:
    """Scores on boxes: the image dimmed outside high-scoring boxes, the ``top_k`` boxes outlined, numbered with
    badges that never overlap, and listed with their scores in the legend.

    Every box answers hover with its label and score (and ``details``, when given); the outline colour follows the
    shared colour scale (sequential for unsigned scores, diverging around 0 for signed ones) and a colour bar gives
    the values.
    """
    scores = np.asarray(scores, dtype=float)
    low, high = _colour_range(scores)
    scale = DIVERGING if _signed(scores) else SEQUENTIAL
    shown_count = min(top_k, len(scores))
    figure = _image_figure(
        heat_image(image, boxes, scores), title, legend_rows=shown_count + (shown_count < len(scores))
    )
    colours = _colours(scores, scale, low, high)
    ranked = np.argsort(-np.abs(scores), kind="stable")
    shown = ranked[:top_k].tolist()
    # Unshown first, then the shown ones weakest first, so the strongest boxes are drawn on top.
    for n, i in enumerate([*ranked[top_k:][::-1], *shown[::-1]]):
        hover = f"{html.escape(labels[i])}<br>{colorbar_title} {scores[i]:.3f}"
        if details is not None:
            hover += f"<br>{details[i]}"
        if i in shown:
            trace = _box_trace(
                boxes[i], colours[i], hover, 3.0, name=f"{html.escape(labels[i])}: {scores[i]:.2g}"
            )
        else:
            legend = OTHER_LEGEND.format(k=top_k) if n == 0 else None
            trace = _box_trace(boxes[i], "rgba(0,0,0,0)", hover, 0.0, name=legend, group="other")
        figure.add_trace(trace)
    badge_boxes = np.asarray(boxes, dtype=float)[shown].reshape(-1, 4)
    _add_badges(
        figure, image, badge_boxes, [labels[i].split(" ", 1)[0] for i in shown], [colours[i] for i in shown]
    )
    figure.add_trace(_colorbar_trace(scale, low, high, colorbar_title))
    figure.update_layout(legend_traceorder="reversed")  # drawn weakest first, listed strongest first
    return figure


def _colorbar_trace(scale: str, low: float, high: float, title: str) -> go.Scatter:
    """An invisible point whose only job is the colour bar (box outlines are lines, which carry none)."""
    return go.Scatter(
        x=[None],
        y=[None],
        mode="markers",
        marker=dict(
            colorscale=scale,
            cmin=low,
            cmax=high,
            color=[low],
            showscale=True,
            colorbar=dict(title=title, thickness=12),
        ),
        hoverinfo="skip",
        showlegend=False,
    )


# ---------------------------------------------------------------------------------------------------------------
# Matrices
# ---------------------------------------------------------------------------------------------------------------


def matrix_heatmap(
    matrix: np.ndarray,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    *,
    title: str,
    row_title: str,
    column_title: str,
    colorbar_title: str = "attention",
    row_ticks: Sequence[str] | None = None,
    column_ticks: Sequence[str] | None = None,
    stretch: bool = False,
    clickable: bool = False,
) -> go.Figure:
    """A rows × columns heatmap, hover naming both; for attention the rows are queries and the columns keys.

    Args:
        row_ticks, column_ticks: shorter axis labels than the hover's (e.g. ``"3 heart"`` for 36 regions).
        stretch: colours span the matrix's own [min, max] instead of [0, max] (contrast for near-uniform maps).
        clickable: every cell answers a click, as a point tagged ``["cell", row, column]`` (``app/selection.py``).
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(row_labels), len(column_labels)):
        raise ValueError(
            f"matrix is {matrix.shape}, labels are {len(row_labels)} rows × {len(column_labels)} columns"
        )
    low, high = _colour_range(matrix)
    if stretch and matrix.size and not _signed(matrix):
        low = float(np.nanmin(matrix))
        high = max(high, low + 1e-12)
    row_ticks = list(row_labels if row_ticks is None else row_ticks)
    column_ticks = list(column_labels if column_ticks is None else column_ticks)
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=list(range(len(column_labels))),
            y=list(range(len(row_labels))),
            customdata=[[(r, c) for c in column_labels] for r in row_labels],
            hovertemplate="%{customdata[0]} → %{customdata[1]}<br>%{z:.3f}<extra></extra>",
            colorscale=DIVERGING if _signed(matrix) else SEQUENTIAL,
            zmin=low,
            zmax=high,
            colorbar=dict(title=colorbar_title, thickness=12),
        )
    )
    small = dict(size=9) if max(len(row_ticks), len(column_ticks)) > 16 else None
    figure.update_xaxes(
        title=column_title,
        tickvals=list(range(len(column_ticks))),
        ticktext=column_ticks,
        tickangle=-60,
        tickfont=small,
    )
    figure.update_yaxes(
        title=row_title,
        tickvals=list(range(len(row_ticks))),
        ticktext=row_ticks,
        autorange="reversed",
        tickfont=small,
    )
    figure.update_layout(title=title, height=max(320, 140 + 22 * len(row_labels)), **_LAYOUT)
    if clickable:
        _clickable_cells(figure, row_labels, column_labels)
    return figure


def _clickable_cells(figure: go.Figure, row_labels: Sequence[str], column_labels: Sequence[str]) -> None:
    """Move the heatmap's hover onto a click target per cell; with no hover cutoff, a click anywhere in a cell
    selects that cell's target (the nearest one)."""
    heatmap = figure.data[0]
    matrix = np.asarray(heatmap.z, dtype=float)
    rows, columns = np.meshgrid(range(matrix.shape[0]), range(matrix.shape[1]), indexing="ij")
    customdata = [
        [CELL, r, c, row_labels[r], column_labels[c], float(matrix[r, c])]
        for r, c in zip(rows.ravel().tolist(), columns.ravel().tolist(), strict=True)
    ]
    heatmap.update(hoverinfo="skip", hovertemplate=None)
    figure.add_trace(
        _click_targets(
            columns.ravel().tolist(),
            rows.ravel().tolist(),
            customdata,
            "%{customdata[3]} → %{customdata[4]}<br>%{customdata[5]:.3f}<extra>click to select</extra>",
        )
    )
    figure.update_layout(hoverdistance=-1)


def head_grid_figure(
    values: np.ndarray,
    row_labels: Sequence[str],
    *,
    title: str,
    colorbar_title: str,
    selected: tuple[int, int] | None = None,
) -> go.Figure:
    """Rows × heads of one statistic, with a row-mean column: the all-heads overview of VL-InterpreT.

    Args:
        values: (rows, H), one row per (family, layer).
        row_labels: a label per row, e.g. ``"cross l→v 3"``.
        selected: (row, head) to outline, the one the other views show; head ``H`` is the mean column.
    """
    values = np.asarray(values, dtype=float)
    heads = values.shape[1]
    table = np.concatenate([values, values.mean(axis=1, keepdims=True)], axis=1)
    columns = [f"h{h + 1}" for h in range(heads)] + ["mean"]
    low, high = _colour_range(table)
    figure = go.Figure(
        go.Heatmap(
            z=table,
            x=columns,
            y=list(row_labels),
            colorscale=DIVERGING if _signed(table) else SEQUENTIAL,
            zmin=low,
            zmax=high,
            text=[["" if np.isnan(v) else f"{v:.2g}" for v in row] for row in table],
            texttemplate="%{text}",
            textfont=dict(size=9),
            hoverinfo="skip",
            colorbar=dict(title=colorbar_title, thickness=12),
        )
    )
    # Plotly reports no clicks on heatmap cells: a click target on each makes the grid clickable.
    rows, cols = np.meshgrid(range(len(row_labels)), range(len(columns)), indexing="ij")
    figure.add_trace(
        _click_targets(
            [columns[c] for c in cols.ravel()],
            [row_labels[r] for r in rows.ravel()],
            np.stack([rows.ravel(), cols.ravel(), table.ravel()], axis=1),
            "%{y}, %{x}: %{customdata[2]:.3f}<extra>click to show this head</extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category", side="top")
    if selected is not None:
        row, head = selected
        figure.add_shape(
            type="rect",
            x0=head - 0.5,
            x1=head + 0.5,
            y0=row - 0.5,
            y1=row + 0.5,
            line=dict(color="red", width=3),
        )
    figure.update_layout(title=title, height=max(320, 100 + 24 * len(row_labels)), **_LAYOUT)
    figure.update_layout(margin=dict(t=90))  # the head labels sit on top, under the title
    return figure


# ---------------------------------------------------------------------------------------------------------------
# Click targets and selection marks (app/selection.py reads the clicks)
# ---------------------------------------------------------------------------------------------------------------


def _click_targets(
    x: Sequence, y: Sequence, customdata: Sequence, hovertemplate: str, marker: dict | None = None
) -> go.Scatter:
    """Markers that answer clicks where plotly reports none (heatmap cells, box fills, shapes): invisible unless
    ``marker`` says otherwise."""
    return go.Scatter(
        x=list(x),
        y=list(y),
        customdata=customdata,
        mode="markers",
        marker=marker or dict(size=16, symbol="square", opacity=0.0),
        hovertemplate=hovertemplate,
        showlegend=False,
    )


def clickable_regions(
    figure: go.Figure, boxes: np.ndarray, hovers: Sequence[str], *, num_labelled: int | None = None
) -> go.Figure:
    """A dot at the centre of every box: a click on it selects the region, tagged ``["region", r]``; hovering on it
    shows the region's ``hovers`` text (HTML, escaped by the caller, as the boxes' own hover).

    Plotly reports no clicks on box outlines or their fills, hence the dots. Where dots of one size overlap, plotly
    gives the click to the one drawn last (a smaller dot would win over a larger one), so the detections (the first
    ``num_labelled`` boxes, all when None) are drawn after the fill proposals, whose dots are fainter, and the best
    detection last of all.
    """
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    labelled = len(hovers) if num_labelled is None else num_labelled
    order = [*reversed(range(labelled, len(hovers))), *reversed(range(labelled))]
    figure.add_trace(
        _click_targets(
            [(boxes[r, 0] + boxes[r, 2]) / 2 for r in order],
            [(boxes[r, 1] + boxes[r, 3]) / 2 for r in order],
            [[REGION, r, hovers[r]] for r in order],
            "%{customdata[2]}<extra>click to select</extra>",
            marker=dict(
                size=9,
                color=[f"rgba(255,255,255,{0.6 if r < labelled else 0.25})" for r in order],
                line=dict(color=[f"rgba(0,0,0,{0.7 if r < labelled else 0.3})" for r in order], width=1),
            ),
        )
    )
    return figure


def mark_regions(figure: go.Figure, boxes: np.ndarray) -> go.Figure:
    """Outline the selected boxes: black dashes on white, visible on any image and over any box colour."""
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=float).reshape(-1, 4).tolist():
        for line in (dict(color="white", width=6), dict(color="black", width=3, dash="dash")):
            figure.add_shape(type="rect", x0=x1, y0=y1, x1=x2, y1=y2, line=line, layer="above")
    return figure


def mark_lines(figure: go.Figure, rows: Sequence[int] = (), columns: Sequence[int] = ()) -> go.Figure:
    """Outline whole rows and columns of a heatmap (positions among those drawn): the selected word or region."""
    height, width = np.asarray(figure.data[0].z).shape
    for row in rows:
        figure.add_shape(
            type="rect", x0=-0.5, x1=width - 0.5, y0=row - 0.5, y1=row + 0.5, line=dict(color="red", width=2)
        )
    for column in columns:
        figure.add_shape(
            type="rect",
            x0=column - 0.5,
            x1=column + 0.5,
            y0=-0.5,
            y1=height - 0.5,
            line=dict(color="red", width=2),
        )
    return figure


# ---------------------------------------------------------------------------------------------------------------
# Tokens, rankings, curves
# ---------------------------------------------------------------------------------------------------------------


def token_highlight_html(
    tokens: Sequence[str], scores: np.ndarray, *, caption: str = "", marked: Sequence[int] = ()
) -> str:
    """Tokens as coloured chips on the shared scale; hover shows each token's score; the ``marked`` positions (the
    selected word) are outlined in red, as the selected rows and columns of a heatmap are.

    Returns:
        An HTML fragment (every token escaped) for ``st.markdown(..., unsafe_allow_html=True)``.
    """
    scores = np.asarray(scores, dtype=float)
    if len(tokens) != len(scores):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    low, high = _colour_range(scores)
    scale = DIVERGING if _signed(scores) else SEQUENTIAL
    chips = []
    for i, (token, score, colour) in enumerate(
        zip(tokens, scores, _colours(scores, scale, low, high), strict=True)
    ):
        strength = abs(score) / max(abs(low), abs(high))
        ink = "white" if (strength > 0.5 if scale == DIVERGING else score > (low + high) / 2) else "black"
        background = colour if scale == SEQUENTIAL or strength > 0.05 else "#f0f0f0"
        outline = "outline:3px solid red;" if i in marked else ""
        chips.append(
            f'<span title="{score:.3f}" style="background:{background};color:{ink};padding:2px 6px;{outline}'
            f'margin:2px;border-radius:4px;display:inline-block;font-family:monospace">{html.escape(token)}</span>'
        )
    head = f'<div style="font-size:0.85em;color:#666">{html.escape(caption)}</div>' if caption else ""
    return f'{head}<div style="line-height:2.2em">{"".join(chips)}</div>'


def ranking_figure(
    labels: Sequence[str], probabilities: Sequence[float], *, title: str, highlight: str | None = None
) -> go.Figure:
    """Top-k answers (or words, or labels) as horizontal bars, best on top; ``highlight`` gets a darker bar."""
    colours = ["#1f4e79" if label == highlight else "#6fa8dc" for label in labels]
    figure = go.Figure(
        go.Bar(
            x=list(probabilities),
            y=list(labels),
            orientation="h",
            marker_color=colours,
            text=[f"{p:.1%}" for p in probabilities],
            # Every value printed: outside its bar, where no bar is too short to hold it, in room left for it.
            textposition="outside",
            constraintext="none",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(range=[0, max(1e-9, max(probabilities, default=1.0)) * 1.3], tickformat=".0%")
    figure.update_layout(title=title, height=80 + 28 * max(1, len(labels)), **_LAYOUT)
    return figure


def curves_figure(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]], *, title: str, x_title: str, y_title: str
) -> go.Figure:
    """One line per named series of (x, y) points, e.g. a metric over training steps for each checkpoint."""
    figure = go.Figure()
    for name, (xs, ys) in curves.items():
        figure.add_trace(
            go.Scatter(x=list(xs), y=list(ys), mode="lines+markers", name=name, marker=dict(size=4))
        )
    figure.update_xaxes(title=x_title)
    figure.update_yaxes(title=y_title)
    figure.update_layout(title=title, height=340, legend=dict(orientation="h", y=-0.25), **_LAYOUT)
    return figure


__all__ = [
    "DIVERGING",
    "SEQUENTIAL",
    "badge_rectangles",
    "clickable_regions",
    "curves_figure",
    "detections_figure",
    "head_grid_figure",
    "heat_image",
    "mark_lines",
    "mark_regions",
    "matrix_heatmap",
    "place_badges",
    "ranking_figure",
    "region_labels",
    "region_scores_figure",
    "token_highlight_html",
]
