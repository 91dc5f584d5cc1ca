"""Fixtures of the service tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.helpers import TOKEN, Kit, registry_with, session_kit


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return session_kit(tmp_path_factory)


@pytest.fixture()
def settings(kit: Kit, tmp_path: Path):  # type: ignore[no-untyped-def]
    from nadkit.service.settings import Settings

    registry_with(kit, tmp_path / "models")
    return Settings(db=tmp_path / "alerts.db", registry=tmp_path / "models", token=TOKEN)


@pytest.fixture()
def client(settings) -> Iterator:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from nadkit.service import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client
