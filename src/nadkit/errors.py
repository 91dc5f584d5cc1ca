"""Typed errors. The CLI prints each as one line and exits with code 2."""

from __future__ import annotations

from pathlib import Path


class NadkitError(Exception):
    """Base class of every error nadkit raises on bad input or bad state."""


class SchemaError(NadkitError):
    """A table does not fit the canonical flow schema (or a source's own layout).

    Carries where the problem is: the file, the column and the first offending row (1-based data
    row, header not counted), so that a person can open the file at the right place.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.column = column
        self.row = row
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path:
            where.append(self.path)
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.row is not None:
            where.append(f"row {self.row}")
        return f"{': '.join(where)}: {self.message}" if where else self.message


class FormatError(NadkitError):
    """The input's format is unknown, unsupported, or not what was asked for."""


class ConfigError(NadkitError):
    """A configuration value or command-line option is invalid."""


class BundleError(NadkitError):
    """A saved model bundle is missing, corrupt, tampered with or incompatible."""


class MissingDependencyError(NadkitError):
    """An optional dependency needed for this operation is not installed."""


def require(module: str, purpose: str, extra: str | None = None):
    """Import an optional dependency lazily, with an actionable message when it is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:  # pragma: no cover - depends on the environment
        hint = f"pip install 'nadkit[{extra}]'" if extra else f"pip install {module}"
        raise MissingDependencyError(f"{purpose} needs the '{module}' package ({hint})") from error
