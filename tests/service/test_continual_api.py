"""The service's drift gauges and adaptive threshold: scoring requests fill drift windows shown in
``/metrics`` and ``/v1/drift``, and with ``threshold: spot`` the threshold answers carry moves from
the bundle's."""

from __future__ import annotations

import re
from pathlib import Path

from tests.service.helpers import AUTH, TOKEN, Kit, registry_with


def _gauge(text: str, name: str) -> float:
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    assert found, name
    return float(found.group(1))


def test_drift_gauges_and_a_spot_threshold(kit: Kit, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from nadkit.service import create_app
    from nadkit.service.settings import Settings

    registry_with(kit, tmp_path / "models")
    settings = Settings(
        db=tmp_path / "a.db", registry=tmp_path / "models", token=TOKEN, threshold="spot", drift_window=300
    )
    body = kit.test_csv.read_bytes()
    lines = body.splitlines()
    header, rows = lines[0], lines[1:]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        thresholds = []
        for start in range(0, min(len(rows), 2400), 400):
            part = b"\n".join([header, *rows[start : start + 400]]) + b"\n"
            response = client.post("/v1/score", content=part, headers={**AUTH, "Content-Type": "text/csv"})
            assert response.status_code == 200, response.text
            answer = response.json()
            thresholds.append(answer["threshold"])
            assert all(r["score"] < answer["threshold"] for r in answer["results"] if not r["alert"])
        metrics = client.get("/metrics", headers=AUTH).text
        drift = client.get("/v1/drift", headers=AUTH)
        assert client.get("/v1/drift").status_code == 401
    assert drift.status_code == 200, drift.text
    found = drift.json()
    assert found["model_version"] == "v1" and found["threshold_method"] == "spot"
    assert found["threshold"] > 0
    assert found["bundle_threshold"] == thresholds[0]
    summary = found["drift"]
    assert summary["windows"] == 2400 // 300 and summary["window_rows"] == 300
    assert summary["last"]["window"] == summary["windows"] - 1
    assert all(item["label"] and item["psi"] >= 0 for item in summary["most_moved"])
    assert len(set(thresholds)) > 1  # the threshold learnt from the flows not alerted
    assert _gauge(metrics, "nadkit_alert_threshold") > 0
    assert _gauge(metrics, "nadkit_drift_windows_total") == 2400 // 300
    assert _gauge(metrics, "nadkit_drift_score_psi") >= 0
    assert 0 <= _gauge(metrics, "nadkit_drift_ks_statistic") <= 1
    assert len(re.findall(r"^nadkit_drift_feature_psi\{feature=", metrics, re.MULTILINE)) == 5
    assert "nadkit_drift_events_total" in metrics
