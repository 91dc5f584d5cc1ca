"""The incident tracker: open incidents across batches of alert records (the rules are
:mod:`nadkit.alerts.incidents`'s). A batch's alerts first continue the open incidents of their key; a
flood is final as soon as it is one and is kept as a summary; incidents of the other shapes keep their
alerts (up to ``max_live_alerts``) and are grouped again with each batch; an incident closes once the
newest alert time seen is more than the gap after its last alert. The state is plain JSON."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import polars as pl

from nadkit.alerts.incidents import (
    _ASSIGNED,
    COUNTED,
    FACTS_SCHEMA,
    STATE_VERSION,
    IncidentConfig,
    Incidents,
    _assign,
    _counter_dtype,
    _groupless,
    _labelled,
    _micros,
    _partial_schema,
    _partials,
    _prepare,
    _render,
    _unassigned,
)
from nadkit.errors import ConfigError

log = logging.getLogger(__name__)


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
