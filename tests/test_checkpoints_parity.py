"""Weights written by transformers, or laid out as the authors' files, load into our models and give the same outputs."""

import pytest
import torch
from lxmert_helpers import max_diff, perturb_, random_batch, transformers_config

from lxmert import LxmertForNLVR2, LxmertForPreTraining, LxmertForQuestionAnswering, LxmertModel

transformers = pytest.importorskip("transformers")

ATOL = 1e-5  # ours and transformers' measured up to 1.4e-6 apart (1 thread, 2, and 2 beside a busy process)


def assert_close(name, ours, theirs):
    diff = max_diff(ours, theirs)
    assert diff <= ATOL, f"{name} differs from transformers by {diff:.2e}"


@pytest.fixture
def hf_pretraining(tiny_config):
    return perturb_(transformers.LxmertForPreTraining(transformers_config(tiny_config))).eval()


def assert_pretraining_parity(ours, hf, config):
    batch = random_batch(config)
    with torch.no_grad():
        theirs = hf(**batch)
        base = hf.lxmert(**batch)
        visual = hf.obj_predict_head(base.vision_output)
        mine = ours(**batch)
    for name in ("language_output", "vision_output", "pooled_output"):
        assert_close(name, getattr(mine, name), getattr(base, name))
    for name in ("prediction_logits", "cross_relationship_score", "question_answering_score"):
        assert_close(name, getattr(mine, name), getattr(theirs, name))
    for key, name in (("obj", "obj_logits"), ("attr", "attr_logits"), ("feat", "feat_prediction")):
        assert_close(name, getattr(mine, name), visual[key])


def test_transformers_safetensors_directory(tmp_path, tiny_config, hf_pretraining):
    hf_pretraining.save_pretrained(tmp_path)
    ours = LxmertForPreTraining.from_pretrained(tmp_path)
    assert ours.load_report.layout == "transformers"
    assert ours.load_report.missing_keys == [] and ours.load_report.unexpected_keys == []
    assert ours.config == tiny_config  # read from transformers' config.json
    assert ours.cls.predictions.decoder.weight is ours.lxmert.embeddings.word_embeddings.weight
    assert_pretraining_parity(ours, hf_pretraining, tiny_config)


@pytest.mark.parametrize("with_decoder_key", [True, False])
def test_transformers_pytorch_model_bin_directory(tmp_path, tiny_config, hf_pretraining, with_decoder_key):
    # transformers 5 writes safetensors only (safe_serialization is gone); 4.x wrote this file with torch.save.
    state = hf_pretraining.state_dict()
    if not with_decoder_key:
        del state["cls.predictions.decoder.weight"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    hf_pretraining.config.to_json_file(tmp_path / "config.json")
    ours = LxmertForPreTraining.from_pretrained(tmp_path)
    assert ours.load_report.missing_keys == [] and ours.load_report.unexpected_keys == []
    assert_pretraining_parity(ours, hf_pretraining, tiny_config)


@pytest.mark.parametrize("prefix", ["module.bert.", "bert."])
def test_authors_pretraining_file(tmp_path, tiny_config, hf_pretraining, prefix):
    state = {
        (prefix + k.removeprefix("lxmert.") if k.startswith("lxmert.") else k): v
        for k, v in hf_pretraining.state_dict().items()
    }
    if prefix.startswith("module."):
        state = {(k if k.startswith("module.") else "module." + k): v for k, v in state.items()}
    torch.save(state, tmp_path / "Epoch20_LXRT.pth")
    # The file has no config: every field but the head count is read off the tensor shapes.
    ours = LxmertForPreTraining.from_pretrained(
        tmp_path / "Epoch20_LXRT.pth", config={"num_attention_heads": 4}
    )
    assert ours.load_report.layout == "authors-pretraining"
    assert ours.load_report.missing_keys == [] and ours.load_report.unexpected_keys == []
    assert ours.config == tiny_config
    assert_pretraining_parity(ours, hf_pretraining, tiny_config)

    encoder = LxmertModel.from_pretrained(tmp_path / "Epoch20_LXRT.pth", config=tiny_config)
    assert encoder.load_report.missing_keys == []
    assert all(
        k.startswith(("cls.", "obj_predict_head.", "answer_head."))
        for k in encoder.load_report.unexpected_keys
    )
    batch = random_batch(tiny_config)
    with torch.no_grad():
        assert_close(
            "pooled_output", encoder(**batch).pooled_output, hf_pretraining.lxmert(**batch).pooled_output
        )


def test_transformers_question_answering_and_the_authors_task_layout(tmp_path, tiny_config):
    hf = perturb_(transformers.LxmertForQuestionAnswering(transformers_config(tiny_config))).eval()
    hf.save_pretrained(tmp_path / "hf")
    # The authors' VQA/GQA model: lxrt_encoder.model.bert.* and a top-level logit_fc.*.
    authors = {
        k.replace("lxmert.", "lxrt_encoder.model.bert.", 1).replace(
            "answer_head.logit_fc.", "logit_fc.", 1
        ): v
        for k, v in hf.state_dict().items()
    }
    torch.save(authors, tmp_path / "BEST.pth")
    batch = random_batch(tiny_config)
    with torch.no_grad():
        expected = hf(**batch).question_answering_score
    for path, config in ((tmp_path / "hf", None), (tmp_path / "BEST.pth", {"num_attention_heads": 4})):
        ours = LxmertForQuestionAnswering.from_pretrained(path, config=config)
        assert ours.load_report.missing_keys == [] and ours.load_report.unexpected_keys == [], path
        with torch.no_grad():
            assert_close(f"question_answering_score ({path.name})", ours(**batch).logits, expected)


def test_authors_nlvr2_task_layout(tmp_path, tiny_config):
    hf = perturb_(transformers.LxmertModel(transformers_config(tiny_config))).eval()
    D = tiny_config.hidden_size
    # The authors' NLVR2 classifier, built here independently of our model.
    head = perturb_(
        torch.nn.Sequential(
            torch.nn.Linear(2 * D, 2 * D),
            torch.nn.GELU(),
            torch.nn.LayerNorm(2 * D, eps=1e-12),
            torch.nn.Linear(2 * D, 2),
        )  # fmt: skip
    ).eval()
    state = {"lxrt_encoder.model.module.bert." + k: v for k, v in hf.state_dict().items()}  # --multiGPU
    state |= {"logit_fc." + k: v for k, v in head.state_dict().items()}
    torch.save(state, tmp_path / "BEST.pth")
    ours = LxmertForNLVR2.from_pretrained(tmp_path / "BEST.pth", config={"num_attention_heads": 4})
    assert ours.load_report.layout == "authors-task"
    assert ours.load_report.missing_keys == [] and ours.load_report.unexpected_keys == []

    batch = random_batch(tiny_config, pairs=True)
    B = batch["input_ids"].shape[0]
    with torch.no_grad():
        pooled = [
            hf(
                input_ids=batch["input_ids"], visual_feats=batch["visual_feats"][:, i],
                visual_pos=batch["visual_pos"][:, i], attention_mask=batch["attention_mask"],
                visual_attention_mask=batch["visual_attention_mask"][:, i],
            ).pooled_output
            for i in (0, 1)
        ]  # fmt: skip
        expected = head(torch.cat(pooled, dim=-1).view(B, -1))
        assert_close("NLVR2 logits", ours(**batch).logits, expected)
