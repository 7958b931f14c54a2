"""Compare checkpoints: two or more checkpoints side by side on the same input."""

import streamlit as st

from app import panels, results
from app.context import load_or_stop, page_context, query_for, reported

st.title("Compare checkpoints")
page = page_context()
names = list(page.inputs.checkpoints)
chosen = st.multiselect("Checkpoints", names, default=names[:2], key="compare_checkpoints")
if len(chosen) < 2:
    st.info("Pick at least two checkpoints.")
    st.stop()
columns = st.columns(len(chosen))
for column, name in zip(columns, chosen, strict=True):
    checkpoint = load_or_stop(page.inputs, name)
    with column:
        panels.show_checkpoint_card(checkpoint, key=f"compare_card_{name}")
        if checkpoint.capabilities.answer:
            with reported(f"Answering with {name}"):
                panels.show_answers(
                    results.answers(query_for(page.inputs, checkpoint), 5), key=f"compare_answers_{name}"
                )
