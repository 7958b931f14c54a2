"""argparse from dataclasses: every config field is a CLI flag, and every flag is a config field.

A field ``grad_accum: int = field(default=1, metadata={"help": "..."})`` becomes ``--grad-accum`` with that help
string and default; booleans become ``--flag / --no-flag``; a ``list[X]`` or ``tuple[X, ...]`` takes one or more
values; ``metadata["choices"]`` restricts the values (each value, for a list); ``metadata["positional"]`` makes a
field without a default a positional argument, and a list field with a default an optional one (zero or more
values; none keeps the default). Several
dataclasses can share one parser (each in its own argument group), e.g. the trainer's and a task's.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar_type(annotation: Any) -> tuple[type, bool]:
    """The parser type of a field annotation and whether it accepts None (``int | None`` → ``(int, True)``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"only X | None unions map to a flag, got {annotation}")
        return args[0], True
    return annotation, False


def _item_type(annotation: Any) -> type | None:
    """The item type of ``list[X]`` or ``tuple[X, ...]``, None for anything else."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and len(args) == 1:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def add_dataclass_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    title: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> None:
    """Add one flag per field of dataclass ``cls`` to ``parser``, in an argument group.

    Args:
        parser: the parser to extend; a flag that already exists raises argparse's conflict error.
        cls: a dataclass whose fields carry ``metadata={"help": ...}``.
        title: the group's title in ``--help`` (the class name by default).
        defaults: field → default that replaces the dataclass default for this CLI (e.g. fine-tuning's lr).
    """
    defaults = defaults or {}
    unknown = set(defaults) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise KeyError(f"defaults for unknown {cls.__name__} fields: {sorted(unknown)}")
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title or cls.__name__)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if "help" not in f.metadata:
            raise ValueError(f"{cls.__name__}.{f.name} has no help string in its metadata")
        if f.name in defaults:
            default = defaults[f.name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        kind, optional = _scalar_type(hints[f.name])
        many = _item_type(kind)
        if many is not None:
            kind = many
        help_text = f.metadata["help"] + (" (default: %(default)s)" if default not in (None, "") else "")
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": help_text}
        if kind is bool:
            group.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if kind not in (int, float, str):
            raise TypeError(f"{cls.__name__}.{f.name}: no flag for type {kind}")
        required = default is None and not optional and f.default is dataclasses.MISSING
        if many is not None:
            kwargs["nargs"] = "+"
        if f.metadata.get("positional"):
            del kwargs["dest"], kwargs["default"]
            if not _has_default(f):
                group.add_argument(f.name, type=kind, choices=f.metadata.get("choices"), **kwargs)
                continue
            if many is None:
                raise ValueError(
                    f"{cls.__name__}.{f.name}: only a list positional argument may have a default"
                )
            # argparse checks an absent positional's default against the choices as a whole (bpo-9625), so
            # each value given is checked by its type instead, and none given is an empty list.
            kwargs["nargs"] = "*"
            kwargs["help"] = f.metadata["help"] + f" (default: {' '.join(map(str, default))})"
            group.add_argument(f.name, type=_one_of(kind, f.metadata.get("choices")), **kwargs)
            continue
        group.add_argument(
            _flag(f.name), type=kind, choices=f.metadata.get("choices"), required=required, **kwargs
        )


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _one_of(kind: type, choices: Any) -> Any:
    """``kind`` as an argparse type that also refuses values outside ``choices`` (``kind`` itself when None)."""
    if choices is None:
        return kind

    def parse(text: str) -> Any:
        value = kind(text)
        if value not in choices:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {', '.join(map(str, choices))})"
            )
        return value

    return parse


def dataclass_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Build ``cls`` from the parsed flags that ``add_dataclass_arguments`` added for it."""
    hints = typing.get_type_hints(cls)
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        # An optional positional list given no value keeps the field's default.
        if f.init and not (f.metadata.get("positional") and _has_default(f) and getattr(args, f.name) == [])
    }
    for name, value in values.items():
        if typing.get_origin(hints[name]) is tuple and value is not None:
            values[name] = tuple(value)
    return cls(**values)


def command_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of a ``python -m`` command: its module docstring as the description, laid out as written."""
    return argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def parse_config(
    cls: type[T], argv: list[str] | None, *, prog: str, doc: str | None, title: str | None = None
) -> T:
    """The ``cls`` config of a command line whose flags are exactly the fields of ``cls``."""
    parser = command_parser(prog, doc)
    add_dataclass_arguments(parser, cls, title)
    return dataclass_from_args(cls, parser.parse_args(argv))


__all__ = ["add_dataclass_arguments", "command_parser", "dataclass_from_args", "parse_config"]
