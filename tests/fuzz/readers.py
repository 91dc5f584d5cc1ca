"""Mutated flow files for every reader, and what the readers must do with them.

Seeds are real files from the shared data where it holds the format (UNSW-NB15, NSL-KDD, both
CIC-IDS2017 samples, IoT-23 Zeek logs, pcap captures), cut to their first rows so one input reads in
milliseconds; for the canonical CSV and JSON lines, Parquet and a mapped CSV (``generic``) they are
real IoT-23 flows written in that layout. The shared data holds no NAD 2021, nProbe, nfdump or Argus
export: those seeds are the sample rows of the readers' own tests. Each input is written to a file
(now and then gzip-compressed) and read with its format named. The oracle: the reader returns a
valid table or raises one of nadkit's typed errors; anything else escaped, and an accepted table
with an invalid address, port, count or duration is garbage accepted.
"""

from __future__ import annotations

import gzip
import io
import random
import tempfile
import time
from functools import cache
from pathlib import Path

from nadkit.errors import NadkitError
from tests.fuzz.common import DATA, mutate_bytes, real_flows, table_problems
from tests.fuzz.netflow import FuzzResult

#: the mapping a ``generic`` seed is read with (real flows under other column names)
MAPPING = "time=Start,src=From,dst=To,spt=SPort,dpt=DPort,proto=Proto,out_bytes=Bytes,label=Tag"


def _head(path: Path, lines: int) -> bytes:
    with path.open("rb") as handle:
        return b"".join(handle.readline() for _ in range(lines))


def _test_rows(module: str, rows: str = "ROWS", tail: str | None = None) -> bytes:
    """The header and sample rows of a reader's own tests (formats the shared data lacks)."""
    import importlib

    tests = importlib.import_module(f"tests.sources.{module}")
    lines = [tests.HEADER, *getattr(tests, rows), *(getattr(tests, tail) if tail else ())]
    return ("\n".join(lines) + "\n").encode()


@cache
def seeds() -> dict[str, list[bytes]]:
    """Seed inputs per reader format."""
    flows = real_flows(120)
    out: dict[str, list[bytes]] = {
        "unsw": [_head(DATA / "unsw_nb15" / "UNSW_NB15_training-set.csv", 40)],
        "kdd": [_head(DATA / "nsl_kdd" / "KDDTrain+_20Percent.txt", 40)],
        "cic": [
            _head(DATA / "cicids2017" / "CICIDS2017_sample_km.csv", 30),
            _head(DATA / "cicids2017" / "CICIDS2017_improved_rnd5000_timesorted.csv", 30),
        ],
        "zeek": [
            _head(DATA / "iot23" / "CTU-Honeypot-Capture-4-1" / "conn.log.labeled", 48),
            _head(DATA / "iot23" / "CTU-IoT-Malware-Capture-42-1" / "conn.log.labeled", 48),
        ],
        "pcap": [
            (DATA / "pcaps" / "attack" / "icmp-portscan.pcap").read_bytes(),
            (DATA / "pcaps" / "benign" / "ssh.pcap").read_bytes()[:12_000],
        ],
        "nad": [_test_rows("test_nad")],
        "netflow": [_test_rows("test_netflow")],
        "nfdump": [_test_rows("test_nfdump", "V9_FLOWS", "SUMMARY")],
        "argus": [_test_rows("test_argus")],
    }
    csv = io.BytesIO()
    flows.write_csv(csv)
    lines = io.BytesIO()
    flows.write_ndjson(lines)
    out["canonical"] = [csv.getvalue(), lines.getvalue()]
    parquet = io.BytesIO()
    flows.write_parquet(parquet)
    out["parquet"] = [parquet.getvalue()]
    renamed = flows.select(["time", "src", "dst", "spt", "dpt", "proto", "out_bytes", "label"])
    renamed.columns = ["Start", "From", "To", "SPort", "DPort", "Proto", "Bytes", "Tag"]
    mapped = io.BytesIO()
    renamed.write_csv(mapped)
    out["generic"] = [mapped.getvalue()]
    return out


SUFFIX = {"pcap": ".pcap", "parquet": ".parquet", "zeek": ".log", "kdd": ".txt", "argus": ".binetflow"}
FORMATS = ("unsw", "kdd", "cic", "zeek", "pcap", "nad", "netflow", "nfdump", "argus", "canonical", "parquet")
FORMATS += ("generic",)


def mutated_files(fmt: str, count: int, seed: int) -> list[bytes]:
    """``count`` inputs of ``fmt``: mostly mutated seeds, one in eight a seed as it is."""
    rng = random.Random(f"reader:{fmt}:{seed}")
    pool = seeds()[fmt]
    return [
        rng.choice(pool) if n % 8 == 0 else mutate_bytes(rng.choice(pool), rng, pool) for n in range(count)
    ]


def fuzz_reader(fmt: str, count: int, seed: int = 0) -> FuzzResult:
    """Read ``count`` mutated files of ``fmt``; count refusals, catch what escapes."""
    from nadkit.sources import load_flows

    result = FuzzResult(f"reader-{fmt}")
    rng = random.Random(f"reader-gzip:{fmt}:{seed}")
    options = {"mapping": MAPPING} if fmt == "generic" else {}
    with tempfile.TemporaryDirectory(prefix="nadkit-fuzz-") as folder:
        for number, content in enumerate(mutated_files(fmt, count, seed)):
            result.inputs += 1
            packed = fmt not in ("parquet",) and rng.random() < 0.1
            path = Path(folder) / f"input{number % 4}{SUFFIX.get(fmt, '.csv')}{'.gz' if packed else ''}"
            path.write_bytes(gzip.compress(content, compresslevel=1) if packed else content)
            started = time.perf_counter()
            try:
                frame, _ = load_flows(path, format=fmt, **options)
            except NadkitError:
                result.rejected += 1
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as error:  # the oracle: nothing else may escape (a Rust panic included)
                escaped = f"{fmt} {content[:200].hex()}: {type(error).__name__}: {error}"
                result.exceptions.append(escaped[:600])
            else:
                result.flows += frame.height
                result.garbage.extend(f"{fmt} input {number}: {p}" for p in table_problems(frame))
            result.slowest_s = max(result.slowest_s, time.perf_counter() - started)
    return result


__all__ = ["FORMATS", "fuzz_reader", "mutated_files", "seeds"]
