"""Drift of the traffic a model sees from the normal traffic it was trained on, window by window.

Training keeps a :class:`DriftReference` in the bundle (``reference.json``): for each feature the
model reads and for its anomaly score, the cut points of ten equal-share bins of the normal hold-out
rows and the share of those rows in each bin, plus the score's quantiles. A :class:`DriftMonitor`
counts the rows a scorer sees into the same bins, window after window (``window`` rows), and closes
each window with a :class:`DriftWindow`:

- the population stability index, ``PSI = sum((a - e) ln(a / e))`` over the bins (``e`` the
  reference shares, ``a`` the window's, both floored at 1e-4), per feature and for the score; the
  usual reading is below 0.1 stable, 0.1 to 0.25 moving, above 0.25 shifted;
- a two-sample Kolmogorov-Smirnov test of the window's scores against the reference scores (the
  largest gap between the two distribution functions, and its asymptotic p-value, with the reference
  counted at the hold-out's size).

A window is a *drift event* (not an attack alert) when the score's or any feature's PSI reaches
``DriftLevels.psi``, or the KS test is significant (``ks_pvalue``) with a gap of at least
``ks_statistic``; the event names the features that moved most. Memory holds the bin counts and
one window's scores, whatever the stream's length.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from nadkit.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT: Final = "nadkit.drift-reference"
FORMAT_VERSION: Final = 1
#: bins per feature (equal shares of the reference rows; fewer where values repeat)
BINS: Final = 10
#: the score quantile levels kept for the KS test
SCORE_LEVELS: Final = np.linspace(0.0, 1.0, 201)
#: shares are floored here before the logarithm of the PSI
FLOOR: Final = 1e-4


def _edges(values: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Interior cut points of ``bins`` equal-share bins of ``values`` (unique, increasing)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(0)
    return np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))


def _bin(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each value's bin: ``i`` where ``edges[i-1] < value <= edges[i]``; non-finite values go to the last."""
    index = np.searchsorted(edges, values, side="left")
    index[~np.isfinite(values)] = len(edges)
    return index


def _bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many of ``values`` fall in each bin of :func:`_bin` (``len(edges) + 1`` counts), from one
    vectorised count of the values at or below each edge instead of a search per value: about ten
    times faster for the few edges drift uses. -inf is at or below every edge but, like NaN and +inf,
    belongs to the last bin."""
    values = np.asarray(values)
    if values.dtype == np.float32:
        # compared in float32, without a float64 copy of the values: for a float32 x,
        # x <= edge exactly when x <= the largest float32 at or below edge
        edges = _float32_floor(np.asarray(edges, dtype=np.float64))
    else:
        values = values.astype(np.float64, copy=False)
    below_all = np.count_nonzero(values == -np.inf)
    at_or_below = np.fromiter(
        (np.count_nonzero(values <= edge) for edge in edges), dtype=np.int64, count=len(edges)
    )
    return np.diff(np.concatenate(([0], at_or_below - below_all, [len(values)])))


class _Bins:
    """Every feature's bin counts (:func:`_bin_counts`) over several runs of rows of a matrix at
    once. Each edge is compared with a feature's values once per matrix, and the comparisons are
    summed run by run in one call (``np.add.reduceat``), where counting each window's rows feature by
    feature cost a few NumPy calls per feature, edge and window: most of a second per million rows
    of ~100 features, in 10,000-row windows. Counts are kept flat: feature ``j``'s bins are
    ``starts[j]`` to ``starts[j] + len(edges[j])``."""

    def __init__(self, edges: Sequence[np.ndarray]) -> None:
        self.edges = [np.asarray(cut, dtype=np.float64) for cut in edges]
        # float32 values are compared with the largest float32 at or below each edge (_bin_counts)
        self.edges32 = [_float32_floor(cut) for cut in self.edges]
        sizes = np.array([len(cut) + 1 for cut in self.edges], dtype=np.int64)
        self.starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.total = int(sizes.sum())
        # the features by their number of bins, each group's bins as a (features x bins) gather
        self._groups = [
            (np.flatnonzero(sizes == size), self.starts[sizes == size, None] + np.arange(size))
            for size in np.unique(sizes)
        ]

    def psi(self, expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
        """Each feature's :func:`psi` of flat shares ``actual`` against flat ``expected``, the same
        numbers as feature by feature: the terms are the same, and a group of features with as many
        bins each sums its rows as NumPy sums each feature alone."""
        e = np.maximum(expected, FLOOR)
        a = np.maximum(actual, FLOOR)
        terms = (a - e) * np.log(a / e)
        out = np.empty(len(self.starts))
        for features, bins in self._groups:
            out[features] = terms[bins].sum(axis=1)
        return out

    def counts(self, matrix: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """The bin counts of each run of ``matrix``'s rows (runs begin at ``starts``, the first at
        0, and end where the next begins): ``len(starts) x total``."""
        single = matrix.dtype == np.float32
        if not single:
            matrix = matrix.astype(np.float64, copy=False)
        # each feature's values together: as it is when column-major (as detection gives it), else
        # one transposing copy, where comparing a strided column would read every row once per edge
        matrix = np.asfortranarray(matrix)
        lengths = np.diff(np.append(starts, len(matrix)))
        out = np.empty((len(starts), self.total), dtype=np.int64)
        # -inf lies at or below every edge but, like NaN and +inf, belongs to the last bin
        below_all = None
        negative_infinite = matrix == -np.inf
        if negative_infinite.any():
            below_all = np.add.reduceat(negative_infinite.view(np.uint8), starts, axis=0, dtype=np.int64)
        del negative_infinite
        for j, start in enumerate(self.starts):
            column = matrix[:, j]
            cuts = self.edges32[j] if single else self.edges[j]
            at_or_below = out[:, start : start + len(cuts) + 1]
            for k, edge in enumerate(cuts):
                at_or_below[:, k] = np.add.reduceat((column <= edge).view(np.uint8), starts, dtype=np.int64)
            if below_all is not None:
                at_or_below[:, : len(cuts)] -= below_all[:, j : j + 1]
            at_or_below[:, len(cuts)] = lengths
            # counts at or below each edge -> counts per bin
            at_or_below[:, 1:] -= at_or_below[:, :-1].copy()
        return out


def _float32_floor(edges: np.ndarray) -> np.ndarray:
    """The largest float32 at or below each float64 edge (-inf below float32's range)."""
    with np.errstate(over="ignore"):
        rounded = edges.astype(np.float32)
    above = rounded.astype(np.float64) > edges
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(_bin(values, edges), minlength=len(edges) + 1).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index of shares ``actual`` against ``expected`` (both floored)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class DriftReference:
    """The normal reference a bundle keeps (module docstring): per feature its bin cut points and
    shares, the same for the score, the score's quantiles at :data:`SCORE_LEVELS`, and the number of
    rows behind them."""

    names: tuple[str, ...]
    edges: tuple[np.ndarray, ...]
    shares: tuple[np.ndarray, ...]
    score_edges: np.ndarray
    score_shares: np.ndarray
    score_quantiles: np.ndarray
    rows: int

    @classmethod
    def of(cls, matrix: np.ndarray, scores: np.ndarray, names: Sequence[str]) -> DriftReference | None:
        """The reference of normal rows: the detector's input ``matrix`` (rows x features) and their
        ``scores``; None without a finite score."""
        matrix = np.asarray(matrix, dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(names) or len(matrix) != len(scores):
            raise ConfigError(f"a drift reference needs rows x {len(names)} features and a score per row")
        finite = scores[np.isfinite(scores)]
        if finite.size == 0:
            return None
        edges = tuple(_edges(matrix[:, j]) for j in range(matrix.shape[1]))
        shares = tuple(_shares(matrix[:, j], cut) for j, cut in enumerate(edges))
        score_edges = _edges(finite)
        return cls(
            names=tuple(names),
            edges=edges,
            shares=shares,
            score_edges=score_edges,
            score_shares=_shares(finite, score_edges),
            score_quantiles=np.quantile(finite, SCORE_LEVELS),
            rows=int(finite.size),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "rows": self.rows,
            "features": [
                {"name": name, "edges": cut.tolist(), "shares": share.tolist()}
                for name, cut, share in zip(self.names, self.edges, self.shares, strict=True)
            ],
            "score": {
                "edges": self.score_edges.tolist(),
                "shares": self.score_shares.tolist(),
                "quantiles": self.score_quantiles.tolist(),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReference:
        """A reference read back; a malformed one raises :class:`ConfigError`."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ConfigError("not a nadkit drift reference")
        if data.get("version") != FORMAT_VERSION:
            raise ConfigError(f"drift reference version {data.get('version')!r} is not supported")
        try:
            features = list(data["features"])
            score = data["score"]
            edges = tuple(np.asarray(f["edges"], dtype=np.float64) for f in features)
            shares = tuple(np.asarray(f["shares"], dtype=np.float64) for f in features)
            reference = cls(
                names=tuple(str(f["name"]) for f in features),
                edges=edges,
                shares=shares,
                score_edges=np.asarray(score["edges"], dtype=np.float64),
                score_shares=np.asarray(score["shares"], dtype=np.float64),
                score_quantiles=np.asarray(score["quantiles"], dtype=np.float64),
                rows=int(data["rows"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"drift reference: malformed ({error})") from None
        pairs = [*zip(edges, shares, strict=True), (reference.score_edges, reference.score_shares)]
        if any(len(s) != len(e) + 1 for e, s in pairs) or len(reference.score_quantiles) != len(SCORE_LEVELS):
            raise ConfigError("drift reference: bin edges and shares do not match")
        if reference.rows < 1:
            raise ConfigError("drift reference: no rows")
        return reference

    def score_cdf(self, values: np.ndarray) -> np.ndarray:
        """The reference scores' distribution function at ``values`` (linear between quantiles,
        right-continuous where quantiles repeat)."""
        quantiles = self.score_quantiles
        # the highest level of each repeated quantile: the share at or below it
        unique, last = np.unique(quantiles[::-1], return_index=True)
        levels = SCORE_LEVELS[::-1][last]
        return np.interp(values, unique, levels, left=0.0, right=1.0)


@dataclass(frozen=True)
class DriftLevels:
    """When a window is a drift event (module docstring); ``window``: rows per window; ``min_rows``:
    a last, partial window is judged only with at least this many rows; ``top``: the features an
    event names."""

    psi: float = 0.25
    ks_pvalue: float = 1e-3
    ks_statistic: float = 0.1
    window: int = 10_000
    min_rows: int = 500
    top: int = 5

    def __post_init__(self) -> None:
        if not self.psi > 0:
            raise ConfigError("the drift PSI level must be positive")
        if not 0 < self.ks_pvalue < 1:
            raise ConfigError("the drift KS p-value level must be between 0 and 1")
        if not 0 < self.ks_statistic <= 1:
            raise ConfigError("the drift KS statistic level must be in (0, 1]")
        if self.window < 10:
            raise ConfigError("a drift window needs at least 10 rows")
        if self.min_rows < 1 or self.top < 1:
            raise ConfigError("min_rows and top must be at least 1")


@dataclass(frozen=True)
class DriftWindow:
    """What one window measured (module docstring)."""

    index: int
    rows: int
    score_psi: float
    ks_statistic: float
    ks_pvalue: float
    feature_psi: dict[str, float]
    drift: bool
    top: int = 5

    @property
    def moved(self) -> list[tuple[str, float]]:
        """The features that moved most, largest PSI first."""
        ranked = sorted(self.feature_psi.items(), key=lambda item: -item[1])
        return ranked[: self.top]

    @property
    def max_feature_psi(self) -> float:
        return max(self.feature_psi.values(), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "drift",
            "window": self.index,
            "rows": self.rows,
            "drift": self.drift,
            "score_psi": round(self.score_psi, 6),
            "ks_statistic": round(self.ks_statistic, 6),
            "ks_pvalue": self.ks_pvalue,
            "max_feature_psi": round(self.max_feature_psi, 6),
            "features": [{"feature": name, "psi": round(value, 6)} for name, value in self.moved],
        }


def ks_against(reference: DriftReference, scores: np.ndarray) -> tuple[float, float]:
    """The KS gap between ``scores`` and the reference scores, and its asymptotic p-value."""
    values = np.sort(np.asarray(scores, dtype=np.float64)[np.isfinite(scores)])
    if values.size == 0:
        return 0.0, 1.0
    points = np.union1d(values, reference.score_quantiles)
    own = np.searchsorted(values, points, side="right") / values.size
    gap = float(np.max(np.abs(own - reference.score_cdf(points))))
    effective = values.size * reference.rows / (values.size + reference.rows)
    return gap, kolmogorov_sf(math.sqrt(effective) * gap)


def kolmogorov_sf(x: float) -> float:
    """``P(K > x)`` for Kolmogorov's distribution (the limit of ``sqrt(n)`` times the KS gap), the
    asymptotic KS p-value: the alternating series ``2 sum (-1)^(k-1) exp(-2 k^2 x^2)`` from ``x = 1``
    on, below it one minus the theta-function series of the distribution function, both of which
    converge within a dozen terms there. Within 1e-14 of SciPy's ``kolmogorov``, without importing
    SciPy (a quarter of a second, on the first window of every detection)."""
    if not x > 0:
        return 1.0
    if x < 1.0:
        step = -(math.pi**2) / (8.0 * x * x)
        below = (
            math.sqrt(2.0 * math.pi) / x * math.fsum(math.exp(step * (2 * k - 1) ** 2) for k in range(1, 12))
        )
        return min(1.0, max(0.0, 1.0 - below))
    above = 2.0 * math.fsum((-1.0) ** (k - 1) * math.exp(-2.0 * k * k * x * x) for k in range(1, 40))
    return min(1.0, max(0.0, above))


@dataclass
class DriftMonitor:
    """Counts scored rows into the reference's bins and closes a :class:`DriftWindow` every
    ``levels.window`` rows (module docstring). ``history``: the windows kept (newest last)."""

    reference: DriftReference
    levels: DriftLevels = field(default_factory=DriftLevels)
    history: int = 1000
    windows: int = 0
    events: int = 0
    rows: int = 0

    def __post_init__(self) -> None:
        self.recent: deque[DriftWindow] = deque(maxlen=self.history)
        self._bins = _Bins(self.reference.edges)
        self._expected = np.concatenate(
            [np.asarray(share, dtype=np.float64) for share in self.reference.shares]
        )
        self._reset()

    def _reset(self) -> None:
        self._counts = np.zeros(self._bins.total)
        self._score_counts = np.zeros(len(self.reference.score_edges) + 1)
        self._scores: list[np.ndarray] = []
        self._filled = 0

    @property
    def last(self) -> DriftWindow | None:
        return self.recent[-1] if self.recent else None

    def add(self, matrix: np.ndarray, scores: np.ndarray) -> list[DriftWindow]:
        """Count ``scores`` and their rows of ``matrix`` (the detector's input); the windows closed."""
        scores = np.asarray(scores, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.reference.names) or len(matrix) != len(scores):
            raise ConfigError(
                f"drift: {matrix.shape[1] if matrix.ndim == 2 else '?'} features scored, "
                f"the reference has {len(self.reference.names)}"
            )
        closed: list[DriftWindow] = []
        if len(scores) == 0:
            return closed
        # the runs of rows: the rest of the open window (never empty: a full one is closed at
        # once), whole windows, the start of the next
        first = min(len(scores), self.levels.window - self._filled)
        starts = np.concatenate(([0], np.arange(first, len(scores), self.levels.window))).astype(np.int64)
        counts = self._bins.counts(matrix, starts)
        for run, (start, stop) in enumerate(zip(starts, [*starts[1:], len(scores)], strict=True)):
            self._count(counts[run], scores[start:stop])
            if self._filled >= self.levels.window:
                closed.append(self._close())
        return closed

    def close(self) -> DriftWindow | None:
        """Judge the partial window (when it holds ``min_rows``), e.g. at the end of the input."""
        if self._filled < self.levels.min_rows:
            return None
        return self._close()

    def _count(self, counts: np.ndarray, scores: np.ndarray) -> None:
        """Count a run of rows, given as its bin counts (:class:`_Bins`), and their scores."""
        self._counts += counts
        self._score_counts += _bin_counts(scores, self.reference.score_edges)
        self._scores.append(scores)
        self._filled += len(scores)
        self.rows += len(scores)

    def _close(self) -> DriftWindow:
        rows = self._filled
        moved = self._bins.psi(self._expected, self._counts / rows)
        features = dict(zip(self.reference.names, moved.tolist(), strict=True))
        score_psi = psi(self.reference.score_shares, self._score_counts / rows)
        gap, pvalue = ks_against(self.reference, np.concatenate(self._scores))
        levels = self.levels
        drift = (
            score_psi >= levels.psi
            or max(features.values(), default=0.0) >= levels.psi
            or (pvalue < levels.ks_pvalue and gap >= levels.ks_statistic)
        )
        window = DriftWindow(self.windows, rows, score_psi, gap, pvalue, features, drift, levels.top)
        self.windows += 1
        self.events += int(drift)
        self.recent.append(window)
        log.debug("drift window %d: %s", window.index, describe(window))
        self._reset()
        return window

    def summary(self) -> dict[str, Any]:
        """Windows judged, drift events, the last window and the largest PSI seen per feature."""
        worst: dict[str, float] = {}
        for window in self.recent:
            for name, value in window.feature_psi.items():
                worst[name] = max(worst.get(name, 0.0), value)
        ranked = sorted(worst.items(), key=lambda item: -item[1])[: self.levels.top]
        return {
            "windows": self.windows,
            "events": self.events,
            "rows": self.rows,
            "window_rows": self.levels.window,
            "psi_level": self.levels.psi,
            "max_score_psi": round(max((w.score_psi for w in self.recent), default=0.0), 6),
            "max_ks_statistic": round(max((w.ks_statistic for w in self.recent), default=0.0), 6),
            "most_moved": [{"feature": name, "psi": round(value, 6)} for name, value in ranked],
            "last": None if self.last is None else self.last.to_dict(),
            "event_windows": [w.index for w in self.recent if w.drift],
        }


def describe(window: DriftWindow) -> str:
    """One line: the score's PSI and KS gap, and the features that moved most."""
    moved = ", ".join(f"{name} {value:.2f}" for name, value in window.moved)
    return (
        f"score PSI {window.score_psi:.3f}, KS {window.ks_statistic:.3f} (p {window.ks_pvalue:.2g}); "
        f"moved most: {moved or 'none'}"
    )


__all__ = [
    "DriftLevels",
    "DriftMonitor",
    "DriftReference",
    "DriftWindow",
    "describe",
    "kolmogorov_sf",
    "ks_against",
    "psi",
]
