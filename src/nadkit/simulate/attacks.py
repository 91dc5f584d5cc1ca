"""The attack generators, one per NAD attack class (IP sweep, port sweep, Nmap, DDoS smurf; the
package overview describes each), in episodes grouped into a few campaign time blocks per day; each
day's budget per class; and what probes get back from the network, which the scheduled vulnerability
scan of the normal traffic shares. :data:`ATTACK_GENERATORS` maps each class code to its generator, in
the order a day runs them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import numpy as np

from nadkit.simulate.config import (
    ATTACK_SHARES,
    LABEL_IP_SWEEP,
    LABEL_NMAP,
    LABEL_PORT_SWEEP,
    LABEL_SMURF,
)
from nadkit.simulate.day import DayBuilder
from nadkit.simulate.load import DAY_US, MINUTE_US
from nadkit.simulate.network import ICMP, SERVER_OPEN, TCP, TOP_PORTS, UDP, UDP_OPEN, WORKSTATION_OPEN

_SCAN_TCP_PORTS = np.array([445, 22, 23, 80, 443, 3389, 8080, 139, 1433, 5900, 21, 25], dtype=np.int64)
_SCAN_UDP_PORTS = np.array([161, 53, 137, 1900, 123, 500], dtype=np.int64)
_GOLDEN = (5**0.5 - 1) / 2


def probe_replies(
    day: DayBuilder, dst: np.ndarray, proto: np.ndarray, dpt: np.ndarray, *, banner: float, filtered: float
) -> dict[str, np.ndarray]:
    """What probes get back: nothing from dead or filtered addresses, RST from closed ports,
    an answer from open ones; with probability ``banner`` an open port gets a full exchange that
    looks like a short normal connection."""
    rng, plan = day.rng, day.plan
    n = dst.size
    live = np.isin(dst, plan.live) & (rng.random(n) >= filtered)
    is_ws = np.isin(dst, plan.ws_sorted)
    tcp_open = np.where(is_ws, np.isin(dpt, WORKSTATION_OPEN), np.isin(dpt, SERVER_OPEN))
    icmp, tcp, udp = proto == ICMP, proto == TCP, proto == UDP
    is_open = live & ((tcp & tcp_open) | (udp & np.isin(dpt, UDP_OPEN)) | icmp)
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


def campaign_starts(day: DayBuilder, count: int) -> np.ndarray:
    """Start times of ``count`` episodes, clustered in one to four campaign blocks of the day."""
    rng = day.rng
    blocks = 1 + min(3, int(rng.poisson(0.9)))
    length = rng.uniform(20, 150, blocks) * MINUTE_US
    block_start = rng.uniform(0, DAY_US - length)
    which = rng.integers(0, blocks, count)
    return (block_start[which] + rng.uniform(0, 1, count) * length[which]).astype(np.int64)


def episode_times(day: DayBuilder, start: int, n: int, rate: float) -> np.ndarray:
    """Probe times of one episode at ``rate`` probes per second, with a little jitter."""
    gaps = day.rng.exponential(1.0 / rate, n) * 0.3 + 0.7 / rate
    t = start + (np.cumsum(gaps) - gaps[0]) * 1e6
    return np.minimum(t.astype(np.int64), DAY_US - 1)


def attacker(day: DayBuilder, insider_share: float) -> tuple[int, bool]:
    """An attack source for one episode: an internet address or a compromised workstation."""
    rng, plan = day.rng, day.plan
    if rng.random() < insider_share:
        return int(plan.insiders[rng.integers(0, plan.insiders.size)]), True
    return int(plan.attackers[rng.integers(0, 6)]), False


def ip_sweeps(day: DayBuilder, budget: int) -> None:
    """One source, one /24, one service, many last octets."""
    rng, plan = day.rng, day.plan
    starts = campaign_starts(day, max(1, budget // 150 + 1))
    episode = 0
    while budget > 0:
        src, insider = attacker(day, 0.25)
        if insider or rng.random() < 0.5:
            subnets = plan.internal_subnets()
            subnet = int(subnets[rng.integers(0, subnets.size)])
        else:
            subnet = plan.public_block
        kind = rng.random()
        if kind < 0.45:
            proto, dpts = ICMP, np.array([0])
        elif kind < 0.9:
            proto, dpts = (
                TCP,
                rng.choice(_SCAN_TCP_PORTS, int(rng.choice([1, 1, 1, 2, 3])), replace=False),
            )
        else:
            proto, dpts = UDP, rng.choice(_SCAN_UDP_PORTS, 1)
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
            np.full(n, int(rng.integers(1024, 65536))) if fixed_port else day.ephemeral(rng.random() < 0.5, n)
        )
        protos = np.full(n, proto)
        # some tools complete the handshake and grab a banner from every open port
        banner = 1.0 if rng.random() < 0.35 else 0.3
        day.add(
            LABEL_IP_SWEEP,
            n,
            t=episode_times(day, int(starts[episode % starts.size]), n, rate),
            src=src,
            dst=dst,
            spt=0 if proto == ICMP else spt,
            dpt=dpt,
            proto=protos,
            **probe_replies(
                day, dst, protos, dpt, banner=banner, filtered=0.3 if subnet == plan.public_block else 0.0
            ),
        )
        budget -= n
        episode += 1


def port_sweeps(day: DayBuilder, budget: int) -> None:
    """One source, one target host, many destination ports."""
    rng, plan = day.rng, day.plan
    starts = campaign_starts(day, max(1, budget // 300 + 1))
    episode = 0
    while budget > 0:
        src, insider = attacker(day, 0.3)
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
            ports = rng.permutation(TOP_PORTS)[: int(rng.integers(40, TOP_PORTS.size + 1))]
        else:
            ports = rng.choice(np.arange(1, 65536), int(rng.integers(50, 600)), replace=False)
        ports = ports[:budget]
        n = ports.size
        proto = UDP if rng.random() < 0.1 else TCP
        style = rng.random()
        if style < 0.6:
            spt = np.full(n, int(rng.integers(1024, 65536)))
        elif style < 0.8:
            spt = (int(rng.integers(1024, 60000)) + np.arange(n)) % 64512 + 1024
        else:
            spt = day.ephemeral(False, n)
        rate = float(np.exp(rng.uniform(np.log(1.0), np.log(400))))
        protos = np.full(n, proto)
        filtered = 0.9 if (not insider and rng.random() < 0.5) else 0.0
        banner = 1.0 if rng.random() < 0.3 else 0.2  # service version detection, or not
        day.add(
            LABEL_PORT_SWEEP,
            n,
            t=episode_times(day, int(starts[episode % starts.size]), n, rate),
            src=src,
            dst=target,
            spt=spt,
            dpt=ports,
            proto=protos,
            **probe_replies(day, np.full(n, target), protos, ports, banner=banner, filtered=filtered),
        )
        budget -= n
        episode += 1


def nmaps(day: DayBuilder, budget: int) -> None:
    """Host discovery over a block of an internal range, then the common ports of the hosts found."""
    rng, plan = day.rng, day.plan
    starts = campaign_starts(day, max(1, budget // 60 + 1))
    episode = 0
    while budget > 0:
        src, _ = attacker(day, 0.6)
        subnets = plan.internal_subnets()
        subnet = int(subnets[rng.integers(0, subnets.size)])
        # discovery takes at most about a third of what is left, the port scan the rest
        width = int(min(rng.choice([4, 8, 16, 32]), max(2, budget // 12)))
        first = int(rng.integers(1, 255 - width))
        hosts = subnet + np.arange(first, first + width)
        # discovery: ICMP echo, TCP SYN 443, TCP ACK 80, ICMP timestamp
        d_dst = np.repeat(hosts, 4)
        d_proto = np.tile([ICMP, TCP, TCP, ICMP], width)
        d_dpt = np.tile([0, 443, 80, 0], width)
        found = hosts[np.isin(hosts, plan.live)]
        if found.size == 0:
            found = hosts[: max(1, width // 4)]
        ports = rng.permutation(TOP_PORTS[:40])[: int(rng.integers(5, 25))]
        s_dst = np.repeat(found, ports.size)
        s_dpt = np.tile(ports, found.size)
        dst = np.concatenate([d_dst, s_dst])[:budget]
        n = dst.size
        proto = np.concatenate([d_proto, np.full(s_dst.size, TCP)])[:n]
        dpt = np.concatenate([d_dpt, s_dpt])[:n]
        spt = np.where(proto == ICMP, 0, int(rng.integers(32768, 65536)))
        rate = float(rng.uniform(20, 300))
        replies = probe_replies(day, dst, proto, dpt, banner=0.05, filtered=0.0)
        replies["duration"] = np.minimum(replies["duration"], 0.01)
        day.add(
            LABEL_NMAP,
            n,
            t=episode_times(day, int(starts[episode % starts.size]), n, rate),
            src=src,
            dst=dst,
            spt=spt,
            dpt=dpt,
            proto=proto,
            **replies,
        )
        budget -= n
        episode += 1


def smurfs(day: DayBuilder, budget: int) -> None:
    """ICMP echo floods to subnet broadcast addresses, the victim's address spoofed as source."""
    rng, plan = day.rng, day.plan
    starts = campaign_starts(day, max(1, budget // 60 + 1))
    episode = 0
    subnets = np.concatenate([plan.internal_subnets(), [plan.public_block]])
    while budget > 0:
        if rng.random() < 0.7:
            victim = int(
                day.internet_pick(1)[0] if rng.random() < 0.5 else plan.attackers[6 + rng.integers(0, 6)]
            )
            internal_victim = False
        else:
            servers = plan.all_servers()
            victim = int(servers[rng.integers(0, servers.size)])
            internal_victim = True
        amplifiers = rng.choice(subnets, int(rng.integers(1, min(4, subnets.size) + 1)), replace=False) + 255
        n = min(budget, int(rng.integers(15, 120)))
        dst = amplifiers[rng.integers(0, amplifiers.size, n)]
        packets = np.maximum(1, rng.lognormal(1.2, 1.0, n).astype(np.int64))
        size = np.where(rng.random() < 0.5, rng.choice([1052, 1500, 1028, 548]), 84)
        answered = internal_victim & (rng.random(n) < 0.2)
        echo = day.icmp_echo(n, packets=packets, size=size, answered=answered)
        echo["duration"] = np.where(packets > 1, (packets - 1) * rng.uniform(0.001, 0.5), 0).round(3)
        rate = float(np.exp(rng.uniform(np.log(0.5), np.log(20))))
        day.add(
            LABEL_SMURF,
            n,
            t=episode_times(day, int(starts[episode % starts.size]), n, rate),
            src=victim,
            dst=dst,
            spt=0,
            dpt=0,
            proto=ICMP,
            **echo,
        )
        budget -= n
        episode += 1


def attack_budgets(day: DayBuilder) -> dict[int, int]:
    """Flows per attack class today: a day-specific point of each class's share range."""
    config = day.config
    if config.attack_intensity == 0:
        return {label: 0 for label in ATTACK_SHARES}
    budgets: dict[int, int] = {}
    # attackers keep no office hours: budgets follow the nominal volume, not the day's load
    volume = config.flows_per_day * config.attack_intensity
    floor = int(np.clip(round(0.005 * config.flows_per_day), 5, 40))
    for label, (low, high) in ATTACK_SHARES.items():
        # the point in the range walks by the golden ratio from day to day (from a per-class,
        # per-seed offset): consecutive days are always far apart, whatever the number of days
        offset = np.random.default_rng(np.random.SeedSequence([config.seed, 0xC1A55, label])).random()
        position = (offset + day.day_index * _GOLDEN) % 1.0
        share = low * (high / low) ** position * day.rng.lognormal(0.0, 0.08)
        budgets[label] = max(floor, round(share * volume))
    return budgets


#: An attack generator: appends flows of its class to the day, ``budget`` flows in all.
AttackGenerator: TypeAlias = Callable[[DayBuilder, int], None]

#: Every attack class's generator, in the order a day runs them.
ATTACK_GENERATORS: dict[int, AttackGenerator] = {
    LABEL_IP_SWEEP: ip_sweeps,
    LABEL_PORT_SWEEP: port_sweeps,
    LABEL_SMURF: smurfs,
    LABEL_NMAP: nmaps,
}
