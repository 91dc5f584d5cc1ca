"""A trained model saved as a directory: no pickle anywhere.

::

    bundle/
      manifest.json        format and version, model name and config, versions, feature names,
                           data fingerprint, creation time, and a SHA-256 of every other file
      pipeline.json        the fitted feature pipeline (vocabularies, scaling); a model of time
                           buckets holds view.json instead: bucket settings and metric scaling
      weights.safetensors  the detector's learned arrays
      threshold.json       the alert threshold and how it was chosen (changeable without retraining)
      metrics.json         training history and validation metrics
      model.onnx           optional: the detector's scoring as an ONNX graph, for ONNX Runtime
      training_rows.safetensors
                           optional: hashes of (a sample of) the training rows, so that evaluation
                           can tell how much of its data the model was trained on
                           (:mod:`nadkit.evaluation.overlap`); the manifest's ``training_rows`` describes them
      calibration.json     optional: quantiles of the normal hold-out scores (a score's percentile,
                           severity) and each feature's typical range on normal training traffic
                           (explanations), see :mod:`nadkit.evaluation.calibration`; a bundle
                           without it scores the same, with null percentiles and no ranges
      reference.json       optional: bins and shares of each feature and of the score on normal
                           hold-out rows, the reference drift is measured against
                           (:mod:`nadkit.evaluation.drift`); a bundle without it reports no drift

Loading checks the manifest, its format version and every file's checksum before anything is used
(``model.onnx``, ``training_rows.safetensors`` and ``calibration.json`` too when the manifest lists
them; unlisted ones are ignored), and that the pipeline
produces the features the detector was fitted on; any problem is a one-line
:class:`~nadkit.errors.BundleError`. Saving writes a temporary directory and renames it into place;
:meth:`ModelBundle.export_onnx` adds ``model.onnx`` to a saved bundle, replacing the file and the
manifest one at a time, each atomically.

Scoring runs on an *engine*: ``"torch"`` (the detector itself, on its device), ``"onnx"`` (the graph
on ONNX Runtime's CPU provider, see :class:`~nadkit.models.onnx_runtime.OnnxScorer`) or ``"auto"``: ONNX
Runtime when the bundle holds ``model.onnx``, ONNX Runtime imports and the detector is a neural network
not running on CUDA, else torch (the tree and order-statistic baselines score faster in NumPy).
Both give the same scores up to float32 rounding. A detector whose contributions cost far more than
its scores (``costly_contributions``: the multitask model's integrated gradients) scores on itself and
computes only contributions on the engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import polars as pl

from nadkit.errors import BundleError, ConfigError, NadkitError
from nadkit.evaluation.calibration import Calibration
from nadkit.evaluation.drift import DriftReference
from nadkit.evaluation.overlap import TrainingRows
from nadkit.evaluation.thresholds import Threshold
from nadkit.features.buckets import BucketView
from nadkit.features.pipeline import FeaturePipeline
from nadkit.fileio import atomic_directory, atomic_path, recover_directory
from nadkit.models.base import Detector, DetectorData
from nadkit.models.registry import create
from nadkit.training import bundle_schema as schema
from nadkit.training.signing import bundle_key, drop_signature, verify_signature, write_signature
from nadkit.version import __version__

if TYPE_CHECKING:
    from nadkit.models.export import Exporter
    from nadkit.models.onnx_runtime import OnnxScorer

log = logging.getLogger(__name__)

FORMAT = "nadkit-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PIPELINE = "pipeline.json"
WEIGHTS = "weights.safetensors"
THRESHOLD = "threshold.json"
METRICS = "metrics.json"
ONNX = "model.onnx"
VIEW = "view.json"
TRAINING_ROWS = "training_rows.safetensors"
CALIBRATION = "calibration.json"
REFERENCE = "reference.json"
#: files every bundle holds, besides pipeline.json (a model of flows) or view.json (of time buckets)
COMMON_FILES = (WEIGHTS, THRESHOLD, METRICS)
FILES = (PIPELINE, *COMMON_FILES)
#: files a bundle may hold; checked when the manifest lists them
OPTIONAL_FILES = (ONNX, TRAINING_ROWS, CALIBRATION)
#: every file a manifest may list
KNOWN_FILES = (PIPELINE, VIEW, *COMMON_FILES, *OPTIONAL_FILES, REFERENCE)

Engine = Literal["auto", "torch", "onnx"]
ENGINES: tuple[Engine, ...] = ("auto", "torch", "onnx")


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
    for package in ("torch", "polars", "numpy", "scikit-learn", "safetensors", "onnx", "onnxruntime"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            continue
    return versions


def _check_engine(engine: str) -> Engine:
    if engine not in ENGINES:
        raise ConfigError(f"unknown scoring engine {engine!r} (known: {', '.join(ENGINES)})")
    return cast(Engine, engine)


def _onnx_runtime_imports() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _read_manifest(path: Path) -> dict[str, Any]:
    """The verified manifest of the bundle directory ``path``."""
    return _load_manifest(path)[0]


def _load_manifest(path: Path) -> tuple[dict[str, Any], bytes]:
    """The manifest of the bundle directory ``path``, checked against its schema, and its bytes."""
    if not path.is_dir():
        raise BundleError(f"{path}: not a model bundle directory")
    manifest_path = path / MANIFEST
    if not manifest_path.exists() and not manifest_path.is_symlink():
        raise BundleError(f"{manifest_path}: missing; not a model bundle")
    try:
        raw = _plain_file(manifest_path, schema.MAX_MANIFEST_BYTES).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{manifest_path}: missing; not a model bundle") from None
    manifest = schema.parse_json(manifest_path, raw)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{manifest_path}: not a nadkit model bundle manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path}: bundle format version {version} is not supported "
            f"(this nadkit reads version {FORMAT_VERSION})"
        )
    schema.check_manifest(manifest_path, manifest, KNOWN_FILES)
    return manifest, raw


def _write_manifest(path: Path, manifest: dict[str, Any], *, overwrite: bool = False) -> None:
    with atomic_path(path / MANIFEST, overwrite=overwrite) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2) + "\n")


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A failure to write the bundle ``path`` (a full disk, no permission) as a one-line BundleError;
    the temporary directory is already gone and an earlier bundle at ``path`` untouched."""
    try:
        yield
    except OSError as error:
        raise BundleError(f"{path}: cannot be written ({error.strerror or error})") from error


def _renew_signature(folder: Path, files: Mapping[str, Any], key: bytes | None) -> None:
    """Sign the rewritten manifest with ``key``; without one, remove a signature it made stale."""
    if key is not None:
        write_signature(folder, files, key)
    else:
        drop_signature(folder)


def sign(path: str | Path, *, key: str | bytes | None = None) -> Path:
    """Sign the saved bundle ``path`` with ``key`` (else ``NADKIT_BUNDLE_KEY``; ConfigError without
    one) after checking that it loads; returns the signature file."""
    secret = bundle_key(key)
    if secret is None:
        raise ConfigError(f"no signing key: set NADKIT_BUNDLE_KEY to sign {path}")
    path = Path(path)
    ModelBundle.load(path, engine="torch", key=b"")  # checksums and every file's schema
    return write_signature(path, _read_manifest(path)["files"], secret)


#: no file of a bundle may be larger (what is read is bounded: a bundle may come from elsewhere)
MAX_FILE_BYTES = 4 << 30


def _plain_file(file: Path, limit: int = MAX_FILE_BYTES) -> Path:
    """``file`` when it is a regular file (not a link, device or pipe) within ``limit`` bytes."""
    try:
        status = file.lstat()
    except FileNotFoundError:
        raise BundleError(f"{file}: missing from the bundle") from None
    if stat.S_ISLNK(status.st_mode) or not stat.S_ISREG(status.st_mode):
        raise BundleError(f"{file}: not a regular file (links and special files are refused)")
    if status.st_size > limit:
        raise BundleError(
            f"{file}: {status.st_size:,} bytes, more than this bundle file may hold ({limit:,})"
        )
    return file


def _verified_bytes(path: Path, name: str, checksums: dict[str, Any], limit: int = MAX_FILE_BYTES) -> bytes:
    """The content of the bundle file ``name`` (at most ``limit`` bytes), which must match its
    checksum in the manifest."""
    file = _plain_file(path / name, limit)
    try:
        content = file.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{file}: missing from the bundle") from None
    if checksums.get(name) != hashlib.sha256(content).hexdigest():
        raise BundleError(f"{file}: checksum differs from the manifest (file changed or corrupt)")
    return content


@dataclass
class ModelBundle:
    """A fitted pipeline, a fitted detector, its threshold and what was measured when training.

    A model of time buckets (``view``, a fitted :class:`~nadkit.features.buckets.BucketView`) has no
    flow pipeline: its detector reads per-bucket metrics and its scores are carried to the flows of
    each bucket. ``path``: the directory the bundle was loaded from or saved to (None before saving);
    ``engine``: how it scores (see the module docstring); ``threads``: ONNX Runtime's intra-op
    threads (None: every available core); ``training_rows``: hashes of the rows it was trained on
    (None for a bundle saved without them, by an earlier nadkit); ``calibration``: the normal
    scores and typical feature ranges behind percentiles, severities and explanations (None for a
    bundle saved without them).
    """

    pipeline: FeaturePipeline | None
    detector: Detector
    threshold: Threshold | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    engine: Engine = "auto"
    threads: int | None = None
    view: BucketView | None = None
    training_rows: TrainingRows | None = None
    calibration: Calibration | None = None
    #: the normal reference drift is measured against (None: saved without one, no drift reported)
    reference: DriftReference | None = None
    _scorer: OnnxScorer | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_engine(self.engine)
        if isinstance(self.threshold, Mapping):
            self.threshold = Threshold.from_dict(self.threshold)
        if (self.pipeline is None) == (self.view is None):
            raise NadkitError("a model bundle holds either a flow pipeline or a bucket view")

    # -- scoring ----------------------------------------------------------------------------------

    def flow_pipeline(self, purpose: str = "flow-by-flow scoring") -> FeaturePipeline:
        """The flow feature pipeline; a ConfigError naming ``purpose`` for a model of time buckets,
        which scores whole buckets of a time-ordered file (``nadkit detect`` and ``evaluate``)."""
        if self.pipeline is None:
            where = f"{self.path}: " if self.path is not None else ""
            raise ConfigError(
                f"{where}the model scores time buckets, which {purpose} does not support; "
                "score files with nadkit detect or nadkit evaluate"
            )
        return self.pipeline

    def data(self, frame: pl.DataFrame) -> DetectorData:
        """The detector's input for a canonical flow table (one row per bucket for a model of time
        buckets)."""
        if self.view is not None:
            return self.view.data(self.view.series(frame))
        from nadkit.features.data import detector_data

        return detector_data(self.flow_pipeline(), frame)

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        """Anomaly scores of a canonical flow table, one per flow (a model of time buckets gives each
        flow its bucket's score; NaN for a flow without a time)."""
        if self.view is not None:
            series = self.view.series(frame)
            return series.to_flows(self.score_data(self.view.data(series)))
        return self.score_data(self.data(frame))

    def score_data(self, data: DetectorData) -> np.ndarray:
        """One float64 anomaly score per row of the detector's input, on the bundle's engine (on the
        detector itself where its contributions, which the ONNX graph computes, cost far more than
        its scores)."""
        if self.detector.costly_contributions:
            return self.detector.score(data)
        scorer = self._onnx_scorer()
        return self.detector.score(data) if scorer is None else scorer.score(data)

    def contributions(self, data: DetectorData, *, native: bool = False) -> np.ndarray:
        """``(rows, features)`` float64 contributions of each feature to each row's score, on the
        bundle's engine; ``native``: on ONNX Runtime, the graph's own float32 numbers unconverted
        (the torch engine gives float64 either way)."""
        scorer = self._onnx_scorer()
        if scorer is None:
            return self.detector.contributions(data)
        return scorer.contributions(data, native=native)

    def score_and_explain(
        self, data: DetectorData, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores of every row (as :meth:`score_data`), the rows scoring at least ``threshold`` and
        their contributions (the graph's float32 on ONNX Runtime, taken in the same pass as the
        scores; float64 from the detector on torch)."""
        scorer = None if self.detector.costly_contributions else self._onnx_scorer()
        if scorer is not None:
            return scorer.score_and_explain(data, threshold)
        scores = self.score_data(data)
        rows = np.flatnonzero(scores >= threshold)
        return scores, rows, self.detector.contributions(data.take(rows))

    @property
    def has_onnx(self) -> bool:
        """Whether the saved bundle holds a ``model.onnx`` its manifest lists."""
        return self.path is not None and ONNX in (self.manifest.get("files") or {})

    @property
    def active_engine(self) -> Literal["torch", "onnx"]:
        """The engine scoring actually runs on (``"auto"`` resolved)."""
        if self.engine == "torch":
            return "torch"
        if self.engine == "onnx":
            if not self.has_onnx:
                where = self.path if self.path is not None else "this bundle (not saved yet)"
                raise BundleError(
                    f"{where}: no {ONNX} in the bundle; add it with ModelBundle.export_onnx "
                    "(or save with onnx=True), or score with engine 'torch' or 'auto'"
                )
            return "onnx"
        if not self.has_onnx or not _onnx_runtime_imports():
            return "torch"
        if not self.detector.prefers_onnx:
            return "torch"
        # a detector on a GPU is faster there than ONNX Runtime on the CPU
        return "torch" if self.detector.device_type == "cuda" else "onnx"

    def use_engine(self, engine: Engine, *, threads: int | None = None) -> ModelBundle:
        """Score on ``engine`` from now on (``threads``: ONNX Runtime's; None keeps the current
        setting); returns the bundle. An ``"onnx"`` engine without ``model.onnx`` is a BundleError."""
        self.engine = _check_engine(engine)
        if threads is not None:
            self.threads = threads
        self._scorer = None
        self._onnx_scorer()
        return self

    def _onnx_scorer(self, content: bytes | None = None) -> OnnxScorer | None:
        """The ONNX Runtime scorer when the engine resolves to ONNX (built on first use, from
        ``content`` when given: the already verified file), else None."""
        if self.active_engine == "torch":
            return None
        if self._scorer is None:
            from nadkit.models.onnx_runtime import DEFAULT_BATCH_SIZE, OnnxScorer

            assert self.path is not None  # has_onnx says so
            if content is None:
                content = _verified_bytes(self.path, ONNX, self.manifest.get("files") or {})
            batch_size = self.detector.contribution_batch_rows() or getattr(
                self.detector.config, "score_batch_size", DEFAULT_BATCH_SIZE
            )
            try:
                scorer = OnnxScorer(content, threads=self.threads, batch_size=batch_size)
            except NadkitError as error:
                raise BundleError(f"{self.path / ONNX}: {error}") from error
            if scorer.feature_names != tuple(self.detector.feature_names_ or ()):
                raise BundleError(f"{self.path / ONNX}: features differ from those the model was fitted on")
            self._scorer = scorer
        return self._scorer

    # -- saving and loading -----------------------------------------------------------------------

    def save(
        self,
        path: str | Path,
        *,
        overwrite: bool = False,
        data_fingerprint: str = "",
        onnx: bool = False,
        exporter: Exporter = "auto",
        key: str | bytes | None = None,
    ) -> Path:
        """Write the bundle directory (atomically; an existing one only with ``overwrite``); with
        ``onnx``, also the detector exported to ``model.onnx`` (``exporter``: see
        :func:`~nadkit.models.export.export_onnx`); with :attr:`training_rows`, their hashes. With a
        signing key (``key``, else ``NADKIT_BUNDLE_KEY``; see :mod:`nadkit.training.signing`), also
        ``signature.json``."""
        from safetensors.numpy import save_file

        secret = bundle_key(key)

        if not self.detector.is_fitted:
            raise NadkitError("cannot save a detector that is not fitted")
        path = Path(path)
        with _writing(path), atomic_directory(path, overwrite=overwrite) as folder:
            files = [PIPELINE if self.view is None else VIEW, *COMMON_FILES]
            if onnx:
                from nadkit.models.export import export_onnx

                export_onnx(self.detector, folder / ONNX, exporter=exporter)
                files.append(ONNX)
            if self.view is not None:
                (folder / VIEW).write_text(json.dumps(self.view.to_dict(), indent=1, allow_nan=False))
            else:
                assert self.pipeline is not None  # __post_init__ says so
                (folder / PIPELINE).write_text(json.dumps(self.pipeline.to_dict(), indent=1, allow_nan=False))
            arrays = {k: np.ascontiguousarray(v) for k, v in self.detector.state().items()}
            save_file(arrays, str(folder / WEIGHTS))
            if self.training_rows is not None:
                hashes = np.ascontiguousarray(self.training_rows.hashes)
                save_file({"hashes": hashes}, str(folder / TRAINING_ROWS))
                files.append(TRAINING_ROWS)
            if self.calibration is not None:
                text = json.dumps(self.calibration.to_dict(), allow_nan=False)
                (folder / CALIBRATION).write_text(text + "\n")
                files.append(CALIBRATION)
            if self.reference is not None:
                text = json.dumps(self.reference.to_dict(), allow_nan=False)
                (folder / REFERENCE).write_text(text + "\n")
                files.append(REFERENCE)
            threshold = self.threshold.to_dict() if self.threshold is not None else None
            (folder / THRESHOLD).write_text(json.dumps(threshold, indent=2, allow_nan=False) + "\n")
            (folder / METRICS).write_text(json.dumps(self.metrics, indent=2, default=float) + "\n")
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "model": self.detector.name,
                "input": self.detector.input,
                "view": "flows" if self.view is None else "buckets",
                "config": self.detector.config.to_dict(),
                "features": list(self.detector.feature_names_ or ()),
                "data_fingerprint": data_fingerprint or self.manifest.get("data_fingerprint", ""),
                **(
                    {"training_rows": self.training_rows.to_manifest()}
                    if self.training_rows is not None
                    else {}
                ),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "versions": _versions(),
                "files": {name: _sha256(folder / name) for name in files},
            }
            (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            if secret is not None:
                write_signature(folder, files, secret)
        self.manifest = manifest
        self.path = path
        self._scorer = None
        log.info("model bundle written to %s", path)
        return path

    def export_onnx(self, *, exporter: Exporter = "auto", key: str | bytes | None = None) -> Path:
        """Export the detector to ``model.onnx`` inside the saved bundle and list it in the manifest
        (replacing an earlier export); returns the file's path. The manifest is rewritten without
        the old entry first, then the graph, then the manifest with the new checksum, each
        atomically, so the bundle loads at every moment; each manifest is signed where a key is set
        (``key``, else ``NADKIT_BUNDLE_KEY``), and a signature that cannot be renewed is removed."""
        from nadkit.models.export import export_onnx

        secret = bundle_key(key)
        if self.path is None:
            raise NadkitError("save the bundle before exporting it to ONNX")
        folder = self.path
        manifest = _read_manifest(folder)
        if manifest.get("model") != self.detector.name or list(manifest.get("features") or ()) != list(
            self.detector.feature_names_ or ()
        ):
            raise BundleError(f"{folder}: the bundle on disk holds another model than this one")
        files = dict(manifest.get("files") or {})
        if ONNX in files:
            del files[ONNX]
            _write_manifest(folder, {**manifest, "files": files}, overwrite=True)
            _renew_signature(folder, files, secret)
        target = export_onnx(self.detector, folder / ONNX, overwrite=True, exporter=exporter)
        files[ONNX] = _sha256(target)
        versions = {**(manifest.get("versions") or {}), **_versions()}
        manifest = {**manifest, "files": files, "versions": versions}
        _write_manifest(folder, manifest, overwrite=True)
        _renew_signature(folder, files, secret)
        self.manifest = manifest
        self._scorer = None
        log.info("%s: %s added", folder, ONNX)
        return target

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        engine: Engine = "auto",
        threads: int | None = None,
        key: str | bytes | None = None,
    ) -> ModelBundle:
        """Read and verify a bundle directory; :class:`BundleError` on anything missing or altered.
        ``engine`` and ``threads``: how it scores (see the class docstring); ``"onnx"`` on a bundle
        without ``model.onnx`` is a BundleError. With a signing key (``key``, else
        ``NADKIT_BUNDLE_KEY``; an empty ``key``: none), an unsigned or mis-signed bundle is refused
        before any of its files is used (:mod:`nadkit.training.signing`); every file is checked
        against its schema (:mod:`nadkit.training.bundle_schema`)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load, load_file

        engine = _check_engine(engine)
        path = Path(path)
        # a writer killed between the two renames of an overwrite left the old bundle aside
        recover_directory(path, complete=lambda folder: (folder / MANIFEST).is_file())
        manifest, raw = _load_manifest(path)
        checksums = manifest["files"]
        view_kind = manifest.get("view", "flows")
        required = (PIPELINE if view_kind == "flows" else VIEW, *COMMON_FILES)
        for name in required:
            if name not in checksums:
                raise BundleError(f"{path / MANIFEST}: {name} missing from the file checksums")
        verify_signature(path, raw, checksums, bundle_key(key))
        features = tuple(manifest["features"])
        content = {
            name: _verified_bytes(path, name, checksums, schema.size_bound(name, len(features)))
            for name in checksums
            if name not in (WEIGHTS, ONNX)
        }
        weights = _plain_file(path / WEIGHTS)
        with weights.open("rb") as handle:
            schema.check_safetensors_header(weights, handle.read(8), weights.stat().st_size)
        if checksums[WEIGHTS] != _sha256(weights):
            raise BundleError(f"{weights}: checksum differs from the manifest (file changed or corrupt)")
        graph = _verified_bytes(path, ONNX, checksums) if ONNX in checksums else None
        if graph is None and (path / ONNX).exists():
            log.warning("%s: not listed in the manifest; ignored", path / ONNX)
        hashed = content.get(TRAINING_ROWS)
        if hashed is not None:
            entry = manifest.get("training_rows")
            if not isinstance(entry, dict):
                raise BundleError(f"{path / MANIFEST}: {TRAINING_ROWS} is listed but not described")
            schema.check_hashes_size(path / TRAINING_ROWS, len(hashed), entry["kept"])
            schema.check_safetensors_header(path / TRAINING_ROWS, hashed[:8], len(hashed))
        calibrated = content.get(CALIBRATION)
        referenced = content.get(REFERENCE)
        try:
            pipeline: FeaturePipeline | None = None
            view: BucketView | None = None
            if view_kind == "buckets":
                view = BucketView.from_dict(schema.parse_json(path / VIEW, content[VIEW]))
                made, made_from = view.features, VIEW
            else:
                pipeline = FeaturePipeline.from_dict(schema.parse_json(path / PIPELINE, content[PIPELINE]))
                made, made_from = tuple(pipeline.feature_names_), PIPELINE
            if made != features:
                raise BundleError(f"{path / made_from}: features differ from those the model was fitted on")
            detector = create(manifest["model"], manifest.get("config") or {})
            arrays = load_file(str(path / WEIGHTS))
            schema.check_weights(path / WEIGHTS, arrays)
            detector.load_state(arrays, features)
            try:
                threshold = Threshold.from_dict(
                    schema.parse_json(path / THRESHOLD, content[THRESHOLD], allow_nan=True)
                )
            except ConfigError as error:
                raise BundleError(f"{path / THRESHOLD}: {error}") from None
            metrics = schema.check_mapping(
                path / METRICS, schema.parse_json(path / METRICS, content[METRICS], allow_nan=True)
            )
            training_rows = None
            if hashed is not None:
                training_rows = TrainingRows.from_manifest(manifest["training_rows"], load(hashed)["hashes"])
            else:
                log.debug("%s: no training row hashes (saved by an earlier nadkit)", path)
            calibration = None
            if calibrated is not None:
                data = schema.parse_json(path / CALIBRATION, calibrated)
                schema.check_calibration(path / CALIBRATION, data, features)
                try:
                    calibration = Calibration.from_dict(data)
                except (ValueError, KeyError, TypeError) as error:
                    raise BundleError(f"{path / CALIBRATION}: {error}") from None
            else:
                log.debug("%s: no calibration (saved by an earlier nadkit)", path)
            schema.check_threshold_plausible(path / THRESHOLD, threshold.value, threshold.method, calibration)
            reference = None
            if referenced is not None:
                try:
                    reference = DriftReference.from_dict(schema.parse_json(path / REFERENCE, referenced))
                except (ValueError, ConfigError) as error:
                    raise BundleError(f"{path / REFERENCE}: {error}") from None
        except BundleError:
            raise
        except (NadkitError, KeyError, TypeError, ValueError, AttributeError, SafetensorError) as error:
            raise BundleError(f"{path}: cannot be loaded ({str(error).splitlines()[0]})") from error
        bundle = cls(
            pipeline=pipeline,
            detector=detector,
            threshold=threshold,
            metrics=metrics,
            manifest=manifest,
            path=path,
            engine=engine,
            threads=threads,
            view=view,
            training_rows=training_rows,
            calibration=calibration,
            reference=reference,
        )
        if bundle.active_engine == "torch":
            # the network scores: its parameters are checked against its settings now, not at the
            # first score (on ONNX Runtime the graph scores, checked by its checksum)
            try:
                detector.finish_loading()
            except (NadkitError, RuntimeError, ValueError) as error:
                raise BundleError(f"{path}: cannot be loaded ({str(error).splitlines()[0]})") from error
        bundle._onnx_scorer(graph)
        return bundle


def carry_source_format(parent: ModelBundle, child: ModelBundle) -> None:
    """A bundle retrained from ``parent`` scores the same flows: its pipeline names the format
    ``parent``'s was fitted on (see :attr:`FeaturePipeline.source_format`)."""
    if parent.pipeline is not None and child.pipeline is not None and child.pipeline.source_format is None:
        child.pipeline.source_format = parent.pipeline.source_format
