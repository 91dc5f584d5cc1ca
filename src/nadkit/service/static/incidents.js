// The Incidents tab: incidents most severe first (as the service ranks them), their filters and
// exports, and the incident pane: its summary, its alerts page by page, one verdict for all of them.

import {
  $, api, badge, download, element, formatBytes, formatCount, formatScore, formatTime, isAuthError,
  postJson, readVerdict, resetVerdictForm, revealDetail, showDetail, showMessage, showPage, testId, utcValue,
  verdictForm, verdictText,
} from "./core.js";
import { openAlert } from "./alerts.js";

const PAGE_SIZE = 50;
const ALERT_PAGE = 20;
const TOP_SHOWN = 3;
const COUNTED = [
  ["sources", "sources"],
  ["destinations", "destinations"],
  ["ports", "ports"],
  ["protocols", "protocols"],
];
/** summary entries shown elsewhere in the pane (the rest are listed as they come) */
const SHOWN = new Set([
  "incident_id", "kind", "key", "severity", "first_seen", "last_seen", "alerts", "classes", "bytes",
  "peak_score", "mean_score", "peak_ratio", "top_feature", "top_feature_count",
  "top_feature_label", ...COUNTED.flatMap(([name]) => [name, "top_" + name]),
]);

const state = { offset: 0, total: 0, incident: null, alertOffset: 0, alertTotal: 0 };

function listError(error) {
  if (!isAuthError(error)) showMessage("incidents-message", error.message, true);
}

function paneError(error) {
  if (!isAuthError(error)) showMessage("incident-alerts-message", error.message, true);
}

/** "value (count), ..." of a summary's top values. */
function topText(top, limit) {
  return (top || []).slice(0, limit).map((entry) => entry.value + " (" + entry.count + ")").join(", ");
}

// -- the list -------------------------------------------------------------------------------------

function filterQuery() {
  const query = new URLSearchParams();
  for (const [name, id] of [["src", "inc-src"], ["dst", "inc-dst"], ["port", "inc-port"]]) {
    const value = $(id).value.trim();
    if (value) query.set(name, value);
  }
  const since = utcValue($("inc-since"));
  const until = utcValue($("inc-until"));
  if (since) query.set("since", since);
  if (until) query.set("until", until);
  for (const [name, id] of [["status", "inc-status"], ["kind", "inc-kind"], ["class", "inc-class"]]) {
    if ($(id).value) query.set(name, $(id).value);
  }
  for (const severity of $("inc-severity").value.split(",").filter(Boolean)) query.append("severity", severity);
  return query;
}

async function loadIncidents() {
  const query = filterQuery();
  query.set("limit", String(PAGE_SIZE));
  query.set("offset", String(state.offset));
  const page = await api("/v1/incidents?" + query.toString());
  state.total = page.total;
  $("incident-rows").replaceChildren(...page.items.map(incidentRow));
  showPage("incidents-", state.offset, page.items.length, page.total, "no incidents");
  showMessage("incidents-message", page.total ? "" : "No incident matches these filters.");
}

function countCell(count, top) {
  const cell = element("td", null, "counted");
  cell.append(element("b", formatCount(count)));
  const text = topText(top, TOP_SHOWN);
  if (text) {
    const values = element("span", text + ((top || []).length > TOP_SHOWN ? ", ..." : ""), "top");
    values.title = topText(top, 50);
    cell.append(" ", values);
  }
  return cell;
}

function incidentRow(incident) {
  const summary = incident.summary || {};
  const row = testId(element("tr"), "incident-row");
  row.dataset.id = incident.id;
  row.dataset.severity = incident.severity;
  if (state.incident && state.incident.id === incident.id) row.classList.add("selected");
  const severity = element("td");
  severity.append(badge(incident.severity));
  const status = element("td");
  status.append(badge(incident.status));
  const key = element("td", incident.key, "key");
  key.title = incident.key;
  const feature = element("td", summary.top_feature_label || summary.top_feature || "-", "feature-name");
  feature.title = summary.top_feature || "";
  row.append(
    severity,
    element("td", incident.kind),
    key,
    element("td", formatCount(incident.alerts), "number"),
    countCell(summary.sources, summary.top_sources),
    countCell(summary.destinations, summary.top_destinations),
    element("td", formatTime(incident.first_seen)),
    element("td", formatTime(incident.last_seen)),
    status,
    element("td", incidentClasses(incident)),
    feature,
  );
  row.addEventListener("click", () => openIncident(incident.id));
  return row;
}

function incidentClasses(incident) {
  const classes = [...(incident.classes || [])];
  if (incident.attack_class && !classes.includes(incident.attack_class)) classes.unshift(incident.attack_class);
  return classes.join(", ") || "-";
}

// -- one incident ---------------------------------------------------------------------------------

export async function openIncident(id) {
  let incident;
  try {
    incident = await api("/v1/incidents/" + encodeURIComponent(id) + "?alerts=0");
  } catch (error) {
    listError(error);
    return;
  }
  const other = !state.incident || state.incident.id !== incident.id;
  state.incident = incident;
  if (other) {
    state.alertOffset = 0;
    resetVerdictForm($("incident-feedback"), $("incident-attack-class"), $("incident-analyst"));
    showMessage("incident-feedback-message", "");
    showMessage("incident-export-message", "");
  }
  for (const row of document.querySelectorAll("#incident-rows tr")) {
    row.classList.toggle("selected", row.dataset.id === incident.id);
  }
  renderIncident(incident);
  showDetail("incident-pane");
  if (other) revealDetail("incident-pane");
  await loadIncidentAlerts().catch(paneError);
}

function renderIncident(incident) {
  const pane = $("incident-pane");
  pane.dataset.incidentId = incident.id;
  $("incident-title").textContent = "Incident: " + incident.kind + " " + incident.key;
  $("incident-id").textContent = incident.id + " - model " + incident.model_version;
  const status = $("incident-status");
  status.replaceChildren(
    badge(incident.severity),
    " ",
    badge(incident.status),
    " " + formatCount(incident.alerts) + " alerts, " + formatTime(incident.first_seen) + " to " +
      formatTime(incident.last_seen),
  );
  status.dataset.status = incident.status;
  const review = $("incident-review");
  review.hidden = !incident.verdict;
  review.textContent = incident.verdict
    ? "Verdict: " + verdictText(incident.verdict) + (incident.attack_class ? " (" + incident.attack_class + ")" : "") +
      " by " + (incident.analyst || "-") + ", " + formatTime(incident.reviewed) + (incident.note ? ": " + incident.note : "")
    : "";
  $("incident-submit").textContent = "Apply to all " + formatCount(incident.alerts) + " alerts";
  renderSummary(incident);
}

function summaryRow(body, name, ...values) {
  const row = element("tr");
  const cell = element("td");
  cell.append(...values);
  row.append(element("td", name), cell);
  body.append(row);
}

function renderSummary(incident) {
  const summary = incident.summary || {};
  const body = $("incident-summary");
  body.replaceChildren();
  for (const [name, label] of COUNTED) {
    const top = summary["top_" + name] || [];
    const values = element("span", topText(top, 10), "top");
    summaryRow(body, label, element("b", formatCount(summary[name])), " ", values);
  }
  summaryRow(body, "bytes", formatBytes(summary.bytes));
  summaryRow(
    body,
    "scores",
    "peak " + formatScore(summary.peak_score ?? incident.peak_score) + ", mean " + formatScore(summary.mean_score) +
      (Number.isFinite(summary.peak_ratio) ? ", peak " + summary.peak_ratio.toFixed(2) + "x threshold" : ""),
  );
  summaryRow(body, "classes", incidentClasses(incident));
  summaryRow(
    body,
    "top feature",
    (summary.top_feature_label ? summary.top_feature_label + " (" + summary.top_feature + ")" : summary.top_feature || "-") +
      (Number.isFinite(summary.top_feature_count) ? " (heads " + summary.top_feature_count + " explanations)" : ""),
  );
  for (const [name, value] of Object.entries(summary)) {
    if (SHOWN.has(name) || value === null || value === undefined) continue;
    const text = Array.isArray(value) && value.every((entry) => entry && "value" in entry && "count" in entry)
      ? topText(value, 10)
      : typeof value === "object" ? JSON.stringify(value) : typeof value === "number" ? formatScore(value) : value;
    summaryRow(body, name.replace(/_/g, " "), String(text));
  }
}

async function loadIncidentAlerts() {
  const incident = state.incident;
  if (!incident) return;
  const query = new URLSearchParams({
    incident: incident.id,
    order: "score_desc",
    limit: String(ALERT_PAGE),
    offset: String(state.alertOffset),
  });
  const page = await api("/v1/alerts?" + query.toString());
  if (!state.incident || state.incident.id !== incident.id) return;
  state.alertTotal = page.total;
  $("incident-alert-rows").replaceChildren(...page.items.map(incidentAlertRow));
  showPage("incident-alerts-", state.alertOffset, page.items.length, page.total, "no alerts");
  showMessage("incident-alerts-message", "");
}

function incidentAlertRow(alert) {
  const row = testId(element("tr"), "incident-alert-row");
  row.dataset.id = String(alert.id);
  row.dataset.status = alert.status;
  const status = element("td");
  if (alert.severity) status.append(badge(alert.severity), " ");
  status.append(badge(alert.status));
  const end = (address, port) => (address || "-") + (port !== null && port !== undefined ? ":" + port : "");
  row.append(
    element("td", alert.id),
    element("td", formatTime(alert.time)),
    element("td", end(alert.src, alert.spt)),
    element("td", end(alert.dst, alert.dpt)),
    element("td", formatScore(alert.score), "number"),
    status,
  );
  const incident = state.incident;
  row.addEventListener("click", () =>
    openAlert(alert.id, { label: "incident " + incident.kind + " " + incident.key, action: () => openIncident(incident.id) }),
  );
  return row;
}

async function submitVerdict(event) {
  event.preventDefault();
  const incident = state.incident;
  if (!incident) return;
  const form = $("incident-feedback");
  const { body, problem } = readVerdict(form, $("incident-attack-class"), $("incident-note"), $("incident-analyst"));
  if (problem) {
    showMessage("incident-feedback-message", problem, true);
    return;
  }
  try {
    const answer = await postJson("/v1/incidents/" + encodeURIComponent(incident.id) + "/feedback", body);
    state.incident = answer.incident;
    renderIncident(answer.incident);
    resetVerdictForm(form, $("incident-attack-class"), $("incident-analyst"));
    showMessage(
      "incident-feedback-message",
      "Saved: " + verdictText(answer.incident.verdict) + " for " + formatCount(answer.alerts) + " alerts.",
    );
    document.dispatchEvent(new CustomEvent("nadkit:labelled", { detail: { incident: answer.incident } }));
    await Promise.all([loadIncidentAlerts(), loadIncidents()]);
  } catch (error) {
    if (!isAuthError(error)) showMessage("incident-feedback-message", "Not saved: " + error.message, true);
  }
}

// -- exports --------------------------------------------------------------------------------------

async function exportFile(path, filename, messageId) {
  try {
    const size = await download(path, filename);
    showMessage(messageId, "Exported " + filename + " (" + formatBytes(size) + ").");
  } catch (error) {
    if (!isAuthError(error)) showMessage(messageId, "Export failed: " + error.message, true);
  }
}

function exportIncidents(format) {
  const query = filterQuery();
  query.set("format", format);
  return exportFile("/v1/incidents/export?" + query.toString(), "incidents." + format, "incidents-export-message");
}

function exportIncidentAlerts(format) {
  if (!state.incident) return undefined;
  const query = new URLSearchParams({ format: format, incident: state.incident.id });
  const name = state.incident.id + "-alerts." + format;
  return exportFile("/v1/alerts/export?" + query.toString(), name, "incident-export-message");
}

// -- the tab --------------------------------------------------------------------------------------

export function reloadIncidents() {
  return loadIncidents().catch(listError);
}

export function initIncidents() {
  $("incident-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.offset = 0;
    reloadIncidents();
  });
  $("incident-filters").addEventListener("reset", () => {
    setTimeout(() => {
      state.offset = 0;
      reloadIncidents();
    });
  });
  for (const id of ["inc-severity", "inc-status", "inc-kind", "inc-class"]) {
    $(id).addEventListener("change", () => {
      state.offset = 0;
      reloadIncidents();
    });
  }
  $("incidents-prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE_SIZE);
    reloadIncidents();
  });
  $("incidents-next").addEventListener("click", () => {
    if (state.offset + PAGE_SIZE < state.total) state.offset += PAGE_SIZE;
    reloadIncidents();
  });
  $("incident-alerts-prev").addEventListener("click", () => {
    state.alertOffset = Math.max(0, state.alertOffset - ALERT_PAGE);
    loadIncidentAlerts().catch(paneError);
  });
  $("incident-alerts-next").addEventListener("click", () => {
    if (state.alertOffset + ALERT_PAGE < state.alertTotal) state.alertOffset += ALERT_PAGE;
    loadIncidentAlerts().catch(paneError);
  });
  $("export-incidents-csv").addEventListener("click", () => exportIncidents("csv"));
  $("export-incidents-json").addEventListener("click", () => exportIncidents("json"));
  $("export-incident-alerts-csv").addEventListener("click", () => exportIncidentAlerts("csv"));
  $("export-incident-alerts-json").addEventListener("click", () => exportIncidentAlerts("json"));
  verdictForm($("incident-feedback"), $("incident-attack-class"));
  $("incident-feedback").addEventListener("submit", submitVerdict);
  $("close-incident").addEventListener("click", () => showDetail(null));
  // a verdict on one of the open incident's alerts shows in its list
  document.addEventListener("nadkit:labelled", (event) => {
    const alert = event.detail && event.detail.alert;
    if (alert && state.incident && alert.incident_id === state.incident.id) loadIncidentAlerts().catch(paneError);
  });
}

export function openIncidentId() {
  return state.incident ? state.incident.id : null;
}
