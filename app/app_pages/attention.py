"""Attention explorer: any family, layer and head as a words × regions map, on the image, and over all heads."""

import streamlit as st

from app import panels, results
from app.context import page_context, reported
from app.selection import Pick
from app.state import widget_key


def layer_head_pickers(layers: int, heads: int, *, key: str, default_layer: int | None = None):
    """Two selectboxes, layer and head, each with a "mean" choice (None); shown 1-based."""
    left, right = st.columns(2)
    layer = left.selectbox(
        "Layer",
        [None, *range(layers)],
        index=0 if default_layer is None else default_layer + 1,
        format_func=lambda i: "mean over layers" if i is None else str(i + 1),
        key=f"{key}_layer",
    )
    head = right.selectbox(
        "Head",
        [None, *range(heads)],
        format_func=lambda i: "mean over heads" if i is None else str(i + 1),
        key=f"{key}_head",
    )
    return layer, head


def show_in_map(family: str, layer: int, head: int | None) -> None:
    """A click on the head grid: show that family, layer and head (or head mean) in the map above."""
    st.session_state.update({"attention_family": family, "map_layer": layer, "map_head": head})


st.title("Attention")
st.caption(
    "Attention weights are hypotheses about what the model uses, not proof: cross layers attend over hidden states "
    "already mixed by earlier layers. Check a pattern against *Attributions*, which measure the answer's dependence."
)
page = page_context()
with reported("Collecting attention", stop=True):
    result = results.attention(page.query)
maps, heads = result.maps, page.checkpoint.model.config.num_attention_heads
# The word and the region the cross-attention views show: set by their dropdowns, or by a click on the map or a box
# (the click's callback writes the dropdowns' keys before they are drawn, so both stay in step).
token_key = widget_key("attention_token", maps.tokens)
region_key = widget_key("attention_region", page.scene.labels)
words = [i for i, t in enumerate(maps.tokens) if t.isalpha()]
# The last word is often the object asked about.
st.session_state.setdefault(token_key, words[-1] if words else 0)
st.session_state.setdefault(region_key, 0)
selected = Pick(token=st.session_state[token_key], region=st.session_state[region_key])


def select(pick: Pick) -> None:
    """A click on the map or on a box: show its word and its region in the cross-attention views."""
    if pick.token is not None:
        st.session_state[token_key] = pick.token
    if pick.region is not None:
        st.session_state[region_key] = pick.region


def select_region(region: int) -> None:
    select(Pick(region=region))


map_column, image_column = st.columns([3, 2], gap="large")
with map_column:
    st.subheader("One map")
    family = st.selectbox(
        "Family (query → key)",
        list(panels.FAMILY_NAMES),
        index=2,
        format_func=panels.FAMILY_NAMES.get,
        key="attention_family",
    )
    layer, head = layer_head_pickers(maps.num_layers(family), heads, key="map")
    hide_column, stretch_column = st.columns(2)
    hide_special = hide_column.toggle("Hide [CLS] and [SEP]", value=False, key="attention_hide_special")
    stretch = stretch_column.toggle(
        "Stretch colours",
        value=False,
        key="attention_stretch",
        help="Colours span the map's [min, max], not [0, max].",
    )
    panels.show_attention_map(
        maps,
        family,
        layer,
        head,
        page.scene,
        hide_special,
        stretch,
        selected=selected,
        on_pick=select,
        key="attention_map",
    )
    st.caption("Click a cell to show its word and region in the views beside; outlined: the ones shown.")

with image_column:
    st.subheader("Cross-attention on the image")
    cross_layers = maps.num_layers("cross_l2v")
    if cross_layers == 0:
        st.info("This model has no cross-modality layers.")
    else:
        cross_layer, cross_head = layer_head_pickers(
            cross_layers, heads, key="cross", default_layer=cross_layers - 1
        )
        token = st.selectbox(
            "Word", range(len(maps.tokens)), format_func=lambda i: f"{i} {maps.tokens[i]}", key=token_key
        )
        panels.show_word_on_image(
            page.scene,
            maps,
            token,
            cross_layer,
            cross_head,
            selected_region=selected.region,
            on_pick=select_region,
            key="word_on_image",
        )
        region = st.selectbox(
            "Region", range(maps.num_regions), format_func=lambda i: page.scene.labels[i], key=region_key
        )
        panels.show_region_to_words(
            maps,
            region,
            page.scene.labels[region],
            cross_layer,
            cross_head,
            selected_token=token,
            key="region_words",
        )

st.download_button(
    "Export every map and head statistic (NPZ)",
    data=lambda: results.attention_export(page.query),
    file_name=f"attention_{page.inputs.image.digest}.npz",
    mime="application/octet-stream",
    icon=":material/download:",
    help="With the tokens, boxes, a hash of the region features and the checkpoint; read back with "
    "analysis.export.read_export.",
    on_click="ignore",
    key="attention_export",
)

st.subheader("All heads")
st.caption("Click a cell to show that head in the map above; the outlined cell is the one shown.")
statistic = st.selectbox(
    "Statistic", list(panels.STATISTICS), format_func=panels.STATISTICS.get, key="attention_statistic"
)
panels.show_head_grid(result.stats, statistic, (family, layer, head), on_pick=show_in_map, key="head_grid")
