// Metadata rows, shared by the stack page and the new-stack form: name/value inputs posted as
// parallel lists (meta_original, meta_key, meta_value), read on the server by stacks.metadata_editor.MetadataRows.
// The stack page's form also carries the metadata its rows were filled from (meta_shown), so only
// what was changed here is saved; stack.js keeps it in step whenever it fills the rows again.
// Values are JSON when they look like JSON, so the same rule is used here to fill the inputs.

import { h } from "./live.js";

const LOOKS_LIKE_JSON = /^(true|false|null|-?\d[\d.eE+-]*|["{[][\s\S]*)$/;

export function display(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function typeName(value) {
  if (value === null) return "null";
  if (typeof value === "boolean") return "boolean";
  if (typeof value === "number") return "number";
  return "text";
}

/** What to put in a metadata input so the server reads the same value back (forms.format_value). */
export function formatValue(value) {
  if (typeof value !== "string") return JSON.stringify(value);
  return LOOKS_LIKE_JSON.test(value.trim()) || value !== value.trim() ? JSON.stringify(value) : value;
}

/** One name/value row, the same markup as templates/stacks/_metadata_rows.html. */
export function metaRow(original, key, value) {
  return h("div", { class: "meta-row", "data-meta-row": true },
    h("input", { type: "hidden", name: "meta_original", value: original }),
    h("label", {}, h("span", { class: "visually-hidden", text: "Name" }),
      h("input", { type: "text", name: "meta_key", value: key, maxlength: "100", autocomplete: "off", spellcheck: "false", placeholder: "name" })),
    h("label", {}, h("span", { class: "visually-hidden", text: key ? `Value of ${key}` : "Value" }),
      h("input", { type: "text", name: "meta_value", value, autocomplete: "off", spellcheck: "false", placeholder: "value" })),
    h("button", { type: "button", class: "button small remove-row", "data-remove-row": true, text: "Remove" }));
}

/** Show the Remove / Add a row buttons (hidden without scripts) and track unsaved edits. */
export function wireMetadataRows(container) {
  for (const button of container.querySelectorAll("[data-remove-row]")) button.hidden = false;
  const add = container.querySelector("[data-add-row]");
  if (add) add.hidden = false;
  container.addEventListener("click", (event) => {
    const remove = event.target.closest("[data-remove-row]");
    if (remove) {
      const row = remove.closest("[data-meta-row]");
      for (const input of row.querySelectorAll("input[name=meta_key], input[name=meta_value]")) input.value = "";
      row.hidden = true; // an empty name removes the entry when saved
      container.dataset.dirty = "1";
      return;
    }
    if (event.target.closest("[data-add-row]")) {
      const row = metaRow("", "", "");
      container.querySelector("[data-meta-rows]").append(row);
      row.querySelector("input[name=meta_key]").focus();
    }
  });
  container.addEventListener("input", () => { container.dataset.dirty = "1"; });
}

