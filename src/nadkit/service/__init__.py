"""The alert service: a FastAPI application scoring flows, storing alerts, serving the triage page
and recording analyst feedback (``nadkit serve``).

:func:`create_app` builds the application for :class:`~nadkit.service.state.Settings`. Nothing
heavy is imported with the package itself, so :mod:`nadkit.lifecycle.registry` stays light for the
command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from nadkit.service.settings import Settings

__all__ = ["Settings", "create_app"]


def create_app(settings: Settings) -> FastAPI:
    """The service application (see :func:`nadkit.service.app.create_app`)."""
    from nadkit.service.app import create_app as build

    return build(settings)


def __getattr__(name: str) -> Any:
    if name == "Settings":
        from nadkit.service.settings import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
