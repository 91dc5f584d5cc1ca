"""The name features: the shape of the name a flow asked for, and the user agent's length."""

from __future__ import annotations

import math
from collections import Counter

import polars as pl
import pytest

from nadkit.features.labels import feature_label
from nadkit.features.names import NameGroup
from nadkit.features.pipeline import FeatureConfig, FeaturePipeline


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values()) if text else 0.0


NAMES = [
    "www.google.com",
    None,
    "",
    "a9f3k2j1x7q0z8.t.example.net",
    "aaaa",
    "1.2.168.192.in-addr.arpa",
    "ünï.de",
]


def test_name_shapes() -> None:
    frame = pl.DataFrame(
        {"server_name": NAMES, "user_agent": ["curl/8.4", None, None, None, "x", None, None]}
    )
    group = NameGroup()
    state = group.fit(frame)
    out = group.apply(frame, state)
    texts = [n or "" for n in NAMES]
    assert out["server_name_chars"].to_list() == [float(len(t)) for t in texts]
    assert out["server_name_labels"].to_list() == [float(len([p for p in t.split(".") if p])) for t in texts]
    assert out["server_name_longest"].to_list() == [
        float(max((len(p) for p in t.split(".")), default=0)) for t in texts
    ]
    digits = [sum(ch.isdigit() for ch in t) / len(t) if t else 0.0 for t in texts]
    assert out["server_name_digit_share"].to_list() == pytest.approx(digits, abs=1e-6)
    assert out["server_name_entropy"].to_list() == pytest.approx([_entropy(t) for t in texts], abs=1e-5)
    assert out["user_agent_chars"].to_list() == [8.0, 0, 0, 0, 1.0, 0, 0]
    for name in out.columns:
        assert feature_label(name) != name  # every feature reads in words


def test_without_user_agent_and_without_names() -> None:
    group = NameGroup()
    frame = pl.DataFrame({"server_name": ["a.b"]})
    assert "user_agent_chars" not in group.apply(frame, group.fit(frame)).columns
    flows = pl.DataFrame({"out_bytes": [1, 2], "in_bytes": [3, 4]})
    pipeline = FeaturePipeline(FeatureConfig(groups=("logs", "names"))).fit(flows)
    assert "names" in pipeline.skipped_groups_
    assert not any(n.startswith("server_name") for n in pipeline.feature_names_)
