"""Drift's bin counts: the vectorised count equals a search per value, non-finite values included."""

from __future__ import annotations

import numpy as np
import pytest

from nadkit.evaluation.drift import _bin, _bin_counts


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
