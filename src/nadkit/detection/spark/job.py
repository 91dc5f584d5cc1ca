"""What the executors run: the partition functions of a Spark detection (reading and numbering
flows, the traffic counters of time ranges, scoring), the settings sent to each task, and the Arrow
batches they take and give back."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import numpy as np
import polars as pl

from nadkit.alerts.records import flat_top_features, times_as_text
from nadkit.detection.spark.plan import _pipeline_variant
from nadkit.detection.spark.session import Batches, _first_line
from nadkit.errors import FormatError, NadkitError, SchemaError
from nadkit.features.counters import COUNTER_COLUMNS
from nadkit.features.incremental import IncrementalFeatures
from nadkit.features.pipeline import FeaturePipeline
from nadkit.features.segments import SUBNET_OF, subnet
from nadkit.schema import validate
from nadkit.sources import ROW
from nadkit.sources import parquet as parquet_source
from nadkit.sources.base import SOURCE_ROW, check_invalid

# Executors import this module to run its partition functions: only light modules at the top, the
# scorer (and torch with it) where a task scores.
if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import StructType

    from nadkit.training.bundle import ModelBundle


# helper columns on the way through the job
_FILE = "__file"
_INDEX = "__index"
_TIME = "__t_us"
_PART = "__range"
_CONTEXT = "__context"
_KEY = "__key_"
_LINE = "line"


def _path_key(text: str) -> str:
    """A file's identity across the ways it is written (``/a b``, ``file:/a%20b``, ``file:///a b``)."""
    parsed = urlparse(text)
    if parsed.scheme:
        return unquote(parsed.netloc + parsed.path)
    return str(Path(text).absolute())


def _polars_schema(schema: StructType) -> pl.Schema:
    """The polars schema of a Spark schema, as an executor sees its Arrow batches."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return pl.from_arrow(to_arrow_schema(schema).empty_table()).schema  # type: ignore[union-attr]


def _spark_schema(schema: Mapping[str, pl.DataType]) -> StructType:
    """The Spark schema of a polars schema; :class:`FormatError` for a type Spark cannot hold."""
    from pyspark.sql.pandas.types import from_arrow_schema

    table = pl.DataFrame(schema=dict(schema)).to_arrow()
    try:
        return from_arrow_schema(table.schema)
    except Exception as error:
        raise FormatError(f"a column type Spark cannot hold ({_first_line(error)})") from error


def _spark_dtype(dtype: pl.DataType) -> pl.DataType:
    """The polars type a kept column travels as: unsigned integers as Int64, categories as text."""
    if dtype.is_unsigned_integer():
        return pl.Int64()
    if isinstance(dtype, pl.Categorical | pl.Enum):
        return pl.String()
    return dtype


def _arrow_schema(schema: StructType, large: bool) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema, prefers_large_types=large)


def _batches(frame: pl.DataFrame, schema: pa.Schema) -> Batches:
    """``frame``'s columns of ``schema``, as Arrow record batches of exactly that schema."""
    if frame.height == 0:
        return
    table = frame.select(schema.names).to_arrow().cast(schema)
    yield from table.to_batches()


def _frames(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pl.DataFrame]:
    """Consecutive Arrow batches gathered into frames of at least ``rows`` rows (the last smaller)."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        if held >= rows:
            yield pl.from_arrow(pa.Table.from_batches(pending))  # type: ignore[misc]
            pending, held = [], 0
    if pending:
        yield pl.from_arrow(pa.Table.from_batches(pending))  # type: ignore[misc]


@dataclass(frozen=True)
class _Job:
    """Everything a partition function needs (sent to every task)."""

    source: str
    offsets: Mapping[str, int]
    columns: tuple[str, ...]
    dtypes: Mapping[str, pl.DataType]
    key: tuple[str, ...]
    with_time: bool
    large_types: bool
    chunk_rows: int
    bundle_name: str = ""
    threads: int = 1
    threshold: float | None = None
    top: int = 5
    alerts_only: bool = True
    kind: str = "parquet"
    counters_done: bool = False
    counter_pipeline: Mapping[str, Any] = field(default_factory=dict)


def _key_columns(key: Sequence[str]) -> list[str]:
    return [f"{_KEY}{i}" for i in range(len(key))]


def _read_flows(job: _Job, schema: StructType, batches: Batches) -> Batches:
    """Canonical, validated, numbered flows (and their partition key) from Spark's Parquet pieces."""
    target = _arrow_schema(schema, job.large_types)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        frame: pl.DataFrame = pl.from_arrow(batch)  # type: ignore[assignment]
        starts: dict[str, int] = {}
        for name in frame[_FILE].unique().to_list():
            where = job.offsets.get(_path_key(name))
            if where is None:
                raise FormatError(f"{name}: read by Spark but not one of the input's files")
            starts[name] = where
        rows = frame[_FILE].replace_strict(starts, return_dtype=pl.Int64) + frame[_INDEX].cast(pl.Int64)
        raw = frame.drop([_FILE, _INDEX, ROW, SOURCE_ROW], strict=False)
        flows = parquet_source.canonical(raw.lazy(), job.source).collect()
        flows = check_invalid(flows.with_columns(rows.alias(SOURCE_ROW)), job.source)
        try:
            validate(flows, path=job.source)
        except SchemaError as error:
            if error.row is None:
                raise
            raise SchemaError(
                error.message, path=job.source, column=error.column, row=int(rows[error.row - 1]) + 1
            ) from None
        kept = flows.select(
            rows.alias(ROW), *[pl.col(c).cast(job.dtypes[c]) for c in job.columns if c != ROW]
        )
        extra: list[pl.Series | pl.Expr] = []
        for name, column in zip(job.key, _key_columns(job.key), strict=True):
            if name in SUBNET_OF and name not in kept.columns:
                extra.append(subnet(kept[SUBNET_OF[name]]).alias(column))
            else:
                extra.append(kept[name].cast(pl.String).alias(column))
        if job.with_time:
            extra.append(pl.col("time").dt.epoch("us").fill_null(0).alias(_TIME))
        yield from _batches(kept.with_columns(extra), target)


def _expand_ranges(
    cuts: Sequence[int], lows: Sequence[int], schema: StructType, large: bool, batches: Batches
) -> Batches:
    """Each flow tagged with its time range, plus one context copy for every later range whose first
    flows look back on it (range ``j`` starts at ``cuts[j - 1]`` and looks back to ``lows[j - 1]``)."""
    target = _arrow_schema(schema, large)
    starts = np.asarray(cuts, dtype=np.int64)
    reach = np.asarray(lows, dtype=np.int64)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        frame: pl.DataFrame = pl.from_arrow(batch)  # type: ignore[assignment]
        times = frame[_TIME].to_numpy()
        own = np.searchsorted(starts, times, side="right")
        copies = np.maximum(np.searchsorted(reach, times, side="right") - own, 0)
        parts = [frame.with_columns(pl.Series(_PART, own, dtype=pl.Int64), pl.lit(False).alias(_CONTEXT))]
        if copies.any():
            index = np.repeat(np.arange(frame.height), copies)
            step = np.arange(len(index)) - np.repeat(np.cumsum(copies) - copies, copies)
            parts.append(
                frame[index].with_columns(
                    pl.Series(_PART, own[index] + 1 + step, dtype=pl.Int64), pl.lit(True).alias(_CONTEXT)
                )
            )
        yield from _batches(pl.concat(parts, how="vertical"), target)


def _runs(frame: pl.DataFrame, column: str) -> Iterator[tuple[int, pl.DataFrame]]:
    """Consecutive rows of equal ``column`` values (the frame is sorted by it)."""
    values = frame[column].to_numpy()
    bounds = [0, *(np.flatnonzero(values[1:] != values[:-1]) + 1).tolist(), len(values)]
    for start, stop in itertools.pairwise(bounds):
        yield int(values[start]), frame.slice(start, stop - start)


def _count_ranges(job: _Job, schema: StructType, batches: Batches) -> Batches:
    """The traffic counters of each time range's flows, computed over its context and flows in time
    order by the local incremental counters; context copies are dropped afterwards."""
    target = _arrow_schema(schema, job.large_types)
    pipeline = FeaturePipeline.from_dict(job.counter_pipeline)
    state: IncrementalFeatures | None = None
    current: int | None = None

    def own(frame: pl.DataFrame) -> Batches:
        if frame.height == 0:
            return
        kept = frame.filter(~pl.col(_CONTEXT)).with_columns(pl.col(list(COUNTER_COLUMNS)).cast(pl.Int64))
        yield from _batches(kept, target)

    for frame in _frames(batches, job.chunk_rows):
        for part, piece in _runs(frame, _PART):
            if part != current:
                if state is not None:
                    yield from own(state.flush())
                state, current = IncrementalFeatures(pipeline), part
            assert state is not None
            yield from own(state.push(piece))
    if state is not None:
        yield from own(state.flush())


_LOADED: dict[tuple[str, int, bool], ModelBundle] = {}


def _executor_bundle(job: _Job) -> ModelBundle:
    """The shipped bundle, loaded once per Python worker."""
    key = (job.bundle_name, job.threads, job.counters_done)
    if key not in _LOADED:
        import torch
        from pyspark import SparkFiles

        from nadkit.training.bundle import ModelBundle

        torch.set_num_threads(job.threads)
        bundle = ModelBundle.load(SparkFiles.get(job.bundle_name), threads=job.threads)
        if job.counters_done:
            bundle.pipeline = _pipeline_variant(bundle.pipeline, counters_computed=False)
        _LOADED[key] = bundle
    return _LOADED[key]


def _score_flows(job: _Job, schema: StructType, batches: Batches) -> Batches:
    """Score a partition's flows (in time order) with the local scorer; alerts or every record."""
    from nadkit.detection.detect import Scorer

    target = _arrow_schema(schema, job.large_types)
    scorer = Scorer(_executor_bundle(job), threshold=job.threshold, top=job.top)
    helpers = [*_key_columns(job.key), _TIME]

    def emit(frame: pl.DataFrame) -> Batches:
        if frame.height and job.alerts_only:
            frame = frame.filter(pl.col("alert"))
        if frame.height == 0:
            return
        if job.kind == "parquet":
            yield from _batches(frame, target)
        else:
            lines = record_lines(frame, job.kind)
            yield from _batches(pl.DataFrame({ROW: frame[ROW], _LINE: lines}), target)

    for frame in _frames(batches, job.chunk_rows):
        yield from emit(scorer.push(frame.drop(helpers, strict=False)).frame)
    yield from emit(scorer.flush().frame)


def record_lines(frame: pl.DataFrame, kind: str) -> list[str]:
    """Each scored record as the line (CSV: the row, without the header) local detection writes for
    it in a ``jsonl`` or ``csv`` file."""
    if kind == "jsonl":
        lines = times_as_text(frame).write_ndjson().split("\n")[:-1]
    else:
        flat = flat_top_features(frame)
        texts = [c for c, dtype in flat.schema.items() if dtype == pl.String]
        broken = bool(texts) and bool(
            flat.select(pl.any_horizontal([pl.col(c).str.contains("\n", literal=True) for c in texts]).any())
            .to_series()
            .fill_null(False)
            .item()
        )
        if broken:  # a quoted value holds a line break: cut record by record
            lines = [flat.slice(i, 1).write_csv(include_header=False)[:-1] for i in range(flat.height)]
        else:
            lines = flat.write_csv(include_header=False).split("\n")[:-1]
    if len(lines) != frame.height:  # pragma: no cover - guarded by construction
        raise NadkitError(f"{kind} records: {len(lines)} lines for {frame.height} flows")
    return lines


def _look_back(
    cuts: Sequence[int], reach: int, connections: int, schema: StructType, large: bool, batches: Batches
) -> Batches:
    """For each cut, this partition's flows within ``reach`` before it (a count) and, where those are
    fewer than ``connections``, the times of its last ``connections`` flows before the cut."""
    target = _arrow_schema(schema, large)
    bounds = np.asarray(cuts, dtype=np.int64)
    within = np.zeros(len(bounds), dtype=np.int64)
    latest = [np.zeros(0, dtype=np.int64) for _ in bounds]
    for batch in batches:
        times = np.sort(batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64))
        below = np.searchsorted(times, bounds, side="left")
        within += below - np.searchsorted(times, bounds - reach, side="left")
        for i, stop in enumerate(below):
            merged = np.concatenate([latest[i], times[max(0, stop - connections) : stop]])
            latest[i] = np.sort(merged)[-connections:]
    indices = list(range(len(bounds)))
    rows: dict[str, list[int | None]] = {"cut": list(indices), "count": within.tolist()}
    rows["time"] = [None] * len(indices)
    for i in indices:
        if within[i] < connections:
            rows["cut"].extend([i] * len(latest[i]))
            rows["count"].extend([0] * len(latest[i]))
            rows["time"].extend(latest[i].tolist())
    yield from _batches(pl.DataFrame(rows, schema=dict.fromkeys(rows, pl.Int64)), target)
