"""NLVR2-style statements: one sentence about what a pair of images (left, right) share or differ in, true or false.

Every statement compares the two images: a shape or colour that both contain, exactly one contains or neither
contains; which image has more of a shape or colour (or more objects); whether the two have as many of one. A model
must therefore look at both images, as in NLVR2: no statement can be settled from one image alone.

A statement is proposed from a first pair of scenes (so its objects are plausible), then judged on further pairs by
``evaluate``; ``sample_statement_set`` keeps drawing pairs until half of them make it true, so that each sentence
has true and false pairs, the labels are balanced, and NLVR2's consistency (all pairs of a sentence right) is
meaningful. ``read_statement`` recovers a statement from its text alone, which is what the symbolic oracle of
``training.experiments.nlvr2_oracle`` runs on.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.world.language import (
    ATTRIBUTE_VALUES,
    DESCRIPTOR_ORDER,
    matches,
    noun_phrase,
    with_article,
)
from training.world.scenes import KIND_BIAS, Scene, sample_scene

SIDES = ("left", "right")
COMPARED = ("shape", "colour")  # the attributes statements name and compare across the pair


@dataclass
class Statement:
    text: str
    family: str
    params: dict[str, Any] = field(default_factory=dict)


def _count(objects: Sequence[Any], attrs: dict[str, str]) -> int:
    return sum(matches(o, attrs) for o in objects)


def evaluate(statement: Statement, left: Sequence[Any], right: Sequence[Any]) -> bool:
    """Truth of a statement on the objects of a (left, right) pair of images.

    Args:
        statement: family and params as the families below build them (the text is not read).
        left, right: the objects of each image: anything with ``shape``, ``colour``, ``size`` and ``fill``
            attributes (``SceneObject``s, or objects read back from annotations or detections).
    """
    p = statement.params
    family = statement.family
    if family in ("both_contain", "one_contains", "none_contain"):
        present = (_count(left, p["attrs"]) > 0, _count(right, p["attrs"]) > 0)
        return {
            "both_contain": all,
            "one_contains": lambda x: sum(x) == 1,
            "none_contain": lambda x: not any(x),
        }[family](present)
    if family == "more":
        first, second = (left, right) if p["side"] == "left" else (right, left)
        return _count(first, p["attrs"]) > _count(second, p["attrs"])
    if family == "same_count":
        return _count(left, p["attrs"]) == _count(right, p["attrs"])
    raise ValueError(f"unknown statement family {family!r}")


def _pick_attrs(left: Scene, right: Scene, rng: np.random.Generator) -> dict[str, str]:
    """The shape or the colour of a random object of the pair."""
    scene = left if rng.random() < 0.5 else right
    obj = scene.objects[rng.integers(len(scene.objects))]
    key = COMPARED[rng.integers(len(COMPARED))]
    return {key: getattr(obj, key)}


def _presence(family: str, template: str) -> Callable[[Scene, Scene, np.random.Generator], Statement]:
    def propose(left: Scene, right: Scene, rng: np.random.Generator) -> Statement:
        attrs = _pick_attrs(left, right, rng)
        return Statement(template.format(with_article(noun_phrase(attrs))), family, {"attrs": attrs})

    propose.__name__ = f"_{family}"
    return propose


def _none_contain(left: Scene, right: Scene, rng: np.random.Generator) -> Statement:
    # Any shape or colour: one taken from the pair would make the first pair false every time.
    key = COMPARED[rng.integers(len(COMPARED))]
    attrs = {key: str(rng.choice(ATTRIBUTE_VALUES[key]))}
    return Statement(
        f"Neither image contains {with_article(noun_phrase(attrs))}.", "none_contain", {"attrs": attrs}
    )


def _more(left: Scene, right: Scene, rng: np.random.Generator) -> Statement:
    attrs = {} if rng.random() < 1 / 3 else _pick_attrs(left, right, rng)  # {}: "more objects"
    side = SIDES[rng.integers(2)]
    other = SIDES[1 - SIDES.index(side)]
    text = f"The {side} image has more {noun_phrase(attrs, is_plural=True)} than the {other} image."
    return Statement(text, "more", {"attrs": attrs, "side": side})


def _same_count(left: Scene, right: Scene, rng: np.random.Generator) -> Statement:
    attrs = _pick_attrs(left, right, rng)
    text = f"The two images have the same number of {noun_phrase(attrs, is_plural=True)}."
    return Statement(text, "same_count", {"attrs": attrs})


STATEMENT_FAMILIES: tuple[Callable[[Scene, Scene, np.random.Generator], Statement], ...] = (
    _presence("both_contain", "Both images contain {}."),
    _presence("one_contains", "Exactly one image contains {}."),
    _none_contain,
    _more,
    _same_count,
)

_NP = r"(?P<np>[a-z -]+?)"
_TEMPLATES = (
    ("both_contain", rf"Both images contain an? {_NP}\."),
    ("one_contains", rf"Exactly one image contains an? {_NP}\."),
    ("none_contain", rf"Neither image contains an? {_NP}\."),
    ("more", rf"The (?P<side>left|right) image has more {_NP} than the (?:left|right) image\."),
    ("same_count", rf"The two images have the same number of {_NP}\."),
)


@functools.cache
def _noun_phrases() -> dict[str, dict[str, str]]:
    """Every noun phrase of at most two attributes, singular and plural, mapped back to its attributes."""
    phrases: dict[str, dict[str, str]] = {}
    for n in range(3):
        for keys in itertools.combinations(DESCRIPTOR_ORDER, n):
            for values in itertools.product(*(ATTRIBUTE_VALUES[k] for k in keys)):
                attrs = dict(zip(keys, values, strict=True))
                for is_plural in (False, True):
                    phrases[noun_phrase(attrs, is_plural=is_plural)] = attrs
    return phrases


def read_statement(text: str) -> Statement:
    """The statement a sentence of ``STATEMENT_FAMILIES`` says, from its text alone.

    Raises:
        ValueError: the text is no statement of these families, or names no known shape, colour or object.
    """
    for family, pattern in _TEMPLATES:
        found = re.fullmatch(pattern, text)
        if found is None:
            continue
        attrs = _noun_phrases().get(found["np"])
        if attrs is None:
            raise ValueError(f"statement {text!r}: {found['np']!r} names no known objects")
        params: dict[str, Any] = {"attrs": dict(attrs)}
        if family == "more":
            params["side"] = found["side"]
        return Statement(text, family, params)
    raise ValueError(f"{text!r} is not a statement of the world's families")


def propose_statement(left: Scene, right: Scene, rng: np.random.Generator, max_tries: int = 30) -> Statement:
    """A statement about objects of the pair, true of it when one is found in ``max_tries`` proposals.

    Starting from a true pair lets the other pairs of a set be chosen to reach half true, half false: false pairs
    are easy to find, true ones are not.
    """
    fallback = None
    for _ in range(max_tries):
        statement = STATEMENT_FAMILIES[rng.integers(len(STATEMENT_FAMILIES))](left, right, rng)
        if evaluate(statement, left.objects, right.objects):
            return statement
        fallback = fallback or statement
    return fallback


def _judged_pairs(
    pool: Sequence[Scene], order: Sequence[int], rng: np.random.Generator, pairs: int, proposals: int
) -> tuple[Statement, list[tuple[int, int, bool]]]:
    """One statement and ``pairs`` pairs of pool indices (no index shared), about half of them making it true.

    ``order`` is the pool's indices in the order to use them: statements true of its first two scenes are proposed
    until one holds for 20-80% of the pairs of the rest (else the closest to half is kept), so that true and false
    pairs both exist; each further pair is then the first unused pool pair, in random order, whose truth is the one
    still needed.
    """
    first, second, *others = order
    rest = [(i, j) for i in others for j in others if i != j]
    statement, best_gap = None, 1.0
    for _ in range(proposals):
        candidate = propose_statement(pool[first], pool[second], rng)
        truths = [evaluate(candidate, pool[i].objects, pool[j].objects) for i, j in rest]
        rate = float(np.mean(truths)) if rest else 0.5
        if abs(rate - 0.5) < best_gap:
            statement, best_gap = candidate, abs(rate - 0.5)
        if best_gap <= 0.3:
            break
    found = [(first, second, evaluate(statement, pool[first].objects, pool[second].objects))]
    used = {first, second}
    for index in range(1, pairs):
        wanted = sum(t for *_, t in found) < (index + 1) / 2  # too few true so far -> look for a true pair
        free = [i for i in order if i not in used]
        candidates = [(i, j) for i in free for j in free if i != j]
        candidates = [candidates[k] for k in rng.permutation(len(candidates))]
        truths = [evaluate(statement, pool[i].objects, pool[j].objects) for i, j in candidates]
        pick = truths.index(wanted) if wanted in truths else 0
        (i, j), truth = candidates[pick], truths[pick]
        used |= {i, j}
        found.append((i, j, truth))
    return statement, found


def sample_statement_set(
    rng: np.random.Generator,
    pairs: int = 4,
    size: int = 256,
    pool_factor: int = 3,
    proposals: int = 10,
    sentences: int = 1,
    kinds: int = 1,
    kind_bias: float = KIND_BIAS,
) -> tuple[list[Scene], list[tuple[Statement, list[tuple[int, int, bool]]]]]:
    """A pool of scenes and ``sentences`` statements about it, each judged on its own ``pairs`` image pairs.

    Scenes are drawn into a pool of ``pool_factor * pairs`` (with the world's scene ``kinds``, as
    ``sample_scene``). Each sentence takes ``pairs`` pairs of pool scenes with no scene shared, about half of
    them making it true; the first starts from scenes 0 and 1, the others from a random order of the pool, so
    the sentences of a set look at the same images in different pairings, and a set of images is worth many
    statements (NLVR2's identifiers number the sentences of a set for the same reason).

    Returns:
        The pool, and per sentence its statement and a list of (left pool index, right pool index, truth).
    """
    if pairs < 1 or sentences < 1:
        raise ValueError(f"pairs and sentences must be positive, got {pairs} and {sentences}")
    pool = [
        sample_scene(rng, size, kinds=kinds, kind_bias=kind_bias) for _ in range(max(pool_factor, 1) * pairs)
    ]
    judged = [_judged_pairs(pool, range(len(pool)), rng, pairs, proposals)]
    for _ in range(1, sentences):
        judged.append(
            _judged_pairs(pool, [int(i) for i in rng.permutation(len(pool))], rng, pairs, proposals)
        )
    return pool, judged
