"""Probing across a data set: per-layer linear probes, hidden-state projections, cross-modal nearest neighbours.

A :class:`StateBank` holds every token's and region's hidden state at every layer for a list of examples, with
what each row is (example, position, token) and the regions' labels (``Example.region_labels``, e.g. a synthetic
scene's shape / colour / size, plus the detector's ``object`` and ``attribute``). Probes are multinomial logistic
regressions trained full-batch with L-BFGS on standardised states, split by *example* so no image is on both sides.
Projections are PCA (an SVD of the centred states): a nonlinear map (UMAP, t-SNE) would need a further dependency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .forward import run
from .inputs import Example


@dataclass
class StateBank:
    """Hidden states of many examples.

    Attributes:
        lang: per layer (tokens, D) states of every token of every example (layer 0 = embeddings).
        vis: per layer (regions, D) states of every region.
        token_refs: (example index, position, token string) of each ``lang`` row.
        region_refs: (example index, region index) of each ``vis`` row.
        region_labels: label name → (regions,) integer labels (-1 where an example lacks that label).
    """

    lang: list[np.ndarray]
    vis: list[np.ndarray]
    token_refs: list[tuple[int, int, str]]
    region_refs: list[tuple[int, int]]
    region_labels: dict[str, np.ndarray]

    def stream(self, name: str) -> list[np.ndarray]:
        if name not in ("lang", "vis"):
            raise ValueError(f"stream must be 'lang' or 'vis', got {name!r}")
        return self.lang if name == "lang" else self.vis


def collect_states(model: nn.Module, examples: Sequence[Example]) -> StateBank:
    """Run every example and keep all hidden states with their labels."""
    if not examples:
        raise ValueError("collect_states needs at least one example")
    lang: list[list[np.ndarray]] = []
    vis: list[list[np.ndarray]] = []
    token_refs, region_refs = [], []
    names = sorted({name for e in examples for name in e.region_labels} | {"object", "attribute"})
    labels: dict[str, list[np.ndarray]] = {name: [] for name in names}
    with torch.no_grad():
        for k, example in enumerate(examples):
            output = run(model, example, output_hidden_states=True)
            if not lang:
                lang = [[] for _ in output.language_hidden_states]
                vis = [[] for _ in output.vision_hidden_states]
            for layer, state in enumerate(output.language_hidden_states):
                lang[layer].append(state[0].float().cpu().numpy())
            for layer, state in enumerate(output.vision_hidden_states):
                vis[layer].append(state[0].float().cpu().numpy())
            token_refs += [(k, i, t) for i, t in enumerate(example.tokens)]
            region_refs += [(k, r) for r in range(example.num_regions)]
            known = {**example.region_labels, "object": example.object_ids, "attribute": example.attr_ids}
            for name in names:
                value = known.get(name)
                missing = np.full(example.num_regions, -1, dtype=np.int64)
                labels[name].append(missing if value is None else value.cpu().numpy().astype(np.int64))
    return StateBank(
        lang=[np.concatenate(rows) for rows in lang],
        vis=[np.concatenate(rows) for rows in vis],
        token_refs=token_refs,
        region_refs=region_refs,
        region_labels={name: np.concatenate(rows) for name, rows in labels.items()},
    )


@dataclass
class ProbeResult:
    """One linear probe.

    Attributes:
        train_accuracy: accuracy on the training examples.
        test_accuracy: accuracy on held-out examples.
        majority_accuracy: held-out accuracy of always predicting the training set's most common label.
        num_train: training rows.
        num_test: held-out rows.
    """

    train_accuracy: float
    test_accuracy: float
    majority_accuracy: float
    num_train: int
    num_test: int


def linear_probe(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    test_fraction: float = 0.3,
    weight_decay: float = 1e-3,
    max_iter: int = 200,
    seed: int = 0,
) -> ProbeResult:
    """Fit a multinomial logistic regression on some groups (examples) and test it on the others.

    Args:
        features: (N, D) states.
        labels: (N,) integer labels; rows labelled -1 are ignored.
        groups: (N,) the example each row comes from; whole examples go to one side of the split.
        test_fraction: share of examples held out.
        weight_decay: L2 penalty on the weights.
        max_iter: L-BFGS iterations.
        seed: the split's seed.
    """
    keep = labels >= 0
    features, labels, groups = features[keep], labels[keep], groups[keep]
    # Classes numbered 0..C-1 by the labels that occur: a 1600-object vocabulary would otherwise give the solver
    # 1600 outputs where a few dozen are seen.
    labels = np.unique(labels, return_inverse=True)[1].reshape(-1)
    unique_groups = np.unique(groups)
    if len(unique_groups) < 2:
        raise ValueError("a probe needs labelled rows from at least two examples (one to train, one to test)")
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(unique_groups)
    num_test = min(max(1, round(test_fraction * len(shuffled))), len(shuffled) - 1)
    test = np.isin(groups, shuffled[:num_test])
    x = torch.as_tensor(features, dtype=torch.float64)
    mean, std = x[~test].mean(0), x[~test].std(0).clamp(min=1e-6)
    x = (x - mean) / std
    y = torch.as_tensor(labels, dtype=torch.long)
    num_classes = int(labels.max()) + 1
    linear = nn.Linear(x.shape[1], num_classes).double()
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")
    train_x, train_y = x[~torch.as_tensor(test)], y[~torch.as_tensor(test)]

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (
            nn.functional.cross_entropy(linear(train_x), train_y) + weight_decay * linear.weight.pow(2).sum()
        )
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predicted = linear(x).argmax(-1).numpy()
    majority = np.bincount(labels[~test], minlength=num_classes).argmax()
    return ProbeResult(
        train_accuracy=float((predicted[~test] == labels[~test]).mean()),
        test_accuracy=float((predicted[test] == labels[test]).mean()),
        majority_accuracy=float((labels[test] == majority).mean()),
        num_train=int((~test).sum()),
        num_test=int(test.sum()),
    )


def probe_layers(bank: StateBank, label: str, seed: int = 0, **probe_options) -> list[ProbeResult]:
    """A region-label probe at every vision layer (layer 0 = the visual feature encoder's output)."""
    if label not in bank.region_labels:
        raise KeyError(f"no region label {label!r}; the bank has {sorted(bank.region_labels)}")
    groups = np.array([k for k, _ in bank.region_refs])
    return [
        linear_probe(states, bank.region_labels[label], groups, seed=seed, **probe_options)
        for states in bank.vis
    ]


def pca(states: np.ndarray, dims: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, D) states on their top ``dims`` principal components.

    Returns:
        (N, dims) coordinates and the (dims,) share of variance each component explains.
    """
    centred = np.asarray(states, dtype=np.float64) - np.mean(states, axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    share = variance[:dims] / variance.sum() if variance.sum() > 0 else np.zeros(min(dims, len(variance)))
    return centred @ components[:dims].T, share


def joint_projection(bank: StateBank, layer: int, dims: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """PCA of tokens and regions together at a cross layer's depth, so the two modalities share axes.

    ``layer`` counts from the end of each stream (-1 = the last cross layer's output), since the two streams
    have different depths before the cross layers.

    Returns:
        (tokens, dims) and (regions, dims) coordinates.
    """
    lang, vis = bank.lang[layer], bank.vis[layer]
    coords, _ = pca(np.concatenate([lang, vis]), dims)
    return coords[: len(lang)], coords[len(lang) :]


@dataclass
class Neighbour:
    """A row of the bank near a query, by cosine similarity."""

    stream: str  # lang or vis
    row: int
    example: int
    position: int  # token position or region index
    token: str | None  # the token, for a language row
    similarity: float


def nearest_neighbours(
    bank: StateBank, layer: int, query_stream: str, query_row: int, k: int = 5, cross_modal: bool = True
) -> list[Neighbour]:
    """The ``k`` rows most similar (cosine) to one token or region at ``layer`` (counted as in
    :func:`joint_projection`), among the other modality (``cross_modal``) or the same one (itself excluded)."""
    query = bank.stream(query_stream)[layer][query_row]
    target_stream = ({"lang": "vis", "vis": "lang"}[query_stream]) if cross_modal else query_stream
    states = bank.stream(target_stream)[layer]
    similarity = states @ query / (np.linalg.norm(states, axis=1) * np.linalg.norm(query) + 1e-12)
    if target_stream == query_stream:
        similarity[query_row] = -np.inf
    neighbours = []
    for row in np.argsort(-similarity)[:k].tolist():
        if target_stream == "lang":
            example, position, token = bank.token_refs[row]
        else:
            (example, position), token = bank.region_refs[row], None
        neighbours.append(Neighbour(target_stream, row, example, position, token, float(similarity[row])))
    return neighbours


__all__ = [
    "Neighbour",
    "ProbeResult",
    "StateBank",
    "collect_states",
    "joint_projection",
    "linear_probe",
    "nearest_neighbours",
    "pca",
    "probe_layers",
]
