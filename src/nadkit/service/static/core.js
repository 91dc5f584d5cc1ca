// What the triage page's parts share: DOM and number helpers, the API client with the bearer
// token, the token dialog and downloads. Text always goes in through textContent.

export const TOKEN_KEY = "nadkit-token";
export const ANALYST_KEY = "nadkit-analyst";
export const VERDICT_TEXT = {
  new: "new",
  confirmed: "confirmed attack",
  false_positive: "false positive",
  known_benign: "known benign",
};
export const SEVERITIES = ["critical", "high", "medium", "low"];

export const $ = (id) => document.getElementById(id);

export function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

export function badge(value, text) {
  return element("span", text ?? VERDICT_TEXT[value] ?? value, "badge " + value);
}

export function testId(node, id) {
  node.setAttribute("data-testid", id);
  return node;
}

export function formatScore(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "-";
  const magnitude = Math.abs(value);
  if (magnitude >= 1000 || (magnitude > 0 && magnitude < 0.001)) return value.toExponential(3);
  return value.toPrecision(4);
}

/** ISO 8601 as stored, without trailing zero fractions: 2020-12-04T10:00:00Z. */
export function formatTime(text) {
  return text ? String(text).replace(/\.0+Z$/, "Z") : "-";
}

export function formatCount(value) {
  return Number.isFinite(value) ? value.toLocaleString("en") : "-";
}

export function formatBytes(value) {
  if (!Number.isFinite(value)) return "-";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let size = value;
  let unit = 0;
  while (size >= 1000 && unit < units.length - 1) { size /= 1000; unit += 1; }
  return (unit ? size.toFixed(1) : String(size)) + " " + units[unit];
}

export function verdictText(status) {
  return VERDICT_TEXT[status] || status;
}

export function showMessage(id, text, isError) {
  const node = $(id);
  node.textContent = text || "";
  node.classList.toggle("error", Boolean(isError));
}

/** A datetime-local value (read as UTC) as ISO 8601 text, or "" when empty. */
export function utcValue(input) {
  const value = input.value.trim();
  if (!value) return "";
  return (value.length === 16 ? value + ":00" : value) + "Z";
}

export class AuthError extends Error {}

export function isAuthError(error) {
  return error instanceof AuthError;
}

function authorised(options) {
  const settings = Object.assign({}, options || {});
  settings.headers = Object.assign({}, settings.headers || {});
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) settings.headers.Authorization = "Bearer " + token;
  return settings;
}

async function failure(response) {
  let reason = response.status + " " + response.statusText;
  if ((response.headers.get("content-type") || "").includes("application/json")) {
    const body = await response.json().catch(() => null);
    if (body && body.error) reason = body.error;
  }
  return reason;
}

/** The raw response of an API call with the token; asks for the token again on 401. */
export async function fetchWithToken(path, options) {
  const response = await fetch(path, authorised(options));
  if (response.status === 401) {
    askToken("The token was refused; enter the service's API token.");
    throw new AuthError("token refused");
  }
  return response;
}

/** The JSON answer of an API call; throws with the service's error text when it fails. */
export async function api(path, options) {
  const response = await fetchWithToken(path, options);
  if (!response.ok) throw new Error(await failure(response));
  const type = response.headers.get("content-type") || "";
  return type.includes("application/json") ? response.json() : null;
}

export function postJson(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** Fetch an export with the token and hand it to the browser as a file download. */
export async function download(path, filename) {
  const response = await fetchWithToken(path);
  if (!response.ok) throw new Error(await failure(response));
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = element("a");
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return blob.size;
}

export function askToken(message) {
  const dialog = $("token-dialog");
  showMessage("token-message", message || "", Boolean(message));
  if (!dialog.open) dialog.showModal();
  $("token-input").focus();
}

/** The pager text and buttons for a page of `count` items from `offset` out of `total`. */
export function showPage(prefix, offset, count, total, nothing) {
  const last = Math.min(offset + count, total);
  $(prefix + "page").textContent = total ? offset + 1 + "-" + last + " of " + total : nothing;
  $(prefix + "prev").disabled = offset === 0;
  $(prefix + "next").disabled = last >= total;
}

/** Wire a verdict form: the attack class is asked for (and only for) a confirmed attack. */
export function verdictForm(form, classInput) {
  form.addEventListener("change", (event) => {
    if (event.target.type !== "radio") return;
    const confirmed = event.target.value === "confirmed";
    classInput.disabled = !confirmed;
    if (!confirmed) classInput.value = "";
  });
}

/** The feedback body of a verdict form, or a message saying what is missing. */
export function readVerdict(form, classInput, noteInput, analystInput) {
  const chosen = form.querySelector("input[type=radio]:checked");
  if (!chosen) return { problem: "Choose a verdict." };
  const analyst = analystInput.value.trim();
  if (!analyst) return { problem: "Give the analyst's name." };
  const body = { verdict: chosen.value, note: noteInput.value, analyst: analyst };
  if (chosen.value === "confirmed") {
    const kind = classInput.value.trim();
    if (!kind) return { problem: "A confirmed attack needs its class." };
    body.attack_class = kind;
  }
  localStorage.setItem(ANALYST_KEY, analyst);
  return { body };
}

export function resetVerdictForm(form, classInput, analystInput) {
  form.reset();
  analystInput.value = localStorage.getItem(ANALYST_KEY) || "";
  classInput.disabled = true;
}

// -- layout: one list and at most one detail pane beside (or below) it ------------------------------

export const view = { tab: "incidents", pane: { incidents: null, alerts: null } };

/** Show one detail pane ("incident-pane", "detail-pane") for the current tab, or none. */
export function showDetail(which) {
  for (const id of ["incident-pane", "detail-pane"]) $(id).hidden = id !== which;
  $("layout").classList.toggle("with-detail", Boolean(which));
  view.pane[view.tab] = which;
}

/** Bring a just opened pane into view when it sits below the list (narrow windows). */
export function revealDetail(which) {
  const pane = $(which);
  if (pane.getBoundingClientRect().top > window.innerHeight * 0.6) pane.scrollIntoView({ block: "start" });
}
