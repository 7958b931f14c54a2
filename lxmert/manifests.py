"""Versioned JSON manifests of a directory (a model set's ``model_set.json``, a dataset's ``dataset.json``).

A manifest is untrusted input: it must be an object of its format and version with no unknown field, its optional
``name`` a non-empty string (the directory's name by default), and every path it names relative to its directory
and inside it once symlinks are resolved. Whatever is wrong raises the caller's error class, naming the field.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import UnreadableFileError
from .fileio import path_inside, read_json_object


def read_manifest(
    manifest: Path, format_name: str, version: int, fields: Iterable[str], error: type[UnreadableFileError]
) -> tuple[dict[str, Any], str]:
    """The manifest's fields and its name (stripped; the directory's name when it gives none).

    Raises:
        ``error``: the file is missing, not a JSON object, of another format or version, has a field outside
            ``fields`` (``format``, ``version`` and ``name`` are always allowed) or a name that is not a non-empty
            string.
    """
    try:
        values = read_json_object(manifest)
    except (OSError, ValueError) as err:
        raise error(manifest, str(err)) from err
    if values.get("format") != format_name or values.get("version") != version:
        raise error(
            manifest,
            f"is not a {format_name} version {version} manifest "
            f"(format {values.get('format')!r}, version {values.get('version')!r})",
        )
    unknown = sorted(set(values) - {"format", "version", "name", *fields})
    if unknown:
        raise error(manifest, f"has unknown fields {unknown}")
    name = values.get("name", manifest.parent.name)
    if not isinstance(name, str) or not name.strip():
        raise error(manifest, f"name must be a non-empty string, got {name!r}")
    return values, name.strip()


def manifest_path(manifest: Path, value: Any, where: str, error: type[UnreadableFileError]) -> Path:
    """``value``, a path the manifest gives in its field ``where``, resolved inside the manifest's directory.

    Raises:
        ``error``: naming ``where``, when ``value`` is not a non-empty relative path or leads outside.
    """
    try:
        return path_inside(manifest.parent, value)
    except ValueError as err:
        raise error(manifest, f"{where} {err}") from None


__all__ = ["manifest_path", "read_manifest"]
