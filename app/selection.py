"""What a click on a figure picks: Plotly selection points → a region, a heatmap cell, a word.

A clickable figure tags each point it offers for clicking with what the point stands for, in its customdata:
``["region", r]`` on a box over the image, ``["cell", row, column]`` on a heatmap cell (positions among the rows and
columns drawn). The mapping reads that tag, never where the point sits on the screen, so it holds whatever the
figure draws around it. Streamlit hands the points over as ``st.session_state[key].selection.points``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

REGION = "region"
CELL = "cell"


def _tagged(points: Iterable[Mapping], tag: str, size: int) -> tuple[int, ...] | None:
    """The ``size`` integers after ``tag`` in the first point whose customdata starts with ``tag`` (what follows
    them, such as hover text, is ignored)."""
    for point in points:
        data = point.get("customdata")
        if isinstance(data, Sequence) and not isinstance(data, str) and len(data) > size and data[0] == tag:
            try:
                return tuple(int(value) for value in data[1 : size + 1])
            except (TypeError, ValueError):
                continue
    return None


def clicked_region(points: Iterable[Mapping]) -> int | None:
    """The region of the first box clicked, or None when no box was."""
    picked = _tagged(points, REGION, 1)
    return None if picked is None else picked[0]


def clicked_cell(points: Iterable[Mapping]) -> tuple[int, int] | None:
    """(row, column) of the first heatmap cell clicked, as positions among those drawn; None when no cell was."""
    picked = _tagged(points, CELL, 2)
    return None if picked is None else (picked[0], picked[1])


@dataclass(frozen=True)
class Pick:
    """What a click selects: a token position, a region, or both (None where the click says nothing)."""

    token: int | None = None
    region: int | None = None


def cell_pick(
    sides: tuple[str, str], rows: Sequence[int], columns: Sequence[int], cell: tuple[int, int]
) -> Pick:
    """The word and region a click on a cell of a query × key map selects.

    The query (row) picks the word or region of its side; the key (column) picks the other side's, so a click on
    a cross-attention cell selects both its word and its region, and one on a self-attention cell its query.

    Args:
        sides: (query side, key side), each ``"lang"`` or ``"vis"`` (``analysis.attention.FAMILY_SIDES``).
        rows, columns: the token or region position of each row and column drawn (some may be hidden).
        cell: (row, column) among those drawn.
    """
    row, column = cell
    if not (0 <= row < len(rows) and 0 <= column < len(columns)):
        raise ValueError(f"cell {cell} is outside the {len(rows)} × {len(columns)} map drawn")
    picked = {sides[0]: rows[row]}
    picked.setdefault(sides[1], columns[column])
    return Pick(token=picked.get("lang"), region=picked.get("vis"))


def toggled(chosen: Sequence[int], region: int) -> list[int]:
    """``chosen`` with ``region`` added (at the end) or, when it is there already, removed."""
    return [r for r in chosen if r != region] if region in chosen else [*chosen, region]


__all__ = ["CELL", "REGION", "Pick", "cell_pick", "clicked_cell", "clicked_region", "toggled"]
