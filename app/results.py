"""Every number the app shows, computed by ``analysis/`` and cached per input.

Each function takes a :class:`Query` (which detector, checkpoint, image, region count and text) plus the options of
one view, rebuilds the analysis input from the cached detector and checkpoint, calls one ``analysis`` function (the
per-view calls of ``analysis/session.py`` where a view combines several) and returns its plain result. ``st.cache_data`` keys on those arguments, so moving a slider back shows the earlier
result at once, and two pages asking the same thing share it.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import streamlit as st
import torch

from analysis import session
from analysis.compare import (
    CheckpointComparison,
    compare_checkpoints,
    metrics_path,
    read_metrics,
    training_curves,
)
from analysis.export import export_npz
from analysis.forward import AnswerScore, predict_answers, run
from analysis.inputs import Example
from analysis.interventions import head_mask
from analysis.masked import (
    AblationGauge,
    MaskedRegionPrediction,
    MaskedWordPrediction,
    ablation_gauge,
    predict_masked_regions,
    predict_masked_words,
)
from analysis.relevancy import Relevancy
from analysis.session import AttentionResult, Occlusion
from app import datasets
from app.directories import inside
from app.loading import Checkpoint, Scene, example_for, load_model, scene
from lxmert.precision import autocast

if TYPE_CHECKING:
    from analysis.attributions import Attributions
    from analysis.faithfulness import ExampleFaithfulness

T = TypeVar("T")
RELEVANCY_METHODS = {
    "gradient": "Gradient relevancy (Chefer et al.)",
    "rollout": "Attention rollout",
    "raw_attention": "Raw attention (last cross layer)",
}
ATTRIBUTION_METHODS = {"ig": "Integrated gradients (Captum)", "occlusion": "Occlusion (one at a time)"}


@dataclass(frozen=True)
class Query:
    """One input as every cache keys on it.

    Attributes:
        detector: the detector's directory.
        checkpoint: the checkpoint's directory.
        checkpoint_name: how the app lists the checkpoint.
        device: where the models run.
        precision: what they compute in, ``bf16`` (autocast) or ``fp32`` (part of the key: the numbers differ).
        image: the image file's bytes.
        image_name: its name, for messages.
        num_regions: how many of the best regions the model sees.
        text: the question or sentence.
        vocab: the vocabulary given for a checkpoint without its own (a model set's), or None.
        answers: the answer table given for a checkpoint without its own, or None.
        stored: (dataset directory, image id) when the regions come from a dataset's feature store instead of
            the detector.
    """

    detector: str
    checkpoint: str
    checkpoint_name: str
    device: str
    precision: str
    image: bytes
    image_name: str
    num_regions: int
    text: str
    vocab: str | None = None
    answers: str | None = None
    stored: tuple[str, str] | None = None

    def scene(self) -> Scene:
        if self.stored is not None:
            return datasets.stored_scene(*self.stored, self.num_regions)
        return scene(self.detector, self.device, self.image, self.image_name, self.num_regions)

    def model(self) -> Checkpoint:
        return load_model(self.checkpoint, self.checkpoint_name, self.device, self.vocab, self.answers)

    def example(self) -> Example:
        return example_for(self.model(), self.scene(), self.text, self.device)


def in_precision(compute: Callable[..., T]) -> Callable[..., T]:
    """Run ``compute(query, ...)`` under the query's precision (bf16 autocast or none); outputs stay float32."""

    @functools.wraps(compute)
    def computed(query: Query, *args, **kwargs) -> T:
        with autocast(query.precision, query.device):
            return compute(query, *args, **kwargs)

    return computed


@st.cache_data(show_spinner=False, max_entries=128)
def tokens(query: Query) -> list[str]:
    """The word pieces the checkpoint's tokenizer makes of the text, [CLS] and [SEP] included."""
    return list(query.example().tokens)


@st.cache_data(show_spinner="Answering…", max_entries=128)
@in_precision
def answers(query: Query, k: int) -> list[AnswerScore]:
    """The ``k`` most probable answers."""
    checkpoint = query.model()
    return predict_answers(checkpoint.model, query.example(), k, checkpoint.answers)


@st.cache_data(show_spinner="Answering with heads silenced…", max_entries=64)
@in_precision
def answers_silenced(query: Query, heads: tuple[tuple[str, int, int], ...], k: int) -> list[AnswerScore]:
    """The ``k`` best answers with the given (family, layer, head) silenced by a head mask (the model is untouched)."""
    checkpoint = query.model()
    mask = {family: m.to(query.device) for family, m in head_mask(checkpoint.model.config, heads).items()}
    return predict_answers(checkpoint.model, query.example(), k, checkpoint.answers, head_mask=mask)


@st.cache_data(show_spinner="Scoring the match…", max_entries=128)
@in_precision
def match_probability(query: Query) -> float:
    """P(the sentence describes the image) from the cross-modality matching head."""
    with torch.no_grad():
        logits = run(query.model().model, query.example()).cross_relationship_score[
            0
        ]  # (2,): index 1 = matched
    return float(logits.float().softmax(-1)[1])


@st.cache_data(show_spinner="Collecting attention…", max_entries=32)
@in_precision
def attention(query: Query) -> AttentionResult:
    """All six attention families and their head statistics, from one forward pass."""
    return session.attention(query.model().model, query.example())


@st.cache_data(show_spinner="Writing the export…", max_entries=16)
def attention_export(query: Query) -> bytes:
    """Every attention map and head statistic of the input as an NPZ, with tokens, boxes, feature hash, checkpoint."""
    result = attention(query)
    with tempfile.TemporaryDirectory() as directory:
        path = export_npz(
            Path(directory) / "attention.npz",
            query.example(),
            result.maps,
            query.checkpoint_name,
            settings={"num_regions": query.num_regions, "image": query.image_name},
            stats=result.stats,
        )
        return path.read_bytes()


@st.cache_data(show_spinner="Predicting masked words…", max_entries=64)
@in_precision
def masked_words(query: Query, positions: tuple[int, ...], vision: str, k: int) -> list[MaskedWordPrediction]:
    """Top-k fillers of the masked positions with the image (``vision="image"``) or without (``"no_vision"``)."""
    checkpoint = query.model()
    return predict_masked_words(checkpoint.model, query.example(), positions, checkpoint.tokenizer, k, vision)


@st.cache_data(show_spinner="Predicting masked objects…", max_entries=64)
@in_precision
def masked_regions(query: Query, regions: tuple[int, ...], text: str, k: int) -> list[MaskedRegionPrediction]:
    """Object and attribute predictions for masked regions, with the text (``"text"``) or without (``"no_text"``)."""
    checkpoint, scene_ = query.model(), query.scene()
    return predict_masked_regions(
        checkpoint.model,
        query.example(),
        regions,
        k,
        text,
        checkpoint.tokenizer.mask_token_id,
        scene_.object_names,
        scene_.attr_names,
    )


@st.cache_data(show_spinner="Measuring cross-modal reliance…", max_entries=32)
@in_precision
def gauge(query: Query) -> AblationGauge:
    """The cross-modal ablation gauge of the input: every word and every region masked in turn, each modality removed."""
    checkpoint, scene_ = query.model(), query.scene()
    return ablation_gauge(
        checkpoint.model, query.example(), checkpoint.tokenizer, scene_.object_names, scene_.attr_names
    )


@st.cache_data(show_spinner="Computing relevancy…", max_entries=64)
@in_precision
def relevancy(query: Query, method: str, target: int | None, contrast: int | None) -> Relevancy:
    """Token and region relevancy for an answer by one of ``RELEVANCY_METHODS``."""
    maps = None if method == "gradient" else attention(query).maps  # the cached maps, not a second collection
    return session.relevancy(query.model().model, query.example(), method, target, contrast, maps)


@st.cache_data(show_spinner=False, max_entries=32)
@in_precision
def ig(query: Query, target: int | None, contrast: int | None, n_steps: int) -> Attributions:
    """Integrated gradients of the answer's logit to words and regions, with a progress bar while they run (made
    and removed inside, so that a cached result replays no bar)."""
    bar = st.progress(0.0, text="Integrating gradients…")
    from analysis.attributions import integrated_gradients  # Captum: seconds to import, so only when asked

    checkpoint = query.model()
    attributions = integrated_gradients(
        checkpoint.model,
        query.example(),
        target,
        contrast,
        n_steps,
        pad_token_id=checkpoint.tokenizer.pad_token_id,
        progress=lambda done, what: bar.progress(done, text=f"Integrating gradients: {what}…"),
    )
    bar.empty()
    return attributions


@st.cache_data(show_spinner="Occluding tokens and regions…", max_entries=32)
@in_precision
def occlusion(query: Query, target: int | None, contrast: int | None) -> Occlusion:
    """Per-token ([PAD]) and per-region (zeroed feature and box) occlusion of the answer's logit."""
    checkpoint = query.model()
    return session.occlusion(
        checkpoint.model, query.example(), target, contrast, checkpoint.tokenizer.pad_token_id
    )


@st.cache_data(show_spinner="Running the deletion tests…", max_entries=16)
@in_precision
def faithfulness(query: Query, target: int | None, ig_steps: int) -> ExampleFaithfulness:
    """Chefer et al.'s perturbation tests on this one input, for every method, measured by the answer's probability."""
    from analysis.faithfulness import ExplainConfig, example_faithfulness  # imports Captum

    checkpoint = query.model()
    config = ExplainConfig(ig_steps=ig_steps, pad_token_id=checkpoint.tokenizer.pad_token_id)
    return example_faithfulness(
        checkpoint.model, query.example(), target, config=config
    )  # every method, fraction


@st.cache_data(show_spinner="Comparing checkpoints…", max_entries=16)
@in_precision
def comparison(
    query: Query,
    checkpoints: tuple[tuple[str, tuple[str, str | None, str | None]], ...],
    cka_images: tuple[tuple[str, bytes], ...],
) -> CheckpointComparison:
    """The checkpoints (name, their files: :attr:`Checkpoint.files`), the first the reference, on the query's input.

    Every checkpoint reads the reference's tokens. ``cka_images`` (name, bytes) with the same text make up the
    items of the CKA between hidden states; none skips it.
    """
    models = {
        name: load_model(path, name, query.device, vocab, answers)
        for name, (path, vocab, answers) in checkpoints
    }
    reference = next(iter(models.values()))
    cka_examples = [
        example_for(
            reference,
            scene(query.detector, query.device, data, name, query.num_regions),
            query.text,
            query.device,
        )
        for name, data in cka_images
    ]
    return compare_checkpoints(
        {name: checkpoint.model for name, checkpoint in models.items()},
        query.example(),
        cka_examples,
        answer_names={name: checkpoint.answers for name, checkpoint in models.items() if checkpoint.answers},
    )


@st.cache_data(ttl=30, show_spinner=False, max_entries=64)
def curves(checkpoint_dir: str, roots: tuple[str, ...]) -> dict[str, tuple[list[float], list[float]]] | None:
    """Every logged series of the run a checkpoint came from (its ``metrics.jsonl``), None when it has none.

    Re-read every 30 s, so a run still training shows its latest steps.

    Raises:
        ValueError: the metrics file leads outside ``roots`` (the app's configured directories), is not a regular
            file, or is too large to be a run's log.
    """
    try:
        path = metrics_path(checkpoint_dir)
    except FileNotFoundError:
        return None
    if not any(inside(path, root) for root in roots):
        raise ValueError(f"{path} leads outside the app's directories")
    return training_curves(read_metrics(path))


def positions_of(tokens_: Sequence[str]) -> list[int]:
    """Positions of the words (not [CLS] / [SEP]) in a token list."""
    return [i for i, t in enumerate(tokens_) if t not in ("[CLS]", "[SEP]")]


__all__ = [
    "ATTRIBUTION_METHODS",
    "AttentionResult",
    "Occlusion",
    "Query",
    "RELEVANCY_METHODS",
    "answers",
    "answers_silenced",
    "attention",
    "attention_export",
    "comparison",
    "curves",
    "faithfulness",
    "gauge",
    "ig",
    "masked_regions",
    "masked_words",
    "match_probability",
    "occlusion",
    "positions_of",
    "relevancy",
    "tokens",
]
