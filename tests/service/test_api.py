"""The service API in-process: scoring in every body format, alerts, feedback, models, metrics,
authentication, limits, and 4xx JSON errors on bad input."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.helpers import AUTH, TOKEN, Kit

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def _records(kit: Kit, rows: int | None = None) -> list[dict]:
    frame = pl.read_csv(kit.test_csv, infer_schema_length=10000)
    if rows is not None:
        frame = frame.head(rows)
    return frame.to_dicts()


def _score(client, body: bytes, content_type: str, **params) -> dict:  # type: ignore[no-untyped-def]
    response = client.post(
        "/v1/score", content=body, headers={**AUTH, "Content-Type": content_type}, params=params
    )
    assert response.status_code == 200, response.text
    return response.json()


def _error(response, status: int, *fragments: str) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert "Traceback" not in body["error"]
    for fragment in fragments:
        assert fragment in body["error"], body["error"]
    return body["error"]


# -- authentication ------------------------------------------------------------------------------


def test_health_needs_no_token(client) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["model_version"] == "v1"
    assert body["auth_required"] is True


@pytest.mark.parametrize("path", ["/v1/alerts", "/v1/models", "/metrics", "/openapi.json", "/v1/alerts/1"])
def test_everything_else_needs_the_token(client, path: str) -> None:  # type: ignore[no-untyped-def]
    response = client.get(path)
    _error(response, 401, "bearer token")
    assert response.headers["www-authenticate"].startswith("Bearer")
    _error(client.get(path, headers={"Authorization": "Bearer wrong-token-wrong-token"}), 401)
    _error(client.get(path, headers={"Authorization": TOKEN}), 401)
    assert client.get(path, headers=AUTH).status_code in (200, 404)


def test_unauthenticated_scoring_is_refused_before_reading(client, kit: Kit) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/score", content=b"[", headers={"Content-Type": "application/json"})
    _error(response, 401)
    assert client.get("/v1/alerts", headers=AUTH).json()["total"] == 0


def test_the_page_is_served_without_a_token_and_loads_nothing_from_elsewhere(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/")
    assert page.status_code == 200
    assert "nadkit triage" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    for name in ("app.js", "style.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200
    static = Path(__file__).resolve().parents[2] / "src" / "nadkit" / "service" / "static"
    for file in static.iterdir():
        text = file.read_text()
        urls = re.findall(r"https?://[^\s\"')]+", text) + re.findall(r"[\"'(=]//[A-Za-z0-9.-]+", text)
        assert set(urls) <= {"http://www.w3.org/2000/svg"}, (file.name, urls)


def test_openapi_document(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json", headers=AUTH).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    score = spec["paths"]["/v1/score"]["post"]
    assert set(score["requestBody"]["content"]) == {
        "application/json",
        "text/csv",
        "application/vnd.apache.arrow.stream",
    }
    assert "its own table" in score["description"]
    assert spec["paths"]["/health"]["get"]["security"] == []
    for path in (
        "/v1/alerts",
        "/v1/alerts/{alert_id}",
        "/v1/alerts/{alert_id}/feedback",
        "/v1/models",
        "/metrics",
    ):
        assert path in spec["paths"]


# -- scoring -------------------------------------------------------------------------------------


def test_score_json_stores_alerts_once(client, kit: Kit) -> None:  # type: ignore[no-untyped-def]
    records = _records(kit)
    body = json.dumps(records).encode()
    first = _score(client, body, "application/json")
    assert first["flows"] == len(records) == len(first["results"])
    assert first["model_version"] == "v1" and first["model"] == "ae"
    assert first["alerts"] > 0 and first["stored"] == first["alerts"]
    assert [r["row"] for r in first["results"]] == list(range(1, len(records) + 1))
    alert = next(r for r in first["results"] if r["alert"])
    assert alert["alert_id"] and alert["top_features"] and alert["score"] >= first["threshold"]
    assert all(r["alert_id"] is None for r in first["results"] if not r["alert"])
    # the readable scale and the explanation in words come back with every alert
    assert alert["severity"] in ("low", "medium", "high", "critical") and alert["explanation"]
    assert alert["threshold_multiple"] >= 1.0 and "score_percentile" in alert
    entry = alert["top_features"][0]
    assert entry["label"] and entry["label"] != entry["feature"] and entry["share"] is not None
    assert alert["explanation"].startswith(f"{entry['label']}: ")

    again = _score(client, body, "application/json")
    assert again["stored"] == 0, "the same flows and model version must not be stored twice"
    assert [r["alert_id"] for r in again["results"]] == [r["alert_id"] for r in first["results"]]
    assert client.get("/v1/alerts", headers=AUTH).json()["total"] == first["alerts"]

    stored = client.get(f"/v1/alerts/{alert['alert_id']}", headers=AUTH).json()
    flow = stored["flow"]
    # every input field is kept, so the flow can be rebuilt and scored again
    assert set(records[0]) <= set(flow)
    assert stored["status"] == "new" and stored["model_version"] == "v1"


def test_csv_arrow_and_json_give_the_same_scores(client, kit: Kit) -> None:  # type: ignore[no-untyped-def]
    records = _records(kit, 600)
    frame = pl.read_csv(kit.test_csv, infer_schema_length=10000).head(600)
    as_json = _score(client, json.dumps(records).encode(), "application/json", store="false")
    csv_body = io.BytesIO()
    frame.write_csv(csv_body)
    as_csv = _score(client, csv_body.getvalue(), "text/csv; charset=utf-8", store="false")
    arrow = io.BytesIO()
    frame.with_columns(pl.col("time").str.to_datetime(time_zone="UTC")).write_ipc_stream(arrow)
    as_arrow = _score(client, arrow.getvalue(), "application/vnd.apache.arrow.stream", store="false")
    scores = [[r["score"] for r in answer["results"]] for answer in (as_json, as_csv, as_arrow)]
    assert scores[0] == pytest.approx(scores[1])
    assert scores[0] == pytest.approx(scores[2])
    assert as_json["stored"] == 0 and client.get("/v1/alerts", headers=AUTH).json()["total"] == 0
    only = _score(client, json.dumps(records).encode(), "application/json", store="false", alerts_only="true")
    assert only["results"] and all(r["alert"] for r in only["results"])


def test_text_columns_outside_the_schema_are_kept(client, kit: Kit) -> None:  # type: ignore[no-untyped-def]
    """Flows as nadkit's readers write them (an application category, a note) score as they are; a
    column the model reads as a number must hold numbers, and the answer names it."""
    frame = pl.read_csv(kit.test_csv, infer_schema_length=10000).head(200)
    extra = frame.with_columns(pl.lit("Web").alias("app_category"), pl.lit("n/a").alias("note"))
    body = io.BytesIO()
    extra.write_csv(body)
    answer = _score(client, body.getvalue(), "text/csv", store="false")
    assert answer["flows"] == 200
    as_json = _score(client, json.dumps(extra.to_dicts()).encode(), "application/json", store="false")
    assert as_json["flows"] == 200
    numeric = next(c for c in frame.columns if c.startswith("cnt_"))
    bad = frame.with_columns(pl.lit("many").alias(numeric))
    body = io.BytesIO()
    bad.write_csv(body)
    refused = client.post("/v1/score", content=body.getvalue(), headers={**AUTH, "Content-Type": "text/csv"})
    assert refused.status_code == 422 and numeric in refused.json()["error"], refused.text


def test_empty_requests(client) -> None:  # type: ignore[no-untyped-def]
    for body, kind in ((b"[]", "application/json"), (b"", "text/csv")):
        answer = _score(client, body, kind)
        assert answer["flows"] == 0 and answer["results"] == []


@pytest.mark.parametrize(
    ("body", "kind", "status", "fragments"),
    [
        (b"[{", "application/json", 400, ("not valid JSON",)),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, ("nested too deeply",)),
        (b'{"src": "10.0.0.1"}', "application/json", 422, ("JSON array",)),
        (b"[1, 2]", "application/json", 422, ("row 1", "object")),
        (b'[{"src": {"a": 1}}]', "application/json", 422, ("row 1", "'src'")),
        (b'[{"score": 1}]', "application/json", 422, ("'score'", "reserved")),
        (b"\xff\xfe\x00", "text/csv", 400, ("UTF-8",)),
        (b"true", "text/csv", 422, ("no flows", "'true'")),
        (b"\x00\x01garbage", "application/vnd.apache.arrow.stream", 400, ("Arrow",)),
        (b"src,dst\n1.2.3.4,5.6.7.8\n", "application/xml", 415, ("Content-Type",)),
        (b"src,dst\n1.2.3.4,5.6.7.8\n", "", 415, ("Content-Type",)),
    ],
)
def test_bad_bodies(client, body: bytes, kind: str, status: int, fragments: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/score", content=body, headers={**AUTH, "Content-Type": kind})
    _error(response, status, *fragments)


def test_a_body_of_millions_of_columns_is_refused_before_it_is_parsed(client) -> None:  # type: ignore[no-untyped-def]
    import time

    header = ",".join(f"c{i}" for i in range(2_000_000))
    body = (header + "\n" + ",".join("1" for _ in range(2_000_000)) + "\n").encode()
    started = time.perf_counter()
    response = client.post("/v1/score", content=body, headers={**AUTH, "Content-Type": "text/csv"})
    assert time.perf_counter() - started < 5  # parsing it took 26 s
    _error(response, 422, "too many fields", "2000000")
    wide = json.dumps([{f"c{i}": 1 for i in range(600)}]).encode()
    response = client.post("/v1/score", content=wide, headers={**AUTH, "Content-Type": "application/json"})
    _error(response, 422, "too many fields")


def test_bad_values_name_row_and_field(client, kit: Kit) -> None:  # type: ignore[no-untyped-def]
    records = _records(kit, 5)
    for field, value, fragment in (
        ("spt", "port", "row 3, field 'spt'"),
        ("in_bytes", -5, "row 3, field 'in_bytes'"),
        ("dpt", 70000, "row 3, field 'dpt'"),
        ("time", "yesterday", "row 3, field 'time'"),
    ):
        broken = [dict(r) for r in records]
        broken[2][field] = value
        response = client.post("/v1/score", json=broken, headers=AUTH)
        _error(response, 422, fragment)
    missing = [{k: v for k, v in r.items() if k != "in_bytes"} for r in records]
    _error(client.post("/v1/score", json=missing, headers=AUTH), 422, "'in_bytes'", "missing")
    csv = "time,src,dst,spt\n2020-12-04T10:00:00Z,10.0.0.1,10.0.0.2,http\n"
    _error(
        client.post("/v1/score", content=csv, headers={**AUTH, "Content-Type": "text/csv"}),
        422,
        "row 1",
        "'spt'",
    )


def test_size_limits(settings, kit: Kit) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from nadkit.service import create_app

    small = settings.model_copy(update={"max_body_bytes": 64 * 1024, "max_flows": 50})
    with TestClient(create_app(small), raise_server_exceptions=False) as client:
        big = json.dumps(_records(kit, 2000)).encode()
        _error(
            client.post("/v1/score", content=big, headers={**AUTH, "Content-Type": "application/json"}), 413
        )

        def chunks():  # type: ignore[no-untyped-def]
            for start in range(0, len(big), 8192):
                yield big[start : start + 8192]

        streamed = client.post(
            "/v1/score", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
        )
        _error(streamed, 413)
        many = json.dumps(_records(kit, 60)).encode()
        _error(
            client.post("/v1/score", content=many, headers={**AUTH, "Content-Type": "application/json"}),
            413,
            "too many flows",
        )


# -- alerts and feedback -------------------------------------------------------------------------


@pytest.fixture()
def scored(client, kit: Kit) -> dict:  # type: ignore[no-untyped-def]
    return _score(client, kit.test_csv.read_bytes(), "text/csv")


def test_alert_filters_and_pages(client, scored: dict) -> None:  # type: ignore[no-untyped-def]
    total = scored["alerts"]
    page = client.get("/v1/alerts", params={"limit": 10, "order": "score_desc"}, headers=AUTH).json()
    assert page["total"] == total and len(page["items"]) == min(10, total)
    scores = [a["score"] for a in page["items"]]
    assert scores == sorted(scores, reverse=True)
    second = client.get("/v1/alerts", params={"limit": 10, "offset": 10, "order": "score_desc"}, headers=AUTH)
    assert not {a["id"] for a in page["items"]} & {a["id"] for a in second.json()["items"]}
    cut = scores[4]
    high = client.get("/v1/alerts", params={"min_score": cut, "limit": 500}, headers=AUTH).json()
    assert high["total"] == sum(1 for r in scored["results"] if r["alert"] and r["score"] >= cut)
    times = sorted(
        a["time"] for a in client.get("/v1/alerts", params={"limit": 500}, headers=AUTH).json()["items"]
    )
    middle = times[len(times) // 2]
    later = client.get("/v1/alerts", params={"since": middle, "limit": 500}, headers=AUTH).json()
    earlier = client.get("/v1/alerts", params={"until": middle, "limit": 500}, headers=AUTH).json()
    assert later["total"] + earlier["total"] == total
    assert all(a["time"] >= middle for a in later["items"])
    assert client.get("/v1/alerts", params={"status": "confirmed"}, headers=AUTH).json()["total"] == 0
    _error(client.get("/v1/alerts", params={"status": "nope"}, headers=AUTH), 422)
    _error(client.get("/v1/alerts", params={"limit": 0}, headers=AUTH), 422)
    _error(client.get("/v1/alerts", params={"since": "not a time"}, headers=AUTH), 422)


def test_feedback_lifecycle(client, scored: dict) -> None:  # type: ignore[no-untyped-def]
    ids = [r["alert_id"] for r in scored["results"] if r["alert"]]
    first, second = ids[0], ids[1]
    answer = client.post(
        f"/v1/alerts/{first}/feedback",
        json={"verdict": "false_positive", "note": "nightly backup", "analyst": "ana"},
        headers=AUTH,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["alert"]["status"] == "false_positive"
    confirmed = client.post(
        f"/v1/alerts/{first}/feedback",
        json={"verdict": "confirmed", "attack_class": "Probing-IP sweep", "analyst": "bo"},
        headers=AUTH,
    ).json()
    assert confirmed["alert"]["status"] == "confirmed"
    assert [f["verdict"] for f in confirmed["alert"]["feedback"]] == ["false_positive", "confirmed"]
    by_class = client.get("/v1/alerts", params={"class": "Probing-IP sweep"}, headers=AUTH).json()
    assert [a["id"] for a in by_class["items"]] == [first]
    summary = client.get("/v1/alerts/summary", headers=AUTH).json()
    assert summary["by_status"]["confirmed"] == 1 and summary["by_class"]["Probing-IP sweep"] == 1

    post = lambda body: client.post(f"/v1/alerts/{second}/feedback", json=body, headers=AUTH)  # noqa: E731
    _error(post({"verdict": "confirmed", "analyst": "ana"}), 422, "attack class")
    _error(post({"verdict": "maybe", "analyst": "ana"}), 422, "verdict")
    _error(post({"verdict": "known_benign"}), 422, "analyst")
    _error(post({"verdict": "known_benign", "analyst": "ana", "extra": 1}), 422)
    _error(post({"verdict": "known_benign", "analyst": "ana", "attack_class": "x"}), 422, "no attack class")
    _error(
        client.post(
            "/v1/alerts/999999/feedback", json={"verdict": "known_benign", "analyst": "a"}, headers=AUTH
        ),
        404,
    )
    _error(
        client.post(
            f"/v1/alerts/{second}/feedback",
            content=b"{",
            headers={**AUTH, "Content-Type": "application/json"},
        ),
        422,
    )
    assert client.get(f"/v1/alerts/{second}", headers=AUTH).json()["status"] == "new"
    _error(client.get("/v1/alerts/999999", headers=AUTH), 404, "999999")
    _error(client.get("/v1/alerts/abc", headers=AUTH), 422)


def test_alert_picture_shows_verdicts_beside_the_models_classes(client, scored: dict, settings) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    from matplotlib import colors as mcolors
    from matplotlib import image

    from nadkit.alerts.store import AlertStore
    from nadkit.pictures import ALERT, NORMAL_TINT, draw_groups
    from nadkit.service.routers.pictures import TITLES, UNREVIEWED, UNREVIEWED_COLOUR, alerts_frame

    # mark as false positive an alert alone in its (source, destination) group
    alerts = client.get("/v1/alerts", params={"limit": 500}, headers=AUTH).json()["items"]
    pairs = pl.DataFrame(
        {
            "id": [a["id"] for a in alerts],
            "src": [a["src"] for a in alerts],
            "dst": [a["dst"] for a in alerts],
        }
    )
    alone = pairs.filter(pl.len().over("src", "dst") == 1)
    assert alone.height, "every alert shares its address pair"
    marked = int(alone["id"][0])
    answer = client.post(
        f"/v1/alerts/{marked}/feedback", json={"verdict": "false_positive", "analyst": "ana"}, headers=AUTH
    )
    assert answer.status_code == 201
    response = client.get("/v1/pictures/groups", params={"by": "src,dst"}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    pixels = np.rint(image.imread(io.BytesIO(response.content), format="png")[..., :3] * 255).astype(int)
    # the same picture drawn here tells where the marked alert falls
    with AlertStore(settings.db) as store:
        frame = alerts_frame(store.list_alerts(limit=100_000, order="time_desc"))
        alert = store.get_alert(marked)
    assert alert is not None
    picture = draw_groups(
        frame,
        by="src,dst",
        color=["label", "prediction"],
        width=700,
        height=400,
        title=f"{frame.height:,} stored alerts grouped over time",
        source="the alert store",
        panel_titles=TITLES,
        colours={UNREVIEWED: UNREVIEWED_COLOUR},
    )
    assert picture.png == response.content
    when = frame.filter(pl.col("src") == alert["src"], pl.col("dst") == alert["dst"])["time"][0]
    rgb = lambda colour: tuple(round(255 * c) for c in mcolors.to_rgb(colour))  # noqa: E731
    # the analysts said normal; the model said alert
    row, column = picture.locate((alert["src"], alert["dst"]), when, panel=0)
    assert tuple(pixels[row, column]) == rgb(NORMAL_TINT)
    row, column = picture.locate((alert["src"], alert["dst"]), when, panel=1)
    assert tuple(pixels[row, column]) == rgb(picture.colours[ALERT])
    # unreviewed alerts have their own neutral colour in the verdict panel
    assert picture.colours[UNREVIEWED] == UNREVIEWED_COLOUR
    # filters narrow the picture; nothing to draw is a 404, bad parameters a 422, both JSON
    _error(
        client.get("/v1/pictures/groups", params={"status": "confirmed"}, headers=AUTH),
        404,
        "no stored alert",
    )
    _error(client.get("/v1/pictures/groups", params={"by": "nope,dst"}, headers=AUTH), 422)
    _error(client.get("/v1/pictures/groups", params={"color": "rainbow"}, headers=AUTH), 422)
    _error(client.get("/v1/pictures/groups", params={"width": 5}, headers=AUTH), 422)


# -- models and metrics --------------------------------------------------------------------------


def test_models_and_activation(client, kit: Kit, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from nadkit.lifecycle.registry import ModelRegistry
    from nadkit.training.bundle import ModelBundle

    listed = client.get("/v1/models", headers=AUTH).json()
    assert listed["active"] == "v1" and [m["version"] for m in listed["models"]] == ["v1"]
    _error(client.post("/v1/models/v9/activate", headers=AUTH), 404, "v9")
    _error(client.post("/v1/models/latest/activate", headers=AUTH), 422)
    # a second version: the same model with a higher threshold
    copy = tmp_path / "stricter"
    shutil.copytree(kit.bundle, copy)
    bundle = ModelBundle.load(copy)
    assert bundle.threshold is not None
    bundle.threshold = dataclasses.replace(bundle.threshold, value=bundle.threshold.value * 2)
    bundle.save(copy, overwrite=True)
    registry = ModelRegistry(settings.registry_dir)
    assert registry.register(copy).version == "v2"
    assert registry.register(copy).version == "v2", "the same bundle is registered once"
    activated = client.post("/v1/models/v2/activate", headers=AUTH)
    assert activated.status_code == 200 and activated.json()["active"] is True
    assert client.get("/health").json()["model_version"] == "v2"
    answer = client.post(
        "/v1/score", content=kit.test_csv.read_bytes(), headers={**AUTH, "Content-Type": "text/csv"}
    )
    assert answer.json()["model_version"] == "v2"
    # activation from outside (the command line) is picked up on the next request
    registry.activate("v1")
    again = client.post(
        "/v1/score", content=kit.test_csv.read_bytes(), headers={**AUTH, "Content-Type": "text/csv"}
    )
    assert again.json()["model_version"] == "v1"
    assert [m["version"] for m in client.get("/v1/models", headers=AUTH).json()["models"]] == ["v1", "v2"]


def test_metrics(client, scored: dict) -> None:  # type: ignore[no-untyped-def]
    client.get("/v1/alerts", headers=AUTH)
    client.get("/v1/alerts/123456", headers=AUTH)
    text = client.get("/metrics", headers=AUTH).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("nadkit_flows_scored_total", ())] == len(scored["results"])
    assert samples[("nadkit_alerts_stored_total", ())] == scored["stored"]
    score = (("method", "POST"), ("route", "/v1/score"), ("status", "200"))
    assert samples[("nadkit_requests_total", score)] == 1
    missing = (("method", "GET"), ("route", "/v1/alerts/{alert_id}"), ("status", "404"))
    assert samples[("nadkit_requests_total", missing)] == 1
    assert samples[("nadkit_request_duration_seconds_bucket", (("le", "+Inf"), ("route", "/v1/score")))] == 1
    assert samples[("nadkit_model_info", (("model", "ae"), ("version", "v1")))] == 1


def test_internal_errors_are_json_without_details(client, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    service = client.app.state.service

    def broken(**_: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service.store, "list_alerts", broken)
    response = client.get("/v1/alerts", headers=AUTH)
    message = _error(response, 500)
    assert "secret" not in message
    _error(client.get("/nothing-here", headers=AUTH), 404)


def test_settings_refuse_to_run_without_a_token(tmp_path: Path) -> None:
    from nadkit.errors import ConfigError
    from nadkit.service.settings import Settings, token_from

    with pytest.raises(ConfigError, match="no API token"):
        Settings(db=tmp_path / "a.db")
    with pytest.raises(ConfigError, match="at least 16"):
        Settings(db=tmp_path / "a.db", token="short")
    assert Settings(db=tmp_path / "a.db", insecure_localhost=True).auth_required is False
    assert token_from({"NADKIT_TOKEN": "from-env"}, {"token": "from-file"}) == "from-env"
    assert token_from({}, {"token": "from-file"}) == "from-file"
    assert token_from({}, {}) is None


def test_settings_read_the_environment_and_name_a_bad_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nadkit.errors import ConfigError
    from nadkit.service.settings import Settings

    monkeypatch.setenv("NADKIT_MAX_FLOWS", "1234")
    monkeypatch.setenv("NADKIT_TOKEN", "t" * 20)
    settings = Settings(db=tmp_path / "a.db")
    assert settings.max_flows == 1234 and settings.auth_required
    assert Settings(db=tmp_path / "a.db", max_flows=7).max_flows == 7  # given values come first
    with pytest.raises(ConfigError, match="service setting 'engine'"):
        Settings(db=tmp_path / "a.db", engine="gpu")
    with pytest.raises(ConfigError, match="service setting 'top'"):
        Settings(db=tmp_path / "a.db", top=0)


def test_addresses_that_are_no_addresses_are_refused(client, kit: Kit) -> None:  # type: ignore[no-untyped-def]
    records = _records(kit, 3)
    for bad in ("999.1.1.1", "abc", "1.2.3", "<img src=x onerror=alert(1)>"):
        body = json.dumps([{**records[0]}, {**records[1], "src": bad}]).encode()
        answer = client.post("/v1/score", content=body, headers={**AUTH, "Content-Type": "application/json"})
        assert answer.status_code == 422, answer.text
        assert "'src'" in answer.json()["error"] and "row 2" in answer.json()["error"]
    assert client.get("/v1/alerts", headers=AUTH).json()["total"] == 0
