"""A Spark detection on the driver (:func:`detect_spark`): the input files and their rows, the plan,
the time ranges of the traffic counters, the chain of partition functions, and the output written
and committed (see :mod:`nadkit.detection.spark` for how the work is cut)."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from nadkit.alerts.incidents import IncidentConfig, group_alerts
from nadkit.alerts.records import ID_COLUMNS, SCORE_SCHEMA, flat_top_features, output_kind
from nadkit.detection.spark.job import (
    _CONTEXT,
    _FILE,
    _INDEX,
    _LINE,
    _PART,
    _TIME,
    _count_ranges,
    _expand_ranges,
    _Job,
    _key_columns,
    _look_back,
    _path_key,
    _polars_schema,
    _read_flows,
    _score_flows,
    _spark_dtype,
    _spark_schema,
)
from nadkit.detection.spark.output import _Store, _summary
from nadkit.detection.spark.plan import _pipeline_variant, bucket_plan, partition_plan
from nadkit.detection.spark.session import (
    _first_line,
    _is_uri,
    _spark_errors,
    _task,
    ship_bundle,
    spark_session,
)
from nadkit.errors import ConfigError, FormatError, NadkitError, SchemaError
from nadkit.features.counters import COUNTER_COLUMNS, CounterConfig
from nadkit.schema import validate
from nadkit.sources import ROW, expand
from nadkit.sources import parquet as parquet_source
from nadkit.sources.base import SOURCE_ROW, check_invalid

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from nadkit.training.bundle import ModelBundle

log = logging.getLogger(__name__)

#: without --partitions: at least the cluster's default parallelism, and about this many flows each
ROWS_PER_PARTITION = 2_000_000


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


def _file_rows(files: Sequence[Path]) -> list[int]:
    import pyarrow.parquet as pq

    rows = []
    for file in files:
        try:
            rows.append(int(pq.ParquetFile(file).metadata.num_rows))
        except Exception as error:
            raise FormatError(f"{file}: cannot be read as Parquet ({_first_line(error)})") from error
    return rows


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
    #: the incidents the alerts form (see :mod:`nadkit.alerts.incidents`), when asked
    incidents: pl.DataFrame | None = None

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
    incidents: str | Path | None = None,
    incident_config: IncidentConfig | None = None,
) -> SparkDetectResult:
    """Score every flow of the Parquet dataset ``source`` (a file, directory or glob; or a URI Spark
    reads, e.g. ``hdfs://...``) on Spark and write alerts (or every record) to ``out``: a Parquet
    dataset directory for ``.parquet``, one file for ``.jsonl`` and ``.csv`` (see
    :mod:`nadkit.detection.spark`).

    The result equals :func:`nadkit.detection.detect.detect_file` on the same data. ``master`` / ``conf``: see
    :func:`spark_session` (ignored when ``spark``, a running session, is given; that session is left
    running). ``partitions``: how many partitions flows are scored in (default: the default
    parallelism, or more for about :data:`ROWS_PER_PARTITION` flows each). ``chunk_rows``: flows a
    task scores at once (default: as local detection). ``incidents``: also group the alerts written
    into incidents (read back from the output on the driver, where the alerts are few) and write them
    there (JSON lines, Parquet or CSV), as local detection does.
    """
    from nadkit.detection.detect import DEFAULT_CHUNK_ROWS, bundle_threshold, write_incidents
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
    if loaded.path is None:
        raise ConfigError("save the bundle before scoring on Spark (executors load it from its directory)")
    threshold = bundle_threshold(loaded, threshold)
    if incidents is not None:
        output_kind(incidents)
        if Path(incidents).exists() and not overwrite:
            raise NadkitError(f"{incidents}: already exists (use --force to replace it)")
    session = spark if spark is not None else spark_session(master, conf, app_name="nadkit detect")
    try:
        with _spark_errors():
            result = _run(
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
            if incidents is None:
                return result
            alerts = _written_alerts(session, out_text, kind)
        summary = group_alerts(alerts, incident_config).summary
        write_incidents(summary, incidents, overwrite=overwrite)
        return dataclasses.replace(result, incidents=summary)
    finally:
        if spark is None:
            session.stop()


def _written_alerts(session: SparkSession, out: str, kind: str) -> pl.DataFrame:
    """The alerts of a Spark detection's output, read back on the driver (identifying columns,
    scores and, where the format keeps them as a list, the explanations)."""
    reader = {"parquet": session.read.parquet, "jsonl": session.read.json}.get(kind)
    frame = reader(out) if reader is not None else session.read.option("header", True).csv(out)
    frame = frame.where("alert = true") if kind != "csv" else frame.where("alert = 'true'")
    alerts = pl.from_arrow(frame.toArrow())
    assert isinstance(alerts, pl.DataFrame)
    if kind == "csv":
        alerts = alerts.drop("top_features", strict=False)
    return alerts.with_columns(
        pl.col(c).cast(pl.Float64) for c in ("score", "threshold") if c in alerts.columns
    )


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
    if bundle.view is not None:
        inputs, plan = bundle.view.input_columns, bucket_plan(bundle.view)
    else:
        assert pipeline is not None
        inputs = tuple(pipeline.input_columns_)
        windowed = bundle.detector.input == "windows"
        plan = partition_plan(pipeline, windowed=windowed, columns=canonical.columns)
    missing = [c for c in inputs if c not in canonical.columns]
    if missing:
        needed = "column is missing; the model's features need it"
        raise SchemaError(needed, path=source, column=missing[0])
    wanted = [c for c in ID_COLUMNS if c in canonical.columns] + list(inputs)
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
        assert pipeline is not None  # only a flow pipeline computes counters
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
        counters_only = _pipeline_variant(pipeline, segments_computed=False, cadence_computed=False)
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
    if bundle.view is not None:
        scored_types["bucket"] = pl.Datetime("us", "UTC")  # the start of the flow's bucket
    # the scorer's columns, as every record has them
    for column, dtype in SCORE_SCHEMA.items():
        if column not in (ROW, "row"):
            scored_types[column] = dtype() if isinstance(dtype, type) else dtype
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
