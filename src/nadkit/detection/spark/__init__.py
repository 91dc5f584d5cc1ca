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

Modules: :mod:`~nadkit.detection.spark.session` (requirements, the session, shipping the bundle, and
Spark failures as nadkit errors), :mod:`~nadkit.detection.spark.plan` (how flows are partitioned),
:mod:`~nadkit.detection.spark.job` (the partition functions the executors run),
:mod:`~nadkit.detection.spark.output` (writing beside the target and committing through Hadoop's file
system API) and :mod:`~nadkit.detection.spark.command` (:func:`detect_spark`, the job on the driver).
"""

from __future__ import annotations

from nadkit.detection.spark.command import ROWS_PER_PARTITION as ROWS_PER_PARTITION
from nadkit.detection.spark.command import SparkDetectResult, detect_spark, parquet_files
from nadkit.detection.spark.job import record_lines
from nadkit.detection.spark.plan import PartitionPlan, partition_plan
from nadkit.detection.spark.session import (
    DEFAULT_MASTER,
    MIN_JAVA,
    check_requirements,
    java_version,
    parse_conf,
    ship_bundle,
    spark_session,
)
from nadkit.detection.spark.session import (
    _java_binary as _java_binary,
)

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
