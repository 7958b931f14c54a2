"""The pre-training task on the model: losses at init, one batch overfitted, metrics, BERT-style initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from pretrain_fixture import build_world, pretrain_setup

from lxmert.bert_init import bert_language_state, init_language_from_bert
from lxmert.config import LxmertConfig
from lxmert.modeling import LxmertForPreTraining
from training.tasks import get_task
from training.tasks.pretraining import (
    PretrainTask,
    other_image_rows,
    pretrain_collate,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


def test_model_is_sized_from_the_world(world):
    _, _, cfg = pretrain_setup(world)
    assert (cfg.vocab_size, cfg.num_qa_labels, cfg.num_object_labels, cfg.num_attr_labels) == (60, 9, 5, 4)
    assert cfg.visual_feat_dim == 12 and cfg.hidden_size == LxmertConfig.preset("tiny").hidden_size


def test_model_shape_flags_override_the_preset(world):
    _, _, cfg = pretrain_setup(world, l_layers=1, r_layers=0, x_layers=3, initializer_range=0.1, dropout=0.0)
    assert (cfg.l_layers, cfg.r_layers, cfg.x_layers) == (1, 0, 3)
    assert cfg.initializer_range == 0.1
    assert cfg.hidden_dropout_prob == cfg.attention_probs_dropout_prob == 0.0
    model = LxmertForPreTraining(cfg)
    assert [
        len(model.lxmert.encoder.layer),
        len(model.lxmert.encoder.r_layers),
        len(model.lxmert.encoder.x_layers),
    ] == [1, 0, 3]
    _, _, preset = pretrain_setup(world)
    assert (preset.l_layers, preset.initializer_range, preset.hidden_dropout_prob) == (2, 0.02, 0.1)
    with pytest.raises(ValueError, match="r_layers"):
        pretrain_setup(world, r_layers=-2)


def test_losses_at_init_are_those_of_uniform_predictions(world):
    data, task, cfg = pretrain_setup(world)
    torch.manual_seed(0)
    model = LxmertForPreTraining(cfg).eval()
    batch = pretrain_collate([data[i] for i in range(len(data))])
    with torch.no_grad():
        losses, stats = task.compute(model, batch)
    assert set(losses) == {"mask_lm", "matched", "obj", "attr", "feat", "qa"}
    assert losses["mask_lm"].item() == pytest.approx(math.log(cfg.vocab_size), abs=0.1)
    assert losses["matched"].item() == pytest.approx(math.log(2), abs=0.05)
    assert losses["qa"].item() == pytest.approx(math.log(cfg.num_qa_labels), abs=0.1)
    # obj/attr: mean over all regions of confidence × CE, × 6.67; at init CE ≈ ln(classes).
    mean_conf = batch["obj_conf"].mean().item()
    assert losses["obj"].item() == pytest.approx(math.log(5) * mean_conf * 6.67, rel=0.1)
    num, count = stats["mask_lm_acc"]
    assert count == (batch["lm_labels"] != -100).sum() and 0 <= num <= count


def test_overfits_one_batch(world):
    data, task, cfg = pretrain_setup(world)
    torch.manual_seed(0)
    model = LxmertForPreTraining(cfg)
    batch = pretrain_collate([data[i] for i in range(8)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        losses, stats = task.compute(model, batch)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.2 * history[0], (history[0], history[-1])
    # Matching is the slowest head to fit (about 100 steps on this batch); the others are memorised by now.
    for name in ("mask_lm_acc", "obj_acc", "attr_acc"):
        num, count = stats[name]
        assert num == count > 0, (name, num, count)


def test_a_batch_without_masked_words_or_answers_still_trains(world):
    data, task, cfg = pretrain_setup(world, word_mask_rate=0.0, task_qa=False)
    model = LxmertForPreTraining(cfg)
    losses, stats = task.compute(model, pretrain_collate([data[0], data[1]]))
    assert set(losses) == {"mask_lm", "matched", "obj", "attr", "feat"}
    assert all(torch.isfinite(v) for v in losses.values()) and losses["mask_lm"].item() == 0.0
    assert stats["mask_lm_acc"][1] == 0
    # The masked-LM head ran without a target: it still gets a gradient, zero, as DDP needs of every head that ran.
    sum(losses.values()).backward()
    decoder = model.cls.predictions.transform.dense.weight.grad
    assert decoder is not None and not decoder.any()


def test_matching_is_not_scored_when_the_task_is_off(world):
    # Every pair is then matched: the untrained head's share of "matched" votes is no accuracy.
    data, task, cfg = pretrain_setup(world, task_matched=False)
    losses, stats = task.compute(LxmertForPreTraining(cfg), pretrain_collate([data[0], data[1]]))
    assert "matched" not in losses
    assert not {"matched_acc", "matched_acc_captions"} & set(stats)


def test_matching_accuracy_on_captions_counts_the_pairs_whose_sentence_is_a_caption(world):
    data, task, cfg = pretrain_setup(world)
    items = [data[i] for i in range(len(data))]
    # The flag follows the sentence shown (another image's for a negative), not the image's own item.
    for item in items:
        assert bool(item["caption"]) == (data.items[int(item["sentence_index"])].source == "cap")
    torch.manual_seed(0)
    model = LxmertForPreTraining(cfg).eval()
    batch = pretrain_collate(items)
    with torch.no_grad():
        _, stats = task.compute(model, batch)
        scores = model(
            input_ids=batch["input_ids"],
            visual_feats=batch["visual_feats"],
            visual_pos=batch["visual_pos"],
            attention_mask=batch["attention_mask"],
        ).cross_relationship_score
    rows = [i for i, item in enumerate(items) if data.items[int(item["sentence_index"])].source == "cap"]
    assert 0 < len(rows) < len(items)
    hits = sum(int(scores[i].argmax() == items[i]["matched"]) for i in rows)
    assert stats["matched_acc_captions"][0] == hits and stats["matched_acc_captions"][1] == len(rows)


def test_other_image_rows_pick_the_nearest_following_row_of_another_image():
    rows = other_image_rows(torch.tensor([0, 0, 1, 2, 2]))
    assert rows.tolist() == [2, 2, 3, 0, 0]
    assert other_image_rows(torch.tensor([4, 4, 4])) is None


def test_swapped_image_scores_rerun_the_model_with_another_image(world):
    data, task, cfg = pretrain_setup(world, word_mask_rate=0.5)
    torch.manual_seed(0)
    model = LxmertForPreTraining(cfg).eval()
    batch = pretrain_collate([data[i] for i in range(len(data))])
    rows = other_image_rows(batch["image_number"])
    assert (batch["image_number"][rows] != batch["image_number"]).all()
    on_matched = (batch["lm_labels"] != -100) & batch["matched"].bool()[:, None]
    assert 0 < on_matched.sum() < (batch["lm_labels"] != -100).sum()

    def hits(visual_rows):
        with torch.no_grad():
            logits = model(
                input_ids=batch["input_ids"],
                visual_feats=batch["visual_feats"][visual_rows],
                visual_pos=batch["visual_pos"][visual_rows],
                attention_mask=batch["attention_mask"],
            ).prediction_logits
        return int(((logits.argmax(-1) == batch["lm_labels"]) & on_matched).sum())

    with torch.no_grad():
        _, stats = task.compute(model, batch)
    own = torch.arange(len(rows))
    assert stats["mask_lm_acc_matched"] == (hits(own), on_matched.sum())
    assert stats["mask_lm_acc_swapped"] == (hits(rows), on_matched.sum())
    assert stats["qa_score_swapped"][1] == stats["qa_score"][1] > 0

    # Invariant: when every image is the same, showing "another" one changes nothing.
    for key in ("visual_feats", "visual_pos", "visual_attention_mask"):
        batch[key] = batch[key][:1].expand_as(batch[key]).clone()
    with torch.no_grad():
        _, stats = task.compute(model, batch)
    assert stats["mask_lm_acc_swapped"] == stats["mask_lm_acc_matched"]
    assert stats["qa_score_swapped"][0] == pytest.approx(stats["qa_score"][0].item())
    _, stats = task.compute(model.train(), batch)
    assert not {"mask_lm_acc_matched", "mask_lm_acc_swapped", "qa_score_swapped"} & set(stats)


def test_majority_baselines_match_a_direct_count(world):
    data, _, _ = pretrain_setup(world)
    chance = data.majority_baselines()
    # Every image has 3 questions; the first has two answers (1.0, 0.3), the others one (1.0): each question
    # of an image is about a different region, so a constant colour answer scores at most the colour's share.
    assert 0 < chance["qa_score"] <= 1 and chance["matched_acc"] == chance["matched_acc_captions"] == 0.5
    assert chance["mask_lm_acc_matched"] == chance["mask_lm_acc_swapped"] == chance["mask_lm_acc"]
    assert chance["qa_score_swapped"] == chance["qa_score"]
    objects = torch.cat([torch.from_numpy(data.features.get(i)["objects_id"]) for i in data.image_ids])
    assert chance["obj_acc"] == pytest.approx(
        objects.bincount().max().item() / len(objects)
    )  # 7 items per image


def test_registry_names_the_pretraining_task():
    assert get_task("pretrain") is PretrainTask
    with pytest.raises(KeyError, match="unknown task"):
        get_task("nope")


def test_language_encoder_starts_from_bert(tmp_path):
    transformers = pytest.importorskip("transformers")
    bert_config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=24,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    bert = transformers.BertForPreTraining(bert_config).eval()
    state = {k: v for k, v in bert.state_dict().items()}
    state["bert.embeddings.LayerNorm.gamma"] = state.pop("bert.embeddings.LayerNorm.weight")  # old TF naming
    state["bert.embeddings.LayerNorm.beta"] = state.pop("bert.embeddings.LayerNorm.bias")
    torch.save(state, tmp_path / "bert.bin")

    cfg = LxmertConfig.preset(
        "tiny",
        vocab_size=50,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=24,
        l_layers=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        visual_feat_dim=8,
        num_qa_labels=3,
        num_object_labels=4,
        num_attr_labels=4,
    )
    model = LxmertForPreTraining(cfg).eval()
    report = init_language_from_bert(model, tmp_path / "bert.bin")
    assert "lxmert.encoder.layer.1.output.dense.weight" in report.loaded
    assert "bert.encoder.layer.2.output.dense.weight" in report.ignored  # BERT's third layer has no place
    assert "bert.pooler.dense.weight" in report.ignored

    input_ids = torch.randint(1, 50, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[0, 5:] = 0
    with torch.no_grad():
        expected = bert.bert(input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[2]
        ours = model.lxmert(
            input_ids, torch.randn(2, 3, 8), torch.rand(2, 3, 4), mask, output_hidden_states=True
        ).language_hidden_states[2]
    diff = (ours - expected)[mask.bool()].abs().max().item()
    assert diff < 1e-5, f"language layer 2 differs from BERT's by {diff}"


def test_bert_keys_with_wrong_shapes_are_named(tmp_path):
    cfg = LxmertConfig.preset("tiny", vocab_size=50, visual_feat_dim=8, num_qa_labels=3)
    model = LxmertForPreTraining(cfg)
    bad = {"bert.embeddings.word_embeddings.weight": torch.zeros(51, cfg.hidden_size)}
    torch.save(bad, tmp_path / "bad.bin")
    with pytest.raises(ValueError, match="word_embeddings"):
        init_language_from_bert(model, tmp_path / "bad.bin")
    assert bert_language_state({"cls.predictions.bias": torch.zeros(1)}) == {}


def test_evaluate_scores_a_checkpoint_as_its_run_did(world, tmp_path):
    # --evaluate rebuilds the validation pairs from the same seed: the final model scores what the run reported
    # (with the same batches: losses are batch means, and swapped images come from the same batch).
    from training.tasks.pretraining_run import main

    common = ["--world", str(world), "--preset", "tiny", "--device", "cpu", "--threads", "1", "--seed", "3"]
    common += ["--batch-size", "8"]
    out = tmp_path / "run"
    summary = main([*common, "--output", str(out), "--epochs", "1", "--qa-from-epoch", "0"])
    scored = main([*common, "--evaluate", str(out / "final")])
    assert scored["valid"] == pytest.approx(summary["valid"])
    assert {"mask_lm_acc_swapped", "qa_score_swapped"} <= set(scored["valid"]) & set(scored["chance"])
    with pytest.raises(FileNotFoundError):
        main([*common, "--evaluate", str(tmp_path / "missing")])
