"""A trained model saved as a directory: no pickle anywhere.

::

    bundle/
      manifest.json        format and version, model name and config, versions, feature names,
                           data fingerprint, creation time, and a SHA-256 of every other file
      pipeline.json        the fitted feature pipeline (vocabularies, scaling)
      weights.safetensors  the detector's learned arrays
      threshold.json       the alert threshold and how it was chosen (changeable without retraining)
      metrics.json         training history and validation metrics

Loading checks the manifest, its format version and every file's checksum before anything is used,
and that the pipeline produces the features the detector was fitted on; any problem is a one-line
:class:`~nadkit.errors.BundleError`. Saving writes a temporary directory and renames it into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from nadkit import __version__
from nadkit.errors import BundleError, NadkitError
from nadkit.features.pipeline import FeaturePipeline
from nadkit.fileio import atomic_directory
from nadkit.models.base import Detector, DetectorData, create

log = logging.getLogger(__name__)

FORMAT = "nadkit-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PIPELINE = "pipeline.json"
WEIGHTS = "weights.safetensors"
THRESHOLD = "threshold.json"
METRICS = "metrics.json"
FILES = (PIPELINE, WEIGHTS, THRESHOLD, METRICS)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(data: DetectorData) -> str:
    """A short digest of the training features (shape, names, column means and spreads), so a model
    can be traced to the data it learned from without storing the data."""
    digest = hashlib.sha256()
    digest.update(json.dumps([len(data), list(data.feature_names)]).encode())
    if len(data):
        digest.update(np.asarray(data.features.mean(axis=0), dtype=np.float64).tobytes())
        digest.update(np.asarray(data.features.std(axis=0), dtype=np.float64).tobytes())
    return digest.hexdigest()[:32]


def _versions() -> dict[str, str]:
    versions = {"nadkit": __version__, "python": platform.python_version()}
    for package in ("torch", "polars", "numpy", "scikit-learn", "safetensors"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            continue
    return versions


@dataclass
class ModelBundle:
    """A fitted pipeline, a fitted detector, its threshold and what was measured when training."""

    pipeline: FeaturePipeline
    detector: Detector
    threshold: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    def data(self, frame: pl.DataFrame) -> DetectorData:
        """The detector's input for a canonical flow table."""
        from nadkit.training import detector_data

        return detector_data(self.pipeline, frame)

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        """Anomaly scores of a canonical flow table, one per flow."""
        return self.detector.score(self.data(frame))

    def save(self, path: str | Path, *, overwrite: bool = False, data_fingerprint: str = "") -> Path:
        """Write the bundle directory (atomically; an existing one only with ``overwrite``)."""
        from safetensors.numpy import save_file

        if not self.detector.is_fitted:
            raise NadkitError("cannot save a detector that is not fitted")
        path = Path(path)
        with atomic_directory(path, overwrite=overwrite) as folder:
            (folder / PIPELINE).write_text(json.dumps(self.pipeline.to_dict(), indent=1, allow_nan=False))
            arrays = {k: np.ascontiguousarray(v) for k, v in self.detector.state().items()}
            save_file(arrays, str(folder / WEIGHTS))
            (folder / THRESHOLD).write_text(json.dumps(self.threshold, indent=2, allow_nan=False) + "\n")
            (folder / METRICS).write_text(json.dumps(self.metrics, indent=2, default=float) + "\n")
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "model": self.detector.name,
                "input": self.detector.input,
                "config": self.detector.config.to_dict(),
                "features": list(self.detector.feature_names_ or ()),
                "data_fingerprint": data_fingerprint or self.manifest.get("data_fingerprint", ""),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "versions": _versions(),
                "files": {name: _sha256(folder / name) for name in FILES},
            }
            (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        self.manifest = manifest
        log.info("model bundle written to %s", path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        """Read and verify a bundle directory; :class:`BundleError` on anything missing or altered."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = Path(path)
        if not path.is_dir():
            raise BundleError(f"{path}: not a model bundle directory")
        manifest_path = path / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            raise BundleError(f"{manifest_path}: missing; not a model bundle") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BundleError(f"{manifest_path}: not valid JSON ({error})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BundleError(f"{manifest_path}: not a nadkit model bundle manifest")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"{manifest_path}: bundle format version {version} is not supported "
                f"(this nadkit reads version {FORMAT_VERSION})"
            )
        checksums = manifest.get("files") or {}
        for name in FILES:
            file = path / name
            if not file.is_file():
                raise BundleError(f"{file}: missing from the bundle")
            if checksums.get(name) != _sha256(file):
                raise BundleError(f"{file}: checksum differs from the manifest (file changed or corrupt)")
        try:
            pipeline = FeaturePipeline.from_dict(json.loads((path / PIPELINE).read_text()))
            detector = create(manifest["model"], manifest.get("config") or {})
            arrays = load_file(str(path / WEIGHTS))
            features = tuple(manifest.get("features") or ())
            if tuple(pipeline.feature_names_) != features:
                raise BundleError(f"{path / PIPELINE}: features differ from those the model was fitted on")
            detector.load_state(arrays, features)
            threshold = json.loads((path / THRESHOLD).read_text())
            metrics = json.loads((path / METRICS).read_text())
        except BundleError:
            raise
        except (NadkitError, KeyError, ValueError, SafetensorError) as error:
            raise BundleError(f"{path}: cannot be loaded ({str(error).splitlines()[0]})") from error
        return cls(
            pipeline=pipeline,
            detector=detector,
            threshold=threshold,
            metrics=metrics,
            manifest=manifest,
        )
