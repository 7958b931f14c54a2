"""LXMERT lab: look inside LXMERT on your own image and question.

    streamlit run app/main.py

Opens on the embedded default detector and model in ``assets/default/`` (no download). ``LXMERT_ASSETS_DIR`` and
``LXMERT_CHECKPOINTS_DIR`` point it elsewhere (see ``app/config.py``).
"""

from __future__ import annotations

import os

import streamlit as st

from app import directories, loading, state
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


def default_checkpoint(names: list[str]) -> str:
    """The embedded default model (``default/model``) if present, else the first default, else the first found."""
    for preferred in ("default/model", *(n for n in names if n.startswith("default/"))):
        if preferred in names:
            return preferred
    return names[0]


def available_checkpoints(config: AppConfig) -> tuple[dict[str, str], list[str]]:
    """Checkpoints of the default assets and of the comparison directory, named by their relative paths, and notes
    on what the scans skipped or left unvisited."""
    defaults = loading.find_checkpoints(str(config.default_dir), within=str(config.assets_dir))
    others = loading.find_checkpoints(str(config.checkpoints_dir))
    found = {f"default/{name}": path for name, path in defaults.found.items()}
    for name, path in others.found.items():
        if path not in found.values():
            found[name] = path
    skipped = list(dict.fromkeys(defaults.skipped + others.skipped))  # the default dir may lie in both
    notes = (
        [directories.describe_skipped(skipped, [config.checkpoints_dir, config.assets_dir])]
        if skipped
        else []
    )
    for directory, scan in ((config.default_dir, defaults), (config.checkpoints_dir, others)):
        if scan.truncated:
            notes.append(
                f"The search of {directory} stopped after {directories.MAX_ENTRIES} entries: "
                "checkpoints beyond them are not listed."
            )
    return found, notes


config = AppConfig.from_env()
navigation = st.navigation(PAGES)
checkpoints, scan_notes = available_checkpoints(config)
detector_config = None
# A missing detector is explained below; one that is there must not lead outside the assets (its regions included).
detector_problems = directories.problems(config.detector_dir, config.assets_dir, depth=2)
if os.path.exists(config.detector_dir) and detector_problems:
    reasons = directories.describe_skipped(detector_problems, [config.detector_dir])
    st.error(f"The default detector cannot be loaded: {reasons}")
else:
    try:
        detector_config = loading.detector_config(str(config.detector_dir))
    except (FileNotFoundError, ValueError) as err:
        st.error(f"The default detector cannot be loaded: {err}")
if scan_notes:
    st.sidebar.warning("  \n".join(scan_notes), icon=":material/folder_off:")
if not checkpoints:
    st.error(f"No model checkpoint (config.json, model.safetensors, vocab.txt) under {config.default_dir}.")
if detector_config is None or not checkpoints:
    st.info(
        "The app runs on the models in `assets/default/`, which the repository ships. "
        "If they are missing, restore them from git or rebuild them with `bash scripts/build_default.sh`; "
        "`LXMERT_ASSETS_DIR` points the app to another copy."
    )
    st.stop()

state.show_sidebar(config, checkpoints, default_checkpoint(list(checkpoints)), detector_config.num_regions)
navigation.run()
