"""`nadkit detect --engine spark`: a model bundle applied to a Parquet dataset on Apache Spark, with
the same result as local detection (the same rows, scores, alerts and explanations).

How the work is cut so that every feature stays exact:

1. **read**: Spark reads the Parquet files; each piece is brought to the canonical flow table by the
   conversion local reading uses (:func:`nadkit.sources.parquet.canonical`), validated, and numbered
   with the flow's row in the input (files in sorted order, as local reading concatenates them).
2. **traffic counters**, only when the bundle's pipeline computes them: a flow's counters look back
   over *all* traffic (the last ``slow_window_s`` seconds and the last ``connections`` flows), so the
   flows are cut into time ranges, and each range also receives, as context, the flows just before it
   that its first flows look back on. Each range runs the local incremental counters
   (:class:`~nadkit.features.incremental.IncrementalFeatures`) over context and flows in time order.
3. **partition**: flows are hash-partitioned by the segment key of the fitted pipeline (by default
   the source address and the destination subnet) so that every flow of a segment lands in one
   partition; for windowed detectors only the part of that key the window entity determines (the
   source address), so an entity's windows stay whole too. Each partition is sorted by time.
4. **score**: each partition runs the local :class:`~nadkit.detection.detect.Scorer` (incremental segment
   features, the model, the threshold and the explanations) over its flows in time order, on ONNX
   Runtime when the bundle has ``model.onnx``.
5. **write**: ``.parquet`` output is a Parquet dataset directory written by the executors in
   parallel (part files in input-row order); ``.jsonl`` and ``.csv`` output is one file with the
   records local detection writes, in input-row order. Output is written beside the target and
   renamed into place when complete, so nothing half-written is ever left behind.

The bundle directory is shipped to the executors with ``SparkContext.addFile``; the executors need
nadkit installed (the same version as the driver). pyspark is imported only when this engine is used,
and a missing pyspark or Java is a one-line :class:`~nadkit.errors.MissingDependencyError`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import itertools
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import numpy as np
import polars as pl

from nadkit.alerts.records import ID_COLUMNS, TOP_FEATURE, flat_top_features, output_kind, times_as_text
from nadkit.errors import (
    BundleError,
    ConfigError,
    FormatError,
    MissingDependencyError,
    NadkitError,
    SchemaError,
)
from nadkit.features.counters import COUNTER_COLUMNS, CounterConfig
from nadkit.features.incremental import IncrementalFeatures, OutOfOrderError
from nadkit.features.pipeline import FeaturePipeline
from nadkit.features.segments import SUBNET_OF, subnet
from nadkit.schema import validate
from nadkit.sources import ROW, expand
from nadkit.sources import parquet as parquet_source
from nadkit.sources.base import SOURCE_ROW, check_invalid

# Executors import this module to run its partition functions: only light modules at the top, the
# scorer (and torch with it) where a task scores.
if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from nadkit.training.bundle import ModelBundle

log = logging.getLogger(__name__)

#: a partition's Arrow record batches, as ``mapInArrow`` hands them over and takes them back
Batches = Iterator["pa.RecordBatch"]

#: the master used when none is given (and the process was not started by spark-submit)
DEFAULT_MASTER = "local[*]"
#: the oldest Java the pinned Spark runs on
MIN_JAVA = 17
#: without --partitions: at least the cluster's default parallelism, and about this many flows each
ROWS_PER_PARTITION = 2_000_000

# helper columns on the way through the job
_FILE = "__file"
_INDEX = "__index"
_TIME = "__t_us"
_PART = "__range"
_CONTEXT = "__context"
_KEY = "__key_"
_LINE = "line"

_ERROR_MARK = "nadkit-error::"
_ERRORS: dict[str, type[NadkitError]] = {
    cls.__name__: cls
    for cls in (NadkitError, SchemaError, FormatError, ConfigError, BundleError, OutOfOrderError)
}


# ---------------------------------------------------------------------------------------------------
# requirements and the session
# ---------------------------------------------------------------------------------------------------


def _java_binary() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("java")


def java_version(java: str) -> int | None:
    """The major version of the Java runtime ``java`` (8 for ``1.8.0_...``); None when unknown."""
    try:
        completed = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', completed.stderr + completed.stdout)
    if match is None:
        return None
    major = int(match[1])
    return int(match[2]) if major == 1 and match[2] else major


def check_requirements() -> None:
    """:class:`MissingDependencyError` unless pyspark imports and a Java runtime of at least
    :data:`MIN_JAVA` is found (``$JAVA_HOME/bin/java``, else ``java`` on the ``PATH``)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "the spark engine needs pyspark (pip install pyspark) and Java 17 or newer"
        ) from None
    java = _java_binary()
    if java is None:
        raise MissingDependencyError(
            "the spark engine needs Java 17 or newer, and none was found "
            "(install openjdk-17-jre-headless or set JAVA_HOME)"
        )
    version = java_version(java)
    if version is None:
        raise MissingDependencyError(f"{java}: cannot tell its Java version (the spark engine needs 17+)")
    if version < MIN_JAVA:
        raise MissingDependencyError(f"{java}: Java {version} found; the spark engine needs Java 17 or newer")


def _is_uri(text: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None


def _is_local(master: str) -> bool:
    return master == "local" or master.startswith("local[")


def parse_conf(items: Iterable[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` texts (``--conf``) as a mapping; :class:`ConfigError` on anything else."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--conf {item!r}: expected KEY=VALUE, e.g. spark.executor.memory=8g")
        out[key.strip()] = value.strip()
    return out


def spark_session(
    master: str | None = None, conf: Mapping[str, str] | None = None, *, app_name: str = "nadkit"
) -> SparkSession:
    """A Spark session for nadkit's jobs (an active one is reused, with its settings).

    ``master``: ``local[*]`` when None, unless the process was started by ``spark-submit``, whose
    master then applies. The web UI is off, logs are quiet and times are UTC; a local master binds
    to 127.0.0.1 and runs its Python workers on this interpreter. ``conf`` overrides any of that.
    """
    check_requirements()
    from pyspark.sql import SparkSession

    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    chosen = master or (None if submitted else DEFAULT_MASTER)
    settings: dict[str, str] = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "50000",
    }
    user = dict(conf or {})
    threads = user.get("spark.task.cpus", "1")
    for variable in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS"):
        settings[f"spark.executorEnv.{variable}"] = threads
    if chosen is not None and _is_local(chosen):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        settings["spark.driver.host"] = "127.0.0.1"
        settings["spark.driver.bindAddress"] = "127.0.0.1"
        # local Python workers run on this interpreter (where nadkit is installed)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # the driver's JVM logs errors only (Spark's default profile prints start-up notes and warnings)
    java_options = f"-Dlog4j2.configurationFile={_log_config().as_uri()}"
    settings["spark.driver.extraJavaOptions"] = " ".join(
        part for part in (java_options, user.pop("spark.driver.extraJavaOptions", "")) if part
    )
    settings.update(user)
    builder = SparkSession.builder.appName(app_name)
    if chosen is not None:
        builder = builder.master(chosen)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as error:
        raise NadkitError(f"Spark did not start: {_first_line(error)}") from error


_LOG_CONFIG = """\
rootLogger.level = error
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = error
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
logger.submit.name = org.apache.spark.deploy.SparkSubmit
logger.submit.level = error
"""


def _log_config() -> Path:
    """A log4j2 configuration for the driver: errors only, on standard error."""
    path = _staging() / "log4j2.properties"
    if not path.exists():
        path.write_text(_LOG_CONFIG)
    return path


def _first_line(error: BaseException) -> str:
    for line in str(error).splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ", "at ")):
            return line
    return type(error).__name__


@contextlib.contextmanager
def _spark_errors() -> Iterator[None]:
    """Spark failures as one-line nadkit errors; an error nadkit raised on an executor keeps its type
    and message."""
    try:
        yield
    except NadkitError:
        raise
    except Exception as error:
        found = re.search(_ERROR_MARK + r"(\w+)::([^\n]*)", str(error))
        if found is not None:
            raise _ERRORS.get(found[1], NadkitError)(found[2].strip()) from error
        module = type(error).__module__ or ""
        if module.startswith(("pyspark", "py4j")):
            raise NadkitError(f"Spark job failed: {_first_line(error)}") from error
        raise


def _guarded(function: Callable[..., Batches], args: tuple[Any, ...], batches: Batches) -> Batches:
    """Run a partition function on an executor; a nadkit error travels to the driver marked."""
    try:
        yield from function(*args, batches)
    except NadkitError as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(f"{_ERROR_MARK}{type(error).__name__}::{message}") from None


def _task(function: Callable[..., Batches], *args: Any) -> Callable[[Batches], Batches]:
    return functools.partial(_guarded, function, args)


# ---------------------------------------------------------------------------------------------------
# how flows are partitioned
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionPlan:
    """How flows must be partitioned so that features looking across flows stay exact.

    ``key``: flows equal in these columns share a partition (``dst_subnet`` / ``src_subnet`` are
    derived from the addresses as the segment features derive them); ``single``: all flows share
    one partition (state every flow shares); ``ordered``: a partition's flows are scored in time
    order; ``counters``: traffic counters are computed first, on time ranges with look-back context.
    """

    key: tuple[str, ...] = ()
    single: bool = False
    ordered: bool = False
    counters: bool = False

    def describe(self) -> str:
        parts = ["one partition" if self.single else f"by {', '.join(self.key)}" if self.key else "any"]
        if self.counters:
            parts.append("counters on time ranges")
        if self.ordered:
            parts.append("time order")
        return "; ".join(parts)


def partition_plan(
    pipeline: FeaturePipeline,
    *,
    windowed: bool,
    columns: Sequence[str],
    entity: Sequence[str] | None = None,
) -> PartitionPlan:
    """The :class:`PartitionPlan` of a fitted pipeline and detector input over a table with ``columns``.

    Segment features group flows by the segment key, a windowed detector by its entity: the partition
    key is the part of the segment key that both determine (the whole segment key for row
    detectors). Computed counters look at all traffic and get their own time-range stage.
    """
    if entity is None:
        from nadkit.features.data import DEFAULT_ENTITY

        entity = DEFAULT_ENTITY
    counters = bool(pipeline.counters_computed_)
    segments = bool(pipeline.segments_computed_)
    present = tuple(entity) if entity and all(c in columns for c in entity) else ()
    if segments:
        key = tuple(pipeline.config.segments.key)
        if windowed:
            key = tuple(c for c in key if c in present or SUBNET_OF.get(c) in present)
        return PartitionPlan(key=key, single=not key, ordered=True, counters=counters)
    if windowed:
        return PartitionPlan(key=present, single=not present, ordered=True, counters=counters)
    return PartitionPlan(ordered=counters, counters=counters)


def _pipeline_variant(pipeline: FeaturePipeline, **changes: bool) -> FeaturePipeline:
    """The fitted pipeline with some of its computed-column steps switched off (their columns are
    then read from the input, where an earlier stage of the job put them)."""
    return FeaturePipeline.from_dict({**pipeline.to_dict(), **changes})


# ---------------------------------------------------------------------------------------------------
# input
# ---------------------------------------------------------------------------------------------------


def parquet_files(source: str | Path) -> list[Path]:
    """The Parquet files of a local file, directory or glob, in the order local reading uses;
    :class:`FormatError` for a file that is not Parquet."""
    files = expand(source)
    for file in files:
        with file.open("rb") as handle:
            head = handle.read(len(parquet_source.PARQUET_MAGIC))
        if head != parquet_source.PARQUET_MAGIC:
            raise FormatError(
                f"{file}: not a Parquet file; the spark engine reads Parquet datasets only "
                "(a .parquet file, a directory or a glob of them)"
            )
    return files


def _path_key(text: str) -> str:
    """A file's identity across the ways it is written (``/a b``, ``file:/a%20b``, ``file:///a b``)."""
    parsed = urlparse(text)
    if parsed.scheme:
        return unquote(parsed.netloc + parsed.path)
    return str(Path(text).absolute())


def _file_rows(files: Sequence[Path]) -> list[int]:
    import pyarrow.parquet as pq

    rows = []
    for file in files:
        try:
            rows.append(int(pq.ParquetFile(file).metadata.num_rows))
        except Exception as error:
            raise FormatError(f"{file}: cannot be read as Parquet ({_first_line(error)})") from error
    return rows


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


# ---------------------------------------------------------------------------------------------------
# what the executors run
# ---------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------------


class _Store:
    """The output location through Hadoop's file system API (local paths, HDFS, S3, ...): written beside
    the target, renamed into place when complete."""

    def __init__(self, session: SparkSession, target: str) -> None:
        context = session.sparkContext
        self._jvm = context._jvm  # type: ignore[attr-defined]
        self._conf = context._jsc.hadoopConfiguration()  # type: ignore[union-attr]
        self.uri = target if _is_uri(target) else "file://" + str(Path(target).absolute())
        self.path = self._path(self.uri)
        fs = self.path.getFileSystem(self._conf)
        checksummed = self._jvm.java.lang.Class.forName("org.apache.hadoop.fs.ChecksumFileSystem")
        # the raw file system of a checksummed one (local files) also lists its .crc files
        self.fs = fs.getRawFileSystem() if checksummed.isInstance(fs) else fs

    def _path(self, text: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(text)

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def sibling(self, suffix: str) -> str:
        parent = self.path.getParent()
        return str(self._path_in(parent, f".{self.path.getName()}.{uuid.uuid4().hex[:12]}.{suffix}"))

    def _path_in(self, parent: Any, name: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(parent, name)

    def remove(self, location: str) -> None:
        path = self._path(location)
        if self.fs.exists(path):
            self.fs.delete(path, True)

    def tidy(self, folder: str) -> list[str]:
        """Drop the job's marker and checksum files from ``folder``; the data files' names."""
        names = []
        for status in self.fs.listStatus(self._path(folder)):
            path = status.getPath()
            name = str(path.getName())
            if name == "_SUCCESS" or (name.startswith(".") and name.endswith(".crc")):
                self.fs.delete(path, False)
            else:
                names.append(name)
        return sorted(names)

    def commit(self, written: str, *, overwrite: bool) -> None:
        """Rename ``written`` onto the target (replacing it only with ``overwrite``)."""
        source = self._path(written)
        backup = None
        if self.fs.exists(self.path):
            if not overwrite:
                raise NadkitError(f"{self.uri}: already exists (use --force to replace it)")
            backup = self._path(self.sibling("old"))
            if not self.fs.rename(self.path, backup):
                raise NadkitError(f"{self.uri}: could not be moved aside to be replaced")
        if not self.fs.rename(source, self.path):
            if backup is not None:
                self.fs.rename(backup, self.path)
            raise NadkitError(f"{self.uri}: could not be written (rename from {written} failed)")
        if backup is not None:
            self.fs.delete(backup, True)

    def commit_single(self, folder: str, *, overwrite: bool) -> None:
        """Move the one data file Spark wrote into ``folder`` onto the target; remove ``folder``."""
        names = self.tidy(folder)
        if len(names) > 1:
            raise NadkitError(f"{folder}: expected one data file, found {len(names)}")
        if names:
            written = str(self._path_in(self._path(folder), names[0]))
        else:  # an empty result: an empty file
            written = str(self._path_in(self._path(folder), "empty"))
            self.fs.create(self._path(written)).close()
        self.commit(written, overwrite=overwrite)
        self.remove(folder)


# ---------------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparkDetectResult:
    """What a Spark detection did: the fields of :class:`~nadkit.detection.detect.DetectResult` (so
    :func:`~nadkit.detection.detect.summary_line` prints it), ``location`` (the output, a path or a URI), the
    master, the number of scoring partitions and how flows were partitioned."""

    output: Path | None
    flows: int
    alerts: int
    written: int
    seconds: float
    threshold: float
    by_class: dict[str, int] = field(default_factory=dict)
    location: str = ""
    master: str = ""
    partitions: int = 0
    plan: str = ""
    max_held_rows: int = 0

    @property
    def alert_rate(self) -> float:
        return self.alerts / self.flows if self.flows else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.location,
            "flows": self.flows,
            "alerts": self.alerts,
            "alert_rate": self.alert_rate,
            "written": self.written,
            "seconds": self.seconds,
            "threshold": self.threshold,
            "alerts_by_class": self.by_class,
            "engine": "spark",
            "master": self.master,
            "partitions": self.partitions,
            "partitioning": self.plan,
        }


_STAGING: list[Path] = []
_SHIPPED: dict[tuple[str, str], str] = {}


def _staging() -> Path:
    if not _STAGING:
        folder = Path(tempfile.mkdtemp(prefix="nadkit-spark-"))
        atexit.register(shutil.rmtree, folder, True)
        _STAGING.append(folder)
    return _STAGING[0]


def ship_bundle(session: SparkSession, bundle: Path) -> str:
    """Send the bundle directory to every executor (``SparkContext.addFile``); the name executors
    find it under with ``SparkFiles.get``. A bundle is sent once per Spark application."""
    context = session.sparkContext
    digest = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()[:16]
    key = (str(context.applicationId), digest)
    if key not in _SHIPPED:
        name = f"nadkit-bundle-{digest}"
        copy = _staging() / name
        if not copy.exists():
            shutil.copytree(bundle, copy)
        context.addFile(str(copy), recursive=True)
        _SHIPPED[key] = name
    return _SHIPPED[key]


def _time_ranges(
    flows: DataFrame, ranges: int, config: CounterConfig, large: bool
) -> tuple[list[int], list[int]]:
    """Cut points splitting the flows' times into about ``ranges`` equal parts, and for each cut the
    earliest time its range's counters look back to: the longest window before the cut, and further
    where that window holds fewer than the last ``connections`` flows; the look-back times never
    decrease. Two passes over ``flows``: the quantiles, then :func:`_look_back`."""
    from pyspark.sql.types import LongType, StructField, StructType

    if ranges <= 1:
        return [], []
    quantiles = flows.approxQuantile(_TIME, [i / ranges for i in range(1, ranges)], 1e-3)
    cuts = sorted({int(q) for q in quantiles})
    if not cuts:
        return [], []
    reach = round(max(config.window_s, config.slow_window_s) * 1e6)
    schema = StructType([StructField(name, LongType()) for name in ("cut", "count", "time")])
    task = _task(_look_back, cuts, reach, config.connections, schema, large)
    found = flows.select(_TIME).mapInArrow(task, schema).collect()
    within = [0] * len(cuts)
    earlier: list[list[int]] = [[] for _ in cuts]
    for row in found:
        within[row["cut"]] += int(row["count"])
        if row["time"] is not None:
            earlier[row["cut"]].append(int(row["time"]))
    lows = []
    for i, cut in enumerate(cuts):
        low = cut - reach
        if within[i] < config.connections and earlier[i]:
            latest = sorted(earlier[i], reverse=True)[: config.connections]
            low = min(low, latest[-1])
        lows.append(low)
    for i in range(len(lows) - 2, -1, -1):
        lows[i] = min(lows[i], lows[i + 1])
    return cuts, lows


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


def _summary(session: SparkSession, store: _Store, folder: str, kind: str) -> tuple[int, int, dict[str, int]]:
    """Records written, alerts among them, and alerts by class, read back from the written output."""
    from pyspark.sql import functions as F

    if not [name for name in store.tidy(folder) if not name.startswith(("_", "."))]:
        return 0, 0, {}
    if kind == "parquet":
        written = session.read.parquet(folder)
        alert = F.col("alert")
    elif kind == "jsonl":
        written = session.read.schema("alert boolean, class string").json(folder)
        alert = F.col("alert")
    else:
        written = session.read.option("header", "true").csv(folder)
        alert = F.lower(F.col("alert")) == F.lit("true")
    rows = written.select(alert.alias("alert"), F.col("class")).groupBy("alert", "class").count().collect()
    total = sum(int(r["count"]) for r in rows)
    by_class: dict[str, int] = {}
    for r in rows:
        if r["alert"]:
            name = r["class"] if r["class"] is not None else "anomaly"
            by_class[name] = by_class.get(name, 0) + int(r["count"])
    return total, sum(by_class.values()), by_class


def detect_spark(
    bundle: ModelBundle | str | Path,
    source: str | Path,
    out: str | Path,
    *,
    master: str | None = None,
    partitions: int | None = None,
    alerts_only: bool = True,
    threshold: float | None = None,
    top: int = 5,
    overwrite: bool = False,
    conf: Mapping[str, str] | None = None,
    chunk_rows: int | None = None,
    spark: SparkSession | None = None,
) -> SparkDetectResult:
    """Score every flow of the Parquet dataset ``source`` (a file, directory or glob; or a URI Spark
    reads, e.g. ``hdfs://...``) on Spark and write alerts (or every record) to ``out``: a Parquet
    dataset directory for ``.parquet``, one file for ``.jsonl`` and ``.csv`` (module docstring).

    The result equals :func:`nadkit.detection.detect.detect_file` on the same data. ``master`` / ``conf``: see
    :func:`spark_session` (ignored when ``spark``, a running session, is given; that session is left
    running). ``partitions``: how many partitions flows are scored in (default: the default
    parallelism, or more for about :data:`ROWS_PER_PARTITION` flows each). ``chunk_rows``: flows a
    task scores at once (default: as local detection).
    """
    from nadkit.detection.detect import DEFAULT_CHUNK_ROWS, bundle_threshold
    from nadkit.training.bundle import ModelBundle

    started = time.perf_counter()
    source_text, out_text = str(source), str(out)
    kind = output_kind(out_text)
    if partitions is not None and partitions < 1:
        raise ConfigError("partitions must be at least 1")
    if not _is_uri(out_text) and Path(out_text).exists() and not overwrite:
        raise NadkitError(f"{out_text}: already exists (use --force to replace it)")
    files = None if _is_uri(source_text) else parquet_files(source_text)
    loaded = bundle if isinstance(bundle, ModelBundle) else ModelBundle.load(bundle)
    loaded.flow_pipeline("the Spark engine")
    if loaded.path is None:
        raise ConfigError("save the bundle before scoring on Spark (executors load it from its directory)")
    threshold = bundle_threshold(loaded, threshold)
    session = spark if spark is not None else spark_session(master, conf, app_name="nadkit detect")
    try:
        with _spark_errors():
            return _run(
                session,
                loaded,
                source_text,
                out_text,
                files,
                kind=kind,
                partitions=partitions,
                alerts_only=alerts_only,
                threshold=threshold,
                top=top,
                overwrite=overwrite,
                chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS,
                started=started,
            )
    finally:
        if spark is None:
            session.stop()


def _run(
    session: SparkSession,
    bundle: ModelBundle,
    source: str,
    out: str,
    files: list[Path] | None,
    *,
    kind: str,
    partitions: int | None,
    alerts_only: bool,
    threshold: float,
    top: int,
    overwrite: bool,
    chunk_rows: int,
    started: float,
) -> SparkDetectResult:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType, LongType, StringType, StructField, StructType

    store = _Store(session, out)
    if store.exists() and not overwrite:
        raise NadkitError(f"{out}: already exists (use --force to replace it)")
    context = session.sparkContext
    large = session.conf.get("spark.sql.execution.arrow.useLargeVarTypes", "false").lower() == "true"

    # the input, and each file's first row in the input
    paths = [f"file://{file.absolute()}" for file in files] if files is not None else [source]
    raw = session.read.option("mergeSchema", "true").parquet(*paths)
    metadata = [F.col("_metadata.file_path").alias(_FILE), F.col("_metadata.row_index").alias(_INDEX)]
    raw = raw.select("*", *metadata)
    if files is not None:
        names = [str(file.absolute()) for file in files]
        counts = _file_rows(files)
    else:
        found = sorted(
            ((_path_key(r[_FILE]), int(r["count"])) for r in raw.groupBy(_FILE).count().collect()),
        )
        names, counts = [name for name, _ in found], [count for _, count in found]
    offsets = dict(zip(names, np.cumsum([0, *counts[:-1]]).tolist(), strict=True))
    total = int(sum(counts))

    # what the canonical table holds, and the plan
    data_fields = StructType([f for f in raw.schema.fields if f.name not in (_FILE, _INDEX, ROW, SOURCE_ROW)])
    canonical = parquet_source.canonical(
        pl.DataFrame(schema=_polars_schema(data_fields)).lazy(), source
    ).collect()
    canonical = check_invalid(canonical, source)
    validate(canonical, path=source)
    pipeline = bundle.pipeline
    missing = [c for c in pipeline.input_columns_ if c not in canonical.columns]
    if missing:
        needed = "column is missing; the fitted feature pipeline needs it"
        raise SchemaError(needed, path=source, column=missing[0])
    plan = partition_plan(pipeline, windowed=bundle.detector.input == "windows", columns=canonical.columns)
    wanted = [c for c in ID_COLUMNS if c in canonical.columns] + list(pipeline.input_columns_)
    columns = tuple(dict.fromkeys(c for c in wanted if c != ROW))
    dtypes = {c: _spark_dtype(canonical.schema[c]) for c in columns}
    count = partitions or max(context.defaultParallelism, math.ceil(total / ROWS_PER_PARTITION))
    with_time = plan.ordered or plan.counters
    read_types: dict[str, pl.DataType] = {ROW: pl.Int64(), **dtypes}
    read_types.update({name: pl.String() for name in _key_columns(plan.key)})
    if with_time:
        read_types[_TIME] = pl.Int64()
    read_schema = _spark_schema(read_types)
    log.info("spark detection: %d flows in %d partition(s), partitioned %s", total, count, plan.describe())

    base = _Job(
        source=source,
        offsets=offsets,
        columns=columns,
        dtypes=dtypes,
        key=plan.key,
        with_time=with_time,
        large_types=large,
        chunk_rows=chunk_rows,
    )
    flows = raw.mapInArrow(_task(_read_flows, base, read_schema), read_schema)
    cached: DataFrame | None = None
    counters_done = False
    if plan.counters:
        cached = flows.persist(StorageLevel.MEMORY_AND_DISK)
        cuts, lows = _time_ranges(cached, count, pipeline.config.counters, large)
        log.debug(
            "%d time range(s) for the counters, after %.1f s", len(cuts) + 1, time.perf_counter() - started
        )
        ranged_schema = StructType(
            [*read_schema.fields, StructField(_PART, LongType()), StructField(_CONTEXT, BooleanType())]
        )
        ranged = cached.mapInArrow(_task(_expand_ranges, cuts, lows, ranged_schema, large), ranged_schema)
        ranged = ranged.repartition(len(cuts) + 1, _PART).sortWithinPartitions(_PART, _TIME, ROW)
        counter_fields = [StructField(c, LongType()) for c in COUNTER_COLUMNS]
        counted_schema = StructType([*read_schema.fields, *counter_fields])
        counters_only = _pipeline_variant(pipeline, segments_computed=False)
        counting = _replace(base, counter_pipeline=counters_only.to_dict())
        flows = ranged.mapInArrow(_task(_count_ranges, counting, counted_schema), counted_schema)
        counters_done = True
    if plan.single:
        flows = flows.repartition(1)
    elif plan.key:
        flows = flows.repartition(count, *_key_columns(plan.key))
    elif partitions is not None:
        flows = flows.repartition(count)
    if plan.ordered:
        flows = flows.sortWithinPartitions(_TIME, ROW)

    # scoring
    threads = int(session.conf.get("spark.task.cpus", "1") or 1)
    job = _replace(
        base,
        bundle_name=ship_bundle(session, bundle.path),  # type: ignore[arg-type]
        threads=threads,
        threshold=threshold,
        top=top,
        alerts_only=alerts_only,
        kind=kind,
        counters_done=counters_done,
    )
    scored_types: dict[str, pl.DataType] = {ROW: pl.Int64()}
    scored_types.update({c: dtypes[c] for c in ID_COLUMNS if c in dtypes})
    scored_types.update(
        {
            "score": pl.Float64(),
            "threshold": pl.Float64(),
            "alert": pl.Boolean(),
            "class": pl.String(),
            "top_features": pl.List(TOP_FEATURE),
        }
    )
    if kind == "parquet":
        out_schema = _spark_schema(scored_types)
    else:
        out_schema = StructType([StructField(ROW, LongType()), StructField(_LINE, StringType())])
    scored = flows.mapInArrow(_task(_score_flows, job, out_schema), out_schema)

    written = store.sibling("part")
    try:
        if kind == "parquet":
            # rebalanced to files of a sensible size (no global sort: that would score twice)
            scored.hint("rebalance").sortWithinPartitions(ROW).write.parquet(written)
        else:
            lines = scored
            if kind == "csv":
                header = flat_top_features(pl.DataFrame(schema=scored_types)).write_csv(include_header=True)
                lines = lines.unionByName(session.createDataFrame([(-1, header[:-1])], out_schema))
            lines.repartition(1).sortWithinPartitions(ROW).select(_LINE).write.text(written)
        log.debug("output written after %.1f s", time.perf_counter() - started)
        records, alerts, by_class = _summary(session, store, written, kind)
        if kind == "parquet":
            store.tidy(written)
            store.commit(written, overwrite=overwrite)
        else:
            store.commit_single(written, overwrite=overwrite)
    finally:
        store.remove(written)
        if cached is not None:
            cached.unpersist()
    seconds = time.perf_counter() - started
    log.info("%d flows scored on Spark, %d alerts, in %.1f s", total, alerts, seconds)
    return SparkDetectResult(
        output=None if _is_uri(out) else Path(out),
        flows=total,
        alerts=alerts,
        written=records,
        seconds=seconds,
        threshold=threshold,
        by_class=by_class,
        location=out,
        master=str(context.master),
        partitions=count,
        plan=plan.describe(),
    )


def _replace(job: _Job, **changes: Any) -> _Job:
    import dataclasses

    return dataclasses.replace(job, **changes)


__all__ = [
    "DEFAULT_MASTER",
    "MIN_JAVA",
    "PartitionPlan",
    "SparkDetectResult",
    "check_requirements",
    "detect_spark",
    "java_version",
    "parquet_files",
    "parse_conf",
    "partition_plan",
    "record_lines",
    "ship_bundle",
    "spark_session",
]
