// The triage page: incidents first (most severe on top), the single alerts beside them in their
// own tab. Talks only to this service's API, with the token the analyst gives.

import {
  $, TOKEN_KEY, api, askToken, element, isAuthError, showDetail, showMessage, verdictText, view,
} from "./core.js";
import { initAlerts, reloadAlerts } from "./alerts.js";
import { initIncidents, openIncidentId, reloadIncidents } from "./incidents.js";

const TABS = ["incidents", "alerts"];
const state = { authRequired: false };

// -- header: model and counts ---------------------------------------------------------------------

async function loadModel() {
  const health = await fetch("/health").then((r) => r.json());
  state.authRequired = Boolean(health.auth_required);
  $("model").textContent = "model: " + (health.model_version || "-");
  $("change-token").hidden = !state.authRequired;
}

function countItem(label, count) {
  const item = element("li");
  item.append(element("b", count), " " + label);
  return item;
}

async function loadSummary() {
  const [summary, incidents] = await Promise.all([
    api("/v1/alerts/summary"),
    api("/v1/incidents?limit=1"),
  ]);
  const counts = $("counts");
  counts.replaceChildren(countItem("incidents", incidents.total), countItem("alerts", summary.total));
  for (const [status, count] of Object.entries(summary.by_status)) {
    counts.append(countItem(verdictText(status), count));
  }
  const names = Object.keys(summary.by_class).sort();
  for (const id of ["filter-class", "inc-class"]) {
    const select = $(id);
    const chosen = select.value;
    const any = element("option", "any");
    any.value = "";
    select.replaceChildren(any);
    for (const name of names) {
      const option = element("option", name + " (" + summary.by_class[name] + ")");
      option.value = name;
      select.append(option);
    }
    select.value = names.includes(chosen) ? chosen : "";
  }
  $("class-options").replaceChildren(...names.map((name) => Object.assign(element("option"), { value: name })));
}

// -- drift and threshold --------------------------------------------------------------------------

function number(value) {
  return value === null || value === undefined ? "-" : Number(value).toPrecision(3);
}

async function loadDrift() {
  const found = await api("/v1/drift");
  const strip = $("drift");
  const threshold = found.threshold_method === "bundle"
    ? "threshold " + number(found.threshold)
    : "threshold " + number(found.threshold) + " (" + found.threshold_method + ", bundle "
      + number(found.bundle_threshold) + ")";
  const drift = found.drift;
  let text;
  if (!drift) {
    text = "drift: not measured";
  } else if (!drift.windows) {
    text = "drift: no window yet (" + drift.rows + " of " + drift.window_rows + " flows)";
  } else {
    text = "drift: " + drift.events + " event" + (drift.events === 1 ? "" : "s") + " in "
      + drift.windows + " window" + (drift.windows === 1 ? "" : "s");
    const moved = drift.most_moved.slice(0, 3).map((item) => item.label + " (PSI " + number(item.psi) + ")");
    if (drift.events && moved.length) text += "; moved most: " + moved.join(", ");
  }
  strip.textContent = threshold + " · " + text;
  strip.classList.toggle("drifting", Boolean(drift && drift.events));
}

// -- tabs -----------------------------------------------------------------------------------------

function showTab(tab) {
  view.tab = tab;
  for (const name of TABS) {
    const button = $("tab-" + name);
    button.setAttribute("aria-selected", String(name === tab));
    button.classList.toggle("active", name === tab);
    $(name + "-view").hidden = name !== tab;
  }
  // the alert pane belongs to the tab it was opened from
  let pane = view.pane[tab];
  if (pane === "detail-pane" && $("detail-pane").dataset.context !== tab) pane = null;
  if (pane === "incident-pane" && (tab !== "incidents" || !openIncidentId())) pane = null;
  showDetail(pane);
  if (location.hash !== "#" + tab) history.replaceState(null, "", "#" + tab);
  return tab === "alerts" ? reloadAlerts() : reloadIncidents();
}

// -- token and start ------------------------------------------------------------------------------

function reportError(error) {
  if (isAuthError(error)) return;
  showMessage(view.tab === "alerts" ? "list-message" : "incidents-message", error.message, true);
}

async function refresh() {
  try {
    await loadModel();
    if (state.authRequired && !sessionStorage.getItem(TOKEN_KEY)) {
      askToken("");
      return;
    }
    await Promise.all([loadSummary(), loadDrift(), showTab(view.tab)]);
    document.body.dataset.ready = "true";
  } catch (error) {
    reportError(error);
  }
}

function init() {
  initAlerts();
  initIncidents();
  for (const name of TABS) $("tab-" + name).addEventListener("click", () => showTab(name));
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
  // any verdict changes the counts in the header
  document.addEventListener("nadkit:labelled", () => loadSummary().catch(reportError));
  const asked = location.hash.slice(1);
  view.tab = TABS.includes(asked) ? asked : "incidents";
  refresh();
}

init();
