"""Drift's bin counts: the vectorised count equals a search per value, non-finite values included."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nadkit.evaluation.drift import (
    DriftLevels,
    DriftMonitor,
    DriftReference,
    _bin,
    _bin_counts,
    kolmogorov_sf,
    psi,
)


@pytest.mark.parametrize("edges", [np.array([]), np.array([0.0]), np.array([-1.0, 0.0, 0.0, 2.5])])
def test_counts_equal_a_search_per_value(edges: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(size=1000), [np.nan, np.inf, -np.inf, 0.0, 2.5, -1.0]])
    expected = np.bincount(_bin(values, edges), minlength=len(edges) + 1)
    np.testing.assert_array_equal(_bin_counts(values, edges), expected)
    assert _bin_counts(np.array([]), edges).tolist() == [0] * (len(edges) + 1)


def test_float32_values_count_as_their_float64_selves() -> None:
    """float32 values are counted without a float64 copy; edges between two float32 numbers (0.1,
    1/3), on one, beyond float32's range or infinite still put every value in its exact bin."""
    rng = np.random.default_rng(1)
    edges = np.array([-1e40, -np.inf, 0.1, 1.0 / 3.0, 0.5, 1e40])
    edges = np.sort(edges)
    near = np.array([0.1, 1.0 / 3.0, 0.5], dtype=np.float32)
    values = np.concatenate(
        [
            rng.normal(size=2000).astype(np.float32),
            near,
            np.nextafter(near, np.float32(np.inf)),
            np.nextafter(near, np.float32(-np.inf)),
            np.array([np.nan, np.inf, -np.inf, np.finfo(np.float32).max], dtype=np.float32),
        ]
    )
    expected = np.bincount(_bin(values.astype(np.float64), edges), minlength=len(edges) + 1)
    np.testing.assert_array_equal(_bin_counts(values, edges), expected)


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_windows_equal_counting_each_window_by_itself(dtype: type, order: str) -> None:
    """The monitor counts all features and every window of a batch at once; its windows hold the
    PSI that counting each window's rows feature by feature gives, to the last bit, whatever the
    batches' sizes against the window's (non-finite values and repeated edges included)."""
    rng = np.random.default_rng(3)
    features = 7
    reference_rows = rng.normal(size=(2000, features))
    reference_rows[:, 3] = rng.integers(0, 3, size=2000)  # few distinct values: fewer bins
    reference = DriftReference.of(reference_rows, rng.normal(size=2000), [f"f{j}" for j in range(features)])
    assert reference is not None
    levels = DriftLevels(window=700, min_rows=50)
    monitor = DriftMonitor(reference, levels)
    rows = rng.normal(size=(3100, features)) * rng.uniform(0.5, 2.0, size=features)
    rows[::97, 1] = np.nan
    rows[::89, 2] = -np.inf
    rows[::83, 4] = np.inf
    rows = np.asarray(rows.astype(dtype), order=order)  # detection's are column-major, others may not be
    scores = rng.normal(size=3100)
    windows = []
    for start, stop in [(0, 1), (1, 650), (650, 2150), (2150, 2200), (2200, 3100)]:
        windows += monitor.add(rows[start:stop], scores[start:stop])
    last = monitor.close()
    windows += [last] if last is not None else []
    assert [w.rows for w in windows] == [700, 700, 700, 700, 300]
    for index, window in enumerate(windows):
        part = rows[index * 700 : index * 700 + window.rows].astype(np.float64)
        for j, name in enumerate(reference.names):
            counts = np.bincount(_bin(part[:, j], reference.edges[j]), minlength=len(reference.edges[j]) + 1)
            assert window.feature_psi[name] == psi(reference.shares[j], counts / window.rows), (index, name)


def test_the_ks_p_value_is_scipys_kolmogorov() -> None:
    from scipy.special import kolmogorov

    points = np.concatenate([np.linspace(0.0, 6.0, 3001), [1e-9, 0.999999, 1.0, 1.000001, 8.0, 30.0]])
    for x in points:
        expected = float(kolmogorov(x))
        assert kolmogorov_sf(float(x)) == pytest.approx(expected, rel=1e-13, abs=1e-15), x
    assert kolmogorov_sf(0.0) == 1.0 and kolmogorov_sf(-1.0) == 1.0 and kolmogorov_sf(float("nan")) == 1.0


def test_closing_drift_windows_does_not_import_scipy() -> None:
    """Drift windows close during every detection with a reference: their KS p-value needs no SciPy."""
    code = (
        "import sys, numpy as np\n"
        "from nadkit.evaluation.drift import DriftLevels, DriftMonitor, DriftReference\n"
        "rng = np.random.default_rng(0)\n"
        "reference = DriftReference.of(rng.normal(size=(500, 3)), rng.normal(size=500), ['a', 'b', 'c'])\n"
        "monitor = DriftMonitor(reference, DriftLevels(window=100, min_rows=10))\n"
        "closed = monitor.add(rng.normal(size=(450, 3)).astype(np.float32), rng.normal(size=450) + 3)\n"
        "print(len(closed), closed[0].ks_pvalue < 0.01, 'scipy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["4", "True", "False"]
