"""NLVR2-style statements: one sentence about a pair of images (left, right), true or false.

A statement is proposed from a first pair of scenes (so its objects are plausible), then judged on further pairs by
``evaluate``; ``sample_statement_set`` keeps drawing pairs until about half of them make it true, so that each
sentence has true and false pairs and NLVR2's consistency (all pairs of a sentence right) is meaningful.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.world.language import (
    ATTRIBUTE_VALUES,
    DIRECTIONS,
    NUMBER_WORDS,
    RELATION_PHRASE,
    filter_of,
    matches,
    noun_phrase,
    with_article,
)
from training.world.scenes import Scene, sample_scene


@dataclass
class Statement:
    text: str
    family: str
    params: dict[str, Any] = field(default_factory=dict)


def _count(scene: Scene, attrs: dict[str, str]) -> int:
    return sum(matches(o, attrs) for o in scene.objects)


def _has_relation(scene: Scene, a: dict[str, str], predicate: str, b: dict[str, str]) -> bool:
    return any(
        matches(scene.objects[r.subject], a) and matches(scene.objects[r.object], b)
        for r in scene.relations
        if r.predicate == predicate
    )


def evaluate(statement: Statement, left: Scene, right: Scene) -> bool:
    """Truth of a statement on a (left, right) pair of scenes."""
    p = statement.params
    family = statement.family
    if family == "count_total":
        return _count(left, p["attrs"]) + _count(right, p["attrs"]) == p["n"]
    if family == "both_contain":
        return _count(left, p["attrs"]) > 0 and _count(right, p["attrs"]) > 0
    if family == "one_contains":
        return (_count(left, p["attrs"]) > 0) != (_count(right, p["attrs"]) > 0)
    if family == "left_more":
        return _count(left, p["attrs"]) > _count(right, p["attrs"])
    if family == "side_exact":
        return _count(left if p["side"] == "left" else right, p["attrs"]) == p["n"]
    if family == "relation_somewhere":
        return any(_has_relation(s, p["a"], p["predicate"], p["b"]) for s in (left, right))
    if family == "none_contain":
        return _count(left, p["attrs"]) == 0 and _count(right, p["attrs"]) == 0
    raise ValueError(f"unknown statement family {family!r}")


def _pick_attrs(left: Scene, right: Scene, rng: np.random.Generator) -> dict[str, str]:
    scene = left if rng.random() < 0.5 else right
    return filter_of(scene.objects[rng.integers(len(scene.objects))], rng)


def _count_total(left: Scene, right: Scene, rng: np.random.Generator) -> Statement | None:
    attrs = _pick_attrs(left, right, rng)
    n = _count(left, attrs) + _count(right, attrs) + int(rng.integers(-1, 2))
    if not 1 <= n < len(NUMBER_WORDS):
        return None
    noun = noun_phrase(attrs, is_plural=n != 1)
    verb = "are" if n != 1 else "is"
    text = f"There {verb} exactly {NUMBER_WORDS[n]} {noun} in the two images."
    return Statement(text, "count_total", {"attrs": attrs, "n": n})


def _both_contain(left: Scene, right: Scene, rng: np.random.Generator) -> Statement | None:
    attrs = _pick_attrs(left, right, rng)
    return Statement(
        f"Both images contain {with_article(noun_phrase(attrs))}.", "both_contain", {"attrs": attrs}
    )


def _one_contains(left: Scene, right: Scene, rng: np.random.Generator) -> Statement | None:
    attrs = _pick_attrs(left, right, rng)
    return Statement(
        f"Exactly one image contains {with_article(noun_phrase(attrs))}.", "one_contains", {"attrs": attrs}
    )


def _left_more(left: Scene, right: Scene, rng: np.random.Generator) -> Statement | None:
    attrs = _pick_attrs(left, right, rng)
    text = f"The left image has more {noun_phrase(attrs, is_plural=True)} than the right image."
    return Statement(text, "left_more", {"attrs": attrs})


def _side_exact(left: Scene, right: Scene, rng: np.random.Generator) -> Statement | None:
    attrs = _pick_attrs(left, right, rng)
    side = "left" if rng.random() < 0.5 else "right"
    n = _count(left if side == "left" else right, attrs) + int(rng.integers(0, 2))
    if not 1 <= n < len(NUMBER_WORDS):
        return None
    noun = noun_phrase(attrs, is_plural=n != 1)
    text = f"The {side} image contains exactly {NUMBER_WORDS[n]} {noun}."
    return Statement(text, "side_exact", {"attrs": attrs, "side": side, "n": n})


def _relation_somewhere(left: Scene, right: Scene, rng: np.random.Generator) -> Statement | None:
    scene = left if rng.random() < 0.5 else right
    options = [r for r in scene.relations if r.predicate in DIRECTIONS]
    if not options:
        return None
    r = options[rng.integers(len(options))]
    a, b = filter_of(scene.objects[r.subject], rng), filter_of(scene.objects[r.object], rng)
    phrase = (
        f"{with_article(noun_phrase(a))} is {RELATION_PHRASE[r.predicate]} {with_article(noun_phrase(b))}"
    )
    return Statement(
        f"In at least one image, {phrase}.", "relation_somewhere", {"a": a, "predicate": r.predicate, "b": b}
    )


def _none_contain(left: Scene, right: Scene, rng: np.random.Generator) -> Statement | None:
    # A near miss of an object in the pair (one attribute changed) that neither image has.
    attrs = _pick_attrs(left, right, rng)
    key = str(rng.choice(list(attrs)))
    attrs[key] = str(rng.choice([v for v in ATTRIBUTE_VALUES[key] if v != attrs[key]]))
    return Statement(
        f"Neither image contains {with_article(noun_phrase(attrs))}.", "none_contain", {"attrs": attrs}
    )


STATEMENT_FAMILIES: tuple[Callable[[Scene, Scene, np.random.Generator], Statement | None], ...] = (
    _count_total,
    _both_contain,
    _one_contains,
    _left_more,
    _side_exact,
    _relation_somewhere,
    _none_contain,
)


def propose_statement(left: Scene, right: Scene, rng: np.random.Generator, max_tries: int = 30) -> Statement:
    """A statement about objects of the pair, true of it when one is found in ``max_tries`` proposals.

    Starting from a true pair lets the other pairs of a set be chosen to reach half true, half false: false pairs
    are easy to find, true ones are not.
    """
    fallback = None
    for _ in range(max_tries):
        statement = STATEMENT_FAMILIES[rng.integers(len(STATEMENT_FAMILIES))](left, right, rng)
        if statement is not None:
            if evaluate(statement, left, right):
                return statement
            fallback = fallback or statement
    return fallback or _both_contain(left, right, rng)


def sample_statement_set(
    rng: np.random.Generator, pairs: int = 4, size: int = 256, pool_factor: int = 3, proposals: int = 10
) -> tuple[Statement, list[tuple[Scene, Scene, bool]]]:
    """A statement and ``pairs`` image pairs with no image shared, about half of them making it true.

    Scenes are drawn into a pool of ``pool_factor * pairs``. Statements true of the first two scenes are proposed
    until one holds for 20-80% of the other pool pairs (else the closest to half is kept), so that true and false
    pairs both exist; each further pair is then the first unused pool pair, in random order, whose truth is the one
    still needed.

    Returns:
        The statement and a list of (left scene, right scene, truth).
    """
    pool = [sample_scene(rng, size) for _ in range(max(pool_factor, 1) * pairs)]
    rest = [(i, j) for i in range(2, len(pool)) for j in range(2, len(pool)) if i != j]
    statement, best_gap = None, 1.0
    for _ in range(proposals):
        candidate = propose_statement(pool[0], pool[1], rng)
        rate = float(np.mean([evaluate(candidate, pool[i], pool[j]) for i, j in rest])) if rest else 0.5
        if abs(rate - 0.5) < best_gap:
            statement, best_gap = candidate, abs(rate - 0.5)
        if best_gap <= 0.3:
            break
    found = [(pool[0], pool[1], evaluate(statement, pool[0], pool[1]))]
    used = {0, 1}
    for index in range(1, pairs):
        wanted = sum(t for *_, t in found) < (index + 1) / 2  # too few true so far -> look for a true pair
        free = [i for i in range(len(pool)) if i not in used]
        candidates = [(i, j) for i in free for j in free if i != j]
        candidates = [candidates[k] for k in rng.permutation(len(candidates))]
        truths = [evaluate(statement, pool[i], pool[j]) for i, j in candidates]
        pick = truths.index(wanted) if wanted in truths else 0
        (i, j), truth = candidates[pick], truths[pick]
        used |= {i, j}
        found.append((pool[i], pool[j], truth))
    return statement, found
