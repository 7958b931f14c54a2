"""Hidden states drawn as points: a 2-D projection coloured by a label (the Probe page)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import ImageColor

from app.render import _LAYOUT, BOX_PALETTE


def class_colour(name: str, index: int) -> str:
    """A class named by a colour ("blue") is drawn in it; any other takes the palette's ``index``-th colour."""
    try:
        ImageColor.getrgb(name)
        return name
    except ValueError:
        return BOX_PALETTE[index % len(BOX_PALETTE)]


def projection_figure(
    coords: np.ndarray,
    classes: Sequence[str],
    hover: Sequence[str],
    *,
    title: str,
    axis_titles: Sequence[str],
) -> go.Figure:
    """(N, 2) points, one colour (:func:`class_colour`, outlined so white shows) and legend entry per class, each
    point's ``hover`` on mouse-over."""
    coords = np.asarray(coords, dtype=float)
    figure = go.Figure()
    for k, name in enumerate(dict.fromkeys(classes)):
        rows = [i for i, c in enumerate(classes) if c == name]
        figure.add_trace(
            go.Scatter(
                x=coords[rows, 0].tolist(),
                y=coords[rows, 1].tolist(),
                mode="markers",
                name=name,
                marker=dict(
                    size=7, color=class_colour(name, k), opacity=0.85, line=dict(width=0.5, color="#444")
                ),
                text=[hover[i] for i in rows],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    figure.update_xaxes(title=axis_titles[0])
    figure.update_yaxes(title=axis_titles[1])
    figure.update_layout(title=title, height=420, **_LAYOUT)
    return figure


__all__ = ["depth_figure", "projection_figure"]


def depth_figure(
    series: dict[str, tuple[Sequence[str], Sequence[float]]],
    depths: Sequence[str],
    *,
    title: str,
    y_title: str,
    dashed: Sequence[str] = (),
) -> go.Figure:
    """One line per named series over named depths (e.g. ``input``, ``language 1``, ``cross 1``) in the order of
    ``depths``, so two streams of different depths share their cross layers; ``dashed`` series are baselines."""
    figure = go.Figure()
    for k, (name, (xs, ys)) in enumerate(series.items()):
        figure.add_trace(
            go.Scatter(
                x=list(xs),
                y=list(ys),
                mode="lines+markers",
                name=name,
                line=dict(dash="dash" if name in dashed else "solid", width=1 if name in dashed else 2),
                marker=dict(size=5 if name in dashed else 8, color=BOX_PALETTE[k // 2 % len(BOX_PALETTE)]),
                hovertemplate=f"{name}, %{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )
    figure.update_xaxes(type="category", categoryorder="array", categoryarray=list(depths), title="layer")
    figure.update_yaxes(title=y_title, range=[0, 1.05], tickformat=".0%")
    figure.update_layout(title=title, height=380, legend=dict(orientation="h", y=-0.25), **_LAYOUT)
    return figure
