"""The published checkpoint layouts load with the vocabulary and answer table that come beside them.

Each stand-in is a tiny seeded model written in the exact layout a researcher downloads: the authors'
``model_LXRT.pth`` (pre-training, ``module.bert.*``) with BERT's ``vocab.txt``; the authors' task ``BEST.pth``
(``lxrt_encoder.model.bert.*`` + ``logit_fc.*``) with its ``trainval_label2ans.json``; a transformers directory
(``pytorch_model.bin`` or ``model.safetensors``, ``config.json``, ``vocab.txt``) with the authors' answer table
beside it. The loaded model must give the source model's outputs, the tokenizer must be the given vocabulary and the
answers the given table. :func:`outline_checkpoint` must read the same sizes without reading any tensor.
"""

from __future__ import annotations

import json

import pytest
import torch
from lxmert_helpers import authors_task_state, max_diff, perturb_, random_batch, transformers_config

from lxmert import LxmertForPreTraining, LxmertForQuestionAnswering
from lxmert import checkpoints as ckpt
from lxmert.checkpoints import (
    AUTHORS_ANSWERS_FILE,
    CheckpointError,
    MissingCheckpointFileError,
    load_checkpoint,
    outline_checkpoint,
)
from lxmert.model_set_checks import checkpoint_problem
from lxmert.model_sets import CheckpointEntry
from lxmert.tokenization import SPECIAL_TOKENS

HEADS = {"num_attention_heads": 4}  # the one field an authors' file does not show in its shapes
ATOL = 1e-5


def write_vocab(path, size):
    words = [*SPECIAL_TOKENS, *(f"word{i}" for i in range(size - len(SPECIAL_TOKENS)))]
    path.write_text("".join(w + "\n" for w in words))
    return path, words


def write_label2ans(path, count):
    answers = [f"answer {i}" for i in range(count)]
    path.write_text(json.dumps(answers))
    return path, answers


def authors_pretraining_state(model):
    """The authors' ``model_LXRT.pth``: trained with --multiGPU, so every key starts ``module.``."""
    return {"module." + ("bert." + k.removeprefix("lxmert.") if k.startswith("lxmert.") else k): v
            for k, v in model.state_dict().items()}  # fmt: skip


def assert_same_outputs(loaded, source, config, name):
    batch = random_batch(config)
    with torch.no_grad():
        mine, theirs = loaded(**batch), source(**batch)
    assert max_diff(mine.question_answering_score, theirs.question_answering_score) <= ATOL, name


@pytest.fixture
def pretraining(tiny_config):
    torch.manual_seed(0)
    return perturb_(LxmertForPreTraining(tiny_config)).eval()


@pytest.fixture
def question_answering(tiny_config):
    torch.manual_seed(1)
    return perturb_(LxmertForQuestionAnswering(tiny_config)).eval()


def test_authors_pretraining_pth_with_a_vocabulary_and_the_answer_table(tmp_path, tiny_config, pretraining):
    torch.save(authors_pretraining_state(pretraining), tmp_path / "model_LXRT.pth")
    vocab, words = write_vocab(tmp_path / "vocab.txt", tiny_config.vocab_size)
    answers, table = write_label2ans(tmp_path / "all_answers.json", tiny_config.num_qa_labels)
    loaded = load_checkpoint(tmp_path / "model_LXRT.pth", config=HEADS, vocab=vocab, answers=answers)
    assert isinstance(loaded.model, LxmertForPreTraining)
    assert loaded.model.load_report.layout == "authors-pretraining"
    assert loaded.model.load_report.missing_keys == []
    assert sorted(loaded.tokenizer.vocab, key=loaded.tokenizer.vocab.get) == words
    assert loaded.answers.label2ans == table
    assert_same_outputs(loaded.model, pretraining, tiny_config, "model_LXRT.pth")


def test_authors_task_pth_with_its_trainval_label2ans(tmp_path, tiny_config, question_answering):
    torch.save(authors_task_state(question_answering.state_dict()), tmp_path / "BEST.pth")
    vocab, _ = write_vocab(tmp_path / "vocab.txt", tiny_config.vocab_size)
    answers, table = write_label2ans(tmp_path / AUTHORS_ANSWERS_FILE, tiny_config.num_qa_labels)
    loaded = load_checkpoint(tmp_path / "BEST.pth", config=HEADS, vocab=vocab, answers=answers)
    assert isinstance(loaded.model, LxmertForQuestionAnswering)
    assert loaded.model.load_report.layout == "authors-task"
    assert loaded.answers.label2ans == table
    assert_same_outputs(loaded.model, question_answering, tiny_config, "BEST.pth")


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.safetensors"])
def test_transformers_directory_reads_the_authors_answer_table_beside_it(
    tmp_path, tiny_config, question_answering, weights
):
    transformers = pytest.importorskip("transformers")
    hf = transformers.LxmertForQuestionAnswering(transformers_config(tiny_config)).eval()
    hf.load_state_dict(question_answering.state_dict())
    hf.save_pretrained(tmp_path)  # config.json + model.safetensors, as the hub holds them
    if weights == "pytorch_model.bin":  # what transformers 4.x wrote, and what unc-nlp's hub repos hold
        torch.save(hf.state_dict(), tmp_path / weights)
        (tmp_path / "model.safetensors").unlink()
    _, words = write_vocab(tmp_path / "vocab.txt", tiny_config.vocab_size)
    _, table = write_label2ans(tmp_path / AUTHORS_ANSWERS_FILE, tiny_config.num_qa_labels)
    loaded = load_checkpoint(tmp_path)
    assert loaded.model.load_report.layout == "transformers"
    assert loaded.answers.label2ans == table
    assert loaded.tokenizer.vocab["word0"] == words.index("word0")
    assert_same_outputs(loaded.model, question_answering, tiny_config, weights)


def test_given_files_replace_the_directorys_own(tmp_path, tiny_config, question_answering):
    ckpt.save_pretrained(question_answering, tmp_path / "ours", answers=[f"x{i}" for i in range(13)])
    answers, table = write_label2ans(tmp_path / "other.json", tiny_config.num_qa_labels)
    vocab, _ = write_vocab(tmp_path / "vocab.txt", tiny_config.vocab_size)
    loaded = load_checkpoint(tmp_path / "ours", vocab=vocab, answers=answers)
    assert loaded.answers.label2ans == table and loaded.tokenizer is not None


def test_given_files_that_do_not_fit_are_refused_naming_them(tmp_path, tiny_config, question_answering):
    torch.save(authors_task_state(question_answering.state_dict()), tmp_path / "BEST.pth")
    vocab, _ = write_vocab(tmp_path / "vocab.txt", tiny_config.vocab_size)
    wrong, _ = write_label2ans(tmp_path / "wrong.json", tiny_config.num_qa_labels + 2)
    with pytest.raises(
        CheckpointError, match=r"wrong\.json.*holds 15 answers but the QA head .* has 13 rows"
    ):
        load_checkpoint(tmp_path / "BEST.pth", config=HEADS, vocab=vocab, answers=wrong)
    big, _ = write_vocab(tmp_path / "big.txt", tiny_config.vocab_size + 5)
    with pytest.raises(CheckpointError, match=r"big\.txt.*beyond the model's vocab_size 99"):
        load_checkpoint(tmp_path / "BEST.pth", config=HEADS, vocab=big)
    with pytest.raises(MissingCheckpointFileError, match=r"absent\.txt: no vocabulary there"):
        load_checkpoint(tmp_path / "BEST.pth", config=HEADS, vocab=tmp_path / "absent.txt")


@pytest.mark.parametrize("layout", ["authors-task", "authors-pretraining", "ours", "legacy-pickle"])
def test_the_outline_reads_sizes_without_reading_a_tensor(
    tmp_path, tiny_config, question_answering, pretraining, layout, monkeypatch
):
    vocab, _ = write_vocab(tmp_path / "vocab.txt", tiny_config.vocab_size)
    answers, _ = write_label2ans(tmp_path / AUTHORS_ANSWERS_FILE, tiny_config.num_qa_labels)
    if layout == "ours":
        path = ckpt.save_pretrained(pretraining, tmp_path / "ours")
    else:
        path = tmp_path / "model.pth"
        state = (
            authors_task_state(question_answering.state_dict())
            if layout == "authors-task"
            else authors_pretraining_state(pretraining)
        )
        torch.save(state, path, _use_new_zipfile_serialization=layout != "legacy-pickle")

    def no_reading(*args, **kwargs):
        raise AssertionError("the outline read the weights")

    monkeypatch.setattr(ckpt, "load_file", no_reading)
    if layout != "legacy-pickle":  # the legacy format cannot be mapped: it is read, as loading would
        monkeypatch.setattr(ckpt, "read_torch_file", no_reading)
    outline = outline_checkpoint(path, vocab=vocab, answers=answers)
    assert outline.visual_feat_dim == tiny_config.visual_feat_dim == 24
    assert outline.vocab_size == tiny_config.vocab_size
    assert outline.qa_rows == tiny_config.num_qa_labels
    assert outline.vocab == vocab and len(outline.answers) == tiny_config.num_qa_labels
    assert outline.layout == (
        "authors-pretraining" if layout == "legacy-pickle" else layout.replace("ours", "lxmert")
    )
    every_head = {"answer_head", "cls.predictions", "cls.seq_relationship", "obj_predict_head"}
    assert outline.heads == ({"answer_head"} if layout == "authors-task" else every_head)


def test_the_outline_of_a_directory_finds_its_own_files(tmp_path, tiny_config, pretraining):
    path = ckpt.save_pretrained(pretraining, tmp_path / "ours", answers=[f"x{i}" for i in range(13)])
    outline = outline_checkpoint(path)
    assert outline.vocab is None and outline.answers.label2ans[0] == "x0"
    write_vocab(path / "vocab.txt", tiny_config.vocab_size)
    assert outline_checkpoint(path).vocab == path / "vocab.txt"


def test_the_outline_refuses_what_is_no_lxmert_checkpoint(tmp_path):
    torch.save({"weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth.*unrecognised checkpoint layout"):
        outline_checkpoint(tmp_path / "other.pth")
    torch.save({"bert.pooler.dense.weight": torch.zeros(2, 2)}, tmp_path / "half.pth")
    with pytest.raises(CheckpointError, match=r"half\.pth: has no 2-d 'lxmert.embeddings.word_embeddings"):
        outline_checkpoint(tmp_path / "half.pth")


def test_a_checkpoint_that_cannot_run_on_the_detector_is_named_with_its_reason(
    tmp_path, tiny_config, question_answering
):
    torch.save(authors_task_state(question_answering.state_dict()), tmp_path / "BEST.pth")
    vocab, _ = write_vocab(tmp_path / "vocab.txt", tiny_config.vocab_size)
    answers, _ = write_label2ans(tmp_path / AUTHORS_ANSWERS_FILE, tiny_config.num_qa_labels)
    wrong, _ = write_label2ans(tmp_path / "wrong.json", 3)
    fits = CheckpointEntry(tmp_path / "BEST.pth", vocab=vocab, answers=answers)
    assert checkpoint_problem(fits, feature_dim=24) is None
    assert checkpoint_problem(fits, feature_dim=256) == (
        "needs 24-d region features; this set's detector gives 256-d"
    )
    assert "has no vocabulary" in checkpoint_problem(CheckpointEntry(tmp_path / "BEST.pth"), 24)
    mismatch = checkpoint_problem(CheckpointEntry(tmp_path / "BEST.pth", vocab=vocab, answers=wrong), 24)
    assert (
        "wrong.json" in mismatch and "holds 3 answers but the QA head" in mismatch and "13 rows" in mismatch
    )
    (tmp_path / "cut.pth").write_bytes((tmp_path / "BEST.pth").read_bytes()[:500])
    assert "cut.pth" in checkpoint_problem(CheckpointEntry(tmp_path / "cut.pth", vocab=vocab), 24)
