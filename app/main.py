"""LXMERT lab: look inside LXMERT on your own image and question.

    streamlit run app/main.py

Opens on the embedded default detector and model in ``assets/default/`` (no download). ``LXMERT_ASSETS_DIR`` and
``LXMERT_CHECKPOINTS_DIR`` point it elsewhere (see ``app/config.py``).
"""

from __future__ import annotations

import streamlit as st

from app import loading, state
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
]


def default_checkpoint(names: list[str]) -> str:
    """The embedded default model (``default/model``) if present, else the first default, else the first found."""
    for preferred in ("default/model", *(n for n in names if n.startswith("default/"))):
        if preferred in names:
            return preferred
    return names[0]


def available_checkpoints(config: AppConfig) -> dict[str, str]:
    """Checkpoints of the default assets and of the comparison directory, named by their relative paths."""
    found = {
        f"default/{name}": path for name, path in loading.find_checkpoints(str(config.default_dir)).items()
    }
    for name, path in loading.find_checkpoints(str(config.checkpoints_dir)).items():
        if path not in found.values():
            found[name] = path
    return found


config = AppConfig.from_env()
navigation = st.navigation(PAGES)
checkpoints = available_checkpoints(config)
try:
    detector_config = loading.detector_config(str(config.detector_dir))
except (FileNotFoundError, ValueError) as err:
    detector_config = None
    st.error(f"The default detector cannot be loaded: {err}")
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
