"""The Probe page's cached result: linear probes of every layer over the shipped sample images and questions.

Or over a dataset's images and questions, in dataset mode. Keyed on plain values (the detector and checkpoint directories and the set's vocabulary and answer files, device, precision, region count and the samples'
names, bytes and questions), so it is computed once per model and sample set, whatever the sidebar's image.
"""

from __future__ import annotations

import streamlit as st

from analysis.probe_curves import ProbeStudy, probe_study
from app import datasets
from app.loading import load_model, scene
from lxmert.precision import autocast

Sample = tuple[str, bytes, tuple[str, ...]]  # name, image bytes, questions


@st.cache_data(show_spinner="Probing every layer…", max_entries=8)
def study(
    detector: str,
    checkpoint: str,
    checkpoint_name: str,
    device: str,
    precision: str,
    num_regions: int,
    samples: tuple[Sample, ...],
    vocab: str | None = None,
    answers: str | None = None,
    dataset: str | None = None,
    seed: int = 0,
) -> ProbeStudy:
    """Hidden states of every (sample, question) and a probe per label, stream and layer (``vocab`` and
    ``answers``: the files a model set gives a checkpoint without its own). With ``dataset``, each sample is one of
    its image ids, whose regions are read from its feature store (the bytes are not used)."""
    loaded = load_model(checkpoint, checkpoint_name, device, vocab, answers)
    items = []
    object_names, attr_names = [], []
    for name, data, questions in samples:
        scene_ = (
            datasets.stored_scene(dataset, name, num_regions)
            if dataset is not None
            else scene(detector, device, data, name, num_regions)
        )
        items.append((name, scene_.regions, questions))
        object_names, attr_names = scene_.object_names, scene_.attr_names
    with autocast(precision, device):
        return probe_study(loaded.model, loaded.tokenizer, items, object_names, attr_names, seed)


__all__ = ["Sample", "study"]
