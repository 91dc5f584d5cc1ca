"""Scoring a saved autoencoder on ONNX Runtime never imports torch (it takes seconds to import): the
registry imports a family only when one of its detectors is asked for, and a neural detector
rebuilds its network from the saved parameters on first use. Each check runs in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nadkit.detection.detect import detect_file
from nadkit.features.data import detector_data
from nadkit.features.pipeline import FeatureConfig, FeaturePipeline
from nadkit.models import REGISTRY
from nadkit.models.base import top_contributions
from nadkit.models.registry import FAMILIES
from nadkit.schema import NORMAL
from nadkit.simulate import SimulationConfig, simulate_day
from nadkit.training.bundle import ModelBundle
from nadkit.training.fit import holdout_threshold


def _run(code: str) -> dict[str, object]:
    """``code`` in a fresh interpreter; the JSON it prints last."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("lazy")
    config = SimulationConfig(days=2, flows_per_day=3000, seed=5, start=date(2021, 3, 1))
    train, test = simulate_day(config, 0), simulate_day(config, 1)
    normal = train.filter(pl.col("label") == NORMAL)
    pipeline = FeaturePipeline(FeatureConfig()).fit(normal)
    detector = REGISTRY["ae"](REGISTRY["ae"].test_config()).fit(detector_data(pipeline, normal))
    holdout = detector_data(pipeline, train)
    threshold, _ = holdout_threshold(detector.score(holdout), holdout.labels)
    bundle = ModelBundle(pipeline=pipeline, detector=detector, threshold=threshold)
    bundle.save(folder / "bundle", onnx=True)
    test.write_parquet(folder / "test.parquet")
    return folder / "bundle", folder / "test.parquet"


def test_onnx_scoring_of_a_saved_autoencoder_never_imports_torch(
    saved: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, flows = saved
    out = tmp_path / "onnx.jsonl"
    got = _run(
        "import json, sys\n"
        "from nadkit.detection.detect import detect_file\n"
        "from nadkit.training.bundle import ModelBundle\n"
        f"loaded = ModelBundle.load({str(bundle)!r})\n"
        f"result = detect_file(loaded, {str(flows)!r}, {str(out)!r})\n"
        "print(json.dumps({'engine': loaded.active_engine, 'torch': 'torch' in sys.modules,"
        " 'scipy': 'scipy' in sys.modules, 'alerts': result.alerts}))"
    )
    assert got["engine"] == "onnx"
    assert got["torch"] is False, "ONNX scoring imported torch"
    # nor SciPy (a quarter of a second to import; see tests/test_drift_counts.py for drift)
    assert got["scipy"] is False, "ONNX scoring imported scipy"
    # the same alerts, scores and explanations as the network itself gives
    expected = detect_file(ModelBundle.load(bundle, engine="torch"), flows, tmp_path / "torch.jsonl")
    assert got["alerts"] == expected.alerts > 0
    onnx_rows = [json.loads(line) for line in out.read_text().splitlines()]
    torch_rows = [json.loads(line) for line in (tmp_path / "torch.jsonl").read_text().splitlines()]
    assert [r["row"] for r in onnx_rows] == [r["row"] for r in torch_rows]
    np.testing.assert_allclose([r["score"] for r in onnx_rows], [r["score"] for r in torch_rows], rtol=1e-4)


def test_the_network_is_rebuilt_on_first_use_and_checked(saved: tuple[Path, Path], tmp_path: Path) -> None:
    """Loaded without torch, the network appears when first needed, with the saved weights; with the
    torch engine a bundle's parameters are checked at load."""
    bundle, flows = saved
    got = _run(
        "import json, sys\n"
        "import numpy as np\n"
        "from nadkit.features.data import detector_data\n"
        "from nadkit.sources import load_flows\n"
        "from nadkit.training.bundle import ModelBundle\n"
        f"loaded = ModelBundle.load({str(bundle)!r}, engine='onnx')\n"
        "before = 'torch' in sys.modules\n"
        f"flows, _ = load_flows({str(flows)!r})\n"
        "data = loaded.data(flows)\n"
        "onnx = loaded.score_data(data)\n"
        "network = loaded.detector.score(data)\n"
        "print(json.dumps({'before': before, 'after': 'torch' in sys.modules,"
        " 'gap': float(np.max(np.abs(onnx - network) / np.maximum(1.0, np.abs(network))))}))"
    )
    assert got["before"] is False and got["after"] is True
    assert got["gap"] < 1e-3
    refused = _run(
        "import json\n"
        "import numpy as np\n"
        "from nadkit.models import create\n"
        "from nadkit.errors import ConfigError\n"
        "detector = create('ae', {'hidden': [8], 'bottleneck': 2})\n"
        "arrays = {'encoder.0.0.weight': np.zeros((8, 3), np.float32)}\n"
        "detector.load_state(arrays, ('a', 'b', 'c'))\n"
        "try:\n"
        "    detector.finish_loading()\n"
        "    print(json.dumps({'error': None}))\n"
        "except ConfigError as error:\n"
        "    print(json.dumps({'error': str(error)}))"
    )
    assert "saved weights do not fit ae's network" in str(refused["error"])


def test_the_registry_imports_a_family_only_when_asked() -> None:
    got = _run(
        "import json, sys\n"
        "from nadkit.models import REGISTRY, create\n"
        "create('iforest')\n"
        "first = 'torch' in sys.modules, 'nadkit.models.recurrent' in sys.modules\n"
        "names = list(REGISTRY)\n"
        "print(json.dumps({'first': first, 'names': names, 'known': 'lstm' in REGISTRY}))"
    )
    assert got["first"] == [False, False]
    assert got["names"] == [name for _, names in FAMILIES for name in names]
    assert got["known"] is True
    # each family defines exactly the detectors the registry lists for it
    for module, names in FAMILIES:
        assert {name for name, cls in REGISTRY.items() if cls.__module__.startswith(module)} >= set(names)


def test_top_contributions_rank_ties_by_feature_and_survive_infinities() -> None:
    rng = np.random.default_rng(3)
    values = rng.random((200, 9))
    values[:20, 4] = values[:20, 1]  # ties
    values[20:25, :] = -np.inf
    values[25:30, 2:] = -np.inf
    values[30, 3] = np.nan
    indices, picked = top_contributions(values, 4)
    for row in range(len(values)):
        key = np.where(np.isnan(values[row]), np.inf, values[row])
        expected = np.argsort(-key, kind="stable")[:4]
        assert indices[row].tolist() == expected.tolist(), row
        assert len(set(indices[row].tolist())) == 4
    np.testing.assert_array_equal(picked, np.take_along_axis(values, indices, axis=1))
    assert top_contributions(values, 50)[0].shape == (200, 9)
    assert top_contributions(np.zeros((0, 3)), 2)[0].shape == (0, 2)


def test_the_activation_names_match_the_networks() -> None:
    from nadkit.models.autoencoder import ACTIVATION_NAMES
    from nadkit.models.autoencoder_networks import ACTIVATIONS

    assert tuple(ACTIVATIONS) == ACTIVATION_NAMES


def test_parameters_that_do_not_fit_leave_the_detector_unfitted() -> None:
    """With torch loaded the network is rebuilt at once; parameters that do not fit are refused
    there and leave nothing half loaded."""
    from nadkit.errors import ConfigError
    from nadkit.models import create

    detector = create("ae", {"hidden": [8], "bottleneck": 2})
    with pytest.raises(ConfigError, match="saved weights do not fit"):
        detector.load_state({"encoder.0.0.weight": np.zeros((8, 3), np.float32)}, ("a", "b", "c"))
    assert not detector.is_fitted
