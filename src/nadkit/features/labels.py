"""Readable labels for feature names: ``bytes received`` for ``log_in_bytes``, ``distinct destination
ports in this burst from the source to the subnet`` for ``seg_unique_dpt``.

:func:`feature_label` knows every family of features the pipeline and the time-bucket view make:

- the canonical flow columns and their transforms (``log_*``, ``*_zero``, shares, log differences,
  rates, bytes per packet);
- the ``cnt_*`` traffic counters of :mod:`nadkit.features.counters` (their windows at the default
  settings: 2 s, 60 s, the last 100 flows) and the ratios and differences among them;
- one-hot categories (``proto=tcp``, ``app=http``, ``app=others``) and the address and port groups
  (``src_area=private``, ``ip_flow_type=egress``, ``src_one_bits``, ``dpt_area=well_known``, ...);
- the segment features (``seg_*``) of :mod:`nadkit.features.segments`;
- nfstream's statistical fields (``src2dst_mean_ps``, ``dst2src_max_piat_ms``,
  ``bidirectional_syn_packets``, ...) and the pcap reader's other numeric fields;
- the bucket metrics and calendar features of :mod:`nadkit.features.series` and
  :mod:`nadkit.features.buckets`.

Any other name (a source's own numeric column, such as NSL-KDD's ``num_failed_logins``) falls back
to a cleaned-up form of the name: words split at underscores, common abbreviations spelled out.
Labels describe the quantity a reader sees in an explanation, so a log-transformed feature is
labelled by the value behind it (``log_in_bytes`` reads ``bytes received``).
"""

from __future__ import annotations

import functools
import re
from typing import Final

from nadkit.features.counters import CounterConfig
from nadkit.features.segments import SegmentConfig

_COUNTERS = CounterConfig()
_SEGMENTS = SegmentConfig()


def _seconds(value: float) -> str:
    return f"{value:g} s"


#: counter suffix -> the window it counts over, as words
WINDOWS: Final = {
    "": f"in {_seconds(_COUNTERS.window_s)}",
    "_slow": f"in {_seconds(_COUNTERS.slow_window_s)}",
    "_conn": f"among the last {_COUNTERS.connections} flows",
}
#: counter stem -> what it counts (the window follows)
COUNTER_STEMS: Final = {
    "cnt_dst": "flows to this destination",
    "cnt_src": "flows from this source",
    "cnt_serv_src": "flows from this source to this service",
    "cnt_serv_dst": "flows to this destination and service",
}

#: the canonical flow columns and other named columns
BASE: Final = {
    "time": "time",
    "src": "source address",
    "dst": "destination address",
    "spt": "source port",
    "dpt": "destination port",
    "proto": "protocol",
    "app": "application",
    "app_category": "application category",
    "duration": "duration (s)",
    "out_bytes": "bytes sent",
    "in_bytes": "bytes received",
    "out_pkts": "packets sent",
    "in_pkts": "packets received",
    "server_name": "name asked for (DNS query, TLS server name or HTTP host)",
    "user_agent": "HTTP user agent",
    # the name features
    "server_name_chars": "characters in the name asked for",
    "server_name_labels": "labels (dot-separated parts) in the name asked for",
    "server_name_longest": "characters in the longest label of the name asked for",
    "server_name_digit_share": "share of digits in the name asked for",
    "server_name_entropy": "randomness of the name asked for (bits per character)",
    "user_agent_chars": "characters in the HTTP user agent",
    # derived per-flow features with a name of their own
    "in_bytes_share": "share of the bytes that were received",
    "in_pkts_share": "share of the packets that were received",
    "log_out_bytes_minus_log_in_bytes": "bytes sent against bytes received (log ratio)",
    "log_out_pkts_minus_log_in_pkts": "packets sent against packets received (log ratio)",
    "out_bytes_per_out_pkts": "bytes per packet sent",
    "in_bytes_per_in_pkts": "bytes per packet received",
    "log_bytes_per_s": "bytes per second",
    "log_pkts_per_s": "packets per second",
    # addresses and ports
    "ip_binary_match": "leading bits the source and destination addresses share",
    "src_one_bits": "bits set in the source address",
    "dst_one_bits": "bits set in the destination address",
    "src_ipv6": "source address is IPv6",
    "dst_ipv6": "destination address is IPv6",
    "src_invalid": "source is not a valid address",
    "dst_invalid": "destination is not a valid address",
    "port_match": "source port equals destination port",
    # TCP flags (the OR over the flow's packets)
    "tcp_flags": "TCP flags seen",
    "tcp_fin": "TCP FIN flag seen",
    "tcp_syn": "TCP SYN flag seen",
    "tcp_rst": "TCP RST flag seen",
    "tcp_psh": "TCP PSH flag seen",
    "tcp_ack": "TCP ACK flag seen",
    "tcp_urg": "TCP URG flag seen",
    "tcp_ece": "TCP ECE flag seen",
    "tcp_cwr": "TCP CWR flag seen",
    **{
        f"tcp_{side}_{flag}": f"TCP {flag.upper()} flag sent by the {side}"
        for side in ("client", "server")
        for flag in ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")
    },
    # segments
    "seg_flows": "flows in this burst from the source to the subnet",
    "seg_span_s": "length of this burst from the source to the subnet (s)",
    "seg_unique_dst": "distinct destinations in this burst from the source to the subnet",
    "seg_unique_spt": "distinct source ports in this burst from the source to the subnet",
    "seg_unique_dpt": "distinct destination ports in this burst from the source to the subnet",
    "seg_unique_app": "distinct applications in this burst from the source to the subnet",
    "seg_domain_names": "distinct names asked under this domain in this burst",
    "seg_unanswered": "share of the flows of this burst from the source to the subnet that got no reply",
    "seg_size_spread": "spread of flow sizes in this burst from the source to the subnet (std / mean)",
    # cadence
    "pair_repeats": "recent earlier flows from the source to this destination and service",
    "pair_gap_s": "seconds since the source last reached this destination and service",
    "pair_gap_cv": "irregularity of the intervals between the source's flows to this destination and "
    "service (std / mean; near 0 for a timer)",
    # the pcap reader's (nfstream's) other fields
    "ip_version": "IP version",
    "expiration_id": "why the meter ended the flow",
    "vlan_id": "VLAN id",
    "tunnel_id": "tunnel id",
    "application_is_guessed": "application guessed by nDPI",
    "application_confidence": "nDPI's confidence in the application",
    "bidirectional_packets": "packets (both directions)",
    "bidirectional_bytes": "bytes (both directions)",
    "src2dst_duration_ms": "duration of the sending direction (ms)",
    "dst2src_duration_ms": "duration of the receiving direction (ms)",
    # bucket metrics and calendar features
    "flows": "flows in the time bucket",
    "unique_dst": "distinct destinations in the time bucket",
    "unique_dpt": "distinct destination ports in the time bucket",
    "unique_src": "distinct sources in the time bucket",
    "time_of_day_sin": "time of day",
    "time_of_day_cos": "time of day",
    "day_of_week_sin": "day of the week",
    "day_of_week_cos": "day of the week",
}

#: one-hot prefixes -> how ``<prefix>=<value>`` reads (``{}`` is the value)
CATEGORY_TEXTS: Final = {
    "proto": "protocol is {}",
    "app": "application is {}",
    "app_category": "application category is {}",
    "src_area": "source address is {}",
    "dst_area": "destination address is {}",
    "ip_flow_type": "flow direction is {}",
    "spt_area": "source port is {}",
    "dpt_area": "destination port is {}",
    "flag": "connection state is {}",
    "conn_state": "connection state is {}",
    "state": "connection state is {}",
    "dir": "direction is {}",
    "flow_state": "flow state is {}",
    "icmp_type": "ICMP type is {}",
    "icmp_code": "ICMP code is {}",
    "icmp_ipv4_type": "ICMP type is {}",
    "dns_query_type": "DNS query type is {}",
    "ftp_command_ret_code": "FTP reply code is {}",
    "proto_share": "share of {} flows in the time bucket",
    "app_share": "share of {} flows in the time bucket",
}
#: category values that read better spelled out
CATEGORY_VALUES: Final = {
    "others": "another (rare or unseen) one",
    "other": "another one",
    "link_local": "link-local",
    "well_known": "well-known (0-1023)",
    "registered": "registered (1024-49151)",
    "ephemeral": "ephemeral (49152-65535)",
    "internet": "internet (public to public)",
    "intranet": "intranet (internal to internal)",
    "ingress": "ingress (public to internal)",
    "egress": "egress (internal to public)",
}
_SHARE_VALUES: Final = {"others": "other", "other": "other"}
#: connection states spelled out: Zeek's ``conn_state`` (NSL-KDD's ``flag`` uses the same codes)
_ZEEK_STATES: Final = {
    "S0": "S0 (attempt, no reply)",
    "S1": "S1 (established, not closed)",
    "SF": "SF (established and closed)",
    "REJ": "REJ (attempt rejected)",
    "S2": "S2 (established, only the originator closed)",
    "S3": "S3 (established, only the responder closed)",
    "RSTO": "RSTO (established, the originator reset)",
    "RSTR": "RSTR (established, the responder reset)",
    "RSTOS0": "RSTOS0 (the originator sent SYN then reset)",
    "RSTRH": "RSTRH (the responder sent SYN-ACK then reset)",
    "SH": "SH (the originator sent SYN then FIN, no reply)",
    "SHR": "SHR (the responder sent SYN-ACK then FIN)",
    "OTH": "OTH (no SYN seen, midstream)",
}
#: an Argus TCP state as ``ra -Z b`` prints it: the flags each side sent
_FLAG_STATE: Final = re.compile(r"^[FSRPAUEC]*_[FSRPAUEC]*$")
#: Argus's states (as in UNSW-NB15 and CTU-13)
_ARGUS_STATES: Final = {
    "CON": "CON (connected, both sides)",
    "INT": "INT (initial, one side only)",
    "REQ": "REQ (requested, no reply)",
    "ACC": "ACC (accepted)",
    "FIN": "FIN (closed by FIN)",
    "CLO": "CLO (closed)",
    "RST": "RST (reset)",
    "ECO": "ECO (ICMP echo)",
    "ECR": "ECR (ICMP echo reply)",
    "URP": "URP (ICMP port unreachable)",
    "URH": "URH (ICMP host unreachable)",
    "URN": "URN (ICMP net unreachable)",
    "TXD": "TXD (ICMP time exceeded)",
}
_STATE_VALUES: Final = {
    "flag": _ZEEK_STATES,
    "conn_state": _ZEEK_STATES,
    "state": _ARGUS_STATES,
    "dir": {
        "->": "-> (source to destination)",
        "<-": "<- (destination to source)",
        "<->": "<-> (both ways)",
        "<?>": "<?> (both ways, first sender unknown)",
        "who": "who (ARP request)",
    },
}

#: nfstream's statistics: ``<side>_<stat>``
_SIDES: Final = {"bidirectional": "both directions", "src2dst": "sent", "dst2src": "received"}
_STATISTICS: Final = {
    "min_ps": "smallest packet{} (bytes)",
    "mean_ps": "mean packet size{} (bytes)",
    "stddev_ps": "spread of packet sizes{} (bytes)",
    "max_ps": "largest packet{} (bytes)",
    "min_piat_ms": "shortest gap between packets{} (ms)",
    "mean_piat_ms": "mean gap between packets{} (ms)",
    "stddev_piat_ms": "spread of gaps between packets{} (ms)",
    "max_piat_ms": "longest gap between packets{} (ms)",
}
_FLAGS: Final = ("syn", "cwr", "ece", "urg", "ack", "psh", "rst", "fin")
_NFSTREAM = re.compile(r"^(bidirectional|src2dst|dst2src)_(.+)$")

#: words of a fallback label
_WORDS: Final = {
    "src": "source",
    "dst": "destination",
    "srv": "service",
    "serv": "service",
    "pkts": "packets",
    "pkt": "packet",
    "cnt": "count",
    "num": "number of",
    "ps": "packet size",
    "piat": "gap between packets",
    "dur": "duration",
    "ttl": "TTL",
    "ip": "IP",
    "tcp": "TCP",
    "udp": "UDP",
    "icmp": "ICMP",
    "dns": "DNS",
    "http": "HTTP",
    "ms": "(ms)",
    "s": "(s)",
    "bytes": "bytes",
    "sbytes": "bytes sent",
    "dbytes": "bytes received",
    "spkts": "packets sent",
    "dpkts": "packets received",
    "stddev": "spread of",
    "std": "spread of",
    "avg": "mean",
    "min": "smallest",
    "max": "largest",
}


def _counter(name: str) -> str | None:
    """A ``cnt_*`` counter with its window, or None."""
    for stem, what in COUNTER_STEMS.items():
        for suffix, window in WINDOWS.items():
            if name == stem + suffix:
                return f"{what} {window}"
    return None


def _counter_parts(name: str) -> tuple[str, str] | None:
    """(stem, suffix) of a counter name, or None."""
    for stem in COUNTER_STEMS:
        for suffix in WINDOWS:
            if name == stem + suffix:
                return stem, suffix
    return None


def _counter_pair(kind: str, first: str, second: str) -> str | None:
    """The counter ratios and differences of :mod:`nadkit.features.flow` in words, or None."""
    a, b = _counter_parts(first), _counter_parts(second)
    if a is None or b is None:
        return None
    (stem_a, suffix_a), (stem_b, suffix_b) = a, b
    if suffix_a == suffix_b:
        window = WINDOWS[suffix_a]
        pair = (kind, stem_a, stem_b)
        texts = {
            ("per", "cnt_serv_src", "cnt_src"): f"share of this source's flows {window} to this service",
            ("per", "cnt_serv_dst", "cnt_dst"): f"share of this destination's flows {window} to this service",
            ("minus", "cnt_src", "cnt_serv_src"): f"flows from this source to other services {window}",
            ("minus", "cnt_dst", "cnt_serv_dst"): f"flows to this destination on other services {window}",
            ("minus", "cnt_src", "cnt_dst"): (
                f"flows from this source less flows to this destination {window}"
            ),
            ("log_minus", "cnt_src", "cnt_dst"): (
                f"flows from this source against flows to this destination {window} (log ratio)"
            ),
        }
        return texts.get(pair)
    if stem_a != stem_b:
        return None
    what = COUNTER_STEMS[stem_a]
    if kind == "minus" and suffix_a == "_slow" and suffix_b == "":
        return f"{what} {WINDOWS['_slow']} before the last {_seconds(_COUNTERS.window_s)}"
    if kind == "per" and suffix_a == "" and suffix_b == "_slow":
        return f"share of the {what} {WINDOWS['_slow']} that came in the last {_seconds(_COUNTERS.window_s)}"
    return None


def _category(prefix: str, value: str) -> str | None:
    template = CATEGORY_TEXTS.get(prefix)
    if template is None:
        return None
    if prefix.endswith("_share"):
        return template.format(_SHARE_VALUES.get(value, value))
    spelled = _STATE_VALUES.get(prefix, {}).get(value)
    if prefix == "state" and spelled is None and _FLAG_STATE.match(value):
        sent, answered = value.split("_")
        spelled = f"{value} (TCP flags sent {sent or 'none'}, answered {answered or 'none'})"
    return template.format(spelled or CATEGORY_VALUES.get(value, value))


def _nfstream(name: str) -> str | None:
    found = _NFSTREAM.match(name)
    if found is None:
        return None
    side, rest = _SIDES[found.group(1)], found.group(2)
    suffix = "" if found.group(1) == "bidirectional" else f" {side}"
    if rest in _STATISTICS:
        return _STATISTICS[rest].format(suffix)
    flag = rest.removesuffix("_packets")
    if rest.endswith("_packets") and flag in _FLAGS:
        return f"{flag.upper()} packets {side}" if suffix else f"{flag.upper()} packets (both directions)"
    if rest in ("packets", "bytes"):
        return f"{rest} {side}"
    return None


def clean_name(name: str) -> str:
    """A feature or column name made readable: words split at underscores (and dots, dashes), common
    abbreviations spelled out (``dst_host_srv_count`` -> ``destination host service count``)."""
    words = [w for w in re.split(r"[_.\-\s]+", name.strip()) if w]
    if not words:
        return name
    return " ".join(_WORDS.get(w.lower(), w.lower() if w.isupper() and len(w) > 4 else w) for w in words)


@functools.lru_cache(maxsize=4096)
def feature_label(name: str) -> str:
    """How the feature ``name`` reads in an explanation (see the module docstring); a cleaned-up
    form of the name where it belongs to no known family."""
    if name in BASE:
        return BASE[name]
    counter = _counter(name)
    if counter is not None:
        return counter
    if "=" in name:
        prefix, _, value = name.partition("=")
        category = _category(prefix, value)
        if category is not None:
            return category
        return f"{feature_label(prefix)} is {value}"
    nfstream = _nfstream(name)
    if nfstream is not None:
        return nfstream
    if name.endswith("_zero"):
        what = re.sub(r" \([^)]*\)$", "", feature_label(name.removesuffix("_zero")))
        return f"no {what}" if what.startswith(("flows", "bytes", "packets")) else f"{what} is zero"
    if name.startswith("log_") and "_minus_log_" in name:
        first, _, second = name.removeprefix("log_").partition("_minus_log_")
        known = _counter_pair("log_minus", first, second)
        if known is not None:
            return known
        return f"{feature_label(first)} against {feature_label(second)} (log ratio)"
    if name.startswith("log_"):
        return feature_label(name.removeprefix("log_"))
    for kind, joint in (("per", "_per_"), ("minus", "_minus_")):
        if joint in name:
            first, _, second = name.partition(joint)
            known = _counter_pair(kind, first, second)
            if known is not None:
                return known
            word = "per" if kind == "per" else "less"
            return f"{feature_label(first)} {word} {feature_label(second)}"
    if name.endswith("_share"):
        return f"share of {feature_label(name.removesuffix('_share'))}"
    return clean_name(name)


__all__ = ["BASE", "CATEGORY_TEXTS", "COUNTER_STEMS", "WINDOWS", "clean_name", "feature_label"]
