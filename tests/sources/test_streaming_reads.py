"""Every text reader's query runs on Polars' streaming engine from end to end: no step of it falls
back to the in-memory engine, which would parse the whole input before :func:`iter_flows` hands out
its first chunk (nothing downstream starting early, all of the input held at once)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from nadkit.schema import text_lookup
from nadkit.sources import read_flows
from tests.sources import (
    test_argus,
    test_cic,
    test_eve,
    test_generic,
    test_kdd,
    test_nad,
    test_netflow,
    test_nfdump,
    test_unsw,
    test_zeek,
)

# the legend of the physical plan's graph names the colour of in-memory fallback nodes
_LEGEND = re.compile(r'<FONT COLOR="([^"]+)">⬤</FONT> in-memory engine fallback')
_NODE = re.compile(r'(\d+) \[label="((?:[^"\\]|\\.)*)"(?:,style=filled)?(?:,fillcolor="([^"]*)")?\]')


def in_memory_steps(frame: pl.LazyFrame) -> list[str]:
    """The steps of ``frame``'s streaming plan that fall back to the in-memory engine."""
    graph = frame.show_graph(engine="streaming", plan_stage="physical", raw_output=True)
    assert isinstance(graph, str)
    legend = _LEGEND.search(graph)
    assert legend is not None, "the streaming plan's graph no longer names its in-memory fallback"
    return [label.replace("\\n", " ") for _, label, colour in _NODE.findall(graph) if colour == legend[1]]


def _lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _samples(tmp_path: Path) -> dict[str, tuple[Path, dict[str, object]]]:
    """One small file of each text format (the readers' own golden rows) and its read options."""
    zeek = test_zeek._tsv(test_zeek.FIELDS, test_zeek.TYPES, test_zeek.ROWS)
    return {
        "nad": (_lines(tmp_path / "nad.csv", [test_nad.HEADER, *test_nad.ROWS]), {}),
        "netflow": (_lines(tmp_path / "nf.csv", [test_netflow.HEADER, *test_netflow.ROWS]), {}),
        "argus": (_lines(tmp_path / "a.binetflow", [test_argus.HEADER, *test_argus.ROWS]), {}),
        "nfdump": (_lines(tmp_path / "nfdump.csv", [test_nfdump.HEADER, *test_nfdump.SUMMARY]), {}),
        "eve": (
            _lines(tmp_path / "eve.json", [json.dumps(e) for e in (test_eve.FLOW, test_eve.NETFLOW)]),
            {},
        ),
        "zeek": (_lines(tmp_path / "conn.log", zeek.splitlines()), {}),
        "generic": (_lines(tmp_path / "g.csv", test_generic.LINES), {"mapping": test_generic.MAPPING}),
        "kdd": (_lines(tmp_path / "kdd.txt", test_kdd.NSL_ROWS), {}),
        "cic": (_lines(tmp_path / "cic.csv", [test_cic.HEADER_2017, *test_cic.ROWS_2017]), {}),
        "unsw": (_lines(tmp_path / "unsw.csv", [test_unsw.PARTITION_HEADER, *test_unsw.PARTITION_ROWS]), {}),
    }


FORMATS = ["nad", "netflow", "argus", "nfdump", "eve", "zeek", "generic", "kdd", "cic", "unsw"]


@pytest.mark.parametrize("name", FORMATS)
def test_each_reader_streams(tmp_path: Path, name: str) -> None:
    path, options = _samples(tmp_path)[name]
    frame, fmt = read_flows(path, **options)  # type: ignore[arg-type]
    assert fmt == name
    assert in_memory_steps(frame) == [], f"{name}: steps that hold the whole input"


def test_the_check_sees_a_step_that_holds_the_input(tmp_path: Path) -> None:
    """The check is not blind: a function of a whole column (a Python function not marked elementwise)
    must see all of the input at once and is reported; the lookup the readers use is not, and gives the
    values ``Expr.replace`` gives (which, up to Polars 2.1, itself fell back to the in-memory engine)."""
    path = _lines(tmp_path / "p.csv", ["proto", "6", "17", "tcp", "", "99"])
    mapping = {"6": "tcp", "17": "udp"}
    text = pl.col("proto").cast(pl.String)
    whole = pl.scan_csv(path).select(text.map_batches(lambda s: s, return_dtype=pl.String))
    held = pl.scan_csv(path).select(text.replace(mapping))
    streamed = pl.scan_csv(path).select(text_lookup(text, mapping, keep=True))
    assert any("python_udf" in step for step in in_memory_steps(whole))
    assert in_memory_steps(streamed) == []
    assert held.collect().equals(streamed.collect())
    # a text not in the mapping, null too, becomes the default (as replace_strict has it)
    strict = pl.scan_csv(path).select(text_lookup(text, mapping, default="other")).collect()
    assert strict["proto"].to_list() == [
        "tcp",
        "udp",
        "other",
        "other",
        "other",
    ]
