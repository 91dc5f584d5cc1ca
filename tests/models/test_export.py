"""ONNX export of every registered detector: ONNX Runtime gives torch's scores and contributions.

Parity tolerance: ``|onnx - torch| <= 1e-4 + 1e-4 * |torch|`` elementwise (absolute 1e-4, plus
relative 1e-4 for the large scores of far-out rows), on rows and windows (from entity and time,
rows shuffled across entities) scored in batches of a size that does not divide the row count.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest

import nadkit.models
from nadkit.errors import ConfigError, NadkitError
from nadkit.models.base import Detector, DetectorData, NotFittedError
from nadkit.models.export import EXPORTERS, OPSET, export_onnx
from nadkit.models.onnx_runtime import OnnxScorer

from .sequences import sine_sequences

NAMES = sorted(nadkit.models.REGISTRY)
FEATURES = ("wave_0", "wave_1", "wave_2", "wave_3", "count", "flag")
#: the parity tolerance (see the module docstring)
RTOL = ATOL = 1e-4
#: rows per ONNX Runtime call: does not divide the rows of the test data
BATCH = 97


def _with_extra_columns(data: DetectorData, planted: np.ndarray) -> DetectorData:
    """Sine sequences plus a discrete column and a column that is zero in training (ties for
    order statistics, a zero spread), labelled ``attack`` where sequences were broken."""
    count = np.round(np.abs(data.features[:, :1]) * 5)
    flag = np.zeros((len(data), 1))
    return DetectorData(
        np.hstack([data.features, count, flag]),
        FEATURES,
        entity=data.entity,
        time=data.time,
        labels=np.where(planted, "attack", "normal"),
    )


@pytest.fixture(scope="module")
def train() -> DetectorData:
    """About a thousand rows of four entities; a few broken sequences labelled for supervised models."""
    return _with_extra_columns(*sine_sequences(entities=4, steps=250, seed=1, anomaly_share=0.03))


@pytest.fixture(scope="module")
def test_data(train: DetectorData) -> DetectorData:
    """603 rows of three entities: broken sequences, far-out values and rows equal to training rows."""
    data = _with_extra_columns(*sine_sequences(entities=3, steps=201, seed=2, anomaly_share=0.05))
    features = data.features.copy()
    features[:8, 1] = np.linspace(20.0, 50.0, 8)
    features[8:12, 5] = 3.0
    features[12:40] = train.features[100:128]
    return dataclasses.replace(data, features=features)


def _fit(cls: type[Detector], train: DetectorData) -> Detector:
    rows = train if cls.supervised else train.take(train.labels == "normal")
    return cls(cls.test_config()).fit(rows)


@pytest.fixture(scope="module", params=NAMES)
def exported(
    request: pytest.FixtureRequest, train: DetectorData, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Detector, Path]:
    """Each registered detector fitted with its test config and exported (every one must export)."""
    detector = _fit(nadkit.models.REGISTRY[request.param], train)
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    export_onnx(detector, path)
    return detector, path


def test_onnx_runtime_matches_torch(exported: tuple[Detector, Path], test_data: DetectorData) -> None:
    detector, path = exported
    scorer = OnnxScorer(path, batch_size=BATCH, threads=1)
    expected = detector.contributions(test_data)
    got = scorer.contributions(test_data)
    assert got.dtype == np.float64 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    scores = scorer.score(test_data)
    np.testing.assert_allclose(scores, detector.score(test_data), rtol=RTOL, atol=ATOL)
    # the graph sums the contributions itself, in float32: equal up to its rounding
    np.testing.assert_allclose(scores, got.sum(axis=1), rtol=1e-6)


def test_missing_values_score_alike(exported: tuple[Detector, Path], test_data: DetectorData) -> None:
    """Wherever torch scores rows holding a missing value (NaN) finitely, ONNX Runtime agrees."""
    detector, path = exported
    features = test_data.features.copy()
    features[::50, 2] = np.nan
    data = dataclasses.replace(test_data, features=features)
    expected = detector.contributions(data)
    got = OnnxScorer(path, batch_size=BATCH, threads=1).contributions(data)
    finite = np.isfinite(expected).all(axis=1)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=RTOL, atol=ATOL)


def test_scorer_follows_row_order_and_takes_no_rows(
    exported: tuple[Detector, Path], test_data: DetectorData
) -> None:
    _, path = exported
    scorer = OnnxScorer(path, batch_size=BATCH, threads=1)
    scores = scorer.score(test_data)
    order = np.random.default_rng(0).permutation(len(test_data))
    np.testing.assert_allclose(scorer.score(test_data.take(order)), scores[order], rtol=1e-6, atol=1e-7)
    empty = scorer.contributions(test_data.take(np.zeros(len(test_data), dtype=bool)))
    assert empty.shape == (0, len(FEATURES))
    renamed = dataclasses.replace(test_data, feature_names=tuple(f"x{j}" for j in range(len(FEATURES))))
    with pytest.raises(ConfigError, match="features"):
        scorer.score(renamed)


def test_scores_and_the_contributions_over_a_threshold_in_one_pass(
    exported: tuple[Detector, Path], test_data: DetectorData
) -> None:
    """What detection asks for its alerts: every row's score and the contributions of the rows at
    or over the threshold, taken in the same pass, equal to asking for each separately (in
    batches that do not divide the rows; window models' batches list their rows)."""
    _, path = exported
    scorer = OnnxScorer(path, batch_size=BATCH, threads=1)
    scores = scorer.score(test_data)
    for threshold in (float(np.quantile(scores, 0.9)), float(scores.min()), float(scores.max()) + 1.0):
        got, rows, contributions = scorer.score_and_explain(test_data, threshold)
        np.testing.assert_array_equal(got, scores)
        np.testing.assert_array_equal(rows, np.flatnonzero(scores >= threshold))
        assert contributions.dtype == np.float32 and contributions.shape == (len(rows), len(FEATURES))
        expected = scorer.contributions(test_data, native=True)[rows]
        np.testing.assert_allclose(contributions, expected, rtol=1e-6, atol=1e-7)


def test_graph_has_a_free_batch_axis_and_describes_the_model(exported: tuple[Detector, Path]) -> None:
    detector, path = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")) >= 17
    names = [item.name for item in model.graph.input]
    assert names == (["x", "mask"] if detector.input == "windows" else ["x"])
    for item in [*model.graph.input, *model.graph.output]:
        first = item.type.tensor_type.shape.dim[0]
        assert first.dim_param and not first.HasField("dim_value")
    # the score output is saved in the graph: loading it needs no graph edit
    assert [item.name for item in model.graph.output] == ["contributions", "score"]
    scorer = OnnxScorer(path)
    assert scorer.description.model == detector.name
    assert scorer.description.input == detector.input
    assert scorer.feature_names == FEATURES
    assert scorer.threads >= 1
    # its threads sleep between runs instead of spinning on cores that reading and features need
    options = scorer.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_a_graph_saved_without_its_score_output_gets_it_at_load(
    exported: tuple[Detector, Path], test_data: DetectorData, tmp_path: Path
) -> None:
    detector, path = exported
    model = onnx.load(str(path))
    reduce = [node for node in model.graph.node if "score" in node.output]
    for node in reduce:
        model.graph.node.remove(node)
    for output in [item for item in model.graph.output if item.name == "score"]:
        model.graph.output.remove(output)
    for tensor in [item for item in model.graph.initializer if item.name == "nadkit_score_axes"]:
        model.graph.initializer.remove(tensor)
    older = tmp_path / "older.onnx"
    onnx.save(model, str(older))
    scorer = OnnxScorer(older, batch_size=BATCH, threads=1)
    assert "score" in scorer.outputs
    np.testing.assert_allclose(scorer.score(test_data), detector.score(test_data), rtol=RTOL, atol=ATOL)


def test_export_is_atomic_and_refuses_to_overwrite(exported: tuple[Detector, Path], tmp_path: Path) -> None:
    detector, path = exported
    before = path.read_bytes()
    with pytest.raises(NadkitError, match="already exists"):
        export_onnx(detector, path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_window_length_only_for_window_models(exported: tuple[Detector, Path], tmp_path: Path) -> None:
    detector, _ = exported
    if detector.input == "windows":
        return
    with pytest.raises(ConfigError, match="single rows"):
        export_onnx(detector, tmp_path / "model.onnx", window=4)
    assert not (tmp_path / "model.onnx").exists()


class _Unexportable(Detector):
    """A detector with no export module (not registered)."""

    name = "unexportable"

    def fit(self, train, *, validation=None, target=None):  # type: ignore[no-untyped-def]
        self._start_fit(train)
        self._finish_fit(train)
        return self

    def score(self, data: DetectorData) -> np.ndarray:
        return np.zeros(len(data))

    def contributions(self, data: DetectorData) -> np.ndarray:
        return np.zeros((len(data), data.width))


def test_detectors_without_an_export_module_fail_clearly(train: DetectorData, tmp_path: Path) -> None:
    detector = _Unexportable()
    with pytest.raises(NotFittedError):
        export_onnx(detector, tmp_path / "model.onnx")
    detector.fit(train)
    with pytest.raises(NadkitError, match="unexportable cannot be exported to ONNX"):
        export_onnx(detector, tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())


def test_failing_exporters_are_reported(
    train: DetectorData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = next(c for c in nadkit.models.REGISTRY.values() if c.input == "rows" and not c.supervised)
    detector = _fit(cls, train)

    def broken(*args: object) -> None:
        raise RuntimeError("no graph today")

    for name in EXPORTERS:
        monkeypatch.setitem(EXPORTERS, name, broken)
    with pytest.raises(NadkitError, match=r"could not be exported.*no graph today"):
        export_onnx(detector, tmp_path / "model.onnx")
    with pytest.raises(ConfigError, match="unknown exporter"):
        export_onnx(detector, tmp_path / "model.onnx", exporter="magic")  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rows", "windows"])
def test_dynamo_exporter_matches_torch(
    kind: str, train: DetectorData, test_data: DetectorData, tmp_path: Path
) -> None:
    """The ``torch.export``-based exporter (the fallback of ``auto``) gives the same graphs."""
    cls = next(c for c in nadkit.models.REGISTRY.values() if c.input == kind and not c.supervised)
    detector = _fit(cls, train)
    path = export_onnx(detector, tmp_path / "model.onnx", exporter="dynamo")
    scorer = OnnxScorer(path, batch_size=BATCH, threads=1)
    np.testing.assert_allclose(
        scorer.contributions(test_data), detector.contributions(test_data), rtol=RTOL, atol=ATOL
    )


def test_opset() -> None:
    assert OPSET >= 17
