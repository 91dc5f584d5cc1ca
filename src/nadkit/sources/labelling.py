"""Labels carried over to flows from labelled flows another meter made of the same traffic.

Public data sets often ship a capture beside labelled flows that another meter made of it: IoT-23 a
pcap and Zeek's conn.log with labels, CTU-13 a pcap and Argus flows, CIC-IDS2017 pcaps and
CICFlowMeter CSV files. :func:`carry_labels` gives each flow of one table (the capture metered by
nfstream, say) the label of the labelled flow with the same addresses, ports and protocol, in either
direction, that started nearest in time within a tolerance:

* ICMP flows match by addresses and protocol alone (meters put the ICMP type and code in different
  places, or nowhere);
* where both directions match with different labels, an attack's label wins over ``normal``;
* ``label_original`` (the source's own label text, e.g. IoT-23's detailed label) comes along where the
  labelled flows have it;
* flows without a match are dropped (``unmatched="drop"``, the default: nothing is evaluated under a
  label it was not given), called normal (``"normal"``), or kept without a label (``"keep"``).

The labelled flows' clock can be moved by ``shift_s`` (CIC-IDS2017's files are in local time, its
captures in UTC).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Literal

import polars as pl

from nadkit.errors import ConfigError, SchemaError
from nadkit.schema import NORMAL
from nadkit.sources.captures import label_counts

log = logging.getLogger(__name__)

#: what happens to flows no labelled flow matches
Unmatched = Literal["drop", "normal", "keep"]
UNMATCHED: tuple[str, ...] = ("drop", "normal", "keep")
#: protocols whose flows match without ports
PORTLESS = ("icmp", "ipv6-icmp")
#: the key columns a match needs in both tables
NEEDED = ("time", "src", "dst", "proto")

_ROW = "__row"
_PORT_KEYS = ("__spt", "__dpt")


@dataclass(frozen=True)
class CarriedLabels:
    """The flows with their carried labels, and how many matched."""

    frame: pl.DataFrame
    flows: int
    matched: int
    unmatched: int

    def counts(self) -> dict[str, int]:
        """Flows per label of the result (``unlabelled`` for kept flows without a match), largest first."""
        return label_counts(self.frame)


def carry_labels(
    flows: pl.DataFrame,
    labelled: pl.DataFrame,
    *,
    tolerance_s: float = 2.0,
    shift_s: float = 0.0,
    unmatched: Unmatched = "drop",
) -> CarriedLabels:
    """``flows`` with the ``label`` (and ``label_original``) of their match in ``labelled`` (see the
    module notes), in their own order; their own labels, if any, are replaced."""
    if unmatched not in UNMATCHED:
        raise ConfigError(f"unmatched must be one of {', '.join(UNMATCHED)}, not {unmatched!r}")
    if not tolerance_s >= 0:
        raise ConfigError(f"the time tolerance must be 0 or more seconds, got {tolerance_s}")
    for name, table in (("flows", flows), ("labelled flows", labelled)):
        missing = [c for c in NEEDED if c not in table.columns]
        if missing:
            raise SchemaError(f"the {name} lack column(s) {', '.join(missing)}, needed to match flows")
    if "label" not in labelled.columns:
        raise SchemaError("the labelled flows have no label column")
    ports = all(p in table.columns for p in ("spt", "dpt") for table in (flows, labelled))
    carried = ["label", *(["label_original"] if "label_original" in labelled.columns else [])]
    keys = ["src", "dst", "proto", *(_PORT_KEYS if ports else ())]
    base = flows.drop("label", "label_original", strict=False).with_row_index(_ROW)
    left = _keyed(base, ports).filter(pl.col("time").is_not_null()).sort("time")
    table = _keyed(labelled, ports).filter(pl.col("time").is_not_null() & pl.col("label").is_not_null())
    if shift_s:
        table = table.with_columns(pl.col("time") + dt.timedelta(seconds=shift_s))
    table = table.select("time", *keys, *carried)
    turned = {"src": "dst", "dst": "src"} | ({"__spt": "__dpt", "__dpt": "__spt"} if ports else {})
    swapped = table.rename(turned)
    matches = []
    for side in (table, swapped.select(table.columns)):
        joined = left.select(_ROW, "time", *keys).join_asof(
            side.sort("time"),
            on="time",
            by=keys,
            strategy="nearest",
            tolerance=dt.timedelta(seconds=tolerance_s),
            check_sortedness=False,
        )
        matches.append(joined.select(_ROW, *carried))
    forward, reverse = matches
    both = forward.join(reverse, on=_ROW, suffix="_reverse")
    forward_label, reverse_label = pl.col("label"), pl.col("label_reverse")
    # the forward match unless it is missing, or normal where the reverse one is an attack
    take_forward = forward_label.is_not_null() & (
        (forward_label != NORMAL) | reverse_label.is_null() | (reverse_label == NORMAL)
    )
    chosen = [
        pl.when(take_forward).then(pl.col(column)).otherwise(pl.col(f"{column}_reverse")).alias(column)
        for column in carried
    ]
    found = both.select(_ROW, *chosen)
    out = base.join(found, on=_ROW, how="left").sort(_ROW)
    matched = int(out["label"].is_not_null().sum())
    missing = out.height - matched
    if unmatched == "drop":
        out = out.filter(pl.col("label").is_not_null())
    elif unmatched == "normal":
        out = out.with_columns(pl.col("label").fill_null(NORMAL))
    log.info("labels carried to %d of %d flows (%d unmatched: %s)", matched, flows.height, missing, unmatched)
    return CarriedLabels(out.drop(_ROW), flows=flows.height, matched=matched, unmatched=missing)


def _keyed(frame: pl.DataFrame, ports: bool) -> pl.DataFrame:
    """``frame`` with its match keys: the protocol in lower case, and ports (-1 for ICMP, whose
    flows match without them)."""
    proto = pl.col("proto").cast(pl.String).str.to_lowercase()
    frame = frame.with_columns(
        proto.alias("proto"), pl.col("src").cast(pl.String), pl.col("dst").cast(pl.String)
    )
    if not ports:
        return frame
    portless = pl.col("proto").is_in(PORTLESS)
    return frame.with_columns(
        pl.when(portless).then(-1).otherwise(pl.col(port).cast(pl.Int64)).fill_null(-1).alias(key)
        for port, key in zip(("spt", "dpt"), _PORT_KEYS, strict=True)
    )


__all__ = ["UNMATCHED", "CarriedLabels", "Unmatched", "carry_labels"]
