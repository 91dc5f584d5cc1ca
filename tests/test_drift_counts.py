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
