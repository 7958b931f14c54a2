"""Edits of an input as reproducible records: what the Intervene page applies, caches on and exports.

An :class:`Edit` is a small frozen record (a kind and its arguments, plain values only), so a list of them is a
cache key, a JSON document (:meth:`Edit.to_dict` / :meth:`Edit.from_dict`) and a recipe anyone can replay with
:func:`apply_edits`. Region edits call the library's counterfactuals (``analysis/interventions.py``) in order, each
edit's region indices counting the regions as the edits before it left them. Head edits never touch the model:

- ``silence`` masks the named heads of one direction (``head_mask``);
- ``prune`` removes heads. A pruned head's context no longer reaches the residual stream, which a head mask of 0
  does too (:func:`analysis.interventions.pruned_heads`), so pruning is applied as a mask that covers every
  direction the head's module serves: both cross directions when the model shares its cross-attention module.
  The cached model stays as it was, also while another visitor uses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from lxmert.config import LxmertConfig

from .attention import CROSS_FAMILIES
from .inputs import Example
from .interventions import Head, add_region, delete_regions, head_mask, move_region, swap_features

REGION_KINDS = ("delete", "move", "add", "swap")
HEAD_KINDS = ("silence", "prune")
EDIT_KINDS = REGION_KINDS + HEAD_KINDS
# How many regions each region edit names: delete any number ≥ 1, move and add one (add: the region copied).
_REGION_COUNT = {"delete": None, "move": 1, "add": 1, "swap": 2}


@dataclass(frozen=True)
class Edit:
    """One edit of the input.

    Attributes:
        kind: one of :data:`EDIT_KINDS`.
        regions: ``delete``: the regions removed; ``move``: the region moved; ``add``: the region whose feature
            (and detector labels) the new region copies; ``swap``: the two regions whose features trade places.
        box: ``move`` and ``add``: the new box (x1, y1, x2, y2) in image pixels.
        heads: ``silence`` and ``prune``: the (family, layer, head) affected.
    """

    kind: str
    regions: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    heads: tuple[Head, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in EDIT_KINDS:
            raise ValueError(f"unknown edit kind {self.kind!r}; choose from {EDIT_KINDS}")
        if self.kind in REGION_KINDS:
            count = _REGION_COUNT[self.kind]
            if not self.regions or (count is not None and len(self.regions) != count):
                wanted = "at least one region" if count is None else f"{count} region(s)"
                raise ValueError(f"a {self.kind} edit names {wanted}, got {list(self.regions)}")
            if self.heads:
                raise ValueError(f"a {self.kind} edit names no heads")
            if (self.box is None) != (self.kind not in ("move", "add")):
                raise ValueError(
                    f"a {self.kind} edit {'needs' if self.kind in ('move', 'add') else 'takes no'} box"
                )
            if self.kind == "swap" and self.regions[0] == self.regions[1]:
                raise ValueError(f"a swap edit needs two different regions, got {list(self.regions)}")
        else:
            if not self.heads:
                raise ValueError(f"a {self.kind} edit names at least one head")
            if self.regions or self.box is not None:
                raise ValueError(f"a {self.kind} edit names heads only")
        if self.box is not None and len(self.box) != 4:
            raise ValueError(f"a box is (x1, y1, x2, y2), got {list(self.box)}")

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON values: ``{"kind", "regions", "box", "heads"}``."""
        return {
            "kind": self.kind,
            "regions": list(self.regions),
            "box": None if self.box is None else list(self.box),
            "heads": [list(h) for h in self.heads],
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Edit:
        """An edit from :meth:`to_dict`'s output (e.g. read back from an export).

        Raises:
            ValueError: naming the field that is missing or of the wrong type.
        """
        if not isinstance(record, Mapping):
            raise ValueError(f"an edit is a JSON object, got {type(record).__name__}")
        unknown = set(record) - {"kind", "regions", "box", "heads"}
        if unknown:
            raise ValueError(f"edit has unknown fields {sorted(unknown)}")
        kind = record.get("kind")
        if not isinstance(kind, str):
            raise ValueError(f"edit field 'kind' must be a string, got {kind!r}")

        def integers(value: Any, name: str) -> tuple[int, ...]:
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise ValueError(f"edit field {name!r} must be a list of integers, got {value!r}")
            return tuple(value)

        regions = integers(record.get("regions", []), "regions")
        box = record.get("box")
        if box is not None:
            if not isinstance(box, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in box
            ):
                raise ValueError(f"edit field 'box' must be a list of numbers, got {box!r}")
            box = tuple(float(v) for v in box)
        heads = []
        for head in record.get("heads", []):
            if not (isinstance(head, list) and len(head) == 3 and isinstance(head[0], str)):
                raise ValueError(f"edit field 'heads' holds [family, layer, head] triples, got {head!r}")
            heads.append((head[0], *integers(head[1:], "heads")))
        return cls(kind, regions, box, tuple(heads))

    def describe(self) -> str:
        """One line for a list of edits."""
        if self.kind == "delete":
            return f"delete region{'s' if len(self.regions) > 1 else ''} {', '.join(map(str, self.regions))}"
        box = "" if self.box is None else "(" + ", ".join(f"{v:.0f}" for v in self.box) + ")"
        if self.kind == "move":
            return f"move region {self.regions[0]} to {box}"
        if self.kind == "add":
            return f"add a copy of region {self.regions[0]} at {box}"
        if self.kind == "swap":
            return f"swap the features of regions {self.regions[0]} and {self.regions[1]}"
        return f"{self.kind} {len(self.heads)} head{'s' if len(self.heads) > 1 else ''}"


@dataclass
class EditedInput:
    """An example after edits, with what the model must run under.

    Attributes:
        example: the edited example.
        origin: per region of ``example``, its index in the unedited example; None for an added region.
        silenced: heads masked in one direction.
        pruned: heads removed from their module (every direction it serves).
    """

    example: Example
    origin: list[int | None]
    silenced: tuple[Head, ...] = ()
    pruned: tuple[Head, ...] = ()

    def head_mask(self, config: LxmertConfig, device: Any = None) -> dict[str, Tensor] | None:
        """The mask the model runs under (None without head edits)."""
        heads = set(self.silenced) | set(module_heads(config, self.pruned))
        return head_mask(config, sorted(heads), device) if heads else None


def module_heads(config: LxmertConfig, heads: Iterable[Head]) -> list[Head]:
    """The heads pruning ``heads`` removes: a shared cross-attention head in both directions."""
    removed = set()
    for family, layer, head in heads:
        removed.add((family, layer, head))
        if config.share_cross_attention and family in CROSS_FAMILIES:
            removed |= {(f, layer, head) for f in CROSS_FAMILIES}
    return sorted(removed)


def apply_edits(example: Example, edits: Sequence[Edit]) -> EditedInput:
    """Apply the edits in order; the region indices of each count the regions the edits before it left.

    Raises:
        IndexError: an edit names a region the example (as edited so far) does not have.
        ValueError: a box the library refuses.
    """
    origin: list[int | None] = list(range(example.num_regions))
    silenced: list[Head] = []
    pruned: list[Head] = []
    for number, edit in enumerate(edits, 1):
        try:
            if edit.kind == "delete":
                example = delete_regions(example, edit.regions)
                origin = [o for r, o in enumerate(origin) if r not in set(edit.regions)]
            elif edit.kind == "move":
                example = move_region(example, edit.regions[0], edit.box)
            elif edit.kind == "add":
                source = edit.regions[0]
                if not 0 <= source < example.num_regions:
                    raise IndexError(f"region {source} out of range for {example.num_regions} regions")
                example = add_region(
                    example,
                    example.visual_feats[source],
                    edit.box,
                    None if example.object_ids is None else int(example.object_ids[source]),
                    None if example.attr_ids is None else int(example.attr_ids[source]),
                )
                origin.append(None)
            elif edit.kind == "swap":
                example = swap_features(example, *edit.regions)
            elif edit.kind == "silence":
                silenced += edit.heads
            else:
                pruned += edit.heads
        except (IndexError, ValueError) as err:
            raise type(err)(f"edit {number} ({edit.describe()}): {err}") from err
    return EditedInput(example, origin, tuple(dict.fromkeys(silenced)), tuple(dict.fromkeys(pruned)))


def head_units(importance: Mapping[str, np.ndarray], config: LxmertConfig) -> dict[Head, float]:
    """What pruning can remove, one unit per attention module's head, with its importance.

    With a shared cross-attention module one (layer, head) serves both directions: it is one unit, named
    ``("cross", layer, head)`` and scored by the sum of its two directions' importance.
    """
    units: dict[Head, float] = {}
    for family, values in importance.items():
        shared = config.share_cross_attention and family in CROSS_FAMILIES
        for layer, row in enumerate(np.asarray(values)):
            for head, value in enumerate(row):
                unit = ("cross", layer, head) if shared else (family, layer, head)
                units[unit] = units.get(unit, 0.0) + float(value)
    return units


def least_important_heads(
    importance: Mapping[str, np.ndarray], config: LxmertConfig, count: int
) -> tuple[Head, ...]:
    """The heads of the ``count`` units (:func:`head_units`) ranked least important, as a pruning removes them
    (a shared cross-attention unit in both directions). Ties go to the earlier family, layer and head."""
    units = head_units(importance, config)
    if not 0 <= count <= len(units):
        raise ValueError(f"the model has {len(units)} prunable heads, asked for {count}")
    ranked = sorted(units, key=lambda u: units[u])[:count]  # sorted() is stable: ties keep insertion order
    heads: list[Head] = []
    for family, layer, head in ranked:
        heads += [(f, layer, head) for f in CROSS_FAMILIES] if family == "cross" else [(family, layer, head)]
    return tuple(heads)


__all__ = [
    "EDIT_KINDS",
    "Edit",
    "EditedInput",
    "HEAD_KINDS",
    "REGION_KINDS",
    "apply_edits",
    "head_units",
    "least_important_heads",
    "module_heads",
]
