"""Attributions of a QA answer to the question's words and the image's regions.

- Words: integrated gradients on the word-embedding layer's output (Captum's ``LayerIntegratedGradients``,
  computed here by :func:`path_integral`), every word's baseline [PAD] with [CLS]/[SEP] kept (Captum's BERT
  recipe; PAD embeddings beat zero vectors, captum#1178), summed over the embedding dimension.
- Regions: integrated gradients (Captum's ``IntegratedGradients``) on the region features and boxes together,
  baseline zeros (the pre-training object mask) or the mean feature and box, summed per region (one group per
  region) and reported for features and boxes separately too.
- Occlusion: ``FeatureAblation`` with one group per region (feature and box together) or per token.

Each IG path reports Captum's convergence delta, ``Σ attributions − (f(x) − f(baseline))``; the two paths are
separate (words move with the image fixed, regions with the words fixed), so each has its own delta. The explained
quantity is the answer's logit (or a logit difference for a contrast), never a saturating probability.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lxmert.config import LxmertConfig
from lxmert.modeling import LxmertForPreTraining

from .forward import answer_logits, evaluation, run
from .inputs import Example, batch_inputs

REGION_BASELINES = ("zero", "mean")
# Bytes: 32 steps of the base model on 20 tokens and 36 regions (about 1.5 GiB in fp32 by the estimate) fit. The
# estimate is an upper bound: on 13 tokens it says 39 MiB per step where 30 MiB were measured (peak RSS, fp32).
IG_MEMORY_BUDGET = 2 << 30
OCCLUSION_BASELINES = ("zero", "mean", "drop")


@dataclass
class Attributions:
    """Integrated-gradients attributions of one answer.

    Attributes:
        target: the explained answer index.
        contrast: the answer explained against, if any.
        tokens: (T,) word attributions (LIG, summed over the embedding).
        token_delta: convergence delta of the word path.
        regions: (R,) region attributions, features and box together.
        region_features: (R,) the feature part.
        region_boxes: (R,) the box part.
        region_delta: convergence delta of the region path.
        token_gap: f(x) − f(word baseline), what the word attributions should sum to.
        region_gap: f(x) − f(region baseline).
        region_baseline: ``zero`` or ``mean``.
        n_steps: integration steps.
    """

    target: int
    contrast: int | None
    tokens: np.ndarray
    token_delta: float
    regions: np.ndarray
    region_features: np.ndarray
    region_boxes: np.ndarray
    region_delta: float
    token_gap: float
    region_gap: float
    region_baseline: str
    n_steps: int

    @property
    def text_share(self) -> float:
        """Share of the words in the total absolute attribution (the rest is the regions')."""
        text, image = np.abs(self.tokens).sum(), np.abs(self.regions).sum()
        return float(text / (text + image)) if text + image > 0 else 0.0


def _score_function(
    model: nn.Module, target: int, contrast: int | None, inputs_first: str
) -> Callable[..., Tensor]:
    """A forward function for Captum returning (B,) explained scores; ``inputs_first`` orders its arguments."""

    def score(logits: Tensor) -> Tensor:
        return logits[:, target] - (logits[:, contrast] if contrast is not None else 0.0)

    if inputs_first == "words":

        def forward(
            input_ids: Tensor, visual_feats: Tensor, visual_pos: Tensor, token_type_ids: Tensor
        ) -> Tensor:
            return score(
                answer_logits(model(input_ids, visual_feats, visual_pos, token_type_ids=token_type_ids))
            )

    else:

        def forward(
            visual_feats: Tensor, visual_pos: Tensor, input_ids: Tensor, token_type_ids: Tensor
        ) -> Tensor:
            return score(
                answer_logits(model(input_ids, visual_feats, visual_pos, token_type_ids=token_type_ids))
            )

    return forward


def word_baseline_ids(example: Example, pad_token_id: int = 0) -> Tensor:
    """(T,) the words replaced by [PAD], [CLS] and [SEP] kept."""
    return torch.where(
        example.special_mask, example.input_ids, torch.full_like(example.input_ids, pad_token_id)
    )


def region_baselines(
    example: Example, kind: str, mean_feature: Tensor | None = None, mean_box: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(R, F) feature and (R, 4) box baselines: zeros, or a mean (the dataset's when given, else the example's)."""
    if kind == "zero":
        return torch.zeros_like(example.visual_feats), torch.zeros_like(example.visual_pos)
    if kind != "mean":
        raise ValueError(f"region baseline must be one of {REGION_BASELINES}, got {kind!r}")
    feature = example.visual_feats.mean(0) if mean_feature is None else mean_feature.to(example.visual_feats)
    box = example.visual_pos.mean(0) if mean_box is None else mean_box.to(example.visual_pos)
    return feature.expand_as(example.visual_feats).clone(), box.expand_as(example.visual_pos).clone()


def activation_bytes_per_row(
    config: LxmertConfig, num_tokens: int, num_regions: int, value_bytes: int
) -> int:
    """Bytes a forward pass keeps for its backward pass, per batch row, estimated from the layer shapes.

    A BERT layer over n queries and m keys keeps about 8 hidden-size vectors per query (projections, residuals,
    LayerNorm inputs), 2 intermediate-size ones (the GELU's input and output) and 2 attention maps (scores and
    probabilities); a cross layer is four of them (both cross directions, both self-attentions).
    """

    def layer(n: int, m: int) -> int:
        return (
            n * (8 * config.hidden_size + 2 * config.intermediate_size)
            + 2 * config.num_attention_heads * n * m
        )

    T, R = num_tokens, num_regions
    values = (
        config.l_layers * layer(T, T)
        + config.r_layers * layer(R, R)
        + config.x_layers * (layer(T, R) + layer(R, T) + layer(T, T) + layer(R, R))
        + R * (config.visual_feat_dim + 2 * config.hidden_size)  # the region features and their encodings
    )
    return values * value_bytes


def ig_batch_size(
    config: LxmertConfig,
    num_tokens: int,
    num_regions: int,
    n_steps: int,
    memory_budget: int,
    value_bytes: int = 4,
) -> int:
    """How many integration steps to evaluate at once: all of them, or as many as ``memory_budget`` bytes hold."""
    per_row = activation_bytes_per_row(config, num_tokens, num_regions, value_bytes)
    return max(1, min(n_steps, memory_budget // per_row))


def _default_target(model: nn.Module, example: Example) -> int:
    with torch.no_grad():
        return int(answer_logits(run(model, example))[0].argmax())


def gauss_legendre(n_steps: int) -> tuple[Tensor, Tensor]:
    """(n,) points in (0, 1) and their (n,) weights, summing to 1: Captum's default IG rule (``gausslegendre``)."""
    points, weights = np.polynomial.legendre.leggauss(n_steps)
    return torch.from_numpy(0.5 * (points + 1)), torch.from_numpy(0.5 * weights)


def path_integral(
    score: Callable[..., Tensor],
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor, ...],
    n_steps: int,
    batch_size: int,
) -> tuple[Tensor, ...]:
    """Integrated gradients ``(x − b) ⊙ Σ_k w_k ∇score(b + α_k (x − b))`` of (1, …) inputs.

    ``batch_size`` steps are evaluated at once. ``score`` maps a batch of points (one tensor per input) to (S,) scores. Gradients are taken with respect to
    the points alone (``torch.autograd.grad``), so autograd runs no weight-gradient products and only the layers
    on a path from the inputs to the score.
    """
    alphas, weights = gauss_legendre(n_steps)
    sums = [torch.zeros_like(x) for x in inputs]
    for first in range(0, n_steps, batch_size):
        alpha, weight = alphas[first : first + batch_size], weights[first : first + batch_size]
        points = tuple(
            (b + alpha.to(x).view(-1, *[1] * (x.dim() - 1)) * (x - b)).requires_grad_()
            for x, b in zip(inputs, baselines, strict=True)
        )
        grads = torch.autograd.grad(score(*points).sum(), points)
        for total, grad in zip(sums, grads, strict=True):
            total += (weight.to(total).view(-1, *[1] * (total.dim() - 1)) * grad.to(total)).sum(
                0, keepdim=True
            )
    return tuple(total * (x - b) for total, x, b in zip(sums, inputs, baselines, strict=True))


def integrated_gradients(
    model: nn.Module,
    example: Example,
    target: int | None = None,
    contrast: int | None = None,
    n_steps: int = 32,
    region_baseline: str = "zero",
    mean_feature: Tensor | None = None,
    mean_box: Tensor | None = None,
    pad_token_id: int = 0,
    internal_batch_size: int | None = None,
    memory_budget: int = IG_MEMORY_BUDGET,
    progress: Callable[[float, str], None] | None = None,
) -> Attributions:
    """Integrated gradients of an answer's logit to the words (LIG on embeddings) and the regions (IG).

    The numbers are Captum's ``LayerIntegratedGradients`` on the word-embedding layer and ``IntegratedGradients``
    on the regions, with their default Gauss-Legendre rule (tests/test_analysis_attributions.py compares them);
    computed here so that the score and the two baselines take one forward pass each, shared by the gaps and the
    convergence deltas.

    Args:
        model: a QA model (or a pre-training model with its QA head).
        example: the input.
        target: the answer to explain; the top answer when None.
        contrast: explain ``logit[target] − logit[contrast]`` when given.
        n_steps: integration steps (Gauss-Legendre, Captum's default rule).
        region_baseline: ``zero`` or ``mean``.
        mean_feature: (F,) the dataset's mean region feature for the ``mean`` baseline.
        mean_box: (4,) the dataset's mean normalised box for the ``mean`` baseline.
        pad_token_id: the [PAD] id of the word baseline.
        internal_batch_size: the rows (integration steps) evaluated at once; None: as many as
            ``memory_budget`` allows (:func:`ig_batch_size`), all of them for the base model's usual sizes.
        memory_budget: bytes of activations one batch of steps may keep for its backward pass.
        progress: told the share done and what runs next, before the words' integral, before the regions' and
            at the end (seconds each for the base model on a CPU).
    """
    report = progress or (lambda done, what: None)
    inputs = example.model_inputs()
    ids, feats, pos, types = (
        inputs[k] for k in ("input_ids", "visual_feats", "visual_pos", "token_type_ids")
    )
    if internal_batch_size is None:
        # Activations are stored in bf16 under autocast: half the bytes per value.
        low_precision = torch.is_autocast_enabled(ids.device.type)
        internal_batch_size = ig_batch_size(
            model.config,
            example.num_tokens,
            example.num_regions,
            n_steps,
            memory_budget,
            2 if low_precision else 4,
        )
    base_ids = word_baseline_ids(example, pad_token_id)[None]
    feat_base, pos_base = region_baselines(example, region_baseline, mean_feature, mean_box)
    feat_base, pos_base = feat_base[None], pos_base[None]
    word_embeddings = getattr(model, "lxmert", model).embeddings.word_embeddings

    def logits(**overrides: Tensor) -> Tensor:
        rows = next(iter(overrides.values())).shape[0]
        arguments = {"input_ids": ids, "visual_feats": feats, "visual_pos": pos, **overrides}
        if "inputs_embeds" in overrides:
            del arguments["input_ids"]
        arguments = {k: v.expand(rows, *v.shape[1:]) for k, v in arguments.items()}
        if isinstance(model, LxmertForPreTraining):
            # No word's vocabulary logits: the decoder is a tenth of a base model's forward at 30K words.
            arguments["lm_positions"] = torch.zeros(rows, ids.shape[1], dtype=torch.bool, device=ids.device)
        return answer_logits(model(**arguments, token_type_ids=types.expand(rows, -1)))

    with evaluation(model):
        with torch.no_grad():
            here_logits = logits(input_ids=ids)
            target = int(here_logits[0].argmax()) if target is None else target

            def score(x: Tensor) -> Tensor:
                return x[:, target] - (x[:, contrast] if contrast is not None else 0.0)

            here = score(here_logits)
            token_gap = float((here - score(logits(input_ids=base_ids)))[0])
            region_gap = float((here - score(logits(visual_feats=feat_base, visual_pos=pos_base)))[0])
            word_inputs, word_base = word_embeddings(ids), word_embeddings(base_ids)
        with torch.enable_grad():
            report(0.0, f"the words, {n_steps} steps")
            (word_attr,) = path_integral(
                lambda embeds: score(logits(inputs_embeds=embeds)),
                (word_inputs,),
                (word_base,),
                n_steps,
                internal_batch_size,
            )
            report(0.5, f"the regions, {n_steps} steps")
            feat_attr, pos_attr = path_integral(
                lambda f, p: score(logits(visual_feats=f, visual_pos=p)),
                (feats, pos),
                (feat_base, pos_base),
                n_steps,
                internal_batch_size,
            )
    report(1.0, "done")
    tokens = word_attr[0].sum(-1).double().cpu().numpy()
    region_features = feat_attr[0].sum(-1).double().cpu().numpy()
    region_boxes = pos_attr[0].sum(-1).double().cpu().numpy()
    regions = region_features + region_boxes
    return Attributions(
        target=target,
        contrast=contrast,
        tokens=tokens,
        token_delta=float(tokens.sum()) - token_gap,
        regions=regions,
        region_features=region_features,
        region_boxes=region_boxes,
        region_delta=float(regions.sum()) - region_gap,
        token_gap=token_gap,
        region_gap=region_gap,
        region_baseline=region_baseline,
        n_steps=n_steps,
    )


def region_occlusion(
    model: nn.Module,
    example: Example,
    target: int | None = None,
    contrast: int | None = None,
    baseline: str = "zero",
    mean_feature: Tensor | None = None,
    mean_box: Tensor | None = None,
) -> np.ndarray:
    """(R,) drop in the answer's logit when each region alone is occluded (larger = more needed).

    ``baseline`` replaces the region's feature and box by zeros or the mean, or drops the region (``drop``, as the
    perturbation test removes regions).
    """
    target = _default_target(model, example) if target is None else target
    if baseline not in OCCLUSION_BASELINES:
        raise ValueError(f"occlusion baseline must be one of {OCCLUSION_BASELINES}, got {baseline!r}")
    forward = _score_function(model, target, contrast, "regions")
    inputs = example.model_inputs()
    ids, feats, pos, types = (
        inputs[k] for k in ("input_ids", "visual_feats", "visual_pos", "token_type_ids")
    )
    R = example.num_regions
    with evaluation(model), torch.no_grad():
        if baseline == "drop":
            if R < 2:
                raise ValueError("drop occlusion needs at least two regions")
            rows = batch_inputs([example.select_regions([j for j in range(R) if j != r]) for r in range(R)])
            dropped = forward(
                rows["visual_feats"], rows["visual_pos"], ids.expand(R, -1), types.expand(R, -1)
            )
            return (forward(feats, pos, ids, types) - dropped).double().cpu().numpy()
        feat_base, pos_base = region_baselines(example, baseline, mean_feature, mean_box)
        groups = torch.arange(R, device=feats.device)[
            None, :, None
        ]  # (1, R, 1): one group per region, feature and box together
        from captum.attr import FeatureAblation

        ablation = FeatureAblation(forward)
        feat_attr, _ = ablation.attribute(
            (feats, pos),
            baselines=(feat_base[None], pos_base[None]),
            additional_forward_args=(ids, types),
            feature_mask=(groups.expand_as(feats), groups.expand_as(pos)),
            perturbations_per_eval=R,
        )
    return feat_attr[0, :, 0].double().cpu().numpy()


def token_occlusion(
    model: nn.Module,
    example: Example,
    target: int | None = None,
    contrast: int | None = None,
    pad_token_id: int = 0,
) -> np.ndarray:
    """(T,) drop in the answer's logit when each token alone is replaced by [PAD] (larger = more needed)."""
    target = _default_target(model, example) if target is None else target
    forward = _score_function(model, target, contrast, "words")
    inputs = example.model_inputs()
    ids, feats, pos, types = (
        inputs[k] for k in ("input_ids", "visual_feats", "visual_pos", "token_type_ids")
    )
    T = example.num_tokens
    with evaluation(model), torch.no_grad():
        from captum.attr import FeatureAblation

        ablation = FeatureAblation(forward)
        attr = ablation.attribute(
            ids,
            baselines=pad_token_id,
            additional_forward_args=(feats, pos, types),
            feature_mask=torch.arange(T, device=ids.device)[None],
            perturbations_per_eval=T,
        )
    return attr[0].double().cpu().numpy()


__all__ = [
    "Attributions",
    "IG_MEMORY_BUDGET",
    "OCCLUSION_BASELINES",
    "REGION_BASELINES",
    "activation_bytes_per_row",
    "gauss_legendre",
    "ig_batch_size",
    "integrated_gradients",
    "path_integral",
    "region_baselines",
    "region_occlusion",
    "token_occlusion",
    "word_baseline_ids",
]
