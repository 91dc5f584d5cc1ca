"""Normal traffic: :data:`NORMAL_GENERATORS`, the table from each traffic kind of
:data:`~nadkit.simulate.config.NORMAL_MIX` to the function that generates it, and
:func:`normal_traffic`, which splits a day's normal flows between the kinds and runs their generators."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import numpy as np

from nadkit.simulate import services, workstations
from nadkit.simulate.config import NORMAL_MIX
from nadkit.simulate.day import DayBuilder

#: A normal traffic generator: appends ``n`` flows of its kind to the day.
NormalGenerator: TypeAlias = Callable[[DayBuilder, int], None]

#: The generator of every normal traffic kind.
NORMAL_GENERATORS: dict[str, NormalGenerator] = {
    "web_https": workstations.web_https,
    "web_http": workstations.web_http,
    "quic": workstations.quic,
    "dns_client": workstations.dns_client,
    "smb": workstations.smb,
    "directory": workstations.directory,
    "mail": workstations.mail,
    "intranet": workstations.intranet,
    "app_tier": services.app_tier,
    "database": services.database,
    "netbios": workstations.netbios,
    "ssdp": workstations.ssdp,
    "dhcp": workstations.dhcp,
    "igmp": workstations.igmp,
    "icmp": workstations.icmp,
    "ssh": workstations.ssh,
    "rare_apps": workstations.rare_apps,
    "other_ports": workstations.other_ports,
    "resolver": services.resolver,
    "snmp_poll": services.snmp_poll,
    "discovery": services.discovery,
    "syslog": services.syslog,
    "inbound": services.inbound,
    "background_radiation": services.background_radiation,
    "updates": services.updates,
    "backup": services.backup,
    "ntp": services.ntp,
    "infrastructure": services.infrastructure,
    "broadcast_ping": services.broadcast_ping,
    "vulnerability_scan": services.vulnerability_scan,
}


def normal_traffic(day: DayBuilder, n_normal: int) -> None:
    """Every normal traffic kind, with day-specific proportions, in the order of the mix."""
    rng = day.rng
    kinds = list(NORMAL_MIX)
    shares = np.array([NORMAL_MIX[k] for k in kinds]) * rng.lognormal(0.0, 0.2, len(kinds))
    counts = dict(zip(kinds, rng.multinomial(n_normal, shares / shares.sum()), strict=True))
    # web first: DNS lookups are anchored on web sessions
    for kind in kinds:
        NORMAL_GENERATORS[kind](day, int(counts[kind]))
