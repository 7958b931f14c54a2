"""The model sets the app offers: each one detector and the checkpoints that read its region features.

A set is a directory holding a ``model_set.json`` (:mod:`lxmert.model_sets`), found by the bounded scans of
``LXMERT_ASSETS_DIR`` and ``LXMERT_CHECKPOINTS_DIR`` that never lead outside them (``app/directories.py``). The set in
``<assets>/default`` is the default. Checkpoint directories found under the checkpoints directory outside every set
(ours, or transformers' with ``pytorch_model.bin``) join the default set: they read its detector's features, as the
app's checkpoints did before there were sets. Every checkpoint is named by where it lies: ``default/model``,
``<set directory>/<its name in the manifest>``, ``runs/a/best``. A set's checkpoint may name a hub id instead of a
path: it is read from the local hub cache only, and listed as unable to run while the cache lacks it.

Whether each checkpoint can run on its set's detector is checked separately, per run, for the chosen set only
(:func:`app.loading.problem`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from app import directories, loading
from app.config import AppConfig
from lxmert.model_sets import CheckpointEntry, ModelSet, ModelSetError, read_model_set

SET_KEY = "model_set"
SYNTHETIC_CAPTION = (
    "Knows only the synthetic world: flat shapes of a few colours on plain backgrounds. Its detector and models "
    "have never seen a photo."
)


@dataclass(frozen=True)
class AppSet:
    """A model set as the app lists it.

    Attributes:
        key: its resolved directory, what the picker remembers.
        label: how the picker names it.
        model_set: the set, its checkpoints named as the app lists them (the default set's with the loose ones).
        problems: checkpoint name → why its files cannot be opened safely (an entry leading outside the set).
    """

    key: str
    label: str
    model_set: ModelSet
    problems: dict[str, str] = field(default_factory=dict)


@dataclass
class SetsFound:
    """The usable sets, the default first; notes on what the scans skipped; the sets that could not be read."""

    sets: list[AppSet]
    notes: list[str]
    refused: list[str] = field(default_factory=list)


def _unsafe(entry: CheckpointEntry, root: Path) -> str | None:
    """Why a checkpoint directory of a set cannot be opened safely (an entry unreadable or leading outside)."""
    if entry.path is None or not entry.path.is_dir():
        return (
            None  # a file, which read_model_set resolved inside the set, or one in the user's own hub cache
        )
    skipped = directories.problems(entry.path, root, depth=1)
    if not skipped:
        return None
    return "its files cannot be opened safely: " + "; ".join(
        f"`{Path(s.path).relative_to(root) if Path(s.path).is_relative_to(root) else s.path}` ({s.reason})"
        for s in skipped
    )


def _named(model_set: ModelSet, prefix: str) -> AppSet:
    names = {f"{prefix}/{key}": entry for key, entry in model_set.checkpoints.items()}
    problems = {name: reason for name, entry in names.items() if (reason := _unsafe(entry, model_set.root))}
    named = dataclasses.replace(model_set, checkpoints=names, default=f"{prefix}/{model_set.default}")
    return AppSet(str(model_set.root), model_set.name, named, problems)


def find_sets(config: AppConfig) -> SetsFound:
    """Every model set under the app's directories, the default one with the loose checkpoints."""
    roots = list(dict.fromkeys([config.assets_dir, config.checkpoints_dir]))
    scans = {root: loading.find_checkpoints(str(root)) for root in roots}
    bases = [config.checkpoints_dir, config.assets_dir]
    notes: list[str] = []
    refused: list[str] = []
    skipped = list(dict.fromkeys(s for scan in scans.values() for s in scan.skipped))
    if skipped:
        notes.append(directories.describe_skipped(skipped, bases))
    for root, scan in scans.items():
        if scan.truncated:
            notes.append(
                f"The search of {root} stopped after {directories.MAX_ENTRIES} entries: "
                "checkpoints beyond them are not listed."
            )
    default_dir = Path(config.default_dir).resolve()
    found: dict[str, AppSet] = {}
    for scan in scans.values():
        for prefix, directory in scan.sets.items():
            if directory in found:
                continue  # the same set under both directories
            try:
                found[directory] = _named(read_model_set(directory), prefix)
            except ModelSetError as err:
                refused.append(f"Model set `{prefix}` cannot be used: {err}")
    default = found.pop(str(default_dir), None)
    in_sets = {e.location for s in found.values() for e in s.model_set.checkpoints.values()}
    if default is not None:
        in_sets |= {e.location for e in default.model_set.checkpoints.values()}
    loose = {
        name: CheckpointEntry(Path(path))
        for name, path in scans[config.checkpoints_dir].found.items()
        if path not in in_sets
    }
    if default is not None:
        joined = {**default.model_set.checkpoints, **loose}
        default = dataclasses.replace(
            default, model_set=dataclasses.replace(default.model_set, checkpoints=joined)
        )
    elif loose:
        notes.append(
            f"{len(loose)} checkpoints under {config.checkpoints_dir} are not listed: they have no detector "
            f"without a default model set ({default_dir / 'model_set.json'})."
        )
    sets = ([default] if default is not None else []) + [found[k] for k in sorted(found)]
    labels = [s.label for s in sets]
    sets = [
        dataclasses.replace(s, label=f"{s.label} ({s.key})") if labels.count(s.label) > 1 else s for s in sets
    ]
    return SetsFound(sets, notes + refused, refused)


def choose_set(sets: list[AppSet]) -> AppSet:
    """The set picked in the sidebar (the picker appears when there is more than one), with what it knows."""
    by_key = {s.key: s for s in sets}
    with st.sidebar:
        if len(sets) > 1:
            key = st.selectbox(
                "Model set",
                list(by_key),
                format_func=lambda k: by_key[k].label,
                key=SET_KEY,
                help="A detector and the checkpoints that read its region features.",
            )
        else:
            key = sets[0].key
        chosen = by_key[key]
        if chosen.model_set.world == "synthetic":
            st.caption(f"**{chosen.label}**: {SYNTHETIC_CAPTION}")
        else:
            st.caption(f"**{chosen.label}**: made for real photos.")
    return chosen


__all__ = ["AppSet", "SYNTHETIC_CAPTION", "SetsFound", "choose_set", "find_sets"]
