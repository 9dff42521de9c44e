"""Typed stage configs: a frozen dataclass per stage, decoded and checked once from its view.

A stage's view (``openrecipe.registry``: ``{dotted path: value}``) is what its hash covers. A
stage with a typed config declares one dataclass field per view path (``view_field(path)``);
:func:`decode_view` refuses a view with a path the config does not declare or lacks one it does
(so the two cannot drift), checks every value against its annotation, and names the dotted field
of any mismatch. :func:`encode_view` gives the view back unchanged (values are kept as read, an
integer in a float field stays an integer), so the hash of a decoded config is the view hash.
Stages then read attributes instead of dotted strings.

Annotations understood: ``int``, ``float`` (an int is accepted and kept), ``str``, ``bool``,
``tuple[X, ...]`` (from a YAML list), ``dict[str, X]`` (a mapping with free keys),
``Literal[...]``, ``X | None`` and nested dataclasses. A nested dataclass field declared with
:func:`optional_key` may be absent from the mapping (the schema has no default for it, e.g. the
fields of a ``data.exclude`` rule); it reads None then, and is left out again on encoding.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, Union

from openrecipe.errors import RecipeError

T = TypeVar("T")
VIEW_PATH = "view_path"
OPTIONAL_KEY = "optional_key"


def view_field(path: str) -> Any:
    """A top-level config field holding the view entry at ``path``."""
    return dataclasses.field(metadata={VIEW_PATH: path})


def optional_key() -> Any:
    """A nested config field that the mapping may leave out (None then; omitted on encoding)."""
    return dataclasses.field(default=None, metadata={OPTIONAL_KEY: True})


def view_paths(cls: type) -> tuple[str, ...]:
    """The view paths a typed config declares, in field order."""
    return tuple(f.metadata[VIEW_PATH] for f in dataclasses.fields(cls))


def decode_view(cls: type[T], view: dict[str, Any], stage: str) -> T:
    """The typed config of ``stage`` from its view; a RecipeError names any mismatch."""
    declared = set(view_paths(cls))
    if set(view) != declared:
        raise RecipeError(
            f"stage {stage}: view paths {sorted(view)} differ from its config's {sorted(declared)}"
        )
    hints = typing.get_type_hints(cls)
    values = {
        f.name: _value(hints[f.name], view[f.metadata[VIEW_PATH]], f.metadata[VIEW_PATH])
        for f in dataclasses.fields(cls)
    }
    return cls(**values)


def decode_value(annotation: Any, value: Any, where: str) -> Any:
    """One recipe section (or value) checked against ``annotation``, for callers outside a
    stage that build a section by hand (benchmarks); ``where`` is its dotted path."""
    return _value(annotation, value, where)


def encode_view(config: Any) -> dict[str, Any]:
    """The view a typed config was decoded from (tuples back to lists, as YAML reads them)."""
    return {
        f.metadata[VIEW_PATH]: plain(getattr(config, f.name)) for f in dataclasses.fields(config)
    }


def plain(value: Any) -> Any:
    """A decoded value in the form the recipe gave it (mappings, lists, absent optional keys
    left out), for the few outputs that record a config section as it was written."""
    if dataclasses.is_dataclass(value):
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.metadata.get(OPTIONAL_KEY) and getattr(value, f.name) is None)
        }
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _record(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise RecipeError(f"{where}: expected a mapping, found {type(value).__name__}")
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    required = {f.name for f in fields if not f.metadata.get(OPTIONAL_KEY)}
    unknown, missing = sorted(set(value) - names), sorted(required - set(value))
    if unknown or missing:
        raise RecipeError(f"{where}: unknown keys {unknown}, missing keys {missing}")
    for name in sorted((names - required) & set(value)):
        if value[name] is None:  # None means absent: given, it would not survive encoding
            raise RecipeError(f"{where}.{name}: null is not allowed (leave the key out)")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _value(hints[name], value[name], f"{where}.{name}") for name in value})


def _value(annotation: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        return _record(annotation, value, where)
    if origin is Literal:
        if value not in args:
            raise RecipeError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _value(inner[0] if len(inner) == 1 else annotation, value, where)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, list | tuple):
            raise RecipeError(f"{where}: expected a list, found {type(value).__name__}")
        return tuple(_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict and len(args) == 2 and args[0] is str:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, found {type(value).__name__}")
        for key in value:
            if not isinstance(key, str):
                raise RecipeError(f"{where}: key {key!r} is not a string")
        return {k: _value(args[1], v, f"{where}.{k}") for k, v in value.items()}
    accepted = {float: (int, float), int: (int,), str: (str,), bool: (bool,)}.get(annotation)
    if accepted is None:
        raise TypeError(f"{where}: annotation {annotation!r} is not supported")
    if not isinstance(value, accepted) or (annotation is not bool and isinstance(value, bool)):
        raise RecipeError(f"{where}: expected {annotation.__name__}, found {value!r}")
    return value
