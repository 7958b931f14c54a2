"""Probe: which layer knows colour? Linear probes, a PCA and nearest neighbours of the hidden states of every layer.

The data are the shipped samples (the gallery and the random-scene pool) with their suggested questions, or in
dataset mode the dataset's images with their questions; the labels are the detector's (or the feature store's) (``analysis/probe_curves.py`` says why that stands in for the scenes' ground truth).
"""

import numpy as np
import streamlit as st

from analysis.probing import nearest_neighbours, pca
from app import datasets, panels, results_probe, state
from app.context import page_context, reported
from app.render_states import depth_figure, projection_figure

STREAM_NAMES = {"language": "words", "vision": "regions"}
NEIGHBOURS = 8
# In dataset mode, the probes read this many of its images with questions, and this many questions of each.
DATASET_IMAGES = 60
DATASET_QUESTIONS = 5

st.title("Probe")
st.caption(
    "A linear probe is trained on one layer's states to read a label, and tested on images it was not trained on. "
    "Where the accuracy rises above the majority baseline, the layer holds the label in a linear form."
)
page = page_context(needs_text=False)
config = page.inputs.config
dataset_root = page.inputs.image.dataset[0] if page.inputs.image and page.inputs.image.dataset else None
samples = []
if dataset_root is not None:
    with reported("Reading the dataset", stop=True):
        opened = datasets.open_dataset(dataset_root)
    for img_id, items in opened.questions.items():
        if len(samples) == DATASET_IMAGES:
            break
        if items and img_id in opened.store:
            samples.append((img_id, b"", tuple(item["sent"] for item in items[:DATASET_QUESTIONS])))
    source = f"the dataset `{opened.dataset.name}` (its first {DATASET_IMAGES} images with questions at most)"
    if not samples:
        st.info(f"The dataset `{opened.dataset.name}` has no image with questions: the probes need a few.")
        st.stop()
else:
    paths = list(dict.fromkeys(state.image_files(config.samples_dir) + state.scene_pool(config.samples_dir)))
    for path in paths:
        sample = state.read_sample(str(path))
        questions = sample.suggestions or ((page.inputs.text,) if page.inputs.text else ())
        if questions:
            samples.append((sample.name, sample.data, questions))
    source = f"`{config.samples_dir}` (images without suggested questions take the sidebar's)"
    if not samples:
        st.info(f"No sample images with questions in {config.samples_dir}: the probes need a few.")
        st.stop()
st.markdown(
    f"**{len(samples)} images, {sum(len(q) for _, _, q in samples)} questions** from {source}, "
    f"on `{page.checkpoint.name}`."
)
if st.button("Probe every layer", key="probe_run", icon=":material/play_arrow:"):
    st.session_state["probe_requested"] = True
if not st.session_state.get("probe_requested"):
    st.info("The probes run on request: a few seconds on the default model.")
    st.stop()

query = page.query
with reported("Probing", stop=True):
    study = results_probe.study(
        query.detector,
        query.checkpoint,
        query.checkpoint_name,
        query.device,
        query.precision,
        query.num_regions,
        tuple(samples),
        query.vocab,
        query.answers,
        dataset_root,
    )
for note in study.notes:
    st.caption(f"Not drawn: {note}")

labels = list(study.class_names)
label = st.selectbox(
    "Label", labels, index=labels.index("colour") if "colour" in labels else 0, key="probe_label"
)
series, depths, depth_of = {}, ["input"], {}
for stream, shown in STREAM_NAMES.items():
    points = [p for p in study.points if p.label == label and p.stream == stream]
    single = sum(p.stage != "cross" for p in points)  # the input and the single-modality layers
    names = [
        "input" if p.layer == 0 else f"{p.stage} {p.layer if p.stage != 'cross' else p.layer - single + 1}"
        for p in points
    ]
    depth_of.update({(stream, p.layer): name for p, name in zip(points, names, strict=True)})
    depths += [n for n in names if n not in depths]
    if points:
        series[shown] = (names, [p.test_accuracy for p in points])
        series[f"{shown}, majority baseline"] = (names, [p.majority_accuracy for p in points])
depths = sorted(depths, key=lambda d: ("input", "language", "vision", "cross").index(d.split()[0]))
panels.plot(
    depth_figure(
        series,
        depths,
        title=f"Which layer knows {label}? Held-out probe accuracy",
        y_title="accuracy",
        dashed=[name for name in series if name.endswith("baseline")],
    ),
    key="probe_curve",
)
st.caption(
    "Words are probed for the label of the image's best detection of the object class they name, which only the "
    "cross layers can see; regions for their own label."
)
st.dataframe(
    [
        {
            "stream": STREAM_NAMES[p.stream],
            "layer": depth_of[(p.stream, p.layer)],
            "probe accuracy": p.test_accuracy,
            "majority": p.majority_accuracy,
            "train rows": p.num_train,
            "test rows": p.num_test,
        }
        for p in study.points
        if p.label == label
    ],
    column_config={
        c: st.column_config.NumberColumn(format="percent") for c in ("probe accuracy", "majority")
    },
    key="probe_table",
)

st.subheader("The region states, projected")
bank = study.bank
depth = min(len(bank.lang), len(bank.vis))
layer = st.select_slider(
    "Layer, counted from the output",
    options=list(range(-depth, 0)),
    value=-1,
    format_func=lambda i: "last" if i == -1 else f"{-i - 1} before the last",
    key="probe_layer",
)
labelled = np.flatnonzero(bank.region_labels[label] >= 0)
names = study.class_names[label]
if len(labelled) < 3:
    st.info(f"Fewer than three regions carry a {label} label: nothing to project.")
    st.stop()
coords, share = pca(bank.vis[layer][labelled], 2)
refs = [bank.region_refs[i] for i in labelled]
hover = [f"{study.image_names[study.images[k]]}, region {r}" for k, r in refs]
classes = [names[v] for v in bank.region_labels[label][labelled]]
panels.plot(
    projection_figure(
        coords,
        classes,
        hover,
        title=f"PCA of the labelled regions' states, coloured by {label}",
        axis_titles=[f"PC{i + 1} ({s:.0%} of the variance)" for i, s in enumerate(share)],
    ),
    key="probe_pca",
)

st.subheader("Nearest neighbours")
chosen = st.selectbox(
    "Region", range(len(labelled)), format_func=lambda i: f"{hover[i]} · {classes[i]}", key="probe_query"
)
cross_modal = st.toggle("Among the words", value=True, key="probe_cross_modal")
query_row = int(labelled[chosen])
query_image = study.images[bank.region_refs[query_row][0]]
candidates = nearest_neighbours(
    bank,
    layer,
    "vis",
    query_row,
    k=len(bank.lang[layer] if cross_modal else bank.vis[layer]),
    cross_modal=cross_modal,
)
# The same region under the image's other questions is its own nearest neighbour: regions come from other images.
neighbours = [n for n in candidates if cross_modal or study.images[n.example] != query_image][:NEIGHBOURS]
st.dataframe(
    [
        {
            "image": study.image_names[study.images[n.example]],
            "what": n.token if n.stream == "lang" else f"region {n.position}",
            "cosine": n.similarity,
        }
        for n in neighbours
    ],
    column_config={"cosine": st.column_config.NumberColumn(format="%.3f")},
    key="probe_neighbours",
)
