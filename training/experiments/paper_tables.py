"""The paper's Tables 3, 4 and 5 on the synthetic world: pre-training variants, each fine-tuned on VQA, GQA and NLVR2.

    python -m training.paper_tables --table 3,4,5 --seeds 3 --scale small --jobs 2 --threads 1

One world and its detector features per scale (``RUNS/<scale>/world``, ``features``); for every seed, the table's
pre-training variants (``python -m training.pretrain``) and their fine-tuning on the three tasks (``python -m
training.finetune``), called in-process with the command lines the page prints. A run whose ``final/`` checkpoint,
``summary.json`` and ``paper_run.json`` (its command and measured CPU seconds) exist is not run again, so an
interrupted command resumes, and tables that share a variant (the full recipe is in all three) share its runs.
``--jobs N`` runs N of them at once, each in its own process with its output in ``run.log`` beside it: on a small
CPU, several one-thread runs of a small model use the cores better than one run over all of them. The
page (``--out``) is rewritten from every finished run of the scale after each table: mean ± sample std over seeds
of the final validation score (no checkpoint is picked on the split it is scored on), the paper's numbers beside,
chance, the question-only baselines and the NLVR2 oracle.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing
import os
import shlex
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from lxmert.answers import AnswerTable
from lxmert.checkpoints import METRICS_FILE
from lxmert.config_cli import parse_config
from lxmert.data.store import FeatureStores
from lxmert.fileio import atomic_write_text, read_json, read_json_lines
from lxmert.modeling import LxmertForPreTraining
from training.detection.extraction import ExtractConfig, extract
from training.engine import distributed
from training.engine.trainer import SUMMARY_FILE
from training.experiments.nlvr2_oracle import kind_scores, oracle_scores
from training.tasks import FINETUNE_TASKS as TASKS
from training.tasks import finetuning, get_task, pretraining_run
from training.tasks.answer_priors import chance_predictions
from training.tasks.pretraining import PretrainTask, read_pretrain_json
from training.world.generate import WorldConfig, build_world
from training.world.template_priors import world_baselines, world_splits

RUN_FILE = "paper_run.json"  # beside a finished run's summary.json: its command and CPU seconds
TASK_TITLES = {"vqa": "VQA", "gqa": "GQA", "nlvr2": "NLVR2"}


@dataclass(frozen=True)
class Scale:
    """A world and a schedule: how big every run of a table is."""

    world: dict[str, Any]  # WorldConfig fields
    pretrain: tuple[str, ...]  # python -m training.pretrain flags shared by every variant
    epochs: int  # pre-training epochs; the paper's QA-in-the-second-half starts at epochs // 2
    finetune: tuple[str, ...]  # python -m training.finetune flags shared by the three tasks
    finetune_epochs: dict[str, int]
    qa_loss: str  # VQA / GQA loss (ce or bce)
    cross_layers: tuple[int, ...]  # cross-modality layers of the from-scratch rows of Table 3
    x_layers: int  # the architecture's (the pre-trained rows')
    note: str  # what the scale's numbers can and cannot say, printed at the top of the page


SHALLOW = (
    "--preset",
    "tiny",
    "--l-layers",
    "1",
    "--r-layers",
    "0",
    "--initializer-range",
    "0.1",
    "--dropout",
    "0",
)
SCALES = {
    # A test's: seconds per run on one core.
    "tiny": Scale(
        world=dict(
            images=64, nlvr2_fraction=0.5, pairs_per_statement=2, nlvr2_valid_fraction=0.25,
            nlvr2_test_fraction=0.1, scene_kinds=5, min_vqa_answer_count=1, workers=1,
        ),
        pretrain=(*SHALLOW, "--batch-size", "32", "--lr", "1e-3", "--save-every", "0"),
        epochs=2,
        finetune=("--batch-size", "8", "--lr", "1e-3", "--save-every", "0"),
        finetune_epochs={"vqa": 1, "gqa": 1, "nlvr2": 1},
        qa_loss="ce",
        cross_layers=(1, 2),
        x_layers=1,
        note="A smoke test of the command (64 images, 10 NLVR2 training pairs, 2 pre-training epochs, 1 "
        "fine-tuning epoch): its numbers say nothing about the paper's claims.",
    ),
    # The embedded default's recipe (scripts/build_default.sh) at half its pre-training epochs, on a world with
    # 3000 main images and 167 NLVR2 sets of 12 images with 30 sentences each (docs/nlvr2.md); not run in full.
    "small": Scale(
        world=dict(images=5000, nlvr2_fraction=0.4, scene_kinds=5, nlvr2_sentences=30),
        pretrain=(*SHALLOW, "--batch-size", "64", "--lr", "1e-3"),
        epochs=10,
        finetune=("--batch-size", "32", "--lr", "1e-3"),
        finetune_epochs={"vqa": 4, "gqa": 4, "nlvr2": 6},
        qa_loss="ce",
        cross_layers=(1, 2),
        x_layers=1,
        note="The embedded default's recipe at half its pre-training epochs (10, QA from the 5th), on 3000 main "
        "images and 15,960 NLVR2 training statements over 2004 images (30 per set of 12). VQA and GQA are "
        "fine-tuned for the paper's 4 epochs, NLVR2 for 6: from this pre-training NLVR2 leaves chance only in its "
        "3rd or 4th fine-tuning epoch (docs/nlvr2.md).",
    ),
    # The paper's model and recipe (base preset: 9/5/5 layers, batch 256, lr 1e-4, 20 epochs; fine-tuning batch
    # 32, 4 epochs, lr 5e-5) on a larger world; for GPUs (under torchrun, with the world and features made first).
    "full": Scale(
        world=dict(images=40000, nlvr2_fraction=0.25, scene_kinds=5),
        pretrain=("--preset", "base", "--batch-size", "256", "--lr", "1e-4"),
        epochs=20,
        finetune=("--batch-size", "32", "--lr", "5e-5"),
        finetune_epochs={"vqa": 4, "gqa": 4, "nlvr2": 4},
        qa_loss="bce",
        cross_layers=(1, 2, 3, 4, 5),
        x_layers=5,
        note="The paper's model size and recipe on a 40,000-image world, for GPUs.",
    ),
}  # fmt: skip


def pretraining_flags(scale: Scale) -> dict[str, tuple[str, ...]]:
    """Pre-training variant → its flags beyond the scale's. ``full`` is the paper's recipe, in every table."""
    half = str(scale.epochs // 2)
    return {
        "full": ("--qa-from-epoch", half),
        "no-qa": ("--no-task-qa",),
        "qa-all": ("--qa-from-epoch", "0"),
        "vision-none": ("--qa-from-epoch", half, "--no-task-obj-predict"),
        "vision-feat": ("--qa-from-epoch", half, "--visual-losses", "feat"),
        "vision-label": ("--qa-from-epoch", half, "--visual-losses", "obj,attr"),
    }


@dataclass(frozen=True)
class Row:
    """One line of a table: how the fine-tuned model starts, and the paper's row it stands beside."""

    label: str
    start: str  # a pre-training variant, or "scratch-x<k>" (fine-tuned from random weights, k cross layers)
    paper_row: str
    paper: tuple[float | None, float | None, float | None]  # VQA, GQA, NLVR2 dev accuracy (%)


PAPER_FULL = ("P10+QA10, Feat+Label (the full recipe)", (69.9, 60.0, 74.9))
# The paper's rows "BERT + k CrossAtt": not pre-trained, language layers from BERT (ours: from random weights).
PAPER_CROSS = {
    1: (64.6, 55.5, 52.4),
    2: (65.8, 56.1, 50.9),
    3: (66.4, 56.6, 50.9),
    4: (66.4, 56.0, 50.9),
    5: (66.5, 56.3, 50.9),
}


def table_rows(table: int, scale: Scale) -> list[Row]:
    if table == 3:
        rows = []
        for k in scale.cross_layers:
            layers = f"{k} cross layer{'s' if k > 1 else ''}"
            if k == scale.x_layers:
                rows.append(
                    Row(f"Train + scratch ({layers})", f"scratch-x{k}", "Train + scratch", (65.1, 50.0, 50.9))
                )
            else:
                rows.append(
                    Row(f"{layers}, from scratch", f"scratch-x{k}", f"BERT + {k} CrossAtt", PAPER_CROSS[k])
                )
        return [*rows, Row("Pre-train + scratch", "full", "Pre-train + scratch", PAPER_FULL[1])]
    if table == 4:
        return [
            Row("No QA in pre-training", "no-qa", "P20 + FT", (68.9, 58.2, 72.4)),
            Row("QA in every epoch", "qa-all", "(not in the paper)", (None, None, None)),
            Row("QA in the second half", "full", "P10+QA10 + FT", PAPER_FULL[1]),
        ]
    if table == 5:
        return [
            Row("No vision tasks", "vision-none", "No Vision Tasks", (66.3, 57.1, 50.9)),
            Row("Feature regression", "vision-feat", "Feat", (69.2, 59.5, 72.9)),
            Row("Label classification", "vision-label", "Label", (69.5, 59.3, 73.5)),
            Row("Both", "full", "Feat + Label", PAPER_FULL[1]),
        ]
    raise ValueError(f"no table {table}: choose 3, 4 or 5")


TABLE_TITLES = {
    3: "Table 3: pre-training against training from scratch, and cross-modality layers from scratch",
    4: "Table 4: the image-QA pre-training task",
    5: "Table 5: the vision pre-training tasks",
}


@dataclass
class PaperTablesConfig:
    table: str = field(metadata={"help": "which of the paper's tables: 3, 4, 5, or several (3,4,5)"})
    seeds: int = field(default=3, metadata={"help": "seeds per variant (seed 0, 1, ...)"})
    scale: str = field(default="small", metadata={"help": "world and schedule", "choices": sorted(SCALES)})
    runs: str = field(default="runs/paper_tables", metadata={"help": "where worlds, features and runs go"})
    out: str = field(
        default="docs/paper_tables.md", metadata={"help": "the page written from the finished runs"}
    )
    detector: str = field(default="assets/default/detector", metadata={"help": "detector of the features"})
    threads: int = field(default=0, metadata={"help": "CPU threads per run (0: PyTorch's default)"})
    jobs: int = field(
        default=1, metadata={"help": "runs at once, each in its own process (1: in this process)"}
    )

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")
        if self.jobs > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError(
                "--jobs runs one-process runs side by side; under torchrun every run is distributed"
            )
        self.tables()  # names a bad table now, not after the world is built

    def tables(self) -> list[int]:
        numbers = []
        for part in str(self.table).split(","):
            if not part.strip().isdigit() or int(part) not in TABLE_TITLES:
                raise ValueError(f"no table {part.strip()!r}: choose among 3, 4 and 5 (e.g. --table 3,4,5)")
            numbers.append(int(part))
        return sorted(set(numbers))


@dataclass
class RunRecord:
    """A finished run: its command, measured CPU seconds, and what its summary.json says."""

    command: str
    cpu_seconds: float
    summary: dict[str, Any]


@dataclass(frozen=True)
class Unit:
    """One pre-training or fine-tuning run: its command line, where it writes, and the run it starts from."""

    module: str  # "pretrain" or "finetune"
    argv: tuple[str, ...]
    output: Path
    needs: Path | None = None  # a pre-training's output that must finish first

    @property
    def command(self) -> str:
        return f"python -m training.{self.module} " + shlex.join(self.argv)


def run_unit(unit: Unit, threads: int = 0, log: bool = False) -> None:
    """Run ``unit`` in this process and record its command and CPU seconds beside its summary.

    ``log`` sends this process's output to ``run.log`` in the run's directory (a run in a pool's process).
    """
    if threads:
        torch.set_num_threads(threads)
    if log:
        unit.output.mkdir(parents=True, exist_ok=True)
        with open(unit.output / "run.log", "a") as stream:
            for fd in (1, 2):
                os.dup2(stream.fileno(), fd)
    start = time.process_time()
    if unit.module == "pretrain":
        pretraining_run.main(list(unit.argv))
    else:
        finetuning.finetune(*finetuning.parse_args(list(unit.argv)))
    payload = {"command": unit.command, "cpu_seconds": time.process_time() - start}
    atomic_write_text(unit.output / RUN_FILE, json.dumps(payload, indent=2) + "\n")


def run_all(
    units: Sequence[Unit], jobs: int, threads: int, finished: Callable[[Unit], None] = lambda unit: None
) -> None:
    """Run ``units`` (each after the one it needs), the first ready one first, ``jobs`` at a time, calling
    ``finished`` after each.

    A failed run stops new ones from starting; those running finish (a run stopped half-way would resume anyway),
    then the failure is raised with the run's log named.
    """
    if jobs == 1:
        for unit in units:
            run_unit(unit, threads)
            finished(unit)
        return
    waiting, running, done = list(units), {}, set()
    failure: tuple[Unit, BaseException] | None = None
    # spawn: a fresh interpreter per run (max_tasks_per_child), no state carried from the parent or an earlier run
    with ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
    ) as pool:
        while waiting or running:
            while failure is None and len(running) < jobs:
                ready = next((u for u in waiting if u.needs is None or u.needs in done), None)
                if ready is None:
                    break
                waiting.remove(ready)
                running[pool.submit(run_unit, ready, threads, True)] = ready
            if not running:
                break
            completed, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in completed:
                unit = running.pop(future)
                if future.exception() is not None:
                    failure = failure or (unit, future.exception())
                else:
                    done.add(unit.output)
                    print(f"finished {unit.output} ({len(done)} of {len(units)} runs)", flush=True)
                    finished(unit)
    if failure is not None:
        unit, error = failure
        raise RuntimeError(
            f"{unit.command} failed ({error}); its output: {unit.output / 'run.log'}"
        ) from error


@contextlib.contextmanager
def only_command(root: Path) -> Iterator[None]:
    """Refuse a second command on the same runs while one is running: two would make the same run twice."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another python -m training.paper_tables is running on {root}") from None
        yield


class Runs:
    """The runs of one scale under ``RUNS/<scale>``: run each once, and read back what finished runs recorded."""

    def __init__(self, config: PaperTablesConfig):
        self.config = config
        self.scale = SCALES[config.scale]
        self.root = Path(config.runs, config.scale)
        self.world = self.root / "world"
        self.features = self.root / "features"
        self.ran: list[str] = []  # commands run by this process (not skipped)

    # -- one run, once ---------------------------------------------------------------------------------------------

    @staticmethod
    def record(output: Path) -> RunRecord | None:
        """The record of a finished run in ``output``, None when it has not finished."""
        files = (output / "final" / "config.json", output / SUMMARY_FILE, output / RUN_FILE)
        if not all(f.is_file() for f in files):
            return None
        run = read_json(output / RUN_FILE)
        return RunRecord(run["command"], run["cpu_seconds"], read_json(output / SUMMARY_FILE))

    def _threads(self) -> list[str]:
        return ["--threads", str(self.config.threads)] if self.config.threads else []

    # -- the steps -------------------------------------------------------------------------------------------------

    def world_command(self) -> str:
        flags = [f"--{k.replace('_', '-')} {v}" for k, v in self.scale.world.items() if k != "workers"]
        return f"python -m training.world --out {self.world} {' '.join(flags)}"

    def extract_command(self) -> str:
        return f"python -m training.extract --images {self.world} --out {self.features} --detector {self.config.detector}"

    def prepare(self) -> None:
        """The scale's world and its region features (each skipped when complete)."""
        if not (self.world / "world.json").is_file():
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise RuntimeError(
                    f"no world at {self.world}: under torchrun, make it first with one process: {self.world_command()}"
                )
            build_world(WorldConfig(out=str(self.world), **self.scale.world), progress=False)
        threads = self.config.threads * self.config.jobs or 2
        summary = extract(
            ExtractConfig(images=str(self.world), out=str(self.features), detector=self.config.detector,
                          num_threads=threads)
        )  # fmt: skip
        if not summary.finalized:
            raise RuntimeError(f"feature extraction into {self.features} left {summary.remaining} images")

    def pretrain_unit(self, variant: str, seed: int) -> Unit:
        output = self.root / "pretrain" / f"{variant}-seed{seed}"
        argv = [
            "--world", str(self.world), "--features", str(self.features), *self.scale.pretrain,
            "--x-layers", str(self.scale.x_layers), "--epochs", str(self.scale.epochs),
            *pretraining_flags(self.scale)[variant], "--seed", str(seed), "--output", str(output), *self._threads(),
        ]  # fmt: skip
        return Unit("pretrain", tuple(argv), output)

    def architecture(self, x_layers: int) -> Path:
        """An untrained checkpoint of the scale's architecture with ``x_layers``: what from-scratch rows start from.

        Only its configuration, vocabulary and answer table are used (``--from-scratch``); they are those of a
        pre-training run of the world, whose WordPiece vocabulary is the same in every process.
        """
        output = self.root / "architecture" / f"x{x_layers}"
        made = (output / "config.json").is_file()
        distributed.barrier()  # under torchrun: every rank has looked before the first one writes
        if made:
            return output
        argv = [
            "--world", str(self.world), "--features", str(self.features), *self.scale.pretrain,
            "--x-layers", str(x_layers), "--output", str(output),
        ]  # fmt: skip
        config, _ = pretraining_run.parse_args(argv)
        train_data = read_pretrain_json(config.train_paths(), config.max_images)
        tokenizer = pretraining_run.load_tokenizer(config, output, train_data)
        answers = AnswerTable.from_all_ans(config.answers_path())
        features = FeatureStores(config.feature_paths())
        model = LxmertForPreTraining(
            pretraining_run.model_config(config, tokenizer, answers, features.feature_dim)
        )
        task = PretrainTask(tokenizer, answers, config)
        if distributed.is_main():
            model.save_pretrained(output, **task.save_pretrained_kwargs())
        distributed.barrier()
        return output

    def finetune_unit(self, task: str, start: str, seed: int) -> Unit:
        """Fine-tuning on ``task`` from ``start``: a pre-training variant's final model, or from scratch."""
        output = self.root / "finetune" / f"{start}-{task}-seed{seed}"
        if start.startswith("scratch-x"):
            init, needs = self.architecture(int(start.removeprefix("scratch-x"))), None
        else:
            needs = self.pretrain_unit(start, seed).output
            init = needs / "final"
        splits = ["--train", "train", "--valid", "valid"] if task == "gqa" else []
        loss = ["--loss", self.scale.qa_loss] if task != "nlvr2" else []
        # The QA head is carried over from pre-training (--loadLXMERTQA); without the QA task there is none, and
        # the head starts at random, as in the paper's P20 + FT.
        qa_off = "--no-task-qa" in pretraining_flags(self.scale).get(start, ())
        head = ["--head", "fresh"] if qa_off and task != "nlvr2" else []
        argv = [
            task, "--init", str(init), *(["--from-scratch"] if needs is None else []),
            "--data", str(self.world / task), "--features", str(self.features), *splits, *loss, *head,
            *self.scale.finetune, "--epochs", str(self.scale.finetune_epochs[task]), "--seed", str(seed),
            "--output", str(output), *self._threads(),
        ]  # fmt: skip
        return Unit("finetune", tuple(argv), output, needs)

    def plan(self, tables: Sequence[int]) -> list[Unit]:
        """The tables' unfinished runs, in the order they are best started: table by table and seed by seed, a
        seed's pre-trainings before its fine-tuning runs, so that a table fills up before the next one starts."""
        units: dict[Path, Unit] = {}
        for table in tables:
            for seed in range(self.config.seeds):
                rows = table_rows(table, self.scale)
                pretrainings = [
                    self.pretrain_unit(r.start, seed) for r in rows if not r.start.startswith("scratch")
                ]
                finetunings = [self.finetune_unit(task, r.start, seed) for r in rows for task in TASKS]
                for unit in pretrainings + finetunings:
                    if unit.output not in units and self.record(unit.output) is None:
                        units[unit.output] = unit
        # a finished pre-training is nothing to wait for
        return [replace(u, needs=u.needs if u.needs in units else None) for u in units.values()]

    def run_tables(self, tables: Sequence[int]) -> None:
        """Every unfinished run of ``tables``, the page rewritten from the finished runs after each."""
        self.prepare()
        units = self.plan(tables)
        run_all(units, self.config.jobs, self.config.threads, lambda unit: self.write_page())
        self.ran = [u.command for u in units]

    @cached_property
    def baselines(self) -> dict[str, dict[str, float]]:
        return baselines(self.world)

    def write_page(self) -> None:
        """The page (``--out``) from every finished run of the scale: the tables all of whose rows have one."""
        if distributed.is_main():
            atomic_write_text(Path(self.config.out), render(self, tables_with_runs(self)))

    # -- what finished runs say ------------------------------------------------------------------------------------

    def finished(self, start: str, task: str) -> list[RunRecord]:
        """Finished fine-tuning runs of a start point on a task, in seed order."""
        found = []
        for output in sorted((self.root / "finetune").glob(f"{start}-{task}-seed*")):
            record = self.record(output)
            if record is not None:
                found.append(record)
        return found

    def pretrain_records(self, start: str) -> list[RunRecord]:
        return [r for o in sorted((self.root / "pretrain").glob(f"{start}-seed*")) if (r := self.record(o))]


def mean_std(values: Sequence[float]) -> str:
    """Percent, one decimal, as the paper prints: "69.9 ± 0.4" (sample std over seeds), "69.9" for one value."""
    if not values:
        return "–"
    mean = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def _paper(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def baselines(world: Path) -> dict[str, dict[str, float]]:
    """Chance (the most frequent training answer for every item), question-only and oracle scores on valid."""
    reports = {r.task: r.scores for r in world_baselines(world)}
    chance = {}
    for task in TASKS:
        train, valid = world_splits(world, task)
        chance[task] = get_task(task).score(chance_predictions(task, train, valid), valid)
    return {
        "chance": chance,
        "question-only": reports,
        "oracle": {"nlvr2": oracle_scores(world)[0]},
        "kinds": {"nlvr2": kind_scores(world)[0]},
    }


def render(runs: Runs, tables: Sequence[int]) -> str:
    """The page: every table with finished runs, the baselines, the commands and the CPU time."""
    config, scale = runs.config, runs.scale
    lines = [
        "# The paper's Tables 3, 4 and 5 on the synthetic world",
        "",
        f"Written by `python -m training.paper_tables` from the finished runs of scale `{config.scale}` under "
        f"`{runs.root}`. Ours: validation score after the last fine-tuning epoch (VQA minival soft score, GQA "
        "valid accuracy, NLVR2 valid accuracy and consistency), in percent, mean ± sample standard deviation over "
        "the seeds (n = seeds finished). Paper: its dev-set numbers (Tables 3–5), for the trend, not the level: "
        "the world, the model size and the schedule are not the paper's.",
        "",
        f"Scale `{config.scale}`: {scale.note}",
        "",
        "NLVR2 as the authors' `nlvr2_model.py` has it: the statement is encoded with each image separately, the "
        "two pooled outputs are concatenated and classified by Linear(2h, 2h)-GeLU-LayerNorm-Linear(2h, 2) "
        "(`LxmertForNLVR2`; `tests/test_checkpoints_parity.py` checks it against an independent rebuild of theirs). "
        "The world's statements compare the two images (a shape or colour that both, exactly one or neither "
        "contain; which has more; the same number), and every statement has as many true as false image pairs. "
        "The NLVR2 images come from the same kinds of scene as the pre-training images, and each set of images "
        "may carry several sentences (`--nlvr2-sentences`); why both matter: [docs/nlvr2.md](nlvr2.md).",
        "",
    ]
    for table in tables:
        rows = table_rows(table, scale)
        lines += [
            f"## {TABLE_TITLES[table]}",
            "",
            "| ours | n | VQA | GQA | NLVR2 | NLVR2 consistency | paper's row | paper VQA | paper GQA | paper NLVR2 |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        cpu = 0.0
        for row in rows:
            cells, counts = [], []
            for task in TASKS:
                records = runs.finished(row.start, task)
                counts.append(len(records))
                cpu += sum(r.cpu_seconds for r in records)
                cells.append(mean_std([r.summary["valid"]["accuracy"] for r in records]))
            consistency = [r.summary["valid"]["consistency"] for r in runs.finished(row.start, "nlvr2")]
            cells.append(mean_std(consistency))
            n = "/".join(str(c) for c in counts) if len(set(counts)) > 1 else str(counts[0])
            paper = " | ".join(_paper(v) for v in row.paper)
            lines.append(f"| {row.label} | {n} | {' | '.join(cells)} | {row.paper_row} | {paper} |")
            if not row.start.startswith("scratch"):
                cpu += sum(r.cpu_seconds for r in runs.pretrain_records(row.start))
        lines += ["", f"CPU time of this table's runs (process time, shared runs counted in each table): "
                  f"{cpu / 3600:.2f} h ({cpu / 60:.1f} min).", ""]  # fmt: skip
    scores = runs.baselines
    lines += [
        "## Baselines (validation splits of the same world)",
        "",
        "| | VQA | GQA | NLVR2 | NLVR2 consistency | paper |",
        "|---|---|---|---|---|---|",
        "| chance: the most frequent training answer | "
        + " | ".join(mean_std([scores["chance"][t]["accuracy"]]) for t in TASKS)
        + f" | {mean_std([scores['chance']['nlvr2'].get('consistency', 0.0)])} | – |",
        "| question only: the most frequent answer of the question's template | "
        + " | ".join(mean_std([scores["question-only"][t]["accuracy"]]) for t in TASKS)
        + f" | {mean_std([scores['question-only']['nlvr2']['consistency']])} | language only 44.3 / 41.1 / 51.1 |",
        "| oracle: the statement, parsed from its text, checked on the ground-truth objects | – | – | "
        + f"{mean_std([scores['oracle']['nlvr2']['accuracy']])} | {mean_std([scores['oracle']['nlvr2']['consistency']])}"
        + " | human 96.3 (NLVR2) |",
        "| scene kind only: the training majority for the sentence about two images of the same kinds | – | – | "
        + f"{mean_std([scores['kinds']['nlvr2']['accuracy']])} | {mean_std([scores['kinds']['nlvr2']['consistency']])}"
        + " | – |",
        "",
        "The scene-kind baseline reads no object: each image's kind (of the world's kinds of scene, which favour two "
        "shapes and two colours) and the sentence. A model at or below it may have learned to tell the kinds of "
        "scene apart rather than to find the objects a statement names (docs/nlvr2.md).",
        "",
        *effects(runs, tables),
        *curves(runs, tables),
        "## Commands",
        "",
        "```bash",
        runs.world_command(),
        runs.extract_command(),
    ]
    defaults = PaperTablesConfig(table=3)
    where = "".join(
        f" --{name} {getattr(config, name)}"
        for name in ("runs", "out", "detector")
        if getattr(config, name) != getattr(defaults, name)
    )
    where += "".join(
        f" --{name} {getattr(config, name)}" for name in ("jobs", "threads") if getattr(config, name)
    )
    numbers = ",".join(map(str, tables))
    lines.append(
        f"python -m training.paper_tables --table {numbers} --seeds {config.seeds} --scale {config.scale}{where}"
    )
    commands = []
    for table in tables:
        for row in table_rows(table, scale):
            for task in TASKS:
                for output in sorted((runs.root / "finetune").glob(f"{row.start}-{task}-seed*")):
                    record = runs.record(output)
                    if record is not None:
                        commands.append(record.command)
            commands += [r.command for r in runs.pretrain_records(row.start)]
    lines += ["```", "", "Each run, as the command ran it (in-process, or in a process of its own with --jobs):", "",
              "```bash"]  # fmt: skip
    lines += sorted(set(commands))
    starts = {row.start for table in tables for row in table_rows(table, scale)}
    cpu_total = sum(r.cpu_seconds for start in starts for task in TASKS for r in runs.finished(start, task))
    cpu_total += sum(r.cpu_seconds for start in starts for r in runs.pretrain_records(start))
    lines += [
        "```",
        "",
        f"CPU time of all runs on this page, each counted once: {cpu_total / 3600:.2f} h ({cpu_total / 60:.1f} min, "
        "process time).",
        "",
    ]
    return "\n".join(lines)


# The comparisons each table makes: (row compared, row it is compared with), by start point.
COMPARISONS = {
    3: [("full", "scratch-x{x}"), ("scratch-x2", "scratch-x1")],
    4: [("full", "no-qa"), ("qa-all", "no-qa"), ("full", "qa-all")],
    5: [("vision-feat", "vision-none"), ("vision-label", "vision-none"), ("full", "vision-none")],
}


def _difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float] | None:
    """Difference of the means in points and its standard error (Welch), None without two seeds of each."""
    if len(a) < 2 or len(b) < 2:
        return None
    se = (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5
    return 100 * (statistics.fmean(a) - statistics.fmean(b)), 100 * se


def effects(runs: Runs, tables: Sequence[int]) -> list[str]:
    """Each table's comparisons: our difference of means ± its standard error beside the paper's difference.

    "clear" where the difference is more than twice its standard error, "within the noise" elsewhere; a clear one
    goes "as the paper" or "against the paper" where the paper's difference is at least a point.
    """
    scale = runs.scale
    lines = [
        "## The effects",
        "",
        "Difference of the means in points ± its standard error (Welch, over the seeds): *clear* where it exceeds "
        "twice that error, else *within the noise*; the paper's difference beside, and whether a clear one of ours "
        "goes its way (where the paper's moves by a point or more).",
        "",
        "| comparison | VQA | GQA | NLVR2 | paper VQA | paper GQA | paper NLVR2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for table in tables:
        rows = {row.start: row for row in table_rows(table, scale)}
        for a, b in COMPARISONS[table]:
            a, b = a.format(x=scale.x_layers), b.format(x=scale.x_layers)
            if a not in rows or b not in rows:
                continue
            ours, papers = [], []
            for column, task in enumerate(TASKS):
                scores = [[r.summary["valid"]["accuracy"] for r in runs.finished(s, task)] for s in (a, b)]
                pa, pb = rows[a].paper[column], rows[b].paper[column]
                if a.startswith("scratch-x") and b.startswith(
                    "scratch-x"
                ):  # the paper's BERT + k CrossAtt rows
                    pa, pb = (PAPER_CROSS[int(s.removeprefix("scratch-x"))][column] for s in (a, b))
                paper = None if pa is None or pb is None else pa - pb
                papers.append("–" if paper is None else f"{paper:+.1f}")
                found = _difference(*scores)
                if found is None:
                    ours.append("–")
                    continue
                diff, se = found
                if abs(diff) <= 2 * se:
                    note = "within the noise"
                elif paper is None or abs(paper) < 1:
                    note = "clear"
                else:
                    note = "clear, as the paper" if diff * paper > 0 else "clear, against the paper"
                ours.append(f"{diff:+.1f} ± {se:.1f} ({note})")
            lines.append(f"| {rows[a].label} − {rows[b].label} | {' | '.join(ours)} | {' | '.join(papers)} |")
    return [*lines, ""]


def _epoch_scores(output: Path, key: str) -> dict[int, float]:
    """Epoch → a validation metric after it, from a run's metrics.jsonl."""
    return {
        round(r["epoch"]): r[key]
        for r in read_json_lines(output / METRICS_FILE)
        if r.get("split") == "valid" and r.get("scope") == "eval" and key in r
    }


def _curve_row(label: str, outputs: Sequence[Path], key: str, epochs: int) -> str:
    per_run = [_epoch_scores(o, key) for o in outputs]
    cells = [mean_std([run[e] for run in per_run if e in run]) for e in range(1, epochs + 1)]
    return f"| {label} | {len(outputs)} | {' | '.join(cells)} |"


def curves(runs: Runs, tables: Sequence[int]) -> list[str]:
    """Validation scores epoch by epoch (mean ± std over the finished runs): when each effect appears."""
    scale, root = runs.scale, runs.root
    starts: dict[str, str] = {}
    for table in tables:
        for row in table_rows(table, scale):
            starts.setdefault(row.start, row.label)
    lines = []
    for task in TASKS:
        epochs = scale.finetune_epochs[task]
        lines += [
            f"### {TASK_TITLES[task]} fine-tuning, validation accuracy after each epoch",
            "",
            f"| start | n | {' | '.join(str(e) for e in range(1, epochs + 1))} |",
            "|---|---|" + "---|" * epochs,
        ]
        for start, label in starts.items():
            outputs = [root / "finetune" / f"{start}-{task}-seed{s}" for s in range(runs.config.seeds)]
            outputs = [o for o in outputs if runs.record(o)]
            if outputs:
                lines.append(_curve_row(label, outputs, "accuracy", epochs))
        lines.append("")
    variants = [start for start in starts if not start.startswith("scratch")]
    lines += [
        "### Pre-training, validation cross-modality matching accuracy after each epoch (chance 50)",
        "",
        f"| variant | n | {' | '.join(str(e) for e in range(1, scale.epochs + 1))} |",
        "|---|---|" + "---|" * scale.epochs,
    ]
    for start in variants:
        outputs = [o for o in sorted((root / "pretrain").glob(f"{start}-seed*")) if runs.record(o)]
        if outputs:
            lines.append(_curve_row(f"{start} ({starts[start]})", outputs, "matched_acc", scale.epochs))
    return ["## Epoch by epoch", "", *lines, ""]


def tables_with_runs(runs: Runs) -> list[int]:
    """The tables every row of which has a finished run (the full recipe's rows alone do not make a table)."""
    return [
        t
        for t in (3, 4, 5)
        if all(any(runs.finished(r.start, task) for task in TASKS) for r in table_rows(t, runs.scale))
    ]


def main(argv: list[str] | None = None) -> Runs:
    config = parse_config(
        PaperTablesConfig, argv, prog="python -m training.paper_tables", doc=__doc__, title="tables"
    )
    if config.threads:
        torch.set_num_threads(config.threads)
    runs = Runs(config)
    # Under torchrun every rank runs the same command, in one process group for all its runs.
    distributed_run = int(os.environ.get("WORLD_SIZE", "1")) > 1
    with distributed.held_group() if distributed_run else only_command(runs.root):
        runs.run_tables(config.tables())
    runs.write_page()
    print(f"{len(runs.ran)} runs made, the rest reused; {config.out} written")
    return runs


__all__ = ["PaperTablesConfig", "Runs", "SCALES", "main", "mean_std", "render", "table_rows"]
