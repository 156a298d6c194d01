// The dashboard (/): the server renders one filtered, sorted page of stacks; this keeps it live.
// Updates to rows on the page are applied in place; anything that may change which stacks belong
// on the page (a new stack, a removal, a re-sort) asks the server for the page again, at most about
// once a second. Every (re)connection starts with a snapshot, after which the page is fetched
// afresh, so a client that missed updates while disconnected ends up equal to a fresh load.

import { LiveSocket, announce, debounce, h, setTime, tickRelativeTimes, timeOf } from "./live.js";

const body = document.getElementById("stack-rows");
const summary = document.getElementById("stack-count");
const pagination = document.getElementById("pagination");
const template = document.getElementById("tpl-stack-row");
const config = document.getElementById("dashboard-config").dataset;
const filters = JSON.parse(document.getElementById("dashboard-filters").textContent);
const sort = filters.sort || "id";
const STABLE_SORTS = new Set(["id", "-id", "machine"]); // fields that never change on a stack
const seen = new Map(); // stack id -> updatedAt (ms) of what the row shows
const ticked = new Set(); // stack ids ticked for a bulk action; kept across redraws of the page
const selectedCount = document.getElementById("bulk-selected");
const selectPage = document.getElementById("select-page");

function stackUrl(id) {
  return config.stackUrl.replace("STACK-ID", encodeURIComponent(id));
}

function progressOf(tasks) {
  const done = tasks.filter((t) => t.status === "SATISFIED").length;
  const failed = tasks.filter((t) => t.status === "ERROR").length;
  return { done, failed, total: tasks.length };
}

function condition(p) {
  if (p.failed) return "failed";
  return p.done < p.total ? "busy" : "stable";
}

function progressCell(p) {
  if (!p.total) return h("span", { class: "muted", text: "no tasks" });
  return h("span", { class: "progress-cell" },
    h("progress", { value: p.done, max: p.total, "aria-hidden": "true" }), " ",
    h("span", { class: "progress-text", text: `${p.done}/${p.total}` }),
    p.failed ? [" ", h("span", { class: "badge badge-error", text: `${p.failed} failed` })] : null);
}

function fillRow(row, stack) {
  const p = progressOf(stack.tasks);
  row.dataset.stackId = stack.id;
  row.dataset.updated = stack.updatedAt;
  const link = row.querySelector("th a");
  link.href = stackUrl(stack.id);
  link.textContent = stack.id;
  const machine = row.querySelector('[data-col="machine"]');
  machine.replaceChildren(stack.machine, " ", h("span", { class: "muted", text: `v${stack.machineVersion}` }));
  const badge = row.querySelector(".state-badge");
  badge.textContent = stack.state;
  badge.className = `state-badge condition-${condition(p)}`;
  row.querySelector('[data-col="tasks"]').replaceChildren(progressCell(p));
  setTime(row.querySelector("time[data-relative]"), stack.updatedAt);
  row.querySelector('[data-col="expires"]').replaceChildren(expiresCell(stack.expiresAt));
  const box = row.querySelector('input[name="stack"]');
  if (box) {
    box.value = stack.id;
    box.checked = ticked.has(stack.id);
    box.setAttribute("aria-label", `Tick ${stack.id}`);
  }
  seen.set(stack.id, timeOf(stack.updatedAt));
}

/** "in 3 days" (absolute time on hover), "expired", or nothing for a stack without a lifetime. */
function expiresCell(iso) {
  const at = timeOf(iso);
  if (at === null) return "";
  const seconds = Math.round((at - Date.now()) / 1000);
  const units = [["day", 86400], ["hour", 3600], ["minute", 60]];
  let text = "expired";
  if (seconds > 0) {
    const [unit, size] = units.find(([, n]) => seconds >= n) || ["minute", 60];
    const count = Math.max(1, Math.floor(seconds / size));
    text = `in ${count} ${unit}${count === 1 ? "" : "s"}`;
  }
  const title = new Date(at).toISOString().replace("T", " ").replace(/:\d\d\.\d+Z$/, " UTC");
  return h("time", { datetime: iso, title, text });
}

function newRow(stack) {
  const row = template.content.firstElementChild.cloneNode(true);
  fillRow(row, stack);
  return row;
}

function rowOf(id) {
  for (const row of body.rows) if (row.dataset.stackId === id) return row;
  return null;
}

function flash(row) {
  row.classList.add("flash");
  window.setTimeout(() => row.classList.remove("flash"), 60);
}

function matches(stack) {
  if (filters.status) return true; // the server knows which stacks a quick filter takes: ask it
  if (filters.q && !stack.id.toLowerCase().includes(filters.q.toLowerCase())) return false;
  if (filters.machine && stack.machine !== filters.machine) return false;
  return !(filters.state && stack.state !== filters.state);
}

function sortKey(stack) {
  return sort === "machine" ? [stack.machine, stack.id] : [stack.id];
}

function compare(a, b) {
  for (let i = 0; i < a.length; i += 1) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return 0;
}

/** Whether a stack not on the page could belong on it (by the page's sort order). */
function couldBelongHere(stack) {
  if (!STABLE_SORTS.has(sort)) return true;
  const rows = [...body.rows];
  if (rows.length < Number(config.pageSize)) return true; // the last page, or a short one
  const key = (row) => (sort === "machine"
    ? [row.querySelector('[data-col="machine"]').firstChild.textContent.trim(), row.dataset.stackId]
    : [row.dataset.stackId]);
  const [first, last] = [key(rows[0]), key(rows[rows.length - 1])];
  const mine = sortKey(stack);
  const direction = sort === "-id" ? -1 : 1;
  const afterFirst = Number(config.page) === 1 || direction * compare(mine, first) >= 0;
  return afterFirst && direction * compare(mine, last) <= 0;
}

function renderSummary(data) {
  const filtered = filters.q || filters.machine || filters.state || filters.status;
  summary.textContent = data.count
    ? `Showing ${data.start}–${data.end} of ${data.count} active stack${data.count === 1 ? "" : "s"}`
    : `No active stacks${filtered ? " match these filters" : ""}`;
  document.getElementById("empty-state")?.toggleAttribute("hidden", data.count > 0);
}

function renderPagination(data) {
  pagination.hidden = data.pages <= 1;
  const link = (page, text, rel) => {
    const params = new URLSearchParams(window.location.search);
    params.set("page", page);
    return h("a", { href: `?${params}`, rel, text });
  };
  pagination.replaceChildren(
    data.page > 1 ? link(data.page - 1, "← Previous", "prev") : "",
    h("span", { text: `Page ${data.page} of ${data.pages}` }),
    data.page < data.pages ? link(data.page + 1, "Next →", "next") : "",
  );
}

function renderCounts(counts) {
  for (const node of document.querySelectorAll("#quick-filters [data-count]")) {
    const value = counts[node.dataset.count];
    if (value !== undefined) node.textContent = String(value);
  }
}

function boxes() {
  return [...body.querySelectorAll('input[name="stack"]')];
}

/** The "ticked" count and the page's tick-all box follow the rows' boxes. */
function syncTicks() {
  if (selectedCount) selectedCount.textContent = String(ticked.size);
  if (selectPage) {
    const all = boxes();
    selectPage.checked = all.length > 0 && all.every((b) => b.checked);
    selectPage.indeterminate = !selectPage.checked && all.some((b) => b.checked);
  }
}

body.addEventListener("change", (event) => {
  const box = event.target.closest('input[name="stack"]');
  if (!box) return;
  if (box.checked) ticked.add(box.value); else ticked.delete(box.value);
  syncTicks();
});
selectPage?.addEventListener("change", () => {
  for (const box of boxes()) {
    box.checked = selectPage.checked;
    if (box.checked) ticked.add(box.value); else ticked.delete(box.value);
  }
  syncTicks();
});
// Ticked stacks that are no longer on the page still go with the form.
document.getElementById("bulk-form")?.addEventListener("submit", (event) => {
  const form = event.target;
  const shown = new Set(boxes().map((b) => b.value));
  for (const id of ticked) {
    if (!shown.has(id)) form.append(h("input", { type: "hidden", name: "stack", value: id }));
  }
});

let inFlight = false;
let again = false;

/** Ask the server for this page again (same filters, sort and page) and redraw the table. */
async function refresh() {
  if (inFlight) {
    again = true;
    return;
  }
  inFlight = true;
  try {
    const params = new URLSearchParams(window.location.search);
    params.set("format", "json");
    const response = await fetch(`${window.location.pathname}?${params}`, {
      headers: { Accept: "application/json" }, credentials: "same-origin",
    });
    if (!response.ok) return;
    const data = await response.json();
    seen.clear();
    body.replaceChildren(...data.stacks.map(newRow));
    config.page = String(data.page);
    renderSummary(data);
    renderPagination(data);
    renderCounts(data.counts || {});
    syncTicks();
    body.dispatchEvent(new CustomEvent("cloudseam:synced", { bubbles: true }));
  } catch {
    // The socket's reconnect brings a snapshot, which refreshes again.
  } finally {
    inFlight = false;
    if (again) {
      again = false;
      scheduleRefresh();
    }
  }
}

const scheduleRefresh = debounce(refresh, 700);
const scheduleCounts = debounce(refresh, 3000); // a change on the page may move the quick filters' counts

function updated(stack) {
  const row = rowOf(stack.id);
  if (row) {
    const known = seen.get(stack.id);
    const incoming = timeOf(stack.updatedAt);
    if (known !== undefined && incoming !== null && incoming < known) return; // an older message
    const before = row.querySelector(".state-badge").textContent;
    fillRow(row, stack);
    flash(row);
    if (before !== stack.state) announce(`${stack.id}: ${before} → ${stack.state}`);
    if (!matches(stack) || filters.status || !STABLE_SORTS.has(sort)) scheduleRefresh();
    else scheduleCounts();
    return;
  }
  if (matches(stack) && couldBelongHere(stack)) scheduleRefresh();
}

function removed(stack) {
  const row = rowOf(stack.id);
  if (row) {
    row.classList.add("leaving");
    announce(`${stack.id} was removed`);
    scheduleRefresh();
  } else if (matches(stack)) {
    scheduleRefresh(); // the count changed, and later pages shift
  }
}

function onMessage(message) {
  if (message.type === "snapshot") {
    // A fresh connection: the server's page is the truth; anything missed is in it.
    scheduleRefresh.now();
  } else if (message.type === "stack.updated") {
    updated(message.stack);
  } else if (message.type === "stack.removed") {
    removed(message.stack);
  }
}

for (const row of body.rows) seen.set(row.dataset.stackId, timeOf(row.dataset.updated));

// Every filter applies as soon as it changes (the search on Enter or leaving the field); the Apply
// button is only for browsers without scripts.
const form = document.getElementById("filters");
for (const field of form.querySelectorAll("select, input")) field.addEventListener("change", () => form.requestSubmit());
document.getElementById("filters-apply").hidden = true;
for (const box of boxes()) if (box.checked) ticked.add(box.value); // kept by the browser on "back"
syncTicks();

tickRelativeTimes();
new LiveSocket("/ws/stacks/", onMessage).start();
