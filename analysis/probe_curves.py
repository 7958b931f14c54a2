"""Which layer knows colour: linear probes of every layer's hidden states over a small set of images and questions.

The labels are the detector's, per detection (fill proposals carry none): its object class and, where the attribute
vocabulary is the synthetic world's, one label per kind of attribute (colour, size, fill: the kind's most probable
attribute), else its top attribute. The detector names these at about 99% on the world's test images
(``assets/default/detector/meta.json``), so they stand in for the scenes' ground truth.

Both streams are probed. A region's state is probed for its own labels. A word that names an object class (say
"circle") is probed for the labels of the image's best detection of that class, which only the cross layers can let
it see: the language encoder's layers have not looked at the image, so their accuracy is a text-only baseline.
Rows are split by *image*, so no image is on both sides of a probe (``analysis.probing.linear_probe``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lxmert.detection.regions import Regions
from lxmert.tokenization import LxmertTokenizer

from .inputs import example_from_regions
from .probing import StateBank, collect_states, linear_probe

# The synthetic world's attribute kinds (training/world/scenes.py: ATTRIBUTE_LABELS = COLOURS + SIZES + FILLS).
ATTRIBUTE_KINDS = {
    "colour": ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "gray", "white"),
    "size": ("small", "medium", "large"),
    "fill": ("solid", "striped", "dotted", "outlined"),
}
OBJECT_LABEL = "object class"
TOP_ATTRIBUTE_LABEL = "top attribute"
STREAMS = ("language", "vision")


def detected_labels(
    regions: Regions, object_names: Sequence[str], attr_names: Sequence[str]
) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Per-region probing labels from the detector, -1 on fill proposals.

    Returns:
        label name → (R,) long labels, and label name → its class names (label ``i`` is ``names[i]``).
    """
    real = torch.arange(len(regions)) < regions.num_real

    def only_real(values: torch.Tensor) -> torch.Tensor:
        return torch.where(real, values.long(), torch.full_like(values.long(), -1))

    labels = {OBJECT_LABEL: only_real(regions.object_ids)}
    names = {OBJECT_LABEL: list(object_names)}
    kinds = {kind: values for kind, values in ATTRIBUTE_KINDS.items() if set(values) <= set(attr_names)}
    for kind, values in kinds.items():
        columns = [list(attr_names).index(v) for v in values]
        labels[kind] = only_real(regions.attr_probs[:, columns].argmax(-1))
        names[kind] = list(values)
    if not kinds:
        labels[TOP_ATTRIBUTE_LABEL] = only_real(regions.attr_ids)
        names[TOP_ATTRIBUTE_LABEL] = list(attr_names)
    return labels, names


def token_labels(
    bank: StateBank, object_ids: Sequence[Sequence[int]], object_names: Sequence[str], label: str
) -> np.ndarray:
    """Per language row of ``bank``, ``label`` of the best detection of the object class the token names (-1 for a
    token naming no class, or a class the image has no labelled detection of).

    Args:
        object_ids: per example of the bank, its regions' object classes (best detection first).
    """
    by_name = {name: i for i, name in enumerate(object_names)}
    region_labels = bank.region_labels[label]
    first_row = np.cumsum([0, *(len(ids) for ids in object_ids)])
    result = np.full(len(bank.token_refs), -1, dtype=np.int64)
    for row, (example, _, token) in enumerate(bank.token_refs):
        wanted = by_name.get(token)
        if wanted is None:
            continue
        for region, object_id in enumerate(object_ids[example]):
            value = region_labels[first_row[example] + region]
            if object_id == wanted and value >= 0:
                result[row] = value
                break
    return result


@dataclass
class ProbePoint:
    """One probe: a label read from one layer of one stream.

    Attributes:
        label: the probed label.
        stream: ``language`` (word states) or ``vision`` (region states).
        layer: the layer's index in its stream (0 = the embeddings or the visual feature encoder).
        stage: ``language`` or ``vision`` for a single-modality encoder layer (or the embedding), ``cross`` for a
            cross-modality layer.
        test_accuracy: held-out accuracy.
        majority_accuracy: held-out accuracy of the training set's most common label.
        num_train: training rows.
        num_test: held-out rows.
    """

    label: str
    stream: str
    layer: int
    stage: str
    test_accuracy: float
    majority_accuracy: float
    num_train: int
    num_test: int


def probe_curves(
    bank: StateBank,
    images: Sequence[int],
    object_ids: Sequence[Sequence[int]],
    object_names: Sequence[str],
    labels: Sequence[str],
    single_layers: dict[str, int],
    seed: int = 0,
) -> tuple[list[ProbePoint], list[str]]:
    """A probe per label, stream and layer.

    Args:
        bank: the hidden states (``analysis.probing.collect_states``).
        images: per example of the bank, which image it shows (the split's groups).
        object_ids: per example, its regions' object classes.
        object_names: the detector's object vocabulary.
        labels: the region labels to probe.
        single_layers: per stream, its single-modality layers (``l_layers``, ``r_layers``); later ones are cross.
        seed: the split's seed.

    Returns:
        the probes, and notes on the curves that could not be drawn (too few labelled images).
    """
    images = np.asarray(images)
    groups = {
        "language": images[[k for k, _, _ in bank.token_refs]],
        "vision": images[[k for k, _ in bank.region_refs]],
    }
    points, notes = [], []
    for label in labels:
        targets = {
            "language": token_labels(bank, object_ids, object_names, label),
            "vision": bank.region_labels[label],
        }
        for stream in STREAMS:
            states = bank.lang if stream == "language" else bank.vis
            try:
                for layer, layer_states in enumerate(states):
                    result = linear_probe(layer_states, targets[stream], groups[stream], seed=seed)
                    stage = stream if layer <= single_layers[stream] else "cross"
                    points.append(
                        ProbePoint(
                            label,
                            stream,
                            layer,
                            stage,
                            result.test_accuracy,
                            result.majority_accuracy,
                            result.num_train,
                            result.num_test,
                        )
                    )
            except ValueError as err:
                notes.append(f"{label}, {stream} states: {err}")
    return points, notes


@dataclass
class ProbeStudy:
    """Probes of a set of images and questions, and the states they read.

    Attributes:
        points: every probe (:func:`probe_curves`).
        notes: the curves that could not be drawn, and why.
        bank: every token's and region's state at every layer.
        images: per example of the bank, which image it shows.
        class_names: per label, its class names.
        image_names: the images, by index.
    """

    points: list[ProbePoint]
    notes: list[str]
    bank: StateBank
    images: list[int]
    class_names: dict[str, list[str]]
    image_names: list[str]


def probe_study(
    model: nn.Module,
    tokenizer: LxmertTokenizer,
    items: Sequence[tuple[str, Regions, Sequence[str]]],
    object_names: Sequence[str],
    attr_names: Sequence[str],
    seed: int = 0,
) -> ProbeStudy:
    """Run every (image, question) of ``items`` (name, the detector's regions, questions) and probe each layer for
    the detector's labels (:func:`detected_labels`)."""
    device = next(model.parameters()).device
    examples, images, object_ids = [], [], []
    class_names: dict[str, list[str]] = {}
    for image, (_, regions, questions) in enumerate(items):
        labels, class_names = detected_labels(regions, object_names, attr_names)
        for question in questions:
            examples.append(
                example_from_regions(tokenizer, question, regions, region_labels=labels).to(device)
            )
            images.append(image)
            object_ids.append(regions.object_ids.tolist())
    if not examples:
        raise ValueError("no image with a question to probe")
    bank = collect_states(model, examples)
    single_layers = {"language": model.config.l_layers, "vision": model.config.r_layers}
    points, notes = probe_curves(
        bank, images, object_ids, object_names, list(class_names), single_layers, seed
    )
    return ProbeStudy(points, notes, bank, images, class_names, [name for name, _, _ in items])


__all__ = [
    "ProbeStudy",
    "probe_study",
    "ATTRIBUTE_KINDS",
    "OBJECT_LABEL",
    "ProbePoint",
    "STREAMS",
    "TOP_ATTRIBUTE_LABEL",
    "detected_labels",
    "probe_curves",
    "token_labels",
]
