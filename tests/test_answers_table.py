import json

import pytest

from lxmert.answers import AnswerTable, normalize_answer


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Two.", "2"),
        ("the table", "table"),
        ("A man", "man"),
        ("an apple.", "apple"),
        ("Grey", "gray"),
        ("ten", "10"),
        ("eleven", "eleven"),
        ("", ""),
        ("a the cat", "cat"),  # sequential article stripping, as the authors do
        ("the a cat", "a cat"),  # "a " is checked before "the ", so it survives here
        ("yes", "yes"),
        ("a", "a"),  # no trailing space: not an article
    ],
)
def test_normalize_answer_matches_hand_computed_cases(raw, expected):
    assert normalize_answer(raw) == expected


def test_three_file_layouts_round_trip(tmp_path):
    answers = ["yes", "no", "2", "gray"]
    (tmp_path / "label2ans.json").write_text(json.dumps(answers))
    (tmp_path / "ans2label.json").write_text(json.dumps({"no": 1, "yes": 0, "gray": 3, "2": 2}))
    (tmp_path / "all_ans.json").write_text(
        json.dumps([{"ans": a, "dsets": ["vqa"] if a != "gray" else ["gqa"]} for a in answers])
    )
    for name in ("label2ans.json", "ans2label.json", "all_ans.json"):
        assert AnswerTable.load(tmp_path / name).label2ans == answers
    assert AnswerTable.from_all_ans(tmp_path / "all_ans.json", dsets=["gqa"]).label2ans == ["gray"]

    table = AnswerTable(answers)
    table.save(tmp_path / "out.json")
    table.save_ans2label(tmp_path / "out_ans2label.json")
    assert AnswerTable.load(tmp_path / "out.json") == table
    assert AnswerTable.load(tmp_path / "out_ans2label.json") == table
    assert table.label("Two.") == 2 and table.label("Grey") == 3 and table.label("maybe") is None


def test_bad_tables_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'yes' appears twice"):
        AnswerTable(["yes", "no", "yes"])
    (tmp_path / "gap.json").write_text(json.dumps({"yes": 0, "no": 2}))
    with pytest.raises(ValueError, match="labels must be exactly 0..1"):
        AnswerTable.load(tmp_path / "gap.json")
    (tmp_path / "broken.json").write_text('["yes", ')
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        AnswerTable.load(tmp_path / "broken.json")
