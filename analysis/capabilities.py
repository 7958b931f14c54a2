"""What a loaded checkpoint's heads can do: which analyses apply to it."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lxmert.modeling import LxmertForPreTraining, LxmertForQuestionAnswering

# The head each capability needs (its key prefix, lxmert.checkpoints.HEADS): a checkpoint whose file lacks it
# cannot have the capability, which its outline says without loading it.
HEAD_OF = {
    "answer": "answer_head",
    "match": "cls.seq_relationship",
    "masked_words": "cls.predictions",
    "masked_objects": "obj_predict_head",
}


@dataclass(frozen=True)
class Capabilities:
    """What a checkpoint's heads let the app show; pages hide what is missing and say why."""

    answer: bool
    match: bool
    masked_words: bool
    masked_objects: bool

    def describe(self) -> str:
        names = {
            "answer": "QA",
            "match": "matching",
            "masked_words": "masked LM",
            "masked_objects": "masked objects",
        }
        have = [label for name, label in names.items() if getattr(self, name)]
        return ", ".join(have) if have else "encoder only"


def capabilities_of(model: nn.Module) -> Capabilities:
    """The heads a loaded model has (a QA model only answers; a pre-training model has what its config says)."""
    if isinstance(model, LxmertForQuestionAnswering):
        return Capabilities(answer=True, match=False, masked_words=False, masked_objects=False)
    if isinstance(model, LxmertForPreTraining):
        c = model.config
        return Capabilities(
            answer=c.task_qa,
            match=c.task_matched,
            masked_words=c.task_mask_lm,
            masked_objects=c.task_obj_predict and set(c.visual_losses) == {"obj", "attr", "feat"},
        )
    return Capabilities(answer=False, match=False, masked_words=False, masked_objects=False)


__all__ = ["HEAD_OF", "Capabilities", "capabilities_of"]
