"""Bundles as hostile input: every file is checked against its schema before it is used, an absurd
threshold is refused, and with a signing key only bundles signed with it load."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nadkit.errors import BundleError, ConfigError
from nadkit.training.bundle import CALIBRATION, MANIFEST, THRESHOLD, TRAINING_ROWS, WEIGHTS, ModelBundle, sign
from nadkit.training.signing import KEY_ENV, SIGNATURE

KEY = "a-signing-key-of-enough-length"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nadkit.simulate import SimulationConfig, simulate
    from nadkit.training.fit import train_model

    folder = tmp_path_factory.mktemp("hostile")
    flows = folder / "flows.parquet"
    simulate(SimulationConfig(days=1, flows_per_day=2000, seed=5)).drop("day").write_parquet(flows)
    out = folder / "model"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(KEY_ENV, raising=False)
        train_model(flows, out, model="ae", config={"epochs": 1, "hidden": [16], "bottleneck": 4}, onnx=False)
    return out


@pytest.fixture
def copy(saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(KEY_ENV, raising=False)
    target = tmp_path / "model"
    shutil.copytree(saved, target)
    return target


def _rewrite(folder: Path, name: str, content: bytes) -> None:
    """Replace ``name`` and its checksum in the manifest, as a deliberate edit would."""
    (folder / name).write_bytes(content)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][name] = hashlib.sha256(content).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _edit_json(folder: Path, name: str, change: Callable[[Any], Any]) -> None:
    """Change the JSON file ``name`` in place (``change`` edits the parsed content)."""
    data = json.loads((folder / name).read_text())
    change(data)
    content = json.dumps(data).encode()
    if name == MANIFEST:
        (folder / MANIFEST).write_bytes(content)
    else:
        _rewrite(folder, name, content)


MANIFEST_EDITS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "model not a name": (lambda m: m.update(model=["ae"]), "field 'model'"),
    "features not a list": (lambda m: m.update(features="abc"), "field 'features'"),
    "features repeat": (lambda m: m.update(features=m["features"][:1] * len(m["features"])), "repeat"),
    "feature not text": (lambda m: m["features"].__setitem__(0, 7), r"features\[0\]"),
    "unknown file": (lambda m: m["files"].update({"../../etc/passwd": "0" * 64}), "not a file of a model"),
    "checksum not hex": (lambda m: m["files"].update({THRESHOLD: "x"}), "SHA-256"),
    "required file unlisted": (lambda m: m["files"].pop(THRESHOLD), "missing from the file checksums"),
    "setting nested deep": (
        lambda m: m["config"].update(deep=[[[[[[1]]]]]]),
        "nested too deeply",
    ),
    "row counts": (lambda m: m["training_rows"].update(kept=10**9), "kept <= distinct <= rows"),
    "versions": (lambda m: m.update(versions=[1]), "field 'versions'"),
    "view": (lambda m: m.update(view="pixels"), "field 'view'"),
}


@pytest.mark.parametrize("edit", list(MANIFEST_EDITS))
def test_manifest_fields_are_checked(copy: Path, edit: str) -> None:
    change, message = MANIFEST_EDITS[edit]
    _edit_json(copy, MANIFEST, change)
    with pytest.raises(BundleError, match=message) as caught:
        ModelBundle.load(copy)
    assert "\n" not in str(caught.value)


def test_a_manifest_with_nan_or_too_large_is_refused(copy: Path) -> None:
    text = (copy / MANIFEST).read_text().replace('"seed": 0', '"seed": NaN')
    (copy / MANIFEST).write_text(text)
    with pytest.raises(BundleError, match="not valid JSON"):
        ModelBundle.load(copy)
    (copy / MANIFEST).write_bytes(b" " * (17 << 20))
    with pytest.raises(BundleError, match="more than this bundle file may hold"):
        ModelBundle.load(copy)


def test_json_nested_too_deeply_is_one_line(copy: Path) -> None:
    _rewrite(copy, "pipeline.json", b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(BundleError, match="nested too deeply"):
        ModelBundle.load(copy)


def test_calibration_fields_are_checked(copy: Path) -> None:
    _edit_json(copy, CALIBRATION, lambda c: c["normal_scores"]["levels"].__setitem__(0, -3.0))
    with pytest.raises(BundleError, match=r"calibration.json: field 'normal_scores.levels'"):
        ModelBundle.load(copy)


def test_calibration_ranges_of_unknown_features_are_refused(copy: Path) -> None:
    _edit_json(copy, CALIBRATION, lambda c: c["ranges"].update({"not_a_feature": {"kind": "share"}}))
    with pytest.raises(BundleError, match="not a feature of the model"):
        ModelBundle.load(copy)


def test_a_file_larger_than_its_feature_count_allows_is_refused(copy: Path) -> None:
    calibration = json.loads((copy / CALIBRATION).read_text())
    calibration["padding"] = "x" * (8 << 20)
    _rewrite(copy, CALIBRATION, json.dumps(calibration).encode())
    with pytest.raises(BundleError, match=r"calibration.json: .* more than this bundle file may hold"):
        ModelBundle.load(copy)


def test_metrics_must_be_an_object(copy: Path) -> None:
    _rewrite(copy, "metrics.json", b"[1, 2]")
    with pytest.raises(BundleError, match=r"metrics.json: must hold a JSON object"):
        ModelBundle.load(copy)


def test_row_hashes_larger_than_the_manifest_counts_are_refused(copy: Path) -> None:
    content = (copy / TRAINING_ROWS).read_bytes()
    _rewrite(copy, TRAINING_ROWS, content + b"\0" * (1 << 20))
    with pytest.raises(BundleError, match=r"more than .* row hashes need"):
        ModelBundle.load(copy)


def test_a_weights_header_longer_than_the_file_is_refused(copy: Path) -> None:
    content = bytearray((copy / WEIGHTS).read_bytes())
    content[:8] = (1 << 40).to_bytes(8, "little")
    _rewrite(copy, WEIGHTS, bytes(content))
    with pytest.raises(BundleError, match=r"safetensors header .* does not fit"):
        ModelBundle.load(copy)


@pytest.mark.parametrize("value", [1e9, -1e9])
def test_a_finite_but_absurd_threshold_is_refused(copy: Path, value: float) -> None:
    _edit_json(copy, THRESHOLD, lambda t: t.update(value=value))
    with pytest.raises(BundleError, match="lies far outside the hold-out scores"):
        ModelBundle.load(copy)


def test_a_threshold_within_the_hold_out_scores_loads(copy: Path) -> None:
    calibration = json.loads((copy / CALIBRATION).read_text())
    top = calibration["holdout_max"]
    assert top >= calibration["normal_scores"]["values"][-1]
    _edit_json(copy, THRESHOLD, lambda t: t.update(value=top * 1.01))
    assert ModelBundle.load(copy).threshold.value == pytest.approx(top * 1.01)


def test_an_absurd_threshold_in_a_bundle_without_the_hold_out_maximum(copy: Path) -> None:
    """Bundles saved before the hold-out maximum was kept: the quantile threshold is checked against
    the normal scores alone."""
    _edit_json(copy, CALIBRATION, lambda c: c.pop("holdout_max"))
    assert ModelBundle.load(copy).calibration.holdout_max is None
    _edit_json(copy, THRESHOLD, lambda t: t.update(value=1e9))
    with pytest.raises(BundleError, match="lies far outside"):
        ModelBundle.load(copy)


# -- signatures ----------------------------------------------------------------------------------


def test_without_a_key_nothing_is_signed_or_checked(copy: Path) -> None:
    assert not (copy / SIGNATURE).exists()
    ModelBundle.load(copy)


def test_a_key_signs_on_save_and_verifies_on_load(
    copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = ModelBundle.load(copy)
    monkeypatch.setenv(KEY_ENV, KEY)
    signed = bundle.save(tmp_path / "signed")
    assert json.loads((signed / SIGNATURE).read_text())["algorithm"] == "hmac-sha256"
    ModelBundle.load(signed)
    # an unsigned bundle, another key, a consistent edit: all refused
    with pytest.raises(BundleError, match="not signed"):
        ModelBundle.load(copy)
    with pytest.raises(BundleError, match="signature does not match"):
        ModelBundle.load(signed, key="another-key-of-enough-length")
    edited = tmp_path / "edited"
    shutil.copytree(signed, edited)
    _edit_json(edited, THRESHOLD, lambda t: t.update(value=t["value"] * 1.001))
    with pytest.raises(BundleError, match="signature does not match") as caught:
        ModelBundle.load(edited)
    assert "\n" not in str(caught.value)
    # without a key, a signed bundle loads, with a note
    monkeypatch.delenv(KEY_ENV)
    with caplog.at_level(logging.INFO, logger="nadkit.training.signing"):
        ModelBundle.load(signed)
    assert "signed bundle loaded without checking" in caplog.text


def test_a_short_key_is_refused(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        ModelBundle.load(copy)


def test_sign_an_existing_bundle(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no signing key"):
        sign(copy)
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(BundleError, match="not signed"):
        ModelBundle.load(copy)
    assert sign(copy) == copy / SIGNATURE
    ModelBundle.load(copy)
    # a bundle that does not verify is not signed
    with (copy / THRESHOLD).open("a") as handle:
        handle.write(" ")
    (copy / SIGNATURE).unlink()
    with pytest.raises(BundleError, match="checksum"):
        sign(copy)
    assert not (copy / SIGNATURE).exists()


def test_models_sign_command(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from nadkit.cli import app

    monkeypatch.setenv(KEY_ENV, KEY)
    result = CliRunner().invoke(app, ["models", "sign", str(copy)])
    assert result.exit_code == 0, result.output
    ModelBundle.load(copy)
    monkeypatch.delenv(KEY_ENV)
    result = CliRunner().invoke(app, ["models", "sign", str(copy)])
    assert isinstance(result.exception, ConfigError) and "NADKIT_BUNDLE_KEY" in str(result.exception)


def test_the_service_setting_is_the_key(copy: Path, tmp_path: Path) -> None:
    from nadkit.service.settings import Settings

    settings = Settings(db=tmp_path / "a.db", insecure_localhost=True, bundle_key=KEY)
    assert KEY not in repr(settings)
    with pytest.raises(ConfigError, match=r"bundle_key.*at least 16"):
        Settings(db=tmp_path / "a.db", insecure_localhost=True, bundle_key="short")
    with pytest.raises(BundleError, match="not signed"):
        ModelBundle.load(copy, key=settings.bundle_key)
