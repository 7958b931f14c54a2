"""Captions and questions generated from a scene graph.

Questions are functional programs in the style of GQA's ``semantic`` field: a flat list of steps, each reading the
outputs of earlier steps. ``execute`` runs a program on a scene, so every answer comes from the scene graph and a
question is kept only when its program runs (every referenced object is unique). Each question records its
structural type (verify, query, compare, logical, choose, as in GQA), its semantic type (obj, attr, rel) and its
family (the template), so accuracy can be broken down as in the paper's Table 2.

Two surface styles share the programs: GQA-style (compositional, relations, choose/compare) and VQA-style (the VQA
question types ``is there a``, ``how many``, ``what color is the``...). Text is American English, as in both data
sets. Referring expressions use the fewest attributes that make an object unique, so sentences stay short enough
for LXMERT's 20-token limit most of the time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.world.scenes import COLOURS, FILLS, SHAPES, SIZES, Scene

ATTRIBUTE_VALUES = {"colour": COLOURS, "shape": SHAPES, "size": SIZES, "fill": FILLS}
# The word used for each attribute when a question names it ("What color is ...", "the same pattern").
ATTRIBUTE_NOUN = {"colour": "color", "shape": "shape", "size": "size", "fill": "pattern"}
DESCRIPTOR_ORDER = ("size", "colour", "fill", "shape")
DIRECTIONS = ("left of", "right of", "above", "below")
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
RELATION_PHRASE = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}
YES, NO = "yes", "no"

# Caption vocabulary: synonyms make the caption corpus less templated than the questions.
SHAPE_SYNONYMS = {
    "circle": ("circle", "disk"),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus sign"),
}
SIZE_SYNONYMS = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "medium-sized"),
    "large": ("large", "big"),
}
FILL_SYNONYMS = {
    "solid": ("solid", "filled"),
    "striped": ("striped",),
    "dotted": ("dotted", "spotted"),
    "outlined": ("outlined", "hollow"),
}
RELATION_SYNONYMS = {
    "left of": ("to the left of", "left of", "on the left of"),
    "right of": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
    "near": ("near", "next to", "close to"),
}
GENERIC_NOUNS = ("object", "shape", "thing")
BACKGROUND_WORDS = {
    "noise": ("noisy", "grainy", "speckled"),
    "gradient": ("gradient", "smoothly shaded"),
    "clutter": ("cluttered", "scribbled"),
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass
class Question:
    """A question with its program, answer and types."""

    sent: str
    answer: str
    family: str
    structural: str
    semantic: str
    program: list[dict[str, Any]] = field(default_factory=list)

    @property
    def answer_type(self) -> str:
        """GQA's split as its official eval.py draws it: structural type ``query`` is open, the rest binary."""
        return "open" if self.structural == "query" else "binary"


# --------------------------------------------------------------------------------------------------------------
# Descriptions


def matches(obj: Any, attrs: dict[str, str]) -> bool:
    return all(getattr(obj, key) == value for key, value in attrs.items())


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def plural(noun: str) -> str:
    if noun.endswith(("s", "x", "sh", "ch")):
        return noun + "es"
    return noun + "s"


def noun_phrase(
    attrs: dict[str, str], is_plural: bool = False, rng: np.random.Generator | None = None
) -> str:
    """'small red striped circle' from attributes; no shape gives a generic noun. ``rng`` picks synonyms."""

    def word(key: str) -> str:
        value = attrs[key]
        synonyms = {"shape": SHAPE_SYNONYMS, "size": SIZE_SYNONYMS, "fill": FILL_SYNONYMS}.get(key, {})
        options = synonyms.get(value, (value,))
        return options[rng.integers(len(options))] if rng is not None else options[0]

    words = [word(k) for k in DESCRIPTOR_ORDER[:-1] if k in attrs]
    if "shape" in attrs:
        noun = word("shape")
    else:
        noun = GENERIC_NOUNS[rng.integers(len(GENERIC_NOUNS))] if rng is not None else "object"
    if is_plural:
        noun = " ".join([*noun.split()[:-1], plural(noun.split()[-1])])
    return " ".join([*words, noun])


def _subsets(keys: tuple[str, ...], rng: np.random.Generator) -> list[tuple[str, ...]]:
    """Attribute subsets from small to large, shuffled within each size; subsets naming the shape come first."""
    ordered = []
    for k in range(0, len(keys) + 1):
        combos = list(itertools.combinations(keys, k))
        rng.shuffle(combos)
        combos.sort(key=lambda c: "shape" not in c)
        ordered.extend(combos)
    return ordered


def unique_description(
    scene: Scene,
    index: int,
    rng: np.random.Generator,
    exclude: tuple[str, ...] = (),
    among: list[int] | None = None,
) -> dict[str, str] | None:
    """Fewest attributes (not in ``exclude``) that single out ``objects[index]`` among ``among`` (default all).

    Returns None when no such description exists (an identical twin, or the distinguishing attribute excluded).
    """
    candidates = range(len(scene.objects)) if among is None else among
    obj = scene.objects[index]
    keys = tuple(k for k in ("shape", "colour", "size", "fill") if k not in exclude)
    for subset in _subsets(keys, rng):
        if not subset and len(list(candidates)) != 1:
            continue
        attrs = {k: getattr(obj, k) for k in subset}
        if [i for i in candidates if matches(scene.objects[i], attrs)] == [index]:
            return attrs
    return None


def _random_filter(rng: np.random.Generator, keys: int | None = None) -> dict[str, str]:
    """A random 1–2 attribute filter such as {colour: red, shape: star}."""
    n = keys if keys is not None else 1 + int(rng.random() < 0.5)
    chosen = rng.choice(list(ATTRIBUTE_VALUES), size=n, replace=False)
    return {str(k): str(rng.choice(ATTRIBUTE_VALUES[str(k)])) for k in chosen}


def filter_of(obj: Any, rng: np.random.Generator) -> dict[str, str]:
    """A random 1–2 attribute filter that ``obj`` satisfies."""
    return {k: getattr(obj, k) for k in _random_filter(rng)}


def _absent_filter(scene: Scene, rng: np.random.Generator, tries: int = 20) -> dict[str, str] | None:
    """A filter matching no object; built by changing one attribute of a present object (a near miss)."""
    for _ in range(tries):
        attrs = filter_of(scene.objects[rng.integers(len(scene.objects))], rng)
        key = str(rng.choice(list(attrs)))
        attrs[key] = str(rng.choice([v for v in ATTRIBUTE_VALUES[key] if v != attrs[key]]))
        if not any(matches(o, attrs) for o in scene.objects):
            return attrs
    return None


# --------------------------------------------------------------------------------------------------------------
# Programs


def execute(program: list[dict[str, Any]], scene: Scene) -> Any:
    """Run a program; returns the last step's output. Raises ValueError when a ``unique`` step finds 0 or 2+."""
    outputs: list[Any] = []
    for step in program:
        op, arg, deps = step["op"], step.get("arg"), [outputs[d] for d in step.get("deps", ())]
        if op == "select":
            out = [i for i, o in enumerate(scene.objects) if matches(o, arg)]
        elif op == "relate":
            predicate, attrs = arg
            out = [j for j in deps[0] if j != deps[1] and matches(scene.objects[j], attrs)]
            out = [j for j in out if scene.holds(j, predicate, deps[1])]
        elif op == "unique":
            if len(deps[0]) != 1:
                raise ValueError(f"unique found {len(deps[0])} objects")
            out = deps[0][0]
        elif op == "exist":
            out = YES if deps[0] else NO
        elif op == "count":
            out = str(len(deps[0]))
        elif op == "query":
            out = getattr(scene.objects[deps[0]], arg)
        elif op == "verify":
            out = YES if getattr(scene.objects[deps[0]], arg[0]) == arg[1] else NO
        elif op == "verify_rel":
            out = YES if scene.holds(deps[0], arg, deps[1]) else NO
        elif op in ("and", "or"):
            truth = [d == YES for d in deps]
            out = YES if (all(truth) if op == "and" else any(truth)) else NO
        elif op == "same":
            out = YES if getattr(scene.objects[deps[0]], arg) == getattr(scene.objects[deps[1]], arg) else NO
        elif op == "more":
            out = YES if len(deps[0]) > len(deps[1]) else NO
        elif op == "larger":  # arg "larger"/"smaller": the shape of that one of the two
            a, b = (scene.objects[d] for d in deps)
            order = SIZES.index(a.size) - SIZES.index(b.size)
            if order == 0:
                raise ValueError("compared objects have the same size")
            out = a.shape if (order > 0) == (arg == "larger") else b.shape
        elif op == "choose":
            value = getattr(scene.objects[deps[0]], arg[0])
            if value not in arg[1:]:
                raise ValueError("choose options miss the true value")
            out = value
        else:
            raise ValueError(f"unknown program step {op!r}")
        outputs.append(out)
    return outputs[-1]


def _select(attrs: dict[str, str]) -> dict[str, Any]:
    return {"op": "select", "arg": dict(attrs)}


def _unique_program(attrs: dict[str, str]) -> list[dict[str, Any]]:
    return [_select(attrs), {"op": "unique", "deps": [0]}]


def _shift(program: list[dict[str, Any]], offset: int) -> list[dict[str, Any]]:
    """Renumber a sub-program's dependencies so it can be appended after ``offset`` earlier steps."""
    return [{**s, "deps": [d + offset for d in s.get("deps", ())]} for s in program]


def _two_refs(
    scene: Scene, rng: np.random.Generator, exclude: tuple[str, ...] = ()
) -> tuple[int, int, dict, dict] | None:
    if len(scene.objects) < 2:
        return None
    i, j = (int(x) for x in rng.choice(len(scene.objects), size=2, replace=False))
    a, b = unique_description(scene, i, rng, exclude), unique_description(scene, j, rng, exclude)
    if a is None or b is None:
        return None
    return i, j, a, b


# --------------------------------------------------------------------------------------------------------------
# GQA-style families. Each returns (text, program, family, structural, semantic) or None when the scene does not
# support it; binary families aim at a yes/no coin flip so their answer prior is uninformative.

Draft = tuple[str, list[dict[str, Any]], str, str, str]


def gqa_exist(scene: Scene, rng: np.random.Generator) -> Draft | None:
    attrs = filter_of(scene.objects[rng.integers(len(scene.objects))], rng) if rng.random() < 0.5 else None
    attrs = attrs or _absent_filter(scene, rng)
    if attrs is None:
        return None
    text = f"Is there {with_article(noun_phrase(attrs))} in the image?"
    return text, [_select(attrs), {"op": "exist", "deps": [0]}], "exist", "verify", "obj"


def gqa_count(scene: Scene, rng: np.random.Generator) -> Draft | None:
    attrs = _random_filter(rng, keys=1) if rng.random() < 0.85 else {}
    text = f"How many {noun_phrase(attrs, is_plural=True)} are there?"
    return text, [_select(attrs), {"op": "count", "deps": [0]}], "count", "query", "obj"


def gqa_query_attr(scene: Scene, rng: np.random.Generator) -> Draft | None:
    key = str(rng.choice(list(ATTRIBUTE_VALUES)))
    index = int(rng.integers(len(scene.objects)))
    ref = unique_description(scene, index, rng, exclude=(key,))
    if ref is None:
        return None
    noun = noun_phrase(ref)
    text = {
        "colour": f"What color is the {noun}?",
        "shape": f"What shape is the {noun}?",
        "size": f"What size is the {noun}?",
        "fill": f"What pattern does the {noun} have?",
    }[key]
    program = [*_unique_program(ref), {"op": "query", "arg": key, "deps": [1]}]
    return text, program, f"query_{key}", "query", "attr"


def gqa_verify_attr(scene: Scene, rng: np.random.Generator) -> Draft | None:
    key = str(rng.choice(["colour", "size", "fill"]))
    index = int(rng.integers(len(scene.objects)))
    ref = unique_description(scene, index, rng, exclude=(key,))
    if ref is None:
        return None
    true_value = getattr(scene.objects[index], key)
    value = (
        true_value
        if rng.random() < 0.5
        else str(rng.choice([v for v in ATTRIBUTE_VALUES[key] if v != true_value]))
    )
    text = f"Is the {noun_phrase(ref)} {value}?"
    program = [*_unique_program(ref), {"op": "verify", "arg": (key, value), "deps": [1]}]
    return text, program, f"verify_{key}", "verify", "attr"


def _related_pair(
    scene: Scene, rng: np.random.Generator, predicates: tuple[str, ...]
) -> tuple[int, str, int] | None:
    """A random (subject, predicate, reference) triple that holds in the scene."""
    options = [r for r in scene.relations if r.predicate in predicates]
    if not options:
        return None
    r = options[rng.integers(len(options))]
    return r.subject, r.predicate, r.object


def gqa_relate_query(scene: Scene, rng: np.random.Generator) -> Draft | None:
    triple = _related_pair(scene, rng, DIRECTIONS)
    if triple is None:
        return None
    subject, predicate, reference = triple
    key = str(rng.choice(["colour", "shape"]))
    ref = unique_description(scene, reference, rng)
    related = [
        j for j in range(len(scene.objects)) if j != reference and scene.holds(j, predicate, reference)
    ]
    desc = unique_description(scene, subject, rng, exclude=(key,), among=related)
    if ref is None or desc is None:
        return None
    program = [
        *_unique_program(ref),
        _select({}),
        {"op": "relate", "arg": (predicate, desc), "deps": [2, 1]},
        {"op": "unique", "deps": [3]},
        {"op": "query", "arg": key, "deps": [4]},
    ]
    head = "What color is" if key == "colour" else "What shape is"
    text = f"{head} the {noun_phrase(desc)} {RELATION_PHRASE[predicate]} the {noun_phrase(ref)}?"
    return text, program, f"relate_query_{key}", "query", "rel"


def gqa_relate_exist(scene: Scene, rng: np.random.Generator) -> Draft | None:
    triple = _related_pair(scene, rng, DIRECTIONS)
    if triple is None:
        return None
    subject, predicate, reference = triple
    ref = unique_description(scene, reference, rng)
    if ref is None:
        return None
    if rng.random() < 0.5:
        desc = filter_of(scene.objects[subject], rng)
    else:  # something that exists in the scene, but not on that side of the reference
        related = [
            j for j in range(len(scene.objects)) if j != reference and scene.holds(j, predicate, reference)
        ]
        others = [j for j in range(len(scene.objects)) if j != reference and j not in related]
        candidates = [filter_of(scene.objects[j], rng) for j in others for _ in range(3)]
        candidates = [c for c in candidates if not any(matches(scene.objects[j], c) for j in related)]
        if not candidates:
            return None
        desc = candidates[rng.integers(len(candidates))]
    program = [
        *_unique_program(ref),
        _select({}),
        {"op": "relate", "arg": (predicate, desc), "deps": [2, 1]},
        {"op": "exist", "deps": [3]},
    ]
    text = f"Is there {with_article(noun_phrase(desc))} {RELATION_PHRASE[predicate]} the {noun_phrase(ref)}?"
    return text, program, "relate_exist", "verify", "rel"


def gqa_verify_rel(scene: Scene, rng: np.random.Generator) -> Draft | None:
    triple = _related_pair(scene, rng, DIRECTIONS)
    if triple is None:
        return None
    subject, predicate, reference = triple
    if rng.random() < 0.5:  # ask the opposite: a clear "no" (the margin rules out near-ties)
        predicate = OPPOSITE[predicate]
    a, b = unique_description(scene, subject, rng), unique_description(scene, reference, rng)
    if a is None or b is None:
        return None
    program = [
        *_unique_program(a),
        *_shift(_unique_program(b), 2),
        {"op": "verify_rel", "arg": predicate, "deps": [1, 3]},
    ]
    text = f"Is the {noun_phrase(a)} {RELATION_PHRASE[predicate]} the {noun_phrase(b)}?"
    return text, program, "verify_rel", "verify", "rel"


def gqa_same_attr(scene: Scene, rng: np.random.Generator) -> Draft | None:
    key = str(rng.choice(["colour", "shape", "size", "fill"]))
    want_same = rng.random() < 0.5
    n = len(scene.objects)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    pairs = [
        p
        for p in pairs
        if (getattr(scene.objects[p[0]], key) == getattr(scene.objects[p[1]], key)) == want_same
    ]
    if not pairs:
        return None
    i, j = pairs[rng.integers(len(pairs))]
    a, b = unique_description(scene, i, rng, (key,)), unique_description(scene, j, rng, (key,))
    if a is None or b is None:
        return None
    program = [
        *_unique_program(a),
        *_shift(_unique_program(b), 2),
        {"op": "same", "arg": key, "deps": [1, 3]},
    ]
    text = f"Are the {noun_phrase(a)} and the {noun_phrase(b)} the same {ATTRIBUTE_NOUN[key]}?"
    return text, program, f"same_{key}", "compare", "attr"


def gqa_compare_size(scene: Scene, rng: np.random.Generator) -> Draft | None:
    # The answer is a shape, so both references name their (different) shapes and never their sizes.
    picked = _two_refs(scene, rng, exclude=("size",))
    if picked is None:
        return None
    i, j, a, b = picked
    oi, oj = scene.objects[i], scene.objects[j]
    if oi.size == oj.size or oi.shape == oj.shape:
        return None
    a, b = {**a, "shape": oi.shape}, {**b, "shape": oj.shape}
    word = str(rng.choice(["larger", "smaller"]))
    program = [
        *_unique_program(a),
        *_shift(_unique_program(b), 2),
        {"op": "larger", "arg": word, "deps": [1, 3]},
    ]
    text = f"Which is {word}, the {noun_phrase(a)} or the {noun_phrase(b)}?"
    return text, program, "compare_size", "compare", "attr"


def gqa_logical(scene: Scene, rng: np.random.Generator) -> Draft | None:
    op = str(rng.choice(["and", "or"]))
    want_yes = rng.random() < 0.5
    present = [filter_of(scene.objects[rng.integers(len(scene.objects))], rng) for _ in range(2)]
    absent = [_absent_filter(scene, rng), _absent_filter(scene, rng)]
    if absent[0] is None or absent[1] is None:
        return None
    if op == "and":  # "no" from one present and one absent: only looking at both answers it
        first, second = (present[0], present[1]) if want_yes else (present[0], absent[0])
    else:
        first, second = (present[0], absent[0]) if want_yes else (absent[0], absent[1])
    if first == second:
        return None
    if rng.random() < 0.5:
        first, second = second, first
    program = [
        _select(first),
        {"op": "exist", "deps": [0]},
        _select(second),
        {"op": "exist", "deps": [2]},
        {"op": op, "deps": [1, 3]},
    ]
    a, b = with_article(noun_phrase(first)), with_article(noun_phrase(second))
    text = f"Is there both {a} and {b}?" if op == "and" else f"Is there {a} or {b}?"
    return text, program, op, "logical", "obj"


def gqa_choose(scene: Scene, rng: np.random.Generator) -> Draft | None:
    key = str(rng.choice(["colour", "size", "fill"]))
    index = int(rng.integers(len(scene.objects)))
    ref = unique_description(scene, index, rng, exclude=(key,))
    if ref is None:
        return None
    true_value = getattr(scene.objects[index], key)
    other = str(rng.choice([v for v in ATTRIBUTE_VALUES[key] if v != true_value]))
    options = [true_value, other] if rng.random() < 0.5 else [other, true_value]
    program = [*_unique_program(ref), {"op": "choose", "arg": (key, *options), "deps": [1]}]
    text = f"Is the {noun_phrase(ref)} {options[0]} or {options[1]}?"
    return text, program, f"choose_{key}", "choose", "attr"


GQA_FAMILIES: tuple[Callable[[Scene, np.random.Generator], Draft | None], ...] = (
    gqa_exist,
    gqa_count,
    gqa_query_attr,
    gqa_verify_attr,
    gqa_relate_query,
    gqa_relate_exist,
    gqa_verify_rel,
    gqa_same_attr,
    gqa_compare_size,
    gqa_logical,
    gqa_choose,
)


# --------------------------------------------------------------------------------------------------------------
# VQA-style families: the common VQA v2 question types, plainer wording, no balancing beyond yes/no coin flips.


def vqa_is_there(scene: Scene, rng: np.random.Generator) -> Draft | None:
    draft = gqa_exist(scene, rng)
    if draft is None:
        return None
    _, program, *_ = draft
    return f"Is there {with_article(noun_phrase(program[0]['arg']))}?", program, "is there a", "verify", "obj"


def vqa_how_many(scene: Scene, rng: np.random.Generator) -> Draft | None:
    attrs = _random_filter(rng, keys=1)
    text = f"How many {noun_phrase(attrs, is_plural=True)} are there?"
    return text, [_select(attrs), {"op": "count", "deps": [0]}], "how many", "query", "obj"


def vqa_what_color(scene: Scene, rng: np.random.Generator) -> Draft | None:
    index = int(rng.integers(len(scene.objects)))
    ref = unique_description(scene, index, rng, exclude=("colour",))
    if ref is None:
        return None
    program = [*_unique_program(ref), {"op": "query", "arg": "colour", "deps": [1]}]
    return f"What color is the {noun_phrase(ref)}?", program, "what color is the", "query", "attr"


def vqa_what_shape(scene: Scene, rng: np.random.Generator) -> Draft | None:
    index = int(rng.integers(len(scene.objects)))
    ref = unique_description(scene, index, rng, exclude=("shape",))
    if ref is None:
        return None
    program = [*_unique_program(ref), {"op": "query", "arg": "shape", "deps": [1]}]
    return f"What shape is the {noun_phrase(ref)}?", program, "what shape is the", "query", "attr"


def vqa_is_the(scene: Scene, rng: np.random.Generator) -> Draft | None:
    draft = gqa_verify_attr(scene, rng)
    if draft is None:
        return None
    text, program, *_ = draft
    return text, program, "is the", "verify", "attr"


def vqa_what_is(scene: Scene, rng: np.random.Generator) -> Draft | None:
    triple = _related_pair(scene, rng, DIRECTIONS)
    if triple is None:
        return None
    subject, predicate, reference = triple
    ref = unique_description(scene, reference, rng)
    related = [
        j for j in range(len(scene.objects)) if j != reference and scene.holds(j, predicate, reference)
    ]
    if ref is None or len(related) != 1:
        return None
    program = [
        *_unique_program(ref),
        _select({}),
        {"op": "relate", "arg": (predicate, {}), "deps": [2, 1]},
        {"op": "unique", "deps": [3]},
        {"op": "query", "arg": "shape", "deps": [4]},
    ]
    text = f"What is {RELATION_PHRASE[predicate]} the {noun_phrase(ref)}?"
    return text, program, "what is", "query", "rel"


def vqa_are_there_more(scene: Scene, rng: np.random.Generator) -> Draft | None:
    key = str(rng.choice(["colour", "shape"]))
    first, second = (str(v) for v in rng.choice(ATTRIBUTE_VALUES[key], size=2, replace=False))
    a, b = {key: first}, {key: second}
    program = [_select(a), _select(b), {"op": "more", "deps": [0, 1]}]
    text = f"Are there more {noun_phrase(a, is_plural=True)} than {noun_phrase(b, is_plural=True)}?"
    return text, program, "are there", "compare", "obj"


VQA_FAMILIES: tuple[Callable[[Scene, np.random.Generator], Draft | None], ...] = (
    vqa_is_there,
    vqa_how_many,
    vqa_what_color,
    vqa_what_shape,
    vqa_is_the,
    vqa_what_is,
    vqa_are_there_more,
)


def generate_questions(
    scene: Scene,
    rng: np.random.Generator,
    count: int,
    families: tuple[Callable[[Scene, np.random.Generator], Draft | None], ...] = GQA_FAMILIES,
    max_tries: int = 6,
) -> list[Question]:
    """Up to ``count`` distinct questions, families drawn uniformly; answers come from executing the programs."""
    questions: list[Question] = []
    seen: set[str] = set()
    for _ in range(count * max_tries):
        if len(questions) == count:
            break
        draft = families[rng.integers(len(families))](scene, rng)
        if draft is None or draft[0] in seen:
            continue
        text, program, family, structural, semantic = draft
        try:
            answer = execute(program, scene)
        except ValueError:
            continue
        seen.add(text)
        questions.append(Question(text, str(answer), family, structural, semantic, program))
    return questions


# --------------------------------------------------------------------------------------------------------------
# Captions


def object_phrase(attrs: dict[str, str], rng: np.random.Generator) -> str:
    """A caption's name for one object: its shape and each of its size, colour and fill with probability 0.6
    ('little blue spotted disk'). ``attrs`` holds all four."""
    keys = [k for k in ("size", "colour", "fill") if rng.random() < 0.6]
    return noun_phrase({k: attrs[k] for k in [*keys, "shape"]}, rng=rng)


def _caption_object(scene: Scene, index: int, rng: np.random.Generator) -> str:
    obj = scene.objects[index]
    return object_phrase({k: getattr(obj, k) for k in DESCRIPTOR_ORDER}, rng)


def _caption_relation(scene: Scene, rng: np.random.Generator) -> str | None:
    options = [r for r in scene.relations if r.predicate in RELATION_SYNONYMS]
    if not options:
        return None
    r = options[rng.integers(len(options))]
    phrases = RELATION_SYNONYMS[r.predicate]
    a, b = _caption_object(scene, r.subject, rng), _caption_object(scene, r.object, rng)
    verb = str(rng.choice(["is", "sits", "appears"]))
    return f"{with_article(a).capitalize()} {verb} {phrases[rng.integers(len(phrases))]} {with_article(b)}."


def _caption_count(scene: Scene, rng: np.random.Generator) -> str | None:
    bg = BACKGROUND_WORDS[scene.background.kind]
    n = len(scene.objects)
    noun = plural(str(rng.choice(GENERIC_NOUNS)))
    return f"{NUMBER_WORDS[n].capitalize()} {noun} on a {bg[rng.integers(len(bg))]} background."


def _caption_list(scene: Scene, rng: np.random.Generator) -> str | None:
    k = min(len(scene.objects), 3)
    picked = sorted(int(i) for i in rng.choice(len(scene.objects), size=k, replace=False))
    names = [with_article(_caption_object(scene, i, rng)) for i in picked]
    lead = str(rng.choice(["A picture of", "An image with", "There is"]))
    return f"{lead} {', '.join(names[:-1])} and {names[-1]}."


def _caption_colour_group(scene: Scene, rng: np.random.Generator) -> str | None:
    colour = scene.objects[rng.integers(len(scene.objects))].colour
    n = sum(o.colour == colour for o in scene.objects)
    noun = GENERIC_NOUNS[rng.integers(len(GENERIC_NOUNS))]
    if n == 1:
        return f"Only one {colour} {noun} can be seen."
    return f"There are {NUMBER_WORDS[n]} {colour} {plural(noun)} in the picture."


def _caption_size_contrast(scene: Scene, rng: np.random.Generator) -> str | None:
    larger = [r for r in scene.relations if r.predicate == "larger than"]
    if not larger:
        return None
    r = larger[rng.integers(len(larger))]
    a, b = _caption_object(scene, r.subject, rng), _caption_object(scene, r.object, rng)
    return f"{with_article(a).capitalize()} is bigger than {with_article(b)}."


CAPTION_TEMPLATES = (
    _caption_relation,
    _caption_count,
    _caption_list,
    _caption_colour_group,
    _caption_size_contrast,
)


def generate_captions(
    scene: Scene, rng: np.random.Generator, count: int = 5, max_tries: int = 5
) -> list[str]:
    """Up to ``count`` distinct true captions, mixing templates (relations included) and synonyms."""
    captions: list[str] = []
    for _ in range(count * max_tries):
        if len(captions) == count:
            break
        caption = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))](scene, rng)
        if caption is not None and caption not in captions:
            captions.append(caption)
    return captions
