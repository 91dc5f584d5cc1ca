"""Flow tables under CICFlowMeter's column names, so that flows metered from captures can be compared
with the CIC-IDS2017 and CSE-CIC-IDS2018 data sets (``nadkit mix-captures --columns cicflowmeter``).

The names are those of the CIC-IDS2017 files re-extracted with CICFlowMeter ("CICIDS2017 improved",
the layout of the shared ``CICIDS2017_improved_rnd5000_timesorted.csv``): ``Src IP``, ``Flow Duration``,
``Total Fwd Packet``, ``Fwd IAT Mean``, ... Units follow CICFlowMeter: durations and inter-arrival times
in microseconds, rates per second, the protocol as its IANA number, ``Timestamp`` as
``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC), the label ``BENIGN`` for normal flows.

What maps (canonical and nfstream columns -> CICFlowMeter):

- the flow: time, addresses, ports, protocol, duration, packets and bytes each way, the label;
- nfstream's packet sizes (``src2dst_max_ps``, ...) -> ``Fwd/Bwd Packet Length Max/Min/Mean/Std`` and
  ``Packet Length Min/Max/Mean/Std``; inter-arrival times (``*_piat_ms``, milliseconds) -> ``Flow/Fwd/Bwd
  IAT Mean/Std/Max/Min`` (microseconds); each direction's duration -> ``Fwd/Bwd IAT Total``; TCP flag
  counts -> ``FIN Flag Count``, ..., ``Fwd/Bwd PSH/URG/RST Flags``;
- derived: ``Flow Bytes/s``, ``Flow Packets/s``, ``Fwd Packets/s``, ``Bwd Packets/s`` (null for a flow
  of zero duration, where CICFlowMeter writes ``Infinity``).

Columns without a CICFlowMeter equivalent (``app``, ``app_category``, the meter's ``ip_version``,
``vlan_id``, ...) are kept under their own names; CICFlowMeter columns nfstream does not measure
(bulk rates, header lengths, active and idle times, initial windows) are absent. Sizes differ in
meaning: nfstream counts IP packet sizes and bytes, CICFlowMeter payload lengths, so byte figures are
comparable in shape, not in value. `nadkit` reads such a table back with its CICFlowMeter reader
(:mod:`nadkit.sources.cic`).
"""

from __future__ import annotations

import polars as pl

from nadkit.schema import CAPTURE_TIME

#: how times are written (the cic reader takes it back)
TIME_TEXT = "%Y-%m-%d %H:%M:%S%.6f"
#: canonical column -> CICFlowMeter name (taken over with a unit change where noted in the docstring)
FLOW = {
    "time": "Timestamp",
    "src": "Src IP",
    "spt": "Src Port",
    "dst": "Dst IP",
    "dpt": "Dst Port",
    "proto": "Protocol",
    "duration": "Flow Duration",
    "out_pkts": "Total Fwd Packet",
    "in_pkts": "Total Bwd packets",
    "out_bytes": "Total Length of Fwd Packet",
    "in_bytes": "Total Length of Bwd Packet",
    CAPTURE_TIME: CAPTURE_TIME,  # a mix's flow at its time in its capture (not a CICFlowMeter column)
}
#: nfstream column -> CICFlowMeter name, same unit
_STATS = (("max", "Max"), ("min", "Min"), ("mean", "Mean"), ("stddev", "Std"))
_FLAGS = ("fin", "syn", "rst", "psh", "ack", "urg", "cwr", "ece")
SAME_UNIT = {
    **{f"src2dst_{stat}_ps": f"Fwd Packet Length {label}" for stat, label in _STATS},
    **{f"dst2src_{stat}_ps": f"Bwd Packet Length {label}" for stat, label in _STATS},
    **{f"bidirectional_{stat}_ps": f"Packet Length {label}" for stat, label in _STATS},
    **{f"bidirectional_{flag}_packets": f"{flag.upper()} Flag Count" for flag in _FLAGS},
    **{f"src2dst_{flag}_packets": f"Fwd {flag.upper()} Flags" for flag in ("psh", "urg", "rst")},
    **{f"dst2src_{flag}_packets": f"Bwd {flag.upper()} Flags" for flag in ("psh", "urg", "rst")},
}
#: nfstream column in milliseconds -> CICFlowMeter name in microseconds
MILLISECONDS = {
    **{
        f"{side}_{stat}_piat_ms": f"{name} IAT {label}"
        for side, name in (("bidirectional", "Flow"), ("src2dst", "Fwd"), ("dst2src", "Bwd"))
        for stat, label in (("mean", "Mean"), ("stddev", "Std"), ("max", "Max"), ("min", "Min"))
    },
    "src2dst_duration_ms": "Fwd IAT Total",
    "dst2src_duration_ms": "Bwd IAT Total",
}
_IANA = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "icmpv6": 58, "sctp": 132}


def to_cicflowmeter(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (a canonical flow table, e.g. metered from captures) under CICFlowMeter's names and
    units; see the module docstring for what maps and what is kept as it is."""
    columns = set(frame.columns)
    exprs: list[pl.Expr] = []
    taken: set[str] = {"label", "label_original"}
    for name, target in FLOW.items():
        if name not in columns:
            continue
        taken.add(name)
        column = pl.col(name)
        if name in ("time", CAPTURE_TIME):
            column = column.dt.convert_time_zone("UTC").dt.strftime(TIME_TEXT)
        elif name == "proto":
            number = column.str.to_lowercase().replace_strict(_IANA, default=None, return_dtype=pl.Int64)
            column = pl.coalesce(number, column.cast(pl.Int64, strict=False))
        elif name == "duration":
            column = (column * 1e6).round(0)
        exprs.append(column.alias(target))
    for mapping, scale in ((SAME_UNIT, 1.0), (MILLISECONDS, 1000.0)):
        for name, target in mapping.items():
            if name in columns:
                taken.add(name)
                exprs.append((pl.col(name) * scale if scale != 1.0 else pl.col(name)).alias(target))
    if "duration" in columns:
        seconds = pl.col("duration")

        def rate(expr: pl.Expr, target: str) -> pl.Expr:
            return pl.when(seconds > 0).then(expr.cast(pl.Float64) / seconds).otherwise(None).alias(target)

        both = [c for c in ("out_bytes", "in_bytes") if c in columns]
        if both:
            exprs.append(rate(pl.sum_horizontal(both), "Flow Bytes/s"))
        packets = [c for c in ("out_pkts", "in_pkts") if c in columns]
        if packets:
            exprs.append(rate(pl.sum_horizontal(packets), "Flow Packets/s"))
        for name, target in (("out_pkts", "Fwd Packets/s"), ("in_pkts", "Bwd Packets/s")):
            if name in columns:
                exprs.append(rate(pl.col(name), target))
    exprs.extend(pl.col(name) for name in frame.columns if name not in taken)
    if "label" in columns:
        label = pl.col("label")
        exprs.append(pl.when(label == "normal").then(pl.lit("BENIGN")).otherwise(label).alias("Label"))
    return frame.select(exprs)
