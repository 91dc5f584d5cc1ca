"""The triage page in headless Chromium against a live service on 127.0.0.1: give the token,
filter, open an alert, label it, and find the label through the API."""

from __future__ import annotations

import base64
import importlib.util
import re
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
    settings = Settings(db=tmp_path / "alerts.db", registry=tmp_path / "models", token=TOKEN)
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
        opened.on("request", lambda r: None if r.url.startswith(server) else elsewhere.append(r.url))
        opened.problems = problems  # type: ignore[attr-defined]
        opened.elsewhere = elsewhere  # type: ignore[attr-defined]
        yield opened
        browser.close()


def _api(server: str, path: str, **params: object) -> dict:
    response = httpx.get(f"{server}{path}", params=params, headers=AUTH, timeout=30)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return response.json()


def test_label_alerts_from_the_page(page, server: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(server + "/")
    # the service needs a token: the page asks for it
    dialog = page.get_by_test_id("token-dialog")
    expect(dialog).to_be_visible()
    page.get_by_test_id("token-input").fill(TOKEN)
    page.get_by_test_id("token-submit").click()
    expect(dialog).to_be_hidden()
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
    expect(page.get_by_test_id("alert-row").first).to_be_visible()
