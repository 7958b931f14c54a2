"""Attributions: why this answer — relevancy and Captum attributions over the words and the regions."""

import pandas as pd
import streamlit as st

from app import panels, render, results
from app.context import page_context, reported
from app.state import widget_key

METHODS = {**results.RELEVANCY_METHODS, **results.ATTRIBUTION_METHODS}
ANSWER_FREE = {"rollout", "raw_attention"}  # these read attention only, whatever the answer
TESTS = {
    "image_negative": "regions, least relevant removed first (higher is better)",
    "image_positive": "regions, most relevant removed first (lower is better)",
    "text_negative": "words, least relevant removed first (higher is better)",
    "text_positive": "words, most relevant removed first (lower is better)",
}

st.title("Attributions")
st.caption(
    "Which words and regions the answer rests on. Gradient relevancy and integrated gradients follow the chosen "
    "answer's logit; rollout and raw attention read attention only. The deletion tests below measure which "
    "method is faithful on this very input."
)
page = page_context("answer")
with reported("Answering", stop=True):
    ranked = results.answers(page.query, 10)
names = [f"{panels.answer_name(a)} ({a.probability:.1%})" for a in ranked]

target_column, contrast_column, method_column = st.columns(3)
choice = target_column.selectbox(
    "Explain the answer", range(len(ranked)), format_func=names.__getitem__, key=widget_key("target", names)
)
against = contrast_column.selectbox(
    "…rather than (contrastive)",
    [None, *(i for i in range(len(ranked)) if i != choice)],
    format_func=lambda i: "— (the answer's own logit)" if i is None else names[i],
    key=widget_key("contrast", names, choice),
)
method = method_column.selectbox("Method", list(METHODS), format_func=METHODS.get, key="attribution_method")
hide_column, region_column = st.columns([1, 2])
hide_special = hide_column.toggle("Hide [CLS] and [SEP]", value=True, key="attribution_hide_special")
labels = page.scene.labels
region_key = widget_key("attribution_region", labels)
region = region_column.selectbox(
    "Region",
    [None, *range(len(labels))],
    format_func=lambda r: "— (click a box, or pick one here)" if r is None else labels[r],
    key=region_key,
)


def select(region: int) -> None:
    """A click on a box selects its region in the dropdown (callbacks run before it is drawn)."""
    st.session_state[region_key] = region


target = ranked[choice].index
contrast = None if against is None else ranked[against].index
if method in ANSWER_FREE and (choice != 0 or contrast is not None):
    st.info(f"{METHODS[method]} ignores the answer: the map is the same for every answer.")

tokens = results.tokens(page.query)
with reported(METHODS[method]):
    if method in results.RELEVANCY_METHODS:
        relevancy = results.relevancy(
            page.query,
            method,
            None if method in ANSWER_FREE else target,
            None if method in ANSWER_FREE else contrast,
        )
        token_scores, region_scores, score_name = relevancy.tokens, relevancy.regions, "relevancy"
    elif method == "ig":
        n_steps = st.select_slider("Integration steps", [8, 16, 32, 64, 128], value=32, key="ig_steps")
        attributions = results.ig(page.query, target, contrast, n_steps)
        token_scores, region_scores, score_name = attributions.tokens, attributions.regions, "attribution"
        gap_columns = st.columns(3)
        gap_columns[0].metric(
            "Words: Σ attribution",
            f"{attributions.tokens.sum():.3f}",
            delta=f"convergence delta {attributions.token_delta:+.3f}",
            delta_color="off",
            help=f"Should equal f(x) − f(baseline) = {attributions.token_gap:.3f}; the delta is the difference.",
        )
        gap_columns[1].metric(
            "Regions: Σ attribution",
            f"{attributions.regions.sum():.3f}",
            delta=f"convergence delta {attributions.region_delta:+.3f}",
            delta_color="off",
            help=f"Should equal f(x) − f(baseline) = {attributions.region_gap:.3f}; the delta is the difference.",
        )
        gap_columns[2].metric(
            "Share of the words", f"{attributions.text_share:.0%}", help="|words| / (|words| + |regions|)"
        )
    else:
        occluded = results.occlusion(page.query, target, contrast)
        token_scores, region_scores, score_name = occluded.tokens, occluded.regions, "logit drop"
    explained = names[choice] if contrast is None else f"{names[choice]} rather than {names[against]}"
    panels.show_explanation(
        page.scene,
        tokens,
        token_scores,
        region_scores,
        title=f"{METHODS[method]}: {explained}",
        score_name=score_name,
        hide_special=hide_special,
        selected_region=region,
        on_pick=select,
        key="explanation",
    )

st.subheader("Which method is faithful here?")
st.caption(
    "Chefer et al.'s perturbation test on this input: remove regions or words in each method's order and watch the "
    "answer's probability. Runs every method (integrated gradients with 16 steps), so it takes a moment."
)
if st.toggle("Run the deletion tests", value=False, key="run_faithfulness"):
    with reported("The deletion tests"):
        tested = results.faithfulness(page.query, target, 16)
        test = st.selectbox("Test", list(TESTS), format_func=TESTS.get, key="faithfulness_test")
        curves = {m: (tested.fractions, tested.probability[m][test]) for m in tested.probability}
        figure = render.curves_figure(
            curves,
            title=f"P({panels.answer_name(ranked[choice])}) as items are removed",
            x_title="fraction removed",
            y_title="probability",
        )
        panels.plot(figure, key="faithfulness_curves")
        st.dataframe(pd.DataFrame(tested.auc).T.rename(columns=TESTS).round(1), key="faithfulness_auc")
