"""Image & regions: what the detector hands LXMERT — boxes, labels, attributes and confidences."""

import streamlit as st

from app import dataset_mode, panels
from app.context import page_context

st.title("Image & regions")
st.caption(
    "LXMERT never sees pixels: it reads the detector's regions, each a feature vector and a box. "
    "These are the regions it reads for this image, best first; the sidebar sets how many."
)
page = page_context(needs_text=False)
dataset_mode.show_region_source(page)
panels.show_detections(page.scene, key="detections")
panels.show_region_table(page.scene, key="region_table")
