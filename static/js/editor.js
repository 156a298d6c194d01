// The machine editor: line numbers, validation as you type through POST /api/machines/validate
// (errors listed with their lines and marked beside the text), and a live diagram preview of the
// last valid text. Saving is an ordinary form post; it is disabled while the text is invalid, and
// the server refuses an invalid machine anyway. For a machine that exists, each valid text's impact on
// its running stacks is shown beside the validation and marked on the preview (impact.js).

import { csrfToken, debounce, h } from "./live.js";
import { drawDot, placeSvg } from "./diagram.js";
import { fetchImpact, markDiagram, showImpact } from "./impact.js";

const form = document.getElementById("editor-form");
const textarea = document.getElementById("id_yaml_text");
const gutter = document.getElementById("editor-gutter");
const backdrop = document.getElementById("editor-backdrop");
const status = document.getElementById("validation-status");
const problemsList = document.getElementById("problems");
const preview = document.getElementById("preview");
const save = document.getElementById("save-button");
const impactBox = document.getElementById("impact");

let errors = new Map(); // line -> messages
let warnings = new Map();
let asked = 0;
let shownLines = -1;
let impact = null; // the last valid text's impact on running stacks, marked on each new drawing

function byLine(problems) {
  const lines = new Map();
  for (const p of problems) {
    if (p.line) lines.set(p.line, [...(lines.get(p.line) || []), p.message]);
  }
  return lines;
}

function renderLines(force = false) {
  const count = textarea.value.split("\n").length;
  if (count === shownLines && !force) return;
  shownLines = count;
  const numbers = [];
  const marks = [];
  for (let line = 1; line <= count; line += 1) {
    const error = errors.get(line);
    const kind = error ? "error" : warnings.has(line) ? "warning" : null;
    numbers.push(h("span", { class: error ? "error" : null, title: error ? error.join("\n") : null, text: String(line) }));
    marks.push(h("span", { class: kind }));
  }
  gutter.replaceChildren(...numbers);
  backdrop.replaceChildren(...marks);
  syncScroll();
}

function syncScroll() {
  gutter.scrollTop = textarea.scrollTop;
  backdrop.scrollTop = textarea.scrollTop;
}

function goToLine(line) {
  const lines = textarea.value.split("\n");
  const offset = lines.slice(0, line - 1).reduce((sum, text) => sum + text.length + 1, 0);
  textarea.focus();
  textarea.setSelectionRange(offset, offset + (lines[line - 1] || "").length);
  const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 19;
  textarea.scrollTop = Math.max(0, (line - 4) * lineHeight);
  syncScroll();
}

function problemItem(problem, kind) {
  return h("li", { class: `problem-${kind}` },
    problem.line ? [h("button", { type: "button", class: "link-button", dataset: { line: problem.line }, text: `line ${problem.line}` }), ": "] : null,
    problem.path ? [h("code", { text: problem.path }), ": "] : null,
    problem.message);
}

function showResult(result) {
  errors = byLine(result.errors);
  warnings = byLine(result.warnings);
  renderLines(true);
  problemsList.replaceChildren(
    ...result.errors.map((p) => problemItem(p, "error")),
    ...result.warnings.map((p) => problemItem(p, "warning")),
  );
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  if (result.valid) {
    status.className = "validation-status valid";
    status.textContent = result.warnings.length ? `✔ Valid, with ${plural(result.warnings.length, "warning")}` : "✔ Valid machine";
  } else {
    status.className = "validation-status invalid";
    status.textContent = `✖ ${plural(result.errors.length, "error")}: fix ${result.errors.length === 1 ? "it" : "them"} to save`;
  }
  save.disabled = !result.valid;
  preview.classList.toggle("stale", !result.valid);
  impactBox.classList.toggle("stale", !result.valid);
}

async function drawPreview(text, mine) {
  try {
    const response = await fetch(form.dataset.previewUrl, {
      method: "POST", body: text, credentials: "same-origin",
      headers: { "Content-Type": "application/yaml", "X-CSRFToken": csrfToken(), Accept: "application/json" },
    });
    if (!response.ok || mine !== asked) return;
    const drawing = await response.json();
    if (drawing.svg) placeSvg(preview, drawing.svg);
    else await drawDot(preview, drawing.dot);
    markDiagram(preview, impact);
  } catch {
    // Keep the last drawing; validation still tells what is wrong.
  }
}

async function showDraftImpact(text, mine) {
  try {
    const found = await fetchImpact(form.dataset.impactUrl, text);
    if (mine !== asked) return;
    impact = found;
    showImpact(impactBox, impact);
    markDiagram(preview, impact);
  } catch {
    // The impact is advice; validation and saving work without it.
  }
}

const validate = debounce(async () => {
  const text = textarea.value;
  const mine = ++asked;
  status.className = "validation-status";
  status.textContent = "Checking…";
  try {
    const response = await fetch(form.dataset.validateUrl, {
      method: "POST", body: text, credentials: "same-origin",
      headers: { "Content-Type": "application/yaml", "X-CSRFToken": csrfToken(), Accept: "application/json" },
    });
    const result = await response.json();
    if (mine !== asked) return;
    if (!response.ok) {
      status.className = "validation-status invalid";
      status.textContent = result.error || `The validator answered ${response.status}.`;
      return;
    }
    showResult(result);
    if (result.valid) {
      drawPreview(text, mine);
      if (form.dataset.impactUrl) showDraftImpact(text, mine);
    }
  } catch {
    if (mine === asked) status.textContent = "Could not reach the validator; the machine is checked again when saved.";
  }
}, 300);

/** Enter keeps the indentation of the line above, as YAML wants. */
function keepIndent(event) {
  if (event.key !== "Enter" || event.shiftKey || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
  const start = textarea.selectionStart;
  const lineStart = textarea.value.lastIndexOf("\n", start - 1) + 1;
  const indent = /^[ ]*/.exec(textarea.value.slice(lineStart, start))[0];
  const extra = /:\s*$/.test(textarea.value.slice(lineStart, start)) ? "  " : "";
  event.preventDefault();
  textarea.setRangeText(`\n${indent}${extra}`, start, textarea.selectionEnd, "end");
  textarea.dispatchEvent(new Event("input", { bubbles: true }));
}

textarea.addEventListener("input", () => { renderLines(); validate(); });
textarea.addEventListener("scroll", syncScroll);
textarea.addEventListener("keydown", keepIndent);
problemsList.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-line]");
  if (button) goToLine(Number(button.dataset.line));
});
form.addEventListener("submit", (event) => {
  if (save.disabled) event.preventDefault();
});

renderLines(true);
validate.now();
