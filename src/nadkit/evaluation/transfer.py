"""Whether a model's threshold carries over to the traffic it is evaluated on.

A threshold is chosen so that a small share of the normal hold-out flows exceed it (1% by default).
On normal traffic like the training traffic about that share of normal flows exceed it again; on
another network (other devices, services, busier or quieter hours) normal flows can exceed it by
the thousand, and every figure at the threshold then says more about that difference than about
the attacks. :func:`threshold_transfer` compares the two shares: the labelled normal flows over the
threshold against the share of the bundle's normal hold-out scores at or above it (kept in its
calibration), with the median normal flow's percentile among those hold-out scores. The traffic
*differs* from the training traffic when its normal flows exceed the threshold at least
:data:`FACTOR` times as often as the hold-out's did and by at least :data:`MARGIN` (2 percentage
points), on at least :data:`MIN_NORMAL_ROWS` normal flows: a rate of 1% against 0.5% is noise of a
small sample, 31% against 1% is another network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from nadkit.evaluation.calibration import NormalScores
from nadkit.schema import NORMAL

#: normal flows over the threshold this many times as often as on the hold-out: the traffic differs
FACTOR: Final = 3.0
#: ... and by at least this share of the normal flows
MARGIN: Final = 0.02
#: fewer labelled normal flows than this give no verdict
MIN_NORMAL_ROWS: Final = 100


def far_above(rate: float, expected: float, rows: int) -> bool:
    """The module docstring's rule: a share ``rate`` over the threshold, measured on ``rows`` flows,
    far above the hold-out's ``expected`` share."""
    return rows >= MIN_NORMAL_ROWS and rate >= FACTOR * expected and rate - expected >= MARGIN


@dataclass(frozen=True)
class ThresholdTransfer:
    """The labelled normal flows of an evaluation against the bundle's normal hold-out, at the
    threshold used (module docstring)."""

    threshold: float
    normal_rows: int
    normal_alerts: int
    #: share of the hold-out's normal scores at or above the threshold, and how many scores
    holdout_rate: float
    holdout_rows: int
    #: the median evaluated normal flow's percentile among the hold-out's normal scores (0-100)
    median_percentile: float

    @property
    def rate(self) -> float:
        """Share of the evaluated normal flows at or above the threshold."""
        return self.normal_alerts / self.normal_rows if self.normal_rows else float("nan")

    @property
    def differs(self) -> bool:
        """Whether the normal traffic differs from the training traffic (module docstring)."""
        return far_above(self.rate, self.holdout_rate, self.normal_rows)

    def describe(self) -> str:
        """The two shares in a few words."""
        above = (
            "all of those" if self.median_percentile >= 100.0 else f"{self.median_percentile:.1f}% of those"
        )
        return (
            f"{self.normal_alerts:,} of {self.normal_rows:,} normal flows ({self.rate:.1%}) score at or "
            f"above the threshold, against {self.holdout_rate:.1%} of the {self.holdout_rows:,} normal "
            f"hold-out flows it was chosen on; the median normal flow scores above {above}"
        )

    def warning(self) -> str | None:
        """The sentence to show first when the traffic differs from the training traffic, else None."""
        if not self.differs:
            return None
        return (
            f"Normal traffic unlike the training traffic: {self.describe()}. The model describes "
            "another network or period, and the figures at its threshold show that difference as much "
            "as the attacks; train it on normal traffic of this one (nadkit train, or nadkit retrain "
            "with reviewed alerts)."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "normal_rows": self.normal_rows,
            "normal_alerts": self.normal_alerts,
            "normal_rate": self.rate,
            "holdout_rate": self.holdout_rate,
            "holdout_rows": self.holdout_rows,
            "median_percentile": self.median_percentile,
            "differs": self.differs,
            "warning": self.warning(),
        }


def holdout_rate(threshold: float, normal: NormalScores | None) -> float | None:
    """The share of the normal hold-out's scores at or above ``threshold`` (None without them)."""
    if normal is None or not np.isfinite(threshold):
        return None
    return max(0.0, 1.0 - float(normal.percentile(np.array([threshold]))[0]) / 100.0)


def alert_rate_note(flows: int, alerts: int, threshold: float, normal: NormalScores | None) -> str | None:
    """Without labels, the same comparison on all scored flows: a sentence when far more of them are
    alerts than the normal hold-out's share over the threshold (the rule of :attr:`ThresholdTransfer.
    differs`), else None. It cannot tell an attack on most of the traffic from normal traffic unlike
    the training traffic, so it names both."""
    expected = holdout_rate(threshold, normal)
    rate = alerts / flows if flows else 0.0
    if expected is None or not far_above(rate, expected, flows):
        return None
    return (
        f"{rate:.1%} of the flows are alerts, where {expected:.1%} of the normal hold-out flows scored "
        "over the threshold: either much of this traffic is attack traffic, or its normal traffic is "
        "unlike the traffic the model was trained on (another network or period); a model trained on "
        "this network's normal traffic tells the two apart."
    )


def threshold_transfer(
    scores: np.ndarray, labels: np.ndarray, threshold: float, normal: NormalScores | None
) -> ThresholdTransfer | None:
    """The comparison of the module docstring for ``scores`` with their ``labels`` at ``threshold``;
    None without the hold-out's normal scores (``normal``), without a finite threshold or without
    a normal flow with a finite score."""
    expected = holdout_rate(threshold, normal)
    if normal is None or expected is None:
        return None
    scores = np.asarray(scores, dtype=np.float64)
    is_normal = (np.asarray(labels).astype(str) == NORMAL) & np.isfinite(scores)
    if not is_normal.any():
        return None
    normal_scores = scores[is_normal]
    return ThresholdTransfer(
        threshold=float(threshold),
        normal_rows=int(is_normal.sum()),
        normal_alerts=int(np.count_nonzero(normal_scores >= threshold)),
        holdout_rate=expected,
        holdout_rows=normal.rows,
        median_percentile=float(np.median(normal.percentile(normal_scores))),
    )


__all__ = [
    "FACTOR",
    "MARGIN",
    "MIN_NORMAL_ROWS",
    "ThresholdTransfer",
    "alert_rate_note",
    "far_above",
    "holdout_rate",
    "threshold_transfer",
]
