"""Reading settings files (YAML, TOML or JSON) into plain mappings."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nadkit.errors import ConfigError


def read_settings(path: str | Path, what: str = "settings") -> dict[str, Any]:
    """The mapping in a ``.yaml``/``.yml``, ``.toml`` or JSON file; :class:`ConfigError` naming the
    file when it cannot be read or is not a mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read {what} ({error.strerror})") from error
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except Exception as error:
        raise ConfigError(f"{path}: not valid {suffix.lstrip('.') or 'JSON'} ({error})") from error
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: {what} must be a mapping")
    return dict(data)


def typed_settings(kind: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``data`` (settings for the dataclass ``kind``) with each value checked against the type of its
    field's default: a whole number where the default is one (``2.0`` taken as ``2``), a number where
    it is a float, ``true``/``false`` where it is a boolean, null too where the field's type allows
    None. A :class:`ConfigError` names the setting, so that a wrong type in a settings file or a
    bundle is one line, not a ``TypeError`` deep inside."""
    import dataclasses

    defaults = {
        item.name: item.default
        for item in dataclasses.fields(kind)
        if item.default is not dataclasses.MISSING and item.default is not None
    }
    # fields typed ``X | None`` take null as well
    nullable = {item.name for item in dataclasses.fields(kind) if "None" in str(item.type)}
    out = dict(data)
    for key, value in data.items():
        if key not in defaults or (value is None and key in nullable):
            continue
        default = defaults[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{what} {key!r} must be true or false, not {value!r:.40}")
        elif isinstance(default, int):
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                out[key] = int(value)
            elif isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{what} {key!r} must be a whole number, not {value!r:.40}")
        elif isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"{what} {key!r} must be a number, not {value!r:.40}")
    return out
