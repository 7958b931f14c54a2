"""Command lines built from config dataclasses: list fields take several values, fields without a default are
required."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from lxmert.config_cli import add_dataclass_arguments, dataclass_from_args, parse_config


@dataclass
class Files:
    inputs: list[str] = field(metadata={"help": "files, in order"})
    sizes: list[int] = field(default_factory=lambda: [1], metadata={"help": "sizes"})
    limit: int | None = field(default=None, metadata={"help": "at most this many"})
    modes: tuple[str, ...] = field(default=("a",), metadata={"help": "modes", "choices": ("a", "b")})


def parse(argv: list[str]) -> Files:
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Files)
    return dataclass_from_args(Files, parser.parse_args(argv))


def test_a_list_field_takes_one_or_more_values_of_its_item_type():
    assert parse(["--inputs", "a.tsv", "b.tsv", "--sizes", "3", "4"]) == Files(["a.tsv", "b.tsv"], [3, 4])
    assert parse(["--inputs", "a.tsv"]) == Files(["a.tsv"], [1], None)


def test_a_tuple_field_comes_back_a_tuple_and_its_choices_hold_for_each_value():
    assert parse(["--inputs", "x", "--modes", "b", "a"]).modes == ("b", "a")
    with pytest.raises(SystemExit):
        parse(["--inputs", "x", "--modes", "a", "c"])


def test_a_field_without_default_is_a_required_flag(capsys):
    with pytest.raises(SystemExit):
        parse(["--sizes", "3"])
    assert "--inputs" in capsys.readouterr().err


@dataclass
class Named:
    source: str = field(metadata={"help": "the input", "positional": True})
    out: str = field(default="o", metadata={"help": "where"})


def test_a_positional_field_is_read_by_position():
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Named)
    assert dataclass_from_args(Named, parser.parse_args(["in.pkl", "--out", "x"])) == Named("in.pkl", "x")


def test_a_command_parses_its_config_and_shows_its_docstring_as_written(capsys):
    doc = "Do a thing.\n\n    python -m thing in.pkl --out x\n"
    assert parse_config(Named, ["in.pkl"], prog="python -m thing", doc=doc) == Named("in.pkl", "o")
    with pytest.raises(SystemExit):
        parse_config(Named, ["--help"], prog="python -m thing", doc=doc, title="naming")
    shown = capsys.readouterr().out
    assert shown.startswith("usage: python -m thing") and "\n    python -m thing in.pkl --out x\n" in shown
    assert "naming:" in shown and "--out OUT" in shown


@dataclass
class Picks:
    what: tuple[str, ...] = field(
        default=("a", "b"), metadata={"help": "which", "positional": True, "choices": ("a", "b", "c")}
    )
    out: str = field(default="o", metadata={"help": "where"})


def parse_picks(argv: list[str]) -> Picks:
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Picks)
    return dataclass_from_args(Picks, parser.parse_args(argv))


def test_a_positional_list_with_a_default_takes_zero_or_more_values_each_checked_against_its_choices(capsys):
    assert parse_picks([]) == Picks(("a", "b"), "o")
    assert parse_picks(["c", "a", "--out", "x"]) == Picks(("c", "a"), "x")
    with pytest.raises(SystemExit):
        parse_picks(["a", "d"])
    assert "invalid choice: 'd'" in capsys.readouterr().err


def test_only_a_positional_list_may_have_a_default():
    @dataclass
    class Odd:
        source: str = field(default="x", metadata={"help": "the input", "positional": True})

    with pytest.raises(ValueError, match="Odd.source"):
        add_dataclass_arguments(argparse.ArgumentParser(), Odd)
