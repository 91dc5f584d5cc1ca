"""The day builder: flow shapes (byte and duration distributions per kind of flow) and
:class:`DayBuilder`, which holds one day's random generator, address plan and load profiles, offers the
sampling helpers every traffic generator uses, and joins the generated blocks into the canonical table."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from nadkit.features.counters import add_traffic_counters
from nadkit.schema import NORMAL, TIME_DTYPE
from nadkit.simulate.config import COLUMNS, LABEL_NORMAL, NAD_LABELS, SimulationConfig
from nadkit.simulate.load import DAY_US, MINUTE_US, day_profiles
from nadkit.simulate.network import (
    APP_BY_PORT,
    APP_CODE,
    APPS,
    ICMP,
    IGMP,
    PROTOS,
    TCP,
    UDP,
    Site,
    day_plan,
    dotted,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shape:
    """Byte and duration distribution of one kind of flow (medians and log-normal spreads)."""

    out_bytes: float
    out_sigma: float
    in_bytes: float
    in_sigma: float
    duration_s: float
    duration_sigma: float
    tail: float = 0.0  # share of flows with a Pareto-distributed bulk transfer in
    fail: float = 0.0  # share of attempts nobody answers
    instant: float = 0.0  # share of zero-duration flows
    one_way: bool = False  # nothing ever comes back (broadcast, syslog)


#: The flow shapes by name, as the generators ask for them.
SHAPES: dict[str, Shape] = {
    "https": Shape(1100, 0.9, 6000, 1.7, 1.5, 1.6, tail=0.03, fail=0.015, instant=0.02),
    "http": Shape(600, 0.8, 4000, 1.9, 0.8, 1.5, tail=0.03, fail=0.02, instant=0.03),
    "quic": Shape(1500, 0.9, 9000, 1.6, 3.0, 1.5, tail=0.02, fail=0.01),
    "dns": Shape(72, 0.15, 160, 0.45, 0.015, 1.0, fail=0.01, instant=0.45),
    "smb": Shape(2500, 1.4, 9000, 2.1, 4.0, 2.0, tail=0.02, fail=0.005),
    "directory": Shape(900, 0.7, 1800, 0.9, 0.08, 1.2, instant=0.15),
    "mail": Shape(2500, 1.6, 1200, 1.0, 1.2, 1.2, tail=0.02),
    "database": Shape(700, 1.0, 3000, 1.6, 0.05, 1.5, instant=0.2, tail=0.01),
    "app": Shape(900, 0.8, 5000, 1.4, 0.2, 1.2, instant=0.1),
    "ssh": Shape(4000, 1.8, 7000, 1.9, 60.0, 2.0, fail=0.02),
    "snmp": Shape(85, 0.25, 320, 0.6, 0.01, 1.0, instant=0.5, fail=0.01),
    "syslog": Shape(180, 0.9, 0, 0, 5.0, 2.5, instant=0.4, one_way=True),
    "broadcast": Shape(90, 0.5, 0, 0, 0.0, 0.0, instant=0.85, one_way=True),
    "ssdp": Shape(175, 0.4, 0, 0, 1.0, 1.0, instant=0.3, one_way=True),
    "update": Shape(2500, 0.8, 2e6, 2.0, 40.0, 1.5, tail=0.05),
    "backup": Shape(5e7, 1.5, 9000, 1.0, 600.0, 1.0),
    "ntp": Shape(76, 0.0, 76, 0.0, 0.02, 0.8, instant=0.5, fail=0.01),
    "other": Shape(800, 1.5, 2500, 2.0, 2.0, 2.0, tail=0.02, fail=0.05, instant=0.05),
    "inbound": Shape(900, 1.0, 12000, 1.8, 1.2, 1.6, tail=0.02, fail=0.01, instant=0.02),
}

#: The columns of a generated block (times in microseconds into the day, addresses as integers).
_FIELDS = ("t", "src", "dst", "spt", "dpt", "proto", "app", "duration", "out_b", "in_b", "out_p", "in_p")


class DayBuilder:
    """Builds one day's flows: each traffic generator appends a block of columns, :meth:`frame` joins
    them."""

    def __init__(self, config: SimulationConfig, day_index: int, site: Site) -> None:
        self.config = config
        self.day_index = day_index
        self.date = config.date_of(day_index)
        self.weekend = self.date.weekday() >= 5
        self.rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xDA7, day_index]))
        self.plan = day_plan(config, site, day_index, self.rng)
        self.profiles = day_profiles(self.weekend, self.rng)
        self.blocks: list[tuple[int, dict[str, np.ndarray]]] = []
        self.anchors: list[tuple[np.ndarray, np.ndarray]] = []  # web flows: (time, src), for DNS

    def add(self, label: int, n: int, **columns: np.ndarray | int | float) -> None:
        """Append ``n`` flows; scalars are broadcast, ``app`` defaults to the port's application and
        packet counts to what the byte counts imply."""
        if n <= 0:
            return
        block: dict[str, np.ndarray] = {}
        for name in _FIELDS:
            value = columns.get(name, -1)
            array = np.asarray(value)
            block[name] = np.broadcast_to(array, (n,)).copy() if array.ndim == 0 else array
            if block[name].shape != (n,):
                raise ValueError(f"column {name} has shape {block[name].shape}, expected ({n},)")
        self.blocks.append((label, block))

    def times(self, profile: str, n: int) -> np.ndarray:
        """``n`` flow start times (microseconds into the day) following a load profile."""
        cdf = self.profiles[profile]
        minute = np.minimum(np.searchsorted(cdf, self.rng.random(n), side="right"), 1439)
        return minute * MINUTE_US + self.rng.integers(0, MINUTE_US, n)

    def sessions(
        self, profile: str, n: int, mean_flows: float, gap_s: float
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Group ``n`` flows into bursts: (session index per flow, flow times, number of sessions).

        Session sizes are geometric with mean ``mean_flows``, flows inside a session are separated by
        exponential gaps of mean ``gap_s``.
        """
        sizes = self.rng.geometric(1.0 / max(mean_flows, 1.0), size=int(n / max(mean_flows, 1.0) * 1.3) + 8)
        while sizes.sum() < n:
            sizes = np.concatenate([sizes, self.rng.geometric(1.0 / max(mean_flows, 1.0), size=sizes.size)])
        ends = np.cumsum(sizes)
        count = int(np.searchsorted(ends, n) + 1)
        sizes = sizes[:count].copy()
        sizes[-1] -= ends[count - 1] - n
        session = np.repeat(np.arange(count), sizes)
        starts = self.times(profile, count)
        gaps = self.rng.exponential(gap_s * 1e6, n)
        first = np.empty(n, dtype=bool)
        first[0] = True
        np.not_equal(session[1:], session[:-1], out=first[1:])
        gaps[first] = 0.0
        running = np.cumsum(gaps)
        offsets = running - np.repeat(running[first], sizes)
        t = np.minimum(starts[session] + offsets.astype(np.int64), DAY_US - 1)
        return session, t, count

    def ephemeral(self, windows: np.ndarray | bool, n: int) -> np.ndarray:
        """Client source ports: 49152-65535 on Windows, 32768-60999 on Linux."""
        return np.where(
            windows, self.rng.integers(49152, 65536, n), self.rng.integers(32768, 61000, n)
        ).astype(np.int64)

    def ws_pick(self, n: int) -> np.ndarray:
        """Indices of ``n`` workstations drawn by activity."""
        return self.rng.choice(self.plan.workstations.size, size=n, p=self.plan.ws_weights)

    def internet_pick(self, n: int) -> np.ndarray:
        """``n`` internet hosts drawn by popularity."""
        return self.plan.internet[
            self.rng.choice(self.plan.internet.size, size=n, p=self.plan.internet_weights)
        ]

    def transfer(self, shape: Shape, n: int, proto: int | np.ndarray) -> dict[str, np.ndarray]:
        """Durations and byte counts for ``n`` flows of one shape (heavy tails, failures, zero flows)."""
        rng = self.rng
        out_b = shape.out_bytes * rng.lognormal(0.0, shape.out_sigma, n)
        in_b = shape.in_bytes * rng.lognormal(0.0, shape.in_sigma, n)
        if shape.tail:
            bulk = rng.random(n) < shape.tail
            in_b[bulk] *= 20.0 * (rng.pareto(1.1, int(bulk.sum())) + 1.0)
        duration = shape.duration_s * rng.lognormal(0.0, shape.duration_sigma, n)
        duration[rng.random(n) < shape.instant] = 0.0
        tcp = np.broadcast_to(np.asarray(proto) == TCP, (n,))
        header = np.where(tcp, 40.0, 28.0)
        out_b = np.maximum(out_b, header)
        in_b = np.where(in_b > 0, np.maximum(in_b, header), 0.0)
        if shape.one_way:
            in_b[:] = 0.0
        if shape.fail:
            failed = rng.random(n) < shape.fail
            retries = rng.integers(1, 4, n)
            out_b = np.where(failed, np.where(tcp, 60.0 * retries, out_b), out_b)
            in_b[failed] = 0.0
            duration = np.where(failed, np.where(tcp, (2.0**retries - 2.0) * 1.5, 0.0), duration)
        # a few sessions the firewall closed before any payload was counted
        empty = rng.random(n) < 0.003
        out_b[empty] = 0.0
        in_b[empty] = 0.0
        duration[empty] = 0.0
        return {
            "out_b": np.minimum(out_b, 4e10).round().astype(np.int64),
            "in_b": np.minimum(in_b, 4e10).round().astype(np.int64),
            "duration": np.minimum(duration, 86_400.0).round(3),
        }

    def client_sessions(
        self,
        n: int,
        *,
        destinations: np.ndarray,
        proto: int,
        dpt: int | np.ndarray,
        shape: str,
        mean_flows: float = 4.0,
        gap_s: float = 2.0,
        profile: str = "office",
        dst_weights: np.ndarray | None = None,
        stickiness: float = 0.7,
        anchor: bool = False,
    ) -> None:
        """Workstations opening bursts of connections to ``destinations`` (a main one per session,
        some flows to other ones: CDNs, a second server)."""
        if n <= 0:
            return
        rng = self.rng
        session, t, count = self.sessions(profile, n, mean_flows, gap_s)
        hosts = self.ws_pick(count)[session]
        if dst_weights is None:
            main = rng.integers(0, destinations.size, count)[session]
            other = rng.integers(0, destinations.size, n)
        else:
            main = rng.choice(destinations.size, size=count, p=dst_weights)[session]
            other = rng.choice(destinations.size, size=n, p=dst_weights)
        dst = destinations[np.where(rng.random(n) < stickiness, main, other)]
        src = self.plan.workstations[hosts]
        self.add(
            LABEL_NORMAL,
            n,
            t=t,
            src=src,
            dst=dst,
            spt=self.ephemeral(self.plan.ws_windows[hosts], n),
            dpt=dpt,
            proto=proto,
            **self.transfer(SHAPES[shape], n, proto),
        )
        if anchor:
            self.anchors.append((t, src))

    def server_flows(
        self,
        n: int,
        *,
        sources: np.ndarray,
        destinations: np.ndarray,
        proto: int,
        dpt: int | np.ndarray,
        shape: str,
        profile: str = "server",
        spt: int | np.ndarray | None = None,
    ) -> None:
        """Independent server-to-server or server-to-internet flows."""
        if n <= 0:
            return
        rng = self.rng
        self.add(
            LABEL_NORMAL,
            n,
            t=self.times(profile, n),
            src=sources[rng.integers(0, sources.size, n)],
            dst=destinations[rng.integers(0, destinations.size, n)],
            spt=self.ephemeral(False, n) if spt is None else spt,
            dpt=dpt,
            proto=proto,
            **self.transfer(SHAPES[shape], n, proto),
        )

    def icmp_echo(
        self, n: int, *, packets: np.ndarray, size: np.ndarray | int, answered: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Echo requests of ``size`` bytes, ``packets`` per flow, echoed back where ``answered``."""
        out_b = packets * size
        return {
            "duration": np.where(packets > 1, packets - 1 + self.rng.uniform(0, 0.02, n), 0).round(3),
            "out_b": out_b,
            "in_b": np.where(answered, out_b, 0),
            "out_p": packets,
            "in_p": np.where(answered, packets, 0),
        }

    def cycles(self, n: int, targets: np.ndarray, spacing_us: float) -> tuple[np.ndarray, np.ndarray]:
        """Periodic passes over ``targets`` spread over the whole day: (target index, time) per flow."""
        per_cycle = targets.size
        cycles = max(1, -(-n // per_cycle))
        period = DAY_US / cycles
        k = np.arange(n)
        cycle, position = k // per_cycle, k % per_cycle
        phase = self.rng.integers(0, int(period))
        jitter = self.rng.integers(0, 200_000, n)
        t = (phase + cycle * period + position * spacing_us + jitter).astype(np.int64)
        return position, np.minimum(t, DAY_US - 1)

    def frame(self) -> pl.DataFrame:
        """Join the blocks: sort by time, cut times to whole seconds, name protocols and applications,
        fill packet counts, then add the counters and labels."""
        labels = np.concatenate([np.full(b["t"].size, label, dtype=np.int8) for label, b in self.blocks])
        data = {name: np.concatenate([b[name] for _, b in self.blocks]) for name in _FIELDS}
        order = np.argsort(data["t"], kind="stable")
        labels = labels[order]
        data = {name: values[order] for name, values in data.items()}
        n = labels.size
        proto = data["proto"].astype(np.int64)
        spt, dpt = data["spt"].astype(np.int64), data["dpt"].astype(np.int64)
        app = data["app"].astype(np.int64)
        missing = app < 0
        by_port = np.where(
            proto == TCP,
            APP_BY_PORT[TCP][dpt],
            np.where(proto == UDP, APP_BY_PORT[UDP][dpt], APP_CODE["others"]),
        )
        by_port = np.where(
            proto == ICMP, APP_CODE["icmp"], np.where(proto == IGMP, APP_CODE["igmp"], by_port)
        )
        app = np.where(missing, by_port, app)
        out_p, in_p = self.packets(data["out_b"], data["out_p"]), self.packets(data["in_b"], data["in_p"])
        day_start = dt.datetime.combine(self.date, dt.time(0), tzinfo=dt.UTC)
        epoch_us = int(day_start.timestamp()) * 1_000_000
        seconds = data["t"] // 1_000_000
        frame = pl.DataFrame(
            {
                "time": pl.Series(epoch_us + seconds * 1_000_000)
                .cast(pl.Datetime("us"))
                .dt.replace_time_zone("UTC")
                .cast(TIME_DTYPE),
                "src": dotted(data["src"]),
                "dst": dotted(data["dst"]),
                "spt": spt,
                "dpt": dpt,
                "proto": pl.Series(proto).replace_strict(dict(enumerate(PROTOS)), return_dtype=pl.String),
                "app": pl.Series(app).replace_strict(dict(enumerate(APPS)), return_dtype=pl.String),
                "duration": data["duration"].astype(np.float64),
                "out_bytes": data["out_b"].astype(np.int64),
                "in_bytes": data["in_b"].astype(np.int64),
                "out_pkts": out_p,
                "in_pkts": in_p,
            }
        )
        frame = add_traffic_counters(frame, self.config.counters)
        label_codes = pl.Series(labels)
        original = label_codes.replace_strict(dict(enumerate(NAD_LABELS)), return_dtype=pl.String)
        canonical = dict(enumerate(NAD_LABELS)) | {LABEL_NORMAL: NORMAL}
        frame = frame.with_columns(
            label=label_codes.replace_strict(canonical, return_dtype=pl.String),
            label_original=original,
            day=pl.lit(self.date, dtype=pl.Date),
        )
        log.info(
            "simulated %s: %d flows, %d attacks",
            self.date.isoformat(),
            n,
            int((labels != LABEL_NORMAL).sum()),
        )
        return frame.select(COLUMNS)

    def packets(self, size: np.ndarray, given: np.ndarray) -> np.ndarray:
        """Packet counts: the given ones, else what the byte count implies (bulk transfers in full
        segments, small exchanges in small packets)."""
        rng = self.rng
        n = size.size
        segment = np.where(size > 3000, rng.uniform(700, 1460, n), rng.uniform(60, 350, n))
        implied = np.where(size > 0, np.maximum(1, np.ceil(size / segment)), 0).astype(np.int64)
        return np.where(given >= 0, given, implied).astype(np.int64)
