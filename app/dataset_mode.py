"""The input source "Dataset": a photo of a dataset picked by id or from thumbnails, its stored regions in place of
the detector's, and its questions with the ground truth beside the model's answers.

Datasets are directories holding ``dataset.json`` under the configured datasets directory (``LXMERT_DATASETS_DIR``,
default ``<assets>/datasets``; see :mod:`lxmert.data.dataset` and docs/app.md); no path is ever typed into the page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import streamlit as st

from app import datasets, results
from app.config import AppConfig
from app.context import PageContext, reported
from app.state import ImageInput
from lxmert.data.metrics import datum_score

# Stores with more images than this take an id typed in instead of a list (the list goes to the browser whole).
MAX_LISTED = 5000
THUMBNAILS_PER_PAGE = 9
THUMBNAIL_COLUMNS = 3
# Questions of one image answered and scored at most (GQA has dozens on some images).
MAX_QUESTIONS = 30
IMAGE_KEY = "dataset_image"
_ROOT_KEY = "_dataset_of_image"
METRICS = {
    "vqa": "VQA score: the answer's soft score in the file's label (min(1, annotators/3)-style)",
    "gqa": "GQA exact match with the gold answer",
    "nlvr2": "NLVR2 accuracy",
}


def _pick(img_id: str, on_change: Callable[[], None]) -> None:
    st.session_state[IMAGE_KEY] = img_id
    on_change()


def _choose_id(root: str, opened: datasets.OpenedDataset, on_change: Callable[[], None]) -> str | None:
    ids = opened.store.ids
    listed = len(ids) <= MAX_LISTED
    value = st.session_state.get(IMAGE_KEY)
    # A new dataset, or none picked yet, starts on the first image; a typed id that is not there is kept (and named).
    if st.session_state.get(_ROOT_KEY) != root or value is None or (listed and value not in opened.store):
        st.session_state[IMAGE_KEY] = ids[0]
        st.session_state[_ROOT_KEY] = root
    if listed:
        return st.selectbox(
            "Image id", ids, key=IMAGE_KEY, on_change=on_change, help="Type to filter the store's image ids."
        )
    img_id = st.text_input("Image id", key=IMAGE_KEY, on_change=on_change).strip()
    if img_id not in opened.store:
        st.warning(f"`{img_id}` is not in this dataset's feature store.")
        return None
    return img_id


def _thumbnails(root: str, ids: list[str], on_change: Callable[[], None]) -> None:
    with st.popover("Pick from thumbnails", icon=":material/photo_library:", width="stretch"):
        pages = max(1, -(-len(ids) // THUMBNAILS_PER_PAGE))
        page = st.number_input("Page", 1, pages, 1, key="dataset_thumbnail_page") if pages > 1 else 1
        shown = ids[(page - 1) * THUMBNAILS_PER_PAGE : page * THUMBNAILS_PER_PAGE]
        columns = st.columns(THUMBNAIL_COLUMNS)
        for k, img_id in enumerate(shown):
            with columns[k % THUMBNAIL_COLUMNS]:
                small = datasets.thumbnail(root, img_id)
                if small is not None:
                    st.image(small, width="stretch")
                st.button(
                    img_id,
                    key=f"dataset_pick_{img_id}",
                    on_click=_pick,
                    args=(img_id, on_change),
                    width="stretch",
                )


def choose_image(config: AppConfig, on_change: Callable[[], None]) -> ImageInput | None:
    """The sidebar's dataset picker: the dataset, then the image by id or from thumbnails; None (with a message)
    when there is none to use. The image carries its questions as suggestions and where its regions are stored.

    Args:
        config: where datasets are searched.
        on_change: called when the image changes (the sidebar then fills in its first question).
    """
    scan = datasets.find_datasets(str(config.datasets_dir))
    if scan.problems:
        st.warning("  \n".join(scan.problems), icon=":material/folder_off:")
    if not scan.found:
        st.info(
            f"No dataset under {config.datasets_dir}: a dataset is a directory holding `dataset.json` "
            "(photos, a feature store, optional questions; see docs/app.md). `LXMERT_DATASETS_DIR` points the app "
            "to another directory."
        )
        return None
    name = st.selectbox(
        "Dataset",
        list(scan.found),
        key="dataset",
        on_change=on_change,
        help=f"Found under {config.datasets_dir}.",
    )
    root = scan.found[name]
    try:
        opened = datasets.open_dataset(root)
    except (
        ValueError,
        OSError,
    ) as err:  # DatasetError, a broken store or question file, a missing vocabulary
        st.error(f"Dataset `{name}` cannot be opened: {err}", icon=":material/error:")
        return None
    if not opened.store.ids:
        st.warning(f"The feature store of `{name}` holds no image.")
        return None
    img_id = _choose_id(root, opened, on_change)
    _thumbnails(root, opened.store.ids, on_change)
    if img_id is None:
        return None
    try:
        data = datasets.photo_bytes(root, img_id)
    except OSError as err:
        st.error(str(err), icon=":material/broken_image:")
        return None
    questions = opened.questions.get(img_id, [])
    return ImageInput(data, img_id, tuple(q["sent"] for q in questions), dataset=(root, img_id))


def show_region_source(page: PageContext) -> None:
    """Say where a dataset image's regions come from (its feature store, not the detector); nothing otherwise."""
    image = page.inputs.image
    if image is None or image.dataset is None:
        return
    root, img_id = image.dataset
    opened = datasets.open_dataset(root)
    st.info(
        f"The regions of `{img_id}` are read from the feature store of the dataset `{opened.dataset.name}`, not "
        f"detected: {opened.store.feature_dim}-d features, boxes and labels as stored (for the authors' obj36 "
        "files, their Faster R-CNN's), named with "
        f"`{opened.dataset.objects_vocab.name}` and `{opened.dataset.attributes_vocab.name}`.",
        icon=":material/dataset:",
    )


def ground_truth(task: str, item: dict[str, Any]) -> str:
    """The item's label as the table shows it: VQA answers with their soft scores, GQA's gold answer, NLVR2's truth
    value; ``—`` for an unlabelled item (a test split)."""
    if task == "nlvr2":
        return "true" if item["label"] else "false"
    label = item.get("label") or {}
    if not label:
        return "—"
    ranked = sorted(label.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(answer if task == "gqa" else f"{answer} ({score:g})" for answer, score in ranked)


def question_rows(page: PageContext, task: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per question: the question, its ground truth, the model's top answer and its score under the task's
    metric (None where the item has no label or the model gives no answer of that kind)."""
    rows = []
    for item in items:
        answer = score = None
        if task != "nlvr2":
            answer = results.answers(dataclasses.replace(page.query, text=item["sent"]), 1)[0].answer
            if item.get("label"):
                score = datum_score(task, item, answer)
        rows.append(
            {
                "question": item["sent"],
                "ground truth": ground_truth(task, item),
                "model's answer": answer if answer is not None else "—",
                "score": score,
            }
        )
    return rows


def show_questions(page: PageContext) -> None:
    """The dataset's questions about the page's image, with ground truth, the model's answers and their scores;
    nothing when the image does not come from a dataset."""
    image = page.inputs.image
    if image is None or image.dataset is None:
        return
    root, img_id = image.dataset
    opened = datasets.open_dataset(root)
    task = opened.dataset.task
    st.subheader("The dataset's questions on this image")
    if task is None:
        st.caption("This dataset has no question file.")
        return
    items = opened.questions.get(img_id, [])
    if not items:
        st.caption(f"The question file holds no question about `{img_id}`.")
        return
    if len(items) > MAX_QUESTIONS:
        st.caption(f"The first {MAX_QUESTIONS} of {len(items)} questions.")
    with reported("Answering the dataset's questions"):
        rows = question_rows(page, task, items[:MAX_QUESTIONS])
        scored = [row["score"] for row in rows if row["score"] is not None]
        if scored:
            st.metric(
                f"Mean over {len(scored)} questions", f"{sum(scored) / len(scored):.2f}", help=METRICS[task]
            )
        st.dataframe(
            rows,
            key="dataset_questions",
            column_config={
                "score": st.column_config.NumberColumn(help=METRICS[task], format="%.2f"),
            },
        )
    if task == "nlvr2":
        st.caption(
            "NLVR2 statements are about a pair of images; the app's checkpoints answer questions on one image, "
            "so no model answer is given here."
        )
    else:
        st.caption(
            f"Answers of `{page.checkpoint.name}` on the stored regions of this image. {METRICS[task]}. "
            "The sidebar's suggestions ask any of these questions on every page."
        )


__all__ = [
    "MAX_LISTED",
    "choose_image",
    "ground_truth",
    "question_rows",
    "show_questions",
    "show_region_source",
]
