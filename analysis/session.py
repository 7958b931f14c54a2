"""Everything the app shows for one image and question, computed in one call and returned as plain data.

:func:`analyze` runs the answers, every attention map with per-head statistics, the three relevancy maps, the
integrated-gradients attributions, region occlusion, gradient head importance, and — for a pre-training model —
the masked-word and masked-object predictions and the cross-modal ablation gauge. Its parts are the calls the app
makes, one per view (:func:`attention`, :func:`relevancy`, :func:`occlusion`, ...), which ``app/results.py`` caches
(``st.cache_data``) and draws, so ``benchmarks/analysis_speed`` times the app's own path. Interventions and the
per-example faithfulness curves are separate calls, made when the user asks for them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lxmert.detection.regions import Regions
from lxmert.precision import autocast, resolve_precision
from lxmert.tokenization import LxmertTokenizer

from .attention import AttentionMaps, HeadStats, attention_maps_from_output, cross_modal_share, head_stats
from .attributions import Attributions, integrated_gradients, region_occlusion, token_occlusion
from .forward import AnswerScore, predict_answers, run
from .inputs import Example, example_from_regions
from .interventions import head_importance
from .masked import AblationGauge, MaskedRegionPrediction, MaskedWordPrediction, masked_overview
from .relevancy import Relevancy, gradient_relevancy, raw_attention_relevancy, rollout_relevancy


@dataclass
class SessionConfig:
    """What :func:`analyze` computes and with which settings."""

    top_k: int = 5  # answers, fillers and labels listed
    ig_steps: int = 32  # integration steps of IG
    ig_region_baseline: str = "zero"  # zero (the pre-training object mask) or mean
    occlusion_baseline: str = (
        "zero"  # how a region is occluded: zero (as the app), drop (as the perturbation test) or mean
    )
    attributions: bool = True  # run integrated gradients and occlusion
    masked: bool = True  # masked-word / masked-object predictions and the gauge (pre-training models only)
    # auto: bf16 autocast where the device runs it natively and the model is large enough (lxmert.precision),
    # else fp32; or bf16 / fp32.
    precision: str = "fp32"


RELEVANCY_METHODS = ("gradient", "rollout", "raw_attention")


@dataclass
class AttentionResult:
    """Every attention map of one input and its per-head statistics."""

    maps: AttentionMaps
    stats: HeadStats


@dataclass
class Occlusion:
    """Drop in the answer's logit when each token or region alone is occluded."""

    tokens: np.ndarray
    regions: np.ndarray


def attention(model: nn.Module, example: Example) -> AttentionResult:
    """All six attention families and their head statistics, from one forward pass."""
    with torch.no_grad():
        output = run(model, example, output_attentions=True, output_hidden_states=True)
    maps = attention_maps_from_output(output, example)
    return AttentionResult(maps, head_stats(maps, cross_modal_share(model, output)))


def relevancy(
    model: nn.Module,
    example: Example,
    method: str,
    target: int | None = None,
    contrast: int | None = None,
    maps: AttentionMaps | None = None,
) -> Relevancy:
    """Token and region relevancy for an answer by one of :data:`RELEVANCY_METHODS` (the attention-only methods
    read ``maps`` when given, else collect them)."""
    if method == "gradient":
        return gradient_relevancy(model, example, target, contrast)
    if method not in RELEVANCY_METHODS:
        raise ValueError(f"unknown relevancy method {method!r}; choose from {sorted(RELEVANCY_METHODS)}")
    maps = maps if maps is not None else attention(model, example).maps
    return rollout_relevancy(maps) if method == "rollout" else raw_attention_relevancy(maps)


def occlusion(
    model: nn.Module,
    example: Example,
    target: int | None,
    contrast: int | None,
    pad_token_id: int,
    region_baseline: str = "zero",
) -> Occlusion:
    """Per-token ([PAD]) and per-region occlusion of the answer's logit."""
    return Occlusion(
        tokens=token_occlusion(model, example, target, contrast, pad_token_id),
        regions=region_occlusion(model, example, target, contrast, baseline=region_baseline),
    )


@dataclass
class Analysis:
    """The app's view of one example.

    Attributes:
        example: the input.
        checkpoint_id: which checkpoint produced it.
        answers: the top-k answers.
        target: the explained answer (the top one).
        attention: every attention family, layer and head.
        head_stats: per-head statistics, with the cross-modal share.
        relevancy: ``raw_attention``, ``rollout`` and ``gradient`` relevancy of tokens and regions.
        head_importance: family → (L, H) gradient importance for the target.
        attributions: integrated gradients (None when switched off).
        region_occlusion: (R,) logit drop per occluded region (None when switched off).
        masked_words: every word masked alone, top-k fillers (pre-training models).
        masked_regions: every region masked alone, top-k labels and nearest regions (pre-training models).
        gauge: the cross-modal ablation gauge (pre-training models with detector labels).
        precision: ``bf16`` or ``fp32``, what the model computed in (maps and scores are float32 either way).
        seconds: wall time per part.
    """

    example: Example
    checkpoint_id: str
    answers: list[AnswerScore]
    target: int
    attention: AttentionMaps
    head_stats: HeadStats
    relevancy: dict[str, Relevancy]
    head_importance: dict[str, np.ndarray]
    attributions: Attributions | None = None
    region_occlusion: np.ndarray | None = None
    masked_words: list[MaskedWordPrediction] | None = None
    masked_regions: list[MaskedRegionPrediction] | None = None
    gauge: AblationGauge | None = None
    precision: str = "fp32"
    seconds: dict[str, float] = field(default_factory=dict)


def _has_pretraining_heads(model: nn.Module) -> bool:
    return all(hasattr(model, name) for name in ("cls", "obj_predict_head"))


def analyze_example(
    model: nn.Module,
    tokenizer: LxmertTokenizer,
    example: Example,
    checkpoint_id: str = "",
    answer_names: Sequence[str] | None = None,
    object_names: Sequence[str] | None = None,
    attr_names: Sequence[str] | None = None,
    config: SessionConfig | None = None,
) -> Analysis:
    """Compute everything the app shows for ``example``.

    Args:
        model: a QA model, or a pre-training model with its QA head (masked predictions need the latter).
        tokenizer: the checkpoint's tokenizer.
        example: the input.
        checkpoint_id: recorded with the result (and in exports).
        answer_names: the answer table, to name answers.
        object_names: the detector's object vocabulary, to name labels and align words with regions.
        attr_names: the detector's attribute vocabulary.
        config: what to compute.
    """
    config = config or SessionConfig()
    precision = resolve_precision(config.precision, example.input_ids.device, model.config.hidden_size)
    with autocast(precision, example.input_ids.device):
        analysis = _analyze(
            model, tokenizer, example, checkpoint_id, answer_names, object_names, attr_names, config
        )
    analysis.precision = precision
    return analysis


def _analyze(
    model: nn.Module,
    tokenizer: LxmertTokenizer,
    example: Example,
    checkpoint_id: str,
    answer_names: Sequence[str] | None,
    object_names: Sequence[str] | None,
    attr_names: Sequence[str] | None,
    config: SessionConfig,
) -> Analysis:
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = now - clock
        clock = now

    answers = predict_answers(model, example, config.top_k, answer_names)
    target = answers[0].index
    lap("answers")
    attended = attention(model, example)
    lap("attention")
    relevancies = {
        method: relevancy(model, example, method, target, maps=attended.maps) for method in RELEVANCY_METHODS
    }
    lap("relevancy")
    importance = head_importance(model, example, [target])
    lap("head_importance")
    analysis = Analysis(
        example=example,
        checkpoint_id=checkpoint_id,
        answers=answers,
        target=target,
        attention=attended.maps,
        head_stats=attended.stats,
        relevancy=relevancies,
        head_importance=importance,
        seconds=seconds,
    )
    if config.attributions:
        analysis.attributions = integrated_gradients(
            model, example, target, n_steps=config.ig_steps, region_baseline=config.ig_region_baseline,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        lap("integrated_gradients")
        if example.num_regions > 1 or config.occlusion_baseline != "drop":
            occluded = occlusion(
                model, example, target, None, tokenizer.pad_token_id, config.occlusion_baseline
            )
            analysis.region_occlusion = occluded.regions
        lap("occlusion")
    if config.masked and _has_pretraining_heads(model):
        overview = masked_overview(model, example, tokenizer, config.top_k, object_names, attr_names)
        analysis.masked_words, analysis.masked_regions, analysis.gauge = (
            overview.words,
            overview.regions,
            overview.gauge,
        )
        lap("masked_and_gauge")
    return analysis


def analyze(
    model: nn.Module,
    tokenizer: LxmertTokenizer,
    regions: Regions,
    question: str,
    checkpoint_id: str = "",
    answer_names: Sequence[str] | None = None,
    object_names: Sequence[str] | None = None,
    attr_names: Sequence[str] | None = None,
    config: SessionConfig | None = None,
) -> Analysis:
    """:func:`analyze_example` for a question about the detector's regions of one image."""
    example = example_from_regions(tokenizer, question, regions).to(next(model.parameters()).device)
    return analyze_example(
        model, tokenizer, example, checkpoint_id, answer_names, object_names, attr_names, config
    )


__all__ = [
    "RELEVANCY_METHODS",
    "Analysis",
    "AttentionResult",
    "Occlusion",
    "SessionConfig",
    "analyze",
    "analyze_example",
    "attention",
    "occlusion",
    "relevancy",
]
