"""Running the simulation: one day (:func:`simulate_day`), every day in one table (:func:`simulate`),
or one file per day on disk (:func:`simulate_to_directory`), in the NAD 2021 CSV layout
(:func:`write_nad_csv`) or as parquet."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import polars as pl

from nadkit.errors import ConfigError, NadkitError, SchemaError
from nadkit.features.counters import COUNTER_COLUMNS, add_traffic_counters
from nadkit.fileio import atomic_directory, atomic_path
from nadkit.schema import NORMAL
from nadkit.simulate.attacks import ATTACK_GENERATORS, attack_budgets
from nadkit.simulate.config import LABEL_NORMAL, NAD_LABELS, OUTPUT_FORMATS, SimulationConfig
from nadkit.simulate.day import DayBuilder
from nadkit.simulate.load import day_volume
from nadkit.simulate.network import PROTO_NUMBERS, Site, build_site
from nadkit.simulate.normal import normal_traffic
from nadkit.sources.nad import COLUMNS as NAD_COLUMNS

log = logging.getLogger(__name__)

_DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.(csv|parquet)$")


def _build_day(config: SimulationConfig, day_index: int, site: Site) -> pl.DataFrame:
    """All of day ``day_index``'s flows as the canonical table, sorted by time, with counters: the
    day's volume and attack budgets first, then the normal traffic, then each attack class."""
    day = DayBuilder(config, day_index, site)
    n_total = day_volume(config, day.weekend, day.rng)
    budgets = attack_budgets(day)
    n_normal = max(50, n_total - sum(budgets.values()))
    normal_traffic(day, n_normal)
    for label, generate in ATTACK_GENERATORS.items():
        generate(day, budgets[label])
    return day.frame()


def simulate_day(config: SimulationConfig, day_index: int) -> pl.DataFrame:
    """Day ``day_index`` (0-based) of the simulation: the canonical table of that day, sorted by time.

    The result depends only on the configuration and the index, never on the other days, so one day
    can be regenerated on its own.
    """
    if isinstance(day_index, bool) or not isinstance(day_index, int | np.integer):
        raise ConfigError(f"day_index must be an integer, got {day_index!r}")
    if not 0 <= day_index < config.days:
        raise ConfigError(f"day_index must be between 0 and {config.days - 1}, got {day_index}")
    return _build_day(config, int(day_index), build_site(config))


def simulate(config: SimulationConfig | None = None) -> pl.DataFrame:
    """The whole simulation: every day's flows in one canonical table, sorted by time.

    Columns: see :data:`COLUMNS` (the canonical flow columns, packet counts, the twelve ``cnt_*``
    counters, ``label`` / ``label_original`` and the ``day`` date).
    """
    config = config or SimulationConfig()
    site = build_site(config)
    return pl.concat([_build_day(config, day, site) for day in range(config.days)], how="vertical")


def write_nad_csv(frame: pl.DataFrame, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a canonical flow table in the exact NAD 2021 CSV layout (22 columns, plus ``label``).

    ``time`` becomes ``%Y-%m-%d %H:%M:%S`` text, ``proto`` the IP protocol number, the byte columns
    ``out (bytes)`` / ``in (bytes)``. Counters missing from ``frame`` are computed; the ``label``
    column is written when ``frame`` has labels. The file appears only once complete.
    """
    path = Path(path)
    needed = ("time", "src", "dst", "spt", "dpt", "duration", "out_bytes", "in_bytes", "proto", "app")
    for column in needed:
        if column not in frame.columns:
            raise SchemaError("required column is missing for the NAD layout", path=path, column=column)
    if any(c not in frame.columns for c in COUNTER_COLUMNS):
        log.info("%s: computing the traffic counters the frame lacks", path)
        frame = add_traffic_counters(frame)
    numbers = (
        pl.col("proto").str.to_lowercase().replace_strict(PROTO_NUMBERS, default=None, return_dtype=pl.Int64)
    )
    unknown = frame.select((numbers.is_null() & pl.col("proto").is_not_null()).arg_true().first()).item()
    if unknown is not None:
        raise SchemaError(
            f"protocol {frame['proto'][unknown]!r} has no IP protocol number",
            path=path,
            column="proto",
            row=int(unknown) + 1,
        )
    time = pl.col("time")
    if isinstance(frame.schema["time"], pl.Datetime) and frame.schema["time"].time_zone is not None:
        time = time.dt.convert_time_zone("UTC")
    columns: list[pl.Expr] = [
        time.dt.strftime("%Y-%m-%d %H:%M:%S").alias("time"),
        pl.col("src"),
        pl.col("dst"),
        pl.col("spt"),
        pl.col("dpt"),
        pl.col("duration"),
        pl.col("out_bytes").alias("out (bytes)"),
        pl.col("in_bytes").alias("in (bytes)"),
        numbers.alias("proto"),
        pl.col("app"),
        *(pl.col(c) for c in COUNTER_COLUMNS),
    ]
    if "label_original" in frame.columns:
        columns.append(pl.col("label_original").alias("label"))
    elif "label" in frame.columns:
        columns.append(
            pl.when(pl.col("label") == NORMAL)
            .then(pl.lit(NAD_LABELS[LABEL_NORMAL]))
            .otherwise(pl.col("label"))
            .alias("label")
        )
    table = frame.select(columns)
    if tuple(table.columns[: len(NAD_COLUMNS)]) != NAD_COLUMNS:  # the reader's layout is the contract
        raise SchemaError(f"NAD layout mismatch: {table.columns[: len(NAD_COLUMNS)]}", path=path)
    with atomic_path(path, overwrite=overwrite) as temporary:
        table.write_csv(temporary)
    return path


def simulate_to_directory(
    config: SimulationConfig,
    out_dir: str | Path,
    *,
    output_format: str = "csv",
    overwrite: bool = False,
) -> list[Path]:
    """Simulate and write one file per day (``2020-12-03.csv`` ...) into ``out_dir``; returns the files.

    ``csv`` is the NAD 2021 layout, ``parquet`` the full canonical table (packet counts included).
    The directory appears complete or not at all. An existing non-empty ``out_dir`` is refused unless
    ``overwrite`` is set, and even then only when it holds nothing but day files like these, so that a
    mistyped path never wipes unrelated data.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"output format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise NadkitError(f"{out_dir}: exists and is not a directory")
        contents = sorted(out_dir.iterdir())
        if contents and not overwrite:
            raise NadkitError(f"{out_dir}: directory is not empty (use --force to replace its day files)")
        foreign = [p.name for p in contents if not (p.is_file() and _DAY_FILE.match(p.name))]
        if foreign:
            raise NadkitError(
                f"{out_dir}: refusing to replace a directory that holds other files "
                f"({', '.join(foreign[:3])})"
            )
    site = build_site(config)
    names = [f"{config.date_of(day).isoformat()}.{output_format}" for day in range(config.days)]
    with atomic_directory(out_dir, overwrite=True) as temporary:
        for day, name in enumerate(names):
            frame = _build_day(config, day, site)
            if output_format == "csv":
                write_nad_csv(frame, temporary / name)
            else:
                with atomic_path(temporary / name) as part:
                    frame.write_parquet(part)
    return [out_dir / name for name in names]
