"""Answer priors of a world and a question-only baseline: how far a model gets without looking at the image.

For each task the baseline predicts the most frequent training answer of the question's template (GQA: the family
in ``types.detailed``; VQA: ``question_type``; NLVR2: the statement family, else the majority label), fit on the
training split and scored on the validation split with the task's own evaluator (``lxmert.data.metrics``). The paper's
language-only rows (Table 2: 44.3 VQA, 41.1 GQA, 51.1 NLVR2) are the real-data counterpart.

    python -m training.world.baselines --world DIR
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxmert.config_cli import parse_config
from lxmert.data.metrics import gqa_scores, nlvr2_scores, vqa_scores
from lxmert.data.task_files import load_gqa, load_nlvr2, load_vqa

OVERALL = "(all)"


def best_answer(label: dict[str, float]) -> str | None:
    """The highest-scored answer of a soft label (None for an empty label)."""
    return max(label, key=label.get) if label else None


def gqa_template(datum: dict[str, Any]) -> str:
    return (datum.get("types") or {}).get("detailed", OVERALL)


def vqa_template(datum: dict[str, Any]) -> str:
    return datum.get("question_type", OVERALL)


def nlvr2_template(datum: dict[str, Any]) -> str:
    return datum.get("family", OVERALL)


def answer_shares(
    data: Sequence[dict[str, Any]], template: Callable[[dict], str], answer: Callable[[dict], Any]
) -> dict[str, tuple[int, Any, float]]:
    """Per template (and OVERALL): (number of items, most frequent answer, its share)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for datum in data:
        value = answer(datum)
        counts[template(datum)][value] += 1
        counts[OVERALL][value] += 1
    shares = {}
    for key, counter in sorted(counts.items()):
        top, n = counter.most_common(1)[0]
        shares[key] = (sum(counter.values()), top, n / sum(counter.values()))
    return shares


def fit_majority(
    data: Sequence[dict[str, Any]], template: Callable[[dict], str], answer: Callable[[dict], Any]
) -> dict[str, Any]:
    """Most frequent answer per template, with OVERALL as the fallback for templates unseen in training."""
    return {key: top for key, (_, top, _) in answer_shares(data, template, answer).items()}


def predict_majority(model: dict[str, Any], datum: dict[str, Any], template: Callable[[dict], str]) -> Any:
    return model.get(template(datum), model[OVERALL])


@dataclass
class BaselineReport:
    task: str
    shares: dict[str, tuple[int, Any, float]]  # on train
    per_template: dict[str, float]  # baseline score on valid, per template
    scores: dict[str, float]  # the task evaluator's metrics on valid


def _per_template(
    valid: Sequence[dict], template: Callable[[dict], str], score: Callable[[dict], float]
) -> dict:
    sums, counts = defaultdict(float), Counter()
    for datum in valid:
        sums[template(datum)] += score(datum)
        counts[template(datum)] += 1
    return {key: sums[key] / counts[key] for key in sorted(counts)}


def gqa_baseline(train: Sequence[dict], valid: Sequence[dict]) -> BaselineReport:
    model = fit_majority(train, gqa_template, lambda d: best_answer(d["label"]))
    predictions = {d["question_id"]: predict_majority(model, d, gqa_template) for d in valid}
    per_template = _per_template(
        valid, gqa_template, lambda d: d["label"].get(predictions[d["question_id"]], 0.0)
    )
    shares = answer_shares(train, gqa_template, lambda d: best_answer(d["label"]))
    return BaselineReport("gqa", shares, per_template, gqa_scores(predictions, valid))


def vqa_baseline(train: Sequence[dict], valid: Sequence[dict]) -> BaselineReport:
    labelled = [d for d in train if d.get("label")]
    model = fit_majority(labelled, vqa_template, lambda d: best_answer(d["label"]))
    predictions = {d["question_id"]: predict_majority(model, d, vqa_template) for d in valid}
    per_template = _per_template(
        valid, vqa_template, lambda d: d["label"].get(predictions[d["question_id"]], 0.0)
    )
    shares = answer_shares(labelled, vqa_template, lambda d: best_answer(d["label"]))
    return BaselineReport("vqa", shares, per_template, vqa_scores(predictions, valid))


def nlvr2_baseline(train: Sequence[dict], valid: Sequence[dict]) -> BaselineReport:
    model = fit_majority(train, nlvr2_template, lambda d: d["label"])
    predictions = {d["identifier"]: predict_majority(model, d, nlvr2_template) for d in valid}
    per_template = _per_template(
        valid, nlvr2_template, lambda d: float(predictions[d["identifier"]] == d["label"])
    )
    shares = answer_shares(train, nlvr2_template, lambda d: d["label"])
    return BaselineReport("nlvr2", shares, per_template, nlvr2_scores(predictions, valid))


def world_baselines(world: str | Path) -> list[BaselineReport]:
    """Baselines of a world directory: GQA train→valid, VQA train+nominival→minival, NLVR2 train→valid."""
    world = Path(world)
    reports = [
        gqa_baseline(load_gqa(world / "gqa/train.json"), load_gqa(world / "gqa/valid.json")),
        vqa_baseline(
            load_vqa(world / "vqa/train.json") + load_vqa(world / "vqa/nominival.json"),
            load_vqa(world / "vqa/minival.json"),
        ),
    ]
    nlvr2_valid = load_nlvr2(world / "nlvr2/valid.json")
    if nlvr2_valid:
        reports.append(nlvr2_baseline(load_nlvr2(world / "nlvr2/train.json"), nlvr2_valid))
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
        WorldBaselinesConfig, argv, prog="python -m training.world.baselines", doc=__doc__, title="world"
    )
    for report in world_baselines(args.world):
        print(format_report(report))
        print()


if __name__ == "__main__":
    main()
