"""A seeded simulation of an enterprise network over several days, written as labelled NAD 2021 flows.

This is nadkit's embedded default dataset and the fixture every stage is tested on: it imitates the
NAD 2021 firewall data (one table per day, the same 22 columns, the same five classes) closely enough
that detectors, features and splits behave on it as they would on the real thing, including its
hardest property: every day is a different distribution.

Network model
    An enterprise with workstation subnets, a server subnet and a public block (DMZ servers), all
    talking to internet hosts with Zipf-like popularity. Traffic is made of *sessions* (a page load,
    a file copy, a polling cycle) whose start times follow a diurnal profile (office hours for
    workstations, flatter for servers, nightly jobs) and a weekly one (weekends carry less load and
    fewer active workstations). Each kind of traffic has its own ports, protocols, durations and
    heavy-tailed byte counts: DNS is small UDP, HTTPS larger TCP with a Pareto tail, NetBIOS and SSDP
    go to broadcast and multicast addresses, some connection attempts fail (zero bytes in, zero
    duration), clients use ephemeral source ports. Servers behave like servers: the DNS resolver
    contacts many authoritative servers, the monitoring server polls and pings whole subnets, a
    vulnerability scanner probes many ports every night, legacy devices ping broadcast addresses, and
    the internet's background radiation knocks on the public block. All of that is labelled normal.

Attack model (the four NAD classes), in episodes grouped into a few campaign time blocks per day
    *IP sweep*: one source probes many addresses of one /24 (varying last octet) on one service
    (ICMP echo or a TCP/UDP port), fast or slow, in order or shuffled, sometimes in several passes.
    *Port sweep*: one source probes many destination ports of one host. *Nmap*: host discovery
    (ICMP echo, TCP 443, TCP 80, ICMP timestamp) over a block of an internal range, then the common
    ports of the hosts found, all with short durations. *DDoS smurf*: ICMP echo to subnet broadcast
    addresses (x.x.x.255) with the victim's address spoofed as the source. Probes that hit a live host
    get live answers, some of them indistinguishable from a normal short connection.

Distribution shift
    Each day re-draws part of the address plan (which internal /24s are in use, the server subnet,
    the public block, a quarter of the internet hosts, the attackers), the mix of normal traffic, and
    the share of each attack class (spread over a wide range and shuffled between days, like the real
    data's 6.4 % versus 1.8 % IP sweep).

The twelve ``cnt_*`` counters are computed with :func:`nadkit.features.counters.add_traffic_counters`
per day (each day is one file, as the firewall exported it), so recomputing them from a written day
file gives the same values. Times are whole seconds, as in the NAD files. The same configuration
always gives the same table; day ``i`` does not depend on how many days are simulated.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from nadkit.errors import ConfigError, NadkitError, SchemaError
from nadkit.features.counters import COUNTER_COLUMNS, CounterConfig, add_traffic_counters
from nadkit.fileio import atomic_directory, atomic_path
from nadkit.schema import NORMAL, PROTOCOL_NAMES, TIME_DTYPE
from nadkit.sources.nad import COLUMNS as NAD_COLUMNS

log = logging.getLogger(__name__)

#: The NAD 2021 label texts, indexed by the simulator's class code.
NAD_LABELS: tuple[str, ...] = (
    "Normal",
    "DDOS-smurf",
    "Probing-IP sweep",
    "Probing-Nmap",
    "Probing-Port sweep",
)
ATTACK_LABELS: tuple[str, ...] = NAD_LABELS[1:]
_NORMAL, _SMURF, _IP_SWEEP, _NMAP, _PORT_SWEEP = range(5)

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
_DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.(csv|parquet)$")

# ---------------------------------------------------------------------------------------------------
# protocols, applications, ports
# ---------------------------------------------------------------------------------------------------

_PROTOS = ("icmp", "igmp", "tcp", "udp")
_ICMP, _IGMP, _TCP, _UDP = range(4)
_PROTO_NUMBERS = {name: number for number, name in PROTOCOL_NAMES.items()}

_APP_NAMES = """
aim auth bgp bootpc bootps domain finger ftp h323 http https icmp
icq igmp irc isakmp microsoft-ds msn netbios-dgm netbios-ns netbios-ssn news nfs nntp
others pop3 pptp rcmd real-audio rexec rlogin roadrunner rtsp sftp smtp snmp
snmp-trap sql-net ssdp ssh syslog tacacs telnet tftp vdolive
"""
#: The 45 application names of the NAD 2021 data.
APPS: tuple[str, ...] = tuple(_APP_NAMES.split())
_APP_CODE = {name: code for code, name in enumerate(APPS)}

_TCP_APPS = {
    5190: "aim", 113: "auth", 179: "bgp", 53: "domain", 79: "finger", 21: "ftp", 20: "ftp",
    1720: "h323", 80: "http", 8080: "http", 443: "https", 4000: "icq", 6667: "irc", 6668: "irc",
    445: "microsoft-ds", 1863: "msn", 139: "netbios-ssn", 144: "news", 2049: "nfs", 119: "nntp",
    110: "pop3", 1723: "pptp", 514: "rcmd", 7070: "real-audio", 512: "rexec", 513: "rlogin",
    1034: "roadrunner", 554: "rtsp", 115: "sftp", 25: "smtp", 587: "smtp", 1521: "sql-net",
    1525: "sql-net", 22: "ssh", 49: "tacacs", 23: "telnet", 7000: "vdolive",
}  # fmt: skip
_UDP_APPS = {
    68: "bootpc", 67: "bootps", 53: "domain", 443: "https", 4000: "icq", 500: "isakmp",
    4500: "isakmp", 138: "netbios-dgm", 137: "netbios-ns", 2049: "nfs", 161: "snmp",
    162: "snmp-trap", 1900: "ssdp", 514: "syslog", 49: "tacacs", 69: "tftp", 554: "rtsp",
    7070: "real-audio", 1720: "h323",
}  # fmt: skip


def _port_table(mapping: dict[int, str]) -> np.ndarray:
    """Application code for every port 0-65535 of one transport protocol ("others" by default)."""
    table = np.full(65536, _APP_CODE["others"], dtype=np.int16)
    for port, app in mapping.items():
        table[port] = _APP_CODE[app]
    return table


_APP_BY_PORT = {_TCP: _port_table(_TCP_APPS), _UDP: _port_table(_UDP_APPS)}

_TOP_PORT_TEXT = """
80 23 443 21 22 25 3389 110 445 139 143 53 135 3306 8080 1723 111 995 993 5900
1025 587 8888 199 1720 465 548 113 81 6001 10000 514 5060 179 1026 2000 8443 8000 32768 554
26 1433 49152 2001 515 8008 49154 1027 5666 646 5000 5631 631 49153 8081 2049 88 79 5800 106
2121 1110 49155 6000 513 990 5357 427 49156 543 544 5101 144 7 389 8009 3128 444 9999 5009
7070 5190 3000 5432 1900 3986 13 1029 9 5051 6646 49157 1028 873 1755 2717 4899 9100 119 37
1521 6667 4000 7000 1034 512 49 69 115
"""
#: Ports a scanner tries first (the head of nmap's frequency list, roughly).
_TOP_PORTS = np.array([int(port) for port in _TOP_PORT_TEXT.split()], dtype=np.int64)
_WORKSTATION_OPEN = np.array([135, 139, 445, 5357, 3389], dtype=np.int64)
_SERVER_OPEN = np.array([22, 25, 53, 80, 88, 110, 135, 139, 143, 389, 443, 445, 1521, 3389, 8080, 8443])
_UDP_OPEN = np.array([53, 67, 123, 137, 161, 500, 514, 1900], dtype=np.int64)
_SCAN_TCP_PORTS = np.array([445, 22, 23, 80, 443, 3389, 8080, 139, 1433, 5900, 21, 25], dtype=np.int64)
_SCAN_UDP_PORTS = np.array([161, 53, 137, 1900, 123, 500], dtype=np.int64)

# ---------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------

#: Attack share ranges per class (flows per nominal ``flows_per_day`` at ``attack_intensity=1``); each
#: day takes a different point of the range, so the class mix shifts from day to day.
_ATTACK_SHARES: dict[int, tuple[float, float]] = {
    _IP_SWEEP: (0.008, 0.040),
    _PORT_SWEEP: (0.0035, 0.011),
    _SMURF: (0.0009, 0.003),
    _NMAP: (0.0004, 0.0012),
}
_GOLDEN = (5**0.5 - 1) / 2


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


# ---------------------------------------------------------------------------------------------------
# addresses
# ---------------------------------------------------------------------------------------------------

_RESERVED = [  # (network, prefix length) never used for internet hosts
    ("0.0.0.0", 8), ("10.0.0.0", 8), ("100.64.0.0", 10), ("127.0.0.0", 8), ("169.254.0.0", 16),
    ("172.16.0.0", 12), ("192.0.0.0", 24), ("192.0.2.0", 24), ("192.88.99.0", 24),
    ("192.168.0.0", 16), ("198.18.0.0", 15), ("198.51.100.0", 24), ("203.0.113.0", 24),
    ("224.0.0.0", 3),
]  # fmt: skip


def _ip(text: str) -> int:
    """Integer value of a dotted IPv4 address."""
    a, b, c, d = (int(part) for part in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


_RESERVED_RANGES = np.array(
    [(_ip(net), _ip(net) + (1 << (32 - bits))) for net, bits in _RESERVED], dtype=np.int64
)
_BROADCAST_ALL = _ip("255.255.255.255")
_UNSPECIFIED = 0
_SSDP_GROUP = _ip("239.255.255.250")
_IGMP_GROUPS = np.array([_ip("224.0.0.22"), _ip("224.0.0.251"), _ip("224.0.0.252")], dtype=np.int64)
_PUBLIC_RESOLVERS = np.array(
    [_ip(a) for a in ("8.8.8.8", "8.8.4.4", "1.1.1.1", "9.9.9.9", "208.67.222.222")], dtype=np.int64
)


def _public_addresses(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` distinct random public unicast IPv4 addresses (no reserved range, no .0/.255), shuffled."""
    found = np.empty(0, dtype=np.int64)
    while found.size < count:
        draw = rng.integers(_ip("1.0.0.0"), _ip("224.0.0.0"), size=2 * (count - found.size) + 64)
        last = draw & 0xFF
        keep = (last != 0) & (last != 255)
        for low, high in _RESERVED_RANGES:
            keep &= (draw < low) | (draw >= high)
        found = np.unique(np.concatenate([found, draw[keep]]))
    return rng.permutation(found)[:count]


def _dotted(values: np.ndarray) -> pl.Series:
    """Dotted-quad text of integer IPv4 addresses."""
    column = pl.Series("a", values.astype(np.int64))
    octets = [((pl.col("a") // (1 << shift)) % 256).cast(pl.String) for shift in (24, 16, 8, 0)]
    return pl.DataFrame([column]).select(pl.concat_str(octets, separator=".").alias("a")).to_series()


# ---------------------------------------------------------------------------------------------------
# the address plan
# ---------------------------------------------------------------------------------------------------

#: host octets of the server subnet, by role
_SERVER_ROLES: dict[str, tuple[int, ...]] = {
    "router": (1,),
    "resolver": (10, 11),
    "dhcp": (12,),
    "directory": (20, 21),
    "file": (30, 31),
    "mail": (40,),
    "intranet": (50, 51),
    "app": (60, 61, 62),
    "database": (70, 71),
    "syslog": (80,),
    "monitor": (81,),
    "scanner": (82,),
    "backup": (90,),
    "tftp": (91,),
    "tacacs": (92,),
    "nfs": (93,),
    "switch": tuple(range(240, 251)),
}
_PUBLIC_ROLES: dict[str, tuple[int, ...]] = {
    "router": (1,),
    "web": (10, 11),
    "dns": (53,),
    "mail": (25,),
    "vpn": (30,),
}


@dataclass(frozen=True)
class _Site:
    """The parts of the address plan that belong to the seed, shared by every day."""

    subnet_pool: np.ndarray  # candidate workstation /24 bases
    server_pool: np.ndarray  # candidate server /24 bases
    public_pool: np.ndarray  # candidate public /24 bases
    internet: np.ndarray  # internet hosts, most popular first
    authoritative: np.ndarray  # authoritative DNS servers
    activity: np.ndarray  # per-workstation activity weight (heavy users stay heavy)
    windows: np.ndarray  # per-workstation: runs Windows (ephemeral ports 49152-65535)


def _site(config: SimulationConfig) -> _Site:
    """The seed's enterprise: candidate subnets, public blocks, internet hosts, user habits."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x517E]))
    per_subnet = 180
    subnets = -(-config.workstations // per_subnet)
    pool_size = 2 * subnets + 1
    second = int(rng.integers(0, 256))
    # third octets 1-250; 253 and 254 are kept for the server subnets
    candidates = [(10 << 24) | (second << 16) | (int(b) << 8) for b in rng.permutation(250)[:pool_size] + 1]
    # a share of the pool in the other private ranges (VPN pools, branch offices, guest networks)
    extra = max(1, pool_size // 3)
    sixteen = 16 + int(rng.integers(0, 16))
    for i, b in enumerate(rng.permutation(250)[:extra] + 1):
        candidates[-(i + 1)] = (
            ((192 << 24) | (168 << 16) | (int(b) << 8))
            if i % 2 == 0
            else ((172 << 24) | (sixteen << 16) | (int(b) << 8))
        )
    subnet_pool = rng.permutation(np.array(candidates, dtype=np.int64))
    server_pool = np.array(
        [(10 << 24) | (second << 16) | (254 << 8), (172 << 24) | (sixteen << 16) | (253 << 8)],
        dtype=np.int64,
    )
    public_pool = _public_addresses(rng, 3) & ~np.int64(0xFF)
    internet = _public_addresses(rng, config.internet_hosts + 2000)
    activity = rng.lognormal(0.0, 1.0, config.workstations)
    windows = rng.random(config.workstations) < 0.85
    return _Site(
        subnet_pool=subnet_pool,
        server_pool=server_pool,
        public_pool=public_pool,
        internet=internet[: config.internet_hosts],
        authoritative=internet[config.internet_hosts :],
        activity=activity,
        windows=windows,
    )


@dataclass(frozen=True)
class _Plan:
    """One day's address plan."""

    ws_subnets: np.ndarray
    workstations: np.ndarray
    ws_subnet_of: np.ndarray  # index into ws_subnets per workstation
    ws_weights: np.ndarray
    ws_windows: np.ndarray
    server_subnet: int
    public_block: int
    servers: dict[str, np.ndarray]
    public_servers: dict[str, np.ndarray]
    internet: np.ndarray
    internet_weights: np.ndarray
    authoritative: np.ndarray
    attackers: np.ndarray
    insiders: np.ndarray  # compromised workstations used as attack sources
    live: np.ndarray  # sorted addresses that answer
    ws_sorted: np.ndarray  # sorted workstation addresses

    def all_servers(self) -> np.ndarray:
        """Every internal server and network device."""
        return np.concatenate(list(self.servers.values()))

    def internal_subnets(self) -> np.ndarray:
        """Every internal /24 in use today."""
        return np.concatenate([self.ws_subnets, [self.server_subnet]])


def _plan(config: SimulationConfig, site: _Site, day_index: int, rng: np.random.Generator) -> _Plan:
    """Day ``day_index``'s address plan: a rotating window of the subnet pool (consecutive days share
    part of it), fresh DHCP leases, the day's server subnet, public block, internet and attackers."""
    subnets = (len(site.subnet_pool) - 1) // 2
    shift = max(1, -(-subnets // 2))
    chosen = [(day_index * shift + j) % len(site.subnet_pool) for j in range(subnets)]
    ws_subnets = site.subnet_pool[chosen]
    n_ws = config.workstations
    subnet_of = rng.permutation(np.arange(n_ws) % subnets)
    hosts = np.empty(n_ws, dtype=np.int64)
    for s in range(subnets):  # DHCP hands out different addresses every day
        members = np.flatnonzero(subnet_of == s)
        hosts[members] = rng.choice(np.arange(10, 255), size=members.size, replace=False)
    workstations = ws_subnets[subnet_of] + hosts
    date = config.date_of(day_index)
    weekend = date.weekday() >= 5
    weights = site.activity * rng.lognormal(0.0, 0.3, n_ws)
    if weekend:
        weights = weights * (rng.random(n_ws) < 0.2)
        if not weights.any():
            weights[0] = 1.0
    server_subnet = int(site.server_pool[(day_index + config.seed) % len(site.server_pool)])
    public_block = int(site.public_pool[(day_index * 2 + config.seed) % len(site.public_pool)])
    servers = {
        role: np.array([server_subnet + h for h in octets], dtype=np.int64)
        for role, octets in _SERVER_ROLES.items()
    }
    public_servers = {
        role: np.array([public_block + h for h in octets], dtype=np.int64)
        for role, octets in _PUBLIC_ROLES.items()
    }
    # a quarter of the internet changes every day, and popularity is reshuffled a little
    internet = site.internet.copy()
    replace = rng.random(internet.size) < 0.25
    internet[replace] = _public_addresses(rng, int(replace.sum()) + 1)[: int(replace.sum())]
    ranks = np.arange(1, internet.size + 1) * rng.lognormal(0.0, 0.5, internet.size)
    order = np.argsort(ranks, kind="stable")
    internet = internet[order]
    popularity = 1.0 / np.arange(1, internet.size + 1) ** 1.05
    insiders = rng.choice(workstations, size=2, replace=False)
    gateways = ws_subnets + 1
    live = np.unique(
        np.concatenate(
            [workstations, gateways, *servers.values(), *public_servers.values(), _PUBLIC_RESOLVERS]
        )
    )
    return _Plan(
        ws_subnets=ws_subnets,
        workstations=workstations,
        ws_subnet_of=subnet_of,
        ws_weights=weights / weights.sum(),
        ws_windows=site.windows,
        server_subnet=server_subnet,
        public_block=public_block,
        servers=servers,
        public_servers=public_servers,
        internet=internet,
        internet_weights=popularity / popularity.sum(),
        authoritative=site.authoritative,
        attackers=_public_addresses(rng, 12),
        insiders=insiders,
        live=live,
        ws_sorted=np.sort(workstations),
    )


# ---------------------------------------------------------------------------------------------------
# time profiles
# ---------------------------------------------------------------------------------------------------

_HOURLY = {
    "office": np.array(
        [.05, .04, .03, .03, .03, .05, .12, .40, .85, 1.0, 1.0, .95, .70, .88, 1.0, .98, .90, .70,
         .40, .25, .18, .14, .10, .07]
    ),
    "office_weekend": np.array(
        [.10, .08, .06, .05, .05, .06, .08, .12, .20, .30, .38, .42, .42, .42, .42, .40, .38, .36,
         .34, .32, .28, .22, .16, .12]
    ),
    "server": np.array(
        [.55, .52, .50, .50, .50, .52, .60, .75, .92, 1.0, 1.0, .98, .92, .96, 1.0, 1.0, .95, .88,
         .78, .70, .66, .62, .60, .57]
    ),
    "night": np.array(
        [.60, 1.0, 1.0, .90, .70, .40, .15, .05, .03, .03, .03, .03, .03, .03, .03, .03, .03, .03,
         .04, .05, .08, .12, .25, .40]
    ),
}  # fmt: skip
_DAY_US = 86_400 * 1_000_000
_MINUTE_US = 60 * 1_000_000


def _minute_cdf(hourly: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cumulative minute weights: the hourly curve interpolated, with slow day-specific wobble."""
    minutes = np.arange(1440) / 60.0
    curve = np.interp(minutes, np.arange(24) + 0.5, hourly, period=24)
    wobble = np.repeat(rng.lognormal(0.0, 0.15, 96), 15)
    weights = curve * wobble
    return np.cumsum(weights / weights.sum())


# ---------------------------------------------------------------------------------------------------
# flow shapes
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
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


_SHAPES = {
    "https": _Shape(1100, 0.9, 6000, 1.7, 1.5, 1.6, tail=0.03, fail=0.015, instant=0.02),
    "http": _Shape(600, 0.8, 4000, 1.9, 0.8, 1.5, tail=0.03, fail=0.02, instant=0.03),
    "quic": _Shape(1500, 0.9, 9000, 1.6, 3.0, 1.5, tail=0.02, fail=0.01),
    "dns": _Shape(72, 0.15, 160, 0.45, 0.015, 1.0, fail=0.01, instant=0.45),
    "smb": _Shape(2500, 1.4, 9000, 2.1, 4.0, 2.0, tail=0.02, fail=0.005),
    "directory": _Shape(900, 0.7, 1800, 0.9, 0.08, 1.2, instant=0.15),
    "mail": _Shape(2500, 1.6, 1200, 1.0, 1.2, 1.2, tail=0.02),
    "database": _Shape(700, 1.0, 3000, 1.6, 0.05, 1.5, instant=0.2, tail=0.01),
    "app": _Shape(900, 0.8, 5000, 1.4, 0.2, 1.2, instant=0.1),
    "ssh": _Shape(4000, 1.8, 7000, 1.9, 60.0, 2.0, fail=0.02),
    "snmp": _Shape(85, 0.25, 320, 0.6, 0.01, 1.0, instant=0.5, fail=0.01),
    "syslog": _Shape(180, 0.9, 0, 0, 5.0, 2.5, instant=0.4, one_way=True),
    "broadcast": _Shape(90, 0.5, 0, 0, 0.0, 0.0, instant=0.85, one_way=True),
    "ssdp": _Shape(175, 0.4, 0, 0, 1.0, 1.0, instant=0.3, one_way=True),
    "update": _Shape(2500, 0.8, 2e6, 2.0, 40.0, 1.5, tail=0.05),
    "backup": _Shape(5e7, 1.5, 9000, 1.0, 600.0, 1.0),
    "ntp": _Shape(76, 0.0, 76, 0.0, 0.02, 0.8, instant=0.5, fail=0.01),
    "other": _Shape(800, 1.5, 2500, 2.0, 2.0, 2.0, tail=0.02, fail=0.05, instant=0.05),
    "inbound": _Shape(900, 1.0, 12000, 1.8, 1.2, 1.6, tail=0.02, fail=0.01, instant=0.02),
}

# ---------------------------------------------------------------------------------------------------
# the day builder
# ---------------------------------------------------------------------------------------------------

_FIELDS = ("t", "src", "dst", "spt", "dpt", "proto", "app", "duration", "out_b", "in_b", "out_p", "in_p")

#: normal traffic kinds and their share of a day's normal flows
_NORMAL_MIX: dict[str, float] = {
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

_RARE_APPS: dict[tuple[int, int], float] = {  # (proto, dpt) -> weight, client to internet
    (_TCP, 5190): 1, (_TCP, 4000): 1, (_UDP, 4000): 0.5, (_TCP, 6667): 1.5, (_TCP, 1863): 1.5,
    (_TCP, 1720): 1, (_TCP, 1723): 1, (_TCP, 554): 1.5, (_UDP, 554): 0.5, (_TCP, 7070): 0.7,
    (_TCP, 7000): 0.4, (_TCP, 119): 0.8, (_TCP, 144): 0.3, (_TCP, 21): 3, (_TCP, 115): 0.5,
    (_TCP, 23): 0.6, (_TCP, 79): 0.2, (_UDP, 69): 0.3, (_UDP, 500): 2, (_UDP, 4500): 1,
    (_TCP, 1034): 0.3, (_TCP, 513): 0.2, (_TCP, 512): 0.2, (_TCP, 514): 0.2, (_TCP, 113): 0.6,
    (_TCP, 25): 1, (_TCP, 110): 1.5, (_TCP, 22): 2,
}  # fmt: skip


class _Day:
    """Builds one day's flows: each traffic kind appends a block of columns, :meth:`frame` joins them."""

    def __init__(self, config: SimulationConfig, day_index: int, site: _Site) -> None:
        self.config = config
        self.day_index = day_index
        self.date = config.date_of(day_index)
        self.weekend = self.date.weekday() >= 5
        self.rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xDA7, day_index]))
        self.plan = _plan(config, site, day_index, self.rng)
        office = _HOURLY["office_weekend" if self.weekend else "office"]
        self.profiles = {
            "office": _minute_cdf(office, self.rng),
            "server": _minute_cdf(_HOURLY["server"], self.rng),
            "night": _minute_cdf(_HOURLY["night"], self.rng),
        }
        self.blocks: list[tuple[int, dict[str, np.ndarray]]] = []
        self._anchors: list[tuple[np.ndarray, np.ndarray]] = []  # web flows: (time, src), for DNS

    # -- low-level helpers ------------------------------------------------------------------------

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
        return minute * _MINUTE_US + self.rng.integers(0, _MINUTE_US, n)

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
        t = np.minimum(starts[session] + offsets.astype(np.int64), _DAY_US - 1)
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

    def transfer(self, shape: _Shape, n: int, proto: int | np.ndarray) -> dict[str, np.ndarray]:
        """Durations and byte counts for ``n`` flows of one shape (heavy tails, failures, zero flows)."""
        rng = self.rng
        out_b = shape.out_bytes * rng.lognormal(0.0, shape.out_sigma, n)
        in_b = shape.in_bytes * rng.lognormal(0.0, shape.in_sigma, n)
        if shape.tail:
            bulk = rng.random(n) < shape.tail
            in_b[bulk] *= 20.0 * (rng.pareto(1.1, int(bulk.sum())) + 1.0)
        duration = shape.duration_s * rng.lognormal(0.0, shape.duration_sigma, n)
        duration[rng.random(n) < shape.instant] = 0.0
        tcp = np.broadcast_to(np.asarray(proto) == _TCP, (n,))
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

    # -- normal traffic -----------------------------------------------------------------------------

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
            _NORMAL,
            n,
            t=t,
            src=src,
            dst=dst,
            spt=self.ephemeral(self.plan.ws_windows[hosts], n),
            dpt=dpt,
            proto=proto,
            **self.transfer(_SHAPES[shape], n, proto),
        )
        if anchor:
            self._anchors.append((t, src))

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
            _NORMAL,
            n,
            t=self.times(profile, n),
            src=sources[rng.integers(0, sources.size, n)],
            dst=destinations[rng.integers(0, destinations.size, n)],
            spt=self.ephemeral(False, n) if spt is None else spt,
            dpt=dpt,
            proto=proto,
            **self.transfer(_SHAPES[shape], n, proto),
        )

    def normal_traffic(self, n_normal: int) -> None:
        """Every normal traffic kind, with day-specific proportions."""
        rng = self.rng
        kinds = list(_NORMAL_MIX)
        shares = np.array([_NORMAL_MIX[k] for k in kinds]) * rng.lognormal(0.0, 0.2, len(kinds))
        counts = dict(zip(kinds, rng.multinomial(n_normal, shares / shares.sum()), strict=True))
        # web first: DNS lookups are anchored on web sessions
        for kind in kinds:
            getattr(self, f"_normal_{kind}")(int(counts[kind]))

    def _normal_web_https(self, n: int) -> None:
        """Browsing: bursts of HTTPS connections to popular sites and their CDNs."""
        internet = self.plan.internet
        self.client_sessions(
            n,
            destinations=internet,
            dst_weights=self.plan.internet_weights,
            proto=_TCP,
            dpt=443,
            shape="https",
            mean_flows=6,
            gap_s=3,
            stickiness=0.6,
            anchor=True,
        )

    def _normal_web_http(self, n: int) -> None:
        """Plain-HTTP browsing and proxies."""
        dpt = np.where(self.rng.random(n) < 0.9, 80, 8080)
        self.client_sessions(
            n,
            destinations=self.plan.internet,
            dst_weights=self.plan.internet_weights,
            proto=_TCP,
            dpt=dpt,
            shape="http",
            mean_flows=5,
            gap_s=2,
            stickiness=0.6,
            anchor=True,
        )

    def _normal_quic(self, n: int) -> None:
        """HTTP/3 over UDP 443 to the biggest sites."""
        top = self.plan.internet[:200]
        weights = self.plan.internet_weights[:200] / self.plan.internet_weights[:200].sum()
        self.client_sessions(
            n,
            destinations=top,
            dst_weights=weights,
            proto=_UDP,
            dpt=443,
            shape="quic",
            mean_flows=3,
            gap_s=5,
        )

    def _normal_dns_client(self, n: int) -> None:
        """Workstation lookups at the internal resolvers, just before their web connections."""
        if n <= 0:
            return
        rng = self.rng
        resolvers = self.plan.servers["resolver"]
        if self._anchors:
            t_all = np.concatenate([a[0] for a in self._anchors])
            src_all = np.concatenate([a[1] for a in self._anchors])
            pick = rng.integers(0, t_all.size, n)
            t = np.maximum(t_all[pick] - rng.integers(0, 1_500_000, n), 0)
            src = src_all[pick]
        else:
            hosts = self.ws_pick(n)
            t, src = self.times("office", n), self.plan.workstations[hosts]
        # each client prefers the resolver its DHCP lease names first
        primary = (src % 7 < 5).astype(np.int64)
        resolver = resolvers[np.where(rng.random(n) < 0.85, primary, 1 - primary)]
        proto = np.where(rng.random(n) < 0.02, _TCP, _UDP)
        self.add(
            _NORMAL,
            n,
            t=t,
            src=src,
            dst=resolver,
            spt=self.ephemeral(rng.random(n) < 0.85, n),
            dpt=53,
            proto=proto,
            **self.transfer(_SHAPES["dns"], n, proto),
        )

    def _normal_smb(self, n: int) -> None:
        """File shares."""
        dpt = np.where(self.rng.random(n) < 0.85, 445, 139)
        self.client_sessions(
            n,
            destinations=self.plan.servers["file"],
            proto=_TCP,
            dpt=dpt,
            shape="smb",
            mean_flows=5,
            gap_s=4,
            stickiness=0.9,
        )

    def _normal_directory(self, n: int) -> None:
        """Directory and authentication: LDAP, Kerberos, RPC, global catalog, ident."""
        ports = np.array([389, 88, 135, 3268, 445, 636, 113])
        dpt = ports[self.rng.choice(ports.size, n, p=[0.35, 0.25, 0.15, 0.08, 0.1, 0.05, 0.02])]
        self.client_sessions(
            n,
            destinations=self.plan.servers["directory"],
            proto=_TCP,
            dpt=dpt,
            shape="directory",
            mean_flows=4,
            gap_s=0.5,
            stickiness=0.8,
        )

    def _normal_mail(self, n: int) -> None:
        """Mail clients at the internal mail server."""
        ports = np.array([25, 587, 110, 143, 993])
        dpt = ports[self.rng.choice(ports.size, n, p=[0.2, 0.2, 0.25, 0.2, 0.15])]
        self.client_sessions(
            n,
            destinations=self.plan.servers["mail"],
            proto=_TCP,
            dpt=dpt,
            shape="mail",
            mean_flows=2,
            gap_s=10,
        )

    def _normal_intranet(self, n: int) -> None:
        """Internal web applications."""
        dpt = np.where(self.rng.random(n) < 0.7, 443, 80)
        self.client_sessions(
            n,
            destinations=self.plan.servers["intranet"],
            proto=_TCP,
            dpt=dpt,
            shape="https",
            mean_flows=6,
            gap_s=2,
        )

    def _normal_app_tier(self, n: int) -> None:
        """Intranet web servers calling the application servers."""
        dpt = np.where(self.rng.random(n) < 0.6, 8080, 8443)
        self.server_flows(
            n,
            sources=self.plan.servers["intranet"],
            destinations=self.plan.servers["app"],
            proto=_TCP,
            dpt=dpt,
            shape="app",
        )

    def _normal_database(self, n: int) -> None:
        """Application servers querying the databases."""
        dpt = np.where(self.rng.random(n) < 0.8, 1521, 1433)
        self.server_flows(
            n,
            sources=self.plan.servers["app"],
            destinations=self.plan.servers["database"],
            proto=_TCP,
            dpt=dpt,
            shape="database",
        )

    def _normal_netbios(self, n: int) -> None:
        """Name announcements and browser elections to the subnet broadcast address."""
        if n <= 0:
            return
        rng, plan = self.rng, self.plan
        hosts = self.ws_pick(n)
        port = np.where(rng.random(n) < 0.6, 137, 138)
        dst = plan.ws_subnets[plan.ws_subnet_of[hosts]] + 255
        self.add(
            _NORMAL,
            n,
            t=self.times("office", n),
            src=plan.workstations[hosts],
            dst=dst,
            spt=port,
            dpt=port,
            proto=_UDP,
            **self.transfer(_SHAPES["broadcast"], n, _UDP),
        )

    def _normal_ssdp(self, n: int) -> None:
        """UPnP discovery to the SSDP multicast group (and sometimes the subnet broadcast)."""
        if n <= 0:
            return
        rng, plan = self.rng, self.plan
        hosts = self.ws_pick(n)
        dst = np.where(rng.random(n) < 0.9, _SSDP_GROUP, plan.ws_subnets[plan.ws_subnet_of[hosts]] + 255)
        self.add(
            _NORMAL,
            n,
            t=self.times("office", n),
            src=plan.workstations[hosts],
            dst=dst,
            spt=self.ephemeral(True, n),
            dpt=1900,
            proto=_UDP,
            **self.transfer(_SHAPES["ssdp"], n, _UDP),
        )

    def _normal_dhcp(self, n: int) -> None:
        """Leases: discovers from 0.0.0.0 to 255.255.255.255, renewals to the DHCP server."""
        if n <= 0:
            return
        rng, plan = self.rng, self.plan
        hosts = self.ws_pick(n)
        discover = rng.random(n) < 0.3
        src = np.where(discover, _UNSPECIFIED, plan.workstations[hosts])
        dst = np.where(discover, _BROADCAST_ALL, plan.servers["dhcp"][0])
        out_b = rng.choice([328, 342, 590], n)
        self.add(
            _NORMAL,
            n,
            t=self.times("office", n),
            src=src,
            dst=dst,
            spt=68,
            dpt=67,
            proto=_UDP,
            duration=np.where(discover, 0.0, rng.uniform(0, 0.05, n).round(3)),
            out_b=out_b,
            in_b=np.where(discover, 0, out_b),
            out_p=1,
            in_p=np.where(discover, 0, 1),
        )

    def _normal_igmp(self, n: int) -> None:
        """Multicast group membership reports."""
        if n <= 0:
            return
        rng, plan = self.rng, self.plan
        hosts = self.ws_pick(n)
        packets = rng.integers(1, 3, n)
        self.add(
            _NORMAL,
            n,
            t=self.times("office", n),
            src=plan.workstations[hosts],
            dst=_IGMP_GROUPS[rng.integers(0, _IGMP_GROUPS.size, n)],
            spt=0,
            dpt=0,
            proto=_IGMP,
            duration=np.where(packets > 1, rng.uniform(0, 2, n), 0).round(3),
            out_b=packets * 40,
            in_b=0,
            out_p=packets,
            in_p=0,
        )

    def _icmp_echo(
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

    def _normal_icmp(self, n: int) -> None:
        """Pings and traceroutes from workstations: to the gateway, servers and the internet."""
        if n <= 0:
            return
        rng, plan = self.rng, self.plan
        hosts = self.ws_pick(n)
        where = rng.random(n)
        servers = plan.all_servers()
        dst = np.where(
            where < 0.3,
            plan.ws_subnets[plan.ws_subnet_of[hosts]] + 1,
            np.where(where < 0.6, servers[rng.integers(0, servers.size, n)], self.internet_pick(n)),
        )
        packets = rng.choice([1, 2, 3, 4, 4, 4], n)
        size = np.where(rng.random(n) < 0.08, 1500, np.where(rng.random(n) < 0.5, 60, 84))
        answered = rng.random(n) < 0.92
        self.add(
            _NORMAL,
            n,
            t=self.times("office", n),
            src=plan.workstations[hosts],
            dst=dst,
            spt=0,
            dpt=0,
            proto=_ICMP,
            **self._icmp_echo(n, packets=packets, size=size, answered=answered),
        )

    def _normal_ssh(self, n: int) -> None:
        """A few administrators logging in to servers (and some still use telnet)."""
        plan = self.plan
        admins = max(3, plan.workstations.size // 50)
        targets = np.concatenate([plan.all_servers(), plan.public_servers["web"], plan.internet[:50]])
        if n <= 0:
            return
        rng = self.rng
        hosts = rng.integers(0, admins, n)
        dpt = np.where(rng.random(n) < 0.9, 22, 23)
        self.add(
            _NORMAL,
            n,
            t=self.times("office", n),
            src=plan.workstations[hosts],
            dst=targets[rng.integers(0, targets.size, n)],
            spt=self.ephemeral(plan.ws_windows[hosts], n),
            dpt=dpt,
            proto=_TCP,
            **self.transfer(_SHAPES["ssh"], n, _TCP),
        )

    def _normal_rare_apps(self, n: int) -> None:
        """The long tail of named applications: messengers, streaming, FTP, VPN, news, legacy r-commands."""
        if n <= 0:
            return
        rng = self.rng
        keys = list(_RARE_APPS)
        weights = np.array([_RARE_APPS[k] for k in keys]) * rng.lognormal(0.0, 0.4, len(keys))
        pick = rng.choice(len(keys), n, p=weights / weights.sum())
        proto = np.array([k[0] for k in keys])[pick]
        dpt = np.array([k[1] for k in keys])[pick]
        hosts = self.ws_pick(n)
        self.add(
            _NORMAL,
            n,
            t=self.times("office", n),
            src=self.plan.workstations[hosts],
            dst=self.internet_pick(n),
            spt=self.ephemeral(self.plan.ws_windows[hosts], n),
            dpt=dpt,
            proto=proto,
            **self.transfer(_SHAPES["other"], n, proto),
        )

    def _normal_other_ports(self, n: int) -> None:
        """Everything without a named application: conferencing, games, vendor agents, P2P."""
        if n <= 0:
            return
        rng = self.rng
        common = np.array([3478, 3479, 5222, 5228, 8443, 8883, 1935, 3389, 9000, 5938, 6881, 7680])
        dpt = np.where(
            rng.random(n) < 0.7, common[rng.integers(0, common.size, n)], rng.integers(1024, 65536, n)
        )
        proto = np.where(rng.random(n) < 0.4, _UDP, _TCP)
        hosts = self.ws_pick(n)
        self.add(
            _NORMAL,
            n,
            t=self.times("office", n),
            src=self.plan.workstations[hosts],
            dst=self.internet_pick(n),
            spt=self.ephemeral(self.plan.ws_windows[hosts], n),
            dpt=dpt,
            proto=proto,
            **self.transfer(_SHAPES["other"], n, proto),
        )

    def _normal_resolver(self, n: int) -> None:
        """The internal resolvers recurse: forwarders and many authoritative servers."""
        if n <= 0:
            return
        rng, plan = self.rng, self.plan
        forward = rng.random(n) < 0.35
        auth = plan.authoritative[np.minimum(rng.zipf(1.3, n) - 1, plan.authoritative.size - 1)]
        dst = np.where(forward, _PUBLIC_RESOLVERS[rng.integers(0, _PUBLIC_RESOLVERS.size, n)], auth)
        resolvers = plan.servers["resolver"]
        self.add(
            _NORMAL,
            n,
            t=self.times("server", n),
            src=resolvers[rng.integers(0, 2, n)],
            dst=dst,
            spt=self.ephemeral(False, n),
            dpt=53,
            proto=_UDP,
            **self.transfer(_SHAPES["dns"], n, _UDP),
        )

    def _cycles(self, n: int, targets: np.ndarray, spacing_us: float) -> tuple[np.ndarray, np.ndarray]:
        """Periodic passes over ``targets`` spread over the whole day: (target index, time) per flow."""
        per_cycle = targets.size
        cycles = max(1, -(-n // per_cycle))
        period = _DAY_US / cycles
        k = np.arange(n)
        cycle, position = k // per_cycle, k % per_cycle
        phase = self.rng.integers(0, int(period))
        jitter = self.rng.integers(0, 200_000, n)
        t = (phase + cycle * period + position * spacing_us + jitter).astype(np.int64)
        return position, np.minimum(t, _DAY_US - 1)

    def _normal_snmp_poll(self, n: int) -> None:
        """The monitoring server polls every server, switch, gateway and public server in turn."""
        if n <= 0:
            return
        plan = self.plan
        targets = np.concatenate([plan.all_servers(), plan.ws_subnets + 1, *plan.public_servers.values()])
        position, t = self._cycles(n, targets, spacing_us=50_000)
        answered = self.rng.random(n) < 0.985
        out_b = self.rng.integers(78, 110, n)
        in_b = np.where(answered, self.rng.integers(90, 1400, n), 0)
        self.add(
            _NORMAL,
            n,
            t=t,
            src=plan.servers["monitor"][0],
            dst=targets[position],
            spt=self.ephemeral(False, n),
            dpt=161,
            proto=_UDP,
            duration=np.where(answered, self.rng.uniform(0, 0.03, n), 0).round(3),
            out_b=out_b,
            in_b=in_b,
            out_p=1,
            in_p=np.where(answered, 1, 0),
        )

    def _normal_discovery(self, n: int) -> None:
        """The monitoring server's periodic ping sweeps, one whole workstation subnet per pass (an IP
        sweep by shape, labelled normal). Passes are always complete, so there is at least one."""
        if n <= 0:
            return
        plan, rng = self.plan, self.rng
        passes = max(1, round(n / 254))
        n = passes * 254
        k = np.arange(n)
        sweep, octet = k // 254, k % 254 + 1
        first = int(rng.integers(0, plan.ws_subnets.size))
        dst = plan.ws_subnets[(first + sweep) % plan.ws_subnets.size] + octet
        period = _DAY_US / passes
        t = int(rng.integers(0, int(period))) + sweep * period + octet * 20_000 + rng.integers(0, 5_000, n)
        answered = np.isin(dst, plan.live) & (rng.random(n) < 0.95)
        self.add(
            _NORMAL,
            n,
            t=np.minimum(t.astype(np.int64), _DAY_US - 1),
            src=plan.servers["monitor"][0],
            dst=dst,
            spt=0,
            dpt=0,
            proto=_ICMP,
            **self._icmp_echo(n, packets=np.ones(n, dtype=np.int64), size=84, answered=answered),
        )

    def _normal_syslog(self, n: int) -> None:
        """Servers and network devices logging to the collector, traps to the monitoring server."""
        if n <= 0:
            return
        rng, plan = self.rng, self.plan
        sources = np.concatenate([plan.all_servers(), plan.ws_subnets + 1])
        trap = rng.random(n) < 0.1
        dpt = np.where(trap, 162, 514)
        spt = np.where(trap | (rng.random(n) < 0.5), self.ephemeral(False, n), 514)
        dst = np.where(trap, plan.servers["monitor"][0], plan.servers["syslog"][0])
        self.add(
            _NORMAL,
            n,
            t=self.times("server", n),
            src=sources[rng.integers(0, sources.size, n)],
            dst=dst,
            spt=spt,
            dpt=dpt,
            proto=_UDP,
            **self.transfer(_SHAPES["syslog"], n, _UDP),
        )

    def _normal_inbound(self, n: int) -> None:
        """Internet clients using the public servers: web, mail, VPN, DNS."""
        if n <= 0:
            return
        rng, plan = self.rng, self.plan
        session, t, count = self.sessions("server", n, 4.0, 3.0)
        clients = _public_addresses(rng, max(64, count // 3))
        src = clients[rng.integers(0, clients.size, count)][session]
        service = rng.choice(6, count, p=[0.55, 0.12, 0.12, 0.08, 0.05, 0.08])[session]
        dst_by = [plan.public_servers[r] for r in ("web", "web", "mail", "vpn", "vpn", "dns")]
        dpt_by = np.array([443, 80, 25, 500, 1723, 53])
        proto_by = np.array([_TCP, _TCP, _TCP, _UDP, _TCP, _UDP])
        dst = np.empty(n, dtype=np.int64)
        for s, servers in enumerate(dst_by):
            mask = service == s
            dst[mask] = servers[rng.integers(0, servers.size, int(mask.sum()))]
        proto = proto_by[service]
        spt = np.where(service == 3, 500, self.ephemeral(rng.random(n) < 0.6, n))
        self.add(
            _NORMAL,
            n,
            t=t,
            src=src,
            dst=dst,
            spt=spt,
            dpt=dpt_by[service],
            proto=proto,
            **self.transfer(_SHAPES["inbound"], n, proto),
        )

    def _normal_background_radiation(self, n: int) -> None:
        """Single unsolicited probes from all over the internet, dropped at the firewall."""
        if n <= 0:
            return
        rng, plan = self.rng, self.plan
        ports = np.array([23, 22, 445, 3389, 80, 8080, 1433, 5060, 25, 443, 21, 5900, 6379, 2323, 81])
        dpt = np.where(rng.random(n) < 0.8, ports[rng.integers(0, ports.size, n)], rng.integers(1, 65536, n))
        proto = np.where(rng.random(n) < 0.85, _TCP, _UDP)
        retries = rng.integers(1, 3, n)
        self.add(
            _NORMAL,
            n,
            t=self.times("server", n),
            src=_public_addresses(rng, n),
            dst=plan.public_block + rng.integers(1, 255, n),
            spt=self.ephemeral(rng.random(n) < 0.3, n),
            dpt=dpt,
            proto=proto,
            duration=np.where(retries > 1, 3.0, 0.0),
            out_b=np.where(proto == _TCP, 60, 45) * retries,
            in_b=0,
            out_p=retries,
            in_p=0,
        )

    def _normal_updates(self, n: int) -> None:
        """Nightly software updates: large downloads."""
        self.server_flows(
            n,
            sources=np.concatenate([self.plan.all_servers(), self.plan.workstations[:50]]),
            destinations=self.plan.internet[:30],
            proto=_TCP,
            dpt=443,
            shape="update",
            profile="night",
        )

    def _normal_backup(self, n: int) -> None:
        """Nightly backups: huge uploads to the backup server."""
        plan = self.plan
        sources = np.concatenate([plan.servers[r] for r in ("file", "database", "mail", "directory")])
        dpt = np.where(self.rng.random(n) < 0.7, 10000, 2049)
        self.server_flows(
            n,
            sources=sources,
            destinations=plan.servers["backup"],
            proto=_TCP,
            dpt=dpt,
            shape="backup",
            profile="night",
        )

    def _normal_ntp(self, n: int) -> None:
        """Time synchronisation with public NTP servers."""
        self.server_flows(
            n,
            sources=self.plan.all_servers(),
            destinations=self.plan.internet[:8],
            proto=_UDP,
            dpt=123,
            spt=123,
            shape="ntp",
        )

    def _normal_infrastructure(self, n: int) -> None:
        """Routing, AAA, phones booting over TFTP, NFS mounts."""
        if n <= 0:
            return
        rng, plan = self.rng, self.plan
        kind = rng.choice(4, n, p=[0.15, 0.3, 0.15, 0.4])
        switches = plan.servers["switch"]
        src_choices = [
            plan.servers["router"], switches, plan.workstations[: max(5, plan.workstations.size // 20)],
            plan.servers["app"],
        ]  # fmt: skip
        dst_choices = [plan.internet[-5:], plan.servers["tacacs"], plan.servers["tftp"], plan.servers["nfs"]]
        src = np.empty(n, dtype=np.int64)
        dst = np.empty(n, dtype=np.int64)
        for k in range(4):
            mask = kind == k
            m = int(mask.sum())
            src[mask] = src_choices[k][rng.integers(0, src_choices[k].size, m)]
            dst[mask] = dst_choices[k][rng.integers(0, dst_choices[k].size, m)]
        dpt = np.array([179, 49, 69, 2049])[kind]
        proto = np.array([_TCP, _TCP, _UDP, _TCP])[kind]
        spt = np.where(kind == 0, 179, self.ephemeral(False, n))
        self.add(
            _NORMAL,
            n,
            t=self.times("server", n),
            src=src,
            dst=dst,
            spt=spt,
            dpt=dpt,
            proto=proto,
            **self.transfer(_SHAPES["other"], n, proto),
        )

    def _normal_broadcast_ping(self, n: int) -> None:
        """Legacy devices and discovery tools pinging subnet broadcast addresses."""
        if n <= 0:
            return
        rng, plan = self.rng, self.plan
        pingers = plan.workstations[rng.choice(plan.workstations.size, 4, replace=False)]
        pingers = np.concatenate([pingers, plan.servers["monitor"]])
        who = rng.integers(0, pingers.size, n)
        subnets = plan.internal_subnets()
        dst = subnets[rng.integers(0, subnets.size, n)] + 255
        packets = rng.choice([1, 1, 2, 4, 10], n)
        size = np.where(rng.random(n) < 0.3, 1052, 84)
        answered = rng.random(n) < 0.3
        self.add(
            _NORMAL,
            n,
            t=self.times("server", n),
            src=pingers[who],
            dst=dst,
            spt=0,
            dpt=0,
            proto=_ICMP,
            **self._icmp_echo(n, packets=packets, size=size, answered=answered),
        )

    def _normal_vulnerability_scan(self, n: int) -> None:
        """The scheduled vulnerability scan: many ports on many internal hosts, labelled normal."""
        if n <= 0:
            return
        rng, plan = self.rng, self.plan
        subnets = plan.internal_subnets()
        subnet = subnets[rng.integers(0, subnets.size)]
        ports = _TOP_PORTS[: int(rng.integers(20, 60))]
        hosts = -(-n // ports.size)
        first = int(rng.integers(1, max(2, 255 - hosts)))
        k = np.arange(n)
        dst = subnet + np.minimum(first + k // ports.size, 254)
        dpt = ports[k % ports.size]
        start = int(rng.integers(int(0.5 * 3_600e6), int(4 * 3_600e6)))
        rate = rng.uniform(3, 15)
        t = np.minimum(start + (k / rate * 1e6).astype(np.int64), _DAY_US - 1)
        self.add(
            _NORMAL,
            n,
            t=t,
            src=plan.servers["scanner"][0],
            dst=dst,
            spt=self.ephemeral(False, n),
            dpt=dpt,
            proto=_TCP,
            **self.probe_replies(dst, np.full(n, _TCP), dpt, banner=0.8, filtered=0.0),
        )

    # -- attacks ------------------------------------------------------------------------------------

    def probe_replies(
        self, dst: np.ndarray, proto: np.ndarray, dpt: np.ndarray, *, banner: float, filtered: float
    ) -> dict[str, np.ndarray]:
        """What probes get back: nothing from dead or filtered addresses, RST from closed ports,
        an answer from open ones; with probability ``banner`` an open port gets a full exchange that
        looks like a short normal connection."""
        rng, plan = self.rng, self.plan
        n = dst.size
        live = np.isin(dst, plan.live) & (rng.random(n) >= filtered)
        is_ws = np.isin(dst, plan.ws_sorted)
        tcp_open = np.where(is_ws, np.isin(dpt, _WORKSTATION_OPEN), np.isin(dpt, _SERVER_OPEN))
        icmp, tcp, udp = proto == _ICMP, proto == _TCP, proto == _UDP
        is_open = live & ((tcp & tcp_open) | (udp & np.isin(dpt, _UDP_OPEN)) | icmp)
        retries = np.where(rng.random(n) < 0.8, 1, rng.integers(2, 4, n))
        probe = np.where(icmp, 84, np.where(tcp, 60, rng.integers(40, 90, n)))
        full = is_open & ~icmp & (rng.random(n) < banner)
        out_b = np.where(live, probe, probe * retries)
        out_p = np.where(live, 1, retries)
        in_b = np.where(is_open, np.where(icmp, 84, np.where(tcp, 60, rng.integers(60, 400, n))), 0)
        in_b = np.where(live & tcp & ~is_open, 40, in_b)  # RST
        in_p = (in_b > 0).astype(np.int64)
        # an open TCP port: the scanner resets the half-open connection
        out_b = np.where(is_open & tcp, out_b + 40, out_b)
        out_p = np.where(is_open & tcp, out_p + 1, out_p)
        duration = np.where(live, rng.exponential(0.004, n), (retries - 1) * 1.0)
        # banner grabs and completed handshakes look like short normal connections
        out_b = np.where(full, (rng.lognormal(5.8, 0.6, n)).astype(np.int64) + 120, out_b)
        in_b = np.where(full, (rng.lognormal(6.8, 1.0, n)).astype(np.int64) + 60, in_b)
        out_p = np.where(full, rng.integers(3, 8, n), out_p)
        in_p = np.where(full, rng.integers(2, 8, n), in_p)
        duration = np.where(full, rng.lognormal(-1.5, 1.2, n), duration)
        return {
            "duration": np.round(duration, 3),
            "out_b": out_b.astype(np.int64),
            "in_b": in_b.astype(np.int64),
            "out_p": out_p.astype(np.int64),
            "in_p": in_p.astype(np.int64),
        }

    def campaign_starts(self, count: int) -> np.ndarray:
        """Start times of ``count`` episodes, clustered in one to four campaign blocks of the day."""
        rng = self.rng
        blocks = 1 + min(3, int(rng.poisson(0.9)))
        length = rng.uniform(20, 150, blocks) * _MINUTE_US
        block_start = rng.uniform(0, _DAY_US - length)
        which = rng.integers(0, blocks, count)
        return (block_start[which] + rng.uniform(0, 1, count) * length[which]).astype(np.int64)

    def episode_times(self, start: int, n: int, rate: float) -> np.ndarray:
        """Probe times of one episode at ``rate`` probes per second, with a little jitter."""
        gaps = self.rng.exponential(1.0 / rate, n) * 0.3 + 0.7 / rate
        t = start + (np.cumsum(gaps) - gaps[0]) * 1e6
        return np.minimum(t.astype(np.int64), _DAY_US - 1)

    def attacker(self, insider_share: float) -> tuple[int, bool]:
        """An attack source for one episode: an internet address or a compromised workstation."""
        rng, plan = self.rng, self.plan
        if rng.random() < insider_share:
            return int(plan.insiders[rng.integers(0, plan.insiders.size)]), True
        return int(plan.attackers[rng.integers(0, 6)]), False

    def ip_sweeps(self, budget: int) -> None:
        """One source, one /24, one service, many last octets."""
        rng, plan = self.rng, self.plan
        starts = self.campaign_starts(max(1, budget // 150 + 1))
        episode = 0
        while budget > 0:
            src, insider = self.attacker(0.25)
            if insider or rng.random() < 0.5:
                subnets = plan.internal_subnets()
                subnet = int(subnets[rng.integers(0, subnets.size)])
            else:
                subnet = plan.public_block
            kind = rng.random()
            if kind < 0.45:
                proto, dpts = _ICMP, np.array([0])
            elif kind < 0.9:
                proto, dpts = (
                    _TCP,
                    rng.choice(_SCAN_TCP_PORTS, int(rng.choice([1, 1, 1, 2, 3])), replace=False),
                )
            else:
                proto, dpts = _UDP, rng.choice(_SCAN_UDP_PORTS, 1)
            if rng.random() < 0.6:
                low, high = 1, 254
            else:
                low = int(rng.integers(1, 200))
                high = min(254, low + int(rng.integers(16, 200)))
            octets = np.arange(low, high + 1)
            passes = [octets if rng.random() < 0.7 else rng.permutation(octets) for _ in dpts]
            dst = subnet + np.concatenate(passes)[:budget]
            n = dst.size
            dpt = np.repeat(dpts, octets.size)[:n]
            rate = float(np.exp(rng.uniform(np.log(0.3), np.log(150))))
            fixed_port = rng.random() < 0.5
            spt = (
                np.full(n, int(rng.integers(1024, 65536)))
                if fixed_port
                else self.ephemeral(rng.random() < 0.5, n)
            )
            protos = np.full(n, proto)
            # some tools complete the handshake and grab a banner from every open port
            banner = 1.0 if rng.random() < 0.35 else 0.3
            self.add(
                _IP_SWEEP,
                n,
                t=self.episode_times(int(starts[episode % starts.size]), n, rate),
                src=src,
                dst=dst,
                spt=0 if proto == _ICMP else spt,
                dpt=dpt,
                proto=protos,
                **self.probe_replies(
                    dst, protos, dpt, banner=banner, filtered=0.3 if subnet == plan.public_block else 0.0
                ),
            )
            budget -= n
            episode += 1

    def port_sweeps(self, budget: int) -> None:
        """One source, one target host, many destination ports."""
        rng, plan = self.rng, self.plan
        starts = self.campaign_starts(max(1, budget // 300 + 1))
        episode = 0
        while budget > 0:
            src, insider = self.attacker(0.3)
            choice = rng.random()
            if insider or choice < 0.3:
                pool = np.concatenate([plan.all_servers(), plan.workstations])
                pool = pool[pool != src]
                target = int(pool[rng.integers(0, pool.size)])
            elif choice < 0.75:
                public = np.concatenate(list(plan.public_servers.values()))
                target = int(public[rng.integers(0, public.size)])
            else:
                target = plan.public_block + int(rng.integers(1, 255))
            mode = rng.random()
            if mode < 0.4:
                first = int(rng.choice([1, 1, 1, int(rng.integers(1, 60000))]))
                ports = np.arange(first, min(65536, first + int(rng.integers(100, 1025))))
            elif mode < 0.8:
                ports = rng.permutation(_TOP_PORTS)[: int(rng.integers(40, _TOP_PORTS.size + 1))]
            else:
                ports = rng.choice(np.arange(1, 65536), int(rng.integers(50, 600)), replace=False)
            ports = ports[:budget]
            n = ports.size
            proto = _UDP if rng.random() < 0.1 else _TCP
            style = rng.random()
            if style < 0.6:
                spt = np.full(n, int(rng.integers(1024, 65536)))
            elif style < 0.8:
                spt = (int(rng.integers(1024, 60000)) + np.arange(n)) % 64512 + 1024
            else:
                spt = self.ephemeral(False, n)
            rate = float(np.exp(rng.uniform(np.log(1.0), np.log(400))))
            protos = np.full(n, proto)
            filtered = 0.9 if (not insider and rng.random() < 0.5) else 0.0
            banner = 1.0 if rng.random() < 0.3 else 0.2  # service version detection, or not
            self.add(
                _PORT_SWEEP,
                n,
                t=self.episode_times(int(starts[episode % starts.size]), n, rate),
                src=src,
                dst=target,
                spt=spt,
                dpt=ports,
                proto=protos,
                **self.probe_replies(np.full(n, target), protos, ports, banner=banner, filtered=filtered),
            )
            budget -= n
            episode += 1

    def nmaps(self, budget: int) -> None:
        """Host discovery over a block of an internal range, then the common ports of the hosts found."""
        rng, plan = self.rng, self.plan
        starts = self.campaign_starts(max(1, budget // 60 + 1))
        episode = 0
        while budget > 0:
            src, _ = self.attacker(0.6)
            subnets = plan.internal_subnets()
            subnet = int(subnets[rng.integers(0, subnets.size)])
            # discovery takes at most about a third of what is left, the port scan the rest
            width = int(min(rng.choice([4, 8, 16, 32]), max(2, budget // 12)))
            first = int(rng.integers(1, 255 - width))
            hosts = subnet + np.arange(first, first + width)
            # discovery: ICMP echo, TCP SYN 443, TCP ACK 80, ICMP timestamp
            d_dst = np.repeat(hosts, 4)
            d_proto = np.tile([_ICMP, _TCP, _TCP, _ICMP], width)
            d_dpt = np.tile([0, 443, 80, 0], width)
            found = hosts[np.isin(hosts, plan.live)]
            if found.size == 0:
                found = hosts[: max(1, width // 4)]
            ports = rng.permutation(_TOP_PORTS[:40])[: int(rng.integers(5, 25))]
            s_dst = np.repeat(found, ports.size)
            s_dpt = np.tile(ports, found.size)
            dst = np.concatenate([d_dst, s_dst])[:budget]
            n = dst.size
            proto = np.concatenate([d_proto, np.full(s_dst.size, _TCP)])[:n]
            dpt = np.concatenate([d_dpt, s_dpt])[:n]
            spt = np.where(proto == _ICMP, 0, int(rng.integers(32768, 65536)))
            rate = float(rng.uniform(20, 300))
            replies = self.probe_replies(dst, proto, dpt, banner=0.05, filtered=0.0)
            replies["duration"] = np.minimum(replies["duration"], 0.01)
            self.add(
                _NMAP,
                n,
                t=self.episode_times(int(starts[episode % starts.size]), n, rate),
                src=src,
                dst=dst,
                spt=spt,
                dpt=dpt,
                proto=proto,
                **replies,
            )
            budget -= n
            episode += 1

    def smurfs(self, budget: int) -> None:
        """ICMP echo floods to subnet broadcast addresses, the victim's address spoofed as source."""
        rng, plan = self.rng, self.plan
        starts = self.campaign_starts(max(1, budget // 60 + 1))
        episode = 0
        subnets = np.concatenate([plan.internal_subnets(), [plan.public_block]])
        while budget > 0:
            if rng.random() < 0.7:
                victim = int(
                    self.internet_pick(1)[0] if rng.random() < 0.5 else plan.attackers[6 + rng.integers(0, 6)]
                )
                internal_victim = False
            else:
                servers = plan.all_servers()
                victim = int(servers[rng.integers(0, servers.size)])
                internal_victim = True
            amplifiers = (
                rng.choice(subnets, int(rng.integers(1, min(4, subnets.size) + 1)), replace=False) + 255
            )
            n = min(budget, int(rng.integers(15, 120)))
            dst = amplifiers[rng.integers(0, amplifiers.size, n)]
            packets = np.maximum(1, rng.lognormal(1.2, 1.0, n).astype(np.int64))
            size = np.where(rng.random() < 0.5, rng.choice([1052, 1500, 1028, 548]), 84)
            answered = internal_victim & (rng.random(n) < 0.2)
            echo = self._icmp_echo(n, packets=packets, size=size, answered=answered)
            echo["duration"] = np.where(packets > 1, (packets - 1) * rng.uniform(0.001, 0.5), 0).round(3)
            rate = float(np.exp(rng.uniform(np.log(0.5), np.log(20))))
            self.add(
                _SMURF,
                n,
                t=self.episode_times(int(starts[episode % starts.size]), n, rate),
                src=victim,
                dst=dst,
                spt=0,
                dpt=0,
                proto=_ICMP,
                **echo,
            )
            budget -= n
            episode += 1

    def attack_budgets(self) -> dict[int, int]:
        """Flows per attack class today: a day-specific point of each class's share range."""
        config = self.config
        if config.attack_intensity == 0:
            return {label: 0 for label in _ATTACK_SHARES}
        budgets: dict[int, int] = {}
        # attackers keep no office hours: budgets follow the nominal volume, not the day's load
        volume = config.flows_per_day * config.attack_intensity
        floor = int(np.clip(round(0.005 * config.flows_per_day), 5, 40))
        for label, (low, high) in _ATTACK_SHARES.items():
            # the point in the range walks by the golden ratio from day to day (from a per-class,
            # per-seed offset): consecutive days are always far apart, whatever the number of days
            offset = np.random.default_rng(np.random.SeedSequence([config.seed, 0xC1A55, label])).random()
            position = (offset + self.day_index * _GOLDEN) % 1.0
            share = low * (high / low) ** position * self.rng.lognormal(0.0, 0.08)
            budgets[label] = max(floor, round(share * volume))
        return budgets

    # -- assembly -----------------------------------------------------------------------------------

    def build(self) -> pl.DataFrame:
        """All of the day's flows as the canonical table, sorted by time, with counters."""
        config = self.config
        week = 7.0 / (5.0 + 2.0 * config.weekend_load)
        factor = week * (config.weekend_load if self.weekend else 1.0)
        n_total = max(100, round(config.flows_per_day * factor * self.rng.lognormal(0.0, 0.06)))
        budgets = self.attack_budgets()
        n_normal = max(50, n_total - sum(budgets.values()))
        self.normal_traffic(n_normal)
        self.ip_sweeps(budgets[_IP_SWEEP])
        self.port_sweeps(budgets[_PORT_SWEEP])
        self.smurfs(budgets[_SMURF])
        self.nmaps(budgets[_NMAP])
        return self.frame()

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
            proto == _TCP,
            _APP_BY_PORT[_TCP][dpt],
            np.where(proto == _UDP, _APP_BY_PORT[_UDP][dpt], _APP_CODE["others"]),
        )
        by_port = np.where(
            proto == _ICMP, _APP_CODE["icmp"], np.where(proto == _IGMP, _APP_CODE["igmp"], by_port)
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
                "src": _dotted(data["src"]),
                "dst": _dotted(data["dst"]),
                "spt": spt,
                "dpt": dpt,
                "proto": pl.Series(proto).replace_strict(dict(enumerate(_PROTOS)), return_dtype=pl.String),
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
        canonical = dict(enumerate(NAD_LABELS)) | {_NORMAL: NORMAL}
        frame = frame.with_columns(
            label=label_codes.replace_strict(canonical, return_dtype=pl.String),
            label_original=original,
            day=pl.lit(self.date, dtype=pl.Date),
        )
        log.info(
            "simulated %s: %d flows, %d attacks",
            self.date.isoformat(),
            n,
            int((labels != _NORMAL).sum()),
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


# ---------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------


def simulate_day(config: SimulationConfig, day_index: int) -> pl.DataFrame:
    """Day ``day_index`` (0-based) of the simulation: the canonical table of that day, sorted by time.

    The result depends only on the configuration and the index, never on the other days, so one day
    can be regenerated on its own.
    """
    if isinstance(day_index, bool) or not isinstance(day_index, int | np.integer):
        raise ConfigError(f"day_index must be an integer, got {day_index!r}")
    if not 0 <= day_index < config.days:
        raise ConfigError(f"day_index must be between 0 and {config.days - 1}, got {day_index}")
    return _Day(config, int(day_index), _site(config)).build()


def simulate(config: SimulationConfig | None = None) -> pl.DataFrame:
    """The whole simulation: every day's flows in one canonical table, sorted by time.

    Columns: see :data:`COLUMNS` (the canonical flow columns, packet counts, the twelve ``cnt_*``
    counters, ``label`` / ``label_original`` and the ``day`` date).
    """
    config = config or SimulationConfig()
    site = _site(config)
    return pl.concat([_Day(config, day, site).build() for day in range(config.days)], how="vertical")


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
        pl.col("proto").str.to_lowercase().replace_strict(_PROTO_NUMBERS, default=None, return_dtype=pl.Int64)
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
            .then(pl.lit(NAD_LABELS[_NORMAL]))
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
    site = _site(config)
    names = [f"{config.date_of(day).isoformat()}.{output_format}" for day in range(config.days)]
    with atomic_directory(out_dir, overwrite=True) as temporary:
        for day, name in enumerate(names):
            frame = _Day(config, day, site).build()
            if output_format == "csv":
                write_nad_csv(frame, temporary / name)
            else:
                with atomic_path(temporary / name) as part:
                    frame.write_parquet(part)
    return [out_dir / name for name in names]
