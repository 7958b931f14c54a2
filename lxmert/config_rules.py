"""Declarative checks of config fields: a table gives each field's type and range, one function applies it.

A config read from a file is untrusted: ``"64"`` is not 64, ``true`` is not 1, NaN is no dropout rate, and a
10^9-word vocabulary is a typo or an attack, not a model. Each config class keeps a table ``field → rule`` and
checks it in ``__post_init__``, so a config built from a file, from a dict or in code is checked the same way; a
field without a rule is a programming error, found by the first construction.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class ConfigError(ValueError):
    """A config field of the wrong type or out of range; the message names the field and the value."""


class Rule(Protocol):
    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (completing "field 'x' ..."), or None when it is fine."""


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


@dataclass(frozen=True)
class Int:
    """An integer (``bool`` is not one) in ``[low, high]``."""

    low: int
    high: int

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {_shown(value)}"
        if not self.low <= value <= self.high:
            return f"must lie in [{self.low}, {self.high}], got {value}"
        return None


@dataclass(frozen=True)
class Float:
    """A finite number (an integer is accepted, ``bool`` is not) in ``[low, high]``, or ``(low, high]`` when
    ``above_low``."""

    low: float
    high: float
    above_low: bool = False

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {_shown(value)}"
        if not math.isfinite(value):
            return f"must be finite, got {value}"
        if value > self.high or value < self.low or (self.above_low and value == self.low):
            return f"must lie in {'(' if self.above_low else '['}{self.low}, {self.high}], got {value}"
        return None


@dataclass(frozen=True)
class Bool:
    """``true`` or ``false`` (not 0, 1 or a string)."""

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else f"must be true or false, got {_shown(value)}"


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of strings."""

    options: tuple[str, ...]

    def problem(self, value: Any) -> str | None:
        return None if value in self.options else f"must be one of {list(self.options)}, got {_shown(value)}"


@dataclass(frozen=True)
class Items:
    """A list or tuple of ``min_len`` to ``max_len`` items, each obeying ``item``."""

    item: Rule
    min_len: int
    max_len: int

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, (list, tuple)):
            return f"must be a list, got {_shown(value)}"
        if not self.min_len <= len(value) <= self.max_len:
            return f"must have {self.min_len} to {self.max_len} items, got {len(value)}"
        for index, item in enumerate(value):
            problem = self.item.problem(item)
            if problem:
                return f"item {index} {problem}"
        return None


def check_fields(config: Any, rules: Mapping[str, Rule]) -> None:
    """Check every field of the dataclass instance ``config`` against its rule.

    Raises:
        ConfigError: the first field that breaks its rule, named with its class.
        TypeError: a field has no rule (a field was added without one).
    """
    kind = type(config).__name__
    names = [f.name for f in dataclasses.fields(config)]
    unruled = [name for name in names if name not in rules]
    if unruled:
        raise TypeError(f"{kind} fields without a validation rule: {unruled}")
    for name in names:
        problem = rules[name].problem(getattr(config, name))
        if problem:
            raise ConfigError(f"{kind} field {name!r} {problem}")


__all__ = ["Bool", "ConfigError", "Float", "Int", "Items", "OneOf", "Rule", "check_fields"]
