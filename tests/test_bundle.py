"""Model bundles: save and load give identical scores; missing, corrupt or altered files are refused;
an optional model.onnx scores on ONNX Runtime like the detector does on torch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nadkit.errors import BundleError
from nadkit.simulate import SimulationConfig, simulate
from nadkit.training.bundle import CALIBRATION, FILES, MANIFEST, ONNX, REFERENCE, TRAINING_ROWS, ModelBundle
from nadkit.training.fit import train_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("bundle")
    flows = folder / "flows.parquet"
    simulate(SimulationConfig(days=1, flows_per_day=3000, seed=4)).drop("day").write_parquet(flows)
    out = folder / "model"
    # saved without its ONNX graph: the tests add it where they need it
    train_model(flows, out, model="ae", config={"epochs": 3, "batch_size": 256}, onnx=False)
    return out, flows


def test_load_gives_identical_scores(trained: tuple[Path, Path]) -> None:
    from nadkit.sources import load_flows

    out, flows = trained
    frame, _ = load_flows(flows)
    bundle = ModelBundle.load(out)
    again = ModelBundle.load(out)
    scores = bundle.score(frame)
    assert scores.dtype == np.float64 and len(scores) == frame.height
    np.testing.assert_array_equal(scores, again.score(frame))
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["model"] == "ae"
    assert manifest["features"] == list(bundle.pipeline.feature_names_)
    assert bundle.threshold.method in {"f_beta", "quantile"}
    assert len(bundle.metrics["history"]["train_loss"]) == bundle.metrics["history"]["epochs_run"]


def test_existing_bundle_is_not_overwritten(trained: tuple[Path, Path]) -> None:
    from nadkit.errors import ConfigError

    out, flows = trained
    before = (out / MANIFEST).read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        train_model(flows, out, model="ae", config={"epochs": 1})
    assert (out / MANIFEST).read_bytes() == before


@pytest.mark.parametrize("name", [*FILES, TRAINING_ROWS])
def test_altered_file_is_refused(trained: tuple[Path, Path], tmp_path: Path, name: str) -> None:
    copy = tmp_path / "model"
    shutil.copytree(trained[0], copy)
    with (copy / name).open("ab") as handle:
        handle.write(b" ")
    with pytest.raises(BundleError, match=name):
        ModelBundle.load(copy)


@pytest.mark.parametrize("name", [MANIFEST, *FILES, TRAINING_ROWS])
def test_missing_file_is_refused(trained: tuple[Path, Path], tmp_path: Path, name: str) -> None:
    copy = tmp_path / "model"
    shutil.copytree(trained[0], copy)
    (copy / name).unlink()
    with pytest.raises(BundleError, match="missing"):
        ModelBundle.load(copy)


def test_foreign_or_future_manifest_is_refused(trained: tuple[Path, Path], tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(trained[0], copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(BundleError, match="version 99"):
        ModelBundle.load(copy)
    (copy / MANIFEST).write_text("not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        ModelBundle.load(copy)
    with pytest.raises(BundleError, match="not a model bundle"):
        ModelBundle.load(tmp_path / "nothing")


# -- ONNX: model.onnx in the bundle, scoring engines ------------------------------------------------

#: ONNX Runtime against torch: |onnx - torch| <= 1e-4 + 1e-4 * |torch| (float32 graph, float64 torch sums)
RTOL = ATOL = 1e-4


@pytest.fixture(scope="module")
def with_onnx(trained: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained bundle with model.onnx added afterwards."""
    copy = tmp_path_factory.mktemp("onnx") / "model"
    shutil.copytree(trained[0], copy)
    ModelBundle.load(copy, engine="torch").export_onnx()
    return copy


@pytest.fixture(scope="module")
def frame(trained: tuple[Path, Path]) -> pl.DataFrame:
    from nadkit.sources import load_flows

    return load_flows(trained[1])[0]


def test_onnx_engine_matches_torch_engine(with_onnx: Path, frame: pl.DataFrame) -> None:
    manifest = json.loads((with_onnx / MANIFEST).read_text())
    assert set(manifest["files"]) == {*FILES, ONNX, TRAINING_ROWS, CALIBRATION, REFERENCE}
    torch_bundle = ModelBundle.load(with_onnx, engine="torch")
    onnx_bundle = ModelBundle.load(with_onnx, engine="onnx", threads=1)
    auto = ModelBundle.load(with_onnx)
    assert (torch_bundle.active_engine, onnx_bundle.active_engine, auto.active_engine) == (
        "torch",
        "onnx",
        "onnx",
    )
    expected = torch_bundle.score(frame)
    np.testing.assert_allclose(onnx_bundle.score(frame), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(auto.score(frame), onnx_bundle.score(frame))
    data = torch_bundle.data(frame)
    np.testing.assert_allclose(
        onnx_bundle.contributions(data), torch_bundle.contributions(data), rtol=RTOL, atol=ATOL
    )
    np.testing.assert_array_equal(torch_bundle.score_data(data), expected)
    assert onnx_bundle.use_engine("torch").active_engine == "torch"
    np.testing.assert_array_equal(onnx_bundle.score_data(data), expected)


def test_bundle_without_onnx_scores_with_torch(trained: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = ModelBundle.load(trained[0])
    assert not bundle.has_onnx and bundle.active_engine == "torch"
    with pytest.raises(BundleError, match=r"no model\.onnx"):
        ModelBundle.load(trained[0], engine="onnx")
    with pytest.raises(BundleError, match=r"no model\.onnx"):
        bundle.use_engine("onnx")
    from nadkit.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown scoring engine"):
        ModelBundle.load(trained[0], engine="gpu")  # type: ignore[arg-type]
    # a model.onnx the manifest does not list is not trusted: ignored
    copy = tmp_path / "model"
    shutil.copytree(trained[0], copy)
    (copy / ONNX).write_bytes(b"not a graph")
    assert ModelBundle.load(copy).active_engine == "torch"


@pytest.mark.parametrize("change", ["append", "remove"])
def test_altered_onnx_is_refused(with_onnx: Path, tmp_path: Path, change: str) -> None:
    copy = tmp_path / "model"
    shutil.copytree(with_onnx, copy)
    if change == "append":
        with (copy / ONNX).open("ab") as handle:
            handle.write(b" ")
    else:
        (copy / ONNX).unlink()
    for engine in ("torch", "auto", "onnx"):
        with pytest.raises(BundleError, match=ONNX):
            ModelBundle.load(copy, engine=engine)  # type: ignore[arg-type]


def test_export_replaces_an_earlier_graph(with_onnx: Path, tmp_path: Path, frame: pl.DataFrame) -> None:
    copy = tmp_path / "model"
    shutil.copytree(with_onnx, copy)
    bundle = ModelBundle.load(copy)
    first = bundle.score(frame)
    target = bundle.export_onnx()
    assert target == copy / ONNX
    assert sorted(p.name for p in copy.iterdir()) == sorted(
        [MANIFEST, *FILES, ONNX, TRAINING_ROWS, CALIBRATION, REFERENCE]
    )
    again = ModelBundle.load(copy, engine="onnx")
    np.testing.assert_array_equal(again.score(frame), first)
    assert again.manifest["files"] == bundle.manifest["files"]


def test_save_with_onnx_and_unsaved_bundles(with_onnx: Path, tmp_path: Path, frame: pl.DataFrame) -> None:
    from nadkit.errors import NadkitError

    loaded = ModelBundle.load(with_onnx, engine="torch")
    unsaved = ModelBundle(pipeline=loaded.pipeline, detector=loaded.detector, threshold=loaded.threshold)
    assert unsaved.active_engine == "torch"
    with pytest.raises(NadkitError, match="save the bundle"):
        unsaved.export_onnx()
    out = unsaved.save(tmp_path / "model", onnx=True)
    assert unsaved.path == out and unsaved.has_onnx and unsaved.active_engine == "onnx"
    again = ModelBundle.load(out, engine="onnx")
    np.testing.assert_allclose(again.score(frame), loaded.score(frame), rtol=RTOL, atol=ATOL)


def test_window_model_bundle_round_trip(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """A window model (windows from each source host's flows in time order) scores alike on both engines."""
    from nadkit.models import REGISTRY
    from nadkit.sources import load_flows

    name, cls = next((n, c) for n, c in REGISTRY.items() if c.input == "windows" and not c.supervised)
    config = {**cls.test_config().to_dict(), "epochs": 2}
    result = train_model(trained[1], tmp_path / "model", model=name, config=config)
    out = result.bundle.export_onnx()
    assert out.is_file()
    frame, _ = load_flows(trained[1])
    frame = frame.sample(fraction=1.0, shuffle=True, seed=3)  # windows come from host and time
    torch_scores = ModelBundle.load(result.path, engine="torch").score(frame)
    onnx_bundle = ModelBundle.load(result.path, engine="onnx", threads=1)
    np.testing.assert_allclose(onnx_bundle.score(frame), torch_scores, rtol=RTOL, atol=ATOL)


def _consistent(copy: Path, name: str, content: str) -> None:
    """Rewrite ``name`` in a bundle copy and its checksum in the manifest, as a deliberate edit would."""
    import hashlib

    (copy / name).write_text(content)
    manifest = json.loads((copy / MANIFEST).read_text())
    if name != MANIFEST:
        manifest["files"][name] = hashlib.sha256(content.encode()).hexdigest()
    (copy / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("value", ["NaN", "Infinity", '"high"', "null"])
def test_a_threshold_that_is_not_a_finite_number_is_refused(
    trained: tuple[Path, Path], tmp_path: Path, value: str
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(trained[0], copy)
    threshold = (copy / "threshold.json").read_text()
    edited = json.loads(threshold)
    text = json.dumps({**edited, "value": 0.5}).replace("0.5", value)
    _consistent(copy, "threshold.json", text)
    with pytest.raises(BundleError, match=r"threshold field .value.: must be (finite|a number)"):
        ModelBundle.load(copy)


def test_settings_of_a_huge_network_are_refused_before_it_is_built(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(trained[0], copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["config"]["hidden"] = [200_000, 200_000]  # 160 GB of weights, were it built
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="settings describe"):
        ModelBundle.load(copy)
    manifest["config"]["hidden"] = "wide"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="cannot be loaded"):
        ModelBundle.load(copy)


@pytest.mark.parametrize("target", ["/dev/zero", "weights.safetensors"])
def test_links_and_special_files_are_refused(trained: tuple[Path, Path], tmp_path: Path, target: str) -> None:
    copy = tmp_path / "model"
    shutil.copytree(trained[0], copy)
    (copy / "threshold.json").unlink()
    (copy / "threshold.json").symlink_to(target)
    with pytest.raises(BundleError, match="not a regular file"):
        ModelBundle.load(copy)


def test_calibration_is_saved_with_its_checksum_and_read_back(trained: tuple[Path, Path]) -> None:

    manifest = json.loads((trained[0] / MANIFEST).read_text())
    assert CALIBRATION in manifest["files"]
    bundle = ModelBundle.load(trained[0])
    assert bundle.calibration is not None and bundle.calibration.normal is not None
    assert bundle.calibration.normal.rows > 0 and len(bundle.calibration.normal.values) >= 1001
    assert set(bundle.calibration.ranges) == set(bundle.detector.feature_names_ or ())


def test_a_bundle_without_calibration_loads_and_scores_with_null_percentiles(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """A bundle saved before calibration existed: the file absent and unlisted."""
    from nadkit.detection.detect import score_flows
    from nadkit.sources import load_flows

    copy = tmp_path / "old"
    shutil.copytree(trained[0], copy)
    (copy / CALIBRATION).unlink()
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["files"][CALIBRATION]
    (copy / MANIFEST).write_text(json.dumps(manifest))
    old = ModelBundle.load(copy)
    assert old.calibration is None
    frame, _ = load_flows(trained[1])
    scored = score_flows(old, frame.head(2000))
    new = score_flows(ModelBundle.load(trained[0]), frame.head(2000))
    np.testing.assert_array_equal(scored["score"].to_numpy(), new["score"].to_numpy())
    assert scored["score_percentile"].null_count() == scored.height
    assert new["score_percentile"].null_count() == 0
    np.testing.assert_allclose(scored["threshold_multiple"], scored["score"] / scored["threshold"])
    alerts = scored.filter(pl.col("alert"))
    assert alerts.height > 0
    assert alerts["severity"].null_count() == 0  # graded on the threshold multiple alone
    entry = alerts["top_features"][0][0]
    assert entry["label"] and entry["normal"] is None and entry["share"] is not None
    assert "(normal:" not in alerts["explanation"][0]


def test_altered_or_malformed_calibration_is_refused(trained: tuple[Path, Path], tmp_path: Path) -> None:

    copy = tmp_path / "altered"
    shutil.copytree(trained[0], copy)
    with (copy / CALIBRATION).open("a") as handle:
        handle.write(" ")
    with pytest.raises(BundleError, match="checksum"):
        ModelBundle.load(copy)
    _consistent(copy, CALIBRATION, json.dumps({"format": "nadkit.calibration", "version": 1, "ranges": 3}))
    with pytest.raises(BundleError, match=CALIBRATION):
        ModelBundle.load(copy)
