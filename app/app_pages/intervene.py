"""Intervene: edit the scene or the model's heads and watch the answer, the attention and the relevancy move.

Region edits (delete, move, add a copy, swap features) pile up in a list; silenced heads (the Ask page's picker)
and pruned heads (the least important by gradient importance) follow them. Every edit is a plain record, shown
as JSON and written into the export, so the same intervention can be replayed with ``analysis.edits``.
"""

import numpy as np
import streamlit as st

from analysis.edits import Edit, apply_edits, head_units, least_important_heads
from app import panels, render, results_interventions
from app.context import page_context, reported
from app.render_before_after import before_after_figure
from app.state import widget_key

EDITS_KEY = "intervene_edits"
SHOWN_REGIONS = 12  # the region relevancy chart's bars; the export holds every region
SCOPE_KEY = "intervene_scope"
KIND_NAMES = {
    "delete": "Delete regions",
    "move": "Move a region",
    "add": "Add a copy of a region",
    "swap": "Swap two regions' features",
}


def region_edits() -> list[Edit]:
    return [Edit.from_dict(record) for record in st.session_state[EDITS_KEY]]


def append(edit: Edit) -> None:
    st.session_state[EDITS_KEY] = [*st.session_state[EDITS_KEY], edit.to_dict()]


def box_picker(
    box: np.ndarray, image_size: tuple[int, int], *, key: str
) -> tuple[float, float, float, float]:
    """Where to put a box of ``box``'s size: its left and top edge, in image pixels."""
    height, width = image_size
    box_width, box_height = float(box[2] - box[0]), float(box[3] - box[1])
    left_column, top_column = st.columns(2)
    left = left_column.slider(
        "Left edge (px)", 0, max(1, int(width - box_width)), int(box[0]), key=f"{key}_left"
    )
    top = top_column.slider(
        "Top edge (px)", 0, max(1, int(height - box_height)), int(box[1]), key=f"{key}_top"
    )
    return (float(left), float(top), left + box_width, top + box_height)


def region_name(region: int, origin: int | None) -> str:
    """A region after the edits, by the label of the region it came from (which carries its own index)."""
    if origin is None:
        return f"{region} (added)"
    return labels[origin] if origin == region else f"{region} (was {labels[origin]})"


st.title("Intervene")
st.caption(
    "Edit what the model sees and ask again. The edits run on a copy of the input; head edits are masks for one "
    "forward pass, so the cached model is never changed."
)
page = page_context("answer")
scope = (page.inputs.image.digest, page.inputs.num_regions, page.checkpoint.name)
# Region indices and heads mean nothing on another input or model: their edits start again.
if st.session_state.get(SCOPE_KEY) != scope:
    st.session_state[SCOPE_KEY] = scope
    st.session_state[EDITS_KEY] = []
top_k = st.slider("Answers to compare", 3, 10, 5, key="intervene_top_k")
config = page.checkpoint.model.config
labels = page.scene.labels

with reported("Applying the edits", stop=True):
    edited = apply_edits(page.query.example(), region_edits())
current = [region_name(r, o) for r, o in enumerate(edited.origin)]

st.subheader("Edit the regions")
kind = st.radio("Edit", list(KIND_NAMES), format_func=KIND_NAMES.get, horizontal=True, key="intervene_kind")
regions = range(edited.example.num_regions)
boxes = edited.example.boxes.cpu().numpy()
edit = None
if kind == "delete":
    chosen = st.multiselect(
        "Regions to delete",
        regions,
        format_func=current.__getitem__,
        key=widget_key("intervene_delete", current),
    )
    edit = Edit("delete", tuple(chosen)) if chosen else None
elif kind in ("move", "add"):
    region = st.selectbox(
        "Region to move" if kind == "move" else "Region to copy",
        regions,
        format_func=current.__getitem__,
        key=widget_key(f"intervene_{kind}_region", current),
    )
    box = box_picker(
        boxes[region], edited.example.image_size, key=widget_key(f"intervene_{kind}", current, region)
    )
    edit = Edit(kind, (region,), box)
else:
    left, right = st.columns(2)
    a = left.selectbox("Region", regions, format_func=current.__getitem__, key=widget_key("swap_a", current))
    b = right.selectbox(
        "with region",
        regions,
        index=min(1, len(current) - 1),
        format_func=current.__getitem__,
        key=widget_key("swap_b", current),
    )
    edit = Edit("swap", (a, b)) if a != b else None
add_column, undo_column, clear_column = st.columns(3)
if add_column.button("Apply this edit", disabled=edit is None, key="intervene_apply", icon=":material/add:"):
    append(edit)
    st.rerun()
if undo_column.button("Undo the last edit", disabled=not st.session_state[EDITS_KEY], key="intervene_undo"):
    st.session_state[EDITS_KEY] = st.session_state[EDITS_KEY][:-1]
    st.rerun()
if clear_column.button("Clear all edits", disabled=not st.session_state[EDITS_KEY], key="intervene_clear"):
    st.session_state[EDITS_KEY] = []
    st.rerun()

st.subheader("Silence or prune heads")
st.caption(
    "Silencing masks the chosen heads in one direction. Pruning removes the heads the gradient importance "
    "(|∂ answer logit / ∂ head mask|, Michel et al. 2019) ranks lowest for the unedited input's answer; a shared "
    "cross-attention head is removed in both directions."
)
head_edits = []
silenced = panels.show_head_picker(config, key="intervene_silence")
if silenced:
    head_edits.append(Edit("silence", heads=tuple(silenced)))
importance = None
with reported("Ranking heads"):
    importance = results_interventions.head_importance(page.query)
if importance is not None:
    units = len(head_units(importance, config))
    prune = st.slider("Prune the least important heads", 0, units, 0, key="intervene_prune")
    if prune:
        head_edits.append(Edit("prune", heads=least_important_heads(importance, config, prune)))
    with st.expander("Head importance"):
        panels.show_family_grid(
            importance,
            title="Gradient head importance",
            colorbar_title="importance",
            key="intervene_importance",
        )

edits = (*region_edits(), *head_edits)
st.subheader("Edits")
if not edits:
    st.info("Apply an edit above, silence heads or prune some, and the answer before and after appears here.")
    st.stop()
st.markdown("\n".join(f"{i}. {e.describe()}" for i, e in enumerate(edits, 1)))
st.json([e.to_dict() for e in edits], expanded=False)

with reported("Running the edited input", stop=True):
    result = results_interventions.before_and_after(page.query, edits, top_k)
names = result.answer_names or [f"answer #{i}" for i in result.answers]
best_after = int(np.argmax(result.after))
st.markdown(
    f"### {names[0]} ({result.before[0]:.1%}) → **{names[best_after]}** ({result.after[best_after]:.1%})  \n"
    f"{names[0]} now {result.after[0]:.1%} ({result.after[0] - result.before[0]:+.1%})"
)
answers_column, table_column = st.columns([3, 2], gap="large")
with answers_column:
    panels.plot(
        before_after_figure(names, result.before, result.after, title="Answer probability"),
        key="intervene_answers",
    )
with table_column:
    st.dataframe(
        [
            {"answer": n, "before": float(b), "after": float(a), "change": float(a - b)}
            for n, b, a in zip(names, result.before, result.after, strict=True)
        ],
        column_config={
            c: st.column_config.NumberColumn(format="percent") for c in ("before", "after", "change")
        },
        key="intervene_answer_table",
    )

st.subheader("What moved")
st.caption(
    f"Gradient relevancy (Chefer et al.) of “{names[0]}”, the unedited input's answer, on both sides; each region "
    "after the edits is set beside the region it came from (an added region has none)."
)
tokens = result.maps_after.tokens
after_labels = [region_name(r, None if o < 0 else o) for r, o in enumerate(result.origin)]
region_before = np.array([result.region_relevancy_before[o] if o >= 0 else np.nan for o in result.origin])
words_column, regions_column = st.columns(2, gap="large")
with words_column:
    panels.plot(
        before_after_figure(
            [f"{i} {t}" for i, t in enumerate(tokens)],
            *result.token_relevancy,
            title="Word relevancy",
            value_format=".2g",
        ),
        key="intervene_token_relevancy",
    )
with regions_column:
    shown = np.argsort(-np.fmax(np.nan_to_num(region_before), result.region_relevancy_after), kind="stable")
    shown = np.sort(shown[:SHOWN_REGIONS])
    panels.plot(
        before_after_figure(
            [after_labels[r] for r in shown],
            region_before[shown],
            result.region_relevancy_after[shown],
            title=f"Region relevancy, the {len(shown)} most relevant on either side",
            value_format=".2g",
        ),
        key="intervene_region_relevancy",
    )
if result.attention_change.shape[1]:
    panels.plot(
        render.matrix_heatmap(
            result.attention_change,
            [f"{i} {t}" for i, t in enumerate(tokens)],
            after_labels,
            title="Change of language → vision attention, last cross layer, mean over heads (after − before)",
            row_title="query (word)",
            column_title="key (region after the edits)",
            colorbar_title="Δ attention",
        ),
        key="intervene_attention_change",
    )

st.download_button(
    "Export the edited input (NPZ)",
    data=lambda: results_interventions.edited_export(page.query, edits, top_k),
    file_name=f"edited_{page.inputs.image.digest}.npz",
    mime="application/octet-stream",
    icon=":material/download:",
    help="Its attention maps, answer probabilities and relevancy before and after, and the list of edits; read back "
    "with analysis.export.read_export and replay with analysis.edits.",
    on_click="ignore",
    key="intervene_export",
)
