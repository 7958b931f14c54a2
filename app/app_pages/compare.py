"""Compare checkpoints: two or more checkpoints side by side on the same input, and their training curves."""

import streamlit as st

from app import panels, render, results
from app.context import page_context, query_for, reported, try_load
from app.state import image_files, read_sample

st.title("Compare checkpoints")
st.caption(
    "The first checkpoint is the reference; each other one is compared with it on this input: answers, how far "
    "every head's attention moved (Jensen–Shannon divergence), and how similar the hidden states are (linear CKA). "
    "Checkpoints come from the app's configured directory (`LXMERT_CHECKPOINTS_DIR`)."
)
page = page_context()
names = list(page.inputs.checkpoints)
chosen = st.multiselect(
    "Checkpoints (the first is the reference)", names, default=names[:2], key="compare_checkpoints"
)
loaded = {name: try_load(page.inputs, name) for name in chosen}  # each one that fails says so
checkpoints = {name: checkpoint for name, checkpoint in loaded.items() if checkpoint is not None}
chosen = list(checkpoints)
if len(chosen) < 2:
    st.info("Pick at least two checkpoints that load.")
    st.stop()
reference = checkpoints[chosen[0]]
with_cka = st.toggle(
    "Representation similarity (CKA over the sample gallery with this sentence)",
    value=False,
    key="compare_cka",
)
gallery = image_files(page.inputs.config.samples_dir)[:8] if with_cka else []
with reported("Comparing", stop=True):
    compared = results.comparison(
        query_for(page.inputs, reference),
        tuple((name, checkpoint.files) for name, checkpoint in checkpoints.items()),
        tuple((path.name, read_sample(str(path)).data) for path in gallery),
    )

for column, name in zip(st.columns(len(chosen)), chosen, strict=True):
    with column:
        panels.show_checkpoint_card(checkpoints[name], key=f"compare_card_{name}")
        if checkpoints[name].capabilities.answer:
            panels.show_answers(compared.answers[name], key=f"compare_answers_{name}")
        shift = compared.shifts.get(name)
        if shift is not None:
            st.markdown(
                f"Top answer {'**changed**' if shift.top1_changed else 'unchanged'}; "
                f"top-k overlap {shift.topk_overlap:.0%}"
                + (
                    f"; P(reference's answer) {shift.reference_top_probability:.1%}"
                    if shift.reference_top_probability is not None
                    else ""
                )
                + (
                    f"; total variation {shift.total_variation:.3f}"
                    if shift.total_variation is not None
                    else ""
                )
            )

others = chosen[1:]
other = (
    st.selectbox("Compare the reference with", others, key="compare_other") if len(others) > 1 else others[0]
)
divergence_column, moved_column = st.columns([3, 2], gap="large")
with divergence_column:
    panels.show_family_grid(
        compared.divergence[other],
        title=f"Attention moved: JSD({chosen[0]} ‖ {other}) per head, in bits",
        colorbar_title="JSD",
        key="compare_divergence",
    )
with moved_column:
    st.markdown("**Heads that moved most**")
    st.dataframe(
        [
            {"family": panels.FAMILY_SHORT[f], "layer": layer + 1, "head": head + 1, "JSD (bits)": value}
            for f, layer, head, value in compared.moved_heads[other]
        ],
        column_config={"JSD (bits)": st.column_config.NumberColumn(format="%.3g")},
        key="compare_moved",
    )
if other in compared.cka:
    for column, (stream, matrix) in zip(st.columns(2), compared.cka[other].items(), strict=True):
        with column:
            labels_a = [f"{chosen[0]} {i}" for i in range(matrix.shape[0])]
            labels_b = [f"{other} {i}" for i in range(matrix.shape[1])]
            figure = render.matrix_heatmap(
                matrix,
                labels_a,
                labels_b,
                title=f"Linear CKA of {stream} hidden states, layer by layer",
                row_title="reference layer",
                column_title="other layer",
                colorbar_title="CKA",
            )
            panels.plot(figure, key=f"compare_cka_{stream}")

st.subheader("Training curves")
roots = (str(page.inputs.config.checkpoints_dir), str(page.inputs.config.assets_dir))
logged = {}
for name in chosen:
    try:
        logged[name] = results.curves(str(checkpoints[name].path), roots)
    except (OSError, ValueError) as err:
        st.caption(f"No training curves for `{name}`: {err}")
        logged[name] = None
missing = [name for name, series in logged.items() if series is None]
if missing:
    st.caption("No metrics.jsonl beside " + ", ".join(f"`{name}`" for name in missing) + ".")
series_names = sorted({series for curves in logged.values() if curves for series in curves})
if series_names:
    # The training loss logged every few steps is what one looks at first; then any loss; then anything.
    losses = [s for s in series_names if s.endswith("step/loss")] + [
        s for s in series_names if s.endswith("loss")
    ]
    default = (losses or series_names)[0]
    metric = st.selectbox("Series", series_names, index=series_names.index(default), key="compare_metric")
    panels.show_curves(
        {name: curves for name, curves in logged.items() if curves}, metric, key="compare_curves"
    )
    finals = {name: curves[metric][1][-1] for name, curves in logged.items() if curves and metric in curves}
    st.caption("Last value: " + ", ".join(f"`{name}` {value:.4g}" for name, value in finals.items()))
