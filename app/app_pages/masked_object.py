"""Masked object: hide regions and read the object and attribute heads' guesses, with and without the text."""

import streamlit as st

from app import panels, results
from app.context import page_context, reported
from app.selection import toggled
from app.state import widget_key

st.title("Masked object")
st.caption(
    "Pick regions to mask: their features are zeroed (boxes kept), as in pre-training, and the object heads guess "
    "what was there from the other regions and the sentence. Without the text, every word is [MASK]ed."
)
page = page_context("masked_objects")
labels = page.scene.labels
chosen_key = widget_key("masked_regions", labels)
st.session_state.setdefault(chosen_key, [0])


def toggle(region: int) -> None:
    """A click on a box masks its region, or unmasks it (callbacks run before the chooser is drawn)."""
    st.session_state[chosen_key] = toggled(st.session_state[chosen_key], region)


chosen = st.multiselect(
    "Regions to mask", range(len(labels)), format_func=lambda i: labels[i], key=chosen_key
)
top_k = st.slider("Guesses per head", 3, 15, 5, key="masked_object_top_k")
regions = tuple(sorted(chosen))
image_column, guesses_column = st.columns([1, 2], gap="large")
with image_column:
    panels.show_detections(page.scene, selected=regions, on_pick=toggle, key="masked_boxes")
    st.caption("Click the dot at a box's centre to mask or unmask its region; dashed outlines: masked.")
if not regions:
    guesses_column.info("Select at least one region.")
    st.stop()
with guesses_column, reported("Masked-object prediction"):
    panels.show_masked_regions(
        page.scene,
        results.masked_regions(page.query, regions, "text", top_k),
        results.masked_regions(page.query, regions, "no_text", top_k),
        key="masked_regions",
    )
