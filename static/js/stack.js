// A stack's page (/stacks/<id>/): state, diagram highlight, tasks with live output, metadata,
// history and the action buttons follow the stack over /ws/stacks/<id>/ without a reload.
// Each (re)connection starts with a snapshot, which replaces what the page shows; later messages
// carry whole stack snapshots, so applying them in order (skipping older ones) stays correct.
// Action forms are sent with fetch; they are ordinary POST forms that also work without scripts.

import { LiveSocket, announce, h, setTime, submitForm, tickRelativeTimes, timeOf } from "./live.js";
import { ensureDiagram, highlightState, showTaskStatuses, wireZoom } from "./diagram.js";
import { display, formatValue, metaRow, typeName, wireMetadataRows } from "./metadata.js";

const data = JSON.parse(document.getElementById("stack-data").textContent);
const $ = (id) => document.getElementById(id);
const MAX_OUTPUT_LINES = 500;
const MARKS = { PENDING: "○", SATISFIED: "✔", ERROR: "✖" };

let current = data.stack;
let svg = null;
const pendingOutput = new Map(); // task id -> lines that arrived before the task's row

// --- small pieces ---------------------------------------------------------------------------------

function condition(tasks) {
  if (tasks.some((t) => t.status === "ERROR")) return "failed";
  return tasks.some((t) => t.status !== "SATISFIED") ? "busy" : "stable";
}

function durationText(task) {
  const started = timeOf(task.startedAt);
  const finished = timeOf(task.finishedAt);
  if (started !== null && finished !== null) return `${((finished - started) / 1000).toFixed(1)} s`;
  if (started !== null && task.status === "PENDING") {
    return `running ${Math.max(0, Math.round((Date.now() - started) / 1000))} s`;
  }
  return "—";
}

function showResult(result) {
  const box = $("action-result");
  const text = result.ok ? result.message || "Done" : result.error || "The action failed.";
  const alert = h("p", { class: `alert ${result.ok ? "alert-success" : "alert-error"}`, role: result.ok ? "status" : "alert", text });
  box.replaceChildren(alert);
  if (result.ok) {
    window.setTimeout(() => { if (alert.isConnected) alert.remove(); }, 6000);
  }
}

// --- the header and the actions --------------------------------------------------------------------

function eventForm(choice) {
  const template = $(choice.terminal ? "tpl-event-terminal" : "tpl-event");
  const root = template.content.firstElementChild.cloneNode(true);
  root.dataset.event = choice.name;
  for (const input of root.querySelectorAll("input[name=event]")) input.value = choice.name;
  for (const slot of root.querySelectorAll("[data-slot=event]")) slot.textContent = choice.name;
  for (const slot of root.querySelectorAll("[data-slot=target]")) slot.textContent = choice.target || "";
  if (!choice.target) for (const span of root.querySelectorAll(".event-target")) span.remove();
  return root;
}

function renderActions(stack) {
  const box = $("event-actions");
  if (!box) return;
  const retryFailed = $("retry-failed");
  const retryPending = $("retry-pending");
  retryFailed.hidden = !stack.tasks.some((t) => t.status === "ERROR");
  // Pending tasks that are running (or waiting for a person) need no second dispatch.
  retryPending.hidden = !stack.tasks.some((t) => t.status === "PENDING" && !t.startedAt);
  if (box.dataset.state === stack.state) return;
  box.dataset.state = stack.state;
  const hadFocus = box.contains(document.activeElement);
  const choices = data.events[stack.state] || [];
  box.replaceChildren(...choices.map(eventForm));
  $("no-events").hidden = choices.length > 0;
  if (hadFocus) (box.querySelector("button, summary") || $("stack-state")).focus();
}

// --- tasks --------------------------------------------------------------------------------------------

function taskBody(task) {
  const pre = h("pre", { class: "output", tabindex: "0", dataset: { outputFor: task.id } });
  const details = h("details", { class: "output-details" }, h("summary", { text: "Output" }), pre);
  return h("tbody", { class: "task", dataset: { taskId: task.id } },
    h("tr", {},
      h("th", { scope: "row" }, h("span", { class: "task-name" }), " ", h("span", { class: "muted executor" })),
      h("td", {}, h("span", { class: "task-status" }), " ", h("span", { class: "task-phase", "data-col": "phase" }), " ", h("span", { class: "task-overdue", hidden: true, text: "overdue" })),
      h("td", { class: "num", "data-col": "attempts" }),
      h("td", { "data-col": "duration" }),
      h("td", { class: "task-error", "data-col": "error" })),
    h("tr", { class: "task-more" }, h("td", { colspan: "5" }, details)));
}

function taskActions(body, task) {
  const template = $("tpl-task-actions");
  const wanted = template && !current.removed && task.executor === "external" && task.status !== "SATISFIED";
  const existing = body.querySelector("[data-task-actions]");
  if (!wanted) {
    existing?.remove();
    return;
  }
  if (existing) return;
  const actions = template.content.firstElementChild.cloneNode(true);
  for (const input of actions.querySelectorAll("input[name=task]")) input.value = task.name;
  const instructions = (data.instructions || {})[task.name];
  if (instructions) actions.prepend(h("p", { class: "task-instructions" }, instructions));
  body.querySelector(".task-more td").append(actions);
}

function taskRetry(body, task) {
  const template = $("tpl-task-retry");
  const wanted = template && !current.removed && task.status === "ERROR";
  const existing = body.querySelector("[data-task-retry]");
  if (!wanted) {
    existing?.remove();
    return;
  }
  if (existing) return;
  const form = template.content.firstElementChild.cloneNode(true);
  for (const input of form.querySelectorAll("input[name=task]")) input.value = task.name;
  body.querySelector(".task-more td").append(form);
}

function phaseText(task) {
  const phase = task.phase || task.status.toLowerCase();
  if ((phase === "running" || phase === "retrying") && task.startedAt && !task.finishedAt) {
    return `${phase} ${Math.max(0, Math.round((Date.now() - timeOf(task.startedAt)) / 1000))} s`;
  }
  return phase;
}

function fillTask(body, task) {
  body.querySelector(".task-name").textContent = task.name;
  body.querySelector(".executor").textContent = task.executor || "";
  const status = body.querySelector(".task-status");
  status.textContent = task.status;
  status.className = `task-status status-${task.status.toLowerCase()}`;
  const overdue = body.querySelector(".task-overdue");
  if (overdue) overdue.hidden = !task.overdue;
  const phase = body.querySelector('[data-col="phase"]');
  phase.textContent = phaseText(task);
  phase.className = `task-phase phase-${task.phase || ""}`;
  phase.dataset.phase = task.phase || "";
  phase.dataset.started = task.startedAt || "";
  phase.dataset.finished = task.finishedAt || "";
  body.querySelector('[data-col="attempts"]').textContent = task.attempts;
  const duration = body.querySelector('[data-col="duration"]');
  duration.dataset.started = task.startedAt || "";
  duration.dataset.finished = task.finishedAt || "";
  duration.dataset.status = task.status;
  duration.textContent = durationText(task);
  body.querySelector('[data-col="error"]').textContent = task.errorMessage || "";
  taskActions(body, task);
  taskRetry(body, task);
  const waiting = pendingOutput.get(task.id);
  if (waiting) {
    pendingOutput.delete(task.id);
    appendOutput(body.querySelector("pre.output"), waiting);
  }
}

function renderTasks(stack) {
  const table = $("tasks-table");
  const existing = new Map([...table.tBodies].map((body) => [body.dataset.taskId, body]));
  const bodies = stack.tasks.map((task) => {
    const body = existing.get(task.id) || taskBody(task);
    fillTask(body, task);
    existing.delete(task.id);
    return body;
  });
  for (const gone of existing.values()) gone.remove();
  const focused = document.activeElement;
  table.append(...bodies);
  if (focused && table.contains(focused) && document.activeElement !== focused) focused.focus();
  $("no-tasks").hidden = stack.tasks.length > 0;
  $("no-tasks").textContent = `The state ${stack.state} has no tasks.`;
  $("tasks-state").textContent = `of ${stack.state}`;
}

function appendOutput(pre, lines) {
  if (!pre || !lines.length) return;
  const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
  const all = (pre.textContent ? `${pre.textContent}\n${lines.join("\n")}` : lines.join("\n")).split("\n");
  pre.textContent = all.slice(-MAX_OUTPUT_LINES).join("\n");
  const details = pre.closest("details");
  if (details && !details.open && !details.dataset.userToggled) details.open = true;
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function onOutput(message) {
  const pre = document.querySelector(`pre[data-output-for="${CSS.escape(message.task)}"]`);
  if (pre) appendOutput(pre, message.lines);
  else pendingOutput.set(message.task, [...(pendingOutput.get(message.task) || []), ...message.lines]);
}

async function reloadOutputs() {
  try {
    const response = await fetch(data.outputUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) return;
    const { outputs } = await response.json();
    for (const [taskId, text] of Object.entries(outputs)) {
      const pre = document.querySelector(`pre[data-output-for="${CSS.escape(taskId)}"]`);
      if (pre && text && text.length >= pre.textContent.length) pre.textContent = text;
    }
  } catch {
    // Output lines keep streaming; the tail comes back on the next reconnect.
  }
}

// --- metadata -------------------------------------------------------------------------------------------

function metadataTable(metadata) {
  const entries = Object.entries(metadata);
  const rows = entries.map(([key, value]) => h("tr", {},
    h("th", { scope: "row", text: key }),
    h("td", {}, h("code", { text: display(value) }),
      typeName(value) !== "text" ? [" ", h("span", { class: "type-tag", text: typeName(value) })] : null)));
  $("metadata-table").tBodies[0].replaceChildren(...rows);
  $("no-metadata").hidden = entries.length > 0;
}

function metadataForm(metadata, force = false) {
  const form = $("metadata-form");
  if (!form || (form.dataset.dirty && !force)) return;
  const rows = form.querySelector("[data-meta-rows]");
  const header = rows.querySelector(".meta-row-head");
  rows.replaceChildren(header, ...Object.entries(metadata).map(([k, v]) => metaRow(k, k, formatValue(v))), metaRow("", "", ""));
  // What the rows show, so the server sends only what was changed here (stacks.metadata_editor.MetadataRows).
  form.querySelector("[data-meta-shown]").value = JSON.stringify(metadata);
  form.querySelector(".alert")?.remove();
  delete form.dataset.dirty;
}

function markMetadataErrors(form, result) {
  form.querySelector(".alert")?.remove();
  form.prepend(h("p", { class: "alert alert-error", role: "alert", text: result.error }));
  const rows = [...form.querySelectorAll("[data-meta-row]")];
  rows.forEach((row, index) => {
    row.querySelector(".field-error")?.remove();
    const error = (result.rows || [])[index];
    row.classList.toggle("has-error", Boolean(error));
    row.querySelector("input[name=meta_value]").toggleAttribute("aria-invalid", Boolean(error));
    if (error) row.append(h("p", { class: "field-error", text: error }));
  });
}

// --- history --------------------------------------------------------------------------------------------

function historyItem(entry, fresh) {
  const moved = entry.fromState || entry.toState;
  return h("li", { class: `history-item history-${entry.outcome}${fresh ? " new" : ""}`, id: `event-${entry.id}`, dataset: { eventId: entry.id } },
    h("div", { class: "history-head" },
      h("span", { class: "history-event", text: entry.event }), " ",
      h("span", { class: `badge outcome-badge outcome-${entry.outcome}`, text: entry.outcome }), " ",
      moved ? h("span", { class: "history-transition", text: `${entry.fromState || "new"} → ${entry.toState || "—"}` }) : null,
      (() => { const t = h("time", { "data-relative": true, tabindex: "0" }); setTime(t, entry.createdAt); return t; })()),
    h("div", { class: "history-by", text: `by ${entry.actor || "unknown"} via ${entry.source}${entry.task ? ` · task ${entry.task}` : ""}` }),
    entry.error ? h("div", { class: "history-error", text: entry.error }) : null,
    entry.metadata && Object.keys(entry.metadata).length
      ? h("dl", { class: "history-meta" }, Object.entries(entry.metadata).map(([key, value]) => h("div", {},
        h("dt", { text: key }), h("dd", { text: display(value) }))))
      : null);
}

function countHistory(added) {
  const count = $("history-count");
  const total = Number(count.dataset.count) + added;
  count.dataset.count = String(total);
  count.textContent = `${total} event${total === 1 ? "" : "s"}`;
}

function addHistory(entry) {
  if (!data.liveHistory || !entry) return;
  const list = $("history");
  if (list.querySelector(`[data-event-id="${CSS.escape(String(entry.id))}"]`)) return;
  list.prepend(historyItem(entry, true));
  countHistory(1);
}

function replaceHistory(entries) {
  if (!data.liveHistory || !entries) return;
  const list = $("history");
  const shown = new Set([...list.children].map((li) => li.dataset.eventId));
  const added = entries.filter((e) => !shown.has(String(e.id))).length;
  list.replaceChildren(...entries.map((entry) => historyItem(entry, !shown.has(String(entry.id)))));
  countHistory(added);
}

// --- applying a snapshot ----------------------------------------------------------------------------------

function announceChanges(before, stack) {
  if (before.state !== stack.state) announce(`${stack.id} is now in ${stack.state} (was ${before.state}).`);
  const old = new Map(before.tasks.map((t) => [t.id, t.status]));
  for (const task of stack.tasks) {
    if (task.status === "ERROR" && old.get(task.id) !== "ERROR") announce(`Task ${task.name} failed: ${task.errorMessage || "no message"}`);
  }
  if (stack.removed && !before.removed) announce(`${stack.id} was removed.`);
}

function renderDiagram(stack) {
  if (!svg || document.documentElement.dataset.scrubbing) return; // the timeline shows the past; it calls back

  highlightState(svg, data.nodeIds, stack.state);
  showTaskStatuses(svg, data.nodeIds, stack.state, stack.tasks);
  $("diagram").setAttribute("aria-label", `Diagram of ${stack.machine}; current state ${stack.state}; ` +
    stack.tasks.map((t) => `${MARKS[t.status] || ""} ${t.name} ${t.status}`).join(", "));
}

function applyStack(stack, { force = false } = {}) {
  if (!stack || stack.id !== current.id) return;
  const incoming = timeOf(stack.updatedAt);
  if (!force && incoming !== null && incoming < timeOf(current.updatedAt)) return; // older than shown
  if (stack.machineVersion !== current.machineVersion && !stack.removed) {
    // Moved to another machine version: its states, events and drawing differ, so draw it afresh.
    window.location.reload();
    return;
  }
  const before = current;
  current = stack;
  const badge = $("stack-state");
  badge.textContent = stack.state;
  badge.className = `state-badge state-badge-large condition-${stack.removed ? "removed" : condition(stack.tasks)}`;
  $("stack-previous").textContent = stack.previousState || "—";
  setTime($("stack-updated"), stack.updatedAt);
  renderTasks(stack);
  renderActions(stack);
  metadataTable(stack.metadata);
  if (JSON.stringify(before.metadata) !== JSON.stringify(stack.metadata)) metadataForm(stack.metadata);
  renderDiagram(stack);
  if (stack.removed) {
    $("removed-banner").hidden = false;
    if ($("actions")) $("actions").hidden = true;
    if ($("metadata-edit")) $("metadata-edit").hidden = true;
  }
  announceChanges(before, stack);
  document.dispatchEvent(new CustomEvent("cloudseam:stack-updated"));
}

function onMessage(message) {
  switch (message.type) {
    case "snapshot":
      if (message.stack) applyStack(message.stack, { force: true });
      replaceHistory(message.history);
      reloadOutputs();
      break;
    case "stack.updated":
    case "stack.removed":
      applyStack(message.stack);
      addHistory(message.event);
      break;
    case "history.added":
      addHistory(message.event);
      break;
    case "task.output":
      onOutput(message);
      break;
    default:
      break;
  }
}

// --- forms ------------------------------------------------------------------------------------------------

async function onSubmit(event) {
  const form = event.target.closest("form[data-action]");
  if (!form) return;
  event.preventDefault();
  if (form.dataset.confirm !== undefined) {
    const typed = form.elements.confirm.value.trim();
    if (typed !== form.dataset.confirm) {
      showResult({ ok: false, error: `Type ${form.dataset.confirm} exactly to confirm.` });
      form.elements.confirm.focus();
      return;
    }
  }
  const result = await submitForm(form);
  const isMetadata = form.hasAttribute("data-metadata-form");
  if (!result.ok && isMetadata && result.rows) {
    markMetadataErrors(form, result);
    showResult(result);
    return;
  }
  showResult(result);
  if (!result.ok) return;
  if (result.stack) applyStack(result.stack);
  if (isMetadata) {
    metadataForm(current.metadata, true);
    $("metadata-edit").open = false;
  }
  form.closest("details.event-confirm")?.removeAttribute("open");
  form.reset();
}

document.addEventListener("submit", onSubmit);
document.addEventListener("click", (event) => {
  const summary = event.target.closest(".output-details > summary");
  if (summary) summary.parentElement.dataset.userToggled = "1";
});
$("event-actions")?.setAttribute("data-state", current.state);
const metadataEditor = $("metadata-form");
if (metadataEditor) {
  wireMetadataRows(metadataEditor);
  if (metadataEditor.querySelector(".field-error, .alert")) metadataEditor.dataset.dirty = "1";
}

window.setInterval(() => {
  for (const cell of document.querySelectorAll('[data-col="phase"][data-started]')) {
    if (cell.dataset.started && !cell.dataset.finished) {
      cell.textContent = phaseText({ phase: cell.dataset.phase, status: "PENDING", startedAt: cell.dataset.started, finishedAt: null });
    }
  }
  for (const cell of document.querySelectorAll('td[data-col="duration"][data-started]')) {
    if (cell.dataset.started && !cell.dataset.finished && (cell.dataset.status || "PENDING") === "PENDING") {
      cell.textContent = durationText({ startedAt: cell.dataset.started, finishedAt: null, status: "PENDING" });
    }
  }
}, 1000);

tickRelativeTimes();
const figure = $("diagram");
ensureDiagram(figure).then((drawn) => {
  svg = drawn;
  renderDiagram(current);
  wireZoom($("diagram-zoom"), figure);
  document.dispatchEvent(new CustomEvent("cloudseam:diagram"));
});
document.addEventListener("cloudseam:live", () => renderDiagram(current));
if (current.removed) applyStack(current, { force: true });
else new LiveSocket(data.wsPath, onMessage).start();
