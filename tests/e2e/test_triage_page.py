"""The triage page in headless Chromium against a live service on 127.0.0.1: give the token, see
the incidents most severe first, filter and page them, give one incident a verdict, export them,
check the layout at two widths; in the Alerts tab filter, open an alert, label it, and find the
labels through the API."""

from __future__ import annotations

import base64
import csv
import importlib.util
import io
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.service.helpers import AUTH, TOKEN, Kit, live_server, registry_with, session_kit

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (install the chromium package)"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None, reason="the playwright package is not installed"
    ),
]


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return session_kit(tmp_path_factory)


@pytest.fixture()
def server(kit: Kit, tmp_path: Path):  # type: ignore[no-untyped-def]
    from nadkit.service.settings import Settings

    registry_with(kit, tmp_path / "models")
    # drift windows of 1,000 flows: the scored test day closes several
    settings = Settings(
        db=tmp_path / "alerts.db", registry=tmp_path / "models", token=TOKEN, drift_window=1000
    )
    with live_server(settings) as url:
        answer = httpx.post(
            f"{url}/v1/score",
            content=kit.test_csv.read_bytes(),
            headers={**AUTH, "Content-Type": "text/csv"},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        yield url


@pytest.fixture()
def page(server: str):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context()
        opened = context.new_page()
        opened.set_default_timeout(20_000)
        problems: list[str] = []
        elsewhere: list[str] = []
        opened.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        opened.on("pageerror", lambda error: problems.append(str(error)))
        # exports are saved from blob: addresses of the page itself
        ours = (server, f"blob:{server}")
        opened.on("request", lambda r: None if r.url.startswith(ours) else elsewhere.append(r.url))
        opened.problems = problems  # type: ignore[attr-defined]
        opened.elsewhere = elsewhere  # type: ignore[attr-defined]
        yield opened
        browser.close()


def _api(server: str, path: str, **params: object) -> dict:
    response = httpx.get(f"{server}{path}", params=params, headers=AUTH, timeout=30)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return response.json()


SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}


def _no_overlap(page, list_box: str, pane: str) -> None:  # type: ignore[no-untyped-def]
    """The list's table box and the detail pane are both shown, side by side or one below the
    other, and nothing is wider than the window."""
    table = page.get_by_test_id(list_box).bounding_box()
    detail = page.get_by_test_id(pane).bounding_box()
    assert table and detail and table["width"] > 200 and detail["width"] > 200
    apart = (
        table["x"] + table["width"] <= detail["x"]
        or detail["x"] + detail["width"] <= table["x"]
        or table["y"] + table["height"] <= detail["y"]
        or detail["y"] + detail["height"] <= table["y"]
    )
    assert apart, (table, detail)
    wide, window = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert wide <= window, f"the page is {wide} px wide in a {window} px window"


def test_triage_incidents_from_the_page(page, server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(server + "/")
    page.get_by_test_id("token-input").fill(TOKEN)
    page.get_by_test_id("token-submit").click()

    # incidents first, most severe on top, in the service's order
    listed = _api(server, "/v1/incidents", limit=5000)
    total = listed["total"]
    assert total > 50, "the test day should make more than one page of incidents"
    expect(page.get_by_test_id("incidents-view")).to_be_visible()
    expect(page.get_by_test_id("incidents-page")).to_have_text(f"1-50 of {total}")
    rows = page.get_by_test_id("incident-row")
    expect(rows).to_have_count(50)
    shown = [row.get_attribute("data-id") for row in rows.all()]
    assert shown == [item["id"] for item in listed["items"][:50]]
    ranks = [SEVERITY_RANK[row.get_attribute("data-severity")] for row in rows.all()]
    assert ranks == sorted(ranks, reverse=True)
    expect(rows.first.locator(".badge").first).to_have_text(listed["items"][0]["severity"])
    expect(page.get_by_test_id("counts")).to_contain_text(f"{total} incidents")

    # the header shows the threshold and the drift the service measured, as /v1/drift gives them
    drift = _api(server, "/v1/drift")
    assert drift["threshold_method"] == "bundle" and drift["threshold"] == drift["bundle_threshold"]
    windows, events = drift["drift"]["windows"], drift["drift"]["events"]
    assert windows >= 1 and drift["drift"]["window_rows"] == 1000
    strip = page.get_by_test_id("drift")
    expect(strip).to_contain_text("threshold ")
    expect(strip).to_contain_text(f"drift: {events} event")
    expect(strip).to_contain_text(f"in {windows} window")
    if events:
        expect(strip).to_contain_text(drift["drift"]["most_moved"][0]["label"])

    # paging reaches past the first page and back
    page.get_by_test_id("incidents-next").click()
    expect(page.get_by_test_id("incidents-page")).to_have_text(f"51-{min(100, total)} of {total}")
    expect(rows.first).to_have_attribute("data-id", listed["items"][50]["id"])
    page.get_by_test_id("incidents-prev").click()
    expect(page.get_by_test_id("incidents-page")).to_have_text(f"1-50 of {total}")

    # filter by the kind and a destination of the largest incident
    biggest = max(listed["items"], key=lambda item: item["alerts"])
    kind, dst = biggest["kind"], biggest["summary"]["top_destinations"][0]["value"]
    by_kind = _api(server, "/v1/incidents", kind=kind, limit=1)["total"]
    page.get_by_test_id("inc-kind").select_option(kind)
    expect(page.get_by_test_id("incidents-page")).to_have_text(f"1-{min(by_kind, 50)} of {by_kind}")
    assert set(rows.locator("td:nth-child(2)").all_inner_texts()) == {kind}
    filtered = _api(server, "/v1/incidents", kind=kind, dst=dst, limit=5000)
    page.get_by_test_id("inc-dst").fill(dst)
    page.get_by_test_id("apply-incident-filters").click()
    expect(page.get_by_test_id("incidents-page")).to_have_text(
        f"1-{min(filtered['total'], 50)} of {filtered['total']}"
    )
    assert [row.get_attribute("data-id") for row in rows.all()] == [i["id"] for i in filtered["items"][:50]]

    # a time range around it (the page reads the times as UTC)
    minute = "%Y-%m-%dT%H:%M"
    since = datetime.fromisoformat(biggest["first_seen"]).strftime(minute)
    until = (datetime.fromisoformat(biggest["last_seen"]) + timedelta(minutes=1)).strftime(minute)
    in_time = _api(server, "/v1/incidents", kind=kind, dst=dst, since=since + "Z", until=until + "Z")["total"]
    assert 1 <= in_time <= filtered["total"]
    page.get_by_test_id("inc-since").fill(since)
    page.get_by_test_id("inc-until").fill(until)
    page.get_by_test_id("apply-incident-filters").click()
    expect(page.get_by_test_id("incidents-page")).to_have_text(f"1-{min(in_time, 50)} of {in_time}")
    page.get_by_test_id("inc-since").fill("")
    page.get_by_test_id("inc-until").fill("")
    page.get_by_test_id("apply-incident-filters").click()
    expect(page.get_by_test_id("incidents-page")).to_have_text(
        f"1-{min(filtered['total'], 50)} of {filtered['total']}"
    )

    # open it: its summary and its alerts, page by page
    page.locator(f"[data-testid=incident-row][data-id='{biggest['id']}']").click()
    pane = page.get_by_test_id("incident-detail")
    expect(pane).to_be_visible()
    expect(page.locator("#incident-title")).to_have_text(f"Incident: {kind} {biggest['key']}")
    expect(page.get_by_test_id("incident-summary")).to_contain_text(dst)
    count = biggest["alerts"]
    expect(page.get_by_test_id("incident-alerts-page")).to_have_text(f"1-{min(count, 20)} of {count}")
    alert_rows = page.get_by_test_id("incident-alert-row")
    expect(alert_rows).to_have_count(min(count, 20))
    if count > 20:
        page.get_by_test_id("incident-alerts-next").click()
        expect(page.get_by_test_id("incident-alerts-page")).to_have_text(f"21-{min(count, 40)} of {count}")
        page.get_by_test_id("incident-alerts-prev").click()
        expect(page.get_by_test_id("incident-alerts-page")).to_have_text(f"1-{min(count, 20)} of {count}")

    # the layout at both widths, with the incident open
    for width in (1400, 900):
        page.set_viewport_size({"width": width, "height": 900})
        expect(pane).to_be_visible()
        page.screenshot(path=str(tmp_path / f"incidents-{width}.png"), full_page=True)
        _no_overlap(page, "incidents-box", "incident-detail")
    page.set_viewport_size({"width": 1400, "height": 900})

    # one verdict for the whole incident
    page.get_by_test_id("incident-verdict-confirmed").check()
    expect(page.get_by_test_id("incident-attack-class")).to_be_enabled()
    page.get_by_test_id("incident-attack-class").fill("Probing-Port sweep")
    page.get_by_test_id("incident-note").fill("one source walking the ports")
    page.get_by_test_id("incident-analyst").fill("ana")
    page.get_by_test_id("incident-submit").click()
    expect(page.get_by_test_id("incident-feedback-message")).to_have_text(
        f"Saved: confirmed attack for {count} alerts."
    )
    expect(page.get_by_test_id("incident-status")).to_have_attribute("data-status", "confirmed")
    expect(page.get_by_test_id("incident-review")).to_contain_text("Probing-Port sweep")
    row = page.locator(f"[data-testid=incident-row][data-id='{biggest['id']}']")
    expect(row.locator("td:nth-child(9)")).to_have_text("confirmed attack")
    # ... and its alerts carry it, on the page and in the store
    expect(alert_rows.first).to_have_attribute("data-status", "confirmed")
    assert {r.get_attribute("data-status") for r in alert_rows.all()} == {"confirmed"}
    stored = _api(server, f"/v1/incidents/{biggest['id']}", alerts=0)
    assert (stored["status"], stored["attack_class"], stored["analyst"]) == (
        "confirmed",
        "Probing-Port sweep",
        "ana",
    )
    carried = _api(server, "/v1/alerts", incident=biggest["id"], status="confirmed", limit=1)
    assert carried["total"] == count
    first_alert = alert_rows.first.get_attribute("data-id")
    alert_rows.first.click()
    expect(page.get_by_test_id("detail")).to_be_visible()
    expect(pane).to_be_hidden()
    expect(page.locator("#detail-title")).to_have_text(f"Alert #{first_alert}")
    expect(page.get_by_test_id("detail-status")).to_have_attribute("data-status", "confirmed")
    expect(page.get_by_test_id("history")).to_contain_text("ana: confirmed attack (Probing-Port sweep)")
    page.get_by_test_id("alert-back").click()
    expect(pane).to_be_visible()

    # exports: the filtered incidents, and the incident's alerts
    with page.expect_download() as waiting:
        page.get_by_test_id("export-incidents-csv").click()
    got = waiting.value
    assert got.suggested_filename == "incidents.csv"
    exported = list(csv.DictReader(io.StringIO(Path(got.path()).read_text())))
    assert [r["id"] for r in exported] == [i["id"] for i in filtered["items"]]
    assert {r["kind"] for r in exported} == {kind}
    mine = next(r for r in exported if r["id"] == biggest["id"])
    assert mine["status"] == "confirmed" and dst in mine["top_destinations"]
    expect(page.get_by_test_id("incidents-export-message")).to_contain_text("incidents.csv")
    with page.expect_download() as waiting:
        page.get_by_test_id("export-incidents-json").click()
    assert [i["id"] for i in json.loads(Path(waiting.value.path()).read_text())] == [
        i["id"] for i in filtered["items"]
    ]
    with page.expect_download() as waiting:
        page.get_by_test_id("export-incident-alerts-csv").click()
    alerts = list(csv.DictReader(io.StringIO(Path(waiting.value.path()).read_text())))
    assert len(alerts) == count
    assert {(a["incident_id"], a["status"]) for a in alerts} == {(biggest["id"], "confirmed")}

    # the status filter finds it among the confirmed incidents
    page.get_by_test_id("inc-status").select_option("confirmed")
    expect(page.get_by_test_id("incidents-page")).to_have_text("1-1 of 1")
    expect(rows).to_have_attribute("data-id", biggest["id"])

    # the Alerts tab keeps its own pane; the layout holds there too
    page.get_by_test_id("tab-alerts").click()
    expect(pane).to_be_hidden()
    page.get_by_test_id("alert-row").first.click()
    expect(page.get_by_test_id("detail")).to_be_visible()
    for width in (1400, 900):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(tmp_path / f"alerts-{width}.png"), full_page=True)
        _no_overlap(page, "alerts-box", "detail")
    page.get_by_test_id("tab-incidents").click()
    expect(pane).to_be_visible()
    assert all(
        (tmp_path / f"{view}-{width}.png").stat().st_size > 10_000
        for view in ("incidents", "alerts")
        for width in (900, 1400)
    )

    assert page.problems == []  # type: ignore[attr-defined]
    assert page.elsewhere == []  # type: ignore[attr-defined]


def test_label_alerts_from_the_page(page, server: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(server + "/")
    # the service needs a token: the page asks for it
    dialog = page.get_by_test_id("token-dialog")
    expect(dialog).to_be_visible()
    page.get_by_test_id("token-input").fill(TOKEN)
    page.get_by_test_id("token-submit").click()
    expect(dialog).to_be_hidden()
    # incidents come first; the single alerts are the second tab
    expect(page.get_by_test_id("incident-row").first).to_be_visible()
    page.get_by_test_id("tab-alerts").click()
    total = _api(server, "/v1/alerts", limit=1)["total"]
    expect(page.get_by_test_id("page")).to_have_text(f"1-50 of {total}")
    expect(page.get_by_test_id("model")).to_have_text("model: v1")
    # the timeline loads beside the list: wait for its points rather than count them at once
    expect(page.locator("#timeline circle")).to_have_count(min(total, 500))

    # filter: unreviewed alerts above a score, highest first
    scores = sorted((a["score"] for a in _api(server, "/v1/alerts", limit=500)["items"]), reverse=True)
    cut = scores[min(30, len(scores) - 1)]
    expected = _api(server, "/v1/alerts", min_score=cut, status="new", limit=1)["total"]
    page.get_by_test_id("filter-status").select_option("new")
    page.get_by_test_id("filter-min-score").fill(str(cut))
    page.get_by_test_id("filter-order").select_option("score_desc")
    page.get_by_test_id("apply-filters").click()
    expect(page.get_by_test_id("page")).to_have_text(f"1-{min(expected, 50)} of {expected}")
    rows = page.get_by_test_id("alert-row")
    shown = [float(text) for text in rows.locator("td:nth-child(6)").all_inner_texts()]
    assert shown == sorted(shown, reverse=True)

    # open the top alert: flow, score against threshold, explained features, same source
    first = rows.first
    alert_id = int(first.get_attribute("data-id"))
    first.click()
    detail = page.get_by_test_id("detail")
    expect(detail).to_be_visible()
    expect(page.locator("#detail-title")).to_have_text(f"Alert #{alert_id}")
    alert = _api(server, f"/v1/alerts/{alert_id}")
    expect(page.get_by_test_id("gauge-text")).to_contain_text("threshold")
    assert len(alert["top_features"]) > 0
    expect(page.get_by_test_id("feature-bar")).to_have_count(len(alert["top_features"]))
    expect(page.get_by_test_id("flow-fields")).to_contain_text(alert["src"])
    expect(page.locator("#same-source-title")).to_have_text(f"Other alerts of {alert['src']}")

    # label it: a confirmed attack with its class and a note
    page.get_by_test_id("verdict-confirmed").check()
    expect(page.get_by_test_id("attack-class")).to_be_enabled()
    page.get_by_test_id("attack-class").fill("Probing-IP sweep")
    page.get_by_test_id("note").fill("sweep of the /24 from one host")
    page.get_by_test_id("analyst").fill("ana")
    page.get_by_test_id("submit-feedback").click()
    expect(page.get_by_test_id("feedback-message")).to_have_text("Saved: confirmed attack.")
    expect(page.get_by_test_id("detail-status")).to_have_attribute("data-status", "confirmed")

    stored = _api(server, f"/v1/alerts/{alert_id}")
    assert stored["status"] == "confirmed" and stored["confirmed_class"] == "Probing-IP sweep"
    (given,) = stored["feedback"]
    assert (given["verdict"], given["attack_class"], given["note"], given["analyst"]) == (
        "confirmed",
        "Probing-IP sweep",
        "sweep of the /24 from one host",
        "ana",
    )
    # the list follows the filter: the labelled alert is no longer "new"
    expect(page.get_by_test_id("page")).to_have_text(re.compile(rf"of {expected - 1}$"))

    # a second alert: a false positive (the analyst's name is remembered)
    second = rows.first
    second_id = int(second.get_attribute("data-id"))
    assert second_id != alert_id
    second.click()
    expect(page.locator("#detail-title")).to_have_text(f"Alert #{second_id}")
    expect(page.get_by_test_id("analyst")).to_have_value("ana")
    page.get_by_test_id("verdict-false_positive").check()
    expect(page.get_by_test_id("attack-class")).to_be_disabled()
    page.get_by_test_id("submit-feedback").click()
    expect(page.get_by_test_id("feedback-message")).to_have_text("Saved: false positive.")
    assert _api(server, f"/v1/alerts/{second_id}")["status"] == "false_positive"
    summary = _api(server, "/v1/alerts/summary")
    assert summary["by_status"]["confirmed"] == 1 and summary["by_status"]["false_positive"] == 1
    expect(page.get_by_test_id("counts")).to_contain_text("1 false positive")

    # the status filter finds it again
    page.get_by_test_id("filter-status").select_option("false_positive")
    page.get_by_test_id("filter-min-score").fill("")
    page.get_by_test_id("apply-filters").click()
    expect(page.get_by_test_id("page")).to_have_text("1-1 of 1")
    expect(page.get_by_test_id("alert-row")).to_have_attribute("data-id", str(second_id))

    # the flow-groups picture of the filtered alerts, verdicts beside the model's classes
    page.get_by_test_id("groups").locator("summary").click()
    picture = page.get_by_test_id("groups-picture")
    expect(picture).to_have_attribute("data-loaded", "true")
    expect(picture).to_be_visible()
    shown = base64.b64decode(picture.get_attribute("src").split(",", 1)[1])
    drawn = httpx.get(
        f"{server}/v1/pictures/groups",
        params={"status": "false_positive", "by": "src_port,dst_port"},
        headers=AUTH,
        timeout=60,
    )
    assert drawn.status_code == 200 and shown == drawn.content
    assert page.evaluate("document.getElementById('groups-picture').naturalWidth") > 700
    page.get_by_test_id("groups-by").select_option("src,dst")
    expect(picture).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))

    assert page.problems == []  # type: ignore[attr-defined]
    assert page.elsewhere == []  # type: ignore[attr-defined]


def test_a_wrong_token_is_asked_again(page, server: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(server + "/")
    page.get_by_test_id("token-input").fill("not-the-right-token")
    page.get_by_test_id("token-submit").click()
    expect(page.get_by_test_id("token-dialog")).to_be_visible()
    expect(page.locator("#token-message")).to_contain_text("refused")
    page.get_by_test_id("token-input").fill(TOKEN)
    page.get_by_test_id("token-submit").click()
    expect(page.get_by_test_id("incident-row").first).to_be_visible()
