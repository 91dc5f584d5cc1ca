"""Name features: the shape of the name a flow asked for (the DNS query, the TLS server name or the
HTTP host, as the meter found it) and the length of the HTTP user agent.

DNS tunnels and exfiltration carry their data in the query name: many, long labels of random-looking
characters (``a9f3k2...x7.t.example.net``), where ordinary names are short words; command-and-control
traffic often asks for generated domains of the same kind. These signals need no payload beyond the
name the meter already dissects, and they are there from a flow's first packet.

===========================  =========================================================================
``server_name_chars``        characters in the name (0 where the flow has none)
``server_name_labels``       dot-separated labels in it
``server_name_longest``      characters in its longest label
``server_name_digit_share``  share of its characters that are digits
``server_name_entropy``      Shannon entropy of its characters, bits per character
``user_agent_chars``         characters in the HTTP user agent (0 where none; when the source has it)
===========================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from nadkit.features.base import FeatureGroup, State, present

NAME = "server_name"
OPTIONAL = ("user_agent",)


def _text(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.String).fill_null("")


def character_entropy(text: pl.Expr) -> pl.Expr:
    """Shannon entropy (bits per character) of the characters of each text; 0 for an empty one."""
    counts = text.str.split("").list.eval(pl.element().unique_counts().cast(pl.Float64))
    length = text.str.len_chars().cast(pl.Float64)
    # H = log2(n) - sum(c log2 c) / n over the character counts c of a text of n characters
    weighted = counts.list.eval((pl.element() * pl.element().log(2)).sum()).list.first()
    return pl.when(length > 0).then(length.log(2) - weighted / length).otherwise(0.0)


class NameGroup(FeatureGroup):
    """The shape of ``server_name`` (and the length of ``user_agent`` where present)."""

    name = "names"
    requires = (NAME,)
    optional = OPTIONAL

    def fit(self, frame: pl.DataFrame) -> State:
        """Stateless: the features depend on the flow's own name; the optional columns seen are kept."""
        return {"columns": present(frame.columns, self.optional)}

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """The name's characters, labels, longest label, digit share and entropy; the user agent's
        length."""
        name = _text(NAME)
        chars = name.str.len_chars()
        labels = name.str.split(".").list.eval(pl.element().str.len_chars())
        exprs = [
            chars.cast(pl.Float32).alias("server_name_chars"),
            labels.list.eval(pl.element().filter(pl.element() > 0).len())
            .list.first()
            .fill_null(0)
            .cast(pl.Float32)
            .alias("server_name_labels"),
            labels.list.max().fill_null(0).cast(pl.Float32).alias("server_name_longest"),
            pl.when(chars > 0)
            .then(name.str.count_matches(r"[0-9]").cast(pl.Float64) / chars.cast(pl.Float64))
            .otherwise(0.0)
            .cast(pl.Float32)
            .alias("server_name_digit_share"),
            character_entropy(name).cast(pl.Float32).alias("server_name_entropy"),
        ]
        if "user_agent" in state.get("columns", []):
            exprs.append(_text("user_agent").str.len_chars().cast(pl.Float32).alias("user_agent_chars"))
        return exprs


__all__ = ["NameGroup", "character_entropy"]
