"""Figures that set two states of one input side by side: before and after edits (the Intervene page)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from app.render import _LAYOUT

BEFORE_COLOUR = "#9fb7d3"
AFTER_COLOUR = "#1f4e79"


def before_after_figure(
    labels: Sequence[str],
    before: Sequence[float],
    after: Sequence[float],
    *,
    title: str,
    value_format: str = ".1%",
) -> go.Figure:
    """Horizontal bar pairs, one pair per label, each bar with its value printed; a missing value (NaN) has no bar
    and says so."""

    def bar(values: Sequence[float], name: str, colour: str) -> go.Bar:
        values = np.asarray(values, dtype=float)
        return go.Bar(
            x=np.nan_to_num(values).tolist(),
            y=list(labels),
            name=name,
            orientation="h",
            marker_color=colour,
            text=["none" if np.isnan(v) else format(v, value_format) for v in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate=f"%{{y}} {name}: %{{text}}<extra></extra>",
        )

    figure = go.Figure([bar(before, "before", BEFORE_COLOUR), bar(after, "after", AFTER_COLOUR)])
    values = np.concatenate([np.asarray(before, dtype=float), np.asarray(after, dtype=float)])
    values = values[np.isfinite(values)]
    low, high = (min(0.0, values.min()), max(0.0, values.max())) if values.size else (0.0, 1.0)
    pad = 0.25 * (high - low) or 1.0  # room for the printed values beside the bars
    figure.update_xaxes(range=[low - (pad if low < 0 else 0.0), high + pad])
    figure.update_yaxes(autorange="reversed", type="category")
    if value_format.endswith("%"):
        figure.update_xaxes(tickformat=".0%")
    figure.update_layout(
        title=title,
        barmode="group",
        height=100 + 44 * max(1, len(labels)),
        legend=dict(orientation="h", y=-0.15),
        **_LAYOUT,
    )
    return figure


__all__ = ["before_after_figure"]
