// The timeline scrubber and the run record of a stack's page (live and removed), issue #8.
// Frames come from the server (replay.json: the stack's history replayed through the engine); moving
// the slider redraws the diagram's highlight, task marks and path, and shows the tasks and metadata as
// they were right after that history entry. The right end of the slider, Escape or "Live" return to
// the live view. Older attempts load on demand from the API.

import { h, setTime } from "./live.js";
import { highlightState, showTaskStatuses } from "./diagram.js";
import { display } from "./metadata.js";

const run = JSON.parse(document.getElementById("run-data").textContent);
const $ = (id) => document.getElementById(id);
const slider = $("timeline-slider");
const caption = $("timeline-caption");
const root = document.documentElement;
const MARKS = { PENDING: "○", SATISFIED: "✔", ERROR: "✖" };

let frames = [];
let live = true;
let playing = null;
let attemptsPage = 1;

function svg() {
  return document.querySelector("#diagram svg");
}

// --- the path on the drawn diagram -----------------------------------------------------------------

/** Mark visited states, failed states and followed edges (with ×N) from a frame's path. */
function drawPath(path) {
  const drawn = svg();
  if (!drawn || !path) return;
  const visited = new Set();
  for (const key of Object.keys(path.edges)) for (const state of key.split(">")) visited.add(state);
  for (const [state, id] of Object.entries(run.nodeIds)) {
    const node = drawn.querySelector(`g.node[id="${CSS.escape(id)}"]`);
    node?.classList.toggle("visited", visited.has(state));
    node?.classList.toggle("failed", path.failed.includes(state));
  }
  for (const [key, ids] of Object.entries(run.edgeIds)) {
    const count = path.edges[key] || 0;
    for (const id of ids) {
      const edge = drawn.querySelector(`g.edge[id="${CSS.escape(id)}"]`);
      if (!edge) continue;
      edge.classList.toggle("followed", count > 0);
      const label = edge.querySelector("text");
      if (!label) continue;
      if (label.dataset.plain === undefined) label.dataset.plain = label.textContent.replace(/ ×\d+$/, "");
      label.textContent = count > 1 ? `${label.dataset.plain} ×${count}` : label.dataset.plain;
    }
  }
}

// --- one frame ----------------------------------------------------------------------------------------

function showFrame(index) {
  const frame = frames[index];
  if (!frame) return;
  live = false;
  root.dataset.scrubbing = "1";
  $("timeline-live").disabled = false;
  const drawn = svg();
  if (drawn && frame.state) {
    highlightState(drawn, run.nodeIds, frame.state);
    showTaskStatuses(drawn, run.nodeIds, frame.state, frame.tasks);
  }
  drawPath(frame.path);
  const when = frame.createdAt ? new Date(frame.createdAt).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "";
  const text = `Entry ${index + 1} of ${frames.length}: ${frame.event} (${frame.outcome}) at ${when} → ${frame.state || "not created"}`;
  caption.textContent = text;
  $("frame-view").hidden = false;
  const link = h("a", { href: `#event-${frame.eventId}`, text: `${frame.event} (${frame.outcome})` });
  $("frame-title").replaceChildren(`After `, link, ` · state ${frame.state || "—"} · previous ${frame.previousState || "—"}`,
    frame.removed ? " · removed" : "");
  $("frame-tasks").replaceChildren(...(frame.tasks.length ? frame.tasks.map((t) => h("li", { class: `frame-task status-${t.status.toLowerCase()}` },
    `${MARKS[t.status] || "?"} ${t.name} `, h("span", { class: `task-status status-${t.status.toLowerCase()}`, text: t.status })))
    : [h("li", { class: "muted", text: "no tasks" })]));
  const meta = Object.entries(frame.metadata);
  $("frame-meta").replaceChildren(...(meta.length ? meta.map(([k, v]) => h("div", {}, h("dt", { text: k }), h("dd", { text: display(v) })))
    : [h("div", { class: "muted", text: "no metadata" })]));
}

function goLive() {
  stopPlaying();
  live = true;
  delete root.dataset.scrubbing;
  $("frame-view").hidden = true;
  $("timeline-live").disabled = true;
  if (frames.length) {
    slider.value = String(frames.length - 1);
    drawPath(frames[frames.length - 1].path);
  }
  caption.textContent = run.removed ? "The stack as it was when removed." : "Live: the stack as it is now.";
  const last = frames[frames.length - 1];
  if (run.removed && last && svg() && last.state) { // no live page script here: the last frame is the present
    highlightState(svg(), run.nodeIds, last.state);
    showTaskStatuses(svg(), run.nodeIds, last.state, last.tasks);
  }
  document.dispatchEvent(new CustomEvent("cloudseam:live"));
}

function moveTo(index) {
  const last = frames.length - 1;
  const target = Math.max(0, Math.min(last, index));
  slider.value = String(target);
  if (target === last) {
    goLive();
    // The last frame is the present: still say which entry it is.
    const frame = frames[last];
    if (frame) caption.textContent = `Entry ${last + 1} of ${frames.length}: ${frame.event} (${frame.outcome}) — the present`;
  } else {
    showFrame(target);
  }
}

function stopPlaying() {
  if (playing) window.clearInterval(playing);
  playing = null;
  $("timeline-play").textContent = "Play";
  $("timeline-play").setAttribute("aria-pressed", "false");
}

function play() {
  if (playing) {
    stopPlaying();
    return;
  }
  if (Number(slider.value) >= frames.length - 1) moveTo(0);
  $("timeline-play").textContent = "Pause";
  $("timeline-play").setAttribute("aria-pressed", "true");
  playing = window.setInterval(() => {
    if (Number(slider.value) >= frames.length - 1) stopPlaying();
    else moveTo(Number(slider.value) + 1);
  }, 700);
}

async function loadFrames() {
  try {
    const response = await fetch(run.replayUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) return;
    frames = (await response.json()).frames;
  } catch {
    return;
  }
  const box = document.querySelector("[data-scrubber]");
  box.hidden = frames.length === 0;
  slider.max = String(Math.max(0, frames.length - 1));
  if (live) {
    slider.value = slider.max;
    if (frames.length) drawPath(frames[frames.length - 1].path);
  }
}

// --- older attempts ------------------------------------------------------------------------------------------

function attemptItem(attempt) {
  const failed = attempt.outcome === "failed" || attempt.outcome === "lost";
  const pre = h("pre", { class: "output", tabindex: "0", text: "…" });
  const started = h("time", { "data-relative": true, tabindex: "0" });
  setTime(started, attempt.startedAt);
  const details = h("details", { class: "attempt-details" },
    h("summary", {}, h("span", { class: "attempt-name", text: attempt.name }), " ",
      h("span", { class: "muted", text: `#${attempt.number} · ${attempt.state}` }), " ",
      h("span", { class: `badge attempt-outcome outcome-${attempt.outcome}`, text: attempt.outcome }), " ",
      h("span", { class: "muted", text: attempt.durationSeconds === null ? "running" : `${attempt.durationSeconds.toFixed(1)} s` }), " ",
      started),
    attempt.error ? h("p", { class: "attempt-error", text: attempt.error }) : null,
    pre);
  const load = async () => {
    const response = await fetch(`/api/tasks/${attempt.id}/output`, { credentials: "same-origin" });
    pre.textContent = response.ok ? await response.text() : "The output could not be read.";
  };
  details.addEventListener("toggle", () => { if (details.open && pre.textContent === "…") load(); });
  details.open = failed;
  return h("li", { class: `attempt attempt-${attempt.outcome}`, id: `attempt-${attempt.id}` }, details);
}

/** The state visit an attempt belongs to: same state, the last one entered before it was queued. */
function visitOf(attempt) {
  const at = Date.parse(attempt.queuedAt || attempt.startedAt || "");
  if (Number.isNaN(at)) return null;
  const candidates = run.visits.filter((v) => v.state === attempt.state && Date.parse(v.entered) - 2000 <= at);
  return candidates.length ? candidates[candidates.length - 1] : null;
}

/** Under its visit when that visit is on the page, else in the "Older attempts" list. */
function placeAttempt(attempt, item) {
  const visit = visitOf(attempt);
  const body = visit ? $(`visit-${visit.number}`) : null;
  if (!body) {
    $("older-attempts").append(item);
    return;
  }
  let list = body.querySelector("ul.attempts");
  if (!list) {
    list = h("ul", { class: "attempts", dataset: { attemptsFor: String(visit.number) } });
    body.append(h("tr", { class: "visit-attempts" }, h("td", { colspan: "4" }, list)));
  }
  list.append(item);
}

async function loadOlderAttempts() {
  const button = $("load-attempts");
  button.disabled = true;
  attemptsPage += 1;
  try {
    const url = `${run.attemptsUrl}?page=${attemptsPage}&pageSize=${run.attemptsPageSize}`;
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) {
      button.hidden = true;
      return;
    }
    const page = await response.json();
    for (const attempt of page.results) placeAttempt(attempt, attemptItem(attempt));
    button.hidden = page.page >= page.pages;
  } finally {
    button.disabled = false;
  }
}

// --- wiring --------------------------------------------------------------------------------------------------

slider.addEventListener("input", () => { stopPlaying(); moveTo(Number(slider.value)); });
slider.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    event.preventDefault();
    goLive();
  }
});
$("timeline-back").addEventListener("click", () => { stopPlaying(); moveTo(Number(slider.value) - 1); });
$("timeline-forward").addEventListener("click", () => { stopPlaying(); moveTo(Number(slider.value) + 1); });
$("timeline-live").addEventListener("click", goLive);
$("timeline-play").addEventListener("click", play);
$("load-attempts")?.addEventListener("click", loadOlderAttempts);
/** The run panel again from the server (new visits and attempts), keeping what the person opened. */
async function refreshRun() {
  const panel = $("run");
  if (!panel) return;
  try {
    const response = await fetch(window.location.pathname + window.location.search, { credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById("run");
    if (!fresh) return;
    const opened = new Set([...panel.querySelectorAll("li.attempt")].filter((li) => li.querySelector("details[open]")).map((li) => li.id));
    const closed = new Set([...panel.querySelectorAll("li.attempt")].filter((li) => !li.querySelector("details[open]")).map((li) => li.id));
    const older = $("older-attempts-box");
    // Keep the keyboard where it was: the same attempt's summary (or link) in the new panel.
    const focused = panel.contains(document.activeElement) ? document.activeElement.closest("li.attempt, tbody.visit") : null;
    const focusedId = focused?.id;
    const focusedSelector = document.activeElement?.matches?.("summary") ? "summary" : "a, summary, [tabindex]";
    panel.replaceChildren(...[...fresh.childNodes].map((node) => document.importNode(node, true)));
    if (focusedId) document.getElementById(focusedId)?.querySelector(focusedSelector)?.focus();
    if (older && $("older-attempts-box")) $("older-attempts-box").replaceWith(older); // attempts already loaded stay
    for (const li of panel.querySelectorAll("li.attempt")) {
      const details = li.querySelector("details");
      if (opened.has(li.id)) details.open = true;
      if (closed.has(li.id)) details.open = false;
    }
  } catch {
    // The panel stays as it was; the next change tries again.
  }
}

// The live page tells us when the stack changed: new history, so new frames (and a new path), and
// new state visits and attempts in the run panel.
let refetch = null;
document.addEventListener("cloudseam:stack-updated", () => {
  window.clearTimeout(refetch);
  refetch = window.setTimeout(() => { loadFrames(); refreshRun(); }, 400);
});
document.addEventListener("cloudseam:diagram", () => { if (frames.length && live) drawPath(frames[frames.length - 1].path); });
loadFrames();
