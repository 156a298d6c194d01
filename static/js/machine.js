// A machine's page: the Graphviz drawing (the server's SVG, or drawn here from DOT when the server
// has no `dot`), a toggle to the Mermaid rendering (drawn here on first use), and SVG export of
// whatever the browser drew when the server could not draw it.

import { drawMermaid, ensureDiagram, wireZoom } from "./diagram.js";
import { tickRelativeTimes } from "./live.js";

const graphviz = document.getElementById("diagram");
const mermaidFigure = document.getElementById("mermaid-diagram");
const mermaidText = JSON.parse(document.getElementById("mermaid-source").textContent);
const toggle = document.getElementById("renderer-toggle");
let mermaidDrawn = false;

async function show(renderer) {
  for (const button of toggle.querySelectorAll("button[data-renderer]")) {
    button.setAttribute("aria-pressed", String(button.dataset.renderer === renderer));
  }
  graphviz.hidden = renderer !== "graphviz";
  mermaidFigure.hidden = renderer !== "mermaid";
  if (renderer === "mermaid" && !mermaidDrawn) {
    mermaidDrawn = true;
    await drawMermaid(mermaidFigure, mermaidText);
  }
}

toggle.hidden = false;
toggle.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-renderer]");
  if (button) show(button.dataset.renderer);
});

const drawnByServer = Boolean(graphviz.querySelector("svg"));
ensureDiagram(graphviz).then((svg) => {
  if (svg && !drawnByServer) {
    // The server could not draw it, so its SVG export would fail: export the browser's drawing.
    const blob = new Blob([new XMLSerializer().serializeToString(svg)], { type: "image/svg+xml" });
    document.getElementById("export-svg").href = URL.createObjectURL(blob);
  }
});
tickRelativeTimes();
