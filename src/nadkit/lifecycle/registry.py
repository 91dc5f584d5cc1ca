"""The model registry: a directory of versioned model bundles and a pointer to the active one.

::

    models/
      versions/v1/          a model bundle (copied in when registered; never changed afterwards)
      versions/v1.json      how it got there: source path, registration time, bundle digest, note
      versions/v2/ ...
      active.json           the active version, when it was activated and by whom
      activations.jsonl     every activation, appended (the history)
      decisions.jsonl       every promotion, refusal and rollback of a challenger, with its figures

Registering copies a bundle in under the next free version name (``v1``, ``v2``, ...); registering
the same bundle again (same files, by their checksums) returns its existing version. Versions are
never removed or overwritten, so an earlier model can always be activated again. Activation is
explicit and checks that the bundle loads before the pointer moves; the pointer is replaced
atomically, so readers see either the old or the new active version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:  # POSIX; elsewhere registrations are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from nadkit.errors import BundleError, ConfigError, NadkitError
from nadkit.evaluation.thresholds import Threshold
from nadkit.fileio import atomic_path, process_alive

log = logging.getLogger(__name__)

VERSIONS = "versions"
ACTIVE = "active.json"
HISTORY = "activations.jsonl"
DECISIONS = "decisions.jsonl"
LOCK = ".lock"  # in versions/: held while a registration names and moves in its version
#: the kinds of decision :meth:`ModelRegistry.record` keeps
DECISION_KINDS = ("promotion", "refusal", "rollback")
VERSION_PATTERN = re.compile(r"^v([1-9][0-9]{0,8})$")


class RegistryError(NadkitError):
    """The model registry cannot do what was asked (unknown version, bad directory, ...)."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered model: its version name, bundle directory and what its manifest says."""

    version: str
    path: Path
    model: str
    created: str
    registered: str
    digest: str
    source: str
    note: str
    threshold: float | None
    metrics: dict[str, Any]
    active: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model": self.model,
            "created": self.created,
            "registered": self.registered,
            "digest": self.digest,
            "source": self.source,
            "note": self.note,
            "threshold": self.threshold,
            "active": self.active,
            "metrics": self.metrics,
        }


def bundle_digest(path: str | Path) -> str:
    """A digest of a bundle's content, from its manifest's model, config and file checksums."""
    manifest_path = Path(path) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{manifest_path}: missing; not a model bundle") from None
    except (OSError, ValueError) as error:
        raise BundleError(f"{manifest_path}: cannot be read ({error})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{manifest_path}: not a nadkit model bundle manifest")
    identity = {k: manifest.get(k) for k in ("model", "config", "features", "files")}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def check_version(version: str) -> str:
    """``version`` when it is a version name (``v1``, ``v2``, ...); :class:`RegistryError` otherwise."""
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise RegistryError(f"not a model version name: {version!r} (versions are v1, v2, ...)")
    return version


def _summary_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a bundle's metrics.json (hold-out quality, training size)."""
    out: dict[str, Any] = {}
    holdout = metrics.get("holdout")
    if isinstance(holdout, dict):
        for key in ("roc_auc", "pr_auc", "precision", "recall", "f1"):
            if isinstance(holdout.get(key), int | float):
                out[key] = holdout[key]
    for key in ("train_rows", "fit_seconds"):
        if isinstance(metrics.get(key), int | float):
            out[key] = metrics[key]
    retrain = metrics.get("retrain")
    if isinstance(retrain, dict):
        out["retrained_from"] = retrain.get("parent_version") or retrain.get("parent")
    return out


class ModelRegistry:
    """The registry directory ``root`` (created when a model is first registered)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise RegistryError(f"{self.root}: not a directory (expected a model registry)")

    @property
    def versions_dir(self) -> Path:
        return self.root / VERSIONS

    def path(self, version: str) -> Path:
        """The bundle directory of ``version``; :class:`RegistryError` when it is not registered."""
        folder = self.versions_dir / check_version(version)
        if not (folder / "manifest.json").is_file():
            raise RegistryError(f"{self.root}: no model version {version!r}")
        return folder

    def _names(self) -> list[str]:
        if not self.versions_dir.is_dir():
            return []
        names = [p.name for p in self.versions_dir.iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name)]
        return sorted(names, key=lambda name: int(name[1:]))

    def info(self, version: str) -> ModelVersion:
        """What is known of ``version``."""
        folder = self.path(version)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            metrics = json.loads((folder / "metrics.json").read_text())
            threshold = json.loads((folder / "threshold.json").read_text())
        except (OSError, ValueError) as error:
            raise RegistryError(f"{folder}: cannot be read ({error})") from None
        sidecar = folder.with_name(f"{version}.json")
        extra: dict[str, Any] = {}
        if sidecar.is_file():
            with contextlib.suppress(OSError, ValueError):
                extra = json.loads(sidecar.read_text())
        try:
            value: float | None = Threshold.from_dict(threshold).value
        except ConfigError:
            value = None
        return ModelVersion(
            version=version,
            path=folder,
            model=str(manifest.get("model", "")),
            created=str(manifest.get("created", "")),
            registered=str(extra.get("registered", "")),
            digest=str(extra.get("digest", "")),
            source=str(extra.get("source", "")),
            note=str(extra.get("note", "")),
            threshold=float(value) if isinstance(value, int | float) else None,
            metrics=_summary_metrics(metrics if isinstance(metrics, dict) else {}),
            active=version == self.active_version(),
        )

    def list(self) -> list[ModelVersion]:
        """Every registered version, oldest first (a version directory a killed registration left
        empty holds no bundle and is no version)."""
        return [
            self.info(name)
            for name in self._names()
            if (self.versions_dir / name / "manifest.json").is_file()
        ]

    def find(self, bundle: str | Path) -> str | None:
        """The version holding the same bundle as the directory ``bundle``, if any."""
        digest = bundle_digest(bundle)
        for name in self._names():
            if not (self.versions_dir / name / "manifest.json").is_file():
                continue  # a name a killed registration claimed: no version, whatever its record says
            sidecar = self.versions_dir / f"{name}.json"
            try:
                known = json.loads(sidecar.read_text()).get("digest")
            except (OSError, ValueError, AttributeError):
                known = None
            if known is None:
                with contextlib.suppress(NadkitError):
                    known = bundle_digest(self.versions_dir / name)
            if known == digest:
                return name
        return None

    def register(self, bundle: str | Path, *, note: str = "") -> ModelVersion:
        """Copy the bundle directory ``bundle`` in as the next version (or return the version that
        already holds it). The bundle is verified first (it must load)."""
        from nadkit.training.bundle import ModelBundle

        bundle = Path(bundle)
        existing = self.find(bundle)
        if existing is not None:
            log.info("%s is already registered as %s", bundle, existing)
            return self.info(existing)
        ModelBundle.load(bundle, engine="torch")  # refuse what does not load before copying it
        digest = bundle_digest(bundle)
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        _sweep_staging(self.versions_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".register.{os.getpid()}.", dir=self.versions_dir))
        try:
            copied = staging / "bundle"
            shutil.copytree(bundle, copied, ignore=shutil.ignore_patterns(".*"))
            # the copy is made outside the lock; the name, the record and the move happen under it, so
            # an empty name seen under the lock was left by a registration that was killed
            with _registry_lock(self.versions_dir):
                _sweep_empty_versions(self.versions_dir)
                names = self._names()
                version = f"v{int(names[-1][1:]) + 1}" if names else "v1"
                target = self.versions_dir / version
                target.mkdir()
                # the record first, then the bundle: a version that holds a bundle always has its
                # record; a registration killed between the two leaves an empty name (swept by the
                # next one) and a record that the next registration of that name replaces
                record = {
                    "version": version,
                    "registered": datetime.now(UTC).isoformat(timespec="seconds"),
                    "digest": digest,
                    "source": str(bundle.resolve()),
                    "note": note,
                }
                sidecar = self.versions_dir / f"{version}.json"
                try:
                    with atomic_path(sidecar, overwrite=True) as temporary:
                        temporary.write_text(json.dumps(record, indent=2) + "\n")
                    os.replace(copied, target)
                except OSError:
                    sidecar.unlink(missing_ok=True)
                    with contextlib.suppress(OSError):
                        target.rmdir()
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("registered %s as %s in %s", bundle, version, self.root)
        return self.info(version)

    # -- the active version --------------------------------------------------------------------------

    def _pointer(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.root / ACTIVE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise RegistryError(f"{self.root / ACTIVE}: cannot be read ({error})") from None
        return data if isinstance(data, dict) else None

    def active_version(self) -> str | None:
        """The active version's name, or None when none was activated."""
        pointer = self._pointer()
        version = pointer.get("version") if pointer else None
        return version if isinstance(version, str) and VERSION_PATTERN.match(version) else None

    def active_stamp(self) -> int | None:
        """Changes whenever the active version changes (the pointer file's modification time)."""
        try:
            return (self.root / ACTIVE).stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def activate(self, version: str, *, by: str = "cli", verify: bool = True) -> ModelVersion:
        """Make ``version`` the active model (after checking, with ``verify``, that it loads)."""
        folder = self.path(version)
        if verify:
            from nadkit.training.bundle import ModelBundle

            ModelBundle.load(folder, engine="torch")
        previous = self.active_version()
        record = {
            "version": version,
            "previous": previous,
            "activated": datetime.now(UTC).isoformat(timespec="seconds"),
            "by": by,
        }
        with atomic_path(self.root / ACTIVE, overwrite=True) as temporary:
            temporary.write_text(json.dumps(record, indent=2) + "\n")
        with (self.root / HISTORY).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        log.info("%s: %s active (was %s)", self.root, version, previous)
        return self.info(version)

    # -- decisions on challengers --------------------------------------------------------------------

    def record(
        self, kind: str, version: str, *, champion: str | None, reason: str, figures: dict[str, Any], by: str
    ) -> dict[str, Any]:
        """Append one decision on a challenger (``promotion``, ``refusal`` or ``rollback``) with the
        figures it was taken on to ``decisions.jsonl``; returns the line written."""
        if kind not in DECISION_KINDS:
            raise RegistryError(f"not a kind of decision: {kind!r} (one of {', '.join(DECISION_KINDS)})")
        entry = {
            "kind": kind,
            "version": check_version(version),
            "champion": champion,
            "reason": reason,
            "figures": figures,
            "by": by,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / DECISIONS).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")
        log.info("%s: %s of %s (champion %s): %s", self.root, kind, version, champion, reason)
        return entry

    def decisions(self) -> list[dict[str, Any]]:
        """Every recorded decision, oldest first (a line that cannot be read is skipped)."""
        try:
            lines = (self.root / DECISIONS).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    out.append(entry)
        return out


def _sweep_staging(folder: Path) -> None:
    """Remove the staging directories of registrations killed before they finished (their process
    is gone), so a killed ``register`` leaves no orphan copy behind."""
    for entry in folder.glob(".register.*"):
        pid = entry.name.split(".")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            log.info("%s: removed the copy of a registration that was killed", entry)


def _sweep_empty_versions(folder: Path) -> None:
    """Remove the version names claimed (made) by registrations killed before their bundle was moved
    in. Called under the registry lock, which every registration holds from claiming a name to
    moving its bundle in, so no empty name belongs to a registration at work."""
    for entry in folder.iterdir():
        if VERSION_PATTERN.match(entry.name) and entry.is_dir() and not entry.is_symlink():
            with contextlib.suppress(OSError):  # rmdir removes only an empty directory
                entry.rmdir()
                log.info("%s: removed the empty version of a registration that was killed", entry)


@contextlib.contextmanager
def _registry_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on the registry's versions (``flock`` on ``.lock``), between processes and
    between threads; the system releases it when its holder dies, so a kill leaves no stale lock."""
    with open(folder / LOCK, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def default_registry(db: str | Path) -> Path:
    """The registry used beside an alert store when none is named: ``models/`` in its folder."""
    return Path(db).resolve().parent / "models"


def resolve_bundle(reference: str | Path, registry: ModelRegistry | None) -> tuple[Path, str | None]:
    """A bundle directory and its registry version, from either a directory or a version name."""
    text = str(reference)
    if registry is not None and VERSION_PATTERN.match(text) and not Path(text).exists():
        return registry.path(text), text
    path = Path(reference)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such model bundle directory")
    version = registry.find(path) if registry is not None else None
    return path, version
