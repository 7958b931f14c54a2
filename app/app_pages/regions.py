"""Image & regions: what the detector hands LXMERT — boxes, labels, attributes and confidences."""

import streamlit as st

from app import dataset_mode, panels
from app.context import page_context
from app.state import widget_key

st.title("Image & regions")
st.caption(
    "LXMERT never sees pixels: it reads the detector's regions, each a feature vector and a box. "
    "These are the regions it reads for this image, best first; the sidebar sets how many."
)
page = page_context(needs_text=False)
dataset_mode.show_region_source(page)
labels = page.scene.labels
region_key = widget_key("regions_region", labels)
st.session_state.setdefault(region_key, 0)


def select(region: int) -> None:
    """A click on a box selects its region in the dropdown below (callbacks run before it is drawn)."""
    st.session_state[region_key] = region


panels.show_detections(page.scene, selected=[st.session_state[region_key]], on_pick=select, key="detections")
st.caption("Click the dot at a box's centre to select its region; the dashed outline marks the one selected.")
region = st.selectbox("Region", range(len(labels)), format_func=labels.__getitem__, key=region_key)
panels.show_region(page.scene, region, key="region")
panels.show_region_table(page.scene, key="region_table")
