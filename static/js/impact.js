// What a draft does to the stacks already running its machine: asks POST /api/machines/<name>/impact
// with the editor's text, says it in one sentence beside the validation ("This version would leave
// 3 stacks stranded (…) and let 41 move up"), lists why stacks are stranded, one line per group of
// stacks with the same reasons (the server names the first 50 of each and counts the rest), and marks
// the preview diagram: states with stacks in them now (with their counts) and states that would
// strand them. Node ids come from the server's answer (machines_app.diagrams.svg_node_id), never built here.

import { csrfToken, h } from "./live.js";

const SVG = "http://www.w3.org/2000/svg";

/** The impact of `text`, or null when the server could not say (an invalid draft is shown by validation). */
export async function fetchImpact(url, text) {
  const response = await fetch(url, {
    method: "POST", body: text, credentials: "same-origin",
    headers: { "Content-Type": "application/yaml", "X-CSRFToken": csrfToken(), Accept: "application/json" },
  });
  if (!response.ok) return null;
  return response.json();
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** One group of stranded stacks: its state, why, and the stacks the server named ("and N more"). */
function groupItem(group) {
  const named = group.stacks.map((s) => `${s.id} (v${s.version})`).join(", ");
  const more = group.count - group.stacks.length;
  return h("li", {},
    h("strong", { text: `${group.state}, ${plural(group.count, "stack")}` }), `: ${group.reasons.map((r) => r.message).join("; ")}`,
    h("div", { class: "impact-ids muted", text: more > 0 ? `${named} and ${more} more` : named }));
}

/** Say what the draft does, in `box` (its sentence and, per group of stranded stacks, why). */
export function showImpact(box, impact) {
  if (!impact) {
    box.hidden = true;
    return;
  }
  const stranded = impact.strandedCount;
  box.hidden = false;
  box.className = `impact ${stranded ? "impact-stranded" : "impact-fine"}`;
  box.replaceChildren(
    h("p", { class: "impact-summary", id: "impact-summary", text: `${impact.summary}.` }),
    stranded ? h("details", {}, h("summary", { text: `Why ${stranded === 1 ? "it is" : "they are"} stranded` }),
      h("ul", { class: "impact-stacks" }, impact.strandedGroups.map(groupItem))) : null,
  );
}

function badge(node, text) {
  const box = node.querySelector("path, polygon");
  if (!box) return;
  const { x, y, width } = box.getBBox();
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("class", "stack-count");
  label.setAttribute("x", String(x + width - 2));
  label.setAttribute("y", String(y - 3));
  label.setAttribute("text-anchor", "end");
  label.textContent = text;
  node.append(label);
}

/** Mark the states of the drawn draft that hold stacks now, and those that would strand them. */
export function markDiagram(figure, impact) {
  const svg = figure.querySelector("svg");
  if (!svg) return;
  for (const node of svg.querySelectorAll("g.node.has-stacks")) node.classList.remove("has-stacks", "strands");
  for (const label of svg.querySelectorAll("text.stack-count")) label.remove();
  if (!impact) return;
  for (const [state, counts] of Object.entries(impact.states)) {
    const node = counts.nodeId && svg.querySelector(`g.node[id="${CSS.escape(counts.nodeId)}"]`);
    if (!node) continue;
    node.classList.add("has-stacks");
    node.classList.toggle("strands", counts.stranded > 0);
    const stacks = plural(counts.stacks, "stack");
    badge(node, counts.stranded ? `${stacks}, ${counts.stranded} stranded` : stacks);
    node.dataset.stacks = String(counts.stacks);
    node.dataset.stranded = String(counts.stranded);
    node.setAttribute("aria-label", `${state}: ${stacks} now${counts.stranded ? `, ${counts.stranded} would be stranded` : ""}`);
  }
}
