"""Answer priors of a world and a question-only baseline: how far a model gets without looking at the image.

For each task the baseline predicts the most frequent training answer of the question's template (GQA: the family
in ``types.detailed``; VQA: ``question_type``; NLVR2: the statement family, else the majority label), fit on the
task's default training splits and scored on its validation split with the task's own evaluator
(``lxmert.data.metrics``). It is the answer prior of ``python -m training.baselines --key type``
(:mod:`training.tasks.answer_priors`, which counts it), shown per template with each template's share. The paper's
language-only rows (Table 2: 44.3 VQA, 41.1 GQA, 51.1 NLVR2) are the real-data counterpart.

    python -m training.world.template_priors --world DIR
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxmert.config_cli import parse_config
from lxmert.data.metrics import datum_score
from training.tasks import FINETUNE_TASKS, get_task
from training.tasks.answer_priors import prior_predictions, question_type, type_shares
from training.tasks.finetune_data import load_splits


@dataclass
class BaselineReport:
    task: str
    shares: dict[str, tuple[int, Any, float]]  # on train
    per_template: dict[str, float]  # baseline score on valid, per template
    scores: dict[str, float]  # the task evaluator's metrics on valid


def world_splits(world: str | Path, task: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A task's default training and validation items in a world directory (VQA: train+nominival and minival;
    GQA, NLVR2: train and valid)."""
    task_class = get_task(task)
    splits = task_class.data_defaults
    data = Path(world) / task
    return (
        load_splits(data, splits["train"], task_class.read_split),
        load_splits(data, splits["valid"], task_class.read_split),
    )


def _per_template(
    valid: Sequence[dict], template: Callable[[dict], str], score: Callable[[dict], float]
) -> dict:
    sums, counts = defaultdict(float), Counter()
    for datum in valid:
        sums[template(datum)] += score(datum)
        counts[template(datum)] += 1
    return {key: sums[key] / counts[key] for key in sorted(counts)}


def task_baseline(task: str, train: list[dict[str, Any]], valid: list[dict[str, Any]]) -> BaselineReport:
    """The per-template answer prior of ``task`` counted on ``train``, scored on ``valid``."""
    task_class = get_task(task)
    predictions = prior_predictions(task, train, valid, key="type")
    per_template = _per_template(
        valid,
        lambda d: question_type(task, d),
        lambda d: datum_score(task, d, predictions[d[task_class.id_key]]),
    )
    return BaselineReport(task, type_shares(task, train), per_template, task_class.score(predictions, valid))


def world_baselines(world: str | Path) -> list[BaselineReport]:
    """Baselines of a world directory, one per fine-tuning task whose validation split has items."""
    reports = []
    for task in FINETUNE_TASKS:
        train, valid = world_splits(world, task)
        if valid:
            reports.append(task_baseline(task, train, valid))
    return reports


def format_report(report: BaselineReport) -> str:
    lines = [
        f"== {report.task}: question-only baseline (majority answer per template; fit on train, valid scores)"
    ]
    lines.append(f"{'template':<22} {'train n':>8} {'top answer':>12} {'top share':>9} {'valid acc':>9}")
    for key, (n, top, share) in report.shares.items():
        score = report.per_template.get(key)
        score_text = f"{score:9.3f}" if score is not None else f"{'':>9}"
        lines.append(f"{key:<22} {n:>8} {str(top):>12} {share:>9.3f} {score_text}")
    lines.append("evaluator on valid: " + json.dumps({k: round(v, 4) for k, v in report.scores.items()}))
    return "\n".join(lines)


@dataclass
class WorldBaselinesConfig:
    world: str = field(metadata={"help": "world directory written by python -m training.world"})


def main(argv: list[str] | None = None) -> None:
    args = parse_config(
        WorldBaselinesConfig,
        argv,
        prog="python -m training.world.template_priors",
        doc=__doc__,
        title="world",
    )
    for report in world_baselines(args.world):
        print(format_report(report))
        print()


if __name__ == "__main__":
    main()
