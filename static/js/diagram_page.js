// Pages that only show a diagram (a removed stack): draw it in the browser when the server could not.

import { ensureDiagram } from "./diagram.js";
import { tickRelativeTimes } from "./live.js";

const figure = document.getElementById("diagram");
if (figure) ensureDiagram(figure).then(() => document.dispatchEvent(new CustomEvent("cloudseam:diagram")));
tickRelativeTimes();
