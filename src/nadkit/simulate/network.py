"""The simulated enterprise's network: protocols, applications and ports, IPv4 address helpers, and
the address plan (the seed's :class:`Site`, shared by every day, and each day's :class:`Plan`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from nadkit.schema import PROTOCOL_NAMES
from nadkit.simulate.config import SimulationConfig

# ---------------------------------------------------------------------------------------------------
# protocols, applications, ports
# ---------------------------------------------------------------------------------------------------

PROTOS = ("icmp", "igmp", "tcp", "udp")
ICMP, IGMP, TCP, UDP = range(4)
PROTO_NUMBERS = {name: number for number, name in PROTOCOL_NAMES.items()}

_APP_NAMES = """
aim auth bgp bootpc bootps domain finger ftp h323 http https icmp
icq igmp irc isakmp microsoft-ds msn netbios-dgm netbios-ns netbios-ssn news nfs nntp
others pop3 pptp rcmd real-audio rexec rlogin roadrunner rtsp sftp smtp snmp
snmp-trap sql-net ssdp ssh syslog tacacs telnet tftp vdolive
"""
#: The 45 application names of the NAD 2021 data.
APPS: tuple[str, ...] = tuple(_APP_NAMES.split())
APP_CODE = {name: code for code, name in enumerate(APPS)}

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
    table = np.full(65536, APP_CODE["others"], dtype=np.int16)
    for port, app in mapping.items():
        table[port] = APP_CODE[app]
    return table


APP_BY_PORT = {TCP: _port_table(_TCP_APPS), UDP: _port_table(_UDP_APPS)}

_TOP_PORT_TEXT = """
80 23 443 21 22 25 3389 110 445 139 143 53 135 3306 8080 1723 111 995 993 5900
1025 587 8888 199 1720 465 548 113 81 6001 10000 514 5060 179 1026 2000 8443 8000 32768 554
26 1433 49152 2001 515 8008 49154 1027 5666 646 5000 5631 631 49153 8081 2049 88 79 5800 106
2121 1110 49155 6000 513 990 5357 427 49156 543 544 5101 144 7 389 8009 3128 444 9999 5009
7070 5190 3000 5432 1900 3986 13 1029 9 5051 6646 49157 1028 873 1755 2717 4899 9100 119 37
1521 6667 4000 7000 1034 512 49 69 115
"""
#: Ports a scanner tries first (the head of nmap's frequency list, roughly).
TOP_PORTS = np.array([int(port) for port in _TOP_PORT_TEXT.split()], dtype=np.int64)
#: Ports that answer probes: workstations' and servers' TCP services, UDP services.
WORKSTATION_OPEN = np.array([135, 139, 445, 5357, 3389], dtype=np.int64)
SERVER_OPEN = np.array([22, 25, 53, 80, 88, 110, 135, 139, 143, 389, 443, 445, 1521, 3389, 8080, 8443])
UDP_OPEN = np.array([53, 67, 123, 137, 161, 500, 514, 1900], dtype=np.int64)


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
BROADCAST_ALL = _ip("255.255.255.255")
UNSPECIFIED = 0
SSDP_GROUP = _ip("239.255.255.250")
IGMP_GROUPS = np.array([_ip("224.0.0.22"), _ip("224.0.0.251"), _ip("224.0.0.252")], dtype=np.int64)
PUBLIC_RESOLVERS = np.array(
    [_ip(a) for a in ("8.8.8.8", "8.8.4.4", "1.1.1.1", "9.9.9.9", "208.67.222.222")], dtype=np.int64
)


def public_addresses(rng: np.random.Generator, count: int) -> np.ndarray:
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


def dotted(values: np.ndarray) -> pl.Series:
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
class Site:
    """The parts of the address plan that belong to the seed, shared by every day."""

    subnet_pool: np.ndarray  # candidate workstation /24 bases
    server_pool: np.ndarray  # candidate server /24 bases
    public_pool: np.ndarray  # candidate public /24 bases
    internet: np.ndarray  # internet hosts, most popular first
    authoritative: np.ndarray  # authoritative DNS servers
    activity: np.ndarray  # per-workstation activity weight (heavy users stay heavy)
    windows: np.ndarray  # per-workstation: runs Windows (ephemeral ports 49152-65535)


def build_site(config: SimulationConfig) -> Site:
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
    public_pool = public_addresses(rng, 3) & ~np.int64(0xFF)
    internet = public_addresses(rng, config.internet_hosts + 2000)
    activity = rng.lognormal(0.0, 1.0, config.workstations)
    windows = rng.random(config.workstations) < 0.85
    return Site(
        subnet_pool=subnet_pool,
        server_pool=server_pool,
        public_pool=public_pool,
        internet=internet[: config.internet_hosts],
        authoritative=internet[config.internet_hosts :],
        activity=activity,
        windows=windows,
    )


@dataclass(frozen=True)
class Plan:
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


def day_plan(config: SimulationConfig, site: Site, day_index: int, rng: np.random.Generator) -> Plan:
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
    internet[replace] = public_addresses(rng, int(replace.sum()) + 1)[: int(replace.sum())]
    ranks = np.arange(1, internet.size + 1) * rng.lognormal(0.0, 0.5, internet.size)
    order = np.argsort(ranks, kind="stable")
    internet = internet[order]
    popularity = 1.0 / np.arange(1, internet.size + 1) ** 1.05
    insiders = rng.choice(workstations, size=2, replace=False)
    gateways = ws_subnets + 1
    live = np.unique(
        np.concatenate(
            [workstations, gateways, *servers.values(), *public_servers.values(), PUBLIC_RESOLVERS]
        )
    )
    return Plan(
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
        attackers=public_addresses(rng, 12),
        insiders=insiders,
        live=live,
        ws_sorted=np.sort(workstations),
    )
