"""Which evaluated flows a model was trained on: a bounded sample of hashed training rows kept in the
bundle, and the share of evaluated rows found among them.

A row's hash is a 64-bit digest of its values in every column but the labels: numbers by their
float64 value (an integer column and a float column holding the same values hash alike), times by
their epoch microseconds, text by its UTF-8 bytes (BLAKE2b), nulls by a fixed value, the columns
mixed in name order. It is computed with NumPy and :mod:`hashlib` only, never with a dataframe
library's own hash, so a flow hashes the same whatever the file format, the column order or the
library versions. A table that moved its flows in time and kept each one's own time as
``capture_time`` (``nadkit mix-captures``) hashes its rows at that own time, so a flow hashes the
same in the capture a model was trained on and in a mix of it.

The training rows are every flow training read: those fitted on and the hold-out that chose the
epoch and the threshold (figures measured on either are optimistic). At most
:data:`ROW_HASH_LIMIT` distinct hashes are kept, the smallest ones: a bottom-k sample, in which a
row is kept or not by its own hash, so the same flow is kept in every run. When training had more
distinct rows, an evaluated row is compared only when its hash falls within the sampled range, and
the share of compared rows found estimates the share of all evaluated rows found.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from nadkit.schema import CAPTURE_TIME, NORMAL

log = logging.getLogger(__name__)

#: the hashing scheme; bundles hashed by another one are not compared
ROW_HASH = "nadkit-row-v1"
#: the most distinct training row hashes a bundle keeps (8 bytes each: 1.6 MB at most)
ROW_HASH_LIMIT = 200_000
#: evaluated data of which more than this share was trained on is called training data
OVERLAP_SHARE = 0.01
#: columns that say what a flow is, not what it was: left out of a row's hash
LABEL_COLUMNS = ("label", "label_original")

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NULL = np.uint64(0x5BD1E9955BD1E995)
_START = np.uint64(0x243F6A8885A308D3)


def _mix(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer, element-wise on uint64 (wrapping arithmetic)."""
    z = values.astype(np.uint64, copy=True)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z & _MASK


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _hashable(dtype: pl.DataType) -> bool:
    return (
        dtype.is_numeric()
        or dtype.is_temporal()
        or isinstance(dtype, pl.Boolean | pl.String | pl.Categorical | pl.Enum)
    )


def hashed_columns(frame: pl.DataFrame) -> tuple[str, ...]:
    """The columns of ``frame`` a row's hash covers: every column of a plain type (numbers, times,
    text, booleans) but the labels and a flow's own time (``capture_time``, which stands in for
    ``time``: :func:`as_captured`), in the frame's order."""
    left_out = (*LABEL_COLUMNS, CAPTURE_TIME)
    return tuple(name for name, dtype in frame.schema.items() if name not in left_out and _hashable(dtype))


def as_captured(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with each flow at its own time where it keeps one (``capture_time``, written by
    ``nadkit mix-captures``, which moves each capture in time), so a mix's flows hash as the
    captures had them; ``frame`` itself otherwise."""
    if CAPTURE_TIME not in frame.columns or "time" not in frame.columns:
        return frame
    return frame.with_columns(pl.col(CAPTURE_TIME).alias("time")).drop(CAPTURE_TIME)


def _column_hashes(series: pl.Series) -> np.ndarray:
    """One uint64 per value of ``series``."""
    dtype = series.dtype
    nulls = series.is_null().to_numpy()
    if isinstance(dtype, pl.String | pl.Categorical | pl.Enum):
        text = series.cast(pl.String)
        distinct = text.drop_nulls().unique()
        codes = pl.Series([_digest(value) for value in distinct.to_list()], dtype=pl.UInt64)
        values = text.replace_strict(distinct, codes, default=None, return_dtype=pl.UInt64)
        out = values.fill_null(0).to_numpy().astype(np.uint64)
    elif dtype.is_temporal():
        if isinstance(dtype, pl.Datetime | pl.Duration):
            series = series.dt.cast_time_unit("us")
        out = series.to_physical().cast(pl.Int64).fill_null(0).to_numpy().view(np.uint64)
    else:
        numbers = series.cast(pl.Float64).fill_null(0.0).to_numpy().astype(np.float64, copy=True)
        numbers[np.isnan(numbers)] = np.nan  # one NaN
        numbers[numbers == 0.0] = 0.0  # -0.0 and 0.0 alike
        out = numbers.view(np.uint64)
    out = _mix(out)
    out[nulls] = _NULL
    return out


def row_hashes(frame: pl.DataFrame, columns: tuple[str, ...] | list[str]) -> np.ndarray:
    """One uint64 per row of ``frame``: the hash of its values in ``columns`` (see the module
    docstring); a KeyError names a column ``frame`` lacks."""
    hashes = np.full(frame.height, _START, dtype=np.uint64)
    for name in sorted(columns):
        salt = np.uint64(_digest(name))
        hashes = _mix((hashes * _GOLDEN) ^ _mix(_column_hashes(frame[name]) ^ salt))
    return hashes


@dataclass(frozen=True, eq=False)
class TrainingRows:
    """The sampled hashes of a model's training rows (sorted, distinct, uint64), the columns hashed,
    how many rows were hashed and how many of them were distinct."""

    hashes: np.ndarray
    columns: tuple[str, ...]
    rows: int
    distinct: int
    scheme: str = ROW_HASH

    @classmethod
    def of(cls, *frames: pl.DataFrame, limit: int = ROW_HASH_LIMIT) -> TrainingRows:
        """The training rows of ``frames`` (parts of one table: the columns of the first are
        hashed), at most ``limit`` distinct hashes kept (the smallest)."""
        if limit < 1:
            raise ValueError(f"the row hash limit must be at least 1, got {limit}")
        if not frames:
            raise ValueError("no training rows to hash")
        columns = hashed_columns(frames[0])
        hashes = np.unique(np.concatenate([row_hashes(as_captured(frame), columns) for frame in frames]))
        distinct = len(hashes)
        if distinct > limit:
            hashes = hashes[:limit]  # np.unique sorts: the smallest hashes
        rows = sum(frame.height for frame in frames)
        log.debug("%d training row hashes kept of %d distinct rows", len(hashes), distinct)
        return cls(hashes=hashes, columns=columns, rows=rows, distinct=distinct)

    @property
    def sampled(self) -> bool:
        """Whether only some of the distinct training rows are kept."""
        return self.distinct > len(self.hashes)

    def to_manifest(self) -> dict[str, Any]:
        """What the bundle manifest records besides the hashes themselves."""
        return {
            "scheme": self.scheme,
            "columns": list(self.columns),
            "rows": self.rows,
            "distinct": self.distinct,
            "kept": len(self.hashes),
        }

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any], hashes: np.ndarray) -> TrainingRows:
        """The training rows a manifest ``entry`` describes, with their ``hashes``; ValueError when
        they do not fit together."""
        hashes = np.asarray(hashes)
        if hashes.dtype != np.uint64 or hashes.ndim != 1:
            raise ValueError("the training row hashes are not a one-dimensional uint64 array")
        if len(hashes) != entry.get("kept") or (len(hashes) > 1 and bool(np.any(hashes[1:] <= hashes[:-1]))):
            raise ValueError("the training row hashes do not match the manifest")
        columns = entry.get("columns")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ValueError("the manifest's hashed columns are not a list of names")
        return cls(
            hashes=hashes,
            columns=tuple(columns),
            rows=int(entry.get("rows", 0)),
            distinct=int(entry.get("distinct", len(hashes))),
            scheme=str(entry.get("scheme", "")),
        )

    def missing(self, columns: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """The hashed columns not among ``columns``."""
        present = set(columns)
        return tuple(name for name in self.columns if name not in present)

    def count(self, frame: pl.DataFrame) -> tuple[int, int]:
        """How many rows of ``frame`` can be compared with the kept hashes (all of them unless the
        hashes are sampled: those whose hash falls in the sampled range) and how many of those are
        training rows."""
        compared, found = self.matches(frame)
        return int(compared.sum()), int(found.sum())

    def matches(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Per row of ``frame``: whether it can be compared with the kept hashes (see :meth:`count`)
        and whether it is a training row, as two boolean arrays."""
        if frame.height == 0 or len(self.hashes) == 0:
            return np.zeros(frame.height, dtype=bool), np.zeros(frame.height, dtype=bool)
        hashes = row_hashes(as_captured(frame), self.columns)
        compared = hashes <= self.hashes[-1] if self.sampled else np.ones(len(hashes), dtype=bool)
        places = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        return compared, compared & (self.hashes[places] == hashes)


@dataclass(frozen=True)
class TrainingOverlap:
    """How much of the evaluated data the model was trained on.

    ``evaluated``: rows evaluated; ``compared``: rows compared with the bundle's training row hashes
    (None where they were not: ``note`` says why); ``found``: compared rows that are training rows;
    ``sampled``: the bundle keeps a sample of its training rows, so ``share`` is an estimate;
    ``fingerprint_match``: the evaluated rows are the training rows by the bundle's data
    fingerprint (same count, features, means and spreads).
    """

    evaluated: int
    compared: int | None = None
    found: int | None = None
    fingerprint_match: bool = False
    sampled: bool = False
    note: str = ""
    #: the labelled normal rows among ``compared``, and those of them that are training rows (None
    #: where the evaluated flows have no labels): the false-positive rate is measured on them
    normal_compared: int | None = None
    normal_found: int | None = None

    @property
    def normal_share(self) -> float | None:
        """Share of the compared normal rows that are training rows (None when not known)."""
        if not self.normal_compared or self.normal_found is None:
            return None
        return self.normal_found / self.normal_compared

    @property
    def share(self) -> float | None:
        """Share of the evaluated rows that are training rows (None when not known)."""
        if self.fingerprint_match and not self.compared:
            return 1.0
        if not self.compared or self.found is None:
            return None
        return self.found / self.compared

    @property
    def rows(self) -> int | None:
        """Evaluated rows that are training rows (estimated from the sample when ``sampled``)."""
        share = self.share
        if share is None:
            return None
        if self.compared == self.evaluated and self.found is not None:
            return self.found
        return round(share * self.evaluated)

    @property
    def optimistic(self) -> bool:
        """Whether the evaluation measures the model on its training data (more than
        :data:`OVERLAP_SHARE` of it, or the whole of it by the fingerprint)."""
        shares = [x for x in (self.share, self.normal_share) if x is not None]
        return self.fingerprint_match or any(x > OVERLAP_SHARE for x in shares)

    def describe(self) -> str:
        """The overlap in a few words."""
        if self.share is None:
            return f"not checked ({self.note})" if self.note else "not checked"
        if self.compared is None:
            return "all evaluated flows are the training flows (same data fingerprint)"
        about = "about " if self.sampled else ""
        text = (
            f"{about}{self.rows:,} of {self.evaluated:,} evaluated flows ({self.share:.1%}) are in the "
            "model's training data"
        )
        if self.normal_found and self.normal_compared:
            compared = "compared " if self.sampled else ""
            share = self.normal_found / self.normal_compared
            text += (
                f", among them {self.normal_found:,} of the {self.normal_compared:,} normal flows {compared}"
                f"({share:.1%}), on which the false-positive rate is measured"
            )
        if self.sampled:
            text += f" (estimated from {self.compared:,} flows compared with a sample of the training rows)"
        if self.fingerprint_match:
            text += "; the data fingerprint matches the training data"
        return text

    def warning(self) -> str | None:
        """The sentence to show first when the figures are measured on training data, else None."""
        if not self.optimistic:
            return None
        return (
            f"Measured on training data: {self.describe()}. "
            "These figures are optimistic; evaluate on flows the model has not seen."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "share": self.share,
            "fingerprint_match": self.fingerprint_match,
            "optimistic": self.optimistic,
            "evaluated": self.evaluated,
            "compared": self.compared,
            "sampled": self.sampled,
            "normal_compared": self.normal_compared,
            "normal_found": self.normal_found,
            "normal_share": self.normal_share,
            "note": self.note,
            "warning": self.warning(),
        }


@dataclass
class OverlapCounter:
    """Counts, chunk after chunk, the evaluated rows that are training rows of a bundle
    (``training``: its :class:`TrainingRows`, None for a bundle without them)."""

    training: TrainingRows | None
    evaluated: int = 0
    compared: int = 0
    found: int = 0
    #: the same among the labelled normal rows (None until a chunk with labels is counted)
    normal_compared: int | None = None
    normal_found: int | None = None
    note: str = ""
    _checked_columns: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.training is None:
            self.note = "the bundle holds no training row hashes (saved by an earlier nadkit)"
        elif self.training.scheme != ROW_HASH:
            self.note = f"the bundle's rows are hashed by {self.training.scheme!r}, not {ROW_HASH!r}"
            self.training = None

    def add(self, frame: pl.DataFrame) -> None:
        """Count the rows of one chunk of the evaluated flows."""
        self.evaluated += frame.height
        if self.training is None or frame.height == 0:
            return
        if not self._checked_columns:
            self._checked_columns = True
            missing = self.training.missing(frame.columns)
            if missing:
                self.note = f"the evaluated flows lack the training column(s) {', '.join(missing)}"
                self.training = None
                return
        compared, found = self.training.matches(frame)
        self.compared += int(compared.sum())
        self.found += int(found.sum())
        if "label" in frame.columns:
            normal = (frame["label"] == NORMAL).fill_null(False).to_numpy()
            self.normal_compared = (self.normal_compared or 0) + int((compared & normal).sum())
            self.normal_found = (self.normal_found or 0) + int((found & normal).sum())

    def result(self, *, fingerprint_match: bool = False) -> TrainingOverlap:
        """The overlap counted so far."""
        if self.training is None:
            return TrainingOverlap(self.evaluated, fingerprint_match=fingerprint_match, note=self.note)
        note = "" if self.compared else "no evaluated flow falls within the sampled training rows"
        return TrainingOverlap(
            evaluated=self.evaluated,
            compared=self.compared if self.compared else None,
            found=self.found if self.compared else None,
            fingerprint_match=fingerprint_match,
            sampled=self.training.sampled,
            note=note,
            normal_compared=self.normal_compared,
            normal_found=self.normal_found,
        )
