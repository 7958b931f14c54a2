"""Hugging Face hub ids resolved through the local cache, never the network, and the repositories LXMERT is
published in.

``lxmert.load_checkpoint("unc-nlp/lxmert-gqa-uncased")`` reads the files ``huggingface_hub`` keeps in its cache
(``HF_HUB_CACHE``, or ``HF_HOME/hub``; read by ``huggingface_hub`` when it is imported), as transformers does with
``local_files_only=True``: a string that names no existing path and looks like ``owner/name`` is a hub id. Loading
never downloads: what is missing is named with the command that fetches it (:mod:`lxmert.hub`).
"""

from __future__ import annotations

import re
from pathlib import Path

# The published repositories, by the name ``python -m lxmert.hub download`` takes.
LXMERT_REPOS = {
    "base": "unc-nlp/lxmert-base-uncased",
    "vqa": "unc-nlp/lxmert-vqa-uncased",
    "gqa": "unc-nlp/lxmert-gqa-uncased",
}
DETECTOR_REPO = "unc-nlp/frcnn-vg-finetuned"
PUBLISHED = {**LXMERT_REPOS, "detector": DETECTOR_REPO}

CONFIG_FILE = "config.json"
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")  # either; the first found is read

# The hub's rule for a repo id: owner/name, each of letters, digits, '-', '_' and '.', at most 96 characters.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")


def is_repo_id(value: object) -> bool:
    """Whether ``value`` is a string of the form of a hub repository id, ``owner/name``."""
    return isinstance(value, str) and _REPO_ID.fullmatch(value) is not None


def is_hub_id(value: object) -> bool:
    """Whether ``value`` is read as a hub id: a string of the form ``owner/name`` that names no existing path."""
    return is_repo_id(value) and not Path(value).exists()


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The cache ``huggingface_hub`` reads: ``cache_dir`` when given, else its ``HF_HUB_CACHE``."""
    if cache_dir is not None:
        return Path(cache_dir)
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_cache_folder(repo_id: str, cache_dir: str | Path | None = None) -> Path:
    """Where the cache keeps ``repo_id``'s files (``models--owner--name``)."""
    return hub_cache_dir(cache_dir) / ("models--" + repo_id.replace("/", "--"))


def download_hint(repo_id: str) -> str:
    """How to fetch ``repo_id``: this project's download command for a published one, else the hub's CLI."""
    for name, published in PUBLISHED.items():
        if published == repo_id:
            return f"`python -m lxmert.hub download {name} --to DIR` (on a machine with internet)"
    return f"`hf download {repo_id}` (huggingface_hub's command, on a machine with internet)"


def cached_checkpoint(repo_id: str, cache_dir: str | Path | None = None) -> Path:
    """The cached snapshot directory of ``repo_id`` (its ``main`` revision) holding a config and weights.

    Raises:
        MissingCheckpointFileError: naming the cache folder, when the cache lacks the repo, its config or its
            weights; the message says how to fetch them.
    """
    from huggingface_hub import try_to_load_from_cache

    from .checkpoints import MissingCheckpointFileError

    def cached(filename: str) -> Path | None:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache_dir(cache_dir))
        return Path(found) if isinstance(found, str) else None

    config = cached(CONFIG_FILE)
    weights = next((path for name in WEIGHTS_FILES if (path := cached(name))), None)
    if config is None or weights is None:
        missing = ([CONFIG_FILE] if config is None else []) + (
            [" or ".join(WEIGHTS_FILES)] if weights is None else []
        )
        raise MissingCheckpointFileError(
            repo_cache_folder(repo_id, cache_dir),
            f"{repo_id!r} names no file or directory here, so it is read as a Hugging Face hub id, and the "
            f"local cache has no {' and no '.join(missing)} "
            f"of it. Loading never downloads: fetch it with {download_hint(repo_id)} and load "
            f"DIR/{repo_id.split('/')[1]}, or fill the cache ({hub_cache_dir(cache_dir)}, set by HF_HUB_CACHE or "
            "HF_HOME) with the repo's files",
        )
    return config.parent


def resolve_checkpoint_path(path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """``path`` as a Path; a hub id (:func:`is_hub_id`) becomes its cached snapshot (:func:`cached_checkpoint`)."""
    if is_hub_id(path):
        return cached_checkpoint(str(path), cache_dir)
    return Path(path)


__all__ = [
    "DETECTOR_REPO",
    "LXMERT_REPOS",
    "PUBLISHED",
    "cached_checkpoint",
    "download_hint",
    "hub_cache_dir",
    "is_hub_id",
    "is_repo_id",
    "repo_cache_folder",
    "resolve_checkpoint_path",
]
