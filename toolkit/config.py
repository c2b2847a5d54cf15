"""Strict nested dataclass configs from plain data (YAML, JSON): one builder for every config of the project.

``build(Config, data)`` makes a ``Config`` from a mapping: nested dataclass fields (and ``Optional`` ones, where
``None`` stays ``None``) are built from nested mappings, lists become tuples where the field is a tuple (nested tuples
too), and a key the dataclass does not have is a ``ValueError`` that names it by its dotted path. Missing keys take the
field's default. Values are checked by the dataclasses themselves (``__post_init__``).

Hand-rolled rather than a library: the configs are frozen stdlib dataclasses already, and the few rules above are all
that loading them needs (no pydantic or OmegaConf dependency for the core packages).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, Mapping, Type, TypeVar

T = TypeVar("T")


def build(kind: Type[T], data: Mapping[str, Any], where: str = "") -> T:
    """``kind`` from ``data``; ``where`` prefixes key names in errors (e.g. ``"model"`` -> ``model.transformer.x``)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where or kind.__name__} must be a mapping, got {data!r}")
    hints = _hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        path = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ValueError(f"{kind.__name__} has no field {path!r} (fields: {', '.join(fields)})")
    values = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, f"{where}.{name}" if where else name)
    return kind(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]: None stays None, anything else is an X
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return build(hint, value, where)  # a mapping, or an error naming ``where``
    if (origin is tuple or hint is tuple) and isinstance(value, (list, tuple)):
        inner = args[0] if args else Any
        return tuple(_convert(inner, v, where) for v in value)
    return value


def _hints(kind: type) -> Dict[str, Any]:
    """Field types of a dataclass, with string annotations (``from __future__ import annotations``) resolved."""
    import sys

    module = sys.modules.get(kind.__module__)
    return typing.get_type_hints(kind, vars(module) if module else None)
