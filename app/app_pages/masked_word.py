"""Masked word: hide words of the sentence and read the masked-LM head's guesses, with and without the image."""

import streamlit as st

from app import panels, results
from app.context import page_context, reported
from app.state import widget_key

st.title("Masked word")
st.caption(
    "Click words to replace them by [MASK]; the pre-training head fills them in. Without the image, every region's "
    "feature is zeroed (the pre-training object mask): the gap between the two columns is what the image adds."
)
page = page_context("masked_words")
tokens = results.tokens(page.query)
words = results.positions_of(tokens)
if not words:
    st.info("The sentence has no words to mask.")
    st.stop()
nouns = [i for i in words if tokens[i].isalpha()]
masked = st.pills(
    "Words to mask",
    words,
    selection_mode="multi",
    default=[(nouns or words)[-1]],
    format_func=lambda i: tokens[i],
    key=widget_key("masked_words", tokens),
)
top_k = st.slider("Guesses per word", 3, 15, 5, key="masked_word_top_k")
if not masked:
    st.info("Select at least one word.")
    st.stop()
positions = tuple(sorted(masked))
with reported("Masked-word prediction"):
    panels.show_masked_words(
        results.masked_words(page.query, positions, "image", top_k),
        results.masked_words(page.query, positions, "no_vision", top_k),
        key="masked_words",
    )

st.subheader("How much does this input lean on the other modality?")
st.caption(
    "The cross-modal ablation gauge (Frank, Bugliarello & Elliott, EMNLP 2021) on this input: every word masked in "
    "turn and predicted with the image, with the regions of the same name removed, and with no image; every region "
    "masked in turn and its object predicted with and without the text. Accuracy is agreement with the original "
    "word or the detector's label."
)
if st.toggle("Measure it", value=False, key="run_gauge"):
    with reported("The ablation gauge"):
        panels.show_gauge(results.gauge(page.query), key="gauge")
