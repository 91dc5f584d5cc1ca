"""What the fuzzers found, each with the smallest input that showed it: now a clean, typed refusal."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nadkit.errors import BundleError, SchemaError

CRASHES = Path(__file__).parent / "crashes"


def test_a_parquet_file_that_makes_the_reader_panic_is_a_format_error() -> None:
    """A mutated Parquet file (column chunks past the end of the file) made Polars panic; the
    ``PanicException`` is no ``Exception`` and ended the command with a Rust backtrace."""
    from nadkit.errors import FormatError
    from nadkit.sources import load_flows

    with pytest.raises(FormatError) as caught:
        load_flows(CRASHES / "parquet-panic.parquet", format="parquet")
    assert "parquet-panic.parquet" in str(caught.value)


@pytest.fixture(scope="module")
def small_bundle(shared_data: Path) -> Path:
    from tests.fuzz.bundles import seed_bundle

    return seed_bundle()


def _consistent(folder: Path, name: str, content: bytes) -> None:
    (folder / name).write_bytes(content)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256(content).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_pipeline_whose_skipped_groups_are_a_number_is_refused(small_bundle: Path, tmp_path: Path) -> None:
    """``"skipped_groups": 1`` in pipeline.json raised AttributeError out of the loader."""
    from nadkit.training.bundle import ModelBundle

    copy = tmp_path / "model"
    shutil.copytree(small_bundle, copy)
    pipeline = json.loads((copy / "pipeline.json").read_text())
    pipeline["skipped_groups"] = 1
    _consistent(copy, "pipeline.json", json.dumps(pipeline).encode())
    with pytest.raises(BundleError, match="pipeline is corrupt"):
        ModelBundle.load(copy, key="")


def test_weights_that_are_not_finite_are_refused(small_bundle: Path, tmp_path: Path) -> None:
    """A NaN written into the weights (checksum renewed) loaded, and every flow scored NaN: no alert."""
    from safetensors.numpy import load_file, save_file

    from nadkit.training.bundle import ModelBundle

    copy = tmp_path / "model"
    shutil.copytree(small_bundle, copy)
    arrays = load_file(str(copy / "weights.safetensors"))
    name = next(k for k, v in arrays.items() if v.dtype.kind == "f")
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = np.nan
    save_file(arrays, str(tmp_path / "weights"))
    _consistent(copy, "weights.safetensors", (tmp_path / "weights").read_bytes())
    with pytest.raises(BundleError, match="not finite numbers"):
        ModelBundle.load(copy, key="")


def test_a_stray_carriage_return_in_a_csv_header_is_a_schema_error(tmp_path: Path) -> None:
    """The last-row check read the header with the csv module, whose ``csv.Error`` escaped."""
    from nadkit.sources import load_flows
    from tests.sources.test_cic import HEADER_2018, ROWS_2018

    cut = HEADER_2018.index(",") + 2
    path = tmp_path / "flows.csv"
    path.write_text("\n".join([HEADER_2018[:cut] + "\r" + HEADER_2018[cut:], *ROWS_2018]) + "\n")
    with pytest.raises(SchemaError, match="header or last row is not CSV"):
        load_flows(path, format="cic")


def test_a_zeek_separator_that_is_a_cut_escape_is_a_format_error(tmp_path: Path) -> None:
    r"""``#separator \x`` (an escape cut short) raised UnicodeDecodeError."""
    from nadkit.errors import FormatError
    from nadkit.sources import load_flows

    path = tmp_path / "conn.log"
    path.write_bytes(b"#separator \\x\n#fields\tts\tuid\n1.0\tx\n")
    with pytest.raises(FormatError, match=r"conn\.log: #separator"):
        load_flows(path, format="zeek")


def test_a_time_beyond_python_dates_is_named_not_an_overflow(shared_data: Path, tmp_path: Path) -> None:
    """A Zeek time 50,000 years ahead made the error message itself fail (OverflowError)."""
    from nadkit.sources import load_flows

    source = shared_data / "iot23" / "CTU-Honeypot-Capture-4-1" / "conn.log.labeled"
    lines = source.read_text().splitlines()[:10]
    data = lines[8].split("\t")
    data[0] = "1547127342494.493952"
    path = tmp_path / "conn.log"
    path.write_text("\n".join([*lines[:8], "\t".join(data)]) + "\n")
    with pytest.raises(SchemaError, match="more than a year ahead"):
        load_flows(path, format="zeek")


def test_a_capture_metered_into_out_of_range_values_is_a_format_error() -> None:
    """A mutated capture (a timestamp flipped backwards) gave nfstream flows with a 2**64-wrapped
    value; building the table raised Polars' ComputeError out of the reader."""
    pytest.importorskip("nfstream")
    from nadkit.errors import FormatError
    from nadkit.sources import load_flows

    with pytest.raises(FormatError, match="out of range"):
        load_flows(CRASHES / "pcap-out-of-range.pcap", format="pcap")


def test_a_parquet_file_that_makes_polars_abort_is_refused_cleanly() -> None:
    """A mutated Parquet page header (a negative number of values) made Polars try to allocate
    2 EiB and abort the whole process; PyArrow now decodes the pages first and refuses them. Run in a
    child process, so that an abort could not end the tests."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from nadkit.errors import FormatError\n"
        "from nadkit.sources import load_flows\n"
        "try:\n"
        "    load_flows(sys.argv[1], format='parquet')\n"
        "except FormatError as error:\n"
        "    print(error)\n"
        "    sys.exit(2)\n"
    )
    command = [sys.executable, "-c", script, str(CRASHES / "parquet-abort.parquet")]
    done = subprocess.run(command, capture_output=True, timeout=120, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "parquet-abort.parquet: corrupt Parquet file (Invalid page header" in done.stdout
    assert len(done.stdout.strip().splitlines()) == 1


def test_the_generic_reader_and_the_alert_reader_refuse_that_file_too(tmp_path: Path) -> None:
    """Every path that reads Parquet checks its pages first: a mapped read and an alert picture."""
    from nadkit.errors import FormatError
    from nadkit.pictures.files import load_alert
    from nadkit.sources import load_flows

    with pytest.raises(FormatError, match=r"parquet-abort\.parquet: corrupt Parquet"):
        load_flows(CRASHES / "parquet-abort.parquet", mapping="time=time,src=src,dst=dst")
    alerts = tmp_path / "alerts.parquet"
    shutil.copyfile(CRASHES / "parquet-abort.parquet", alerts)
    with pytest.raises(FormatError, match=r"alerts\.parquet: corrupt Parquet"):
        load_alert(alerts, 0)


def test_an_arrow_body_with_corrupt_views_in_null_slots_is_read_not_a_segfault(tmp_path: Path) -> None:
    """A mutated Arrow IPC stream body (string-view columns whose null slots point outside their data)
    passed PyArrow's full validation, and Polars, handed its arrays, segfaulted the service. The view
    columns are now rebuilt by PyArrow first; run in a child process, so that a crash cannot end the
    tests, and every value is touched."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from nadkit.service.scoring import _read_arrow\n"
        "frame = _read_arrow(open(sys.argv[1], 'rb').read())\n"
        "frame.to_dicts()\n"
        "print(frame.height, frame.schema['app'])\n"
    )
    command = [sys.executable, "-c", script, str(CRASHES / "arrow-view-segfault.arrows")]
    done = subprocess.run(command, capture_output=True, timeout=120, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["40", "String"]


def test_an_arrow_file_is_read_through_checked_arrays(tmp_path: Path) -> None:
    """Arrow IPC files go the same way (PyArrow reads, views rebuilt), and a corrupt one is a
    FormatError naming the file."""
    import polars as pl

    from nadkit.errors import FormatError
    from nadkit.sources import load_flows
    from tests.fuzz.common import real_flows

    path = tmp_path / "flows.arrow"
    real_flows(50).write_ipc(path)
    frame, fmt = load_flows(path)
    assert fmt == "parquet" and frame.height == 50 and frame.schema["src"] == pl.String
    content = bytearray(path.read_bytes())
    content[len(content) // 2 : len(content) // 2 + 64] = b"\xff" * 64
    path.write_bytes(bytes(content))
    with pytest.raises(FormatError, match=r"flows\.arrow: corrupt Arrow"):
        load_flows(path)


def test_an_arrow_body_whose_time_unit_changed_is_refused_not_a_panic() -> None:
    """A mutated Arrow body whose ``time`` column became ``timestamp[s]`` (microsecond values read as
    seconds, 48 million years ahead) made Polars panic converting it; the panic, no ``Exception``,
    stopped the service's event loop. It is now a 422 naming the column."""
    from nadkit.service.scoring import InputError, _read_arrow

    with pytest.raises(InputError, match="column 'time' holds times beyond the years 1 to 9999") as caught:
        _read_arrow((CRASHES / "arrow-time-panic.arrows").read_bytes())
    assert caught.value.status == 422


@pytest.mark.parametrize(("name", "path"), [("manifest.json", ("config", "score_batch_size"))])
@pytest.mark.parametrize("value", [2.5, 1e300])
def test_a_whole_number_setting_that_is_a_fraction_is_refused(
    small_bundle: Path, tmp_path: Path, name: str, path: tuple[str, ...], value: float
) -> None:
    """``score_batch_size: 2.5`` in the manifest's model settings (found by the long run) raised
    TypeError when scoring; ``connections: 2.5`` in the pipeline's counter settings AttributeError."""
    from nadkit.errors import NadkitError
    from nadkit.training.bundle import ModelBundle
    from tests.fuzz.common import real_flows

    for file, keys in ((name, path), ("pipeline.json", ("config", "counters", "connections"))):
        copy = tmp_path / f"model-{file}"
        shutil.copytree(small_bundle, copy)
        data = json.loads((copy / file).read_text())
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
        if file == "manifest.json":
            (copy / file).write_text(json.dumps(data))
        else:
            _consistent(copy, file, json.dumps(data).encode())
        with pytest.raises(NadkitError, match=f"{keys[-1]}' must be a whole number"):
            ModelBundle.load(copy, key="").score(real_flows(300).head(20))


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_duration_that_is_not_finite_is_refused(tmp_path: Path, value: float) -> None:
    """The long run read ``duration`` inf (UNSW-NB15, Argus, canonical CSV) and NaN (Parquet) as
    valid flows: garbage accepted."""
    import polars as pl

    from nadkit.sources import load_flows
    from tests.fuzz.common import real_flows

    path = tmp_path / "flows.parquet"
    flows = real_flows(20)
    flows.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(value).otherwise(pl.col("duration")).alias("duration")
    ).write_parquet(path)
    with pytest.raises(SchemaError, match="column 'duration': row 4: not a finite number"):
        load_flows(path, format="parquet")
