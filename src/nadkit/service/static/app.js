// The triage page: list and filter alerts, inspect one, label it. Talks only to this service's API.
"use strict";

(() => {
  const TOKEN_KEY = "nadkit-token";
  const ANALYST_KEY = "nadkit-analyst";
  const PAGE_SIZE = 50;
  const TIMELINE_SIZE = 500;
  const SVG = "http://www.w3.org/2000/svg";
  const VERDICT_TEXT = {
    new: "new",
    confirmed: "confirmed attack",
    false_positive: "false positive",
    known_benign: "known benign",
  };

  const state = { offset: 0, total: 0, selected: null, authRequired: false };
  const $ = (id) => document.getElementById(id);

  // -- helpers ------------------------------------------------------------------------------------

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function svgElement(tag, attributes) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
    return node;
  }

  function formatScore(value) {
    if (value === null || value === undefined || !Number.isFinite(value)) return "-";
    const magnitude = Math.abs(value);
    if (magnitude >= 1000 || (magnitude > 0 && magnitude < 0.001)) return value.toExponential(3);
    return value.toPrecision(4);
  }

  function formatTime(text) {
    return text ? text.replace("T", " ").replace(/\.0+Z$/, "Z") : "-";
  }

  function alertClass(alert) {
    return alert.confirmed_class || alert["class"] || "anomaly";
  }

  function showMessage(id, text, isError) {
    const node = $(id);
    node.textContent = text || "";
    node.classList.toggle("error", Boolean(isError));
  }

  class AuthError extends Error {}

  async function api(path, options) {
    const settings = Object.assign({ headers: {} }, options || {});
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) settings.headers.Authorization = "Bearer " + token;
    const response = await fetch(path, settings);
    if (response.status === 401) {
      askToken("The token was refused; enter the service's API token.");
      throw new AuthError("token refused");
    }
    let body = null;
    const type = response.headers.get("content-type") || "";
    if (type.includes("application/json")) body = await response.json();
    if (!response.ok) {
      const reason = body && body.error ? body.error : response.status + " " + response.statusText;
      throw new Error(reason);
    }
    return body;
  }

  // -- token --------------------------------------------------------------------------------------

  function askToken(message) {
    const dialog = $("token-dialog");
    showMessage("token-message", message || "", Boolean(message));
    if (!dialog.open) dialog.showModal();
    $("token-input").focus();
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    $("token-dialog").close();
    refresh();
  });

  $("change-token").addEventListener("click", () => askToken(""));

  // -- summary ------------------------------------------------------------------------------------

  async function loadSummary() {
    const summary = await api("/v1/alerts/summary");
    const counts = $("counts");
    counts.replaceChildren();
    counts.append(countItem("alerts", summary.total));
    for (const [status, count] of Object.entries(summary.by_status)) {
      counts.append(countItem(VERDICT_TEXT[status] || status, count));
    }
    const select = $("filter-class");
    const chosen = select.value;
    const names = Object.keys(summary.by_class).sort();
    select.replaceChildren(element("option", "any"));
    select.firstChild.value = "";
    for (const name of names) {
      const option = element("option", name + " (" + summary.by_class[name] + ")");
      option.value = name;
      select.append(option);
    }
    select.value = names.includes(chosen) ? chosen : "";
    const options = $("class-options");
    options.replaceChildren(...names.map((name) => Object.assign(element("option"), { value: name })));
  }

  function countItem(label, count) {
    const item = element("li");
    item.append(element("b", count), document.createTextNode(" " + label));
    return item;
  }

  async function loadModel() {
    const health = await fetch("/health").then((r) => r.json());
    state.authRequired = Boolean(health.auth_required);
    $("model").textContent = "model: " + (health.model_version || "-");
    $("change-token").hidden = !state.authRequired;
    return health;
  }

  // -- the list -----------------------------------------------------------------------------------

  function filterQuery() {
    const query = new URLSearchParams();
    const status = $("filter-status").value;
    const kind = $("filter-class").value;
    const minimum = $("filter-min-score").value.trim();
    if (status) query.set("status", status);
    if (kind) query.set("class", kind);
    if (minimum !== "" && Number.isFinite(Number(minimum))) query.set("min_score", minimum);
    return query;
  }

  async function loadAlerts() {
    const query = filterQuery();
    query.set("order", $("filter-order").value);
    query.set("limit", String(PAGE_SIZE));
    query.set("offset", String(state.offset));
    const page = await api("/v1/alerts?" + query.toString());
    state.total = page.total;
    const rows = $("alert-rows");
    rows.replaceChildren();
    for (const alert of page.items) rows.append(alertRow(alert));
    const last = Math.min(state.offset + page.items.length, page.total);
    $("page").textContent = page.total ? state.offset + 1 + "-" + last + " of " + page.total : "no alerts";
    $("prev").disabled = state.offset === 0;
    $("next").disabled = last >= page.total;
    showMessage("list-message", page.total ? "" : "No alert matches these filters.");
  }

  function alertRow(alert) {
    const row = element("tr");
    row.dataset.id = String(alert.id);
    row.dataset.testid = "alert-row";
    row.setAttribute("data-testid", "alert-row");
    if (alert.id === state.selected) row.classList.add("selected");
    const where = (address, port) => (address || "-") + (port !== null && port !== undefined ? ":" + port : "");
    row.append(
      element("td", alert.id),
      element("td", formatTime(alert.time)),
      element("td", where(alert.src, alert.spt)),
      element("td", where(alert.dst, alert.dpt)),
      element("td", (alert.proto || "-") + " / " + (alert.app || "-")),
      element("td", formatScore(alert.score)),
      element("td", alertClass(alert)),
    );
    const status = element("td");
    status.append(element("span", VERDICT_TEXT[alert.status] || alert.status, "badge " + alert.status));
    row.append(status);
    row.addEventListener("click", () => openAlert(alert.id));
    return row;
  }

  async function loadTimeline() {
    const query = filterQuery();
    query.set("order", "time_desc");
    query.set("limit", String(TIMELINE_SIZE));
    const page = await api("/v1/alerts?" + query.toString());
    drawTimeline(page.items.filter((alert) => alert.time));
  }

  function drawTimeline(alerts) {
    const svg = $("timeline");
    svg.replaceChildren();
    const width = 800;
    const height = 170;
    const left = 48;
    const bottom = 20;
    const top = 8;
    svg.append(svgElement("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }));
    svg.append(svgElement("line", { x1: left, y1: top, x2: left, y2: height - bottom, class: "axis" }));
    if (!alerts.length) {
      const empty = svgElement("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "label" });
      empty.textContent = "no alerts with a time";
      svg.append(empty);
      return;
    }
    const times = alerts.map((alert) => Date.parse(alert.time));
    const positive = alerts.every((alert) => alert.score > 0 && alert.threshold > 0);
    const scale = positive ? Math.log10 : (value) => value;
    const values = alerts.flatMap((alert) => [scale(alert.score), scale(alert.threshold)]);
    let low = Math.min(...values);
    let high = Math.max(...values);
    if (high - low < 1e-9) { low -= 1; high += 1; }
    let first = Math.min(...times);
    let last = Math.max(...times);
    if (last - first < 1) { first -= 1000; last += 1000; }
    const x = (time) => left + ((time - first) / (last - first)) * (width - left - 6);
    const y = (value) => height - bottom - ((value - low) / (high - low)) * (height - bottom - top);
    const thresholds = [...new Set(alerts.map((alert) => alert.threshold))].slice(0, 5);
    for (const threshold of thresholds) {
      const level = y(scale(threshold));
      svg.append(svgElement("line", { x1: left, y1: level, x2: width, y2: level, class: "threshold" }));
    }
    for (const [text, value] of [[high, high], [low, low]]) {
      const label = svgElement("text", { x: 2, y: y(value) + 4, class: "label" });
      label.textContent = formatScore(positive ? 10 ** text : text);
      svg.append(label);
    }
    for (const [text, time] of [[formatTime(new Date(first).toISOString()), first], [formatTime(new Date(last).toISOString()), last]]) {
      const anchor = time === first ? "start" : "end";
      const label = svgElement("text", { x: x(time), y: height - 4, "text-anchor": anchor, class: "label" });
      label.textContent = text.slice(0, 19);
      svg.append(label);
    }
    alerts.forEach((alert, index) => {
      const dot = svgElement("circle", {
        cx: x(times[index]).toFixed(1),
        cy: y(scale(alert.score)).toFixed(1),
        r: 3,
        class: alert.status,
        "data-id": alert.id,
      });
      const title = svgElement("title");
      title.textContent = "#" + alert.id + " " + formatTime(alert.time) + " score " + formatScore(alert.score);
      dot.append(title);
      dot.addEventListener("click", () => openAlert(alert.id));
      svg.append(dot);
    });
  }

  // -- one alert ----------------------------------------------------------------------------------

  async function openAlert(id) {
    let alert;
    try {
      alert = await api("/v1/alerts/" + encodeURIComponent(id));
    } catch (error) {
      if (!(error instanceof AuthError)) showMessage("list-message", error.message, true);
      return;
    }
    state.selected = alert.id;
    for (const row of document.querySelectorAll("#alert-rows tr")) {
      row.classList.toggle("selected", row.dataset.id === String(alert.id));
    }
    renderDetail(alert);
    $("detail-pane").hidden = false;
    loadSameSource(alert).catch((error) => {
      if (!(error instanceof AuthError)) showMessage("feedback-message", error.message, true);
    });
  }

  function renderDetail(alert) {
    $("detail-pane").dataset.alertId = String(alert.id);
    $("detail-title").textContent = "Alert #" + alert.id;
    const status = $("detail-status");
    status.replaceChildren(
      element("span", VERDICT_TEXT[alert.status] || alert.status, "badge " + alert.status),
      document.createTextNode(" " + alertClass(alert) + " - model " + alert.model_version + " - stored " + formatTime(alert.created)),
    );
    status.setAttribute("data-testid", "detail-status");
    status.dataset.status = alert.status;

    const ratio = alert.threshold > 0 ? alert.score / alert.threshold : null;
    const span = Math.max(alert.score, alert.threshold) * 1.1 || 1;
    $("gauge-fill").style.width = Math.max(0, Math.min(100, (alert.score / span) * 100)) + "%";
    $("gauge-threshold").style.left = Math.max(0, Math.min(100, (alert.threshold / span) * 100)) + "%";
    $("gauge-text").textContent =
      "score " + formatScore(alert.score) + " / threshold " + formatScore(alert.threshold) +
      (ratio !== null ? " (" + ratio.toFixed(2) + "x)" : "");

    const fields = $("flow-fields");
    fields.replaceChildren();
    for (const [name, value] of Object.entries(alert.flow)) {
      const row = element("tr");
      row.append(element("td", name), element("td", value === null ? "-" : value));
      fields.append(row);
    }

    const features = $("features");
    features.replaceChildren();
    const top = alert.top_features || [];
    const largest = Math.max(1e-12, ...top.map((item) => Math.abs(item.contribution || 0)));
    for (const item of top) {
      const box = element("div", null, "feature");
      box.setAttribute("data-testid", "feature-bar");
      const name = element("span", item.feature, "name");
      name.title = item.feature || "";
      const track = element("div", null, "track");
      const fill = element("div", null, "fill");
      fill.style.width = ((Math.abs(item.contribution || 0) / largest) * 100).toFixed(1) + "%";
      fill.title = "contribution " + formatScore(item.contribution);
      track.append(fill);
      box.append(name, track, element("span", "value " + (item.value ?? "-") + ", contribution " + formatScore(item.contribution), "value"));
      features.append(box);
    }
    if (!top.length) features.append(element("p", "no explanation stored", "message"));

    const history = $("history");
    history.replaceChildren();
    for (const item of alert.feedback || []) {
      const text = formatTime(item.created) + " " + item.analyst + ": " + (VERDICT_TEXT[item.verdict] || item.verdict) +
        (item.attack_class ? " (" + item.attack_class + ")" : "") + (item.note ? " - " + item.note : "");
      history.append(element("li", text));
    }
    if (!(alert.feedback || []).length) history.append(element("li", "not reviewed yet"));

    const form = $("feedback");
    form.reset();
    $("analyst").value = localStorage.getItem(ANALYST_KEY) || "";
    $("attack-class").disabled = true;
    showMessage("feedback-message", "");
  }

  async function loadSameSource(alert) {
    const list = $("same-source");
    list.replaceChildren();
    $("same-source-title").textContent = "Other alerts of " + (alert.src || "this source");
    if (!alert.src) {
      list.append(element("li", "the flow has no source address"));
      return;
    }
    const query = new URLSearchParams({ src: alert.src, order: "time_desc", limit: "20" });
    const page = await api("/v1/alerts?" + query.toString());
    const others = page.items.filter((item) => item.id !== alert.id);
    for (const other of others) {
      const item = element(
        "li",
        "#" + other.id + " " + formatTime(other.time) + " to " + (other.dst || "-") + ":" + (other.dpt ?? "-") +
          " score " + formatScore(other.score) + " - " + (VERDICT_TEXT[other.status] || other.status),
      );
      item.addEventListener("click", () => openAlert(other.id));
      list.append(item);
    }
    if (!others.length) list.append(element("li", "none"));
    if (page.total - 1 > others.length) list.append(element("li", "and " + (page.total - 1 - others.length) + " more"));
  }

  $("feedback").addEventListener("change", (event) => {
    if (event.target.name === "verdict") {
      const confirmed = event.target.value === "confirmed";
      $("attack-class").disabled = !confirmed;
      if (!confirmed) $("attack-class").value = "";
    }
  });

  $("feedback").addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = $("detail-pane").dataset.alertId;
    const chosen = document.querySelector("#feedback input[name=verdict]:checked");
    if (!chosen) {
      showMessage("feedback-message", "Choose a verdict.", true);
      return;
    }
    const analyst = $("analyst").value.trim();
    if (!analyst) {
      showMessage("feedback-message", "Give the analyst's name.", true);
      return;
    }
    const body = { verdict: chosen.value, note: $("note").value, analyst: analyst };
    if (chosen.value === "confirmed") {
      const kind = $("attack-class").value.trim();
      if (!kind) {
        showMessage("feedback-message", "A confirmed attack needs its class.", true);
        return;
      }
      body.attack_class = kind;
    }
    localStorage.setItem(ANALYST_KEY, analyst);
    try {
      const answer = await api("/v1/alerts/" + encodeURIComponent(id) + "/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      renderDetail(answer.alert);
      showMessage("feedback-message", "Saved: " + (VERDICT_TEXT[answer.feedback.verdict] || answer.feedback.verdict) + ".");
      await Promise.all([loadSummary(), loadAlerts(), loadTimeline()]);
    } catch (error) {
      if (!(error instanceof AuthError)) showMessage("feedback-message", "Not saved: " + error.message, true);
    }
  });

  // -- filters and paging -------------------------------------------------------------------------

  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.offset = 0;
    reloadList();
  });
  for (const id of ["filter-status", "filter-class", "filter-order"]) {
    $(id).addEventListener("change", () => {
      state.offset = 0;
      reloadList();
    });
  }
  for (const button of document.querySelectorAll("button.sort")) {
    button.addEventListener("click", () => {
      const key = button.dataset.sort;
      const order = $("filter-order");
      order.value = order.value === key + "_desc" ? key + "_asc" : key + "_desc";
      state.offset = 0;
      reloadList();
    });
  }
  $("prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE_SIZE);
    loadAlerts().catch(listError);
  });
  $("next").addEventListener("click", () => {
    if (state.offset + PAGE_SIZE < state.total) state.offset += PAGE_SIZE;
    loadAlerts().catch(listError);
  });

  // -- flow-groups picture -----------------------------------------------------------------------

  async function loadGroups() {
    const panel = $("groups");
    if (!panel.open) return;
    const query = filterQuery();
    query.set("by", $("groups-by").value);
    const settings = { headers: {} };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) settings.headers.Authorization = "Bearer " + token;
    showMessage("groups-message", "drawing...");
    const response = await fetch("/v1/pictures/groups?" + query.toString(), settings);
    const picture = $("groups-picture");
    if (!response.ok) {
      let reason = response.status + " " + response.statusText;
      if ((response.headers.get("content-type") || "").includes("application/json")) {
        reason = (await response.json()).error || reason;
      }
      picture.hidden = true;
      showMessage("groups-message", reason, response.status !== 404);
      return;
    }
    const blob = await response.blob();
    const reader = new FileReader();
    reader.onload = () => {
      picture.src = reader.result;
      picture.hidden = false;
      picture.dataset.loaded = "true";
      showMessage("groups-message", "");
    };
    reader.readAsDataURL(blob);
  }

  $("groups").addEventListener("toggle", () => loadGroups().catch(listError));
  $("groups-by").addEventListener("change", () => loadGroups().catch(listError));

  function listError(error) {
    if (!(error instanceof AuthError)) showMessage("list-message", error.message, true);
  }

  function reloadList() {
    Promise.all([loadAlerts(), loadTimeline(), loadGroups()]).catch(listError);
  }

  async function refresh() {
    try {
      await loadModel();
      if (state.authRequired && !sessionStorage.getItem(TOKEN_KEY)) {
        askToken("");
        return;
      }
      await Promise.all([loadSummary(), loadAlerts(), loadTimeline()]);
      document.body.dataset.ready = "true";
    } catch (error) {
      listError(error);
    }
  }

  refresh();
})();
