"""The model registry: versions copied in once, never overwritten, explicit activation with history."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from nadkit.errors import BundleError
from nadkit.lifecycle.registry import (
    ModelRegistry,
    RegistryError,
    bundle_digest,
    check_version,
    resolve_bundle,
)
from tests.service.helpers import Kit


def test_register_activate_and_history(kit: Kit, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    assert registry.list() == [] and registry.active_version() is None
    first = registry.register(kit.bundle, note="first")
    assert first.version == "v1" and first.model == "ae" and first.note == "first" and not first.active
    assert registry.register(kit.bundle).version == "v1", "the same bundle is one version"
    assert registry.find(first.path) == "v1"
    assert bundle_digest(first.path) == bundle_digest(kit.bundle)
    stamp = registry.active_stamp()
    assert registry.activate("v1").active
    assert registry.active_stamp() != stamp
    other = tmp_path / "other"
    shutil.copytree(kit.bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["config"]["epochs"] = 1  # another model as far as the registry can tell
    (other / "manifest.json").write_text(json.dumps(manifest))
    second = registry.register(other)
    assert second.version == "v2" and registry.active_version() == "v1"
    registry.activate("v2")
    registry.activate("v1")
    history = [json.loads(line) for line in (registry.root / "activations.jsonl").read_text().splitlines()]
    assert [(h["version"], h["previous"]) for h in history] == [("v1", None), ("v2", "v1"), ("v1", "v2")]
    assert [v.version for v in registry.list()] == ["v1", "v2"]
    assert resolve_bundle("v2", registry) == (registry.path("v2"), "v2")
    assert resolve_bundle(kit.bundle, registry) == (kit.bundle, "v1")


def test_bad_versions_and_bundles(kit: Kit, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    for name in ("1", "v0", "v01", "../v1", "latest", ""):
        with pytest.raises(RegistryError):
            check_version(name)
    with pytest.raises(RegistryError, match="no model version 'v3'"):
        registry.activate("v3")
    broken = tmp_path / "broken"
    shutil.copytree(kit.bundle, broken)
    (broken / "threshold.json").write_text('{"method": "quantile", "value": 1.0}')
    with pytest.raises(BundleError, match="checksum"):
        registry.register(broken)
    assert registry.list() == [], "nothing half-registered"
    (tmp_path / "file").write_text("x")
    with pytest.raises(RegistryError, match="not a directory"):
        ModelRegistry(tmp_path / "file")


def test_concurrent_registrations_get_distinct_versions(kit: Kit, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    copies = []
    for index in range(3):
        copy = tmp_path / f"copy{index}"
        shutil.copytree(kit.bundle, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["config"]["epochs"] = 100 + index
        (copy / "manifest.json").write_text(json.dumps(manifest))
        copies.append(copy)
    versions: list[str] = []

    def register(path: Path) -> None:
        versions.append(ModelRegistry(tmp_path / "models").register(path).version)

    threads = [threading.Thread(target=register, args=(copy,)) for copy in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == ["v1", "v2", "v3"]
    assert sorted(v.version for v in registry.list()) == ["v1", "v2", "v3"]
