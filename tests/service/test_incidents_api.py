"""The incident API: a request's alerts become incidents, listed most severe first and filtered,
opened with their alerts, closed with one verdict for all their alerts, and exported."""

from __future__ import annotations

import csv
import io
import json

from tests.service.helpers import AUTH, Kit


def _score(client, body: bytes) -> dict:  # type: ignore[no-untyped-def]
    answer = client.post("/v1/score", content=body, headers={**AUTH, "Content-Type": "text/csv"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_incidents_from_scored_alerts(client, kit: Kit) -> None:  # type: ignore[no-untyped-def]
    scored = _score(client, kit.test_csv.read_bytes())
    assert scored["alerts"] > 0 and scored["incidents"]
    page = client.get("/v1/incidents", params={"limit": 500}, headers=AUTH).json()
    assert page["total"] == len(set(scored["incidents"])) == len(page["items"])
    ranks = {"low": 1, "medium": 2, "high": 3, "critical": 4}
    order = [ranks[i["severity"]] for i in page["items"]]
    assert order == sorted(order, reverse=True)  # most severe first
    assert sum(i["alerts"] for i in page["items"]) == client.get("/v1/alerts", headers=AUTH).json()["total"]
    # fewer incidents than alerts: the point of grouping
    assert page["total"] < scored["alerts"]

    biggest = max(page["items"], key=lambda i: i["alerts"])
    detail = client.get(f"/v1/incidents/{biggest['id']}", params={"alerts": 5}, headers=AUTH).json()
    assert detail["alert_total"] == biggest["alerts"] and len(detail["alert_items"]) == min(
        5, biggest["alerts"]
    )
    assert all(a["incident_id"] == biggest["id"] for a in detail["alert_items"])
    same = client.get("/v1/alerts", params={"incident": biggest["id"], "limit": 5000}, headers=AUTH).json()
    assert same["total"] == biggest["alerts"]

    kind = biggest["kind"]
    assert all(
        i["kind"] == kind
        for i in client.get("/v1/incidents", params={"kind": kind}, headers=AUTH).json()["items"]
    )
    one_dst = detail["alert_items"][0]["dst"]
    by_dst = client.get("/v1/incidents", params={"dst": one_dst}, headers=AUTH).json()
    assert biggest["id"] in {i["id"] for i in by_dst["items"]}
    assert client.get("/v1/alerts", params={"dst": one_dst}, headers=AUTH).status_code == 200

    verdict = {"verdict": "false_positive", "analyst": "ana", "note": "backup traffic"}
    answer = client.post(f"/v1/incidents/{biggest['id']}/feedback", json=verdict, headers=AUTH)
    assert answer.status_code == 201, answer.text
    assert (
        answer.json()["alerts"] == biggest["alerts"]
        and answer.json()["incident"]["status"] == "false_positive"
    )
    cleared = client.get(
        "/v1/alerts",
        params={"incident": biggest["id"], "status": "false_positive", "limit": 5000},
        headers=AUTH,
    ).json()
    assert cleared["total"] == biggest["alerts"]
    assert client.post("/v1/incidents/nope/feedback", json=verdict, headers=AUTH).status_code == 404
    wrong = {"verdict": "confirmed", "analyst": "ana"}
    assert client.post(f"/v1/incidents/{biggest['id']}/feedback", json=wrong, headers=AUTH).status_code in (
        400,
        422,
    )

    exported = client.get("/v1/incidents/export", params={"format": "csv"}, headers=AUTH)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == page["total"] and {"id", "kind", "severity", "top_sources"} <= set(rows[0])
    as_json = client.get("/v1/incidents/export", params={"format": "json", "kind": kind}, headers=AUTH)
    assert all(i["kind"] == kind for i in json.loads(as_json.text))
    alerts_csv = client.get("/v1/alerts/export", params={"incident": biggest["id"]}, headers=AUTH)
    assert len(list(csv.DictReader(io.StringIO(alerts_csv.text)))) == biggest["alerts"]
    assert client.get("/v1/incidents", params={"severity": "extreme"}, headers=AUTH).status_code == 422
    assert client.get("/v1/incidents", params={"colour": "red"}, headers=AUTH).status_code == 422


def test_the_same_flows_again_join_the_same_incidents(client, kit: Kit) -> None:  # type: ignore[no-untyped-def]
    first = _score(client, kit.test_csv.read_bytes())
    again = _score(client, kit.test_csv.read_bytes())
    assert again["stored"] == 0 and set(again["incidents"]) <= set(first["incidents"])
    total = client.get("/v1/incidents", headers=AUTH).json()["total"]
    assert total == len(set(first["incidents"]))
