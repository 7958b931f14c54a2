"""Running a model on examples for analysis: evaluation mode restored afterwards, answers read by name."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lxmert.modeling import LxmertModelOutput

from .inputs import Example, batch_inputs


@contextmanager
def evaluation(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (no dropout) for the block, then restore every module's own mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        # Set the flags directly: Module.train() recurses, which would make restoring quadratic in depth.
        for module, training in modes:
            module.training = training


def run(
    model: nn.Module,
    examples: Example | Sequence[Example],
    output_attentions: bool = False,
    output_hidden_states: bool = False,
    head_mask: dict[str, Tensor] | None = None,
    **overrides: Tensor,
) -> LxmertModelOutput:
    """One forward pass in eval mode over an example or a batch of equal-sized examples.

    Gradients are recorded as the caller's autograd mode says (wrap in ``torch.no_grad()`` when none are needed).
    ``overrides`` replace model inputs, e.g. ``inputs_embeds`` instead of ``input_ids``.
    """
    inputs = batch_inputs([examples] if isinstance(examples, Example) else examples)
    if "inputs_embeds" in overrides:
        inputs.pop("input_ids")
    inputs.update(overrides)
    with evaluation(model):
        return model(
            **inputs,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            head_mask=head_mask,
        )


def answer_logits(output: LxmertModelOutput) -> Tensor:
    """(B, A) answer logits of a QA model or of a pre-training model's QA head."""
    logits = getattr(output, "question_answering_score", None)
    if logits is None:
        raise ValueError(
            f"{type(output).__name__} carries no answer scores: use LxmertForQuestionAnswering or a "
            "pre-training model with task_qa=True"
        )
    return logits


@dataclass
class AnswerScore:
    """One answer of the model's ranking."""

    index: int
    answer: str | None  # the answer table's string, when one was given
    probability: float  # softmax over the answer logits
    logit: float


def top_answers(logits: Tensor, k: int = 5, answer_names: Sequence[str] | None = None) -> list[AnswerScore]:
    """The ``k`` best answers of one example's (A,) logits, best first."""
    if logits.dim() != 1:
        raise ValueError(f"top_answers takes one example's (A,) logits, got shape {tuple(logits.shape)}")
    logits = logits.detach().float()
    probs = logits.softmax(-1)
    best = probs.topk(min(k, logits.numel()))
    return [
        AnswerScore(
            index=i,
            answer=None if answer_names is None else answer_names[i],
            probability=float(probs[i]),
            logit=float(logits[i]),
        )
        for i in best.indices.tolist()
    ]


def predict_answers(
    model: nn.Module,
    example: Example,
    k: int = 5,
    answer_names: Sequence[str] | None = None,
    head_mask: dict[str, Tensor] | None = None,
) -> list[AnswerScore]:
    """The model's ``k`` best answers for one example."""
    with torch.no_grad():
        logits = answer_logits(run(model, example, head_mask=head_mask))[0]
    return top_answers(logits, k, answer_names)


__all__ = ["AnswerScore", "answer_logits", "evaluation", "predict_answers", "run", "top_answers"]
