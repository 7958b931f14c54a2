"""``python -m training.paper_tables`` at the tiny scale: the runs, the page, and resuming."""

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lxmert.data.task_files import write_json
from lxmert.fileio import read_json
from training.experiments import paper_tables
from training.experiments.paper_tables import (
    RUN_FILE,
    PaperTablesConfig,
    Unit,
    main,
    mean_std,
    only_command,
    run_all,
)
from training.world.generate import WorldConfig, build_world

ROOT = Path(__file__).resolve().parents[1]


def test_mean_std_prints_percent_with_the_sample_std():
    assert mean_std([0.5, 0.7]) == "60.0 ± 14.1"  # std = 0.2 / sqrt(2)
    assert mean_std([0.25]) == "25.0"
    assert mean_std([]) == "–"


def test_chance_counts_only_answered_training_questions(tmp_path, monkeypatch):
    """Chance is the most frequent answer of the training questions that have one: a VQA question whose label is
    empty (no annotator answer in the answer table) is no vote for "no answer"."""

    def vqa(qid, label):
        return {"question_id": qid, "img_id": "1", "sent": "is it?", "answer_type": "yes/no",
                "question_type": "is it", "label": label}  # fmt: skip

    def gqa(qid, answer):
        return {"question_id": qid, "img_id": "1", "sent": "?", "label": {answer: 1.0}}

    def nlvr2(ident, label):
        return {"identifier": ident, "img0": "a", "img1": "b", "sent": "s", "uid": ident, "label": label}

    # VQA train + nominival: three unanswered questions, two "yes" ones; minival: one "yes" question.
    write_json(tmp_path / "vqa/train.json", [vqa(1, {}), vqa(2, {}), vqa(3, {"yes": 1.0})])
    write_json(tmp_path / "vqa/nominival.json", [vqa(4, {}), vqa(5, {"yes": 1.0})])
    write_json(tmp_path / "vqa/minival.json", [vqa(6, {"yes": 1.0, "no": 0.3})])
    write_json(tmp_path / "gqa/train.json", [gqa("a", "red"), gqa("b", "red"), gqa("c", "blue")])
    write_json(tmp_path / "gqa/valid.json", [gqa("d", "red"), gqa("e", "blue")])
    write_json(tmp_path / "nlvr2/train.json", [nlvr2("train-0-0-0", 0), nlvr2("train-0-1-0", 0)])
    write_json(tmp_path / "nlvr2/valid.json", [nlvr2("dev-0-0-0", 0), nlvr2("dev-0-1-0", 1)])
    for scores in ("oracle_scores", "kind_scores"):  # need the world's annotations
        monkeypatch.setattr(paper_tables, scores, lambda world: ({}, 0))

    chance = paper_tables.baselines(tmp_path)["chance"]
    assert chance["vqa"]["accuracy"] == pytest.approx(1.0)  # "yes" for every question, not no answer
    assert chance["gqa"]["accuracy"] == pytest.approx(0.5)
    assert chance["nlvr2"] == {"accuracy": 0.5, "consistency": 0.0}


def row(page: str, label: str) -> list[str]:
    """The cells of the first line of a table that starts with ``label`` (the tables come before the curves)."""
    line = next(line for line in page.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.mark.slow
def test_table_3_at_tiny_scale_with_two_seeds_writes_the_page_and_resumes(tmp_path):
    runs_dir, out = tmp_path / "runs", tmp_path / "tables.md"
    argv = ["--table", "3", "--seeds", "2", "--scale", "tiny", "--runs", str(runs_dir), "--out", str(out),
            "--detector", str(ROOT / "assets/default/detector"), "--threads", "1"]  # fmt: skip
    first = main(argv)
    # Two seeds of: one pre-training, then VQA, GQA and NLVR2 from it and from scratch with 1 and 2 cross layers.
    assert len(first.ran) == 2 * (1 + 3 * 3)
    page = out.read_text()

    assert row(page, "Train + scratch (1 cross layer)")[-4:] == ["Train + scratch", "65.1", "50.0", "50.9"]
    assert row(page, "Pre-train + scratch")[-4:] == ["Pre-train + scratch", "69.9", "60.0", "74.9"]
    assert row(page, "2 cross layers, from scratch")[-4:] == ["BERT + 2 CrossAtt", "65.8", "56.1", "50.9"]
    assert "## Table 4" not in page  # not run

    # The cells are the mean ± sample std, in percent, of the scores the two seeds' runs recorded.
    finetune = runs_dir / "tiny" / "finetune"
    for start, label in (("full", "Pre-train + scratch"), ("scratch-x2", "2 cross layers, from scratch")):
        cells = row(page, label)
        assert cells[1] == "2"
        for column, (task, metric) in enumerate(
            [("vqa", "accuracy"), ("gqa", "accuracy"), ("nlvr2", "accuracy"), ("nlvr2", "consistency")],
            start=2,
        ):
            a, b = (
                read_json(finetune / f"{start}-{task}-seed{s}" / "summary.json")["valid"][metric]
                for s in (0, 1)
            )
            mean, std = 50 * (a + b), 100 * abs(a - b) / math.sqrt(2)
            assert cells[column] == f"{mean:.1f} ± {std:.1f}", (label, task, metric)

    # Pre-training against scratch: the difference of the seeds' means and its Welch standard error, in points.
    scores = {
        start: [read_json(finetune / f"{start}-vqa-seed{s}" / "summary.json")["valid"]["accuracy"] for s in (0, 1)]
        for start in ("full", "scratch-x1")
    }  # fmt: skip
    diff = 100 * (sum(scores["full"]) - sum(scores["scratch-x1"])) / 2
    se = 100 * math.sqrt(
        sum((a - b) ** 2 / 2 / 2 for a, b in scores.values())
    )  # variance of two = (a - b)² / 2
    effect = row(page, "Pre-train + scratch − Train + scratch (1 cross layer)")
    assert effect[1].startswith(f"{diff:+.1f} ± {se:.1f}") and effect[4:] == ["+4.8", "+10.0", "+24.0"]
    assert row(page, "2 cross layers, from scratch − Train + scratch (1 cross layer)")[4:] == [
        "+1.2",
        "+0.6",
        "-1.5",
    ]
    assert "### NLVR2 fine-tuning, validation accuracy after each epoch" in page

    assert "python -m training.pretrain " in page and "python -m training.finetune nlvr2 " in page
    assert re.search(
        r"oracle: .* \| 100\.0 \| 100\.0 \|", page
    )  # the world's statements follow from their text

    # A second call reuses every run; a run without its record is the only one made again.
    summary = finetune / "full-gqa-seed1" / "summary.json"
    written = summary.stat().st_mtime_ns
    assert main(argv).ran == []
    assert summary.stat().st_mtime_ns == written and out.read_text() == page
    (finetune / "full-vqa-seed0" / RUN_FILE).unlink()
    again = main(argv).ran
    assert len(again) == 1 and "full-vqa-seed0" in again[0]


@pytest.mark.slow
def test_jobs_make_the_same_runs_in_their_own_processes(tmp_path):
    """Runs made two at a time in child processes score exactly what the same runs score made one by one here."""
    common = ["--table", "4", "--seeds", "1", "--scale", "tiny", "--detector", str(ROOT / "assets/default/detector"),
              "--threads", "1"]  # fmt: skip
    alone = main([*common, "--runs", str(tmp_path / "alone"), "--out", str(tmp_path / "alone.md")])
    for made in ("world", "features"):  # the same inputs: extraction's sums depend on its thread count
        shutil.copytree(tmp_path / "alone/tiny" / made, tmp_path / "jobs/tiny" / made)
    jobs = main(
        [*common, "--runs", str(tmp_path / "jobs"), "--out", str(tmp_path / "jobs.md"), "--jobs", "2"]
    )

    assert (
        len(jobs.ran) == len(alone.ran) == 3 * (1 + 3)
    )  # three pre-trainings, each fine-tuned on three tasks
    for summary in (tmp_path / "alone/tiny").glob("*/*/summary.json"):
        twin = tmp_path / "jobs" / summary.relative_to(tmp_path / "alone")
        assert read_json(twin)["valid"] == read_json(summary)["valid"], summary.parent.name
        assert (twin.parent / "run.log").stat().st_size > 0  # the child's output, kept beside its run
    assert "## Table 4" in (tmp_path / "jobs.md").read_text()


def test_a_failed_run_is_named_and_what_needs_it_never_starts(tmp_path):
    broken = Unit("finetune", ("nlvr2", "--no-such-flag"), tmp_path / "broken")
    after = Unit(
        "finetune", ("nlvr2", "--output", str(tmp_path / "after")), tmp_path / "after", needs=broken.output
    )
    with pytest.raises(RuntimeError, match="--no-such-flag failed .*broken/run.log"):
        run_all([broken, after], jobs=2, threads=1)
    assert "unrecognized arguments: --no-such-flag" in (tmp_path / "broken/run.log").read_text()
    assert not (tmp_path / "after").exists()


def test_a_second_command_on_the_same_runs_is_refused(tmp_path):
    with only_command(tmp_path / "tiny"):
        with pytest.raises(RuntimeError, match="another python -m training.paper_tables is running"):
            main(
                ["--table", "3", "--scale", "tiny", "--runs", str(tmp_path), "--out", str(tmp_path / "t.md")]
            )
    assert not (tmp_path / "t.md").exists()


def test_tables_are_named_by_number():
    assert PaperTablesConfig(table="5,3,5").tables() == [3, 5]
    with pytest.raises(ValueError, match="no table '6'"):
        PaperTablesConfig(table="3,6")


@pytest.mark.slow  # two torchrun processes make ten runs
def test_under_torchrun_every_run_of_a_table_is_made_in_one_process_group(tmp_path):
    """Each rank makes the runs one after another; a second process group after the first was destroyed could not
    connect, so the command holds one group for all of them."""
    scale = paper_tables.SCALES["tiny"]
    world = tmp_path / "runs/tiny/world"
    build_world(WorldConfig(out=str(world), **scale.world), progress=False)  # under torchrun, made first
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "training.paper_tables", "--table", "3", "--seeds", "1", "--scale", "tiny",
        "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "t.md"),
        "--detector", str(ROOT / "assets/default/detector"), "--threads", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(list((tmp_path / "runs/tiny").glob(f"*/*/{RUN_FILE}"))) == 1 + 3 * 3
    assert row((tmp_path / "t.md").read_text(), "Pre-train + scratch")[1] == "1"
