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

Modules
    :mod:`~nadkit.simulate.config` what to simulate (:class:`SimulationConfig`), labels, columns and
    the traffic mixes; :mod:`~nadkit.simulate.network` protocols, applications, ports and the address
    plan; :mod:`~nadkit.simulate.load` the day and week load; :mod:`~nadkit.simulate.day` the day
    builder and flow shapes; :mod:`~nadkit.simulate.workstations` and :mod:`~nadkit.simulate.services`
    the normal traffic generators, tabled by kind in :mod:`~nadkit.simulate.normal`;
    :mod:`~nadkit.simulate.attacks` the attack generators; :mod:`~nadkit.simulate.driver` running it
    and writing the day files.
"""

from __future__ import annotations

from nadkit.simulate.config import (
    ATTACK_LABELS,
    COLUMNS,
    NAD_LABELS,
    OUTPUT_FORMATS,
    SimulationConfig,
)
from nadkit.simulate.driver import simulate, simulate_day, simulate_to_directory, write_nad_csv
from nadkit.simulate.network import APPS

__all__ = [
    "APPS",
    "ATTACK_LABELS",
    "COLUMNS",
    "NAD_LABELS",
    "OUTPUT_FORMATS",
    "SimulationConfig",
    "simulate",
    "simulate_day",
    "simulate_to_directory",
    "write_nad_csv",
]
