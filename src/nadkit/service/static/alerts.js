// The Alerts tab (filtered list, score timeline, flow-groups picture, exports) and the alert
// detail pane shared with the incidents: flow, score against threshold, explained features,
// verdict, history and the other alerts of the same source.

import {
  $, api, badge, download, element, fetchWithToken, formatScore, formatTime, isAuthError,
  postJson, readVerdict, resetVerdictForm, revealDetail, showDetail, showMessage, showPage, testId, verdictForm,
  verdictText, view,
} from "./core.js";

const PAGE_SIZE = 50;
const TIMELINE_SIZE = 500;
const SVG = "http://www.w3.org/2000/svg";
/** the query parameters each alert endpoint knows (others are refused with 422) */
const KNOWS = {
  list: ["status", "class", "min_score", "src", "dst", "port"],
  picture: ["status", "class", "min_score"],
  export: ["status", "class", "min_score", "src", "dst", "port"],
};

const state = { offset: 0, total: 0, selected: null, back: null };

function alertClass(alert) {
  return alert.confirmed_class || alert["class"] || "anomaly";
}

function where(address, port) {
  return (address || "-") + (port !== null && port !== undefined ? ":" + port : "");
}

function listError(error) {
  if (!isAuthError(error)) showMessage("list-message", error.message, true);
}

function svgElement(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  return node;
}

// -- the list -------------------------------------------------------------------------------------

function filterQuery(use) {
  const values = {
    status: $("filter-status").value,
    class: $("filter-class").value,
    min_score: $("filter-min-score").value.trim(),
    src: $("filter-src").value.trim(),
    dst: $("filter-dst").value.trim(),
    port: $("filter-port").value.trim(),
  };
  if (values.min_score !== "" && !Number.isFinite(Number(values.min_score))) values.min_score = "";
  const query = new URLSearchParams();
  for (const name of KNOWS[use]) if (values[name]) query.set(name, values[name]);
  return query;
}

async function loadAlerts() {
  const query = filterQuery("list");
  query.set("order", $("filter-order").value);
  query.set("limit", String(PAGE_SIZE));
  query.set("offset", String(state.offset));
  const page = await api("/v1/alerts?" + query.toString());
  state.total = page.total;
  $("alert-rows").replaceChildren(...page.items.map(alertRow));
  showPage("", state.offset, page.items.length, page.total, "no alerts");
  showMessage("list-message", page.total ? "" : "No alert matches these filters.");
}

function alertRow(alert) {
  const row = testId(element("tr"), "alert-row");
  row.dataset.id = String(alert.id);
  if (alert.id === state.selected) row.classList.add("selected");
  const status = element("td");
  if (alert.severity) status.append(badge(alert.severity), " ");
  status.append(badge(alert.status));
  row.append(
    element("td", alert.id),
    element("td", formatTime(alert.time)),
    element("td", where(alert.src, alert.spt)),
    element("td", where(alert.dst, alert.dpt)),
    element("td", (alert.proto || "-") + " / " + (alert.app || "-")),
    element("td", formatScore(alert.score)),
    element("td", alertClass(alert)),
    status,
  );
  row.addEventListener("click", () => openAlert(alert.id));
  return row;
}

async function loadTimeline() {
  const query = filterQuery("list");
  query.set("order", "time_desc");
  query.set("limit", String(TIMELINE_SIZE));
  const page = await api("/v1/alerts?" + query.toString());
  drawTimeline(page.items.filter((alert) => alert.time));
}

function drawTimeline(alerts) {
  const svg = $("timeline");
  svg.replaceChildren();
  const [width, height, left, bottom, top] = [800, 170, 48, 20, 8];
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
  for (const threshold of [...new Set(alerts.map((alert) => alert.threshold))].slice(0, 5)) {
    const level = y(scale(threshold));
    svg.append(svgElement("line", { x1: left, y1: level, x2: width, y2: level, class: "threshold" }));
  }
  for (const value of [high, low]) {
    const label = svgElement("text", { x: 2, y: y(value) + 4, class: "label" });
    label.textContent = formatScore(positive ? 10 ** value : value);
    svg.append(label);
  }
  for (const time of [first, last]) {
    const anchor = time === first ? "start" : "end";
    const label = svgElement("text", { x: x(time), y: height - 4, "text-anchor": anchor, class: "label" });
    label.textContent = new Date(time).toISOString().slice(0, 19) + "Z";
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

// -- one alert ------------------------------------------------------------------------------------

/** Open an alert in the detail pane; `back` ({label, action}) offers a way back (to its incident). */
export async function openAlert(id, back) {
  let alert;
  try {
    alert = await api("/v1/alerts/" + encodeURIComponent(id));
  } catch (error) {
    if (!isAuthError(error)) showMessage(back ? "incident-alerts-message" : "list-message", error.message, true);
    return;
  }
  state.selected = alert.id;
  state.back = back || null;
  for (const row of document.querySelectorAll("#alert-rows tr, #incident-alert-rows tr")) {
    row.classList.toggle("selected", row.dataset.id === String(alert.id));
  }
  const backButton = $("alert-back");
  backButton.hidden = !back;
  backButton.textContent = back ? "\u2190 " + back.label : "";
  $("detail-pane").dataset.context = view.tab;
  renderDetail(alert);
  resetVerdictForm($("feedback"), $("attack-class"), $("analyst"));
  showMessage("feedback-message", "");
  showDetail("detail-pane");
  revealDetail("detail-pane");
  loadSameSource(alert).catch((error) => {
    if (!isAuthError(error)) showMessage("feedback-message", error.message, true);
  });
}

function renderDetail(alert) {
  $("detail-pane").dataset.alertId = String(alert.id);
  $("detail-title").textContent = "Alert #" + alert.id;
  const status = $("detail-status");
  status.replaceChildren(badge(alert.status));
  if (alert.severity) status.append(" ", badge(alert.severity));
  status.append(
    " " + alertClass(alert) + " - model " + alert.model_version + " - stored " + formatTime(alert.created) +
      (alert.incident_id ? " - incident " + alert.incident_id : ""),
  );
  status.dataset.status = alert.status;

  const span = Math.max(alert.score, alert.threshold) * 1.1 || 1;
  $("gauge-fill").style.width = Math.max(0, Math.min(100, (alert.score / span) * 100)) + "%";
  $("gauge-threshold").style.left = Math.max(0, Math.min(100, (alert.threshold / span) * 100)) + "%";
  const multiple = Number.isFinite(alert.threshold_multiple)
    ? alert.threshold_multiple
    : alert.threshold > 0 ? alert.score / alert.threshold : null;
  let text = "score " + formatScore(alert.score) + " / threshold " + formatScore(alert.threshold);
  if (multiple !== null) text += " (" + multiple.toFixed(2) + "x)";
  if (Number.isFinite(alert.score_percentile)) text += ", percentile " + formatScore(alert.score_percentile);
  $("gauge-text").textContent = text;
  renderExplanation(alert.explanation);

  const fields = $("flow-fields");
  fields.replaceChildren();
  for (const [name, value] of Object.entries(alert.flow || {})) {
    const row = element("tr");
    row.append(element("td", name), element("td", value === null ? "-" : value));
    fields.append(row);
  }
  renderFeatures(alert.top_features || []);

  const history = $("history");
  history.replaceChildren();
  for (const item of alert.feedback || []) {
    const line = formatTime(item.created) + " " + item.analyst + ": " + verdictText(item.verdict) +
      (item.attack_class ? " (" + item.attack_class + ")" : "") + (item.note ? " - " + item.note : "");
    history.append(element("li", line));
  }
  if (!(alert.feedback || []).length) history.append(element("li", "not reviewed yet"));
}

function renderExplanation(explanation) {
  const box = $("explanation");
  box.replaceChildren();
  box.hidden = explanation === undefined || explanation === null || explanation === "";
  if (box.hidden) return;
  if (typeof explanation === "string") {
    box.append(element("p", explanation));
  } else if (Array.isArray(explanation)) {
    const list = element("ul");
    for (const item of explanation) list.append(element("li", typeof item === "string" ? item : JSON.stringify(item)));
    box.append(list);
  } else if (typeof explanation === "object") {
    const list = element("ul");
    for (const [name, value] of Object.entries(explanation)) {
      list.append(element("li", name + ": " + (typeof value === "string" ? value : JSON.stringify(value))));
    }
    box.append(list);
  }
}

function renderFeatures(top) {
  const features = $("features");
  features.replaceChildren();
  const largest = Math.max(1e-12, ...top.map((item) => Math.abs(item.contribution || 0)));
  for (const item of top) {
    const box = testId(element("div", null, "feature"), "feature-bar");
    const name = element("span", item.label || item.feature, "name");
    name.title = item.label && item.feature ? item.label + " (" + item.feature + ")" : item.feature || "";
    const track = element("div", null, "track");
    const fill = element("div", null, "fill");
    fill.style.width = ((Math.abs(item.contribution || 0) / largest) * 100).toFixed(1) + "%";
    fill.title = "contribution " + formatScore(item.contribution);
    track.append(fill);
    let text = "value " + (item.value ?? "-");
    if (item.normal !== undefined && item.normal !== null) {
      text += " (normal " + (typeof item.normal === "object" ? JSON.stringify(item.normal) : item.normal) + ")";
    }
    text += ", contribution " + formatScore(item.contribution);
    if (Number.isFinite(item.share)) text += " (" + item.share.toFixed(0) + "% of the score)";
    box.append(name, track, element("span", text, "value"));
    features.append(box);
  }
  if (!top.length) features.append(element("p", "no explanation stored", "message"));
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
      "#" + other.id + " " + formatTime(other.time) + " to " + where(other.dst, other.dpt) +
        " score " + formatScore(other.score) + " - " + verdictText(other.status),
    );
    item.addEventListener("click", () => openAlert(other.id, state.back));
    list.append(item);
  }
  if (!others.length) list.append(element("li", "none"));
  if (page.total - 1 > others.length) list.append(element("li", "and " + (page.total - 1 - others.length) + " more"));
}

async function submitFeedback(event) {
  event.preventDefault();
  const id = $("detail-pane").dataset.alertId;
  const { body, problem } = readVerdict($("feedback"), $("attack-class"), $("note"), $("analyst"));
  if (problem) {
    showMessage("feedback-message", problem, true);
    return;
  }
  try {
    const answer = await postJson("/v1/alerts/" + encodeURIComponent(id) + "/feedback", body);
    renderDetail(answer.alert);
    resetVerdictForm($("feedback"), $("attack-class"), $("analyst"));
    showMessage("feedback-message", "Saved: " + verdictText(answer.feedback.verdict) + ".");
    document.dispatchEvent(new CustomEvent("nadkit:labelled", { detail: { alert: answer.alert } }));
  } catch (error) {
    if (!isAuthError(error)) showMessage("feedback-message", "Not saved: " + error.message, true);
  }
}

// -- flow-groups picture --------------------------------------------------------------------------

async function loadGroups() {
  if (!$("groups").open) return;
  const query = filterQuery("picture");
  query.set("by", $("groups-by").value);
  showMessage("groups-message", "drawing...");
  const response = await fetchWithToken("/v1/pictures/groups?" + query.toString());
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

// -- exports --------------------------------------------------------------------------------------

async function exportAlerts(format) {
  const query = filterQuery("export");
  query.set("format", format);
  try {
    const size = await download("/v1/alerts/export?" + query.toString(), "alerts." + format);
    showMessage("alerts-export-message", "Exported " + size.toLocaleString("en") + " bytes.");
  } catch (error) {
    if (!isAuthError(error)) showMessage("alerts-export-message", "Export failed: " + error.message, true);
  }
}

// -- the tab --------------------------------------------------------------------------------------

/** Reload the list, the timeline and (when open) the picture. */
export function reloadAlerts() {
  return Promise.all([loadAlerts(), loadTimeline(), loadGroups()]).catch(listError);
}

export function initAlerts() {
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.offset = 0;
    reloadAlerts();
  });
  for (const id of ["filter-status", "filter-class", "filter-order"]) {
    $(id).addEventListener("change", () => {
      state.offset = 0;
      reloadAlerts();
    });
  }
  for (const button of document.querySelectorAll("button.sort")) {
    button.addEventListener("click", () => {
      const key = button.dataset.sort;
      const order = $("filter-order");
      order.value = order.value === key + "_desc" ? key + "_asc" : key + "_desc";
      state.offset = 0;
      reloadAlerts();
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
  $("groups").addEventListener("toggle", () => loadGroups().catch(listError));
  $("groups-by").addEventListener("change", () => loadGroups().catch(listError));
  $("export-alerts-csv").addEventListener("click", () => exportAlerts("csv"));
  $("export-alerts-json").addEventListener("click", () => exportAlerts("json"));

  verdictForm($("feedback"), $("attack-class"));
  $("feedback").addEventListener("submit", submitFeedback);
  $("alert-back").addEventListener("click", () => state.back && state.back.action());
  $("close-alert").addEventListener("click", () => showDetail(null));
  // an alert's verdict changes the lists it shows in
  document.addEventListener("nadkit:labelled", () => {
    if (view.tab === "alerts") reloadAlerts();
  });
}
