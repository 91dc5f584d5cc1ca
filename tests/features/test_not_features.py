"""What a capture's reader keeps is either a flow feature or named in NOT_FEATURES: meter bookkeeping
(expiration, VLAN and tunnel ids, nDPI's confidence) never becomes a model feature."""

from __future__ import annotations

import polars as pl

from nadkit.features.pipeline import NOT_FEATURES, FeaturePipeline
from nadkit.sources import pcap

#: the pcap reader's numeric fields that describe the meter or repeat other features, not the flow
BOOKKEEPING = {
    "id",
    "expiration_id",
    "vlan_id",
    "tunnel_id",
    "ip_version",
    "application_is_guessed",
    "application_confidence",
    "bidirectional_packets",
    "bidirectional_bytes",
}


def _kept_numeric_fields() -> set[str]:
    """The numeric nfstream fields the reader passes through under their own name."""
    dropped = pcap._MAPPED | pcap._DROPPED
    return {
        name for name, dtype in pcap.NFSTREAM_FIELDS.items() if dtype.is_numeric() and name not in dropped
    }


def test_pcap_bookkeeping_fields_are_not_features() -> None:
    kept = _kept_numeric_fields()
    assert BOOKKEEPING - {"id"} <= kept  # the reader keeps them (in the table, not as features)
    assert set(NOT_FEATURES) >= BOOKKEEPING
    # every other field kept is a statistic of the flow itself
    rest = kept - set(NOT_FEATURES)
    assert all(name.startswith(("bidirectional_", "src2dst_", "dst2src_")) for name in rest), sorted(rest)


def test_bookkeeping_columns_of_a_metered_table_are_left_out() -> None:
    rows = 40
    frame = pl.DataFrame(
        {
            "out_bytes": [100 + i for i in range(rows)],
            "in_bytes": [300 + 2 * i for i in range(rows)],
            "duration": [0.5 + i / 10 for i in range(rows)],
            "src2dst_mean_ps": [60.0 + i for i in range(rows)],
            **{name: [i % 3 for i in range(rows)] for name in BOOKKEEPING if name != "id"},
        }
    )
    names = set(FeaturePipeline().fit(frame).feature_names_)
    assert "src2dst_mean_ps" in names
    assert not names & BOOKKEEPING
