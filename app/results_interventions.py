"""The Intervene page's cached results: an input before and after edits, head importance, and the export.

Like ``app/results.py``, each call takes the :class:`~app.results.Query` and plain values; the edits are a tuple of
frozen :class:`~analysis.edits.Edit` records, so ``st.cache_data`` keys on exactly what was done to the input.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import streamlit as st

from analysis import interventions
from analysis.counterfactual import Counterfactual, counterfactual
from analysis.edits import Edit, apply_edits
from analysis.export import export_npz
from analysis.forward import predict_answers
from app.results import Query, in_precision


@st.cache_data(show_spinner="Running the edited input…", max_entries=32)
@in_precision
def before_and_after(query: Query, edits: tuple[Edit, ...], k: int) -> Counterfactual:
    """Answers, attention and gradient relevancy of the input and of the input after ``edits``."""
    checkpoint = query.model()
    return counterfactual(checkpoint.model, query.example(), edits, k, checkpoint.answers)


@st.cache_data(show_spinner="Ranking heads by gradient importance…", max_entries=32)
@in_precision
def head_importance(query: Query) -> dict[str, np.ndarray]:
    """Gradient importance (Michel et al., 2019) of every head for the input's best answer."""
    model, example = query.model().model, query.example()
    target = predict_answers(model, example, 1)[0].index
    return interventions.head_importance(model, example, [target])


@st.cache_data(show_spinner="Writing the export…", max_entries=16)
def edited_export(query: Query, edits: tuple[Edit, ...], k: int) -> bytes:
    """The edited input's attention maps as an NPZ (``analysis.export``), with the edits, the compared answers'
    probabilities before and after, and the relevancy of both."""
    result = before_and_after(query, edits, k)
    extra = {
        "answers": np.asarray(result.answers),
        "answer_probability_before": result.before,
        "answer_probability_after": result.after,
        "region_origin": np.asarray(result.origin),
        "token_relevancy_before": result.token_relevancy[0],
        "token_relevancy_after": result.token_relevancy[1],
        "region_relevancy_before": result.region_relevancy_before,
        "region_relevancy_after": result.region_relevancy_after,
    }
    with tempfile.TemporaryDirectory() as directory:
        path = export_npz(
            Path(directory) / "edited.npz",
            apply_edits(query.example(), edits).example,
            result.maps_after,
            query.checkpoint_name,
            settings={"num_regions": query.num_regions, "image": query.image_name, "text": query.text},
            extra=extra,
            edits=result.edits,
        )
        return path.read_bytes()


__all__ = ["before_and_after", "edited_export", "head_importance"]
