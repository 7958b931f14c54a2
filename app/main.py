"""LXMERT lab: look inside LXMERT on your own image and question.

    streamlit run app/main.py

Opens on the embedded default model set in ``assets/default/`` (no download): the synthetic world's detector and
models. ``LXMERT_ASSETS_DIR`` and ``LXMERT_CHECKPOINTS_DIR`` point it elsewhere (see ``app/config.py``); every model
set found there (``app/sets.py``) can be picked in the sidebar.
"""

from __future__ import annotations

import os

import streamlit as st

from app import directories, loading, sets, state
from app.config import AppConfig

st.set_page_config(page_title="LXMERT lab", page_icon=":material/visibility:", layout="wide")

PAGES = [
    st.Page("app_pages/ask.py", title="Ask", icon=":material/question_answer:", default=True),
    st.Page("app_pages/regions.py", title="Image & regions", icon=":material/image_search:"),
    st.Page("app_pages/attention.py", title="Attention", icon=":material/grid_on:"),
    st.Page("app_pages/masked_word.py", title="Masked word", icon=":material/text_fields:"),
    st.Page("app_pages/masked_object.py", title="Masked object", icon=":material/crop_free:"),
    st.Page("app_pages/attributions.py", title="Attributions", icon=":material/insights:"),
    st.Page("app_pages/compare.py", title="Compare checkpoints", icon=":material/compare:"),
    st.Page("app_pages/intervene.py", title="Intervene", icon=":material/tune:"),
    st.Page("app_pages/probe.py", title="Probe", icon=":material/science:"),
]


config = AppConfig.from_env()
navigation = st.navigation(PAGES)
found = sets.find_sets(config)
if found.notes:
    st.sidebar.warning("  \n".join(found.notes), icon=":material/folder_off:")
if not found.sets:
    st.error(
        "  \n".join(
            [
                "No usable model set (a directory whose model_set.json names a detector and its checkpoints) "
                f"under {config.assets_dir} or {config.checkpoints_dir}.",
                *found.refused,
            ]
        )
    )
    st.info(
        "The app runs on the models in `assets/default/`, which the repository ships. "
        "If they are missing, restore them from git or rebuild them with `bash scripts/build_default.sh`; "
        "`LXMERT_ASSETS_DIR` points the app to another copy."
    )
    st.stop()
chosen = sets.choose_set(found.sets)
detector = chosen.model_set.detector
detector_config = None
# A detector that is there must not lead outside its set (its cached regions included).
detector_problems = directories.problems(detector, chosen.model_set.root, depth=2)
if os.path.exists(detector) and detector_problems:
    reasons = directories.describe_skipped(detector_problems, [detector])
    st.error(f"The detector of `{chosen.label}` cannot be loaded: {reasons}")
else:
    try:
        detector_config = loading.detector_config(str(detector))
    except (FileNotFoundError, ValueError) as err:
        st.error(f"The detector of `{chosen.label}` cannot be loaded: {err}")
if detector_config is None:
    st.stop()
checkpoints = chosen.model_set.checkpoints
problems = {
    name: reason
    for name, entry in checkpoints.items()
    if (
        reason := chosen.problems.get(name)
        or loading.problem(*loading.entry_files(entry), detector_config.feature_dim)
    )
}
state.show_sidebar(
    config,
    checkpoints,
    chosen.model_set.default,
    detector_config.num_regions,
    model_set=chosen.model_set,
    problems=problems,
)
navigation.run()
