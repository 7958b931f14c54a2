"""Word and region masking, answer sampling, matching negatives and QA targets of the pre-training data."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from pretrain_fixture import REGIONS, build_world

from lxmert.answers import AnswerTable
from lxmert.data.store import FeatureStores
from lxmert.tokenization import LxmertTokenizer
from training.tasks.pretraining import (
    IGNORE,
    REGION_KEYS,
    PretrainConfig,
    PretrainDataset,
    mask_objects,
    mask_words,
    pretrain_collate,
    read_pretrain_json,
    sample_answer,
)

CLS, SEP, PAD, MASK = 2, 3, 0, 4
SENTENCE = np.array([CLS, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, SEP, PAD, PAD])


pytestmark = pytest.mark.usefixtures("single_thread")


def test_word_masking_golden_values():
    # Seed 5 at rate 0.5, worked by hand from the draws (u, a, random ids) that mask_words documents:
    # u < 0.5 at positions 3-8, 11, 12; a = .061 .556 .271 .880 .064 .679 | .895 .872 there, so positions 6, 11
    # and 12 take the random ids 15, 9, 3 and the others become [MASK].
    inputs, labels = mask_words(SENTENCE, np.random.default_rng(5), 0.5, MASK, 30, [CLS, SEP, PAD])
    assert inputs.tolist() == [CLS, 10, 11, MASK, MASK, MASK, 15, MASK, MASK, 18, 19, 9, 3, SEP, PAD, PAD]
    assert labels.tolist() == [IGNORE] * 3 + [12, 13, 14, 15, 16, 17] + [IGNORE] * 2 + [20, 21] + [IGNORE] * 3
    # Seed 0 at the paper's 0.15: two [MASK]s and one kept token (position 13's u < 0.15 falls on [SEP]).
    inputs, labels = mask_words(SENTENCE, np.random.default_rng(0), 0.15, MASK, 30, [CLS, SEP, PAD])
    assert inputs.tolist() == [CLS, 10, MASK, MASK, 13, 14, 15, 16, 17, 18, 19, 20, 21, SEP, PAD, PAD]
    assert np.flatnonzero(labels != IGNORE).tolist() == [2, 3, 11]


def test_word_masking_statistics():
    rng = np.random.default_rng(1)
    vocab = 10_000  # large, so a "random" replacement almost never equals the original token
    ids = np.concatenate([[CLS], rng.integers(5, vocab, 18), [SEP], [PAD] * 4])
    picked = to_mask = to_random = kept = 0
    for _ in range(4000):
        inputs, labels = mask_words(ids, rng, 0.15, MASK, vocab, [CLS, SEP, PAD])
        is_picked = labels != IGNORE
        assert not is_picked[[0, 19, 20, 21, 22, 23]].any(), "a special token or padding was masked"
        assert (labels[is_picked] == ids[is_picked]).all() and (inputs[~is_picked] == ids[~is_picked]).all()
        picked += is_picked.sum()
        to_mask += (inputs[is_picked] == MASK).sum()
        kept += (inputs[is_picked] == ids[is_picked]).sum()
        to_random += ((inputs[is_picked] != MASK) & (inputs[is_picked] != ids[is_picked])).sum()
    eligible = 4000 * 18
    assert abs(picked / eligible - 0.15) < 0.006, picked / eligible
    for name, count, share in (("[MASK]", to_mask, 0.8), ("random", to_random, 0.1), ("kept", kept, 0.1)):
        assert abs(count / picked - share) < 0.015, (name, count / picked)


def test_object_masking_zeroes_replaces_and_keeps():
    rng = np.random.default_rng(2)
    feats = rng.uniform(1, 2, (36, 8)).astype(np.float32)  # no zero rows, no 5.0 anywhere
    actions = Counter()
    for _ in range(3000):
        masked, feat_mask = mask_objects(feats, rng, 0.15, lambda r: np.full(8, 5.0, np.float32))
        picked = feat_mask.astype(bool)
        assert (masked[~picked] == feats[~picked]).all(), "an unpicked region changed"
        for row in np.flatnonzero(picked):
            if (masked[row] == 0).all():
                actions["zero"] += 1
            elif (masked[row] == 5.0).all():
                actions["random"] += 1
            else:
                assert (masked[row] == feats[row]).all()
                actions["kept"] += 1
    total = sum(actions.values())
    assert abs(total / (3000 * 36) - 0.15) < 0.005
    for name, share in (("zero", 0.8), ("random", 0.1), ("kept", 0.1)):
        assert abs(actions[name] / total - share) < 0.015, (name, actions[name] / total)


def test_answers_are_sampled_in_proportion_to_their_scores():
    rng = np.random.default_rng(3)
    draws = Counter(sample_answer([(7, 1.0), (2, 0.3)], rng) for _ in range(13_000))
    assert set(draws) == {7, 2}
    assert abs(draws[7] / 13_000 - 1 / 1.3) < 0.015
    assert sample_answer([], rng) == IGNORE and sample_answer([(1, 0.0)], rng) == IGNORE


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


def make_dataset(world, **overrides) -> PretrainDataset:
    config = PretrainConfig(world=str(world), **overrides)
    tokenizer = LxmertTokenizer(world / "vocab.txt")
    return PretrainDataset(
        read_pretrain_json(config.train_paths()),
        FeatureStores(config.feature_paths()),
        tokenizer,
        AnswerTable.from_all_ans(config.answers_path()),
        config,
        seed=11,
    )


def test_items_carry_every_target(world):
    data = make_dataset(world, qa_from_epoch=0)
    assert len(data) == 12 * 7  # 12 images × (4 captions + 3 questions)
    item = data[0]
    assert item["input_ids"].shape == item["lm_labels"].shape == (20,)
    assert item["visual_feats"].shape == item["feat_target"].shape == (REGIONS, 12)
    assert ((item["visual_pos"] >= 0) & (item["visual_pos"] <= 1)).all()
    special = {data.tokenizer.cls_token_id, data.tokenizer.sep_token_id, data.tokenizer.pad_token_id}
    for i in range(len(data)):
        item = data[i]
        picked = item["lm_labels"] != IGNORE
        assert not any(t in special for t in item["lm_labels"][picked].tolist())


def test_negatives_come_from_other_images_and_get_no_answer(world):
    data = make_dataset(world, qa_from_epoch=0)
    matched = []
    for epoch in range(3):
        data.set_epoch(epoch)
        for i in range(len(data)):
            item = data[i]
            source = int(item["sentence_index"])
            original = torch.where(item["lm_labels"] != IGNORE, item["lm_labels"], item["input_ids"])
            assert original.tolist() == data.token_ids[source].tolist()
            matched.append(int(item["matched"]))
            if item["matched"] == 0:
                assert data.items[source].img_id != data.items[i].img_id
                assert item["ans"] == IGNORE
            else:
                assert source == i
                if data.items[i].answers:
                    assert int(item["ans"]) in {a for a, _ in data.items[i].answers}
    assert abs(np.mean(matched) - 0.5) < 0.06, np.mean(matched)


def test_mismatched_pairs_keep_their_masks_but_lose_their_word_targets_when_asked(world):
    scored, unscored = make_dataset(world), make_dataset(world, mask_lm_on_mismatched=False)
    kinds = Counter()
    for i in range(len(scored)):
        a, b = scored[i], unscored[i]
        assert torch.equal(a["input_ids"], b["input_ids"])  # the same [MASK]s: they say nothing of the label
        picked = a["lm_labels"] != IGNORE
        if a["matched"]:
            assert torch.equal(a["lm_labels"], b["lm_labels"])
        else:
            assert (b["lm_labels"] == IGNORE).all()
        kinds[(int(a["matched"]), bool(picked.any()))] += 1
    assert kinds[(0, True)] > 0 and kinds[(1, True)] > 0  # both kinds of pair had masked words


def test_qa_targets_wait_for_their_epoch(world):
    data = make_dataset(world, qa_from_epoch=2)
    for epoch, expect_answers in ((0, False), (1, False), (2, True)):
        data.set_epoch(epoch)
        has_answer = any(data[i]["ans"] != IGNORE for i in range(len(data)))
        assert has_answer == expect_answers, epoch


def test_items_are_a_function_of_seed_epoch_and_index(world):
    data = make_dataset(world)
    first = data[5]
    data[9]  # other items in between change nothing
    again = data[5]
    for key in first:
        assert torch.equal(first[key], again[key]), key
    data.set_epoch(1)
    changed = data[5]
    assert any(not torch.equal(first[k], changed[k]) for k in ("input_ids", "visual_feats", "matched"))


def test_collate_pads_regions_and_answer_lists(world):
    data = make_dataset(world, qa_from_epoch=0)
    caption, question = (
        data[0],
        data[4],
    )  # items 0-3 are captions, 4 is a question with answers {colour: 1, other: 0.3}
    caption = {k: v[:4] if k in REGION_KEYS else v for k, v in caption.items()}  # an image with 4 regions
    batch = pretrain_collate([caption, question])
    assert batch["visual_feats"].shape == batch["feat_target"].shape == (2, REGIONS, 12)
    assert batch["visual_attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1] * REGIONS]
    assert (batch["visual_feats"][0, 4:] == 0).all() and (batch["obj_conf"][0, 4:] == 0).all()
    assert batch["ans_ids"][0].tolist() == [-1, -1]
    assert batch["ans_scores"][1].tolist() == pytest.approx([1.0, 0.3])
