"""Models compared on the same labelled flows (`nadkit evaluate --compare`): the figures of one."""

from __future__ import annotations

import numpy as np
import pytest

from nadkit.detection.comparison import SAME_FPR, compared, comparison_table
from nadkit.errors import ConfigError


def test_each_model_at_its_own_threshold_and_all_at_one_false_positive_rate() -> None:
    # 200 normal flows scored 0..199, two attack classes: "scan" above every normal flow, "exfil"
    # among the top few normal scores
    normal = np.arange(200, dtype=float)
    scores = np.concatenate([normal, [500.0, 600.0], [197.5, 150.0]])
    labels = np.array(["normal"] * 200 + ["scan", "scan", "exfil", "exfil"])
    row = compared("m", "ae", scores, labels, threshold=190.0)
    assert row.recall == pytest.approx(3 / 4)  # 500, 600 and 197.5 reach 190
    assert row.false_positive_rate == pytest.approx(10 / 200)
    assert row.macro_detection == pytest.approx((1.0 + 0.5) / 2)
    # at 1% of the normal flows the score to reach is the third highest normal one: 198
    assert row.same_fpr == pytest.approx(SAME_FPR)
    assert row.recall_same_fpr == pytest.approx(2 / 4)
    assert row.macro_detection_same_fpr == pytest.approx((1.0 + 0.0) / 2)
    assert 0.5 < row.roc_auc <= 1.0 and 0 < row.pr_auc <= 1.0
    assert row.to_dict()["model"] == "ae"
    assert comparison_table([row, compared("n", "iforest", -scores, labels, 0.0)]).row_count == 2


def test_a_comparison_needs_both_kinds_of_flow() -> None:
    with pytest.raises(ConfigError, match="both normal and attack"):
        compared("m", "ae", np.arange(5.0), np.array(["normal"] * 5), 1.0)
