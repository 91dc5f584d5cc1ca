"""The service's settings, checked without loading anything heavy (the command line refuses bad
settings at once)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nadkit.errors import ConfigError
from nadkit.lifecycle.registry import default_registry

#: the scoring engines a bundle knows (as nadkit.training.bundle.ENGINES)
ENGINES = ("auto", "torch", "onnx")

TOKEN_ENV = "NADKIT_TOKEN"
MIN_TOKEN_LENGTH = 16
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Settings:
    """How the service runs.

    ``db``: the alert store file; ``registry``: the model registry directory (default: ``models/``
    beside the store); ``token``: the bearer token every API call must carry (required unless
    ``insecure_localhost``); ``max_body_bytes``: larger request bodies are refused (413);
    ``max_flows``: the most flows one scoring request may hold (413); ``engine``: the scoring
    engine (``auto``, ``torch``, ``onnx``); ``top``: contributing features kept per alert;
    ``scoring_slots``: scoring requests computed at once (others wait).
    """

    db: Path
    registry: Path | None = None
    token: str | None = None
    insecure_localhost: bool = False
    max_body_bytes: int = 32 * 1024 * 1024
    max_flows: int = 200_000
    engine: str = "auto"
    top: int = 5
    scoring_slots: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.token is None and not self.insecure_localhost:
            raise ConfigError(
                f"no API token: set {TOKEN_ENV} or give a token in the settings file "
                "(or use --insecure-localhost for an unauthenticated server on 127.0.0.1)"
            )
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"the API token must be at least {MIN_TOKEN_LENGTH} characters long")
        if self.token is not None and (not self.token.isascii() or not self.token.isprintable()):
            raise ConfigError("the API token must be printable ASCII")
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown scoring engine {self.engine!r} (known: {', '.join(ENGINES)})")
        if self.max_body_bytes < 1024 or self.max_flows < 1 or self.scoring_slots < 1 or self.top < 1:
            raise ConfigError("max body size, max flows, scoring slots and top must be positive")

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
