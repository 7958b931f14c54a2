"""What a page needs before it draws: a usable image, and a checkpoint that can do the page's job.

Problems end the page with a message, never a traceback: no image yet, an image that cannot be read, a checkpoint
that fails to load, or a checkpoint without the head the page needs (then a checkpoint that has it is used instead,
and the page says so). The sidebar is drawn before the page, so another checkpoint can always be picked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st

from analysis.capabilities import HEAD_OF
from app import loading, state
from app.loading import Checkpoint, ImageError, Scene
from app.results import Query
from lxmert.precision import describe, resolve_precision

CAPABILITY_NAMES = {
    "answer": "QA head",
    "match": "matching head",
    "masked_words": "masked-LM head",
    "masked_objects": "masked-object heads",
}


@dataclass
class PageContext:
    """The input of one page run: the query (what caches key on), its scene and its checkpoint."""

    query: Query
    scene: Scene
    checkpoint: Checkpoint
    inputs: state.Inputs


def try_load(inputs: state.Inputs, name: str, *, quiet: bool = False) -> Checkpoint | None:
    """The checkpoint ``name``, or None (and, unless ``quiet``, a message naming it and the fault) if it cannot run
    on the set's detector or fails to load."""
    if name in inputs.problems:
        if not quiet:
            st.error(
                f"Checkpoint `{name}` cannot be loaded: {inputs.problems[name]}",
                icon=":material/block:",
            )
        return None
    try:
        path, vocab, answers = loading.entry_files(inputs.checkpoints[name])
        return loading.load_model(path, name, inputs.config.device, vocab, answers)
    except Exception as err:  # noqa: BLE001 - any file of a checkpoint may be broken, and torch or safetensors say so
        if not quiet:
            # CheckpointError and the OS's errors explain themselves; anything else is named by its type.
            detail = str(err) if isinstance(err, (ValueError, OSError)) else f"{type(err).__name__}: {err}"
            st.error(f"Checkpoint `{name}` cannot be loaded: {detail}", icon=":material/error:")
        return None


def load_or_stop(inputs: state.Inputs, name: str) -> Checkpoint:
    """The checkpoint ``name``, or a message naming it and the end of the page run."""
    checkpoint = try_load(inputs, name)
    if checkpoint is None:
        st.stop()
    return checkpoint


def checkpoint_with(
    inputs: state.Inputs, capability: str | None, *, required: bool = True
) -> Checkpoint | None:
    """The sidebar's checkpoint if it has ``capability``, else the first default checkpoint that has it.

    When none has it, the page stops with a message, or (``required=False``) the message is shown and None
    returned so that the rest of the page still draws.
    """
    chosen = load_or_stop(inputs, inputs.checkpoint)
    if capability is None or getattr(chosen.capabilities, capability):
        return chosen
    candidates = sorted(inputs.checkpoints, key=lambda n: (not n.startswith("default/"), n))
    for name in candidates:
        if name == inputs.checkpoint:
            continue
        held = loading.heads(*loading.entry_files(inputs.checkpoints[name]))
        if held is not None and HEAD_OF[capability] not in held:
            continue  # its file has no such head: not loaded to find out (a base-size model is a gigabyte)
        # A broken checkpoint is no candidate (picked in the sidebar, it gets its message).
        other = try_load(inputs, name, quiet=True)
        if other is not None and getattr(other.capabilities, capability):
            st.info(
                f"`{chosen.name}` has no {CAPABILITY_NAMES[capability]} ({chosen.capabilities.describe()}); "
                f"this page uses `{other.name}` ({other.capabilities.describe()}).",
                icon=":material/swap_horiz:",
            )
            return other
    st.warning(f"No checkpoint here has the {CAPABILITY_NAMES[capability]} this view needs.")
    if required:
        st.stop()
    return None


def query_for(inputs: state.Inputs, checkpoint: Checkpoint) -> Query:
    """The cache key of the inputs on one checkpoint (the image must be present)."""
    config = inputs.config
    path, vocab, answers = checkpoint.files
    return Query(
        detector=str(inputs.detector_dir),
        checkpoint=path,
        checkpoint_name=checkpoint.name,
        device=config.device,
        precision=resolve_precision(config.precision, config.device, checkpoint.model.config.hidden_size),
        image=inputs.image.data,
        image_name=inputs.image.name,
        num_regions=inputs.num_regions,
        text=inputs.text,
        vocab=vocab,
        answers=answers,
        stored=inputs.image.dataset,
    )


def scene_or_stop(query: Query) -> Scene:
    try:
        return query.scene()
    except ImageError as err:
        st.error(f"This image cannot be used: {err}", icon=":material/broken_image:")
        st.stop()
    except Exception as err:  # noqa: BLE001 - the detector loads here, on the first image to detect
        what = (
            "The dataset's regions of this image cannot be used"
            if query.stored
            else "The detector cannot be loaded or run"
        )
        st.error(f"{what}: {err}", icon=":material/error:")
        st.stop()


def page_context(capability: str | None = None, *, needs_text: bool = True) -> PageContext:
    """The page's input, or a message and the end of the page run when there is none to work on.

    Args:
        capability: the head the page needs (``answer``, ``match``, ``masked_words``, ``masked_objects``).
        needs_text: whether the page needs a question or sentence.
    """
    inputs = state.current()
    if inputs.image is None:
        st.info("Upload an image in the sidebar, or pick a sample.", icon=":material/upload:")
        st.stop()
    if needs_text and not inputs.text:
        st.info("Type a question or sentence in the sidebar.", icon=":material/edit:")
        st.stop()
    checkpoint = checkpoint_with(inputs, capability)
    query = query_for(inputs, checkpoint)
    st.sidebar.caption(f"Model precision: {describe(query.precision, query.device)}")
    scene = scene_or_stop(query)
    size, wanted = scene.regions.features.shape[1], checkpoint.model.config.visual_feat_dim
    if size != wanted:
        source = "the dataset's feature store holds" if query.stored else "the detector gives"
        st.error(
            f"`{checkpoint.name}` reads {wanted}-d region features, but {source} {size}-d ones: "
            "pick a checkpoint made for these features.",
            icon=":material/error:",
        )
        st.stop()
    return PageContext(query, scene, checkpoint, inputs)


@contextmanager
def reported(what: str, *, stop: bool = False) -> Iterator[None]:
    """Show a failure inside the block as a message with details on demand instead of a traceback page.

    Args:
        what: names the step in the message ("Answering failed: ...").
        stop: end the page run after the message (when what follows needs the block's result); otherwise the
            rest of the page still draws.

    Streamlit's own stop and rerun signals are ``BaseException`` and pass through.
    """
    try:
        yield
    except Exception as err:  # noqa: BLE001 - a researcher's odd input must never take the page down
        st.error(f"{what} failed: {err}", icon=":material/error:")
        with st.expander("Details"):
            st.exception(err)
        if stop:
            st.stop()


__all__ = [
    "CAPABILITY_NAMES",
    "PageContext",
    "checkpoint_with",
    "load_or_stop",
    "page_context",
    "query_for",
    "reported",
    "scene_or_stop",
    "try_load",
]
