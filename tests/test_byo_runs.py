"""``training.byo`` runs on a toy set with a ready feature store: store reuse, resume messages, the scratch control."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from finetune_toy import build
from safetensors.torch import load_file

from lxmert.data.task_files import load_vqa
from training.tasks.own_data import main

EMBEDDINGS = "lxmert.embeddings.word_embeddings.weight"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The fine-tuning toy world as a user's folder: an image file per feature-store id and a CSV of questions."""
    root = tmp_path_factory.mktemp("byo-toy")
    paths = build(root)
    images = root / "images"
    images.mkdir()
    lines = ["image,question,answer"]
    for split in ("train", "minival"):
        for item in load_vqa(paths["vqa"] / f"{split}.json"):
            (images / f"{item['img_id']}.png").write_bytes(b"")  # never decoded: the store has its regions
            lines.append(f"{item['img_id']}.png,{item['sent']},{max(item['label'], key=item['label'].get)}")
    (root / "questions.csv").write_text("\n".join(lines) + "\n")
    return {**paths, "images": images, "questions": root / "questions.csv", "root": root}


def byo(toy, out, *flags: str) -> None:
    # --detector names no directory: these runs must not extract.
    main([
        "--images", str(toy["images"]), "--questions", str(toy["questions"]), "--out", str(out),
        "--init", str(toy["init"]), "--detector", str(toy["root"] / "no-detector"), "--epochs", "2",
        "--batch-size", "4", "--valid-fraction", "0.25", "--device", "cpu", "--threads", "1", *flags,
    ])  # fmt: skip


def test_byo_uses_a_given_store_and_prints_its_score_beside_the_prior(toy, tmp_path, capsys):
    byo(toy, tmp_path / "run", "--features", str(toy["features"]))
    printed = capsys.readouterr().out
    assert f"features: using {toy['features']}, which holds all 12 images" in printed
    assert not (tmp_path / "run" / "features").exists()
    summary = json.loads((tmp_path / "run" / "model" / "summary.json").read_text())
    valid = summary["valid"]["accuracy"]
    assert f"valid accuracy {valid:.3f}" in printed
    assert "question-only prior (most frequent training answer to the same question)" in printed


def test_byo_reuses_a_complete_store_at_its_out(toy, tmp_path, capsys):
    shutil.copytree(toy["features"], tmp_path / "run" / "features")
    byo(toy, tmp_path / "run")
    assert "run/features already holds all 12 images of the questions" in capsys.readouterr().out


def test_byo_refuses_a_store_that_lacks_images(toy, tmp_path):
    (toy["images"] / "extra.png").write_bytes(b"")
    questions = tmp_path / "q.csv"
    questions.write_text(toy["questions"].read_text() + "extra.png,is it bright?,yes\n")
    with pytest.raises(ValueError, match=r"lacks 1 images of the questions \(e\.g\. \['extra'\]\)"):
        main([
            "--images", str(toy["images"]), "--questions", str(questions), "--out", str(tmp_path / "run"),
            "--init", str(toy["init"]), "--features", str(toy["features"]),
        ])  # fmt: skip
    (toy["images"] / "extra.png").unlink()


def test_byo_resume_refusal_names_its_own_flags(toy, tmp_path):
    out = tmp_path / "run"
    byo(toy, out, "--features", str(toy["features"]), "--lr", "1e-3")
    with pytest.raises(ValueError, match="cannot resume") as refused:
        byo(toy, out, "--features", str(toy["features"]), "--lr", "3e-3")
    message = str(refused.value)
    assert "--no-resume" in message and "another --out with --features" in message
    assert "--output" not in message  # the trainer's own flag, which byo does not have
    # Another start point cannot continue the run either (it would quietly resume the pre-trained weights).
    with pytest.raises(
        ValueError, match=r"started from another point .*'from_scratch': \(False, True\).*--no-resume"
    ):
        byo(toy, out, "--features", str(toy["features"]), "--lr", "1e-3", "--from-scratch")
    # What the message says works: the same --out trains again from the start.
    byo(toy, out, "--features", str(toy["features"]), "--lr", "3e-3", "--no-resume")
    saved = json.loads((out / "model" / "final" / "meta.json").read_text())
    assert saved["train_config"]["lr"] == 3e-3


def test_byo_from_scratch_does_not_start_from_the_checkpoint(toy, tmp_path):
    """At a negligible learning rate the fine-tuned encoder stays where it started: the checkpoint's weights, or
    random ones with --from-scratch."""
    start = load_file(toy["init"] / "model.safetensors")[EMBEDDINGS]
    ends = {}
    for name, flags in (("pretrained", ()), ("scratch", ("--from-scratch",))):
        byo(toy, tmp_path / name, "--features", str(toy["features"]), "--lr", "1e-12", *flags)
        ends[name] = load_file(tmp_path / name / "model" / "final" / "model.safetensors")[EMBEDDINGS]
    assert torch.allclose(ends["pretrained"], start, atol=1e-6)
    assert not torch.allclose(ends["scratch"], start, atol=1e-2)
    saved = json.loads((tmp_path / "scratch" / "model" / "finetune_config.json").read_text())
    assert saved["from_scratch"] is True


def test_world_to_byo_table_reads_back_as_byo_rows(tmp_path):
    """scripts/world_to_byo.py: each answered VQA question with its annotators' answers, which byo reads back."""
    import importlib.util
    import sys

    from lxmert.data.task_files import write_json
    from training.tasks.own_data import read_questions

    script = Path(__file__).resolve().parents[1] / "scripts" / "world_to_byo.py"
    spec = importlib.util.spec_from_file_location("world_to_byo", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass looks its module up while it is built
    spec.loader.exec_module(module)

    def item(qid: int, img: str, sent: str, answer: str) -> dict:
        return {"question_id": qid, "img_id": img, "sent": sent, "answer_type": "other", "question_type": "what",
                "label": {answer: 1.0}}  # fmt: skip

    for number, split in enumerate(("train", "nominival", "minival")):
        write_json(
            tmp_path / "vqa" / f"{split}.json", [item(number, f"synth_{number}", f"What is {split}?", "a")]
        )
        raw = [{"question_id": number, "answers": ["a", "a|b", "B"]}]
        write_json(tmp_path / "vqa" / f"{split}_raw_answers.json", raw)
    module.main([str(tmp_path), str(tmp_path / "q.csv")])
    rows = read_questions(tmp_path / "q.csv")
    assert [(r["image"], r["question"], r["answers"], r["split"]) for r in rows] == [
        (f"synth_{n}.png", f"What is {s}?", ["a", "a b", "B"], None)
        for n, s in enumerate(("train", "nominival", "minival"))
    ]
