"""Splitting flows into training and validation data without leaking sessions across the split.

Flows of one session share most of their features (segment and counter features in particular), so a
random row split puts near-copies of validation rows into training and validation scores come out too
good. Three ways to split:

* :class:`GroupSplit`: rows are grouped into sessions, by default one group per (src, dst /24) pair
  (optionally cut into segments by a time gap), and whole groups go to one side. Groups are assigned so
  that each class is split in the requested proportion (so each side has the class mix of the whole)
  and the validation side is close to the requested fraction: the large groups greedily, largest
  first; the many small ones in a seeded random order, filling what each class still lacks; then single
  group moves while they bring the sides closer to the targets. Deterministic for a given seed.
  Without address columns (UNSW-NB15, NSL-KDD) blocks of consecutive rows stand in for sessions.
* :class:`DaySplit`: train on some days, validate on others (UTC days of ``time``).
* :class:`TimeSplit`: everything from a cut time on is validation.

Each returns a :class:`Split`: the validation mask and a :class:`SplitReport` (sizes, class counts and
shares per side, the largest class-share deviation in percentage points, and how many groups ended on
both sides), which converts to a dict for JSON and renders as a rich table.

For rows with no sessions to keep whole, :func:`stratified_holdout` holds out a random share of each
class's rows (a plain boolean mask).

Training cuts its table with one of three splits, each giving a :class:`FrameSplit`:
:func:`unsupervised_split` (normal rows to train on; attacks and a share of normal rows held out for
the threshold), :func:`supervised_split` (the group split, or a stratified one without addresses)
and :func:`bucket_split` (a cut in time for the bucket view).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from nadkit.errors import ConfigError, SchemaError
from nadkit.evaluation.holdout_blocks import HOLDOUT_BLOCKS, group_blocks, time_blocks
from nadkit.features.counters import combined_codes, dense_codes
from nadkit.features.segments import SUBNET_OF, SegmentConfig, key_codes, segment_ids
from nadkit.schema import NORMAL

if TYPE_CHECKING:
    from rich.table import Table

    from nadkit.features.series import BucketConfig

log = logging.getLogger(__name__)

SIDES = ("train", "validation")
DEFAULT_KEY = ("src", "dst_subnet")
NO_LABEL = "(no label)"
#: groups placed one by one, largest first, before the rest are placed together
_GREEDY_GROUPS = 2000
#: most single-group moves made by the improvement step
_MAX_MOVES = 2000
#: the improvement step stops once every class (and the total) is this close to its target, relatively
_CLOSE_ENOUGH = 0.01


def _check_fraction(fraction: float) -> None:
    if not 0 < fraction < 1:
        raise ConfigError(f"validation_fraction must be between 0 and 1, got {fraction}")


@dataclass(frozen=True)
class SplitReport:
    """What a split produced. Shares are fractions (0-1) of a side's rows; the class-share deviation
    is in percentage points, the largest over classes and both sides."""

    method: str
    rows: dict[str, int]
    validation_share: float
    requested_share: float
    class_counts: dict[str, dict[str, int]]
    class_shares: dict[str, dict[str, float]]
    max_class_deviation_points: float
    group_key: tuple[str, ...] | None
    groups: dict[str, int] | None
    groups_on_both_sides: int | None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        data["group_key"] = list(self.group_key) if self.group_key is not None else None
        data["notes"] = list(self.notes)
        return data


@dataclass(frozen=True)
class Split:
    """The result of a split: ``validation`` is a boolean mask over the frame's rows."""

    validation: np.ndarray
    report: SplitReport

    @property
    def train(self) -> np.ndarray:
        """Boolean mask of the training rows."""
        return ~self.validation

    def train_index(self) -> np.ndarray:
        """Row numbers of the training rows, ascending."""
        return np.flatnonzero(~self.validation)

    def validation_index(self) -> np.ndarray:
        """Row numbers of the validation rows, ascending."""
        return np.flatnonzero(self.validation)

    def frames(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """``frame``'s training and validation rows, in their original order."""
        mask = pl.Series(self.validation)
        return frame.filter(~mask), frame.filter(mask)


def _classes(frame: pl.DataFrame, label: str | None) -> tuple[np.ndarray, list[str]]:
    """Dense class code of each row and the class names (sorted; missing labels are a class)."""
    if label is None or label not in frame.columns:
        return np.zeros(frame.height, dtype=np.int64), [NO_LABEL]
    text = frame[label].cast(pl.String).fill_null(NO_LABEL)
    names = sorted(text.unique().to_list())
    codes = text.replace_strict(names, list(range(len(names))), return_dtype=pl.Int64)
    return codes.to_numpy(), names


def _canonical_groups(codes: np.ndarray) -> np.ndarray:
    """Dense group numbers 0, 1, ... in the order of each group's first row (so they depend only on the
    frame, not on how the key values were coded)."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    dense, count = dense_codes(codes)
    first = np.full(count, len(dense), dtype=np.int64)
    np.minimum.at(first, dense, np.arange(len(dense), dtype=np.int64))
    is_first = np.zeros(len(dense), dtype=bool)
    is_first[first] = True
    renumber = (np.cumsum(is_first) - 1)[first]
    return renumber[dense]


def session_groups(
    frame: pl.DataFrame, key: Sequence[str] = DEFAULT_KEY, gap_s: float | None = None
) -> np.ndarray:
    """Group number of each row: one group per value of ``key`` (``dst_subnet`` is derived from
    ``dst``), or per segment of it when ``gap_s`` is set. Raises SchemaError naming a missing column."""
    key = tuple(key)
    for name in key:
        source = SUBNET_OF.get(name, name) if name not in frame.columns else name
        if source not in frame.columns:
            raise SchemaError(
                f"group split key needs column {source!r} (have: {', '.join(frame.columns)})", column=source
            )
    if gap_s is not None:
        # a session is kept whole, however long: no span limit
        return segment_ids(frame, SegmentConfig(key=key, gap_s=gap_s, max_span_s=None)).to_numpy()
    code, _ = combined_codes(key_codes(frame, key))
    return _canonical_groups(code)


def _objective_parts(totals: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Targets and weights of the assignment objective: each class (and, in the last slot, the row
    count) should have ``fraction`` of its rows on the validation side; deviations count relative to
    the target, so a rare class matters as much as a common one."""
    targets = fraction * totals.astype(np.float64)
    weights = 1.0 / np.maximum(targets, 0.5) ** 2
    weights[totals == 0] = 0.0
    return targets, weights


def assign_groups(counts: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Which groups go to validation (boolean per group), given each group's rows per class
    (``counts``: groups x classes), so that every class and the total are split close to ``fraction``.

    Minimises the sum over classes and the total of ((validation - target) / target)^2. Large groups
    come first, one by one (sizes within a factor of two in a seeded random order), each to the side
    that keeps the groups placed so far closest to the fraction; the many small groups then fill what
    each class still lacks, in a seeded random order; last, while one exists, the single group move
    that lowers the objective most is made.
    """
    rng = np.random.default_rng(seed)
    counts = np.asarray(counts, dtype=np.float64)
    n_groups = counts.shape[0]
    if n_groups == 0:
        return np.zeros(0, dtype=bool)
    # the last column is the group size, so the total is balanced like a class
    table = np.column_stack([counts, counts.sum(axis=1)])
    targets, weights = _objective_parts(table.sum(axis=0), fraction)
    sizes = table[:, -1]
    size_class = np.floor(np.log2(np.maximum(sizes, 1.0)))
    by_size = np.lexsort((rng.random(n_groups), -size_class))
    chosen = np.zeros(n_groups, dtype=bool)
    current = np.zeros(table.shape[1], dtype=np.float64)
    placed = np.zeros(table.shape[1], dtype=np.float64)

    for group in by_size[:_GREEDY_GROUPS].tolist():
        row = table[group]
        placed += row
        # validation if that leaves it closer to ``fraction`` of what has been placed
        if float(np.dot(weights, row * (2.0 * (current - fraction * placed) + row))) < 0:
            chosen[group] = True
            current += row

    rest = by_size[_GREEDY_GROUPS:]
    if len(rest):
        rest = rng.permutation(rest)
        dominant = np.argmax(counts[rest], axis=1)
        for cls in np.unique(dominant).tolist():
            members = rest[dominant == cls]
            need = targets[cls] - current[cls]
            if need <= 0:
                continue
            filled = np.cumsum(counts[members, cls])
            # the prefix whose running total comes closest to the need
            take = int(np.searchsorted(filled, need, side="left"))
            if take < len(filled) and (filled[take] - need) < (need - (filled[take - 1] if take else 0.0)):
                take += 1
            picked = members[:take]
            chosen[picked] = True
            current += table[picked].sum(axis=0)

    # single-group moves: flipping group g changes the objective by s_g * sum_k a_k t_gk + sum_k w_k t_gk^2,
    # with s_g = +1 into validation, -1 out of it and a = 2 w (current - targets); columns are summed
    # one by one (the class count is small) rather than through a matrix product
    columns = np.ascontiguousarray(table.T)
    squared = np.zeros(n_groups, dtype=np.float64)
    for weight, column in zip(weights.tolist(), columns, strict=True):
        squared += weight * column * column
    close_enough = np.maximum(0.5, _CLOSE_ENOUGH * targets)
    signed = np.empty(n_groups, dtype=np.float64)
    for _ in range(_MAX_MOVES):
        if np.all(np.abs(current - targets) <= close_enough):
            break
        gradient = 2.0 * weights * (current - targets)
        np.multiply(columns[0], gradient[0], out=signed)
        for slope, column in zip(gradient[1:].tolist(), columns[1:], strict=True):
            signed += slope * column
        change = np.where(chosen, -signed, signed)
        change += squared
        best = int(np.argmin(change))
        if change[best] >= -1e-12:
            break
        chosen[best] = not chosen[best]
        current += table[best] if chosen[best] else -table[best]
    return chosen


def _report(
    method: str,
    validation: np.ndarray,
    classes: np.ndarray,
    names: list[str],
    requested: float,
    groups: np.ndarray | None,
    group_key: tuple[str, ...] | None,
    notes: Sequence[str] = (),
) -> SplitReport:
    n = len(validation)
    n_classes = len(names)
    per_side = {
        "all": np.bincount(classes, minlength=n_classes),
        "train": np.bincount(classes[~validation], minlength=n_classes),
        "validation": np.bincount(classes[validation], minlength=n_classes),
    }
    counts = {side: dict(zip(names, map(int, values), strict=True)) for side, values in per_side.items()}
    shares = {
        side: {
            name: (count / max(int(values.sum()), 1))
            for name, count in zip(names, values.tolist(), strict=True)
        }
        for side, values in per_side.items()
    }
    deviation = 0.0
    for side in SIDES:
        if per_side[side].sum() == 0:
            continue
        for name in names:
            deviation = max(deviation, abs(shares[side][name] - shares["all"][name]) * 100.0)
    group_counts = None
    both = None
    if groups is not None and n:
        in_validation = np.bincount(groups, weights=validation.astype(np.float64))
        in_train = np.bincount(groups, weights=(~validation).astype(np.float64))
        group_counts = {"train": int((in_train > 0).sum()), "validation": int((in_validation > 0).sum())}
        both = int(((in_train > 0) & (in_validation > 0)).sum())
    validation_rows = int(validation.sum())
    return SplitReport(
        method=method,
        rows={"train": n - validation_rows, "validation": validation_rows},
        validation_share=validation_rows / n if n else 0.0,
        requested_share=requested,
        class_counts=counts,
        class_shares=shares,
        max_class_deviation_points=deviation,
        group_key=group_key,
        groups=group_counts,
        groups_on_both_sides=both,
        notes=tuple(notes),
    )


def _leakage_groups(frame: pl.DataFrame) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """Session groups for reporting leakage of a day or time split, when the frame has addresses."""
    if "src" in frame.columns and "dst" in frame.columns and frame.height:
        return session_groups(frame, DEFAULT_KEY), DEFAULT_KEY
    return None, None


@dataclass(frozen=True)
class GroupSplit:
    """Whole sessions to one side, class mix and size balanced (see the module docstring).

    ``key``: the columns defining a session (``dst_subnet``: the /24 or /64 of ``dst``); ``gap_s``: also
    cut sessions at pauses longer than this (None: one group per key value); ``label``: the class
    column (absent: sizes only are balanced); ``block_rows``: rows per block when the frame has no
    addresses.
    """

    validation_fraction: float = 0.25
    seed: int = 0
    key: tuple[str, ...] = DEFAULT_KEY
    gap_s: float | None = None
    label: str = "label"
    block_rows: int = 1000

    def __post_init__(self) -> None:
        _check_fraction(self.validation_fraction)
        object.__setattr__(self, "key", (self.key,) if isinstance(self.key, str) else tuple(self.key))
        if self.block_rows < 1:
            raise ConfigError(f"block_rows must be at least 1, got {self.block_rows}")

    def split(self, frame: pl.DataFrame) -> Split:
        """Split ``frame``; raises SchemaError when a key column is missing (unless the frame has no
        address columns at all, where row blocks are used, with a note in the report)."""
        if frame.height == 0:
            raise ConfigError("nothing to split: the frame has no rows")
        notes: list[str] = []
        no_addresses = "src" not in frame.columns and "dst" not in frame.columns
        if no_addresses and self.key == DEFAULT_KEY:
            note = f"no address columns: blocks of {self.block_rows} consecutive rows are the groups"
            log.warning(note)
            notes.append(note)
            groups = np.arange(frame.height, dtype=np.int64) // self.block_rows
            group_key: tuple[str, ...] = ("row_block",)
        else:
            groups = session_groups(frame, self.key, self.gap_s)
            group_key = self.key if self.gap_s is None else (*self.key, f"gap {self.gap_s:g} s")
        classes, names = _classes(frame, self.label)
        if self.label not in frame.columns:
            note = f"no {self.label!r} column: only the validation size is balanced"
            log.info(note)
            notes.append(note)
        n_groups = int(groups.max()) + 1 if len(groups) else 0
        counts = np.bincount(groups * len(names) + classes, minlength=n_groups * len(names))
        chosen = assign_groups(counts.reshape(n_groups, len(names)), self.validation_fraction, self.seed)
        validation = chosen[groups] if len(groups) else np.zeros(0, dtype=bool)
        report = _report(
            "group", validation, classes, names, self.validation_fraction, groups, group_key, notes
        )
        log.info(
            "group split: %d groups, validation share %.3f, max class-share deviation %.2f points",
            n_groups,
            report.validation_share,
            report.max_class_deviation_points,
        )
        return Split(validation=validation, report=report)


def _times_us(frame: pl.DataFrame, method: str) -> np.ndarray:
    if "time" not in frame.columns:
        raise SchemaError(f"a {method} split needs column 'time'", column="time")
    missing = frame["time"].null_count()
    if missing:
        raise SchemaError(f"a {method} split needs a time on every row ({missing} missing)", column="time")
    return frame["time"].dt.epoch("us").to_numpy()


def _day(value: str | dt.date | dt.datetime) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as error:
        raise ConfigError(f"not a day (YYYY-MM-DD): {value!r}") from error


@dataclass(frozen=True)
class DaySplit:
    """Train on some UTC days, validate on others: ``validation_days`` when given, else the latest
    days whose share of rows is closest to ``validation_fraction`` (at least one day each side)."""

    validation_fraction: float = 0.25
    validation_days: tuple[str | dt.date, ...] | None = None
    label: str = "label"

    def __post_init__(self) -> None:
        _check_fraction(self.validation_fraction)
        if self.validation_days is not None:
            object.__setattr__(self, "validation_days", tuple(self.validation_days))

    def split(self, frame: pl.DataFrame) -> Split:
        """Split ``frame`` by day; raises SchemaError without ``time``, ConfigError with fewer than two
        days (or validation days that leave nothing to train on)."""
        _times_us(frame, "day")
        days = frame["time"].dt.date()
        present = sorted(days.unique().to_list())
        if len(present) < 2:
            raise ConfigError(f"a day split needs at least two days of data, found {len(present)}")
        if self.validation_days is not None:
            wanted = {_day(d) for d in self.validation_days}
            unknown = sorted(wanted - set(present))
            if unknown:
                raise ConfigError(
                    f"validation days not in the data: {', '.join(map(str, unknown))} "
                    f"(have {', '.join(map(str, present))})"
                )
            chosen = [d for d in present if d in wanted]
        else:
            per_day = days.value_counts().sort(days.name)
            counts = dict(zip(per_day[days.name].to_list(), per_day["count"].to_list(), strict=True))
            shares = np.cumsum([counts[d] for d in reversed(present)]) / frame.height
            best = int(np.argmin(np.abs(shares[: len(present) - 1] - self.validation_fraction))) + 1
            chosen = present[-best:]
        if len(chosen) == len(present):
            raise ConfigError("the validation days cover every day: nothing left to train on")
        validation = days.is_in(chosen).to_numpy()
        classes, names = _classes(frame, self.label)
        groups, group_key = _leakage_groups(frame)
        notes = [f"validation days: {', '.join(map(str, chosen))}"]
        report = _report(
            "day", validation, classes, names, self.validation_fraction, groups, group_key, notes
        )
        return Split(validation=validation, report=report)


@dataclass(frozen=True)
class TimeSplit:
    """Validation is every row at or after ``cut`` (a UTC datetime); without a cut, the latest
    ``validation_fraction`` of the rows (rows at the cut time all go to validation)."""

    validation_fraction: float = 0.25
    cut: dt.datetime | None = None
    label: str = "label"

    def __post_init__(self) -> None:
        _check_fraction(self.validation_fraction)

    def split(self, frame: pl.DataFrame) -> Split:
        """Split ``frame`` at the cut; raises SchemaError without ``time`` and ConfigError when one
        side would be empty."""
        times = _times_us(frame, "time")
        if self.cut is not None:
            cut = self.cut if self.cut.tzinfo else self.cut.replace(tzinfo=dt.UTC)
            cut_us = round((cut - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds() * 1e6)
        else:
            if frame.height < 2:
                raise ConfigError("a time split needs at least two rows")
            ordered = np.sort(times)
            cut_us = int(
                ordered[min(int(np.ceil((1 - self.validation_fraction) * len(ordered))), len(ordered) - 1)]
            )
        validation = times >= cut_us
        if validation.all() or not validation.any():
            raise ConfigError("the cut time leaves one side empty")
        classes, names = _classes(frame, self.label)
        groups, group_key = _leakage_groups(frame)
        cut_text = dt.datetime.fromtimestamp(cut_us / 1e6, tz=dt.UTC).isoformat()
        report = _report(
            "time",
            validation,
            classes,
            names,
            self.validation_fraction,
            groups,
            group_key,
            [f"cut at {cut_text}"],
        )
        return Split(validation=validation, report=report)


Method = Literal["group", "day", "time"]


def split_frame(
    frame: pl.DataFrame,
    method: Method = "group",
    validation_fraction: float = 0.25,
    seed: int = 0,
    **options: Any,
) -> Split:
    """Split ``frame`` with the named method; ``options`` go to :class:`GroupSplit`,
    :class:`DaySplit` or :class:`TimeSplit` (``seed`` only matters to the group split)."""
    if method == "group":
        return GroupSplit(validation_fraction=validation_fraction, seed=seed, **options).split(frame)
    if method == "day":
        return DaySplit(validation_fraction=validation_fraction, **options).split(frame)
    if method == "time":
        return TimeSplit(validation_fraction=validation_fraction, **options).split(frame)
    raise ConfigError(f"unknown split method {method!r} (use group, day or time)")


def stratified_holdout(codes: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """A boolean mask holding out ``fraction`` of each class's rows (``codes``: one integer class code
    per row), chosen at random (seeded); a class of one row stays on the training side. The row
    split for data without sessions to keep whole (no addresses)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"the hold-out fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    held = np.zeros(len(codes), dtype=bool)
    for code in np.unique(codes):
        rows = rng.permutation(np.flatnonzero(codes == code))
        count = round(len(rows) * fraction) if len(rows) > 1 else 0
        held[rows[:count]] = True
    return held


# ---------------------------------------------------------------------------------------------------
# the splits training uses


@dataclass(frozen=True)
class FrameSplit:
    """A flow table cut for training: ``train`` to fit on, ``holdout`` to validate on (choose the
    threshold, stop early, select a model). ``method`` says how it was cut: ``normal-only, ...`` (normal
    rows to train on, a share of them and every attack held out) or, for unlabelled rows, the share
    alone: ``time-blocks`` (stretches of consecutive flows) or ``random`` (single rows), ``group``
    (whole sessions to one side), ``stratified`` (random rows, class by class) or ``time``
    (the last part of the time range held out, from ``edge``, the first hold-out bucket's start);
    ``report`` what each side holds where the method describes it."""

    train: pl.DataFrame
    holdout: pl.DataFrame
    method: str
    report: dict[str, Any] = field(default_factory=dict)
    edge: dt.datetime | None = None

    @property
    def validation(self) -> pl.DataFrame:
        """The hold-out, by the name supervised training gives it."""
        return self.holdout


def unsupervised_split(
    frame: pl.DataFrame,
    *,
    holdout_fraction: float = 0.3,
    seed: int = 0,
    train_only: np.ndarray | None = None,
    stretches: bool = False,
    groups: np.ndarray | None = None,
) -> FrameSplit:
    """Split labelled flows for unsupervised training: ``holdout_fraction`` of the normal rows and all
    attack rows form the labelled hold-out; the remaining normal rows are the training set.

    The normal rows are held out one by one at random, or with ``stretches`` (where the flows have
    times) as :data:`HOLDOUT_BLOCKS` stretches of consecutive normal flows at random places in time
    (the normal rows in time order cut into ``HOLDOUT_BLOCKS / holdout_fraction`` equal stretches,
    that many drawn). Flows close in time are parts of the same bursts and sessions, so a hold-out of
    single rows drawn among the training rows holds near-copies of them and scores lower than traffic
    from other networks or devices: stretches give a threshold closer to its false-positive rate
    there, but they leave whole parts of a short training span (a day's hours) out of training, and
    then a threshold above what that span's traffic needs (``benchmarks/holdout.py``). Unlabelled
    data is taken as mostly normal and held out the same way (for early stopping and the quantile
    threshold). With ``groups`` (one name per row: the capture each flow came from), whole groups of
    normal rows are held out, drawn at random until they hold ``holdout_fraction`` of the normal
    rows (at least one group held out, one kept): the threshold is then set on captures the model has
    not seen, as the traffic it will score is. ``train_only`` marks normal rows that always go to
    training. Rows keep their original order on both sides.
    """
    if not 0 < holdout_fraction < 1:
        raise ConfigError(f"holdout_fraction must be between 0 and 1, got {holdout_fraction}")
    rng = np.random.default_rng(seed)
    labelled = "label" in frame.columns
    normal = _normal_rows(frame)
    if labelled and not normal.any():
        raise ConfigError("the labelled data has no normal rows to train an unsupervised model on")
    if groups is not None and stretches:
        raise ConfigError("hold out stretches of time or whole groups of flows, not both")
    grouped = group_blocks(groups, normal, holdout_fraction, rng) if groups is not None else None
    if groups is not None and grouped is None:
        log.warning(
            "hold-out by capture: the normal flows come from one capture; single rows are held out instead"
        )
    blocks = time_blocks(frame, normal, holdout_fraction, rng) if stretches else grouped
    if stretches and blocks is None:
        log.warning(
            "hold-out by time: the flows have no times (or too few normal rows for %d stretches); "
            "single rows are held out instead",
            HOLDOUT_BLOCKS,
        )
    if blocks is not None:
        held, method = blocks, "time-blocks" if stretches else "captures"
    else:
        held, method = rng.random(frame.height) < holdout_fraction, "random"
    if train_only is not None:
        keep = np.asarray(train_only, dtype=bool)
        if keep.shape != (frame.height,):
            raise ConfigError(f"train_only has {keep.size} values for {frame.height} rows")
        held = held & ~keep
    if labelled:
        held = held | ~normal
        method = f"normal-only, {method}"
    mask = pl.Series(held)
    report = {}
    if grouped is not None:
        report["captures_held_out"] = sorted({str(g) for g in np.asarray(groups)[held & normal]})
    split = FrameSplit(train=frame.filter(~mask), holdout=frame.filter(mask), method=method, report=report)
    log.info(
        "unsupervised split (%s): %d training rows, %d hold-out rows (%d attacks)",
        method,
        split.train.height,
        split.holdout.height,
        int((~normal).sum()),
    )
    return split


def _normal_rows(frame: pl.DataFrame) -> np.ndarray:
    """Which rows are normal: labelled so, or every row of unlabelled flows."""
    if "label" not in frame.columns:
        return np.ones(frame.height, dtype=bool)
    return (frame["label"].fill_null(NORMAL) == NORMAL).to_numpy()


#: the fewest normal hold-out rows on each side of :func:`weighing_split`
MIN_WEIGHING_ROWS = 20


def weighing_split(holdout: pl.DataFrame, *, seed: int = 0) -> np.ndarray | None:
    """Which rows of a hold-out a detector that weighs its errors on normal rows it did not train on
    (``weigh_errors``) weighs them on: half of the normal rows, the earlier half in time where the
    flows have times (else drawn at random). The rest (the other normal rows and every attack row)
    is where the threshold is chosen, so that it is not measured on the rows the weights were
    fitted to. A boolean mask, or None where either half would have fewer than
    :data:`MIN_WEIGHING_ROWS` normal rows."""
    rows = np.flatnonzero(_normal_rows(holdout))
    if len(rows) < 2 * MIN_WEIGHING_ROWS:
        return None
    if "time" in holdout.columns and holdout["time"].null_count() == 0:
        order = rows[np.argsort(holdout["time"].to_numpy()[rows], kind="stable")]
    else:
        order = np.random.default_rng(seed).permutation(rows)
    weighing = np.zeros(holdout.height, dtype=bool)
    weighing[order[: len(order) // 2]] = True
    return weighing


def supervised_split(frame: pl.DataFrame, *, validation_fraction: float = 0.25, seed: int = 0) -> FrameSplit:
    """Split labelled flows into training and validation parts with the class mix of the whole on
    each side: the group split (:class:`GroupSplit`: no (src, dst /24) session on both sides) when
    the flows have addresses, else a stratified random split of the rows."""
    if not 0 < validation_fraction < 1:
        raise ConfigError(f"the validation fraction must be between 0 and 1, got {validation_fraction}")
    if "label" not in frame.columns or frame["label"].null_count() == frame.height:
        raise ConfigError("supervised training needs labelled flows (a 'label' column)")
    if "src" in frame.columns and "dst" in frame.columns:
        split = GroupSplit(validation_fraction=validation_fraction, seed=seed).split(frame)
        train, validation = split.frames(frame)
        return FrameSplit(train, validation, "group", split.report.to_dict())
    labels = frame["label"].fill_null(NORMAL).to_numpy().astype(str)
    _, codes = np.unique(labels, return_inverse=True)
    held = stratified_holdout(codes, validation_fraction, seed)
    mask = pl.Series(held)
    train, validation = frame.filter(~mask), frame.filter(mask)
    report = {
        "method": "stratified",
        "rows": {"train": train.height, "validation": validation.height},
        "class_counts": {
            side: dict(sorted(part["label"].fill_null(NORMAL).value_counts().iter_rows()))
            for side, part in (("train", train), ("validation", validation))
        },
    }
    log.info("stratified split: %d training rows, %d validation rows", train.height, validation.height)
    return FrameSplit(train, validation, "stratified", report)


def bucket_split(frame: pl.DataFrame, config: BucketConfig, holdout_fraction: float = 0.3) -> FrameSplit:
    """Split flows in time for the bucket view: the last ``holdout_fraction`` of the time range (cut
    at a bucket edge) is the hold-out, the normal flows before it are the training part. A time
    split, not a row split: a bucket's metrics need all of its flows, and windows need consecutive
    buckets. Flows without a time belong to no bucket and are left out."""
    if not 0 < holdout_fraction < 1:
        raise ConfigError(f"holdout_fraction must be between 0 and 1, got {holdout_fraction}")
    if "time" not in frame.columns:
        raise ConfigError("the bucket view needs each flow's time, and these flows have no 'time' column")
    timed = frame.filter(pl.col("time").is_not_null())
    if timed.height < frame.height:
        log.warning("%d flow(s) without a time left out of the bucket view", frame.height - timed.height)
    if timed.height == 0:
        raise ConfigError("no flow has a time: the bucket view has nothing to learn from")
    width = round(config.bucket_s * 1e6)
    number = timed["time"].dt.epoch("us") // width
    low, high = int(number.min()), int(number.max())  # type: ignore[arg-type]
    if high == low:
        raise ConfigError(
            f"every flow falls in one bucket of {config.bucket_s:g} s: nothing to split in time "
            "(use shorter buckets or more traffic)"
        )
    cut = low + max(1, min(high - low, round((high - low + 1) * (1 - holdout_fraction))))
    before = (number < cut).to_numpy()
    train = timed.filter(pl.Series(before))
    if "label" in train.columns:
        train = train.filter(pl.col("label").fill_null(NORMAL) == NORMAL)
    holdout = timed.filter(pl.Series(~before))
    if train.height == 0:
        raise ConfigError("no normal flow before the hold-out's first bucket to train on")
    edge = dt.datetime.fromtimestamp(cut * width / 1e6, tz=dt.UTC)
    log.info(
        "bucket split at %s: %d normal training flows, %d hold-out flows", edge, train.height, holdout.height
    )
    return FrameSplit(train=train, holdout=holdout, method="time", edge=edge)


def render(report: SplitReport) -> Table:
    """A rich Table of the report: rows and share of each class per side, and the deviation."""
    from rich.table import Table

    title = (
        f"{report.method} split: {report.rows['train']:,} train / {report.rows['validation']:,} validation "
        f"rows ({report.validation_share:.1%} validation, asked {report.requested_share:.0%})"
    )
    caption = [f"largest class-share deviation {report.max_class_deviation_points:.2f} points"]
    if report.groups is not None:
        caption.append(
            f"groups ({', '.join(report.group_key or ())}): {report.groups['train']:,} train, "
            f"{report.groups['validation']:,} validation, {report.groups_on_both_sides:,} on both sides"
        )
    caption.extend(report.notes)
    table = Table(title=title, caption="; ".join(caption))
    table.add_column("class")
    for side in ("all", *SIDES):
        table.add_column(f"{side} rows", justify="right")
        table.add_column(f"{side} %", justify="right")
    table.add_column("validation share of class", justify="right")
    for name, total in report.class_counts["all"].items():
        cells = [name]
        for side in ("all", *SIDES):
            cells.append(f"{report.class_counts[side][name]:,}")
            cells.append(f"{report.class_shares[side][name] * 100:.2f}")
        cells.append(f"{report.class_counts['validation'][name] / total:.1%}" if total else "-")
        table.add_row(*cells)
    return table


__all__ = [
    "DaySplit",
    "GroupSplit",
    "Split",
    "SplitReport",
    "TimeSplit",
    "assign_groups",
    "render",
    "session_groups",
    "split_frame",
]
