"""Ask: the model's answers to the question, how well the text matches the image, and answers with heads silenced."""

import streamlit as st

from app import dataset_mode, panels, results
from app.context import checkpoint_with, page_context, query_for, reported

st.title("Ask")
page = page_context("answer")
top_k = st.slider("Answers to show", 3, 15, 5, key="ask_top_k")
left, right = st.columns([3, 2], gap="large")
with left:
    with reported("Answering"):
        num_answers = len(page.checkpoint.answers or ()) or None
        panels.show_answers(results.answers(page.query, top_k), key="answers", num_answers=num_answers)
    panels.show_checkpoint_card(page.checkpoint, key="answer_checkpoint")
with right:
    st.subheader("Does the sentence match the image?")
    matcher = checkpoint_with(page.inputs, "match", required=False)
    if matcher is not None:
        with reported("Matching"):
            panels.show_match(
                results.match_probability(query_for(page.inputs, matcher)),
                validation_accuracy=panels.match_accuracy(matcher),
                key="match",
            )
        st.caption(f"Matching head of `{matcher.name}`, reading the text as a statement about the image.")
    panels.show_detections(page.scene, key="ask_detections")
dataset_mode.show_questions(page)

st.subheader("Silence heads and ask again")
st.caption(
    "A head mask zeroes the chosen heads' outputs for this one forward pass; the cached model is never changed. "
    "LXMERT's two cross directions share one module, but each direction is silenced on its own here."
)
heads = panels.show_head_picker(page.checkpoint.model.config, key="silence")
if heads:
    with reported("Answering with heads silenced"):
        silenced = results.answers_silenced(page.query, tuple(heads), top_k)
        panels.show_answers(
            silenced,
            key="answers_silenced",
            title=f"Top answers, {len(heads)} heads silenced",
            num_answers=num_answers,
        )
