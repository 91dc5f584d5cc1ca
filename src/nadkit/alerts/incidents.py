"""Incidents: alert records grouped by attack shape, the unit an analyst reads.

A spoofed SYN flood is tens of thousands of one-flow alerts from as many sources, and a brute force
thousands of alerts of one source-destination pair; an incident is one such attack. Only records with
``alert`` true are grouped, and every alert belongs to exactly one incident.

**Episodes.** Alerts of one key are cut into episodes by an idle gap (:attr:`IncidentConfig.gap_s`,
300 s by default): an alert more than the gap after every earlier alert of its key starts a new episode.
Alerts without a time form one episode per key of their own.

**Shapes**, assigned in this order, each taking its alerts out of what the next one sees:

1. *flood* (key: the destination): a destination's episode with at least ``min_flood_sources``
   distinct sources (DDoS, spoofed sources, reflection);
2. *scan* (key: the source): a source's episode with at least ``min_scan_targets`` distinct
   (destination, destination port) targets (port scans, host sweeps);
3. *pair* (key: ``src->dst``): a pair's episode with at least ``min_pair_alerts`` alerts (brute
   force, beaconing, exfiltration);
4. *host* (key: the source): what is left of a source's episode (one-off alerts).

Grouping is vectorised: one sort and a few group-bys per shape, whatever the number of alerts.

**Summary**, one row per incident: ``incident_id``, ``kind``, ``key``, ``severity`` (the highest
severity of its alerts where the scorer graded them, else from the peak multiple of the threshold,
:attr:`IncidentConfig.severity_cuts`), ``first_seen``, ``last_seen``,
``alerts``; ``sources``, ``destinations``, ``ports`` and ``protocols`` (distinct counts) each with
``top_...`` (the most frequent values with their counts); ``bytes`` (out and in bytes, where the
records have them), ``peak_score``, ``mean_score``, ``peak_ratio``, ``classes`` (the distinct non-null
classes), ``top_feature`` (the feature heading most of the alerts' explanations) with
``top_feature_count``, and ``refs`` (the alerts' ``alert_id``, else their ``row``).

**Identity.** An incident's id is a short hash of its kind, its key and the time its episode began
(:func:`incident_id`), so grouping the same alerts twice gives the same ids.

**Across batches**, :class:`IncidentTracker` keeps the open incidents: a batch's alerts first continue
the open incidents of their key (within the gap of what the incident already spans), so a flood's
sources in a later batch join the flood even when that batch alone has few of them. A flood is final
as soon as it is one and is kept as a summary. Incidents of the other shapes keep their alerts (up to
``max_live_alerts`` in all) and are grouped again with each batch, so that alerts which later turn
out to be part of a flood, a scan or a pair move there; the ids they leave are reported in
:attr:`Incidents.replaced`. An incident closes once the newest alert time seen is more than the gap
after its last alert; a closed incident is final. Batches cut anywhere in a time-ordered stream
therefore give the incidents and ids of one batch, as long as no incident has to reach back into a
closed one and the live alerts stay under their cap. The tracker's state is plain JSON
(:meth:`IncidentTracker.state`, :meth:`IncidentTracker.from_state`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import polars as pl

from nadkit.alerts.records import PARSE_FORMAT
from nadkit.errors import ConfigError, SchemaError
from nadkit.schema import TIME_DTYPE

log = logging.getLogger(__name__)

#: the incident shapes, in the order they take alerts
KINDS: Final = ("flood", "scan", "pair", "host")
#: severity names, from below the first cut point to above the last
SEVERITIES: Final = ("low", "medium", "high", "critical")
#: severity name -> rank, and back
RANKS: Final = {name: rank for rank, name in enumerate(SEVERITIES, start=1)}
NAMES: Final = {rank: name for name, rank in RANKS.items()}
#: the version of :meth:`IncidentTracker.state`
STATE_VERSION: Final = 1

#: the columns an alert is reduced to for grouping (``ref`` is Int64 or String, from the input)
FACTS_SCHEMA: Final = {
    "_t": pl.Int64,
    "src": pl.String,
    "dst": pl.String,
    "dpt": pl.Int64,
    "proto": pl.String,
    "score": pl.Float64,
    "ratio": pl.Float64,
    "class": pl.String,
    "feature": pl.String,
    "bytes": pl.Int64,
    "level": pl.Int64,
}
#: the counted dimensions of an incident: (name in the summary, fact column, value type)
COUNTED: Final = (
    ("sources", "src", pl.String),
    ("destinations", "dst", pl.String),
    ("ports", "dpt", pl.Int64),
    ("protocols", "proto", pl.String),
    ("features", "feature", pl.String),
)
_TIME_FORMATS: Final = (PARSE_FORMAT, "%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f")


@dataclass(frozen=True)
class IncidentConfig:
    """How alerts become incidents.

    ``gap_s``: idle seconds that end an episode. ``min_flood_sources``, ``min_scan_targets`` and
    ``min_pair_alerts``: what an episode needs to be a flood, a scan or a pair. ``severity_cuts``: the
    multiples of the threshold (peak score / threshold) where severity becomes medium, high and
    critical. ``top``: how many top values each summary lists. ``max_values``: distinct values a
    tracked incident counts exactly per dimension (beyond, the least frequent are dropped and the
    distinct count is an estimate). ``max_live_alerts``: alerts a tracker keeps for regrouping.

    The defaults count alerts, not flows: ten distinct sources of anomalous flows to one host within
    the gap is already more than chance (a spoofed or reflected flood has thousands), five distinct
    anomalous targets from one source is the smallest sweep worth naming (a port scan has hundreds),
    and three alerts of one pair is a repetition rather than a coincidence.
    """

    gap_s: float = 300.0
    min_flood_sources: int = 10
    min_scan_targets: int = 5
    min_pair_alerts: int = 3
    severity_cuts: tuple[float, float, float] = (1.5, 3.0, 10.0)
    top: int = 5
    max_values: int = 50_000
    max_live_alerts: int = 50_000

    def __post_init__(self) -> None:
        if isinstance(self.gap_s, bool) or not isinstance(self.gap_s, int | float):
            raise ConfigError(f"incidents: gap_s must be a number of seconds, not {self.gap_s!r}")
        if not math.isfinite(self.gap_s) or self.gap_s <= 0:
            raise ConfigError(f"incidents: gap_s must be positive and finite, not {self.gap_s!r}")
        for name, least in (
            ("min_flood_sources", 2),
            ("min_scan_targets", 2),
            ("min_pair_alerts", 2),
            ("top", 1),
            ("max_values", 1),
            ("max_live_alerts", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"incidents: {name} must be an integer of at least {least}, not {value!r}")
        cuts = tuple(self.severity_cuts)
        if len(cuts) != 3 or any(
            isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c) for c in cuts
        ):
            raise ConfigError(f"incidents: severity_cuts must be three numbers, not {self.severity_cuts!r}")
        if not 0 < cuts[0] < cuts[1] < cuts[2]:
            raise ConfigError(f"incidents: severity_cuts must be positive and rising, not {cuts!r}")
        object.__setattr__(self, "severity_cuts", tuple(float(c) for c in cuts))

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON values."""
        values = asdict(self)
        values["severity_cuts"] = list(self.severity_cuts)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IncidentConfig:
        """Settings from :meth:`as_dict` (or a settings file); unknown names are a ConfigError."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"incidents: unknown settings {', '.join(unknown)} (known: {', '.join(known)})")
        values = dict(values)
        if "severity_cuts" in values:
            cuts = values["severity_cuts"]
            if not isinstance(cuts, list | tuple):
                raise ConfigError(f"incidents: severity_cuts must be three numbers, not {cuts!r}")
            values["severity_cuts"] = tuple(cuts)
        return cls(**values)

    @property
    def gap_us(self) -> int:
        return round(self.gap_s * 1_000_000)


@dataclass(frozen=True)
class Incidents:
    """Grouped alerts: ``summary`` (one row per incident) and ``alerts`` (the grouped alert records,
    with ``incident_id`` and ``incident_kind``). From a tracker, ``summary`` holds the incidents this
    batch touched or closed (with ``status``: ``open`` or ``closed``), its ``refs`` only this batch's
    alerts, and ``replaced`` maps the ids of incidents whose alerts moved elsewhere to their new id."""

    summary: pl.DataFrame
    alerts: pl.DataFrame
    replaced: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.summary.height

    def alerts_of(self, incident: str) -> pl.DataFrame:
        """The alert records of one incident."""
        return self.alerts.filter(pl.col("incident_id") == incident)

    def kinds(self) -> dict[str, int]:
        """Incidents per kind."""
        counts = self.summary.group_by("kind").len()
        return {kind: n for kind, n in counts.iter_rows() if n}


def incident_id(kind: str, key: str, first_seen: datetime | int | None) -> str:
    """The id of the incident of ``kind`` and ``key`` whose episode began at ``first_seen`` (a time,
    microseconds since the epoch, or None for alerts without time): the kind, ``-`` and 16 hex digits."""
    if isinstance(first_seen, datetime):
        first_seen = _micros(first_seen)
    return _digest(f"{kind}|{key}|{'-' if first_seen is None else first_seen}")


def _digest(text: str) -> str:
    return _digests(text.partition("|")[0], [text])[0]


def _digests(kind: str, texts: list[str]) -> list[str]:
    """The ids of ``kind`` for the texts ``kind|key|start`` (one loop: a batch can open 100,000s)."""
    blake2b = hashlib.blake2b
    return [f"{kind}-{blake2b(text.encode(), digest_size=8).hexdigest()}" for text in texts]


# ---------------------------------------------------------------------------------------------------
# preparing alert records


def _time_us(records: pl.DataFrame) -> pl.Expr:
    """The records' time as microseconds since the epoch (null where absent or unreadable)."""
    if "time" not in records.columns:
        return pl.lit(None, dtype=pl.Int64)
    dtype = records.schema["time"]
    column = pl.col("time")
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            column = column.dt.replace_time_zone("UTC")
        return column.dt.convert_time_zone("UTC").dt.epoch("us")
    if dtype == pl.Date:
        return column.cast(pl.Datetime("us")).dt.epoch("us")
    if dtype == pl.String:
        parsed = [column.str.to_datetime(f, time_zone="UTC", strict=False) for f in _TIME_FORMATS]
        return pl.coalesce(parsed).dt.epoch("us")
    if dtype == pl.Null:
        return pl.lit(None, dtype=pl.Int64)
    raise SchemaError(f"time must be a datetime or ISO 8601 text, not {dtype}", column="time")


def _prepare(records: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The alert rows of ``records`` and their facts (:data:`FACTS_SCHEMA` plus ``ref``), row for row."""
    missing = [c for c in ("src", "dst", "score") if c not in records.columns]
    if missing:
        raise SchemaError(f"alert records need the columns {', '.join(missing)}", column=missing[0])
    alerts = records.filter(pl.col("alert").fill_null(False)) if "alert" in records.columns else records
    columns = records.columns

    def present(name: str, dtype: pl.DataType) -> pl.Expr:
        return pl.col(name).cast(dtype, strict=False) if name in columns else pl.lit(None, dtype=dtype)

    ratio = (
        pl.when(pl.col("threshold") > 0).then(pl.col("score") / pl.col("threshold"))
        if "threshold" in columns
        else pl.lit(None, dtype=pl.Float64)
    )
    feature = pl.lit(None, dtype=pl.String)
    if "top_features" in columns and isinstance(records.schema["top_features"], pl.List):
        inner = records.schema["top_features"].inner
        if isinstance(inner, pl.Struct) and "feature" in {f.name for f in inner.fields}:
            feature = pl.col("top_features").list.first().struct.field("feature")
    # the alert's own severity (from its score percentile and threshold multiple), where the scorer set it
    level = (
        pl.col("severity").cast(pl.String).replace_strict(RANKS, default=None, return_dtype=pl.Int64)
        if "severity" in columns
        else pl.lit(None, dtype=pl.Int64)
    )
    sizes = [pl.col(c).cast(pl.Int64, strict=False) for c in ("out_bytes", "in_bytes") if c in columns]
    size = pl.sum_horizontal(sizes) if sizes else pl.lit(None, dtype=pl.Int64)
    if "alert_id" in columns:
        ref = pl.col("alert_id")
        if not records.schema["alert_id"].is_integer():
            ref = ref.cast(pl.String)
    else:
        ref = present("row", pl.Int64)
    facts = alerts.select(
        _time_us(records).alias("_t"),
        pl.col("src").cast(pl.String).fill_null("-"),
        pl.col("dst").cast(pl.String).fill_null("-"),
        present("dpt", pl.Int64).alias("dpt"),
        present("proto", pl.String).alias("proto"),
        pl.col("score").cast(pl.Float64),
        ratio.cast(pl.Float64).alias("ratio"),
        present("class", pl.String).alias("class"),
        feature.cast(pl.String).alias("feature"),
        size.cast(pl.Int64).alias("bytes"),
        level.alias("level"),
        ref.alias("ref"),
    )
    return alerts, facts


# ---------------------------------------------------------------------------------------------------
# grouping


@dataclass(frozen=True)
class _View:
    kind: str
    key: pl.Expr
    count: pl.Expr  # what an episode must have at least ``least`` of
    least: str | None  # the config field, None: every episode


_VIEWS: Final = (
    _View("flood", pl.col("dst"), pl.col("src").n_unique(), "min_flood_sources"),
    _View("scan", pl.col("src"), pl.struct("dst", "dpt").n_unique(), "min_scan_targets"),
    _View("pair", pl.format("{}->{}", "src", "dst"), pl.len(), "min_pair_alerts"),
    _View("host", pl.col("src"), pl.len(), None),
)
_ASSIGNED: Final = {"incident_id": pl.String, "kind": pl.String, "key": pl.String}
_ANCHOR_SCHEMA: Final = {"_k": pl.String, "_start": pl.Int64, "_end": pl.Int64, "_aid": pl.String}


def _episodes(rows: pl.DataFrame, anchors: pl.DataFrame, gap_us: int) -> pl.DataFrame:
    """Episodes of alert rows (``_i``, ``_k``, ``_t``) and open incidents (``_k``, ``_start``, ``_end``,
    ``_aid``): ``_ep`` per item. An item starts an episode when it begins more than the gap after the
    end of every earlier item of its key; items without time form one episode per key."""
    items = pl.concat(
        [
            rows.select("_i", "_k", pl.col("_t").alias("_start"), pl.col("_t").alias("_end"))
            .with_columns(pl.lit(None, dtype=pl.String).alias("_aid"))
            .cast({"_i": pl.Int64}),
            anchors.select(pl.lit(None, dtype=pl.Int64).alias("_i"), "_k", "_start", "_end", "_aid"),
        ]
    )
    timed = items.filter(pl.col("_start").is_not_null()).sort("_k", "_start")
    # the latest end among the earlier items of the same key (sorted: a key's items are contiguous)
    timed = timed.with_columns(pl.col("_k").rle_id().alias("_g"), _key_cum_max(timed).alias("_reach"))
    reach = pl.when(pl.col("_g") == pl.col("_g").shift(1)).then(pl.col("_reach").shift(1))
    timed = timed.select(
        pl.exclude("_g", "_reach"),
        (reach.is_null() | ((pl.col("_start") - reach) > gap_us)).cum_sum().cast(pl.Int64).alias("_ep"),
    )
    untimed = items.filter(pl.col("_start").is_null())
    untimed = untimed.with_columns((-pl.col("_k").rank("dense").cast(pl.Int64)).alias("_ep"))
    return pl.concat([timed, untimed])


def _key_cum_max(timed: pl.DataFrame) -> pl.Series:
    """The running maximum of ``_end`` within each key of ``timed`` (sorted by ``_k``; ends not null).

    One running maximum over the whole column instead of one per key (``over``, several times
    slower): each end is replaced by its dense rank among all ends and offset by its key's number
    times one more than the number of rows, so a later key's values are above every earlier key's;
    the maximum's rank is then read back as the end it stands for."""
    ends = timed["_end"]
    span = timed.height + 1
    ranked = timed.select(
        (pl.col("_k").rle_id().cast(pl.Int64) * span + pl.col("_end").rank("dense").cast(pl.Int64))
        .cum_max()
        .alias("_m")
    ).to_series()
    return ends.drop_nulls().unique().sort().gather(ranked % span - 1)


def _assign(facts: pl.DataFrame, anchors: dict[str, pl.DataFrame], config: IncidentConfig) -> pl.DataFrame:
    """``facts`` (with a unique ``_i``) with ``incident_id``, ``kind`` and ``key``; ``anchors`` holds
    the open incidents kept as summaries, by kind (:data:`_ANCHOR_SCHEMA`)."""
    gap_us = config.gap_us
    remaining = facts.select("_i", "_t", "src", "dst", "dpt")
    taken: list[pl.DataFrame] = []
    for view in _VIEWS:
        held = anchors.get(view.kind, pl.DataFrame(schema=_ANCHOR_SCHEMA))
        if remaining.height == 0:
            break
        keyed = remaining.with_columns(view.key.alias("_k"))
        items = _episodes(keyed.select("_i", "_k", "_t"), held, gap_us)
        episodes = items.group_by("_ep").agg(
            pl.col("_k").first(),
            pl.col("_start").min().alias("_first"),
            pl.col("_aid").drop_nulls().first(),
        )
        members = items.filter(pl.col("_i").is_not_null()).select("_i", "_ep")
        if view.least is not None:
            counts = members.join(keyed, on="_i").group_by("_ep").agg(view.count.alias("_n"))
            episodes = episodes.join(counts, on="_ep", how="inner").filter(
                pl.col("_aid").is_not_null() | (pl.col("_n") >= getattr(config, view.least))
            )
        else:
            episodes = episodes.join(members.select("_ep").unique(), on="_ep", how="semi")
        fresh = episodes.filter(pl.col("_aid").is_null())
        texts = fresh.select(
            pl.format("{}|{}|{}", pl.lit(view.kind), "_k", pl.col("_first").cast(pl.String).fill_null("-"))
        ).to_series()
        ids = pl.Series("_new_id", _digests(view.kind, texts.to_list()), dtype=pl.String)
        episodes = pl.concat(
            [
                fresh.select("_ep", "_k").with_columns(ids.alias("_aid")),
                episodes.filter(pl.col("_aid").is_not_null()).select("_ep", "_k", "_aid"),
            ]
        )
        chosen = members.join(episodes, on="_ep", how="inner").select(
            "_i",
            pl.col("_aid").alias("incident_id"),
            pl.lit(view.kind).alias("kind"),
            pl.col("_k").alias("key"),
        )
        taken.append(chosen)
        remaining = remaining.join(chosen.select("_i"), on="_i", how="anti")
        log.debug("incidents: %s took %d alerts in %d incidents", view.kind, chosen.height, episodes.height)
    if not taken:
        taken.append(pl.DataFrame(schema={"_i": facts.schema["_i"], **_ASSIGNED}))
    assignment = pl.concat(taken).cast({"_i": facts.schema["_i"]})
    return facts.join(assignment, on="_i", how="left", maintain_order="left")


# ---------------------------------------------------------------------------------------------------
# summaries: partial (mergeable: full value counts, score sum) and rendered (what an analyst reads)


def _counter_dtype(value: pl.DataType) -> pl.List:
    return pl.List(pl.Struct({"value": value, "count": pl.Int64}))


def _partial_schema(ref: pl.DataType) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {
        "incident_id": pl.String,
        "kind": pl.String,
        "key": pl.String,
        "first_seen": pl.Int64,
        "last_seen": pl.Int64,
        "alerts": pl.Int64,
        "bytes": pl.Int64,
        "score_sum": pl.Float64,
        "peak_score": pl.Float64,
        "peak_ratio": pl.Float64,
        "peak_level": pl.Int64,
        "classes": pl.List(pl.String),
        "refs": pl.List(ref),
    }
    for name, _, value in COUNTED:
        schema[f"{name}_counts"] = _counter_dtype(value)
        schema[f"{name}_distinct"] = pl.Int64
    return schema


def _partials(assigned: pl.DataFrame) -> pl.DataFrame:
    """One mergeable summary per incident of ``assigned`` (facts with ``incident_id``, ``kind``, ``key``
    and ``_new``: ``refs`` lists the new alerts' references only)."""
    base = assigned.group_by("incident_id").agg(
        pl.col("kind").first(),
        pl.col("key").first(),
        pl.col("_t").min().alias("first_seen"),
        pl.col("_t").max().alias("last_seen"),
        pl.len().cast(pl.Int64).alias("alerts"),
        pl.when(pl.col("bytes").count() > 0).then(pl.col("bytes").sum()).alias("bytes"),
        pl.col("score").sum().alias("score_sum"),
        pl.col("score").max().alias("peak_score"),
        pl.col("ratio").max().alias("peak_ratio"),
        pl.col("level").max().alias("peak_level"),
        pl.col("class").drop_nulls().unique().sort().alias("classes"),
        pl.col("ref").filter(pl.col("_new")).alias("refs"),
    )
    for name, column, value in COUNTED:
        counts = (
            assigned.filter(pl.col(column).is_not_null())
            .group_by("incident_id", column)
            .agg(pl.len().cast(pl.Int64).alias("count"))
            .group_by("incident_id")
            .agg(
                pl.struct(pl.col(column).alias("value"), "count").alias(f"{name}_counts"),
                pl.len().cast(pl.Int64).alias(f"{name}_distinct"),
            )
        )
        base = base.join(counts, on="incident_id", how="left").with_columns(
            pl.col(f"{name}_counts").fill_null(pl.lit([], dtype=_counter_dtype(value))),
            pl.col(f"{name}_distinct").fill_null(0),
        )
    return base.select(list(_partial_schema(assigned.schema["ref"])))


def _ranked(counts: pl.Series, top: int) -> pl.Series:
    """Each list of value counts, most frequent first (ties: the smaller value first), cut to ``top``.

    Most incidents count one value per dimension, and sorting a list costs the same whatever its
    length, so only the lists of two or more values are sorted."""
    several = counts.list.len() > 1
    head = counts.list.head(top)
    if not several.any():
        return head
    element = pl.element()
    order = [element.struct.field("count"), element.struct.field("value")]
    ranked = counts.filter(several).list.eval(element.sort_by(order, descending=[True, False]).head(top))
    table = pl.DataFrame({"head": head}).with_row_index("_r")
    sorted_rows = pl.DataFrame({"_r": several.arg_true(), "ranked": ranked})
    joined = table.join(sorted_rows, on="_r", how="left", maintain_order="left")
    return joined.select(pl.coalesce("ranked", "head")).to_series().alias(counts.name)


def _render(partials: pl.DataFrame, config: IncidentConfig) -> pl.DataFrame:
    """What an analyst reads, one row per incident, earliest first."""
    low, high, critical = config.severity_cuts
    partials = partials.with_columns(
        _ranked(partials[f"{name}_counts"], config.top).alias(f"_top_{name}") for name, _, _ in COUNTED
    )

    def top(name: str) -> pl.Expr:
        return pl.col(f"_top_{name}")

    ratio = pl.col("peak_ratio")
    heading = top("features").list.first()
    columns: list[pl.Expr] = [
        pl.col("incident_id"),
        pl.col("kind"),
        pl.col("key"),
        pl.when(pl.col("peak_level").is_not_null())
        .then(pl.col("peak_level").replace_strict(NAMES, default=SEVERITIES[0], return_dtype=pl.String))
        .when(ratio >= critical)
        .then(pl.lit(SEVERITIES[3]))
        .when(ratio >= high)
        .then(pl.lit(SEVERITIES[2]))
        .when(ratio >= low)
        .then(pl.lit(SEVERITIES[1]))
        .otherwise(pl.lit(SEVERITIES[0]))
        .alias("severity"),
        pl.from_epoch("first_seen", time_unit="us").dt.replace_time_zone("UTC").alias("first_seen"),
        pl.from_epoch("last_seen", time_unit="us").dt.replace_time_zone("UTC").alias("last_seen"),
        pl.col("alerts"),
    ]
    for name, _, _ in COUNTED[:4]:
        columns += [pl.col(f"{name}_distinct").alias(name), top(name).alias(f"top_{name}")]
    columns += [
        pl.col("bytes"),
        pl.col("peak_score"),
        (pl.col("score_sum") / pl.col("alerts")).alias("mean_score"),
        ratio,
        pl.col("classes"),
        heading.struct.field("value").alias("top_feature"),
        heading.struct.field("count").alias("top_feature_count"),
        pl.col("refs"),
    ]
    return (
        partials.select(columns)
        .sort(["first_seen", "incident_id"], nulls_last=True, maintain_order=True)
        .cast({"first_seen": TIME_DTYPE, "last_seen": TIME_DTYPE})
    )


def _labelled(alerts: pl.DataFrame, assigned: pl.DataFrame) -> pl.DataFrame:
    """The alert records with their incident, row for row with the new facts of ``assigned``."""
    new = assigned.filter(pl.col("_new")).sort("_i")
    return alerts.with_columns(new["incident_id"], new["kind"].alias("incident_kind"))


def _groupless(records: pl.DataFrame) -> pl.DataFrame | None:
    """For records that form no incident (no alerts, or alerts of flows without addresses: UNSW-NB15,
    NSL-KDD), an empty table of the columns grouping needs; else None (src or dst alone: malformed)."""
    columns, rows = set(records.columns), records.height
    pair = {"src", "dst"} <= columns
    blank = bool(rows) and pair and records["src"].null_count() == records["dst"].null_count() == rows
    if records.width and ("score" not in columns or ({"src", "dst"} & columns and not blank)):
        return None
    if rows:
        log.info("incidents: the alerts carry no addresses (src, dst), so they form no incidents")
    needed = {"src": pl.String, "dst": pl.String, "score": pl.Float64}
    return records.head(0).with_columns(
        pl.lit(None, dtype=t).alias(c) for c, t in needed.items() if c not in records
    )


def _unassigned(records: pl.DataFrame) -> pl.DataFrame:
    """The alert rows of ``records``, in no incident."""
    alerts = records.filter(pl.col("alert").fill_null(False)) if "alert" in records.columns else records
    return alerts.with_columns(
        pl.lit(None, dtype=pl.String).alias(c) for c in ("incident_id", "incident_kind")
    )


def group_alerts(records: pl.DataFrame, config: IncidentConfig | None = None) -> Incidents:
    """The incidents of one table of alert records (see the module's rules). No alerts, or alerts of
    flows without addresses (UNSW-NB15, NSL-KDD, the CIC-IDS2017 sample), form no incidents."""
    config = config or IncidentConfig()
    empty = _groupless(records)
    if empty is not None:
        return Incidents(group_alerts(empty, config).summary, _unassigned(records))
    alerts, facts = _prepare(records)
    facts = facts.with_row_index("_i").with_columns(pl.lit(True).alias("_new"))
    assigned = _assign(facts, {}, config)
    summary = _render(_partials(assigned), config)
    log.info("incidents: %d alerts in %d incidents", alerts.height, summary.height)
    return Incidents(summary, _labelled(alerts, assigned))


# ---------------------------------------------------------------------------------------------------
# the tracker


def _merge(old: pl.DataFrame, new: pl.DataFrame, max_values: int) -> pl.DataFrame:
    """Partial summaries of the same incidents (one row each in ``old`` and in ``new``) as one; refs:
    the new ones. Each counter keeps its ``max_values`` most frequent values; a distinct count grows by
    the values ``old`` did not list (exact while no counter of ``old`` was cut)."""
    both = pl.concat(
        [old.with_columns(pl.lit(True).alias("_old")), new.with_columns(pl.lit(False).alias("_old"))]
    )
    merged = both.group_by("incident_id").agg(
        pl.col("kind").first(),
        pl.col("key").first(),
        pl.col("first_seen").min(),
        pl.col("last_seen").max(),
        pl.col("alerts").sum(),
        pl.when(pl.col("bytes").count() > 0).then(pl.col("bytes").sum()).alias("bytes"),
        pl.col("score_sum").sum(),
        pl.col("peak_score").max(),
        pl.col("peak_ratio").max(),
        pl.col("peak_level").max(),
        pl.col("classes").list.explode(keep_nulls=False, empty_as_null=False).unique().sort(),
        pl.col("refs").filter(~pl.col("_old")).first(),
    )
    for name, _, value in COUNTED:
        column = f"{name}_counts"
        entries = (
            both.select("incident_id", "_old", column)
            .explode(column)
            .drop_nulls(column)
            .unnest(column)
            .group_by("incident_id", "value")
            .agg(pl.col("count").sum(), pl.col("_old").any())
        )
        kept = (
            entries.sort(["incident_id", "count", "value"], descending=[False, True, False])
            .group_by("incident_id", maintain_order=True)
            .agg(
                pl.struct("value", "count").head(max_values).alias(column),
                (~pl.col("_old")).sum().alias("_unseen"),
            )
        )
        distinct = old.select("incident_id", f"{name}_distinct").join(kept, on="incident_id", how="left")
        merged = merged.join(
            distinct.select(
                "incident_id",
                pl.col(column).fill_null(pl.lit([], dtype=_counter_dtype(value))),
                (pl.col(f"{name}_distinct") + pl.col("_unseen").fill_null(0)).cast(pl.Int64),
            ),
            on="incident_id",
            how="left",
        )
    return merged.select(new.columns).cast(dict(new.schema))


class IncidentTracker:
    """Open incidents across batches of alert records (see the module's rules).

    :meth:`update` groups a batch with the open incidents and returns what it touched or closed;
    :meth:`incidents` lists the open ones; :meth:`close` ends them; :meth:`state` and
    :meth:`from_state` carry them over a restart as JSON.
    """

    def __init__(self, config: IncidentConfig | None = None) -> None:
        self.config = config or IncidentConfig()
        self.watermark: int | None = None  # the newest alert time seen, microseconds since the epoch
        self._ref: pl.DataType = pl.Int64
        #: open incidents kept as summaries (floods, and others once the live alerts pass their cap)
        self._settled = pl.DataFrame(schema=_partial_schema(self._ref))
        #: the alerts of the other open incidents, with their current ``incident_id``
        self._live = pl.DataFrame(schema={**FACTS_SCHEMA, "ref": self._ref, **_ASSIGNED})

    # -- batches --------------------------------------------------------------------------------------

    def update(self, records: pl.DataFrame) -> Incidents:
        """Group a batch; the incidents it touched (``status`` open) or closed (``closed``)."""
        config = self.config
        empty = _groupless(records)
        if empty is not None:
            return Incidents(self.update(empty).summary, _unassigned(records))
        alerts, facts = _prepare(records)
        if facts.schema["ref"] != self._ref:
            self._set_ref(pl.String)
            facts = facts.cast({"ref": pl.String})
        live = self._live.drop("kind", "key").rename({"incident_id": "_old"})
        fresh = facts.with_columns(pl.lit(None, dtype=pl.String).alias("_old"))
        combined = pl.concat(
            [fresh.with_columns(pl.lit(True).alias("_new")), live.with_columns(pl.lit(False).alias("_new"))]
        ).with_row_index("_i")
        assigned = _assign(combined, self._anchors(), config)
        partials = _partials(assigned)

        # incidents kept as summaries take what this batch adds to them
        settled_ids = self._settled["incident_id"]
        touched = partials.filter(pl.col("incident_id").is_in(settled_ids.implode()))
        if touched.height:
            before = self._settled.filter(pl.col("incident_id").is_in(touched["incident_id"].implode()))
            touched = _merge(before, touched, config.max_values)
        others = partials.filter(~pl.col("incident_id").is_in(settled_ids.implode()))
        settled = pl.concat(
            [
                self._settled.filter(~pl.col("incident_id").is_in(touched["incident_id"].implode())),
                touched,
                others.filter(pl.col("kind") == "flood"),  # a flood is final: kept as a summary
            ]
        )
        live_parts = others.filter(pl.col("kind") != "flood")
        live_rows = assigned.filter(pl.col("incident_id").is_in(live_parts["incident_id"].implode()))
        if live_rows.height > config.max_live_alerts:
            settled, live_parts, live_rows = self._settle(settled, live_parts, live_rows)
        replaced = self._replaced(assigned, partials["incident_id"])

        batch_max = facts["_t"].max()
        if isinstance(batch_max, int):
            self.watermark = batch_max if self.watermark is None else max(self.watermark, batch_max)
        self._settled = settled.with_columns(pl.lit([], dtype=pl.List(self._ref)).alias("refs"))
        self._live = live_rows.select(*self._live.columns)

        new_ids = assigned.filter(pl.col("_new"))["incident_id"].unique()
        open_parts = pl.concat([settled, live_parts])
        limit = None if self.watermark is None else self.watermark - config.gap_us
        ending = open_parts.filter(pl.col("last_seen") < limit) if limit is not None else open_parts.clear()
        self._forget(ending["incident_id"])
        reported = open_parts.filter(
            pl.col("incident_id").is_in(new_ids.implode())
            | pl.col("incident_id").is_in(ending["incident_id"].implode())
        )
        status = pl.when(pl.col("incident_id").is_in(ending["incident_id"].implode()))
        summary = _render(reported, config).with_columns(
            status.then(pl.lit("closed")).otherwise(pl.lit("open")).alias("status")
        )
        log.info(
            "incidents: %d alerts, %d incidents touched, %d closed, %d open, %d replaced",
            alerts.height,
            new_ids.len(),
            ending.height,
            open_parts.height - ending.height,
            len(replaced),
        )
        return Incidents(summary, _labelled(alerts, assigned), replaced)

    def incidents(self) -> pl.DataFrame:
        """The open incidents (``refs`` empty: the alerts are in each batch's result)."""
        return _render(self._open_partials(), self.config)

    def close(self, before: datetime | None = None) -> pl.DataFrame:
        """Close the open incidents whose last alert is before ``before`` (all of them, those without
        time too, when None), e.g. when a stream has gone quiet; their final summaries."""
        partials = self._open_partials()
        if before is not None:
            partials = partials.filter(pl.col("last_seen") < _micros(before))
        self._forget(partials["incident_id"])
        return _render(partials, self.config).with_columns(pl.lit("closed").alias("status"))

    # -- state ----------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The open incidents as JSON values (:meth:`from_state` restores them)."""
        return {
            "version": STATE_VERSION,
            "config": self.config.as_dict(),
            "watermark": self.watermark,
            "ref": "string" if self._ref == pl.String else "integer",
            "settled": self._settled.drop("refs").to_dicts(),
            "live": self._live.to_dict(as_series=False),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: IncidentConfig | None = None) -> IncidentTracker:
        """A tracker from :meth:`state` (with the saved settings unless ``config`` is given)."""
        version = state.get("version") if isinstance(state, dict) else type(state).__name__
        if version != STATE_VERSION:
            raise ConfigError(f"incidents: tracker state version {version!r} is not {STATE_VERSION}")
        try:
            tracker = cls(config or IncidentConfig.from_dict(state["config"]))
            tracker._set_ref(pl.String if state["ref"] == "string" else pl.Int64)
            watermark = state["watermark"]
            tracker.watermark = None if watermark is None else int(watermark)
            schema = _partial_schema(tracker._ref)
            rows = [{**row, "refs": []} for row in state["settled"]]
            tracker._settled = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
            tracker._live = pl.DataFrame(state["live"], schema=tracker._live.schema)
        except (KeyError, TypeError, ValueError, AttributeError, pl.exceptions.PolarsError) as error:
            raise ConfigError(f"incidents: unreadable tracker state ({error})") from error
        return tracker

    # -- inside -----------------------------------------------------------------------------------------

    def _set_ref(self, ref: pl.DataType) -> None:
        self._ref = ref
        self._settled = self._settled.cast({"refs": pl.List(ref)})
        self._live = self._live.cast({"ref": ref})

    def _anchors(self) -> dict[str, pl.DataFrame]:
        """The incidents kept as summaries, by kind, as the episodes' anchors."""
        frame = self._settled.select(
            "kind",
            pl.col("key").alias("_k"),
            pl.col("first_seen").alias("_start"),
            pl.col("last_seen").alias("_end"),
            pl.col("incident_id").alias("_aid"),
        )
        return {kind: part.drop("kind") for (kind,), part in frame.partition_by("kind", as_dict=True).items()}

    def _open_partials(self) -> pl.DataFrame:
        if self._live.height == 0:
            return self._settled
        live = _partials(self._live.with_columns(pl.lit(False).alias("_new")))
        return pl.concat([self._settled, live])

    def _forget(self, ids: pl.Series) -> None:
        self._settled = self._settled.filter(~pl.col("incident_id").is_in(ids.implode()))
        self._live = self._live.filter(~pl.col("incident_id").is_in(ids.implode()))

    def _settle(
        self, settled: pl.DataFrame, live_parts: pl.DataFrame, live_rows: pl.DataFrame
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Keep the largest live incidents as summaries until the live alerts fit their cap."""
        order = live_parts.sort(["alerts", "incident_id"], descending=[True, False])
        excess = live_rows.height - self.config.max_live_alerts
        moved = order.filter(pl.col("alerts").cum_sum().shift(1, fill_value=0) < excess)
        log.info("incidents: %d live incidents kept as summaries (live alerts over the cap)", moved.height)
        ids = moved["incident_id"].implode()
        return (
            pl.concat([settled, moved]),
            live_parts.filter(~pl.col("incident_id").is_in(ids)),
            live_rows.filter(~pl.col("incident_id").is_in(ids)),
        )

    @staticmethod
    def _replaced(assigned: pl.DataFrame, current: pl.Series) -> dict[str, str]:
        """Live incidents of before whose id is gone -> the incident that took most of their alerts."""
        moved = (
            assigned.filter(pl.col("_old").is_not_null() & ~pl.col("_old").is_in(current.implode()))
            .group_by("_old", "incident_id")
            .len()
            .sort(["_old", "len", "incident_id"], descending=[False, True, False])
            .unique("_old", keep="first", maintain_order=True)
        )
        return dict(moved.select("_old", "incident_id").iter_rows())


def _micros(moment: datetime) -> int:
    """A time as microseconds since the epoch (a naive time is taken as UTC)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
