"""Strict nested dataclass configs from YAML and plain data: one config system for every run of the project.

One YAML layout for every run config (codec, token models, the ablation):

- ``base: other.yaml`` (optional): a file this one is merged over (relative to it);
- a section per nested config (``codec``, ``discriminators``, ``losses``, ``model``, ...). A section may start from a
  named ``preset`` (``codec: {preset: mini, quantizer: {kind: rvq}}``; ``codec: mini`` is short for
  ``{preset: mini}``) and its other keys override the preset's fields, at any depth;
- ``train:`` for the run's own flat fields (steps, learning rate, cadences);
- ``--set a.b.c=value`` overrides on the command line (YAML values), applied last.

``read_run_file`` reads that layout and ``build`` makes the dataclasses.

``build(Config, data)`` makes a ``Config`` from a mapping: nested dataclass fields (and ``Optional`` ones, where
``None`` stays ``None``) are built from nested mappings, lists become tuples where the field is a tuple (nested tuples
too), and a key the dataclass does not have is a ``ValueError`` that names it by its dotted path. Missing keys take the
field's default. Values are checked by the dataclasses themselves (``__post_init__``).

Hand-rolled rather than a library: the configs are frozen stdlib dataclasses already, and the few rules above are all
that loading them needs (no pydantic or OmegaConf dependency for the core packages).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Type, TypeVar

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
    try:
        return kind(**values)
    except TypeError as err:  # a value of the wrong type that the dataclass itself tripped over
        raise ValueError(f"{where or kind.__name__}: {err}") from None


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
    """Field types of a dataclass, with string annotations (``from __future__ import annotations``) resolved in the
    module of the class that declares each field."""
    return typing.get_type_hints(kind)


# The YAML layout ---------------------------------------------------------------------------------------------------

Presets = Mapping[str, Callable[[], Any]]


def preset_section(value: Any, presets: Presets, where: str, default: str) -> dict:
    """A section's plain data with its ``preset`` resolved: the preset's fields, with the section's other keys merged
    over them (``build`` then refuses any key the config does not have, naming it)."""
    value = _section(value, where)
    name = value.pop("preset", default)
    if name not in presets:
        raise ValueError(f"{where}.preset: unknown preset {name!r} (one of {', '.join(presets)})")
    return merge(dataclasses.asdict(presets[name]()), value)


def read_run_file(path: os.PathLike, overrides: Optional[Sequence[str]] = None, sections: Iterable[str] = (),
                  renames: Optional[Mapping[str, str]] = None) -> Tuple[Dict[str, dict], dict]:
    """``(sections, train)`` of a run config in the layout above: each named section as a mapping (``{}`` when
    absent) and the ``train`` mapping. Any other top-level key is an error that names it.

    ``renames`` maps keys of an earlier layout to their place in this one (``{"codec_overrides": "codec"}`` merges that
    mapping into the ``codec`` section, ``{"model_type": "model.type"}`` moves a value), so configs written for it
    keep loading. Each file (and the ``--set`` overrides) is brought to this layout before they are merged.
    """
    sections = tuple(sections)

    def normalize(data: dict) -> dict:
        for old, new in (renames or {}).items():
            if old in data:
                _put(data, new, data.pop(old))
        for name in sections:
            if name in data:
                data[name] = _section(data[name], name)
        return data

    data = read_yaml(path, normalize=normalize)
    data = merge(data, normalize(apply_overrides({}, overrides)))
    unknown = sorted(set(data) - set(sections) - {"train"})
    if unknown:
        raise ValueError(f"{path}: unknown section {unknown[0]!r} (sections: {', '.join(sections + ('train',))})")
    train = data.get("train", {})
    if not isinstance(train, Mapping):
        raise ValueError(f"{path}: train must be a mapping, got {train!r}")
    return {name: data.get(name, {}) for name in sections}, dict(train)


def read_yaml(path: os.PathLike, overrides: Optional[Sequence[str]] = None,
              normalize: Callable[[dict], dict] = lambda data: data) -> dict:
    """A YAML file merged over its ``base:`` file (relative to it; each ``normalize``d first), then ``a.b.c=value``
    overrides."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ValueError(f"cannot read config {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    data = normalize(data)
    if base:
        data = merge(read_yaml(path.parent / base, normalize=normalize), data)
    return apply_overrides(data, overrides)


def apply_overrides(data: dict, overrides: Optional[Sequence[str]]) -> dict:
    """``data`` with ``a.b.c=value`` strings applied (values parsed as YAML; missing sections are created)."""
    import yaml

    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"an override is SECTION.FIELD=VALUE, got {item!r}")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError(f"override {item!r}: the value is not valid YAML") from None
        try:
            _put(data, key, parsed)
        except ValueError as err:
            raise ValueError(f"override {item!r}: {err}") from None
    return data


def merge(base: dict, extra: Mapping) -> dict:
    """``base`` with ``extra`` merged over it, mapping into mapping (neither is changed)."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _put(data: dict, dotted: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``a.b.c`` (a mapping value is merged into a mapping already there)."""
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        parent, node = node, node.setdefault(part, {})
        if isinstance(node, str):  # ``codec: mini`` shorthand, met before it was normalized
            node = parent[part] = {"preset": node}
        if not isinstance(node, dict):
            raise ValueError(f"{part} is not a section")
    if isinstance(value, Mapping) and isinstance(node.get(leaf), (Mapping, str)):
        value = merge(_section(node[leaf], leaf), value)
    node[leaf] = value


def _section(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):  # ``codec: mini`` is short for ``codec: {preset: mini}``
        return {"preset": value}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a mapping (or a preset name), got {value!r}")
    return dict(value)
