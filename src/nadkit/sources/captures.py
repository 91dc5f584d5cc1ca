"""A labelled evaluation table from captures labelled per file.

Public packet captures usually come labelled per file: a capture of ordinary application traffic, a
capture of one scan or flood. :func:`mix_captures` meters each capture into flows (through the pcap
source, so nfstream), labels every flow by the file it came from (``normal`` for benign captures, the
attack's name for attack captures), and moves each capture to its own random place in one shared
time window, so the flows interleave as they would on one network:

* a capture's flows keep their order and spacing, except that idle gaps longer than ``max_gap_s``
  are shortened to it (some captures are several sessions recorded years apart);
* each capture then starts at a random offset (seeded) in ``[start, start + span_s - its length]``;
  the window is as long as the longest capture when ``span_s`` is not given.

The result is a canonical flow table in time order with a ``label`` column, ``capture`` (the file's
name) and ``capture_time`` (the flow's time in its capture, so ``nadkit evaluate`` still knows a flow
a model was trained on from the capture itself), ready for ``nadkit train``, ``evaluate`` and ``plot``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from nadkit.errors import ConfigError, SchemaError
from nadkit.schema import CAPTURE, CAPTURE_TIME, NORMAL, NORMAL_LABELS

log = logging.getLogger(__name__)

DEFAULT_START = dt.datetime(2021, 1, 4, 9, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class CaptureSummary:
    """One capture of a mix: where it came from, its label, its flows and where it was placed."""

    path: Path
    label: str
    flows: int
    start: dt.datetime
    seconds: float


@dataclass(frozen=True)
class MixedCaptures:
    """The mixed flow table and what went into it."""

    frame: pl.DataFrame
    captures: tuple[CaptureSummary, ...]
    start: dt.datetime
    span_s: float

    def counts(self) -> dict[str, int]:
        """Flows per label, largest first."""
        return label_counts(self.frame)


def label_counts(frame: pl.DataFrame, *, missing: str = "unlabelled") -> dict[str, int]:
    """Flows of ``frame`` per label (``missing`` for those without one), largest first."""
    if frame.height == 0:
        return {}
    labels = frame.select(pl.col("label").fill_null(missing))
    counted = labels.group_by("label").len().sort(["len", "label"], descending=[True, False])
    return dict(zip(counted["label"].to_list(), counted["len"].to_list(), strict=True))


def capture_files(paths: Iterable[str | Path]) -> list[Path]:
    """The capture files of ``paths`` (files, or directories searched for pcap/pcapng files), sorted
    and without repeats; a path that does not exist, or a directory with no capture, is an error."""
    from nadkit.sources.pcap import SUFFIXES

    found: dict[Path, None] = {}
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not files:
                raise SchemaError(f"{path}: no capture files ({', '.join(SUFFIXES)}) in this directory")
            found.update(dict.fromkeys(files))
        elif path.is_file():
            found[path] = None
        else:
            raise SchemaError(f"{path}: no such file or directory")
    return list(found)


def compress_gaps(seconds: np.ndarray, max_gap_s: float) -> np.ndarray:
    """Offsets from the first of ``seconds`` (which are sorted) with every gap longer than
    ``max_gap_s`` shortened to ``max_gap_s``."""
    if len(seconds) == 0:
        return seconds.astype(np.float64)
    gaps = np.diff(seconds, prepend=seconds[0])
    return np.cumsum(np.minimum(gaps, max_gap_s))


def _read_capture(path: Path, label: str, max_gap_s: float) -> pl.DataFrame:
    from nadkit.sources import load_flows

    frame, fmt = load_flows(path, format="pcap", label=label)
    if fmt != "pcap":  # pragma: no cover - the format is given
        raise SchemaError(f"{path}: not a packet capture")
    frame = frame.filter(pl.col("time").is_not_null()).sort("time", maintain_order=True)
    seconds = frame["time"].dt.epoch("us").to_numpy().astype(np.float64) / 1e6
    offsets = compress_gaps(seconds, max_gap_s)
    return frame.with_columns(
        pl.Series("__offset", offsets, dtype=pl.Float64),
        pl.lit(path.name).alias(CAPTURE),
        pl.col("time").alias(CAPTURE_TIME),
    )


def mix_captures(
    benign: Sequence[str | Path],
    attack: Sequence[str | Path],
    *,
    attack_labels: Mapping[str, str] | None = None,
    start: dt.datetime = DEFAULT_START,
    span_s: float | None = None,
    max_gap_s: float = 60.0,
    seed: int = 0,
    on_file: Callable[[int, int, Path], None] | None = None,
) -> MixedCaptures:
    """Mix benign and attack captures into one labelled, time-ordered flow table (see the module
    notes). ``attack_labels`` maps a capture's file name (or stem) to its label; other attack captures
    are labelled by their file stem."""
    from nadkit.sources.pcap import map_captures

    if max_gap_s <= 0:
        raise ConfigError(f"the longest kept gap must be positive, got {max_gap_s}")
    if span_s is not None and span_s <= 0:
        raise ConfigError(f"the time window must be positive, got {span_s}")
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    names = dict(attack_labels or {})
    benign_files, attack_files = capture_files(benign), capture_files(attack)
    both = set(benign_files) & set(attack_files)
    if both:
        raise ConfigError(f"{sorted(both)[0]}: given as both benign and attack")
    if not benign_files and not attack_files:
        raise ConfigError("no captures to mix")
    labelled = [(path, NORMAL) for path in benign_files]
    for path in attack_files:
        label = names.get(path.name, names.get(path.stem, path.stem))
        if not label.strip() or label.strip().lower() in NORMAL_LABELS:
            raise ConfigError(f"{path}: an attack capture needs an attack label, not {label!r}")
        labelled.append((path, label))
    total = len(labelled)
    # the captures are metered several at a time (each in meter processes of its own), in file order
    frames = map_captures(
        lambda item: _read_capture(item[0], item[1], max_gap_s),
        labelled,
        on_done=None if on_file is None else lambda done, item: on_file(done, total, item[0]),
    )
    parts = [(path, label, frame) for (path, label), frame in zip(labelled, frames, strict=True)]
    lengths = [float(frame["__offset"].max() or 0.0) if frame.height else 0.0 for _, _, frame in parts]
    window = max(lengths) if span_s is None else float(span_s)
    if window < max(lengths):
        longest = parts[int(np.argmax(lengths))][0]
        raise ConfigError(
            f"{longest}: lasts {max(lengths):.1f} s (gaps shortened), longer than the {window:g} s window"
        )
    rng = np.random.default_rng(seed)
    placed: list[pl.DataFrame] = []
    summaries: list[CaptureSummary] = []
    for (path, label, frame), length in zip(parts, lengths, strict=True):
        offset = float(rng.uniform(0.0, window - length)) if window > length else 0.0
        begin = start + dt.timedelta(seconds=offset)
        summaries.append(CaptureSummary(path, label, frame.height, begin, length))
        if frame.height == 0:
            log.warning("%s: no flows", path)
            continue
        micros = (pl.col("__offset") * 1e6).round().cast(pl.Int64)
        placed.append(
            frame.with_columns((pl.lit(begin) + pl.duration(microseconds=micros)).alias("time")).drop(
                "__offset"
            )
        )
    if not placed:
        raise SchemaError("the captures hold no flows")
    mixed = pl.concat(placed, how="diagonal_relaxed").sort("time", maintain_order=True)
    log.info("mixed %d captures into %d flows over %.1f s", len(parts), mixed.height, window)
    return MixedCaptures(frame=mixed, captures=tuple(summaries), start=start, span_s=window)


__all__ = [
    "CAPTURE",
    "CaptureSummary",
    "MixedCaptures",
    "capture_files",
    "compress_gaps",
    "label_counts",
    "mix_captures",
]
