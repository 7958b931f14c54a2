"""LXMERT: Learning Cross-Modality Encoder Representations from Transformers (Tan & Bansal, EMNLP 2019).

Three encoders over WordPiece tokens and detected regions: a language encoder (N_L BERT layers), an
object-relationship encoder (N_R BERT layers over region features) and a cross-modality encoder (N_X layers of
bi-directional cross-attention, then one self-attention and one feed-forward block per modality). Five
pre-training heads (masked LM, cross-modality matching, masked-object feature regression, detected-label and
attribute classification, image QA) and the fine-tuning heads (QA, NLVR2 pair) sit on top.

Module and parameter names are the authors' (airsplay/lxmert ``src/lxrt/modeling.py``) as kept by transformers'
``modeling_lxmert.py`` — ``layer``, ``r_layers``, ``x_layers``, ``visn_fc``, the shared ``visual_attention`` — so
both kinds of checkpoint load by renaming prefixes only (``lxmert/checkpoints.py``).

Deviations from the authors' code and from transformers, all deliberate:
- Attention runs through ``F.scaled_dot_product_attention`` unless weights are asked for; then the same module
  computes them explicitly. Both paths give the same outputs (tests/test_model_attention.py).
- Every attention family is returned on request, per layer and per head, named by query→key direction:
  ``lang_self``, ``vis_self``, ``cross_l2v``, ``cross_v2l``, ``x_lang_self``, ``x_vis_self``. transformers returns
  only the first three; the authors' code returns none.
- Per-head masks (``head_mask``) zero chosen heads of any family in any layer, for ablation probes.
- ``share_cross_attention=False`` gives the vision→language direction its own module (``visual_attention_v2l``).
- Hidden states include the encoders' inputs (the embeddings and the visual feature encoder's output), which
  transformers' docstring promises but its code omits.
- Masks are additive ``finfo.min`` as in transformers (the authors use -10000; identical after softmax).
- The NLVR2 head has two logits trained with cross-entropy, as in the authors' code (the paper's appendix B
  writes one sigmoid logit with BCE; two-way softmax is the same model family and keeps their checkpoints loadable).
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .config import ATTENTION_FAMILIES, LxmertConfig

# The label the losses skip (a word not masked, a question without an answer): torch's default ignore_index.
IGNORE = -100
VISUAL_LOSS_DIMS = {"obj": "num_object_labels", "attr": "num_attr_labels", "feat": "visual_feat_dim"}


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class LxmertAttentions:
    """Attention probabilities of every family, each a per-layer tuple of ``(B, H, Tq, Tk)``."""

    lang_self: tuple[Tensor, ...] = ()  # N_L × (B, H, T, T)
    vis_self: tuple[Tensor, ...] = ()  # N_R × (B, H, R, R)
    cross_l2v: tuple[Tensor, ...] = ()  # N_X × (B, H, T, R): language queries, vision keys
    cross_v2l: tuple[Tensor, ...] = ()  # N_X × (B, H, R, T)
    x_lang_self: tuple[Tensor, ...] = ()  # N_X × (B, H, T, T)
    x_vis_self: tuple[Tensor, ...] = ()  # N_X × (B, H, R, R)

    def items(self) -> list[tuple[str, tuple[Tensor, ...]]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


@dataclass
class LxmertModelOutput:
    language_output: Tensor  # (B, T, D)
    vision_output: Tensor  # (B, R, D)
    pooled_output: Tensor  # (B, D)
    language_hidden_states: tuple[Tensor, ...] | None = None  # 1 + N_L + N_X × (B, T, D)
    vision_hidden_states: tuple[Tensor, ...] | None = None  # 1 + N_R + N_X × (B, R, D)
    attentions: LxmertAttentions | None = None

    # transformers' names for the three families it returns, so users' code ports over.
    @property
    def language_attentions(self) -> tuple[Tensor, ...] | None:
        return self.attentions.lang_self if self.attentions else None

    @property
    def vision_attentions(self) -> tuple[Tensor, ...] | None:
        return self.attentions.vis_self if self.attentions else None

    @property
    def cross_encoder_attentions(self) -> tuple[Tensor, ...] | None:
        return self.attentions.cross_l2v if self.attentions else None


@dataclass
class LxmertForPreTrainingOutput(LxmertModelOutput):
    # (B, T, V) masked LM; (N, V) at the N ``lm_positions`` when those are given.
    prediction_logits: Tensor | None = None
    cross_relationship_score: Tensor | None = None  # (B, 2) matching: index 1 = matched
    question_answering_score: Tensor | None = None  # (B, num_qa_labels)
    obj_logits: Tensor | None = None  # (B, R, num_object_labels)
    attr_logits: Tensor | None = None  # (B, R, num_attr_labels)
    feat_prediction: Tensor | None = None  # (B, R, visual_feat_dim)
    loss: Tensor | None = None
    losses: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class LxmertTaskOutput(LxmertModelOutput):
    logits: Tensor | None = None  # (B, num_labels)
    loss: Tensor | None = None

    @property
    def question_answering_score(self) -> Tensor | None:
        return self.logits


# ----------------------------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------------------------


class LxmertEmbeddings(nn.Module):
    """BERT embeddings: word + position + token type, then LayerNorm and dropout."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, input_ids: Tensor | None, token_type_ids: Tensor | None, inputs_embeds: Tensor | None
    ) -> Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, D)
        B, T, _ = inputs_embeds.shape
        if T > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"sequence of {T} tokens exceeds max_position_embeddings {self.position_embeddings.num_embeddings}"
            )
        positions = torch.arange(T, device=inputs_embeds.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros(B, T, dtype=torch.long, device=inputs_embeds.device)
        x = inputs_embeds + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class LxmertVisualFeatureEncoder(nn.Module):
    """(LN(W_f f) + LN(W_p p)) / 2, then dropout (paper eq. 1)."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.visn_fc = nn.Linear(config.visual_feat_dim, config.hidden_size)
        self.visn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.box_fc = nn.Linear(config.visual_pos_dim, config.hidden_size)
        self.box_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, visual_feats: Tensor, visual_pos: Tensor) -> Tensor:
        x = self.visn_layer_norm(self.visn_fc(visual_feats))  # (B, R, D)
        y = self.box_layer_norm(self.box_fc(visual_pos))  # (B, R, D)
        return self.dropout((x + y) / 2)


# ----------------------------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------------------------


def _math_backward_pays(q: Tensor) -> bool:
    """Whether SDPA should take its math kernel: a backward in reduced precision on the CPU.

    At LXMERT's sizes (20 tokens, 36 regions, 12 heads of 64, batch 32) the CPU flash kernel's bf16 forward and
    backward took 25-51 ms against the math kernel's 6-16 ms (torch 2.14, an AVX512-bf16 CPU, one thread); forward
    alone, flash is a little faster. fp32, where the two were even, keeps the flash kernel and the parity path.
    """
    return q.device.type == "cpu" and q.dtype != torch.float32 and q.requires_grad and torch.is_grad_enabled()


class LxmertAttention(nn.Module):
    """Multi-head attention of ``hidden`` queries over ``context`` keys and values.

    The fast path is ``scaled_dot_product_attention``; with ``need_weights`` the probabilities are computed
    explicitly and returned. They are the very tensor the output is computed from, so gradients with respect to
    them (gradient-weighted relevancy) are exact.
    """

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def _split_heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)

    def forward(
        self,
        hidden: Tensor,
        context: Tensor,
        mask: Tensor | None = None,
        head_mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        q = self._split_heads(self.query(hidden))  # (B, H, Tq, d)
        k = self._split_heads(self.key(context))  # (B, H, Tk, d)
        v = self._split_heads(self.value(context))  # (B, H, Tk, d)
        probs = None
        if need_weights:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, H, Tq, Tk)
            if mask is not None:
                scores = scores + mask
            probs = scores.softmax(dim=-1)
            if head_mask is not None:
                probs = probs * head_mask.view(1, -1, 1, 1)
            out = self.dropout(probs) @ v  # (B, H, Tq, d)
        else:
            dropout_p = self.dropout_p if self.training else 0.0
            with sdpa_kernel(SDPBackend.MATH) if _math_backward_pays(q) else nullcontext():
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
            if head_mask is not None:
                out = out * head_mask.view(1, -1, 1, 1)
        B, _, Tq, _ = out.shape
        return out.transpose(1, 2).reshape(B, Tq, self.num_heads * self.head_dim), probs  # (B, Tq, D)


class LxmertAttentionOutput(nn.Module):
    """Projection, dropout, residual and LayerNorm after an attention."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class LxmertSelfAttentionLayer(nn.Module):
    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.self = LxmertAttention(config)
        self.output = LxmertAttentionOutput(config)

    def forward(self, x: Tensor, mask: Tensor | None, head_mask: Tensor | None, need_weights: bool):
        context, probs = self.self(x, x, mask, head_mask, need_weights)
        return self.output(context, x), probs


class LxmertCrossAttentionLayer(nn.Module):
    # The authors name the attention ``att`` here but ``self`` in the self-attention layer; kept for loading.
    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.att = LxmertAttention(config)
        self.output = LxmertAttentionOutput(config)

    def forward(
        self, x: Tensor, context: Tensor, mask: Tensor | None, head_mask: Tensor | None, need_weights: bool
    ):
        out, probs = self.att(x, context, mask, head_mask, need_weights)
        return self.output(out, x), probs


class LxmertFeedForward(nn.Module):
    """The intermediate (``dense`` + GELU) half of a BERT feed-forward block."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        if config.hidden_act != "gelu":
            raise ValueError(f"only hidden_act='gelu' is supported, got {config.hidden_act!r}")
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))


class LxmertOutput(nn.Module):
    """The output half of a feed-forward block: projection back, dropout, residual, LayerNorm."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


# ----------------------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------------------


class LxmertLayer(nn.Module):
    """A BERT layer: self-attention then feed-forward; used by the language and relationship encoders."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.attention = LxmertSelfAttentionLayer(config)
        self.intermediate = LxmertFeedForward(config)
        self.output = LxmertOutput(config)

    def forward(
        self, x: Tensor, mask: Tensor | None, head_mask: Tensor | None = None, need_weights: bool = False
    ):
        x, probs = self.attention(x, mask, head_mask, need_weights)
        return self.output(self.intermediate(x), x), probs


class LxmertXLayer(nn.Module):
    """Cross-modality layer: bi-directional cross-attention, two self-attentions, two feed-forwards (§2.2)."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.visual_attention = LxmertCrossAttentionLayer(config)
        if not config.share_cross_attention:
            self.visual_attention_v2l = LxmertCrossAttentionLayer(config)
        self.lang_self_att = LxmertSelfAttentionLayer(config)
        self.visn_self_att = LxmertSelfAttentionLayer(config)
        self.lang_inter = LxmertFeedForward(config)
        self.lang_output = LxmertOutput(config)
        self.visn_inter = LxmertFeedForward(config)
        self.visn_output = LxmertOutput(config)

    def forward(
        self,
        lang: Tensor,  # (B, T, D)
        lang_mask: Tensor | None,  # (B, 1, 1, T) additive
        vis: Tensor,  # (B, R, D)
        vis_mask: Tensor | None,  # (B, 1, 1, R) additive
        head_masks: dict[str, Tensor | None],
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor, dict[str, Tensor | None]]:
        # Both directions read the *inputs* of the layer, so the order of the two calls does not matter.
        v2l = getattr(self, "visual_attention_v2l", self.visual_attention)
        lang_x, p_l2v = self.visual_attention(lang, vis, vis_mask, head_masks["cross_l2v"], need_weights)
        vis_x, p_v2l = v2l(vis, lang, lang_mask, head_masks["cross_v2l"], need_weights)
        lang_s, p_ls = self.lang_self_att(lang_x, lang_mask, head_masks["x_lang_self"], need_weights)
        vis_s, p_vs = self.visn_self_att(vis_x, vis_mask, head_masks["x_vis_self"], need_weights)
        lang_out = self.lang_output(self.lang_inter(lang_s), lang_s)
        vis_out = self.visn_output(self.visn_inter(vis_s), vis_s)
        probs = {"cross_l2v": p_l2v, "cross_v2l": p_v2l, "x_lang_self": p_ls, "x_vis_self": p_vs}
        return lang_out, vis_out, probs


# ----------------------------------------------------------------------------------------------------------------
# Encoder and pooler
# ----------------------------------------------------------------------------------------------------------------


class LxmertEncoder(nn.Module):
    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.visn_fc = LxmertVisualFeatureEncoder(config)
        # ``layer`` (not ``l_layers``) so that BERT weights load into the language encoder unchanged.
        self.layer = nn.ModuleList(LxmertLayer(config) for _ in range(config.l_layers))
        self.x_layers = nn.ModuleList(LxmertXLayer(config) for _ in range(config.x_layers))
        self.r_layers = nn.ModuleList(LxmertLayer(config) for _ in range(config.r_layers))

    def forward(
        self,
        lang: Tensor,
        lang_mask: Tensor | None,
        visual_feats: Tensor,
        visual_pos: Tensor,
        vis_mask: Tensor | None,
        head_mask: dict[str, Tensor] | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor, list[Tensor], list[Tensor], dict[str, list[Tensor]]]:
        head_mask = head_mask or {}
        vis = self.visn_fc(visual_feats, visual_pos)  # (B, R, D)
        lang_states, vis_states = [lang], [vis]
        probs: dict[str, list[Tensor]] = {name: [] for name in ATTENTION_FAMILIES}

        def layer_mask(family: str, i: int) -> Tensor | None:
            return head_mask[family][i] if family in head_mask else None

        for i, layer in enumerate(self.layer):
            lang, p = layer(lang, lang_mask, layer_mask("lang_self", i), need_weights)
            lang_states.append(lang)
            probs["lang_self"].append(p)
        for i, layer in enumerate(self.r_layers):
            vis, p = layer(vis, vis_mask, layer_mask("vis_self", i), need_weights)
            vis_states.append(vis)
            probs["vis_self"].append(p)
        for i, layer in enumerate(self.x_layers):
            masks = {f: layer_mask(f, i) for f in ATTENTION_FAMILIES[2:]}
            lang, vis, p = layer(lang, lang_mask, vis, vis_mask, masks, need_weights)
            lang_states.append(lang)
            vis_states.append(vis)
            for name, value in p.items():
                probs[name].append(value)
        return lang, vis, lang_states, vis_states, probs


class LxmertPooler(nn.Module):
    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, lang: Tensor) -> Tensor:
        return torch.tanh(self.dense(lang[:, 0]))  # (B, D) from [CLS]


# ----------------------------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------------------------


class LxmertPredictionHeadTransform(nn.Module):
    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.LayerNorm(F.gelu(self.dense(x)))


class LxmertLMPredictionHead(nn.Module):
    """Masked-LM head; the decoder shares its weight with the word embeddings."""

    def __init__(self, config: LxmertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = LxmertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.decoder.weight = word_embeddings.weight
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: Tensor) -> Tensor:
        # One addmm with the bias instead of matmul then add: saves a pass over the (B, T, V) logits.
        return F.linear(self.transform(x), self.decoder.weight, self.bias)


class LxmertPreTrainingHeads(nn.Module):
    def __init__(self, config: LxmertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = LxmertLMPredictionHead(config, word_embeddings)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, lang: Tensor, pooled: Tensor) -> tuple[Tensor, Tensor]:
        return self.predictions(lang), self.seq_relationship(pooled)


class LxmertVisualObjHead(nn.Module):
    """Masked-object heads: detected label, attribute, and RoI-feature regression (§3.1.2)."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.transform = LxmertPredictionHeadTransform(config)
        self.decoder_dict = nn.ModuleDict(
            {
                key: nn.Linear(config.hidden_size, getattr(config, VISUAL_LOSS_DIMS[key]))
                for key in config.visual_losses
            }
        )

    def forward(self, vis: Tensor) -> dict[str, Tensor]:
        x = self.transform(vis)
        return {key: decoder(x) for key, decoder in self.decoder_dict.items()}


def answer_mlp(in_dim: int, hidden_dim: int, num_labels: int, eps: float) -> nn.Sequential:
    """Linear → GELU → LayerNorm → Linear: the authors' ``BertVisualAnswerHead`` and NLVR2 classifier."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.GELU(),
        nn.LayerNorm(hidden_dim, eps=eps),
        nn.Linear(hidden_dim, num_labels),
    )


def outside_autocast(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` in the module's own dtype (float32 for autocast's fp32 weights) even under autocast.

    For the answer heads: bf16 keeps 8 bits of mantissa, so logits near 10 come out in steps of 1/32 and close
    answers tie, which changes the argmax; the heads are a sliver of the model's compute. Without autocast this
    is ``module(x)``.
    """
    if not torch.is_autocast_enabled(x.device.type):
        return module(x)
    with torch.autocast(x.device.type, enabled=False):
        return module(x.to(next(module.parameters()).dtype))


class LxmertVisualAnswerHead(nn.Module):
    def __init__(self, config: LxmertConfig, num_labels: int):
        super().__init__()
        self.logit_fc = answer_mlp(
            config.hidden_size, config.hidden_size * 2, num_labels, config.layer_norm_eps
        )

    def forward(self, pooled: Tensor) -> Tensor:
        return outside_autocast(self.logit_fc, pooled)


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


class LxmertPreTrainedModel(nn.Module):
    """Weight initialisation and checkpoint IO shared by every LXMERT model."""

    def __init__(self, config: LxmertConfig):
        super().__init__()
        self.config = config

    def init_weights(self) -> None:
        self.apply(self._init_module)

    def _init_module(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @classmethod
    def from_pretrained(cls, path, config: LxmertConfig | dict | None = None, **kwargs):
        """Load from our directory format, a transformers LXMERT directory, or the authors' ``.pth`` files.

        See :func:`lxmert.checkpoints.load_pretrained` for the formats and keyword arguments.
        """
        from .checkpoints import load_pretrained  # checkpoints imports this module

        return load_pretrained(cls, path, config=config, **kwargs)

    def save_pretrained(self, directory, **kwargs) -> None:
        """Write config.json + model.safetensors (+ tokenizer and answer files), atomically."""
        from .checkpoints import save_pretrained

        save_pretrained(self, directory, **kwargs)


def _additive_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """(B, T) of 1 = attend / 0 = pad → (B, 1, 1, T) added to attention scores."""
    if mask is None:
        return None
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class LxmertModel(LxmertPreTrainedModel):
    def __init__(self, config: LxmertConfig):
        super().__init__(config)
        self.embeddings = LxmertEmbeddings(config)
        self.encoder = LxmertEncoder(config)
        self.pooler = LxmertPooler(config)
        self.init_weights()

    def forward(
        self,
        input_ids: Tensor | None = None,  # (B, T)
        visual_feats: Tensor | None = None,  # (B, R, F)
        visual_pos: Tensor | None = None,  # (B, R, 4) boxes normalised to [0, 1]
        attention_mask: Tensor | None = None,  # (B, T) 1 = token, 0 = padding
        visual_attention_mask: Tensor | None = None,  # (B, R) 1 = region, 0 = padding
        token_type_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,  # (B, T, D) instead of input_ids
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        head_mask: dict[str, Tensor] | None = None,  # family → (layers, H) of 0/1 (or any weights)
    ) -> LxmertModelOutput:
        if visual_feats is None or visual_pos is None:
            raise ValueError("LXMERT needs visual_feats (B, R, F) and visual_pos (B, R, 4)")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        self._check_head_mask(head_mask)
        lang = self.embeddings(input_ids, token_type_ids, inputs_embeds)  # (B, T, D)
        lang_mask = _additive_mask(attention_mask, lang.dtype)
        vis_mask = _additive_mask(visual_attention_mask, lang.dtype)
        lang, vis, lang_states, vis_states, probs = self.encoder(
            lang, lang_mask, visual_feats, visual_pos, vis_mask, head_mask, need_weights=output_attentions
        )
        attentions = (
            LxmertAttentions(**{k: tuple(v) for k, v in probs.items()}) if output_attentions else None
        )
        return LxmertModelOutput(
            language_output=lang,
            vision_output=vis,
            pooled_output=self.pooler(lang),
            language_hidden_states=tuple(lang_states) if output_hidden_states else None,
            vision_hidden_states=tuple(vis_states) if output_hidden_states else None,
            attentions=attentions,
        )

    def _check_head_mask(self, head_mask: dict[str, Tensor] | None) -> None:
        if not head_mask:
            return
        c = self.config
        layers = c.family_layers
        for family, mask in head_mask.items():
            if family not in layers:
                raise KeyError(
                    f"unknown attention family {family!r} in head_mask; choose from {ATTENTION_FAMILIES}"
                )
            if tuple(mask.shape) != (layers[family], c.num_attention_heads):
                raise ValueError(
                    f"head_mask[{family!r}] has shape {tuple(mask.shape)}, "
                    f"expected ({layers[family]}, {c.num_attention_heads})"
                )


class LxmertForPreTraining(LxmertPreTrainedModel):
    """LXMERT with its five pre-training heads; with labels, returns a dict of named losses (§3.1)."""

    def __init__(self, config: LxmertConfig):
        super().__init__(config)
        self.lxmert = LxmertModel(config)
        self.cls = LxmertPreTrainingHeads(config, self.lxmert.embeddings.word_embeddings)
        if config.task_obj_predict:
            self.obj_predict_head = LxmertVisualObjHead(config)
        if config.task_qa:
            self.answer_head = LxmertVisualAnswerHead(config, config.num_qa_labels)
        self.init_weights()

    def forward(
        self,
        input_ids: Tensor | None = None,
        visual_feats: Tensor | None = None,
        visual_pos: Tensor | None = None,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,  # (B, T) masked-LM targets, -100 where not masked
        obj_labels: dict[str, tuple[Tensor, Tensor]] | None = None,  # key → (target, weight per region)
        matched_label: Tensor | None = None,  # (B,) 1 = sentence matches image
        ans: Tensor | None = None,  # (B,) answer index, -100 for none / mismatched
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        head_mask: dict[str, Tensor] | None = None,
        lm_positions: Tensor | None = None,  # (B, T) bool: score the masked LM only here (the masked words)
    ) -> LxmertForPreTrainingOutput:
        base = self.lxmert(
            input_ids, visual_feats, visual_pos, attention_mask, visual_attention_mask, token_type_ids,
            inputs_embeds, output_attentions, output_hidden_states, head_mask,
        )  # fmt: skip
        # The vocabulary-wide decoder and its softmax dominate a small model's step; training needs them only at
        # the masked words (~15% of tokens), and the loss over those rows is the same number.
        lang = base.language_output if lm_positions is None else base.language_output[lm_positions]
        lm_logits, match_logits = self.cls(lang, base.pooled_output)
        if labels is not None and lm_positions is not None:
            labels = labels[lm_positions]
        visual = self.obj_predict_head(base.vision_output) if self.config.task_obj_predict else {}
        qa_logits = self.answer_head(base.pooled_output) if self.config.task_qa else None

        c = self.config
        losses: dict[str, Tensor] = {}
        # A loss whose targets are all ignored would be a NaN mean; it counts as zero, and stays in the graph so
        # that its head still gets a (zero) gradient: DDP waits for one from every head that ran, and the paper's
        # epochs without QA were its QA loss times 0.
        if labels is not None and c.task_mask_lm:
            losses["mask_lm"] = (
                F.cross_entropy(lm_logits.reshape(-1, c.vocab_size), labels.flatten(), ignore_index=IGNORE)
                if (labels != IGNORE).any()
                else lm_logits.sum() * 0.0
            )
        if matched_label is not None and c.task_matched:
            losses["matched"] = F.cross_entropy(match_logits, matched_label)
        if obj_labels is not None and c.task_obj_predict:
            for key, logits in visual.items():
                target, weight = obj_labels[key]
                if key == "feat":  # (B, R, F) regression, averaged over feature dims
                    per_region = F.smooth_l1_loss(logits, target, reduction="none").mean(-1)
                else:  # (B, R, C) classification against the detector's labels
                    per_region = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
                # Mean over *all* B×R regions, rescaled by 1/0.15, as the authors do.
                losses[key] = (per_region.flatten() * weight.flatten()).mean() * c.visual_loss_normalizer
        if ans is not None and c.task_qa:
            valid = ans != IGNORE
            losses["qa"] = (
                F.cross_entropy(qa_logits[valid], ans[valid]) if valid.any() else qa_logits.sum() * 0.0
            )
        return LxmertForPreTrainingOutput(
            **{f.name: getattr(base, f.name) for f in fields(base)},
            prediction_logits=lm_logits,
            cross_relationship_score=match_logits,
            question_answering_score=qa_logits,
            obj_logits=visual.get("obj"),
            attr_logits=visual.get("attr"),
            feat_prediction=visual.get("feat"),
            loss=sum(losses.values()) if losses else None,
            losses=losses,
        )


class LxmertForQuestionAnswering(LxmertPreTrainedModel):
    """Image QA over an answer table (VQA, GQA, or your own): the pooled [CLS] output through the answer head.

    ``labels`` may be soft scores ``(B, num_labels)`` (the authors' BCE × num_labels) or answer indices ``(B,)``
    (transformers' cross-entropy).
    """

    def __init__(self, config: LxmertConfig, num_labels: int | None = None):
        if num_labels is not None:
            config = dataclasses.replace(config, num_qa_labels=num_labels)
        super().__init__(config)
        self.lxmert = LxmertModel(config)
        self.answer_head = LxmertVisualAnswerHead(config, config.num_qa_labels)
        self.init_weights()

    def forward(
        self,
        input_ids: Tensor | None = None,
        visual_feats: Tensor | None = None,
        visual_pos: Tensor | None = None,
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        head_mask: dict[str, Tensor] | None = None,
    ) -> LxmertTaskOutput:
        base = self.lxmert(
            input_ids, visual_feats, visual_pos, attention_mask, visual_attention_mask, token_type_ids,
            inputs_embeds, output_attentions, output_hidden_states, head_mask,
        )  # fmt: skip
        logits = self.answer_head(base.pooled_output)  # (B, num_labels)
        loss = None
        if labels is not None:
            if labels.is_floating_point():
                loss = F.binary_cross_entropy_with_logits(logits, labels) * logits.shape[-1]
            else:
                loss = F.cross_entropy(logits, labels)
        return LxmertTaskOutput(
            **{f.name: getattr(base, f.name) for f in fields(base)}, logits=logits, loss=loss
        )


class LxmertForNLVR2(LxmertPreTrainedModel):
    """NLVR2 (paper appendix B): one statement over two images; the two [CLS] outputs are concatenated.

    ``visual_feats`` is ``(B, 2, R, F)`` and ``visual_pos`` ``(B, 2, R, 4)``; the statement is encoded once with
    each image. ``logits`` index 1 means the statement is true.
    """

    def __init__(self, config: LxmertConfig):
        super().__init__(config)
        self.lxmert = LxmertModel(config)
        # At the top level, not inside ``answer_head``, so the authors' ``logit_fc.*`` keys load unchanged.
        self.logit_fc = answer_mlp(config.hidden_size * 2, config.hidden_size * 2, 2, config.layer_norm_eps)
        self.init_weights()

    def forward(
        self,
        input_ids: Tensor | None = None,  # (B, T)
        visual_feats: Tensor | None = None,  # (B, 2, R, F)
        visual_pos: Tensor | None = None,  # (B, 2, R, 4)
        attention_mask: Tensor | None = None,
        visual_attention_mask: Tensor | None = None,  # (B, 2, R)
        token_type_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,  # (B,) 1 = true
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        head_mask: dict[str, Tensor] | None = None,
    ) -> LxmertTaskOutput:
        if visual_feats is None or visual_feats.dim() != 4 or visual_feats.shape[1] != 2:
            raise ValueError("NLVR2 takes visual_feats of shape (B, 2, R, F): two images per statement")
        B = visual_feats.shape[0]

        def twice(x: Tensor | None) -> Tensor | None:  # (B, ...) → (2B, ...), each row repeated
            return None if x is None else x.repeat_interleave(2, dim=0)

        base = self.lxmert(
            twice(input_ids), visual_feats.flatten(0, 1), visual_pos.flatten(0, 1), twice(attention_mask),
            None if visual_attention_mask is None else visual_attention_mask.flatten(0, 1),
            twice(token_type_ids), twice(inputs_embeds), output_attentions, output_hidden_states, head_mask,
        )  # fmt: skip
        logits = outside_autocast(self.logit_fc, base.pooled_output.view(B, -1))  # (B, 2)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return LxmertTaskOutput(
            **{f.name: getattr(base, f.name) for f in fields(base)}, logits=logits, loss=loss
        )
