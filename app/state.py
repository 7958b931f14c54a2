"""The input every page shares: an image, a question or sentence, a region count and a checkpoint.

``main.py`` draws the sidebar with :func:`show_sidebar` before the page runs; pages read the result with
:func:`current`. The image comes from the sample gallery, from the pool of pre-rendered synthetic-world scenes
(one drawn at random on demand), or from an upload; its bytes are what the caches key on.

Sample files live in ``<assets>/samples/``: gallery images directly in it, the scene pool in ``samples/scenes/``
(the gallery doubles as the pool when that folder is absent). An image may have a sidecar ``<name>.json`` holding
``{"questions": [...]}``: sentences offered for it, the first one pre-filled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from app import datasets, loading
from app.config import AppConfig
from app.directories import inside, scanner
from lxmert.detection import ImageError
from lxmert.fileio import read_json_object
from lxmert.model_sets import CheckpointEntry, ModelSet

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
SOURCES = ("Gallery", "Random scene", "Upload", "Dataset")
# Used only when an image comes without suggestions: a question that presumes nothing about what is in it.
FALLBACK_TEXT = "What is in the image?"
CANNOT_RUN = " (cannot run here)"  # marks a checkpoint in the picker that cannot run on the set's detector
SYNTHETIC_UPLOAD_NOTICE = (
    "This model set knows only the synthetic world (flat coloured shapes). On a photo, its regions and answers say "
    "nothing about what is in it: its detector names only shapes, and its models answer from the synthetic world's "
    "answers."
)
_INPUTS_KEY = "inputs"
THUMBNAIL_SIDE = 320


@dataclass(frozen=True)
class ImageInput:
    """An image as bytes, with its name and the sentences suggested for it.

    Attributes:
        dataset: for a dataset's photo, (dataset directory, image id): its regions are read from the dataset's
            feature store instead of detected (``app/dataset_mode.py``); None for every other image.
    """

    data: bytes
    name: str
    suggestions: tuple[str, ...] = ()
    dataset: tuple[str, str] | None = None

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()[:16]


@dataclass(frozen=True)
class Inputs:
    """What the sidebar holds on this run.

    Attributes:
        image: the chosen image, or None until one is uploaded.
        text: the question (or sentence, for matching).
        num_regions: how many of the detector's best regions the model sees.
        checkpoint: the chosen checkpoint's name (a key of ``checkpoints``).
        checkpoints: every checkpoint of the chosen model set, name → its files.
        config: the app's locations and device.
        model_set: the chosen model set (its detector, its world), None outside the app (tests).
        problems: checkpoint name → why it cannot run on this set's detector; such a checkpoint is never loaded.
    """

    image: ImageInput | None
    text: str
    num_regions: int
    checkpoint: str
    checkpoints: dict[str, CheckpointEntry]
    config: AppConfig
    model_set: ModelSet | None = None
    problems: dict[str, str] = field(default_factory=dict)

    def with_checkpoint(self, name: str) -> Inputs:
        return dataclasses.replace(self, checkpoint=name)

    @property
    def detector_dir(self) -> Path:
        """The chosen set's detector (the default one without a set)."""
        return self.config.detector_dir if self.model_set is None else self.model_set.detector


def image_files(directory: Path, root: Path | None = None) -> list[Path]:
    """Image files directly in ``directory`` that stay inside ``root`` (default: ``directory``) once resolved,
    sorted by name; unreadable entries are left out, and none are listed when the directory does not exist."""
    scan = scanner(root or directory)
    if scan is None or not inside(directory, scan.root):
        return []
    listing = scan.listing(Path(directory).resolve())
    return [
        directory / e.name
        for e in listing.entries
        if not e.is_dir and Path(e.name).suffix.lower() in IMAGE_SUFFIXES
    ]


def scene_pool(samples_dir: Path) -> list[Path]:
    """The pre-rendered synthetic scenes a random one is drawn from."""
    return image_files(samples_dir / "scenes", samples_dir) or image_files(samples_dir)


@st.cache_data(show_spinner=False, max_entries=256)
def read_sample(path: str) -> ImageInput:
    """A sample image's bytes and the suggestions of its sidecar ``.json`` (if any)."""
    file = Path(path)
    sidecar = file.with_suffix(".json")
    suggestions: tuple[str, ...] = ()
    # A sidecar is read only from the image's own folder, never through a symlink that leads elsewhere.
    if inside(sidecar, file.parent) and sidecar.is_file():
        try:
            values = read_json_object(sidecar)
            suggestions = tuple(str(q) for q in values.get("questions", []) if str(q).strip())
        except (OSError, ValueError, TypeError):
            suggestions = ()  # a broken sidecar only costs the suggestions, never the image
    return ImageInput(file.read_bytes(), file.name, suggestions)


def _pick_scene(pool: list[Path]) -> None:
    current = st.session_state.get("scene")
    others = [str(p) for p in pool if str(p) != current] or [str(p) for p in pool]
    st.session_state["scene"] = random.choice(others)
    _suggest_text()


def _suggest_text() -> None:
    """Fill the text box with the new image's first suggestion, if it has one (callbacks run before widgets)."""
    st.session_state["_refill_text"] = True


def _choose_image(config: AppConfig) -> ImageInput | None:
    source = st.radio("Image", SOURCES, horizontal=True, key="source", on_change=_suggest_text)
    if source == "Gallery":
        gallery = image_files(config.samples_dir)
        if not gallery:
            st.warning(f"No sample images in {config.samples_dir}.")
            return None
        path = st.selectbox(
            "Sample", gallery, format_func=lambda p: p.stem, key="sample", on_change=_suggest_text
        )
        return read_sample(str(path))
    if source == "Random scene":
        pool = scene_pool(config.samples_dir)
        if not pool:
            st.warning(f"No pre-rendered scenes in {config.samples_dir}.")
            return None
        if st.session_state.get("scene") not in {str(p) for p in pool}:
            _pick_scene(pool)
        st.button("New random scene", on_click=_pick_scene, args=(pool,), icon=":material/casino:")
        return read_sample(st.session_state["scene"])
    if source == "Dataset":
        from app import dataset_mode  # it imports this module

        return dataset_mode.choose_image(config, _suggest_text)
    upload = st.file_uploader(
        "Upload an image",
        type=[s.lstrip(".") for s in IMAGE_SUFFIXES],
        key="upload",
        on_change=_suggest_text,
        help="Any image Pillow reads; EXIF rotation is applied, and very large or very thin images are refused.",
    )
    return None if upload is None else ImageInput(upload.getvalue(), upload.name)


def _set_text(text: str) -> None:
    st.session_state["text"] = text


def _choose_text(image: ImageInput | None) -> str:
    suggestions = image.suggestions if image is not None else ()
    refill = st.session_state.pop("_refill_text", False)
    if "text" not in st.session_state:
        st.session_state["text"] = suggestions[0] if suggestions else FALLBACK_TEXT
    elif refill and suggestions:
        st.session_state["text"] = suggestions[0]
    text = st.text_input(
        "Question or sentence",
        key="text",
        max_chars=200,
        help="A question is answered on *Ask*; a sentence is scored for matching the image. "
        "LXMERT reads at most 18 word pieces.",
    )
    if len(suggestions) > 1:
        with st.popover("Suggested for this image", icon=":material/lightbulb:"):
            for i, suggestion in enumerate(suggestions):
                st.button(suggestion, key=f"suggestion_{i}", on_click=_set_text, args=(suggestion,))
    return text.strip()


def show_thumbnail(image: ImageInput, config: AppConfig, detector_dir: Path | None = None) -> None:
    """A small preview of the decoded image the detector (default: the default set's) will get (one guarded decode
    serves both); bytes that are not a usable image get none here, and the page says what is wrong with them."""
    try:
        loaded = loading.decoded_image(str(detector_dir or config.detector_dir), image.data, image.name)
    except ImageError:
        st.caption(f"{image.name}: no preview")
        return
    st.image(loading.preview(loaded, THUMBNAIL_SIDE), caption=image.name, width="stretch")


def show_sidebar(
    config: AppConfig,
    checkpoints: dict[str, CheckpointEntry],
    default_checkpoint: str,
    max_regions: int,
    *,
    model_set: ModelSet | None = None,
    problems: dict[str, str] | None = None,
) -> Inputs:
    """Draw the shared input controls in the sidebar and remember them for the page (see :func:`current`).

    Args:
        config: the app's locations and device.
        checkpoints: the chosen set's checkpoints, name → files.
        default_checkpoint: the one selected first (the first that can run, when it cannot).
        max_regions: the detector's region count.
        model_set: the chosen set.
        problems: checkpoint name → why it cannot run on the set's detector; listed, marked, never loaded.
    """
    problems = problems or {}
    detector_dir = config.detector_dir if model_set is None else model_set.detector
    with st.sidebar:
        st.subheader("Input")
        image = _choose_image(config)
        if image is not None:
            show_thumbnail(image, config, detector_dir)
            if (
                st.session_state.get("source") == "Upload"
                and model_set is not None
                and model_set.world == "synthetic"
            ):
                st.info(SYNTHETIC_UPLOAD_NOTICE, icon=":material/info:")
        text = _choose_text(image)
        if image is not None and image.dataset is not None:
            max_regions = datasets.region_count(*image.dataset) or max_regions
        if (
            st.session_state.get("_max_regions") != max_regions
        ):  # a new region source starts with all its regions
            st.session_state["_max_regions"] = st.session_state["num_regions"] = max_regions
        num_regions = st.slider(
            "Regions",
            min_value=1,
            max_value=max_regions,
            key="num_regions",
            help="How many of the best regions (the detector's, or a dataset's stored ones) the model sees "
            "(the model was trained with all of them).",
        )
        st.subheader("Model")
        names = list(checkpoints)
        usable = [n for n in names if n not in problems]
        first = default_checkpoint if default_checkpoint in usable or not usable else usable[0]
        checkpoint = st.selectbox(
            "Checkpoint",
            names,
            index=names.index(first),
            key="checkpoint",
            format_func=lambda n: n + CANNOT_RUN if n in problems else n,
            help=f"The model set's checkpoints, and those found under {config.checkpoints_dir}.",
        )
        if problems:
            st.caption(
                "Cannot run on this set's detector:  \n"
                + "  \n".join(f"`{n}`: {problems[n]}" for n in names if n in problems)
            )
        st.caption(f"Device: {config.device}")
    inputs = Inputs(image, text, num_regions, checkpoint, checkpoints, config, model_set, problems)
    st.session_state[_INPUTS_KEY] = inputs
    return inputs


def widget_key(name: str, *options: object) -> str:
    """A widget key that changes with the widget's options, so a choice never outlives the options it was from.

    A selector over the question's words or the image's regions gets a fresh key (and its default) when the text,
    the image or the region count changes, instead of holding an index that no longer means the same thing.
    """
    return f"{name}_{hashlib.sha1(repr(options).encode()).hexdigest()[:10]}"


def current() -> Inputs:
    """The inputs the sidebar holds on this run."""
    if _INPUTS_KEY not in st.session_state:
        raise RuntimeError("the sidebar has not run: start the app with `streamlit run app/main.py`")
    return st.session_state[_INPUTS_KEY]


__all__ = [
    "CANNOT_RUN",
    "FALLBACK_TEXT",
    "IMAGE_SUFFIXES",
    "ImageInput",
    "Inputs",
    "SOURCES",
    "SYNTHETIC_UPLOAD_NOTICE",
    "current",
    "image_files",
    "read_sample",
    "scene_pool",
    "show_sidebar",
    "widget_key",
]
