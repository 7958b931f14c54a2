"""finetune → evaluate on a toy world, the official prediction-file formats, and the answer-prior baseline."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from finetune_toy import build

from lxmert.data.metrics import gqa_scores, nlvr2_scores, vqa_scores
from lxmert.data.task_files import load_gqa, load_nlvr2, load_vqa, write_json
from lxmert.errors import EXIT_UNREADABLE_FILE, UnreadableFileError
from training.tasks import answer_priors as baselines
from training.tasks import evaluation as evaluate
from training.tasks import finetuning as finetune
from training.tasks import get_task


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return build(tmp_path_factory.mktemp("toy"))


def test_paper_recipe_is_the_default():
    name, start, data, train = finetune.parse_args(["gqa"])
    assert name == "gqa" and start.init == "assets/default/pretrained" and not start.from_scratch
    assert (train.batch_size, train.epochs, train.warmup_ratio, train.max_grad_norm) == (32, 4, 0.1, 5.0)
    assert train.lr == finetune.AUTO_LR  # chosen by the model's width: the paper's rates below at base width
    assert (data.train, data.valid, train.output) == ("train", "valid", "runs/finetune/gqa")
    _, _, data, train = finetune.parse_args(["vqa", "--lr", "1e-4", "--ablate", "vision"])
    assert (data.train, data.valid, train.lr, data.ablate) == ("train,nominival", "minival", 1e-4, "vision")
    paper = {name: get_task(name).train_defaults["lr"] for name in ("vqa", "gqa", "nlvr2")}
    assert paper == {"vqa": 5e-5, "gqa": 1e-5, "nlvr2": 5e-5}


def test_task_name_comes_first():
    with pytest.raises(SystemExit):
        finetune.parse_args(["--lr", "1e-4"])


def read_vqa_submission(path) -> list[dict]:
    """Parse a VQA result file, checking the schema the VQA evaluation server reads."""
    entries = json.loads(path.read_text())
    assert isinstance(entries, list)
    for entry in entries:
        assert set(entry) == {"question_id", "answer"}
        assert isinstance(entry["question_id"], int) and isinstance(entry["answer"], str)
    return entries


def test_finetune_then_evaluate_writes_official_vqa_file(toy, tmp_path):
    out = tmp_path / "vqa-run"
    common = ["--data", str(toy["vqa"]), "--features", str(toy["features"]), "--train", "train"]
    finetune.main(["vqa", "--init", str(toy["init"]), *common, "--output", str(out), "--epochs", "2",
                   "--batch-size", "8", "--device", "cpu", "--threads", "1", "--log-every", "1"])  # fmt: skip
    for directory in ("best", "final"):
        assert {"config.json", "model.safetensors", "vocab.txt", "answers.json", "task_config.json"} <= {
            p.name for p in (out / directory).iterdir()
        }
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["split"] == "valid"]
    assert len(valid) == 2 and {"accuracy", "yes/no", "number", "other"} <= set(valid[0])

    result = evaluate.evaluate(evaluate.EvaluateConfig(checkpoint=str(out / "best"), split="minival"))
    path = out / "predictions" / "minival_predict.json"
    assert result["predictions"] == str(path)
    items = load_vqa(toy["vqa"] / "minival.json")
    entries = read_vqa_submission(path)
    assert sorted(e["question_id"] for e in entries) == sorted(d["question_id"] for d in items)
    rescored = vqa_scores({e["question_id"]: e["answer"] for e in entries}, items)
    assert result["metrics"] == pytest.approx(rescored)
    # The best checkpoint was chosen on the same split, so its score is the best validation record.
    assert rescored["accuracy"] == pytest.approx(max(r["accuracy"] for r in valid))
    saved = json.loads((out / "predictions" / "minival_predict_metrics.json").read_text())
    assert saved["metrics"] == pytest.approx(rescored)


def test_gqa_submission_format(toy, tmp_path):
    out = tmp_path / "testdev_predict.json"
    cfg = evaluate.EvaluateConfig(
        checkpoint=str(toy["init"]), task="gqa", data=str(toy["gqa"]), features=str(toy["features"]),
        split="minival", out=str(out),
    )  # fmt: skip
    result = evaluate.evaluate(cfg)
    entries = json.loads(out.read_text())
    items = load_gqa(toy["gqa"] / "minival.json")
    assert isinstance(entries, list) and len(entries) == len(items)
    for entry in entries:
        assert set(entry) == {"questionId", "prediction"}
        assert isinstance(entry["questionId"], str) and isinstance(entry["prediction"], str)
    assert {e["questionId"] for e in entries} == {d["question_id"] for d in items}
    rescored = gqa_scores({e["questionId"]: e["prediction"] for e in entries}, items)
    assert result["metrics"] == pytest.approx(rescored)


def test_nlvr2_submission_format(toy, tmp_path):
    out = tmp_path / "valid_predict.csv"
    cfg = evaluate.EvaluateConfig(
        checkpoint=str(toy["init"]), task="nlvr2", data=str(toy["nlvr2"]), features=str(toy["features"]),
        split="valid", out=str(out),
    )  # fmt: skip
    result = evaluate.evaluate(cfg)
    lines = out.read_text().splitlines()
    items = load_nlvr2(toy["nlvr2"] / "valid.json")
    assert len(lines) == len(items)
    assert all(re.fullmatch(r"[\w-]+,(True|False)", line) for line in lines), lines
    # Read as lil-lab/nlvr's metrics.py reads it.
    parsed = dict(line.strip().split(",") for line in lines)
    assert set(parsed) == {d["identifier"] for d in items}
    assert result["metrics"] == pytest.approx(nlvr2_scores(parsed, items))


def test_evaluate_takes_the_vocabulary_of_a_checkpoint_without_one(toy, tmp_path):
    """As finetune does: ``--vocab`` gives a checkpoint that has no vocab.txt (the authors' .pth) its vocabulary."""
    bare = tmp_path / "bare"
    shutil.copytree(toy["init"], bare)
    vocab = tmp_path / "vocab.txt"
    (bare / "vocab.txt").rename(vocab)
    common = [
        "--task",
        "vqa",
        "--data",
        str(toy["vqa"]),
        "--features",
        str(toy["features"]),
        "--split",
        "minival",
    ]
    evaluate.main(["--checkpoint", str(toy["init"]), *common, "--out", str(tmp_path / "with_vocab_txt.json")])
    evaluate.main(
        ["--checkpoint", str(bare), "--vocab", str(vocab), *common, "--out", str(tmp_path / "flag.json")]
    )
    with_vocab_txt = json.loads((tmp_path / "with_vocab_txt.json").read_text())
    assert json.loads((tmp_path / "flag.json").read_text()) == with_vocab_txt and with_vocab_txt


def _evaluate_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "training.evaluate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == EXIT_UNREADABLE_FILE, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def test_evaluate_says_in_one_line_what_a_bare_checkpoint_lacks(toy, tmp_path):
    pth = tmp_path / "model_LXRT.pth"  # the authors' file comes without a vocabulary or a task
    pth.write_bytes(b"never read: the missing flags are named first")
    data = ["--data", str(toy["vqa"]), "--features", str(toy["features"])]
    line = _one_line(_evaluate_cli("--checkpoint", str(pth), "--task", "vqa", *data))
    assert str(pth) in line and "--vocab" in line, line
    line = _one_line(_evaluate_cli("--checkpoint", str(pth), *data))
    assert str(pth) in line and "--task" in line, line


def test_finetune_names_the_vocab_flag_for_an_init_without_one(toy, tmp_path):
    pth = tmp_path / "model_LXRT.pth"
    pth.write_bytes(b"never read: the tokenizer is loaded first")
    common = ["--data", str(toy["vqa"]), "--features", str(toy["features"]), "--train", "train"]
    with pytest.raises(UnreadableFileError, match=r"model_LXRT\.pth: has no vocab\.txt .*pass --vocab"):
        finetune.main(["vqa", "--init", str(pth), *common, "--output", str(tmp_path / "run")])
    with pytest.raises(UnreadableFileError, match=r"absent\.txt: no vocabulary there \(--vocab\)"):
        finetune.main(["vqa", "--init", str(pth), "--vocab", str(tmp_path / "absent.txt"), *common])


def test_unlabelled_split_gets_predictions_without_metrics(toy, tmp_path):
    items = [{k: v for k, v in d.items() if k != "label"} for d in load_vqa(toy["vqa"] / "minival.json")]
    write_json(tmp_path / "test.json", items)
    write_json(
        tmp_path / "trainval_label2ans.json", json.loads((toy["vqa"] / "trainval_label2ans.json").read_text())
    )
    cfg = evaluate.EvaluateConfig(
        checkpoint=str(toy["init"]), task="vqa", data=str(tmp_path), features=str(toy["features"]), split="test",
        out=str(tmp_path / "test_predict.json"),
    )  # fmt: skip
    result = evaluate.evaluate(cfg)
    assert result["metrics"] is None
    assert len(read_vqa_submission(tmp_path / "test_predict.json")) == len(items)


def test_answer_prior_baseline_by_hand(tmp_path):
    def q(qid, qtype, label, answer_type="other"):
        return {"question_id": qid, "img_id": "x", "sent": "?", "answer_type": answer_type,
                "question_type": qtype, "label": label}  # fmt: skip

    train = [
        q(1, "what color", {"red": 1.0}), q(2, "what color", {"red": 0.9, "blue": 0.3}),
        q(3, "what color", {"blue": 1.0}), q(4, "is the", {"no": 1.0}, "yes/no"),
        q(5, "is the", {"no": 1.0}, "yes/no"), q(6, "is the", {"yes": 1.0}, "yes/no"),
        q(10, "is there", {"no": 1.0}, "yes/no"),  # "no" is now the most frequent answer overall (3 vs red's 2)
    ]  # fmt: skip
    test = [
        q(7, "what color", {"red": 0.6, "blue": 1.0}), q(8, "is the", {"no": 1.0}, "yes/no"),
        q(9, "how many", {"no": 0.3, "2": 1.0}, "number"),  # unseen type: the overall most frequent answer ("no")
    ]  # fmt: skip
    write_json(tmp_path / "train.json", train)
    write_json(tmp_path / "test.json", test)
    out = tmp_path / "prior.json"
    result = baselines.run_prior(
        baselines.BaselineConfig(
            task="vqa", data=str(tmp_path), train="train", split="test", out=str(out), key="type"
        )
    )
    assert {e["question_id"]: e["answer"] for e in json.loads(out.read_text())} == {
        7: "red",
        8: "no",
        9: "no",
    }
    assert result["metrics"]["accuracy"] == pytest.approx((0.6 + 1.0 + 0.3) / 3)
    assert result["metrics"]["number"] == pytest.approx(0.3)


def test_question_prior_by_hand(tmp_path):
    """The answer to the same question, else its type's, else the overall one; --key type keeps the type's."""

    def q(qid, sent, answer):
        qtype = " ".join(sent.lower().split()[:2])
        return {"question_id": qid, "img_id": "x", "sent": sent, "answer_type": "other", "question_type": qtype,
                "label": {answer: 1.0}}  # fmt: skip

    train = [
        q(1, "Is the ball red?", "yes"), q(2, "is the ball red", "yes"), q(3, "Is the  ball red?", "no"),
        q(4, "Is the cube red?", "no"), q(5, "Is the cube red?", "no"), q(6, "Is the cube red?", "no"),
        q(7, "How many balls?", "2"),
    ]  # fmt: skip
    # Type "is the": no ×4, yes ×2. Overall: no ×4.
    test = [
        q(11, "IS THE BALL RED?", "yes"),  # the same question, normalised: yes (2 of 3)
        q(12, "Is the cone red?", "no"),  # never asked: its type's answer, no
        q(13, "What colour is it?", "blue"),  # an unseen type: the overall answer, no
        q(14, "How many balls?", "3"),  # asked: 2
    ]  # fmt: skip
    write_json(tmp_path / "train.json", train)
    write_json(tmp_path / "valid.json", test)
    predictions = baselines.prior_predictions("vqa", train, test)
    assert predictions == {11: "yes", 12: "no", 13: "no", 14: "2"}
    by_type = baselines.prior_predictions("vqa", train, test, key="type")
    assert by_type == {11: "no", 12: "no", 13: "no", 14: "2"}
    result = baselines.run_prior(
        baselines.BaselineConfig(task="vqa", data=str(tmp_path), train="train", split="valid",
                                 out=str(tmp_path / "prior.json"))
    )  # fmt: skip
    assert result["metrics"]["accuracy"] == pytest.approx((1 + 1 + 0 + 0) / 4)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    """torchrun with 2 CPU processes (gloo) sees the same global batches: without dropout, the same validation
    metrics, consistency included (its groups straddle the two shards)."""
    import os
    import subprocess
    import sys

    def run(processes: int) -> list[dict]:
        out = tmp_path / f"p{processes}"
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                    "--master-port", str(29500 + processes)]  # fmt: skip
        command = [
            *(launcher if processes > 1 else [sys.executable]), "-m", "training.finetune", "nlvr2",
            "--init", str(toy["init"]), "--data", str(toy["nlvr2"]), "--features", str(toy["features"]),
            "--output", str(out), "--epochs", "2", "--batch-size", "4", "--device", "cpu", "--threads", "1",
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [r for r in records if r["split"] == "valid"]

    toy = build(tmp_path / "toy", dropout=0.0)
    single, double = run(1), run(2)
    assert len(single) == len(double) == 2
    for a, b in zip(single, double, strict=True):
        for metric in ("accuracy", "consistency", "loss"):
            assert a[metric] == pytest.approx(b[metric], abs=1e-4), metric
