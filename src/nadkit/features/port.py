"""Port features: the IANA range each port falls in, and whether source and destination port are equal.

Scanners and floods often use unusual source ports (well-known or equal to the destination port),
where ordinary clients pick an ephemeral one.

====================  ==============================================================
``<side>_area=<a>``   one-hot of the port's range: well_known (0-1023), registered
                      (1024-49151), ephemeral (49152-65535); all 0 for a missing port
``port_match``        1 where ``spt == dpt``
====================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from nadkit.features.base import FeatureGroup, State, flag
from nadkit.schema import DYNAMIC_PORTS, SYSTEM_PORTS

SIDES = ("spt", "dpt")
#: Port ranges as (name, first, last), inclusive.
PORT_AREAS = (
    ("well_known", 0, SYSTEM_PORTS - 1),
    ("registered", SYSTEM_PORTS, DYNAMIC_PORTS - 1),
    ("ephemeral", DYNAMIC_PORTS, 65535),
)


class PortGroup(FeatureGroup):
    """Port ranges of ``spt`` and ``dpt`` and their equality."""

    name = "port"
    requires = SIDES

    def fit(self, frame: pl.DataFrame) -> State:
        """Stateless: the features depend on the port numbers alone."""
        return {}

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """``spt_area=...``, ``dpt_area=...`` one-hots and ``port_match``."""
        exprs: list[pl.Expr] = []
        for side in SIDES:
            port = pl.col(side).cast(pl.Int64)
            exprs += [
                flag(port.is_between(first, last)).alias(f"{side}_area={area}")
                for area, first, last in PORT_AREAS
            ]
        exprs.append(flag(pl.col("spt").cast(pl.Int64) == pl.col("dpt").cast(pl.Int64)).alias("port_match"))
        return exprs


__all__ = ["PORT_AREAS", "SIDES", "PortGroup"]
