"""Programs, questions, captions, annotators and NLVR2 statements on hand-built scenes."""

import numpy as np
import pytest

from training.data.vqa_softscore import preprocess_answer
from training.world.annotators import annotator_answers
from training.world.language import (
    GQA_FAMILIES,
    VQA_FAMILIES,
    execute,
    generate_captions,
    generate_questions,
    unique_description,
)
from training.world.scenes import Background, Scene, SceneObject, compute_relations, sample_scene
from training.world.statements import Statement, evaluate, read_statement, sample_statement_set


def obj(shape, colour, size, fill, box):
    x1, y1, x2, y2 = box
    return SceneObject(shape, colour, size, fill, ((x1 + x2) / 2, (y1 + y2) / 2), (x2 - x1) / 2, 0.0, box=box)


def hand_scene():
    """A small red circle on the left, a large blue striped square in the middle, a medium red star top right."""
    objects = [
        obj("circle", "red", "small", "solid", (20.0, 110.0, 50.0, 140.0)),
        obj("square", "blue", "large", "striped", (95.0, 95.0, 161.0, 161.0)),
        obj("star", "red", "medium", "dotted", (190.0, 40.0, 234.0, 84.0)),
    ]
    return Scene(
        256,
        256,
        Background("gradient", (90, 90, 90), (60, 60, 60), 0),
        objects,
        compute_relations(objects, 256),
    )


def unique(attrs):
    return [{"op": "select", "arg": attrs}, {"op": "unique", "deps": [0]}]


def test_programs_execute_to_hand_computed_answers():
    scene = hand_scene()
    assert execute([{"op": "select", "arg": {"colour": "red"}}, {"op": "count", "deps": [0]}], scene) == "2"
    assert (
        execute([{"op": "select", "arg": {"shape": "square"}}, {"op": "exist", "deps": [0]}], scene) == "yes"
    )
    assert (
        execute([*unique({"shape": "square"}), {"op": "query", "arg": "colour", "deps": [1]}], scene)
        == "blue"
    )
    left_of_square = [
        *unique({"shape": "square"}),
        {"op": "select", "arg": {}},
        {"op": "relate", "arg": ("left of", {}), "deps": [2, 1]},
        {"op": "unique", "deps": [3]},
        {"op": "query", "arg": "shape", "deps": [4]},
    ]
    assert execute(left_of_square, scene) == "circle"
    star_above_square = [*unique({"shape": "star"}), *unique({"shape": "square"})]
    star_above_square[3]["deps"] = [2]
    assert execute([*star_above_square, {"op": "verify_rel", "arg": "above", "deps": [1, 3]}], scene) == "yes"
    assert execute([*star_above_square, {"op": "same", "arg": "colour", "deps": [1, 3]}], scene) == "no"
    assert execute([*star_above_square, {"op": "larger", "arg": "larger", "deps": [1, 3]}], scene) == "square"
    with pytest.raises(ValueError, match="2 objects"):
        execute(unique({"colour": "red"}), scene)


def test_unique_description_uses_the_fewest_attributes():
    scene = hand_scene()
    rng = np.random.default_rng(0)
    assert unique_description(scene, 0, rng) == {"shape": "circle"}
    assert unique_description(scene, 0, rng, exclude=("shape", "size", "fill")) is None  # red is shared
    assert unique_description(scene, 1, rng, exclude=("shape",)) in (
        {"colour": "blue"},
        {"size": "large"},
        {"fill": "striped"},
    )


@pytest.mark.parametrize("families", [GQA_FAMILIES, VQA_FAMILIES])
def test_generated_questions_are_answerable_and_consistent(families):
    rng = np.random.default_rng(5)
    for _ in range(12):
        scene = sample_scene(rng)
        questions = generate_questions(scene, rng, 8, families)
        assert len({q.sent for q in questions}) == len(questions)
        for q in questions:
            assert execute(q.program, scene) == q.answer
            assert q.sent.endswith("?") and q.structural in (
                "verify",
                "query",
                "compare",
                "logical",
                "choose",
            )
            if q.structural in ("verify", "logical") or q.family == "are there":
                assert q.answer in ("yes", "no")
            if q.family.startswith("choose"):
                assert f" {q.answer} or " in q.sent or f" or {q.answer}?" in q.sent
            if q.family in ("count", "how many"):
                assert q.answer.isdigit()


def test_captions_count_the_objects_and_are_distinct():
    scene = hand_scene()
    rng = np.random.default_rng(1)
    captions = [c for _ in range(20) for c in generate_captions(scene, rng)]
    assert all(c.endswith(".") for c in captions)
    counts = [c for c in captions if c.endswith("background.")]
    assert counts and all(c.startswith("Three ") for c in counts)
    colour_counts = [c for c in captions if "red" in c and c.startswith("There are")]
    assert all(c.startswith("There are two red") for c in colour_counts)


def test_annotators_mostly_agree_after_vqa_preprocessing():
    rng = np.random.default_rng(2)
    agreement = []
    for answer in ("red", "2", "yes", "hexagon"):
        for _ in range(30):
            answers = annotator_answers(answer, rng)
            assert len(answers) == 10
            agreement.append(sum(preprocess_answer(a) == answer for a in answers))
    assert 5 < np.mean(agreement) < 9.5  # noisy, but the right answer dominates
    assert min(agreement) < 10  # some questions have disagreement


def test_statements_evaluate_on_hand_scenes():
    left = hand_scene().objects  # red circle, blue square, red star
    right = [
        left[1],
        obj("star", "green", "large", "solid", (10.0, 10.0, 60.0, 60.0)),
    ]  # blue square, green star
    square, red, star, heart = {"shape": "square"}, {"colour": "red"}, {"shape": "star"}, {"shape": "heart"}
    assert evaluate(Statement("", "both_contain", {"attrs": square}), left, right)
    assert not evaluate(Statement("", "both_contain", {"attrs": red}), left, right)
    assert evaluate(Statement("", "one_contains", {"attrs": red}), left, right)
    assert not evaluate(Statement("", "one_contains", {"attrs": star}), left, right)
    assert evaluate(Statement("", "none_contain", {"attrs": heart}), left, right)
    assert not evaluate(Statement("", "none_contain", {"attrs": star}), left, right)
    assert evaluate(Statement("", "more", {"attrs": red, "side": "left"}), left, right)
    assert not evaluate(Statement("", "more", {"attrs": red, "side": "right"}), left, right)
    assert evaluate(Statement("", "more", {"attrs": {}, "side": "left"}), left, right)  # 3 objects against 2
    assert not evaluate(Statement("", "more", {"attrs": star, "side": "left"}), left, right)  # 1 against 1
    assert evaluate(Statement("", "same_count", {"attrs": star}), left, right)
    assert not evaluate(Statement("", "same_count", {"attrs": red}), left, right)


def test_statement_texts_read_back_to_what_they_say():
    assert read_statement("Both images contain a red object.") == Statement(
        "Both images contain a red object.", "both_contain", {"attrs": {"colour": "red"}}
    )
    assert read_statement("The right image has more crosses than the left image.").params == {
        "attrs": {"shape": "cross"},
        "side": "right",
    }
    assert read_statement("The left image has more objects than the right image.").params["attrs"] == {}
    assert read_statement("Neither image contains an orange object.").params == {
        "attrs": {"colour": "orange"}
    }
    for bad in ("Both images contain a purple dragon.", "The left image is prettier."):
        with pytest.raises(ValueError, match="dragon|not a statement"):
            read_statement(bad)
    rng = np.random.default_rng(7)
    for _ in range(40):
        _, [(statement, _)] = sample_statement_set(rng, pairs=2, size=64)
        assert read_statement(statement.text) == statement


def test_statement_sets_mix_true_and_false_pairs():
    rng = np.random.default_rng(4)
    mixed = 0
    for _ in range(5):
        pool, [(statement, pairs)] = sample_statement_set(rng, pairs=4)
        assert len(pairs) == 4
        assert len({k for i, j, _ in pairs for k in (i, j)}) == 8  # no image reused
        assert all(evaluate(statement, pool[i].objects, pool[j].objects) == truth for i, j, truth in pairs)
        mixed += len({truth for *_, truth in pairs}) == 2
    assert mixed >= 4


def test_statement_labels_are_balanced_within_each_family():
    rng = np.random.default_rng(11)
    truths: dict[str, list[bool]] = {}
    for _ in range(40):
        _, sentences = sample_statement_set(rng, pairs=4, size=64, sentences=2)
        for statement, pairs in sentences:
            truths.setdefault(statement.family, []).extend(truth for *_, truth in pairs)
    assert len(truths) >= 4  # most families drawn
    for family, values in truths.items():
        assert abs(np.mean(values) - 0.5) <= 0.15, family
