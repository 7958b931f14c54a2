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
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app import loading
from app.config import AppConfig
from app.directories import inside, scanner
from lxmert.detection import ImageError
from lxmert.fileio import read_json_object

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
SOURCES = ("Gallery", "Random scene", "Upload")
# Used only when an image comes without suggestions: a question that presumes nothing about what is in it.
FALLBACK_TEXT = "What is in the image?"
_INPUTS_KEY = "inputs"
THUMBNAIL_SIDE = 320


@dataclass(frozen=True)
class ImageInput:
    """An image as bytes, with its name and the sentences suggested for it."""

    data: bytes
    name: str
    suggestions: tuple[str, ...] = ()

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
        checkpoints: every checkpoint the app found, name → directory.
        config: the app's locations and device.
    """

    image: ImageInput | None
    text: str
    num_regions: int
    checkpoint: str
    checkpoints: dict[str, str]
    config: AppConfig

    def with_checkpoint(self, name: str) -> Inputs:
        return dataclasses.replace(self, checkpoint=name)


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


def show_thumbnail(image: ImageInput, config: AppConfig) -> None:
    """A small preview of the decoded image the detector will get (one guarded decode serves both); bytes that
    are not a usable image get none here, and the page says what is wrong with them."""
    try:
        loaded = loading.decoded_image(str(config.detector_dir), image.data, image.name)
    except ImageError:
        st.caption(f"{image.name}: no preview")
        return
    st.image(loading.preview(loaded, THUMBNAIL_SIDE), caption=image.name, width="stretch")


def show_sidebar(
    config: AppConfig, checkpoints: dict[str, str], default_checkpoint: str, max_regions: int
) -> Inputs:
    """Draw the shared input controls in the sidebar and remember them for the page (see :func:`current`)."""
    with st.sidebar:
        st.subheader("Input")
        image = _choose_image(config)
        if image is not None:
            show_thumbnail(image, config)
        text = _choose_text(image)
        num_regions = st.slider(
            "Regions",
            min_value=1,
            max_value=max_regions,
            value=max_regions,
            key="num_regions",
            help="How many of the detector's best regions the model sees (the model was trained with all of them).",
        )
        st.subheader("Model")
        names = list(checkpoints)
        checkpoint = st.selectbox(
            "Checkpoint",
            names,
            index=names.index(default_checkpoint),
            key="checkpoint",
            help=f"Checkpoints found under {config.default_dir} and {config.checkpoints_dir}.",
        )
        st.caption(f"Device: {config.device}")
    inputs = Inputs(image, text, num_regions, checkpoint, checkpoints, config)
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
    "FALLBACK_TEXT",
    "IMAGE_SUFFIXES",
    "ImageInput",
    "Inputs",
    "SOURCES",
    "current",
    "image_files",
    "read_sample",
    "scene_pool",
    "show_sidebar",
    "widget_key",
]
