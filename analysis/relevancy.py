"""Relevancy beyond raw attention: rollout over LXMERT's three encoders and Chefer et al.'s gradient relevancy.

Three explanations of an answer, each a score per token and per region, read from the [CLS] row:

- :func:`raw_attention_relevancy`: the last cross layer's head-mean attention, Chefer et al.'s ``raw_attn`` baseline.
- :func:`rollout_relevancy`: attention rollout (Abnar & Zuidema, 2020) over one joint [tokens; regions] graph. Each
  attention block becomes a row-stochastic transition ``normalise(Ā + I)`` (Ā the head mean, I the residual) on the
  tokens it updates and the identity elsewhere; a cross layer's two directions are one block, each side mixing its
  own residual with the other modality. The product runs through the language and relationship encoders (disjoint
  blocks, so their order does not matter), then per cross layer cross-attention, then the two self-attentions.
  Chefer et al.'s ``rollout`` baseline instead rolls out each stream alone and joins them only through the last
  cross layer; the joint graph keeps every cross layer's mixing.
- :func:`gradient_relevancy`: Chefer, Gur & Wolf (ICCV 2021), "ours, no LRP", as their ``GeneratorOurs``:
  ``Ā = mean_h[(∇A ⊙ A)^+]`` with ∇A the gradient of the answer logit (eq. 5); self-attention rules
  ``R^ss += Ā R^ss, R^sq += Ā R^sq`` (eqs. 6-7); co-attention rules ``R^sq += (R̄^ss)ᵀ Ā R̄^qq, R^ss += Ā R^qs``
  with ``R̄ = normalise_rows(R − I) + I`` (eqs. 8-11). Per cross layer both directions are computed from the same
  state and then added (L→V, V→L), then the language and vision self-attentions; the last cross layer contributes
  only its language branch, the one [CLS] reads. ``R^tt[0, 0]`` is set to 0. The two cross directions share one
  module, but the model returns each direction's own probabilities, so their gradients stay apart.

  One deviation, for degenerate input only: a row of ``R − I`` that sums to zero (a token nothing has reached yet)
  is left at zero by the normalisation, where the reference code would divide by zero and produce NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from lxmert.modeling import LxmertModelOutput

from .attention import AttentionMaps, attention_maps_from_output
from .forward import answer_logits, run
from .inputs import Example


@dataclass
class Relevancy:
    """Relevance of every token and region for one answer (larger = more relevant).

    Attributes:
        method: ``raw_attention``, ``rollout`` or ``gradient``.
        tokens: (T,) scores; the [CLS] token's own entry is 0.
        regions: (R,) scores.
        target: the explained answer index, None for methods that ignore the answer.
        contrast: the answer explained against, if any.
        matrices: the full relevancy matrices the scores are the [CLS] rows of (``R_tt``, ``R_ti``, ``R_ii``,
            ``R_it`` for the gradient method, ``joint`` for rollout).
    """

    method: str
    tokens: np.ndarray
    regions: np.ndarray
    target: int | None = None
    contrast: int | None = None
    matrices: dict[str, np.ndarray] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# Raw attention and rollout
# ----------------------------------------------------------------------------------------------------------------


def raw_attention_relevancy(maps: AttentionMaps) -> Relevancy:
    """Chefer et al.'s ``raw_attn`` baseline: the last cross layer's head-mean [CLS] rows.

    Regions come from the last ``cross_l2v`` map, tokens from the last ``x_lang_self`` map.
    """
    if maps.num_layers("cross_l2v") == 0:
        raise ValueError("raw attention relevancy needs at least one cross-modality layer")
    tokens = maps.select("x_lang_self", layer=-1)[0].astype(np.float64)
    tokens[0] = 0.0
    regions = maps.select("cross_l2v", layer=-1)[0].astype(np.float64)
    return Relevancy("raw_attention", tokens, regions)


def _with_residual(attn: np.ndarray) -> np.ndarray:
    """Abnar & Zuidema's ``normalise_rows(Ā + I)`` of a head-averaged (Tq, Tk) square block."""
    block = attn + np.eye(attn.shape[0])
    return block / block.sum(-1, keepdims=True)


def rollout_matrix(maps: AttentionMaps) -> np.ndarray:
    """(T+R, T+R) joint rollout: row i is how much each input token/region reaches output position i.

    Rows and columns are the T tokens, then the R regions.
    """
    T, R = len(maps.tokens), maps.num_regions
    n = T + R
    lang, vis = slice(0, T), slice(T, n)
    joint = np.eye(n)

    def head_mean(family: str, layer: int) -> np.ndarray:
        return maps.maps[family][layer].mean(0).astype(np.float64)  # (Tq, Tk)

    def self_step(lang_attn: np.ndarray | None, vis_attn: np.ndarray | None) -> np.ndarray:
        step = np.eye(n)
        if lang_attn is not None:
            step[lang, lang] = _with_residual(lang_attn)
        if vis_attn is not None:
            step[vis, vis] = _with_residual(vis_attn)
        return step

    for i in range(maps.num_layers("lang_self")):
        joint = self_step(head_mean("lang_self", i), None) @ joint
    for i in range(maps.num_layers("vis_self")):
        joint = self_step(None, head_mean("vis_self", i)) @ joint
    for i in range(maps.num_layers("cross_l2v")):
        cross = np.zeros((n, n))
        cross[lang, lang] = np.eye(T)
        cross[lang, vis] = head_mean("cross_l2v", i)
        cross[vis, vis] = np.eye(R)
        cross[vis, lang] = head_mean("cross_v2l", i)
        joint = (cross / cross.sum(-1, keepdims=True)) @ joint
        joint = self_step(head_mean("x_lang_self", i), head_mean("x_vis_self", i)) @ joint
    return joint


def rollout_relevancy(maps: AttentionMaps) -> Relevancy:
    """The [CLS] row of :func:`rollout_matrix`, split into tokens ([CLS] itself set to 0) and regions."""
    joint = rollout_matrix(maps)
    T = len(maps.tokens)
    tokens = joint[0, :T].copy()
    tokens[0] = 0.0
    return Relevancy("rollout", tokens, joint[0, T:].copy(), matrices={"joint": joint})


# ----------------------------------------------------------------------------------------------------------------
# Gradient-weighted relevancy (Chefer et al., ICCV 2021)
# ----------------------------------------------------------------------------------------------------------------


def _gradient_cam(attn: Tensor, grad: Tensor) -> Tensor:
    """Eq. 5: mean over heads of the positive part of gradient ⊙ attention; (H, Tq, Tk) → (Tq, Tk)."""
    return (grad * attn).clamp(min=0).mean(0)


def _normalize_residual(relevancy: Tensor) -> Tensor:
    """Eqs. 8-9: R̄ = row-normalised (R − I) + I; rows of R − I that sum to zero stay zero."""
    eye = torch.eye(relevancy.shape[-1], dtype=relevancy.dtype)
    hat = relevancy - eye
    sums = hat.sum(-1, keepdim=True)
    return torch.where(sums != 0, hat / torch.where(sums != 0, sums, 1.0), 0.0) + eye


def _self_rule(r_ss: Tensor, r_sq: Tensor, cam: Tensor) -> tuple[Tensor, Tensor]:
    """Eqs. 6-7: the additions to R^ss and R^sq from a self-attention of stream s."""
    return cam @ r_ss, cam @ r_sq


def _co_rule(r_ss: Tensor, r_qq: Tensor, r_qs: Tensor, cam_sq: Tensor) -> tuple[Tensor, Tensor]:
    """Eqs. 10-11: the additions to R^sq and R^ss from stream s attending to stream q."""
    add_sq = _normalize_residual(r_ss).T @ (cam_sq @ _normalize_residual(r_qq))
    return add_sq, cam_sq @ r_qs


def chefer_relevancy(
    attentions: dict[str, Sequence[Tensor]],
    gradients: dict[str, Sequence[Tensor]],
    num_tokens: int,
    num_regions: int,
) -> dict[str, Tensor]:
    """Chefer et al.'s relevancy propagation over LXMERT from per-layer attentions and their gradients.

    Args:
        attentions: family → per-layer (H, Tq, Tk) probabilities of one example.
        gradients: the same shapes: d(explained score) / d(probabilities).
        num_tokens: T.
        num_regions: R.

    Returns:
        ``R_tt`` (T, T), ``R_ti`` (T, R), ``R_ii`` (R, R), ``R_it`` (R, T), float64, with ``R_tt[0, 0] = 0``.
    """

    def cam(family: str, layer: int) -> Tensor:
        return _gradient_cam(attentions[family][layer].double(), gradients[family][layer].double())

    T, R = num_tokens, num_regions
    r_tt, r_ii = torch.eye(T, dtype=torch.float64), torch.eye(R, dtype=torch.float64)
    r_ti, r_it = torch.zeros(T, R, dtype=torch.float64), torch.zeros(R, T, dtype=torch.float64)

    for i in range(len(attentions["lang_self"])):
        add_tt, add_ti = _self_rule(r_tt, r_ti, cam("lang_self", i))
        r_tt, r_ti = r_tt + add_tt, r_ti + add_ti
    for i in range(len(attentions["vis_self"])):
        add_ii, add_it = _self_rule(r_ii, r_it, cam("vis_self", i))
        r_ii, r_it = r_ii + add_ii, r_it + add_it
    num_x = len(attentions["cross_l2v"])
    for i in range(num_x):
        last = i == num_x - 1
        # Both directions from the state before this layer, then added together (L→V, V→L).
        add_ti, add_tt = _co_rule(r_tt, r_ii, r_it, cam("cross_l2v", i))
        if not last:  # the last layer's vision branch never reaches [CLS]
            add_it, add_ii = _co_rule(r_ii, r_tt, r_ti, cam("cross_v2l", i))
            r_it, r_ii = r_it + add_it, r_ii + add_ii
        r_ti, r_tt = r_ti + add_ti, r_tt + add_tt
        add_tt, add_ti = _self_rule(r_tt, r_ti, cam("x_lang_self", i))
        r_tt, r_ti = r_tt + add_tt, r_ti + add_ti
        if not last:
            add_ii, add_it = _self_rule(r_ii, r_it, cam("x_vis_self", i))
            r_ii, r_it = r_ii + add_ii, r_it + add_it
    r_tt = r_tt.clone()
    r_tt[0, 0] = 0.0  # the [CLS] token's relevance to itself says nothing about the input
    return {"R_tt": r_tt, "R_ti": r_ti, "R_ii": r_ii, "R_it": r_it}


@dataclass
class AnswerGradients:
    """One forward and one backward pass explaining an answer's score (all on the CPU, float32).

    Attributes:
        output: the forward pass (attentions, and hidden states when asked for).
        maps: every attention map of the example.
        attentions: family → per-layer (H, Tq, Tk) probabilities.
        gradients: the same shapes: d(explained score) / d(probabilities); zero where a map cannot reach it.
        head_gradients: family → (L, H) d(explained score) / d(head mask), for the mask tensors given with
            ``requires_grad``; empty otherwise.
        target: the explained answer (the top answer when none was given).
        logits: the (A,) answer logits.
    """

    output: LxmertModelOutput
    maps: AttentionMaps
    attentions: dict[str, list[Tensor]]
    gradients: dict[str, list[Tensor]]
    head_gradients: dict[str, Tensor]
    target: int
    logits: Tensor


def answer_gradients(
    model: nn.Module,
    example: Example,
    target: int | None = None,
    contrast: int | None = None,
    head_mask: dict[str, Tensor] | None = None,
    output_hidden_states: bool = False,
) -> AnswerGradients:
    """Every attention map and its gradient for an answer's score, from one forward and one backward pass.

    The explained score is the answer's logit, or ``logit[target] − logit[contrast]`` for a contrastive
    explanation (why A rather than B). Head-mask tensors that require grad get their gradients in the same
    backward pass (gradient head importance), so the app's relevancy and head importance cost one pass together.
    """
    with torch.enable_grad():
        output = run(
            model,
            example,
            output_attentions=True,
            output_hidden_states=output_hidden_states,
            head_mask=head_mask,
        )
        logits = answer_logits(output)[0]  # (A,)
        if target is None:
            target = int(logits.argmax())
        for name, index in (("target", target), ("contrast", contrast)):
            if index is not None and not 0 <= index < logits.numel():
                raise IndexError(f"{name} answer {index} out of range for {logits.numel()} answers")
        score = logits[target] - (logits[contrast] if contrast is not None else 0.0)
        flat = [(family, a) for family, layers in output.attentions.items() for a in layers]
        masks = {f: m for f, m in (head_mask or {}).items() if m.requires_grad}
        grads = torch.autograd.grad(score, [a for _, a in flat] + list(masks.values()), allow_unused=True)
    attentions: dict[str, list[Tensor]] = {family: [] for family, _ in output.attentions.items()}
    gradients: dict[str, list[Tensor]] = {family: [] for family, _ in output.attentions.items()}
    for (family, attn), grad in zip(flat, grads[: len(flat)], strict=True):
        # float32 whatever the autocast precision, so that the maps and relevancy are read at full precision.
        attentions[family].append(attn[0].detach().float().cpu())
        # No gradient means the map cannot reach the answer (the last layer's vision branch): zero relevance.
        gradients[family].append(
            torch.zeros_like(attentions[family][-1]) if grad is None else grad[0].detach().float().cpu()
        )
    head_gradients = {
        family: torch.zeros_like(mask, dtype=torch.float32, device="cpu")
        if grad is None
        else grad.detach().float().cpu()
        for (family, mask), grad in zip(masks.items(), grads[len(flat) :], strict=True)
    }
    return AnswerGradients(
        output=output,
        maps=attention_maps_from_output(output, example),
        attentions=attentions,
        gradients=gradients,
        head_gradients=head_gradients,
        target=target,
        logits=logits.detach().float().cpu(),
    )


def gradient_relevancy(
    model: nn.Module,
    example: Example,
    target: int | None = None,
    contrast: int | None = None,
    head_mask: dict[str, Tensor] | None = None,
) -> Relevancy:
    """Chefer et al.'s gradient-weighted relevancy of every token and region for one answer.

    Args:
        model: a QA model (or a pre-training model with its QA head).
        example: the input.
        target: the answer to explain; the top answer when None.
        contrast: explain ``target`` against this answer (the logit difference) when given.
        head_mask: heads to silence while explaining, family → (layers, H).
    """
    explained = answer_gradients(model, example, target, contrast, head_mask)
    return relevancy_from_gradients(explained, example, contrast)


def relevancy_from_gradients(
    explained: AnswerGradients, example: Example, contrast: int | None = None
) -> Relevancy:
    """Chefer et al.'s relevancy from an :func:`answer_gradients` pass (``contrast`` as it was given there)."""
    matrices = chefer_relevancy(
        explained.attentions, explained.gradients, example.num_tokens, example.num_regions
    )
    return Relevancy(
        "gradient",
        tokens=matrices["R_tt"][0].numpy(),
        regions=matrices["R_ti"][0].numpy(),
        target=explained.target,
        contrast=contrast,
        matrices={name: m.numpy() for name, m in matrices.items()},
    )


__all__ = [
    "AnswerGradients",
    "Relevancy",
    "answer_gradients",
    "chefer_relevancy",
    "gradient_relevancy",
    "raw_attention_relevancy",
    "relevancy_from_gradients",
    "rollout_matrix",
    "rollout_relevancy",
]
