// Machine diagrams in the page: draw DOT in the browser when the server had no Graphviz, draw
// Mermaid text, and move the highlight live by changing classes on the drawn SVG (no new layout).
// Node ids come from the server (machines_app.diagrams.svg_node_id), never rebuilt here.

const TASK_MARKS = { PENDING: "○", SATISFIED: "✔", ERROR: "✖" };
const ANY_MARK = /^[▸○✔✖?] /;

function note(figure, text) {
  let p = figure.querySelector("[data-slot=note]");
  if (!p) {
    p = document.createElement("p");
    p.className = "diagram-note";
    p.dataset.slot = "note";
    figure.prepend(p);
  }
  p.textContent = text;
}

/** Draw DOT text into `figure` with Graphviz compiled to WebAssembly (@viz-js/viz). */
export async function drawDot(figure, dot) {
  try {
    const { instance } = await import(figure.dataset.vizUrl);
    const viz = await instance();
    const svg = viz.renderSVGElement(dot);
    figure.replaceChildren(svg);
    figure.classList.remove("diagram-pending");
    return svg;
  } catch (error) {
    note(figure, "The diagram cannot be drawn: Graphviz is not installed on the server and the browser " +
      "library is missing (run make setup). The YAML below describes the machine.");
    console.error(error);
    return null;
  }
}

/** The figure's SVG: the server's, or drawn now from the DOT text the page carries. */
export async function ensureDiagram(figure) {
  const existing = figure.querySelector("svg");
  if (existing) return existing;
  const source = figure.dataset.dotSource && document.getElementById(figure.dataset.dotSource);
  if (!source) return null;
  return drawDot(figure, JSON.parse(source.textContent));
}

function nodeOf(svg, id) {
  return id ? svg.querySelector(`g.node[id="${CSS.escape(id)}"]`) : null;
}

/** Move the `current` class to the state's node. */
export function highlightState(svg, nodeIds, state) {
  for (const node of svg.querySelectorAll("g.node.current")) node.classList.remove("current");
  const node = nodeOf(svg, nodeIds[state]);
  node?.classList.add("current");
  return node;
}

function taskText(node, name) {
  for (const text of node.querySelectorAll("text")) {
    if (text.dataset.task === name) return text;
    const content = text.textContent;
    if (ANY_MARK.test(content) && content.slice(2) === name) return text;
  }
  return null;
}

/** Colour the current state's task rows by status; other states' rows go back to plain. */
export function showTaskStatuses(svg, nodeIds, state, tasks) {
  for (const text of svg.querySelectorAll("text[data-task]")) {
    text.textContent = `▸ ${text.dataset.task}`;
    text.removeAttribute("class");
  }
  for (const rect of svg.querySelectorAll("rect.task-bg")) rect.remove();
  const node = nodeOf(svg, nodeIds[state]);
  if (!node) return;
  for (const task of tasks) {
    const text = taskText(node, task.name);
    if (!text) continue;
    text.dataset.task = task.name;
    text.textContent = `${TASK_MARKS[task.status] || "?"} ${task.name}`;
    const status = `task-${String(task.status).toLowerCase()}`;
    text.setAttribute("class", status);
    let box;
    try {
      box = text.getBBox();
    } catch {
      continue; // not rendered (hidden): colours come back on the next update
    }
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    rect.setAttribute("x", box.x - 3);
    rect.setAttribute("y", box.y - 1);
    rect.setAttribute("width", box.width + 6);
    rect.setAttribute("height", box.height + 2);
    rect.setAttribute("rx", 3);
    rect.setAttribute("class", `task-bg ${status}`);
    text.before(rect);
  }
}

let mermaidReady = null;
const DROP = "script, iframe, object, embed, img, image, audio, video, link, meta, form, input, button, textarea";

/**
 * Turn SVG markup a library or the server produced into nodes, keeping only drawing: no scripts,
 * no embedded documents or images, no event-handler attributes, no links leaving the drawing.
 * (Labels are already escaped on the server and Mermaid runs with securityLevel 'strict'; this is
 * the last line of defence before the nodes enter the page.)
 */
export function svgNodes(markup) {
  const doc = new DOMParser().parseFromString(markup, "text/html");
  const svg = doc.body.querySelector("svg");
  if (!svg) return null;
  for (const bad of svg.querySelectorAll(DROP)) bad.remove();
  for (const el of [svg, ...svg.querySelectorAll("*")]) {
    for (const attr of [...el.attributes]) {
      const name = attr.name.toLowerCase();
      const link = name === "href" || name === "xlink:href" || name === "src";
      if (name.startsWith("on") || (link && !attr.value.trim().startsWith("#"))) el.removeAttribute(attr.name);
    }
  }
  return document.importNode(svg, true);
}

/**
 * Render Mermaid text into `figure` with securityLevel 'strict' (labels stay text; the server
 * escapes every label too) and place the result through `svgNodes`.
 */
export async function drawMermaid(figure, text) {
  try {
    if (!mermaidReady) {
      mermaidReady = import(figure.dataset.mermaidUrl).then(({ default: mermaid }) => {
        mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "default", flowchart: { htmlLabels: false } });
        return mermaid;
      });
    }
    const mermaid = await mermaidReady;
    const { svg } = await mermaid.render(`mermaid-${Date.now()}`, text);
    const node = svgNodes(svg);
    if (!node) throw new Error("Mermaid returned no SVG");
    figure.replaceChildren(node);
    return node;
  } catch (error) {
    note(figure, "Mermaid could not draw this diagram (is the browser library installed? run make setup).");
    console.error(error);
    return null;
  }
}

/** Place an SVG string the server drew (Graphviz output) into `figure`. */
export function placeSvg(figure, svgText) {
  const svg = svgNodes(svgText);
  if (svg) figure.replaceChildren(svg);
  return svg;
}

/** A "fit / actual size" toggle for big machines. */
export function wireZoom(button, figure) {
  if (!button) return;
  button.hidden = false;
  button.addEventListener("click", () => {
    const actual = figure.classList.toggle("actual-size");
    button.setAttribute("aria-pressed", String(actual));
    button.textContent = actual ? "Fit to width" : "Actual size";
  });
}
