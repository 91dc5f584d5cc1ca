"""TCP flag features: which of the eight TCP flags a flow's packets carried.

NetFlow, IPFIX and nfdump report one ``tcp_flags`` field per flow, the OR of the flags of all its
packets: as a number in the NetFlow field-name CSV files (``TCP_FLAGS``, the flag bits FIN 1, SYN 2,
RST 4, PSH 8, ACK 16, URG 32, ECE 64, CWR 128) and as nfdump's text in ``nfdump -o csv`` exports and
the live collector (``...AP.SF``, a letter where the flag was seen: C E U A P R S F). Either becomes
eight indicators. A number is meaningless as a magnitude (SYN alone is 2, SYN and ACK 18), and the
text would not be a feature at all, yet the flags are what tells a half-open scan (SYN only), a
rejected connection (RST), a completed exchange (SYN, ACK, FIN) and a flood apart when a flow record
carries little else.

=============  ==========================================================================
``tcp_<flag>``  1 where the flow's packets carried the flag (``tcp_syn``, ``tcp_ack``, ...);
                0 where they did not, and for flows without the field (non-TCP)
=============  ==========================================================================

Where a record also carries the flags of each side (nProbe's ``CLIENT_TCP_FLAGS`` and
``SERVER_TCP_FLAGS``, as the NF- data sets' second versions do), each becomes eight more indicators,
``tcp_client_<flag>`` and ``tcp_server_<flag>``: a SYN answered by RST and one answered by SYN-ACK
then differ, as they do in a Zeek or Argus state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from nadkit.features.base import FeatureGroup, State, flag

#: the source column the group reads
COLUMN = "tcp_flags"
#: the flags of each side, where a record has them -> the prefix of their indicators
BY_SIDE = {"client_tcp_flags": "tcp_client", "server_tcp_flags": "tcp_server"}
#: flag name -> (bit in the numeric field, letter in nfdump's text)
FLAGS: dict[str, tuple[int, str]] = {
    "fin": (1, "F"),
    "syn": (2, "S"),
    "rst": (4, "R"),
    "psh": (8, "P"),
    "ack": (16, "A"),
    "urg": (32, "U"),
    "ece": (64, "E"),
    "cwr": (128, "C"),
}


class TcpFlagGroup(FeatureGroup):
    """The eight TCP flag indicators from a flow's ``tcp_flags`` field (a number or nfdump's text)."""

    name = "tcp"
    requires = (COLUMN,)
    optional = tuple(BY_SIDE)

    def fit(self, frame: pl.DataFrame) -> State:
        """The flags are read from the field whatever its type; the state records the sides' fields
        the training flows have."""
        return {"sides": [column for column in BY_SIDE if column in frame.columns]}

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """``tcp_fin`` ... ``tcp_cwr`` as Booleans (then ``tcp_client_*`` and ``tcp_server_*`` where
        fitted). Each reads the field both ways, as a number and as text, whatever its type at fit: a
        batch of a stream whose flows all lack the field arrives with a column of another type
        (nulls), and a text flag has no digit, a number no flag letter."""
        exprs = _indicators(COLUMN, "tcp")
        for column in state.get("sides", []):
            exprs += _indicators(column, BY_SIDE[column])
        return exprs


def _indicators(source: str, prefix: str) -> list[pl.Expr]:
    """The eight flag indicators ``<prefix>_<flag>`` of the flags field ``source``."""
    column = pl.col(source)
    number = column.cast(pl.Int64, strict=False)
    text = column.cast(pl.String)
    return [
        flag(((number & bit) != 0) | text.str.contains(letter, literal=True)).alias(f"{prefix}_{name}")
        for name, (bit, letter) in FLAGS.items()
    ]


__all__ = ["BY_SIDE", "COLUMN", "FLAGS", "TcpFlagGroup"]
