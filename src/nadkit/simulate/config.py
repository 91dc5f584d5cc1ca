"""What a simulation is asked for and what it produces: :class:`SimulationConfig`, the class codes and
NAD label texts, the output columns, and the traffic mixes (the normal traffic kinds with their share
of a day's normal flows, and each attack class's share range)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from nadkit.errors import ConfigError
from nadkit.features.counters import COUNTER_COLUMNS, CounterConfig

#: The NAD 2021 label texts, indexed by the simulator's class code.
NAD_LABELS: tuple[str, ...] = (
    "Normal",
    "DDOS-smurf",
    "Probing-IP sweep",
    "Probing-Nmap",
    "Probing-Port sweep",
)
ATTACK_LABELS: tuple[str, ...] = NAD_LABELS[1:]
#: The simulator's class codes (indices into :data:`NAD_LABELS`).
LABEL_NORMAL, LABEL_SMURF, LABEL_IP_SWEEP, LABEL_NMAP, LABEL_PORT_SWEEP = range(5)

#: Canonical columns of the simulated table, in order.
COLUMNS: tuple[str, ...] = (
    "time",
    "src",
    "dst",
    "spt",
    "dpt",
    "proto",
    "app",
    "duration",
    "out_bytes",
    "in_bytes",
    "out_pkts",
    "in_pkts",
    *COUNTER_COLUMNS,
    "label",
    "label_original",
    "day",
)
OUTPUT_FORMATS = ("csv", "parquet")

#: Normal traffic kinds and their share of a day's normal flows. The order is the order in which a
#: day generates them: web first, because DNS lookups are anchored on web sessions.
NORMAL_MIX: dict[str, float] = {
    "web_https": 0.27,
    "web_http": 0.05,
    "quic": 0.03,
    "dns_client": 0.14,
    "smb": 0.05,
    "directory": 0.05,
    "mail": 0.02,
    "intranet": 0.03,
    "app_tier": 0.025,
    "database": 0.02,
    "netbios": 0.022,
    "ssdp": 0.012,
    "dhcp": 0.003,
    "igmp": 0.005,
    "icmp": 0.012,
    "ssh": 0.005,
    "rare_apps": 0.02,
    "other_ports": 0.03,
    "resolver": 0.06,
    "snmp_poll": 0.02,
    "discovery": 0.004,
    "syslog": 0.02,
    "inbound": 0.06,
    "background_radiation": 0.008,
    "updates": 0.01,
    "backup": 0.002,
    "ntp": 0.005,
    "infrastructure": 0.006,
    "broadcast_ping": 0.0005,
    "vulnerability_scan": 0.004,
}

#: Attack share ranges per class (flows per nominal ``flows_per_day`` at ``attack_intensity=1``); each
#: day takes a different point of the range, so the class mix shifts from day to day.
ATTACK_SHARES: dict[int, tuple[float, float]] = {
    LABEL_IP_SWEEP: (0.008, 0.040),
    LABEL_PORT_SWEEP: (0.0035, 0.011),
    LABEL_SMURF: (0.0009, 0.003),
    LABEL_NMAP: (0.0004, 0.0012),
}


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate: how many days from which date, how much traffic, how big a network.

    ``flows_per_day`` is the average over a week: weekdays carry more, weekends less (by
    ``weekend_load``). ``attack_intensity`` scales every attack class's share (0 disables attacks).
    """

    days: int = 3
    flows_per_day: int = 100_000
    seed: int = 0
    start: dt.date = dt.date(2020, 12, 3)
    workstations: int = 600
    internet_hosts: int = 20_000
    attack_intensity: float = 1.0
    weekend_load: float = 0.55
    counters: CounterConfig = field(default_factory=CounterConfig)

    def __post_init__(self) -> None:
        integers = {
            "days": (self.days, 1, 3660),
            "flows_per_day": (self.flows_per_day, 100, 100_000_000),
            "seed": (self.seed, 0, 2**63 - 1),
            "workstations": (self.workstations, 10, 20_000),
            "internet_hosts": (self.internet_hosts, 100, 2_000_000),
        }
        for name, (value, low, high) in integers.items():
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            if not low <= value <= high:
                raise ConfigError(f"{name} must be between {low:,} and {high:,}, got {value:,}")
        if not isinstance(self.start, dt.date) or isinstance(self.start, dt.datetime):
            raise ConfigError(f"start must be a datetime.date, got {self.start!r}")
        for name, value, high in (
            ("attack_intensity", self.attack_intensity, 10.0),
            ("weekend_load", self.weekend_load, 1.0),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
                raise ConfigError(f"{name} must be a number between 0 and {high}, got {value!r}")
        if self.weekend_load == 0:
            raise ConfigError("weekend_load must be above 0 (a network never goes fully silent)")
        if not isinstance(self.counters, CounterConfig):
            raise ConfigError("counters must be a nadkit.features.counters.CounterConfig")

    def date_of(self, day_index: int) -> dt.date:
        """The calendar date of day ``day_index`` (0-based)."""
        return self.start + dt.timedelta(days=day_index)
