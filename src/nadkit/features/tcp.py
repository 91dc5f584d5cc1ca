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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from nadkit.features.base import FeatureGroup, State, flag

#: the source column the group reads
COLUMN = "tcp_flags"
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

    def fit(self, frame: pl.DataFrame) -> State:
        """Stateless: the flags are read from the field whatever its type."""
        return {}

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """``tcp_fin`` ... ``tcp_cwr`` as Booleans. Each reads the field both ways, as a number and as
        text, whatever its type at fit: a batch of a stream whose flows all lack the field arrives with
        a column of another type (nulls), and a text flag has no digit, a number no flag letter."""
        column = pl.col(COLUMN)
        number = column.cast(pl.Int64, strict=False)
        text = column.cast(pl.String)
        return [
            flag(((number & bit) != 0) | text.str.contains(letter, literal=True)).alias(f"tcp_{name}")
            for name, (bit, letter) in FLAGS.items()
        ]


__all__ = ["COLUMN", "FLAGS", "TcpFlagGroup"]
