"""Normal traffic that workstations start: browsing, DNS lookups, file shares, directory, mail and
intranet sessions, broadcast and multicast chatter (NetBIOS, SSDP, DHCP, IGMP), pings, administrators'
SSH, and the long tail of other applications and ports. One generator per traffic kind, each a function
of the day and the number of flows to add."""

from __future__ import annotations

import numpy as np

from nadkit.simulate.config import LABEL_NORMAL
from nadkit.simulate.day import SHAPES, DayBuilder
from nadkit.simulate.network import BROADCAST_ALL, ICMP, IGMP, IGMP_GROUPS, SSDP_GROUP, TCP, UDP, UNSPECIFIED

_RARE_APPS: dict[tuple[int, int], float] = {  # (proto, dpt) -> weight, client to internet
    (TCP, 5190): 1, (TCP, 4000): 1, (UDP, 4000): 0.5, (TCP, 6667): 1.5, (TCP, 1863): 1.5,
    (TCP, 1720): 1, (TCP, 1723): 1, (TCP, 554): 1.5, (UDP, 554): 0.5, (TCP, 7070): 0.7,
    (TCP, 7000): 0.4, (TCP, 119): 0.8, (TCP, 144): 0.3, (TCP, 21): 3, (TCP, 115): 0.5,
    (TCP, 23): 0.6, (TCP, 79): 0.2, (UDP, 69): 0.3, (UDP, 500): 2, (UDP, 4500): 1,
    (TCP, 1034): 0.3, (TCP, 513): 0.2, (TCP, 512): 0.2, (TCP, 514): 0.2, (TCP, 113): 0.6,
    (TCP, 25): 1, (TCP, 110): 1.5, (TCP, 22): 2,
}  # fmt: skip


def web_https(day: DayBuilder, n: int) -> None:
    """Browsing: bursts of HTTPS connections to popular sites and their CDNs."""
    internet = day.plan.internet
    day.client_sessions(
        n,
        destinations=internet,
        dst_weights=day.plan.internet_weights,
        proto=TCP,
        dpt=443,
        shape="https",
        mean_flows=6,
        gap_s=3,
        stickiness=0.6,
        anchor=True,
    )


def web_http(day: DayBuilder, n: int) -> None:
    """Plain-HTTP browsing and proxies."""
    dpt = np.where(day.rng.random(n) < 0.9, 80, 8080)
    day.client_sessions(
        n,
        destinations=day.plan.internet,
        dst_weights=day.plan.internet_weights,
        proto=TCP,
        dpt=dpt,
        shape="http",
        mean_flows=5,
        gap_s=2,
        stickiness=0.6,
        anchor=True,
    )


def quic(day: DayBuilder, n: int) -> None:
    """HTTP/3 over UDP 443 to the biggest sites."""
    top = day.plan.internet[:200]
    weights = day.plan.internet_weights[:200] / day.plan.internet_weights[:200].sum()
    day.client_sessions(
        n,
        destinations=top,
        dst_weights=weights,
        proto=UDP,
        dpt=443,
        shape="quic",
        mean_flows=3,
        gap_s=5,
    )


def dns_client(day: DayBuilder, n: int) -> None:
    """Workstation lookups at the internal resolvers, just before their web connections."""
    if n <= 0:
        return
    rng = day.rng
    resolvers = day.plan.servers["resolver"]
    if day.anchors:
        t_all = np.concatenate([a[0] for a in day.anchors])
        src_all = np.concatenate([a[1] for a in day.anchors])
        pick = rng.integers(0, t_all.size, n)
        t = np.maximum(t_all[pick] - rng.integers(0, 1_500_000, n), 0)
        src = src_all[pick]
    else:
        hosts = day.ws_pick(n)
        t, src = day.times("office", n), day.plan.workstations[hosts]
    # each client prefers the resolver its DHCP lease names first
    primary = (src % 7 < 5).astype(np.int64)
    resolver = resolvers[np.where(rng.random(n) < 0.85, primary, 1 - primary)]
    proto = np.where(rng.random(n) < 0.02, TCP, UDP)
    day.add(
        LABEL_NORMAL,
        n,
        t=t,
        src=src,
        dst=resolver,
        spt=day.ephemeral(rng.random(n) < 0.85, n),
        dpt=53,
        proto=proto,
        **day.transfer(SHAPES["dns"], n, proto),
    )


def smb(day: DayBuilder, n: int) -> None:
    """File shares."""
    dpt = np.where(day.rng.random(n) < 0.85, 445, 139)
    day.client_sessions(
        n,
        destinations=day.plan.servers["file"],
        proto=TCP,
        dpt=dpt,
        shape="smb",
        mean_flows=5,
        gap_s=4,
        stickiness=0.9,
    )


def directory(day: DayBuilder, n: int) -> None:
    """Directory and authentication: LDAP, Kerberos, RPC, global catalog, ident."""
    ports = np.array([389, 88, 135, 3268, 445, 636, 113])
    dpt = ports[day.rng.choice(ports.size, n, p=[0.35, 0.25, 0.15, 0.08, 0.1, 0.05, 0.02])]
    day.client_sessions(
        n,
        destinations=day.plan.servers["directory"],
        proto=TCP,
        dpt=dpt,
        shape="directory",
        mean_flows=4,
        gap_s=0.5,
        stickiness=0.8,
    )


def mail(day: DayBuilder, n: int) -> None:
    """Mail clients at the internal mail server."""
    ports = np.array([25, 587, 110, 143, 993])
    dpt = ports[day.rng.choice(ports.size, n, p=[0.2, 0.2, 0.25, 0.2, 0.15])]
    day.client_sessions(
        n,
        destinations=day.plan.servers["mail"],
        proto=TCP,
        dpt=dpt,
        shape="mail",
        mean_flows=2,
        gap_s=10,
    )


def intranet(day: DayBuilder, n: int) -> None:
    """Internal web applications."""
    dpt = np.where(day.rng.random(n) < 0.7, 443, 80)
    day.client_sessions(
        n,
        destinations=day.plan.servers["intranet"],
        proto=TCP,
        dpt=dpt,
        shape="https",
        mean_flows=6,
        gap_s=2,
    )


def netbios(day: DayBuilder, n: int) -> None:
    """Name announcements and browser elections to the subnet broadcast address."""
    if n <= 0:
        return
    rng, plan = day.rng, day.plan
    hosts = day.ws_pick(n)
    port = np.where(rng.random(n) < 0.6, 137, 138)
    dst = plan.ws_subnets[plan.ws_subnet_of[hosts]] + 255
    day.add(
        LABEL_NORMAL,
        n,
        t=day.times("office", n),
        src=plan.workstations[hosts],
        dst=dst,
        spt=port,
        dpt=port,
        proto=UDP,
        **day.transfer(SHAPES["broadcast"], n, UDP),
    )


def ssdp(day: DayBuilder, n: int) -> None:
    """UPnP discovery to the SSDP multicast group (and sometimes the subnet broadcast)."""
    if n <= 0:
        return
    rng, plan = day.rng, day.plan
    hosts = day.ws_pick(n)
    dst = np.where(rng.random(n) < 0.9, SSDP_GROUP, plan.ws_subnets[plan.ws_subnet_of[hosts]] + 255)
    day.add(
        LABEL_NORMAL,
        n,
        t=day.times("office", n),
        src=plan.workstations[hosts],
        dst=dst,
        spt=day.ephemeral(True, n),
        dpt=1900,
        proto=UDP,
        **day.transfer(SHAPES["ssdp"], n, UDP),
    )


def dhcp(day: DayBuilder, n: int) -> None:
    """Leases: discovers from 0.0.0.0 to 255.255.255.255, renewals to the DHCP server."""
    if n <= 0:
        return
    rng, plan = day.rng, day.plan
    hosts = day.ws_pick(n)
    discover = rng.random(n) < 0.3
    src = np.where(discover, UNSPECIFIED, plan.workstations[hosts])
    dst = np.where(discover, BROADCAST_ALL, plan.servers["dhcp"][0])
    out_b = rng.choice([328, 342, 590], n)
    day.add(
        LABEL_NORMAL,
        n,
        t=day.times("office", n),
        src=src,
        dst=dst,
        spt=68,
        dpt=67,
        proto=UDP,
        duration=np.where(discover, 0.0, rng.uniform(0, 0.05, n).round(3)),
        out_b=out_b,
        in_b=np.where(discover, 0, out_b),
        out_p=1,
        in_p=np.where(discover, 0, 1),
    )


def igmp(day: DayBuilder, n: int) -> None:
    """Multicast group membership reports."""
    if n <= 0:
        return
    rng, plan = day.rng, day.plan
    hosts = day.ws_pick(n)
    packets = rng.integers(1, 3, n)
    day.add(
        LABEL_NORMAL,
        n,
        t=day.times("office", n),
        src=plan.workstations[hosts],
        dst=IGMP_GROUPS[rng.integers(0, IGMP_GROUPS.size, n)],
        spt=0,
        dpt=0,
        proto=IGMP,
        duration=np.where(packets > 1, rng.uniform(0, 2, n), 0).round(3),
        out_b=packets * 40,
        in_b=0,
        out_p=packets,
        in_p=0,
    )


def icmp(day: DayBuilder, n: int) -> None:
    """Pings and traceroutes from workstations: to the gateway, servers and the internet."""
    if n <= 0:
        return
    rng, plan = day.rng, day.plan
    hosts = day.ws_pick(n)
    where = rng.random(n)
    servers = plan.all_servers()
    dst = np.where(
        where < 0.3,
        plan.ws_subnets[plan.ws_subnet_of[hosts]] + 1,
        np.where(where < 0.6, servers[rng.integers(0, servers.size, n)], day.internet_pick(n)),
    )
    packets = rng.choice([1, 2, 3, 4, 4, 4], n)
    size = np.where(rng.random(n) < 0.08, 1500, np.where(rng.random(n) < 0.5, 60, 84))
    answered = rng.random(n) < 0.92
    day.add(
        LABEL_NORMAL,
        n,
        t=day.times("office", n),
        src=plan.workstations[hosts],
        dst=dst,
        spt=0,
        dpt=0,
        proto=ICMP,
        **day.icmp_echo(n, packets=packets, size=size, answered=answered),
    )


def ssh(day: DayBuilder, n: int) -> None:
    """A few administrators logging in to servers (and some still use telnet)."""
    plan = day.plan
    admins = max(3, plan.workstations.size // 50)
    targets = np.concatenate([plan.all_servers(), plan.public_servers["web"], plan.internet[:50]])
    if n <= 0:
        return
    rng = day.rng
    hosts = rng.integers(0, admins, n)
    dpt = np.where(rng.random(n) < 0.9, 22, 23)
    day.add(
        LABEL_NORMAL,
        n,
        t=day.times("office", n),
        src=plan.workstations[hosts],
        dst=targets[rng.integers(0, targets.size, n)],
        spt=day.ephemeral(plan.ws_windows[hosts], n),
        dpt=dpt,
        proto=TCP,
        **day.transfer(SHAPES["ssh"], n, TCP),
    )


def rare_apps(day: DayBuilder, n: int) -> None:
    """The long tail of named applications: messengers, streaming, FTP, VPN, news, legacy r-commands."""
    if n <= 0:
        return
    rng = day.rng
    keys = list(_RARE_APPS)
    weights = np.array([_RARE_APPS[k] for k in keys]) * rng.lognormal(0.0, 0.4, len(keys))
    pick = rng.choice(len(keys), n, p=weights / weights.sum())
    proto = np.array([k[0] for k in keys])[pick]
    dpt = np.array([k[1] for k in keys])[pick]
    hosts = day.ws_pick(n)
    day.add(
        LABEL_NORMAL,
        n,
        t=day.times("office", n),
        src=day.plan.workstations[hosts],
        dst=day.internet_pick(n),
        spt=day.ephemeral(day.plan.ws_windows[hosts], n),
        dpt=dpt,
        proto=proto,
        **day.transfer(SHAPES["other"], n, proto),
    )


def other_ports(day: DayBuilder, n: int) -> None:
    """Everything without a named application: conferencing, games, vendor agents, P2P."""
    if n <= 0:
        return
    rng = day.rng
    common = np.array([3478, 3479, 5222, 5228, 8443, 8883, 1935, 3389, 9000, 5938, 6881, 7680])
    dpt = np.where(rng.random(n) < 0.7, common[rng.integers(0, common.size, n)], rng.integers(1024, 65536, n))
    proto = np.where(rng.random(n) < 0.4, UDP, TCP)
    hosts = day.ws_pick(n)
    day.add(
        LABEL_NORMAL,
        n,
        t=day.times("office", n),
        src=day.plan.workstations[hosts],
        dst=day.internet_pick(n),
        spt=day.ephemeral(day.plan.ws_windows[hosts], n),
        dpt=dpt,
        proto=proto,
        **day.transfer(SHAPES["other"], n, proto),
    )
