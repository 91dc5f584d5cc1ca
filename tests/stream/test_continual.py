"""Drift measures and the adaptive threshold: PSI and KS against a reference, and SPOT on the
simulator's day-to-day shift against the fixed threshold."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from nadkit.evaluation.adaptive import AdaptiveSettings
from nadkit.evaluation.drift import DriftLevels, DriftMonitor, DriftReference
from nadkit.models import REGISTRY
from nadkit.simulate import SimulationConfig, simulate_day
from nadkit.stream import FrameSource, StreamConfig, StreamRunner
from nadkit.stream.continual import ContinualConfig
from nadkit.training.fit import fit
from tests.stream.conftest import MemorySink


def test_psi_and_ks_see_a_shift_and_not_its_absence() -> None:
    rng = np.random.default_rng(0)
    matrix, scores = rng.normal(size=(5000, 3)), rng.exponential(size=5000)
    reference = DriftReference.of(matrix, scores, ("a", "b", "c"))
    assert reference is not None
    assert DriftReference.from_dict(reference.to_dict()).names == ("a", "b", "c")
    monitor = DriftMonitor(reference, DriftLevels(window=2000))
    same = monitor.add(rng.normal(size=(2000, 3)), rng.exponential(size=2000))[0]
    assert not same.drift and same.score_psi < 0.05 and same.ks_pvalue > 1e-3
    moved = rng.normal(size=(2000, 3))
    moved[:, 1] += 1.5
    shifted = monitor.add(moved, rng.exponential(size=2000) * 2)[0]
    assert shifted.drift and shifted.moved[0][0] == "b" and shifted.feature_psi["b"] > 0.25
    assert shifted.score_psi > 0.25 and shifted.ks_statistic > 0.1 and shifted.ks_pvalue < 1e-6
    assert monitor.windows == 2 and monitor.events == 1


def _day(config: SimulationConfig, index: int) -> pl.DataFrame:
    day = simulate_day(config, index)
    dropped = [c for c in day.columns if c.startswith("cnt_")] + ["day"]
    return day.drop(dropped, strict=False).sort("time", maintain_order=True)


def _rates(bundle, test: pl.DataFrame, adaptive: AdaptiveSettings | None) -> tuple[float, float, set[str]]:  # type: ignore[no-untyped-def]
    """False-positive rate, flow detection rate, and the attacks detected (an attack: one class on
    one day; detected when at least one of its flows is alerted)."""
    sink = MemorySink()
    frames = [test.slice(i, 500) for i in range(0, test.height, 500)]
    config = StreamConfig(batch_rows=500, all_flows=True, continual=ContinualConfig(adaptive=adaptive))
    StreamRunner(bundle, FrameSource(frames), [sink], config).run()
    labels = test.with_row_index("row").select(
        (pl.col("row").cast(pl.Int64) + 1).alias("row"),
        "label",
        pl.col("time").dt.date().cast(pl.String).alias("date"),
    )
    out = sink.frame().join(labels, on="row")
    normal = out["label"] == "normal"
    attacks = out.filter(~normal & pl.col("alert")).select(pl.concat_str("date", "label", separator=" "))
    return (
        float(out.filter(normal)["alert"].mean()),
        float(out.filter(~normal)["alert"].mean()),
        set(attacks.to_series().to_list()),
    )


def test_spot_cuts_false_positives_of_the_day_shift_and_detects_the_same_attacks() -> None:
    """On two days after the training day, the normal scores shift; SPOT, learning the tail of the
    scores it did not alert on (with the peaks over its own line counted as unseen), raises the
    threshold with them: fewer false positives, and every attack the fixed threshold detects is still
    detected (a flow or two at the margin of an attack may be missed: the flow rate is bounded)."""
    config = SimulationConfig(days=3, flows_per_day=3000, seed=5, start=date(2020, 12, 3))
    bundle = fit(_day(config, 0), model="ae", config=REGISTRY["ae"].test_config().to_dict(), seed=0).bundle
    test = pl.concat([_day(config, 1), _day(config, 2)], how="vertical_relaxed")
    fixed_fpr, fixed_detection, fixed_attacks = _rates(bundle, test, None)
    spot_fpr, spot_detection, spot_attacks = _rates(bundle, test, AdaptiveSettings())
    print(f"fixed FPR {fixed_fpr:.4f} flow detection {fixed_detection:.4f} attacks {len(fixed_attacks)}")
    print(f"spot  FPR {spot_fpr:.4f} flow detection {spot_detection:.4f} attacks {len(spot_attacks)}")
    assert spot_fpr < 0.75 * fixed_fpr
    assert fixed_attacks and spot_attacks >= fixed_attacks
    assert spot_detection >= fixed_detection - 0.05
