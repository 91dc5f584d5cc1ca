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
