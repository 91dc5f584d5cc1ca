"""Normal traffic of servers, network devices and the internet: application and database tiers,
recursive DNS, monitoring (SNMP polls, ping sweeps), logging, internet clients of the public servers,
background radiation, nightly updates and backups, time sync, routing and AAA, broadcast pings and the
scheduled vulnerability scan. Some of it looks like an attack by shape and is labelled normal. One
generator per traffic kind, each a function of the day and the number of flows to add."""

from __future__ import annotations

import numpy as np

from nadkit.simulate.attacks import probe_replies
from nadkit.simulate.config import LABEL_NORMAL
from nadkit.simulate.day import SHAPES, DayBuilder
from nadkit.simulate.load import DAY_US
from nadkit.simulate.network import ICMP, PUBLIC_RESOLVERS, TCP, TOP_PORTS, UDP, public_addresses


def app_tier(day: DayBuilder, n: int) -> None:
    """Intranet web servers calling the application servers."""
    dpt = np.where(day.rng.random(n) < 0.6, 8080, 8443)
    day.server_flows(
        n,
        sources=day.plan.servers["intranet"],
        destinations=day.plan.servers["app"],
        proto=TCP,
        dpt=dpt,
        shape="app",
    )


def database(day: DayBuilder, n: int) -> None:
    """Application servers querying the databases."""
    dpt = np.where(day.rng.random(n) < 0.8, 1521, 1433)
    day.server_flows(
        n,
        sources=day.plan.servers["app"],
        destinations=day.plan.servers["database"],
        proto=TCP,
        dpt=dpt,
        shape="database",
    )


def resolver(day: DayBuilder, n: int) -> None:
    """The internal resolvers recurse: forwarders and many authoritative servers."""
    if n <= 0:
        return
    rng, plan = day.rng, day.plan
    forward = rng.random(n) < 0.35
    auth = plan.authoritative[np.minimum(rng.zipf(1.3, n) - 1, plan.authoritative.size - 1)]
    dst = np.where(forward, PUBLIC_RESOLVERS[rng.integers(0, PUBLIC_RESOLVERS.size, n)], auth)
    resolvers = plan.servers["resolver"]
    day.add(
        LABEL_NORMAL,
        n,
        t=day.times("server", n),
        src=resolvers[rng.integers(0, 2, n)],
        dst=dst,
        spt=day.ephemeral(False, n),
        dpt=53,
        proto=UDP,
        **day.transfer(SHAPES["dns"], n, UDP),
    )


def snmp_poll(day: DayBuilder, n: int) -> None:
    """The monitoring server polls every server, switch, gateway and public server in turn."""
    if n <= 0:
        return
    plan = day.plan
    targets = np.concatenate([plan.all_servers(), plan.ws_subnets + 1, *plan.public_servers.values()])
    position, t = day.cycles(n, targets, spacing_us=50_000)
    answered = day.rng.random(n) < 0.985
    out_b = day.rng.integers(78, 110, n)
    in_b = np.where(answered, day.rng.integers(90, 1400, n), 0)
    day.add(
        LABEL_NORMAL,
        n,
        t=t,
        src=plan.servers["monitor"][0],
        dst=targets[position],
        spt=day.ephemeral(False, n),
        dpt=161,
        proto=UDP,
        duration=np.where(answered, day.rng.uniform(0, 0.03, n), 0).round(3),
        out_b=out_b,
        in_b=in_b,
        out_p=1,
        in_p=np.where(answered, 1, 0),
    )


def discovery(day: DayBuilder, n: int) -> None:
    """The monitoring server's periodic ping sweeps, one whole workstation subnet per pass (an IP
    sweep by shape, labelled normal). Passes are always complete, so there is at least one."""
    if n <= 0:
        return
    plan, rng = day.plan, day.rng
    passes = max(1, round(n / 254))
    n = passes * 254
    k = np.arange(n)
    sweep, octet = k // 254, k % 254 + 1
    first = int(rng.integers(0, plan.ws_subnets.size))
    dst = plan.ws_subnets[(first + sweep) % plan.ws_subnets.size] + octet
    period = DAY_US / passes
    t = int(rng.integers(0, int(period))) + sweep * period + octet * 20_000 + rng.integers(0, 5_000, n)
    answered = np.isin(dst, plan.live) & (rng.random(n) < 0.95)
    day.add(
        LABEL_NORMAL,
        n,
        t=np.minimum(t.astype(np.int64), DAY_US - 1),
        src=plan.servers["monitor"][0],
        dst=dst,
        spt=0,
        dpt=0,
        proto=ICMP,
        **day.icmp_echo(n, packets=np.ones(n, dtype=np.int64), size=84, answered=answered),
    )


def syslog(day: DayBuilder, n: int) -> None:
    """Servers and network devices logging to the collector, traps to the monitoring server."""
    if n <= 0:
        return
    rng, plan = day.rng, day.plan
    sources = np.concatenate([plan.all_servers(), plan.ws_subnets + 1])
    trap = rng.random(n) < 0.1
    dpt = np.where(trap, 162, 514)
    spt = np.where(trap | (rng.random(n) < 0.5), day.ephemeral(False, n), 514)
    dst = np.where(trap, plan.servers["monitor"][0], plan.servers["syslog"][0])
    day.add(
        LABEL_NORMAL,
        n,
        t=day.times("server", n),
        src=sources[rng.integers(0, sources.size, n)],
        dst=dst,
        spt=spt,
        dpt=dpt,
        proto=UDP,
        **day.transfer(SHAPES["syslog"], n, UDP),
    )


def inbound(day: DayBuilder, n: int) -> None:
    """Internet clients using the public servers: web, mail, VPN, DNS."""
    if n <= 0:
        return
    rng, plan = day.rng, day.plan
    session, t, count = day.sessions("server", n, 4.0, 3.0)
    clients = public_addresses(rng, max(64, count // 3))
    src = clients[rng.integers(0, clients.size, count)][session]
    service = rng.choice(6, count, p=[0.55, 0.12, 0.12, 0.08, 0.05, 0.08])[session]
    dst_by = [plan.public_servers[r] for r in ("web", "web", "mail", "vpn", "vpn", "dns")]
    dpt_by = np.array([443, 80, 25, 500, 1723, 53])
    proto_by = np.array([TCP, TCP, TCP, UDP, TCP, UDP])
    dst = np.empty(n, dtype=np.int64)
    for s, servers in enumerate(dst_by):
        mask = service == s
        dst[mask] = servers[rng.integers(0, servers.size, int(mask.sum()))]
    proto = proto_by[service]
    spt = np.where(service == 3, 500, day.ephemeral(rng.random(n) < 0.6, n))
    day.add(
        LABEL_NORMAL,
        n,
        t=t,
        src=src,
        dst=dst,
        spt=spt,
        dpt=dpt_by[service],
        proto=proto,
        **day.transfer(SHAPES["inbound"], n, proto),
    )


def background_radiation(day: DayBuilder, n: int) -> None:
    """Single unsolicited probes from all over the internet, dropped at the firewall."""
    if n <= 0:
        return
    rng, plan = day.rng, day.plan
    ports = np.array([23, 22, 445, 3389, 80, 8080, 1433, 5060, 25, 443, 21, 5900, 6379, 2323, 81])
    dpt = np.where(rng.random(n) < 0.8, ports[rng.integers(0, ports.size, n)], rng.integers(1, 65536, n))
    proto = np.where(rng.random(n) < 0.85, TCP, UDP)
    retries = rng.integers(1, 3, n)
    day.add(
        LABEL_NORMAL,
        n,
        t=day.times("server", n),
        src=public_addresses(rng, n),
        dst=plan.public_block + rng.integers(1, 255, n),
        spt=day.ephemeral(rng.random(n) < 0.3, n),
        dpt=dpt,
        proto=proto,
        duration=np.where(retries > 1, 3.0, 0.0),
        out_b=np.where(proto == TCP, 60, 45) * retries,
        in_b=0,
        out_p=retries,
        in_p=0,
    )


def updates(day: DayBuilder, n: int) -> None:
    """Nightly software updates: large downloads."""
    day.server_flows(
        n,
        sources=np.concatenate([day.plan.all_servers(), day.plan.workstations[:50]]),
        destinations=day.plan.internet[:30],
        proto=TCP,
        dpt=443,
        shape="update",
        profile="night",
    )


def backup(day: DayBuilder, n: int) -> None:
    """Nightly backups: huge uploads to the backup server."""
    plan = day.plan
    sources = np.concatenate([plan.servers[r] for r in ("file", "database", "mail", "directory")])
    dpt = np.where(day.rng.random(n) < 0.7, 10000, 2049)
    day.server_flows(
        n,
        sources=sources,
        destinations=plan.servers["backup"],
        proto=TCP,
        dpt=dpt,
        shape="backup",
        profile="night",
    )


def ntp(day: DayBuilder, n: int) -> None:
    """Time synchronisation with public NTP servers."""
    day.server_flows(
        n,
        sources=day.plan.all_servers(),
        destinations=day.plan.internet[:8],
        proto=UDP,
        dpt=123,
        spt=123,
        shape="ntp",
    )


def infrastructure(day: DayBuilder, n: int) -> None:
    """Routing, AAA, phones booting over TFTP, NFS mounts."""
    if n <= 0:
        return
    rng, plan = day.rng, day.plan
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
    proto = np.array([TCP, TCP, UDP, TCP])[kind]
    spt = np.where(kind == 0, 179, day.ephemeral(False, n))
    day.add(
        LABEL_NORMAL,
        n,
        t=day.times("server", n),
        src=src,
        dst=dst,
        spt=spt,
        dpt=dpt,
        proto=proto,
        **day.transfer(SHAPES["other"], n, proto),
    )


def broadcast_ping(day: DayBuilder, n: int) -> None:
    """Legacy devices and discovery tools pinging subnet broadcast addresses."""
    if n <= 0:
        return
    rng, plan = day.rng, day.plan
    pingers = plan.workstations[rng.choice(plan.workstations.size, 4, replace=False)]
    pingers = np.concatenate([pingers, plan.servers["monitor"]])
    who = rng.integers(0, pingers.size, n)
    subnets = plan.internal_subnets()
    dst = subnets[rng.integers(0, subnets.size, n)] + 255
    packets = rng.choice([1, 1, 2, 4, 10], n)
    size = np.where(rng.random(n) < 0.3, 1052, 84)
    answered = rng.random(n) < 0.3
    day.add(
        LABEL_NORMAL,
        n,
        t=day.times("server", n),
        src=pingers[who],
        dst=dst,
        spt=0,
        dpt=0,
        proto=ICMP,
        **day.icmp_echo(n, packets=packets, size=size, answered=answered),
    )


def vulnerability_scan(day: DayBuilder, n: int) -> None:
    """The scheduled vulnerability scan: many ports on many internal hosts, labelled normal."""
    if n <= 0:
        return
    rng, plan = day.rng, day.plan
    subnets = plan.internal_subnets()
    subnet = subnets[rng.integers(0, subnets.size)]
    ports = TOP_PORTS[: int(rng.integers(20, 60))]
    hosts = -(-n // ports.size)
    first = int(rng.integers(1, max(2, 255 - hosts)))
    k = np.arange(n)
    dst = subnet + np.minimum(first + k // ports.size, 254)
    dpt = ports[k % ports.size]
    start = int(rng.integers(int(0.5 * 3_600e6), int(4 * 3_600e6)))
    rate = rng.uniform(3, 15)
    t = np.minimum(start + (k / rate * 1e6).astype(np.int64), DAY_US - 1)
    day.add(
        LABEL_NORMAL,
        n,
        t=t,
        src=plan.servers["scanner"][0],
        dst=dst,
        spt=day.ephemeral(False, n),
        dpt=dpt,
        proto=TCP,
        **probe_replies(day, dst, np.full(n, TCP), dpt, banner=0.8, filtered=0.0),
    )
