"""The README's documented layout: where the fine-tuning commands look by default, and the commands that make it.

Paths are relative to the repository root, as ``scripts/build_default.sh`` writes them (``RUNS=runs``): the worlds
in ``runs/world-kinds`` (VQA, GQA) and ``runs/world-nlvr2`` (NLVR2), their regions in ``runs/default/features*``.
What a fresh clone already has is shipped under ``assets/default/``: the detector those regions come from and the
pre-trained checkpoint the shipped QA model was fine-tuned from. A bare ``python -m training.finetune gqa`` reads
exactly these paths, and names the command below for any of them that is missing.
"""

from __future__ import annotations

PRETRAINED = "assets/default/pretrained"
DETECTOR = "assets/default/detector"
WORLD = "runs/world-kinds"
NLVR2_WORLD = "runs/world-nlvr2"
FEATURES = "runs/default/features"
NLVR2_FEATURES = "runs/default/features-nlvr2"

# How to get each default path: the step of scripts/build_default.sh that writes it (same flags; features from the
# shipped detector).
_MAKE_WORLD = "python -m training.world --out {out} --images 3000 --seed {seed}"
MAKES: dict[str, str] = {
    WORLD: _MAKE_WORLD.format(out=WORLD, seed=0) + " --scene-kinds 5",
    NLVR2_WORLD: _MAKE_WORLD.format(out=NLVR2_WORLD, seed=1) + " --nlvr2-fraction 0.9",
    FEATURES: f"python -m training.extract --images {WORLD} --out {FEATURES} --detector {DETECTOR} --batch-size 8",
    NLVR2_FEATURES: (
        f"python -m training.extract --images {NLVR2_WORLD} --out {NLVR2_FEATURES} --detector {DETECTOR} "
        "--batch-size 8"
    ),
    PRETRAINED: (
        f"it ships with the repository: run from the repository's root, or restore it with "
        f"`git checkout -- {PRETRAINED}`; or pre-train one as scripts/build_default.sh step 4 does and pass "
        "--init runs/default/pretrain/best"
    ),
}


def command_making(path: str) -> str | None:
    """The command that makes a default input (``runs/world-kinds/gqa`` → the world's command); None for others."""
    for made, command in MAKES.items():
        if path == made or path.startswith(made + "/"):
            return command
    return None


__all__ = [
    "DETECTOR",
    "FEATURES",
    "MAKES",
    "NLVR2_FEATURES",
    "NLVR2_WORLD",
    "PRETRAINED",
    "WORLD",
    "command_making",
]
