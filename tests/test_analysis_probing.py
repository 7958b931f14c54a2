"""Probing: a label written into the features is found by the probe; PCA and nearest neighbours by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from analysis_toy import FEAT_DIM, toy_example, toy_qa_model

from analysis.probing import (
    collect_states,
    joint_projection,
    linear_probe,
    nearest_neighbours,
    pca,
    probe_layers,
)


def labelled_examples(tokenizer, count: int = 12):
    """Examples whose region features carry a 3-way 'colour' in their first three dimensions."""
    g = torch.Generator().manual_seed(0)
    examples = []
    for k in range(count):
        base = toy_example(tokenizer, seed=k)
        colour = torch.randint(3, (base.num_regions,), generator=g)
        feats = 0.3 * torch.randn(base.num_regions, FEAT_DIM, generator=g)
        feats[torch.arange(base.num_regions), colour] += 3.0
        examples.append(dataclasses.replace(base, visual_feats=feats, region_labels={"colour": colour}))
    return examples


def test_collect_states_keeps_rows_and_labels_in_step(tokenizer):
    model = toy_qa_model()
    examples = labelled_examples(tokenizer, 3)
    bank = collect_states(model, examples)
    c = model.config
    assert len(bank.lang) == 1 + c.l_layers + c.x_layers and len(bank.vis) == 1 + c.r_layers + c.x_layers
    assert bank.lang[0].shape == (sum(e.num_tokens for e in examples), c.hidden_size)
    assert bank.vis[-1].shape == (sum(e.num_regions for e in examples), c.hidden_size)
    assert bank.region_refs[6] == (1, 1) and bank.token_refs[0] == (0, 0, "[CLS]")
    np.testing.assert_array_equal(
        bank.region_labels["colour"][5:10], examples[1].region_labels["colour"].numpy()
    )
    np.testing.assert_array_equal(bank.region_labels["object"][:5], examples[0].object_ids.numpy())


def test_probe_finds_a_linearly_encoded_label(tokenizer):
    bank = collect_states(toy_qa_model(), labelled_examples(tokenizer))
    results = probe_layers(bank, "colour")
    assert len(results) == len(bank.vis)
    first = results[0]
    assert first.test_accuracy >= 0.9 > first.majority_accuracy
    assert first.num_train + first.num_test == len(bank.region_refs)
    with pytest.raises(KeyError, match="shape"):
        probe_layers(bank, "shape")


def test_probe_splits_by_example_and_ignores_unlabelled_rows():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 4))
    labels = (features[:, 0] > 0).astype(np.int64)
    labels[:5] = -1
    groups = np.repeat(np.arange(8), 5)
    result = linear_probe(features, labels, groups, test_fraction=0.25)
    assert result.num_train + result.num_test == 35
    assert result.num_test == 10  # round(0.25 · 7 labelled examples) = 2 whole examples of 5 rows
    assert result.test_accuracy >= 0.8
    with pytest.raises(ValueError, match="two examples"):
        linear_probe(features[:5], labels[:5] * 0, groups[:5])


def test_pca_recovers_the_main_direction():
    rng = np.random.default_rng(0)
    t = rng.normal(size=100)
    direction = np.array([3.0, 4.0, 0.0]) / 5.0
    states = t[:, None] * direction * 10 + 0.01 * rng.normal(size=(100, 3))
    coords, share = pca(states, dims=2)
    assert share[0] > 0.999
    assert abs(np.corrcoef(coords[:, 0], t)[0, 1]) > 0.999


def test_nearest_neighbours_across_modalities(tokenizer):
    bank = collect_states(toy_qa_model(), labelled_examples(tokenizer, 3))
    neighbours = nearest_neighbours(bank, -1, "lang", query_row=1, k=4)
    assert [n.stream for n in neighbours] == ["vis"] * 4
    similarities = [n.similarity for n in neighbours]
    assert similarities == sorted(similarities, reverse=True)
    states, query = bank.vis[-1], bank.lang[-1][1]
    cosine = states @ query / (np.linalg.norm(states, axis=1) * np.linalg.norm(query))
    assert neighbours[0].row == int(cosine.argmax())
    assert (neighbours[0].example, neighbours[0].position) == bank.region_refs[neighbours[0].row]
    same = nearest_neighbours(bank, -1, "vis", query_row=2, k=3, cross_modal=False)
    assert all(n.stream == "vis" and n.row != 2 for n in same)
    tokens, regions = joint_projection(bank, -1)
    assert tokens.shape == (len(bank.token_refs), 2) and regions.shape == (len(bank.region_refs), 2)


def test_probe_depends_on_which_labels_differ_not_on_their_ids():
    # Visual Genome's object ids run to 1600; a probe sees only the classes present (here 4), so the numbering of
    # a large vocabulary neither changes the result nor sizes the solver.
    rng = np.random.default_rng(0)
    features = rng.normal(size=(80, 6))
    labels = rng.integers(0, 4, 80)
    features[:, 0] += labels  # one direction reads the label
    groups = np.repeat(np.arange(8), 10)
    dense = linear_probe(features, labels, groups)
    sparse = linear_probe(features, labels * 400 + 3, groups)
    assert sparse == dense and dense.test_accuracy > dense.majority_accuracy
