// The new-stack form: the id is checked as you type (its shape here, whether it is taken by asking
// the API), the first-event list follows the chosen machine, and metadata rows can be added.
// Without scripts the form still works: the server checks everything again.

import { debounce, h } from "./live.js";
import { wireMetadataRows } from "./metadata.js";

const form = document.getElementById("new-stack-form");
const STACK_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

if (form) {
  const config = document.getElementById("new-stack-config").dataset;
  const idInput = document.getElementById("id_stack_id");
  const check = document.getElementById("stack-id-check");
  const machine = document.getElementById("id_machine");
  const event = document.getElementById("id_event");

  const say = (cls, text, link) => {
    check.replaceChildren(h("span", { class: cls, text }), link || "");
    idInput.toggleAttribute("aria-invalid", cls === "field-error");
  };

  // Answers arrive late: a lookup started for an earlier value may finish after the field changed
  // (even to an invalid id), so an answer counts only while it is still about what the field holds.
  const current = () => idInput.value.trim();
  const lookUp = debounce(async (value) => {
    try {
      const response = await fetch(config.apiUrl.replace("STACK-ID", encodeURIComponent(value)), {
        headers: { Accept: "application/json" }, credentials: "same-origin",
      });
      const stack = response.ok ? await response.json() : null;
      if (value !== current()) return;
      if (response.status === 404 || stack?.removed) {
        say("field-ok", `✔ ${value} is free${stack ? " (a removed stack used it before)" : ""}`);
      } else if (stack) {
        say("field-error", `${value} already exists (${stack.state}). `, h("a", { href: config.stackUrl.replace("STACK-ID", encodeURIComponent(value)), text: "Open it" }));
      }
    } catch {
      // The server checks again on submit.
    }
  }, 300);

  idInput.addEventListener("input", () => {
    const value = current();
    if (!value) {
      check.replaceChildren();
      idInput.removeAttribute("aria-invalid");
    } else if (!STACK_ID.test(value)) {
      say("field-error", "Use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit.");
    } else {
      say("muted", "Checking…");
      lookUp(value);
    }
  });

  // Without scripts the list shows every machine's first events in groups; here it shows only
  // the chosen machine's, keeping the chosen event when that machine accepts it too.
  const groups = new Map([...event.querySelectorAll("optgroup")].map((g) => [g.dataset.machine, g.cloneNode(true)]));
  const followMachine = () => {
    const chosen = event.value;
    const options = [...(groups.get(machine.value)?.children || [])].map((o) => o.cloneNode(true));
    event.replaceChildren(...options);
    const keep = options.find((o) => o.value === chosen);
    if (keep) keep.selected = true;
  };
  machine.addEventListener("change", followMachine);
  followMachine();
  wireMetadataRows(form);
}
