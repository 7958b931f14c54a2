"""Our checkpoint directory, key conversion, config inference, error handling and answer-head transfer."""

import dataclasses
import logging
import os

import pytest
import torch
from lxmert_helpers import perturb_, random_batch

from lxmert import LxmertConfig, LxmertForNLVR2, LxmertForPreTraining, LxmertForQuestionAnswering, LxmertModel
from lxmert.checkpoints import (
    CheckpointError,
    infer_config,
    load_checkpoint,
    load_state_into,
    read_config,
    read_state_dict,
    to_canonical,
    transfer_answer_head,
)
from lxmert.wordpiece import train_wordpiece


def test_round_trip_is_exact_and_keeps_the_tie(tmp_path, tiny_config):
    tiny_config.share_cross_attention = False
    model = perturb_(LxmertForPreTraining(tiny_config))
    tokenizer = train_wordpiece(["a red cube", "the blue sphere"], 40, tmp_path / "vocab.txt")
    answers = [f"answer {i}" for i in range(tiny_config.num_qa_labels)]
    model.save_pretrained(tmp_path / "ckpt", tokenizer=tokenizer, answers=answers, meta={"epochs": 3})
    assert sorted(os.listdir(tmp_path / "ckpt")) == [
        "answers.json", "config.json", "meta.json", "model.safetensors", "vocab.txt",
    ]  # fmt: skip

    loaded = load_checkpoint(tmp_path / "ckpt")
    again = loaded.model
    assert type(again) is LxmertForPreTraining and not again.training
    assert again.config == tiny_config
    assert again.load_report.layout == "lxmert"
    assert again.load_report.missing_keys == [] and again.load_report.unexpected_keys == []
    theirs = again.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, theirs[key]), f"{key} changed in the round trip"
    assert again.cls.predictions.decoder.weight is again.lxmert.embeddings.word_embeddings.weight
    assert loaded.answers.label2ans == answers
    assert loaded.tokenizer.vocab == tokenizer.vocab
    assert loaded.meta == {"epochs": 3}


@pytest.mark.parametrize("model_class", [LxmertModel, LxmertForQuestionAnswering, LxmertForNLVR2])
def test_each_model_class_round_trips_and_is_recognised(tmp_path, tiny_config, model_class):
    model = perturb_(model_class(tiny_config)).eval()
    model.save_pretrained(tmp_path)
    loaded = load_checkpoint(tmp_path)
    assert type(loaded.model) is model_class
    assert loaded.tokenizer is None and loaded.answers is None and loaded.meta == {}
    batch = random_batch(tiny_config, pairs=model_class is LxmertForNLVR2)
    with torch.no_grad():
        assert torch.equal(model(**batch).pooled_output, loaded.model(**batch).pooled_output)


def test_save_replaces_an_existing_directory_and_a_failed_save_leaves_it_whole(tmp_path, tiny_config):
    target = tmp_path / "ckpt"
    first = LxmertModel(tiny_config)
    first.save_pretrained(target, meta={"version": 1})
    LxmertModel(tiny_config).save_pretrained(target, meta={"version": 2})
    assert load_checkpoint(target).meta == {"version": 2}
    with pytest.raises(TypeError):  # not JSON-serialisable: fails after the weights were written
        LxmertModel(tiny_config).save_pretrained(target, meta={"version": object()})
    assert load_checkpoint(target).meta == {"version": 2}
    assert sorted(os.listdir(tmp_path)) == ["ckpt"], "temporary directories were left behind"
    with pytest.raises(ValueError, match="2 answers given for a QA head of 13 outputs"):
        LxmertForQuestionAnswering(tiny_config).save_pretrained(target, answers=["yes", "no"])


def test_a_checkpoint_that_does_not_fit_the_config_is_refused_naming_the_tensor(tmp_path, tiny_config):
    LxmertForPreTraining(tiny_config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"'lxmert.embeddings.word_embeddings.weight' has shape \(99, 64\) "
                                         r"but the model expects \(120, 64\)"):  # fmt: skip
        LxmertForPreTraining.from_pretrained(tmp_path, config={"vocab_size": 120})
    with pytest.raises(ValueError, match=r"'answer_head.logit_fc.3.weight' has shape \(13, 128\)"):
        LxmertForQuestionAnswering.from_pretrained(
            tmp_path, config=dataclasses.replace(tiny_config, num_qa_labels=5)
        )


def test_truncated_and_unsafe_files_are_refused_with_the_file_named(tmp_path, tiny_config):
    model = LxmertModel(tiny_config)
    model.save_pretrained(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"model.safetensors: not a readable safetensors file"):
        LxmertModel.from_pretrained(tmp_path / "ckpt")

    pth = tmp_path / "Epoch20_LXRT.pth"
    torch.save(model.state_dict(), pth)
    pth.write_bytes(pth.read_bytes()[:5000])
    with pytest.raises(
        ValueError, match=r"Epoch20_LXRT.pth: not a readable PyTorch file \(truncated or corrupt\?\)"
    ):
        read_state_dict(pth)

    marker = tmp_path / "code-ran"

    class Payload:  # unpickling this would run touch(marker)
        def __reduce__(self):
            return (marker.touch, ())

    torch.save({"lxmert.pooler.dense.weight": torch.zeros(1), "payload": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(
        ValueError, match=r"evil.pth: refused: its pickle asks for getattr.*weights_only=True"
    ):
        read_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match="holds neither model.safetensors nor pytorch_model.bin"):
        LxmertModel.from_pretrained(tmp_path)


def test_missing_and_unexpected_keys_are_reported_and_logged(tmp_path, tiny_config, caplog):
    LxmertForPreTraining(tiny_config).save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO, logger="lxmert.checkpoints"):
        nlvr2 = LxmertForNLVR2.from_pretrained(tmp_path)
    report = nlvr2.load_report
    assert report.missing_keys == [f"logit_fc.{i}.{p}" for i in (0, 2, 3) for p in ("bias", "weight")]
    heads = [k for k in LxmertForPreTraining(tiny_config).state_dict() if not k.startswith("lxmert.")]
    heads.remove("cls.predictions.decoder.weight")  # tied: stored once, as the word embeddings
    assert report.unexpected_keys == sorted(heads)
    assert "missing (left at init): 6 keys: logit_fc.0.bias" in caplog.text

    encoder = LxmertModel(tiny_config)
    assert load_state_into(encoder, tmp_path).missing_keys == []
    fresh = LxmertForNLVR2(tiny_config)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ValueError, match="strict load refused"):
        load_state_into(fresh, tmp_path / "model.safetensors", strict=True)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in before.items()), (
        "a refused load changed weights"
    )
    qa = LxmertForQuestionAnswering.from_pretrained(tmp_path, backbone_only=True)
    assert qa.load_report.missing_keys == [
        f"answer_head.logit_fc.{i}.{p}" for i in (0, 2, 3) for p in ("bias", "weight")
    ]
    assert "answer_head.logit_fc.3.weight" in qa.load_report.unexpected_keys


def test_answer_head_rows_follow_the_answer_strings():
    source = ["yes", "no", "2", "gray", "man"]
    target = ["Two", "cat", "yes", "the man", "grey"]
    weight = torch.arange(5.0)[:, None].repeat(1, 3)  # row i is all i
    state = {"answer_head.logit_fc.3.weight": weight, "answer_head.logit_fc.3.bias": torch.arange(5.0) + 10}
    moved, transfer = transfer_answer_head(state, source, target)
    assert moved["answer_head.logit_fc.3.weight"][:, 0].tolist() == [2, 0, 0, 4, 3]
    assert moved["answer_head.logit_fc.3.bias"].tolist() == [12, 0, 10, 14, 13]
    assert moved["answer_head.logit_fc.3.weight"][1].abs().sum() == 0  # "cat": unseen, zeroed
    assert transfer.matched == 4 and transfer.unmatched == ["cat"]
    assert torch.equal(state["answer_head.logit_fc.3.weight"], weight), "the input was modified"
    with pytest.raises(ValueError, match="has 5 rows but the source answer table has 2 answers"):
        transfer_answer_head(state, ["yes", "no"], target)


def test_fine_tuning_start_transfers_the_answer_head_from_a_pretraining_checkpoint(tmp_path, tiny_config):
    tiny_config.num_qa_labels = 4
    pre = perturb_(LxmertForPreTraining(tiny_config)).eval()
    pre.save_pretrained(tmp_path, answers=["yes", "no", "red", "2"])
    task_answers = ["two", "blue", "yes"]
    qa = LxmertForQuestionAnswering.from_pretrained(tmp_path, target_answers=task_answers)
    assert qa.config.num_qa_labels == 3
    assert qa.load_report.answer_transfer.matched == 2
    batch = random_batch(tiny_config)
    with torch.no_grad():
        pre_scores = pre(**batch).question_answering_score
        qa_scores = qa(**batch).logits
    assert torch.allclose(qa_scores[:, 0], pre_scores[:, 3], atol=1e-6)  # "two" → "2"
    assert torch.allclose(qa_scores[:, 2], pre_scores[:, 0], atol=1e-6)  # "yes"
    assert qa_scores[:, 1].abs().max() == 0  # "blue" starts at logit 0
    with pytest.raises(ValueError, match="pass source_answers"):
        LxmertForQuestionAnswering.from_pretrained(
            tmp_path / "model.safetensors", config=tiny_config, target_answers=task_answers
        )


def test_config_is_inferred_from_shapes_and_the_head_count_only_at_base_size(tiny_config):
    tiny_config.share_cross_attention = False
    tiny_config.visual_feat_loss = False
    canonical, layout = to_canonical(LxmertForPreTraining(tiny_config).state_dict())
    assert layout == "lxmert"
    assert infer_config(canonical, num_attention_heads=4) == tiny_config
    with pytest.raises(ValueError, match="cannot infer num_attention_heads for hidden_size 64"):
        infer_config(canonical)
    with torch.device("meta"):  # shapes without memory: the real base model
        base = LxmertForPreTraining(LxmertConfig())
    assert infer_config(to_canonical(base.state_dict())[0]) == LxmertConfig()
    with pytest.raises(ValueError, match="unrecognised checkpoint layout"):
        to_canonical({"model.weight": torch.zeros(1)})


def test_read_config_reads_the_architecture_without_the_weights(tmp_path, tiny_config):
    LxmertForQuestionAnswering(tiny_config).save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"not weights")  # never opened
    assert read_config(tmp_path / "ckpt") == tiny_config
    (tmp_path / "ckpt" / "config.json").write_text("[1]")
    with pytest.raises(CheckpointError, match=r"config\.json"):
        read_config(tmp_path / "ckpt")
