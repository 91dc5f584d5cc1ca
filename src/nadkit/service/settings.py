"""The service's settings, checked without loading anything heavy (the command line refuses bad
settings at once)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nadkit.errors import ConfigError
from nadkit.lifecycle.registry import default_registry

TOKEN_ENV = "NADKIT_TOKEN"
MIN_TOKEN_LENGTH = 16
LOOPBACK = "127.0.0.1"


class Settings(BaseSettings):
    """How the service runs (pydantic settings: the values given, else ``NADKIT_``-prefixed
    environment variables such as ``NADKIT_TOKEN`` or ``NADKIT_MAX_FLOWS``, else the defaults).

    ``db``: the alert store file; ``registry``: the model registry directory (default: ``models/``
    beside the store); ``token``: the bearer token every API call must carry (required unless
    ``insecure_localhost``); ``max_body_bytes``: larger request bodies are refused (413);
    ``max_flows``: the most flows one scoring request may hold (413); ``engine``: the scoring
    engine (``auto``, ``torch``, ``onnx``); ``top``: contributing features kept per alert;
    ``scoring_slots``: scoring requests computed at once (others wait); ``bundle_key``: the key model
    bundles must be signed with (``NADKIT_BUNDLE_KEY``; see :mod:`nadkit.training.signing`; None:
    signatures are not checked). A bad value is a
    :class:`ConfigError` naming the setting. ``threshold``: ``bundle`` (the bundle's fixed one), or
    ``spot``/``dspot`` (adapting to the scores of flows not alerted, :mod:`nadkit.evaluation.adaptive`);
    ``drift_window``: scored flows per drift window (0: no drift measured).
    """

    model_config = SettingsConfigDict(env_prefix="NADKIT_", frozen=True, extra="forbid")

    db: Path
    registry: Path | None = None
    token: str | None = None
    insecure_localhost: bool = False
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_flows: int = Field(default=200_000, ge=1)
    engine: Literal["auto", "torch", "onnx"] = "auto"
    top: int = Field(default=5, ge=1)
    scoring_slots: int = Field(default=2, ge=1)
    threshold: Literal["bundle", "spot", "dspot"] = "bundle"
    drift_window: int = Field(default=10_000, ge=0)
    bundle_key: str | None = Field(default=None, repr=False)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"service setting {where!r}: {message}" if where else message) from None

    @model_validator(mode="after")
    def _check_token(self) -> Settings:
        if self.token is None and not self.insecure_localhost:
            raise ValueError(
                f"no API token: set {TOKEN_ENV} or give a token in the settings file "
                "(or use --insecure-localhost for an unauthenticated server on 127.0.0.1)"
            )
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the API token must be at least {MIN_TOKEN_LENGTH} characters long")
        if self.token is not None and (not self.token.isascii() or not self.token.isprintable()):
            raise ValueError("the API token must be printable ASCII")
        return self

    @field_validator("bundle_key")
    @classmethod
    def _check_bundle_key(cls, value: str | None) -> str | None:
        if value is not None:
            from nadkit.training.signing import bundle_key

            try:
                bundle_key(value)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        return value

    @property
    def registry_dir(self) -> Path:
        return self.registry if self.registry is not None else default_registry(self.db)

    @property
    def auth_required(self) -> bool:
        return self.token is not None


def token_from(env: dict[str, str] | None = None, settings: dict[str, Any] | None = None) -> str | None:
    """The API token: ``NADKIT_TOKEN`` from the environment, else ``token`` of a settings file."""
    env = dict(os.environ) if env is None else env
    value = env.get(TOKEN_ENV) or (settings or {}).get("token")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError("the API token in the settings file must be text")
    return value.strip() or None
