"""Every attention family of one forward pass, per layer and head, and per-head statistics.

Families are named by query→key direction, as the model returns them: ``lang_self`` (language encoder),
``vis_self`` (object-relationship encoder), ``cross_l2v`` (language queries over regions), ``cross_v2l`` (region
queries over tokens), ``x_lang_self`` and ``x_vis_self`` (the self-attentions inside each cross layer). The two cross
directions come from the same shared module but are separate tensors here, each the one its direction computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lxmert.modeling import LxmertModelOutput

from .forward import run
from .inputs import Example

# Query side and key side of each family.
FAMILY_SIDES = {
    "lang_self": ("lang", "lang"),
    "vis_self": ("vis", "vis"),
    "cross_l2v": ("lang", "vis"),
    "cross_v2l": ("vis", "lang"),
    "x_lang_self": ("lang", "lang"),
    "x_vis_self": ("vis", "vis"),
}
CROSS_FAMILIES = ("cross_l2v", "cross_v2l")


@dataclass
class AttentionMaps:
    """Attention probabilities of one example.

    Attributes:
        tokens: the T token strings.
        num_regions: R.
        maps: family → (L, H, Tq, Tk) float32 array; rows sum to 1 (0 for a masked head).
    """

    tokens: list[str]
    num_regions: int
    maps: dict[str, np.ndarray]

    def num_layers(self, family: str) -> int:
        return self.maps[family].shape[0]

    def select(self, family: str, layer: int | None = None, head: int | None = None) -> np.ndarray:
        """(Tq, Tk) map of one layer and head; a None layer or head is averaged over."""
        if family not in self.maps:
            raise KeyError(f"unknown attention family {family!r}; choose from {tuple(self.maps)}")
        attn = self.maps[family]  # (L, H, Tq, Tk)
        attn = attn.mean(0) if layer is None else attn[_check_index(layer, attn.shape[0], "layer")]
        return attn.mean(0) if head is None else attn[_check_index(head, attn.shape[0], "head")]

    def token_to_regions(self, token: int, layer: int | None = None, head: int | None = None) -> np.ndarray:
        """(R,) attention of one token over the regions (``cross_l2v``)."""
        return self.select("cross_l2v", layer, head)[_check_index(token, len(self.tokens), "token")]

    def region_to_tokens(self, region: int, layer: int | None = None, head: int | None = None) -> np.ndarray:
        """(T,) attention of one region over the tokens (``cross_v2l``)."""
        return self.select("cross_v2l", layer, head)[_check_index(region, self.num_regions, "region")]


def _check_index(index: int, size: int, what: str) -> int:
    if not -size <= index < size:
        raise IndexError(f"{what} {index} out of range for {size} {what}s")
    return index


def attention_maps_from_output(output: LxmertModelOutput, example: Example, item: int = 0) -> AttentionMaps:
    """The maps of batch item ``item`` of a forward pass run with ``output_attentions=True``."""
    if output.attentions is None:
        raise ValueError("the forward pass was run without output_attentions=True")
    maps = {}
    for family, layers in output.attentions.items():
        if layers:
            maps[family] = torch.stack([a[item] for a in layers]).detach().float().cpu().numpy()
        else:  # an encoder with no layers still gets an entry, so every family can be looked up
            Tq, Tk = (
                len(example.tokens) if s == "lang" else example.num_regions for s in FAMILY_SIDES[family]
            )
            maps[family] = np.zeros((0, 0, Tq, Tk), dtype=np.float32)
    return AttentionMaps(tokens=list(example.tokens), num_regions=example.num_regions, maps=maps)


def collect_attention(
    model: nn.Module, example: Example, head_mask: dict[str, Tensor] | None = None
) -> AttentionMaps:
    """All six families, every layer and head, from one forward pass."""
    with torch.no_grad():
        output = run(model, example, output_attentions=True, head_mask=head_mask)
    return attention_maps_from_output(output, example)


@dataclass
class HeadStats:
    """Per-head statistics, each family → (L, H) array, averaged over query rows.

    Attributes:
        entropy: attention entropy in nats.
        normalized_entropy: entropy / log(number of keys): 1 is uniform, 0 is one key.
        max_weight: the largest weight of a row.
        cls_mass: weight on [CLS]; NaN where the keys are regions.
        sep_mass: weight on [SEP]; NaN where the keys are regions.
        other_modality_share: cross families only (the self families read only their own modality). The share of
            head h in what a cross sub-layer adds to a token: ``‖o_h‖ / (Σ_h' ‖o_h'‖ + ‖x‖)`` with ``o_h`` the head's
            output projected into the residual stream and ``x`` the token's residual; summed over heads it is the
            layer's share of the other modality, and attention × value norm rather than raw weights
            (Kobayashi et al., 2020), so a head that attends strongly to near-zero values scores low.
    """

    entropy: dict[str, np.ndarray]
    normalized_entropy: dict[str, np.ndarray]
    max_weight: dict[str, np.ndarray]
    cls_mass: dict[str, np.ndarray]
    sep_mass: dict[str, np.ndarray]
    other_modality_share: dict[str, np.ndarray]


def head_stats(maps: AttentionMaps, other_modality_share: dict[str, np.ndarray] | None = None) -> HeadStats:
    """Entropy, max weight and special-token mass of every head of every family.

    Args:
        maps: the example's attention maps.
        other_modality_share: the result of :func:`cross_modal_share`, stored alongside; empty when None.
    """
    cls_positions = [i for i, t in enumerate(maps.tokens) if t == "[CLS]"]
    sep_positions = [i for i, t in enumerate(maps.tokens) if t == "[SEP]"]
    entropy, normalized, max_weight, cls_mass, sep_mass = {}, {}, {}, {}, {}
    for family, attn in maps.maps.items():  # (L, H, Tq, Tk)
        # 0 · log 0 = 0: masked keys and masked heads contribute nothing.
        plogp = np.where(attn > 0, attn * np.log(np.where(attn > 0, attn, 1.0)), 0.0)
        entropy[family] = -plogp.sum(-1).mean(-1)
        num_keys = attn.shape[-1]
        normalized[family] = (
            entropy[family] / np.log(num_keys) if num_keys > 1 else np.zeros_like(entropy[family])
        )
        max_weight[family] = attn.max(-1, initial=0.0).mean(-1)
        keys_are_tokens = FAMILY_SIDES[family][1] == "lang"
        nan = np.full(attn.shape[:2], np.nan, dtype=np.float32)
        cls_mass[family] = attn[..., cls_positions].sum(-1).mean(-1) if keys_are_tokens else nan
        sep_mass[family] = attn[..., sep_positions].sum(-1).mean(-1) if keys_are_tokens else nan
    return HeadStats(entropy, normalized, max_weight, cls_mass, sep_mass, dict(other_modality_share or {}))


def encoder_of(model: nn.Module) -> nn.Module:
    """The ``LxmertEncoder`` of a bare or task model."""
    base = getattr(model, "lxmert", model)
    if not hasattr(base, "encoder"):
        raise TypeError(f"{type(model).__name__} is not an LXMERT model (no .lxmert.encoder)")
    return base.encoder


def cross_attention_modules(model: nn.Module, layer: int) -> dict[str, nn.Module]:
    """The cross-attention sub-layer (attention + output projection) each direction of x-layer ``layer`` uses."""
    x_layer = encoder_of(model).x_layers[layer]
    return {
        "cross_l2v": x_layer.visual_attention,
        "cross_v2l": getattr(x_layer, "visual_attention_v2l", x_layer.visual_attention),
    }


def cross_modal_share(model: nn.Module, output: LxmertModelOutput, item: int = 0) -> dict[str, np.ndarray]:
    """Per-head share of the other modality in each cross sub-layer's update (see :class:`HeadStats`).

    Args:
        model: the model that produced ``output``.
        output: a forward pass with ``output_attentions`` and ``output_hidden_states``.
        item: which batch item.

    Returns:
        ``cross_l2v`` and ``cross_v2l`` → (N_X, H) arrays.
    """
    if output.attentions is None or output.language_hidden_states is None:
        raise ValueError(
            "cross_modal_share needs a forward pass with output_attentions and output_hidden_states"
        )
    c = model.config
    H, d = c.num_attention_heads, c.head_dim
    shares: dict[str, list[np.ndarray]] = {f: [] for f in CROSS_FAMILIES}
    with torch.no_grad():
        for i in range(c.x_layers):
            lang = output.language_hidden_states[c.l_layers + i][item]  # (T, D) input of x-layer i
            vis = output.vision_hidden_states[c.r_layers + i][item]  # (R, D)
            modules = cross_attention_modules(model, i)
            for family, (queries, keys) in (("cross_l2v", (lang, vis)), ("cross_v2l", (vis, lang))):
                sublayer = modules[family]
                probs = getattr(output.attentions, family)[i][item]  # (H, Tq, Tk)
                values = sublayer.att.value(keys).view(-1, H, d).transpose(0, 1)  # (H, Tk, d)
                context = probs.to(values.dtype) @ values  # (H, Tq, d); probs may be bf16 from autocast
                w_out = sublayer.output.dense.weight.view(c.hidden_size, H, d)  # (D, H, d)
                per_head = torch.einsum("hqd,ehd->hqe", context, w_out).norm(dim=-1)  # (H, Tq)
                residual = queries.norm(dim=-1)  # (Tq,)
                share = per_head / (per_head.sum(0) + residual)  # (H, Tq)
                shares[family].append(share.mean(-1).float().cpu().numpy())
    return {
        family: np.stack(rows) if rows else np.zeros((0, H), dtype=np.float32)
        for family, rows in shares.items()
    }


__all__ = [
    "AttentionMaps",
    "CROSS_FAMILIES",
    "FAMILY_SIDES",
    "HeadStats",
    "attention_maps_from_output",
    "collect_attention",
    "cross_attention_modules",
    "cross_modal_share",
    "encoder_of",
    "head_stats",
]
