"""Whether a checkpoint can run on a set's detector, decided from file headers before any weight is read.

LXMERT reads the detector's region features through one linear layer, so a checkpoint trained on another
detector's features fails deep inside its first forward pass ("mat1 and mat2 shapes cannot be multiplied (36x256
and 2048x64)"); one without a vocabulary cannot read a question; one whose answer table and QA head disagree names
the wrong answers; a hub checkpoint the local cache lacks cannot run at all. :func:`checkpoint_problem` says which,
in words, from the checkpoint's outline (:func:`lxmert.checkpoints.outline_checkpoint`: tensor shapes, and the
vocabulary and answer table checked against them).
"""

from __future__ import annotations

from .checkpoints import outline_checkpoint
from .errors import UnreadableFileError
from .model_sets import CheckpointEntry
from .tokenization import VOCAB_FILE


def checkpoint_problem(entry: CheckpointEntry, feature_dim: int) -> str | None:
    """Why the checkpoint cannot run on a detector that gives ``feature_dim``-d region features; None if it can.

    Args:
        entry: the checkpoint and, where it lacks its own, its vocabulary and answer table.
        feature_dim: the size of the detector's region features (``DetectorConfig.feature_dim``).

    Returns:
        One sentence naming the fault (the file at fault, both sizes where sizes disagree, or for a hub checkpoint
        missing from the cache, where its files go and the command that fetches them), or None.
    """
    try:
        # A hub id is read from the local cache, never downloaded.
        outline = outline_checkpoint(entry.location, vocab=entry.vocab, answers=entry.answers)
    except (UnreadableFileError, OSError) as err:  # CheckpointError is an UnreadableFileError
        return str(err)
    if outline.visual_feat_dim != feature_dim:
        return f"needs {outline.visual_feat_dim}-d region features; this set's detector gives {feature_dim}-d"
    if outline.vocab is None:
        return (
            f'has no vocabulary: put its {VOCAB_FILE} beside it, or name one as its "vocab" in the set\'s '
            "model_set.json"
        )
    return None


__all__ = ["checkpoint_problem"]
