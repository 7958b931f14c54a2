"""Masked object: hide regions and read the object and attribute heads' guesses, with and without the text."""

import streamlit as st

from app import panels, render, results
from app.context import page_context, reported
from app.state import widget_key

st.title("Masked object")
st.caption(
    "Pick regions to mask: their features are zeroed (boxes kept), as in pre-training, and the object heads guess "
    "what was there from the other regions and the sentence. Without the text, every word is [MASK]ed."
)
page = page_context("masked_objects")
labels = page.scene.labels
chosen = st.multiselect(
    "Regions to mask",
    range(len(labels)),
    default=[0],
    format_func=lambda i: labels[i],
    key=widget_key("masked_regions", labels),
)
top_k = st.slider("Guesses per head", 3, 15, 5, key="masked_object_top_k")
if not chosen:
    st.info("Select at least one region.")
    st.stop()
regions = tuple(sorted(chosen))
boxes = page.scene.image_boxes[list(regions)]
confidences = page.scene.regions.object_conf.numpy()[list(regions)]
details = panels.region_details(page.scene)
image_column, guesses_column = st.columns([1, 2], gap="large")
with image_column:
    figure = render.detections_figure(
        page.scene.image,
        boxes,
        [labels[r] for r in regions],
        confidences,
        title="Masked regions",
        numbers=regions,
        details=[details[r] for r in regions],
    )
    panels.plot(figure, key="masked_boxes")
with guesses_column, reported("Masked-object prediction"):
    panels.show_masked_regions(
        page.scene,
        results.masked_regions(page.query, regions, "text", top_k),
        results.masked_regions(page.query, regions, "no_text", top_k),
        key="masked_regions",
    )
