"""Turning a flow file into a feature file: what `nadkit featurize` does."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from nadkit.errors import ConfigError
from nadkit.features.pipeline import FeatureConfig, FeaturePipeline
from nadkit.fileio import atomic_path
from nadkit.schema import RECORD_FLOW_COLUMNS
from nadkit.sources import load_flows

log = logging.getLogger(__name__)

#: input columns copied beside the features so that each row can be traced back to its flow
KEEP_DEFAULT: tuple[str, ...] = RECORD_FLOW_COLUMNS


@dataclass(frozen=True)
class FeaturizeResult:
    """What was written."""

    output: Path
    pipeline: Path | None
    rows: int
    features: int
    kept: tuple[str, ...]
    skipped_groups: dict[str, list[str]]


def featurize_frame(
    frame: pl.DataFrame, pipeline: FeaturePipeline, keep: Sequence[str] = KEEP_DEFAULT
) -> pl.DataFrame:
    """The kept identifying columns of ``frame`` followed by the pipeline's features, row for row."""
    return frame.select(_kept_columns(frame, pipeline, keep)).hstack(pipeline.transform(frame))


def _kept_columns(frame: pl.DataFrame, pipeline: FeaturePipeline, keep: Sequence[str]) -> list[str]:
    """The ``keep`` columns present in ``frame``; an error when one has a feature's name."""
    kept = [c for c in keep if c in frame.columns]
    clash = [c for c in kept if c in pipeline.feature_names_]
    if clash:
        raise ConfigError(f"kept column {clash[0]!r} has the name of a feature; drop it from --keep")
    return kept


def featurize_file(
    source: str | Path,
    output: str | Path,
    *,
    format: str | None = None,
    mapping: str | None = None,
    config: FeatureConfig | None = None,
    pipeline_path: str | Path | None = None,
    keep: Sequence[str] = KEEP_DEFAULT,
    overwrite: bool = False,
    batch_rows: int = 1_000_000,
) -> FeaturizeResult:
    """Read ``source``, compute features and write them as Parquet to ``output``.

    With ``pipeline_path`` pointing at a saved pipeline, that fitted state is applied (features of
    new traffic on a model's scale); otherwise a pipeline is fitted on ``source`` and saved beside the
    output as ``<output>.pipeline.json``. Both files are written atomically; existing files are kept
    unless ``overwrite``.
    """
    output = Path(output)
    if output.suffix.lower() != ".parquet":
        raise ConfigError(f"{output}: the feature file must end in .parquet")
    saved = None
    if pipeline_path is None:
        saved = output.with_name(output.name.removesuffix(".parquet") + ".pipeline.json")
    for target in (output, saved):
        if target is not None and target.exists() and not overwrite:
            raise ConfigError(f"{target}: already exists (use --force to replace it)")
    loaded = FeaturePipeline.load(pipeline_path) if pipeline_path is not None else None
    frame, source_format = load_flows(source, format=format, mapping=mapping)
    pipeline = loaded
    if pipeline is None:
        pipeline = FeaturePipeline(config).fit(frame)
        pipeline.read_from(source_format)
    kept = _kept_columns(frame, pipeline, keep)
    rows = 0
    with atomic_path(output, overwrite=overwrite) as temporary:
        writer: pq.ParquetWriter | None = None
        try:
            for features in pipeline.transform_batches(frame, batch_rows):
                table = frame.select(kept).slice(rows, features.height).hstack(features).to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(temporary, table.schema)
                writer.write_table(table)
                rows += features.height
        finally:
            if writer is not None:
                writer.close()
    if saved is not None:
        pipeline.save(saved, overwrite=overwrite)
    return FeaturizeResult(
        output=output,
        pipeline=saved,
        rows=rows,
        features=len(pipeline.feature_names_),
        kept=tuple(kept),
        skipped_groups=dict(pipeline.skipped_groups_),
    )
