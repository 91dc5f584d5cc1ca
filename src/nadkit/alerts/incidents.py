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
``top_feature_count`` and ``top_feature_label`` (that feature as the explanations word it), and
``refs`` (the alerts' ``alert_id``, else their ``row``).

**Identity.** An incident's id is a short hash of its kind, its key and the time its episode began
(:func:`incident_id`), so grouping the same alerts twice gives the same ids.

**Across batches**, :class:`~nadkit.alerts.incident_tracker.IncidentTracker` keeps the open
incidents: a batch's alerts first continue
the open incidents of their key (within the gap of what the incident already spans), so a flood's
sources in a later batch join the flood even when that batch alone has few of them. A flood is final
as soon as it is one and is kept as a summary. Incidents of the other shapes keep their alerts (up to
``max_live_alerts`` in all) and are grouped again with each batch, so that alerts which later turn
out to be part of a flood, a scan or a pair move there; the ids they leave are reported in
:attr:`Incidents.replaced`. An incident closes once the newest alert time seen is more than the gap
after its last alert; a closed incident is final. Batches cut anywhere in a time-ordered stream
therefore give the incidents and ids of one batch, as long as no incident has to reach back into a
closed one and the live alerts stay under their cap. The tracker's state is plain JSON
(its ``state`` and ``from_state``).
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
from nadkit.features.labels import feature_label
from nadkit.schema import TIME_DTYPE

log = logging.getLogger(__name__)

#: the incident shapes, in the order they take alerts
KINDS: Final = ("flood", "scan", "pair", "host")
#: severity names, from below the first cut point to above the last
SEVERITIES: Final = ("low", "medium", "high", "critical")
#: severity name -> rank, and back
RANKS: Final = {name: rank for rank, name in enumerate(SEVERITIES, start=1)}
NAMES: Final = {rank: name for name, rank in RANKS.items()}
#: the version of the tracker's state (:mod:`nadkit.alerts.incident_tracker`)
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
    timed = timed.with_columns(pl.col("_k").rle_id().alias("_g"))
    timed = timed.with_columns(_key_cum_max(timed.height).alias("_reach"))
    reach = pl.when(pl.col("_g") == pl.col("_g").shift(1)).then(pl.col("_reach").shift(1))
    timed = timed.select(
        pl.exclude("_g", "_reach"),
        (reach.is_null() | ((pl.col("_start") - reach) > gap_us)).cum_sum().cast(pl.Int64).alias("_ep"),
    )
    untimed = items.filter(pl.col("_start").is_null())
    untimed = untimed.with_columns((-pl.col("_k").rank("dense").cast(pl.Int64)).alias("_ep"))
    return pl.concat([timed, untimed])


def _key_cum_max(rows: int) -> pl.Expr:
    """The running maximum of ``_end`` within each key ``_g`` (increasing) of a table of ``rows``
    rows whose ends are not null.

    One running maximum over the whole column instead of one per key (``over``, several times
    slower): each end is replaced by its dense rank among all ends and offset by its key's number
    times one more than the number of rows, so a later key's values are above every earlier key's;
    the maximum's rank is then read back as the end it stands for."""
    span = rows + 1
    ranked = (pl.col("_g").cast(pl.Int64) * span + pl.col("_end").rank("dense").cast(pl.Int64)).cum_max()
    return pl.col("_end").drop_nulls().unique().sort().gather(ranked % span - 1)


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
    summary = (
        partials.select(columns)
        .sort(["first_seen", "incident_id"], nulls_last=True, maintain_order=True)
        .cast({"first_seen": TIME_DTYPE, "last_seen": TIME_DTYPE})
    )
    # the heading feature in words, as the alerts' explanations read (the code stays beside it)
    return summary.with_columns(
        pl.col("top_feature")
        .replace_strict(_labels(summary["top_feature"]), default=None, return_dtype=pl.String)
        .alias("top_feature_label")
    ).select(*(c for c in summary.columns if c != "refs"), "top_feature_label", "refs")


def _labels(features: pl.Series) -> dict[str, str]:
    """The explanation label of each distinct feature name of ``features``."""
    return {name: feature_label(name) for name in features.drop_nulls().unique().to_list()}


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


def _micros(moment: datetime) -> int:
    """A time as microseconds since the epoch (a naive time is taken as UTC)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
