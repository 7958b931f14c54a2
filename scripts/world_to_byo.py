"""Write a synthetic world's VQA questions as a ``training.byo`` question table: a stand-in for an external set.

Each answered VQA question of the world's train, nominival and minival splits becomes a row ``image, question,
answer`` with its ten annotators' raw answers joined by ``|``, and no split, so ``training.byo`` splits the images
itself, as it would for a user's table. The images are the world's ``images/`` folder (``--images`` of byo).
docs/byo_dataset.md measures the defaults with it:

    python -m training.world --out runs/external --images 600 --seed 7 --nlvr2-fraction 0
    python scripts/world_to_byo.py runs/external runs/external/questions.csv
    python -m training.byo --images runs/external/images --questions runs/external/questions.csv --out runs/byo/ext
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from lxmert.config_cli import parse_config
from lxmert.data.task_files import load_vqa
from lxmert.fileio import atomic_write_text, read_json

SPLITS = ("train", "nominival", "minival")
SEPARATOR = "|"  # training.tasks.own_data's ANSWER_SEPARATOR


@dataclass
class WorldToByoConfig:
    world: str = field(metadata={"help": "world directory (python -m training.world)", "positional": True})
    out: str = field(metadata={"help": "the CSV question table to write", "positional": True})


def table_rows(world: Path) -> list[dict[str, str]]:
    """One row per answered question of the world's VQA train, nominival and minival splits, in file order."""
    rows = []
    for split in SPLITS:
        raw = {r["question_id"]: r["answers"] for r in read_json(world / "vqa" / f"{split}_raw_answers.json")}
        for item in load_vqa(world / "vqa" / f"{split}.json"):
            answers = [a.replace(SEPARATOR, " ") for a in raw.get(item["question_id"], [])]
            if answers:
                rows.append(
                    {
                        "image": f"{item['img_id']}.png",
                        "question": item["sent"],
                        "answer": SEPARATOR.join(answers),
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(
        WorldToByoConfig, argv, prog="python scripts/world_to_byo.py", doc=__doc__, title="world to byo table"
    )
    rows = table_rows(Path(cfg.world))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["image", "question", "answer"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(cfg.out), text.getvalue())
    print(f"{cfg.out}: {len(rows)} questions")


if __name__ == "__main__":
    main()
