"""The VQA / GQA / NLVR2 tasks on a toy world: batches, model initialisation, ablations and running metrics."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
from finetune_toy import GQA_ANSWERS, PRETRAIN_ANSWERS, VQA_ANSWERS, build

from lxmert.checkpoints import CheckpointError, qa_head_trained, read_state_dict
from lxmert.data.metrics import gqa_scores, nlvr2_scores, vqa_scores
from lxmert.data.task_files import FINETUNE_TASKS, REQUIRED_KEYS
from lxmert.tokenization import LxmertTokenizer
from training.tasks import PRETRAIN_TASK, TASKS, get_task
from training.tasks.base import metrics_from_sums


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return build(tmp_path_factory.mktemp("toy"))


def make_task(toy, name: str, **overrides):
    task_class = get_task(name)
    config = task_class.default_config(data=str(toy[name]), features=str(toy["features"]), **overrides)
    return task_class(config, LxmertTokenizer(toy["init"] / "vocab.txt"))


def batches(task, items, size=5):
    dataset = task.dataset(items)
    for start in range(0, len(dataset), size):
        yield task.collate([dataset[i] for i in range(start, min(start + size, len(dataset)))])


def predictions_of(task, model, items):
    with torch.no_grad():
        return {items[i][task.id_key]: p for b in batches(task, items) for i, p in task.predict(model, b)}


def test_registry_has_the_three_tasks():
    assert {get_task(n).name for n in ("vqa", "gqa", "nlvr2")} == {"vqa", "gqa", "nlvr2"}
    assert get_task("gqa").train_defaults["lr"] == 1e-5 and get_task("vqa").train_defaults["lr"] == 5e-5
    assert get_task("nlvr2").train_defaults["batch_size"] == 32


def test_registry_fine_tunes_lxmert_s_one_task_list():
    # lxmert cannot import the registry, so the registry follows lxmert's list: the same tasks, in its order, and
    # every task registered has a file format.
    assert tuple(name for name in TASKS if name != PRETRAIN_TASK) == FINETUNE_TASKS
    assert set(TASKS) == set(REQUIRED_KEYS)
    assert all(get_task(name).name == name for name in TASKS)


def test_qa_batch_pads_regions_and_builds_soft_targets(toy):
    task = make_task(toy, "vqa")
    items = task.load_items("train")
    batch = next(batches(task, items, size=4))
    B, N = 4, len(VQA_ANSWERS)
    assert batch["input_ids"].shape[0] == B and batch["target"].shape == (B, N)
    # img0 has 2 boxes, img1 3: regions are padded to the widest image and masked.
    assert batch["visual_feats"].shape == (B, 3, 8) and batch["visual_pos"].shape == (B, 3, 4)
    assert batch["visual_attention_mask"].sum(-1).tolist() == [2, 2, 2, 3]
    assert batch["visual_feats"][0, 2].abs().sum() == 0
    # Label {"yes": 1.0, "no": 0.3} (or the reverse) → that vector; "pink" is outside the table and dropped.
    first = items[0]["label"]
    assert batch["target"][0].tolist() == pytest.approx([first.get(a, 0.0) for a in VQA_ANSWERS])
    assert batch["target"][2].sum() == pytest.approx(1.0)  # {"red"/"blue": 1.0, "pink": 0.3}
    assert batch["breakdowns"][:3] == [["yes/no"], ["number"], ["other"]]


def test_qa_head_rows_transfer_by_answer_string(toy):
    task = make_task(toy, "vqa")
    model = task.build_model(str(toy["init"]), from_scratch=False)
    source = read_state_dict(toy["init"] / "model.safetensors")
    new_w = model.answer_head.logit_fc[3].weight
    old_w = source["answer_head.logit_fc.3.weight"]
    assert new_w.shape[0] == len(VQA_ANSWERS) and model.training
    for label, answer in enumerate(VQA_ANSWERS):
        if answer in PRETRAIN_ANSWERS:
            assert torch.equal(new_w[label], old_w[PRETRAIN_ANSWERS.index(answer)]), answer
        else:
            assert new_w[label].abs().sum() == 0, (
                answer
            )  # unseen answers start at zero, as the authors' loader
    encoder = "lxmert.encoder.x_layers.0.visual_attention.att.query.weight"
    assert torch.equal(model.state_dict()[encoder], source[encoder])


def _pretraining_record(directory, task_qa: bool, qa_from_epoch: int, epoch: int, batches_done: int = 0):
    (directory / "pretrain_config.json").write_text(
        json.dumps({"task_qa": task_qa, "qa_from_epoch": qa_from_epoch})
    )
    (directory / "meta.json").write_text(
        json.dumps({"step": 1, "epoch": epoch, "batches_done": batches_done})
    )


@pytest.mark.parametrize(
    ("task_qa", "qa_from_epoch", "epoch", "batches_done", "trained"),
    [
        (False, 0, 5, 0, False),  # the QA task was off
        (True, 10, 6, 0, False),  # stopped at 6 epochs, QA from the 11th
        (True, 6, 6, 0, False),  # saved at the end of the last epoch without QA
        (True, 6, 6, 3, True),  # three batches into the first epoch with QA
        (True, 3, 6, 0, True),
    ],
)
def test_a_qa_head_that_never_trained_is_named(
    tmp_path, task_qa, qa_from_epoch, epoch, batches_done, trained
):
    _pretraining_record(tmp_path, task_qa, qa_from_epoch, epoch, batches_done)
    assert qa_head_trained(tmp_path) is trained


def test_qa_head_state_is_unknown_without_a_pretraining_record(tmp_path):
    assert qa_head_trained(tmp_path) is None
    (tmp_path / "pretrain_config.json").write_text(json.dumps({"task_qa": True, "qa_from_epoch": 2}))
    (tmp_path / "meta.json").write_text(json.dumps({"step": 9}))  # saved before meta recorded the epoch
    assert qa_head_trained(tmp_path) is None
    (tmp_path / "pretrain_config.json").write_text("{half-written")  # a record that only informs: unknown
    assert qa_head_trained(tmp_path) is None
    # The checkpoint's own file: refused by name, as at load.
    (tmp_path / "meta.json").write_text("{half-written")
    with pytest.raises(CheckpointError, match="meta.json"):
        qa_head_trained(tmp_path)


def test_transferring_an_untrained_qa_head_warns(toy, tmp_path):
    init = tmp_path / "init"
    shutil.copytree(toy["init"], init)
    task = make_task(toy, "vqa")
    _pretraining_record(init, task_qa=True, qa_from_epoch=10, epoch=6)
    with pytest.warns(UserWarning, match="never trained"):
        task.build_model(str(init), from_scratch=False)
    _pretraining_record(init, task_qa=True, qa_from_epoch=3, epoch=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task.build_model(str(init), from_scratch=False)


def test_from_scratch_keeps_architecture_not_weights(toy):
    task = make_task(toy, "gqa")
    model = task.build_model(str(toy["init"]), from_scratch=True)
    source = read_state_dict(toy["init"] / "model.safetensors")
    key = "lxmert.encoder.x_layers.0.visual_attention.att.query.weight"
    assert model.state_dict()[key].shape == source[key].shape
    assert not torch.equal(model.state_dict()[key], source[key])
    assert model.answer_head.logit_fc[3].out_features == len(GQA_ANSWERS)


def test_fresh_head_loads_encoder_only(toy):
    task = make_task(toy, "vqa", head="fresh")
    model = task.build_model(str(toy["init"]), from_scratch=False)
    source = read_state_dict(toy["init"] / "model.safetensors")
    key = "lxmert.encoder.x_layers.0.visual_attention.att.query.weight"
    assert torch.equal(model.state_dict()[key], source[key])
    assert model.answer_head.logit_fc[3].weight.abs().sum() > 0


@pytest.mark.parametrize("name, scorer", [("vqa", vqa_scores), ("gqa", gqa_scores)])
def test_running_accuracy_equals_official_scorer(toy, name, scorer):
    task = make_task(toy, name)
    model = task.build_model(str(toy["init"]), from_scratch=False).eval()
    items = task.load_items("minival")
    with torch.no_grad():
        running = metrics_from_sums(task.evaluate(model, batches(task, items)))
    official = scorer(predictions_of(task, model, items), items)
    for metric, value in official.items():
        assert running[metric] == pytest.approx(value), metric
    assert "qa_loss" in running


def test_nlvr2_pairs_and_consistency(toy):
    task = make_task(toy, "nlvr2")
    items = task.load_items("valid")
    batch = next(batches(task, items, size=3))
    assert batch["visual_feats"].shape[:2] == (3, 2) and batch["visual_attention_mask"].shape[:2] == (3, 2)
    model = task.build_model(str(toy["init"]), from_scratch=False).eval()
    with torch.no_grad():
        running = metrics_from_sums(task.evaluate(model, batches(task, items, size=3)))
    official = nlvr2_scores(predictions_of(task, model, items), items)
    assert running["accuracy"] == pytest.approx(official["accuracy"])
    assert running["consistency"] == pytest.approx(official["consistency"])


def test_vision_ablation_gives_every_item_the_same_blank_image(toy):
    task = make_task(toy, "vqa", ablate="vision")
    batch = next(batches(task, task.load_items("train"), size=6))
    assert batch["visual_feats"].shape == (6, 1, 8)
    assert batch["visual_feats"].abs().sum() == 0 and batch["visual_pos"].abs().sum() == 0
    assert batch["visual_attention_mask"].all()


def test_language_ablation_leaves_cls_sep(toy):
    task = make_task(toy, "nlvr2", ablate="language")
    batch = next(batches(task, task.load_items("train"), size=2))
    tok = task.tokenizer
    assert batch["input_ids"].tolist() == [[tok.cls_token_id, tok.sep_token_id]] * 2
    assert batch["visual_feats"].abs().sum() > 0


def test_missing_features_are_named(toy, tmp_path):
    task = make_task(toy, "vqa")
    items = [{**task.load_items("train")[0], "img_id": "nowhere"}]
    with pytest.raises(KeyError, match="nowhere"):
        task.dataset(items)


def test_ce_loss_ignores_unanswerable_questions(toy):
    task = make_task(toy, "vqa", loss="ce")
    model = task.build_model(str(toy["init"]), from_scratch=False)
    batch = next(batches(task, task.load_items("train"), size=3))
    batch["target"][1] = 0.0  # no answer of this question is in the table
    losses, _ = task.compute(model, batch)
    assert torch.isfinite(losses["qa"])
    batch["target"][:] = 0.0
    losses, _ = task.compute(model, batch)
    assert losses["qa"].item() == 0.0


def test_feature_size_mismatch_is_named(toy):
    from lxmert.config import LxmertConfig
    from lxmert.modeling import LxmertForQuestionAnswering

    task = make_task(toy, "vqa")
    model = LxmertForQuestionAnswering(
        LxmertConfig.preset("tiny", visual_feat_dim=16, l_layers=1), num_labels=6
    )
    with pytest.raises(ValueError, match="takes 16-d region features but .* holds 8-d"):
        task.check_model(model)


@pytest.mark.parametrize("name", ["vqa", "nlvr2"])
def test_unreachable_parameters_are_the_last_cross_layers_vision_side(toy, name):
    task = make_task(toy, name)
    model = task.build_model(str(toy["init"]), from_scratch=False)
    frozen = task.freeze_unreachable(model, next(batches(task, task.load_items("train"), size=2)))
    # The toy model has one cross layer: its vision self-attention (10 tensors) and feed-forward (6).
    assert len(frozen) == 16 and all(n.startswith("lxmert.encoder.x_layers.0.visn_") for n in frozen), frozen
    params = dict(model.named_parameters())
    assert not any(params[n].requires_grad for n in frozen)
    assert all(p.grad is None for p in model.parameters())
