"""Captures metered by Argus instead of nfstream, for large captures (``--meter argus``).

Argus (Debian's ``argus-server``) reads the capture (``argus -r``, a status record every
:data:`STATUS_S` seconds, nfstream's active timeout) into its own record file, ``ra`` (``argus-client``)
prints the records as CSV (``-Z b``: a TCP flow's state as the flags each side sent), and the ``argus``
reader maps them to the canonical table. On 2 cores it meters a capture about seven times faster than
nfstream into nearly the same flows (``benchmarks/captures.py``: 1,056,204 packets in 3.3 s against
25.7 s, 234,252 flows against nfstream's 234,486; a SYN flood's 37,669 flows, the same count, in 1.4 s
against 2.7 s), but with less in each flow: bytes and packets by direction, duration, the TCP flags
and Argus's state and direction, the TOS bytes; no application (no nDPI), no packet-size or
inter-arrival statistics, no names asked. Argus also meters ARP exchanges, which nfstream leaves out.
A model is trained and scored on flows of one meter: the bundle remembers it (``pcap_argus``).

The meter is chosen with ``nadkit --meter argus`` (or ``NADKIT_METER=argus``) or the pcap reader's
option ``meter="argus"``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import polars as pl

from nadkit.errors import ConfigError, FormatError
from nadkit.schema import label_expr
from nadkit.sources import argus

log = logging.getLogger(__name__)

#: the environment variable (set by ``nadkit --meter``) naming the meter of captures
METER_ENV = "NADKIT_METER"
#: the meters a capture can be read with
METERS = ("nfstream", "argus")
#: seconds between Argus's status records of a long flow (nfstream's active timeout)
STATUS_S = 1800
#: CTU-13's binetflow columns, as ``ra -s`` names them (no packets by direction)
CTU13_FIELDS = ("stime", "dur", "proto", "saddr", "sport", "dir", "daddr", "dport", "state", "stos", "dtos")
CTU13_FIELDS += ("pkts", "bytes", "sbytes")
#: the fields the meter has ``ra`` print: CTU-13's and the source's packets
FIELDS = (*CTU13_FIELDS, "spkts")
#: the column ``ra`` heads each field with
_HEADER = dict(
    zip(
        FIELDS,
        (
            "StartTime",
            "Dur",
            "Proto",
            "SrcAddr",
            "Sport",
            "Dir",
            "DstAddr",
            "Dport",
            "State",
            "sTos",
            "dTos",
            "TotPkts",
            "TotBytes",
            "SrcBytes",
            "SrcPkts",
        ),
        strict=True,
    )
)
#: the source format a pipeline fitted on Argus-metered captures records
SOURCE_FORMAT = "pcap_argus"


def chosen_meter(meter: object = None) -> str:
    """The meter of captures: ``meter`` when given, else ``NADKIT_METER``, else nfstream."""
    value = meter if meter is not None else os.environ.get(METER_ENV, "").strip() or METERS[0]
    if value not in METERS:
        raise ConfigError(f"meter must be one of {', '.join(METERS)}, not {value!r}")
    return str(value)


def source_format(fmt: str) -> str:
    """The source format a pipeline fitted on flows read as ``fmt`` records: ``pcap_argus`` for
    captures metered by Argus, so that a bundle never meets flows of the other meter unnamed."""
    return SOURCE_FORMAT if fmt == "pcap" and chosen_meter() == "argus" else fmt


def meter(path: Path, *, shown_as: Path, label: str | None) -> pl.LazyFrame:
    """The flows of the checked capture ``path`` as Argus meters them, in the canonical table."""
    with tempfile.TemporaryDirectory(prefix="nadkit-argus-") as folder:
        table = Path(folder) / "flows.csv"
        binetflow(path, table, shown_as=shown_as)
        flows = argus.read(table).collect()
    log.info("%s: %d flows metered by Argus", shown_as, flows.height)
    if label is not None:
        flows = flows.with_columns(
            label_expr(pl.lit(label, pl.String)).alias("label"),
            pl.lit(label, pl.String).alias("label_original"),
        )
    return flows.lazy()


def binetflow(
    path: Path,
    out: Path,
    *,
    shown_as: Path | None = None,
    status_s: int = STATUS_S,
    fields: tuple[str, ...] = FIELDS,
) -> None:
    """Write the flows of the capture ``path`` as Argus meters them (a status record every
    ``status_s`` seconds) and ``ra -Z b`` prints them, ``fields`` as columns, into the CSV ``out``
    (the header alone where Argus metered no flows)."""
    shown_as = shown_as or path
    binaries = {name: shutil.which(name) for name in ("argus", "ra")}
    if None in binaries.values():
        raise ConfigError(
            "the argus meter needs Argus: install Debian's argus-server and argus-client "
            "(or read captures with nfstream: --meter nfstream)"
        )
    with tempfile.TemporaryDirectory(prefix="nadkit-argus-") as folder:
        records, rarc = Path(folder) / "flows.argus", Path(folder) / "rarc"
        _run([binaries["argus"], "-S", str(status_s), "-r", str(path), "-w", str(records)], shown_as)
        if not records.exists():  # a capture without IP or ARP packets leaves no record file
            log.warning("%s: Argus metered no flows", shown_as)
            out.write_text(",".join(_HEADER[field] for field in fields) + "\n")
            return
        rarc.write_text('RA_TIME_FORMAT="%Y/%m/%d %T.%f"\n')
        command = [binaries["ra"], "-F", str(rarc), "-Z", "b", "-n", "-r", str(records), "-c", ","]
        command += ["-s", *fields, "-", "not", "man"]  # flows only, not Argus's own status records
        with out.open("w") as handle:
            _run(command, shown_as, stdout=handle)


def _run(command: list[str], shown_as: Path, *, stdout: object = subprocess.DEVNULL) -> None:
    """Run an Argus tool; a failure becomes a :class:`FormatError` naming the capture."""
    result = subprocess.run(
        command, stdout=stdout, stderr=subprocess.PIPE, env={**os.environ, "TZ": "UTC"}, check=False
    )
    if result.returncode != 0:
        said = result.stderr.decode(errors="replace").strip().splitlines()
        reason = said[-1] if said else f"exit status {result.returncode}"
        raise FormatError(f"{shown_as}: {Path(command[0]).name} could not read the capture ({reason})")


__all__ = [
    "CTU13_FIELDS",
    "FIELDS",
    "METERS",
    "METER_ENV",
    "SOURCE_FORMAT",
    "binetflow",
    "chosen_meter",
    "meter",
    "source_format",
]
