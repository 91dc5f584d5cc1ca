"""What each file of a model bundle may hold, checked before anything in it is used.

A bundle may come from elsewhere, so its files are read as hostile input: each has a size bound
(most in proportion to the number of features the manifest names), JSON is parsed only within that
bound and without ``NaN`` or infinities (except in ``metrics.json``, which records measurements that
may be undefined), and every field has a type and a range:

- ``manifest.json``: the model's name, the view, the settings (scalars and short lists, no deeper than
  a few levels), the feature names (distinct, at most :data:`MAX_FEATURES`), the training row counts
  (``kept <= distinct <= rows``), and only known file names with SHA-256 checksums;
- ``calibration.json``: quantile levels in [0, 1], ranges only of the model's features;
- ``training_rows.safetensors`` and ``weights.safetensors``: a safetensors header of bounded size,
  the hashes' file no larger than the hashes the manifest counts;
- ``threshold.json``: a finite value (see :class:`~nadkit.evaluation.thresholds.Threshold`) that lies
  where a threshold fitted on the hold-out can lie (:func:`check_threshold_plausible`).
"""

from __future__ import annotations

import json
import math
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np

from nadkit.errors import BundleError
from nadkit.evaluation.calibration import Calibration

#: the most features a bundle may describe
MAX_FEATURES: Final = 100_000
MAX_NAME: Final = 256
#: settings: at most this many values in all, nested at most this deep
MAX_SETTINGS: Final = 4096
MAX_DEPTH: Final = 4
MAX_MANIFEST_BYTES: Final = 16 << 20
MAX_SAFETENSORS_HEADER: Final = 64 << 20
#: no file of a bundle may be larger
MAX_FILE_BYTES: Final = 4 << 30
MODEL_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
CHECKSUM = re.compile(r"[0-9a-f]{64}")


def size_bound(name: str, features: int) -> int:
    """The most bytes the JSON or hash file ``name`` of a bundle of ``features`` features may hold
    (the weights and the ONNX graph are bounded by the bundle's file limit only)."""
    bounds = {
        "pipeline.json": (1 << 20) + features * (64 << 10),  # vocabularies and scaling per feature
        "view.json": (64 << 10) + features * (4 << 10),
        "calibration.json": (256 << 10) + features * (4 << 10),
        "threshold.json": 16 << 20,  # a tail model keeps its peaks
        "metrics.json": 16 << 20,
        "training_rows.safetensors": (64 << 10) + 8 * 200_000 * 8,
        "reference.json": (256 << 10) + features * (16 << 10),  # bins and shares per feature
    }
    return bounds.get(name, MAX_FILE_BYTES)


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not a number")


def read_json(file: Path, limit: int, *, allow_nan: bool = False) -> Any:
    """The JSON content of the bundle file ``file`` (a regular file of at most ``limit`` bytes)."""
    try:
        status = file.lstat()
    except FileNotFoundError:
        raise BundleError(f"{file}: missing from the bundle") from None
    if not stat.S_ISREG(status.st_mode):
        raise BundleError(f"{file}: not a regular file (links and special files are refused)")
    if status.st_size > limit:
        raise BundleError(f"{file}: {status.st_size:,} bytes, more than this file may hold ({limit:,})")
    return parse_json(file, file.read_bytes(), allow_nan=allow_nan)


def parse_json(file: Path, content: bytes, *, allow_nan: bool = False) -> Any:
    """``content`` parsed as JSON; a BundleError naming ``file`` when it is not (or nests too deep)."""
    try:
        return json.loads(content, parse_constant=None if allow_nan else _no_constant)
    except RecursionError:
        raise BundleError(f"{file}: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise BundleError(f"{file}: not valid JSON ({str(error).splitlines()[0]})") from None


def _fail(file: Path, field: str, message: str) -> BundleError:
    return BundleError(f"{file}: field {field!r}: {message}")


def _text(file: Path, field: str, value: Any, *, limit: int = MAX_NAME, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or len(value) > limit:
        raise _fail(file, field, f"must be text of at most {limit} characters")


def _count(file: Path, field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise _fail(file, field, "must be a whole number of at least 0")
    return value


def _settings(file: Path, field: str, value: Any, depth: int = 0, seen: list[int] | None = None) -> None:
    """Settings values: text, finite numbers, booleans, null, and lists or objects of them."""
    seen = [0] if seen is None else seen
    seen[0] += 1
    if seen[0] > MAX_SETTINGS or depth > MAX_DEPTH:
        raise _fail(file, field, "settings are too many or nested too deeply")
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str) and len(value) > 4096:
            raise _fail(file, field, "text setting too long")
    elif isinstance(value, int):
        if abs(value) >= 2**53:
            raise _fail(file, field, "number out of range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(file, field, "must be a finite number")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _settings(file, f"{field}[{index}]", item, depth + 1, seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            _settings(file, f"{field}.{str(key)[:MAX_NAME]}", item, depth + 1, seen)
    else:  # pragma: no cover - JSON holds nothing else
        raise _fail(file, field, f"unexpected {type(value).__name__}")


def check_manifest(file: Path, manifest: dict[str, Any], known_files: tuple[str, ...]) -> None:
    """Every field of a parsed manifest (format and version are checked by the reader)."""
    model = manifest.get("model")
    if not isinstance(model, str) or not MODEL_NAME.fullmatch(model):
        raise _fail(file, "model", "must be a detector name")
    _text(file, "input", manifest.get("input"), limit=32, optional=True)
    if manifest.get("view", "flows") not in ("flows", "buckets"):
        raise _fail(file, "view", "must be 'flows' or 'buckets'")
    config = manifest.get("config")
    if config is not None and not isinstance(config, dict):
        raise _fail(file, "config", "must be an object of settings")
    _settings(file, "config", config or {})
    features = manifest.get("features")
    if not isinstance(features, list) or not 1 <= len(features) <= MAX_FEATURES:
        raise _fail(file, "features", f"must be a list of 1 to {MAX_FEATURES:,} feature names")
    for index, name in enumerate(features):
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            raise _fail(file, f"features[{index}]", f"must be a name of 1 to {MAX_NAME} characters")
    if len(set(features)) != len(features):
        raise _fail(file, "features", "names repeat")
    _text(file, "data_fingerprint", manifest.get("data_fingerprint"), limit=128, optional=True)
    _text(file, "created", manifest.get("created"), limit=64, optional=True)
    versions = manifest.get("versions")
    if versions is not None and (
        not isinstance(versions, dict)
        or len(versions) > 64
        or not all(isinstance(v, str) and len(v) <= MAX_NAME for v in versions.values())
    ):
        raise _fail(file, "versions", "must be an object of package versions")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise _fail(file, "files", "the file checksums are not a mapping")
    for name, checksum in files.items():
        if name not in known_files:
            raise _fail(file, "files", f"{str(name)[:MAX_NAME]!r} is not a file of a model bundle")
        if not isinstance(checksum, str) or not CHECKSUM.fullmatch(checksum):
            raise _fail(file, f"files.{name}", "must be a SHA-256 checksum (64 hex digits)")
    rows = manifest.get("training_rows")
    if rows is not None:
        _training_rows(file, rows)


def _training_rows(file: Path, entry: Any) -> None:
    if not isinstance(entry, dict):
        raise _fail(file, "training_rows", "must be an object")
    _text(file, "training_rows.scheme", entry.get("scheme", ""), limit=64)
    columns = entry.get("columns")
    if not isinstance(columns, list) or len(columns) > MAX_FEATURES:
        raise _fail(file, "training_rows.columns", "must be a list of column names")
    for index, name in enumerate(columns):
        _text(file, f"training_rows.columns[{index}]", name)
    kept = _count(file, "training_rows.kept", entry.get("kept"))
    distinct = _count(file, "training_rows.distinct", entry.get("distinct", kept))
    rows = _count(file, "training_rows.rows", entry.get("rows", distinct))
    if not kept <= distinct <= rows:
        raise _fail(file, "training_rows", "counts must satisfy kept <= distinct <= rows")


def check_hashes_size(file: Path, size: int, kept: int) -> None:
    """The row hashes' file holds ``kept`` uint64 hashes and a short header, no more."""
    if size > 8 * kept + (64 << 10):
        raise BundleError(f"{file}: {size:,} bytes, more than {kept:,} row hashes need")


def check_safetensors_header(file: Path, head: bytes, size: int) -> None:
    """A safetensors file starts with its header's length (8 bytes, little-endian): it must fit in
    the file and within :data:`MAX_SAFETENSORS_HEADER`."""
    if len(head) < 8:
        raise BundleError(f"{file}: too short for a safetensors file")
    length = int.from_bytes(head[:8], "little")
    if length > min(size - 8, MAX_SAFETENSORS_HEADER):
        raise BundleError(f"{file}: safetensors header of {length:,} bytes does not fit the file")


def check_weights(file: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Learned arrays hold finite numbers only (a NaN or infinite weight makes every score NaN,
    and a NaN score never alerts)."""
    for name, array in arrays.items():
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise BundleError(f"{file}: array {name[:MAX_NAME]!r} holds values that are not finite numbers")


def check_calibration(file: Path, data: Any, features: tuple[str, ...]) -> None:
    """Fields of ``calibration.json`` the reader does not bound itself: the normal score quantiles'
    levels and size, the range quantiles, and ranges only of the model's features."""
    if not isinstance(data, dict):
        raise BundleError(f"{file}: not a nadkit calibration")
    normal = data.get("normal_scores")
    if normal is not None:
        if not isinstance(normal, dict):
            raise _fail(file, "normal_scores", "must be an object")
        levels, values = normal.get("levels"), normal.get("values")
        if not isinstance(levels, list) or not isinstance(values, list) or not 2 <= len(levels) <= 100_000:
            raise _fail(file, "normal_scores", "levels and values must be lists of 2 to 100,000 numbers")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in levels + values):
            raise _fail(file, "normal_scores", "levels and values must be numbers")
        if not all(0.0 <= v <= 1.0 for v in levels):
            raise _fail(file, "normal_scores.levels", "must lie in [0, 1]")
        _count(file, "normal_scores.rows", normal.get("rows"))
    top = data.get("holdout_max")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int | float)):
        raise _fail(file, "holdout_max", "must be a number")
    quantiles = data.get("range_quantiles", [0.05, 0.95])
    if (
        not isinstance(quantiles, list)
        or len(quantiles) != 2
        or not all(isinstance(q, int | float) and not isinstance(q, bool) for q in quantiles)
        or not 0.0 <= quantiles[0] < quantiles[1] <= 1.0
    ):
        raise _fail(file, "range_quantiles", "must be two levels 0 <= low < high <= 1")
    ranges = data.get("ranges") or {}
    if not isinstance(ranges, dict):
        raise _fail(file, "ranges", "must be an object")
    known = set(features)
    for name, entry in ranges.items():
        if name not in known:
            raise _fail(file, "ranges", f"{str(name)[:MAX_NAME]!r} is not a feature of the model")
        if not isinstance(entry, dict):
            raise _fail(file, f"ranges.{name}", "must be an object")


def check_threshold_plausible(file: Path, value: float, method: str, calibration: Calibration | None) -> None:
    """Refuse a threshold that lies where no threshold fitted on the bundle's hold-out can lie.

    Every method chooses the threshold from the hold-out's scores: a quantile of the normal ones,
    the F-beta best of all of them, or (POT, SPOT) a tail quantile extrapolated from the highest
    ones. So the threshold lies within the span of the hold-out scores, or beyond its top by what an
    extrapolation adds, which is less than the span itself. The rule: with ``low`` the lowest
    normal hold-out score and ``top`` the highest hold-out score (normal or not; where the bundle
    predates keeping it, the highest normal one, then checked for the quantile method only, the
    one that never leaves the normal scores), the threshold must lie within
    ``[low - (top - low), top + (top - low)]``. A bundle without normal scores is not checked.
    """
    if calibration is None or calibration.normal is None:
        return
    normal = calibration.normal
    low = float(normal.values[0])
    holdout_max = calibration.holdout_max
    if holdout_max is None and method != "quantile":
        return
    top = max(float(normal.values[-1]), float(holdout_max) if holdout_max is not None else -math.inf)
    span = top - low
    if not span > 0:
        return
    if not low - span <= value <= top + span:
        raise BundleError(
            f"{file}: threshold {value:.6g} lies far outside the hold-out scores it was fitted on "
            f"({low:.6g} to {top:.6g}; calibration.json); the file was edited or is corrupt"
        )


def check_mapping(file: Path, data: Any) -> dict[str, Any]:
    """``data`` when it is a JSON object."""
    if not isinstance(data, dict):
        raise BundleError(f"{file}: must hold a JSON object")
    return data


__all__ = [
    "MAX_FEATURES",
    "check_calibration",
    "check_hashes_size",
    "check_manifest",
    "check_mapping",
    "check_safetensors_header",
    "check_threshold_plausible",
    "check_weights",
    "parse_json",
    "read_json",
    "size_bound",
]
