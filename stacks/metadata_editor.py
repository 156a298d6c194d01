"""The one metadata editor, for the stack pages and the admin alike.

Metadata is typed as rows of name and value; a value is read as JSON when it looks like JSON, so
`true`, `42` and `null` keep their types (a machine may test `healthy is True`). Only the rows a
person changed are sent, as the difference with what they were shown, so an edit someone else made
meanwhile is never undone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from django import forms
from django.conf import settings

from cloudseam_site import strict_json
from stacks.messages import MAX_METADATA_KEY, BadMessage, check_metadata

METADATA_HELP = (
    'Values are read as JSON when they look like it (true, 42, null, "quoted text"); anything else is '
    "plain text. Clear a name to remove that entry."
)
_LOOKS_LIKE_JSON = re.compile(r'^(true|false|null|-?\d[\d.eE+-]*|["{\[].*)$', re.DOTALL)


# --- metadata values ------------------------------------------------------------------------------


def parse_value(raw: str) -> object:
    """A typed metadata value from what was typed: JSON when it looks like JSON, else the text."""
    text = raw.strip()
    if not _LOOKS_LIKE_JSON.match(text):
        return text
    try:
        return strict_json.loads(text, "this value")
    except strict_json.JsonInputError as exc:
        raise forms.ValidationError(exc.message) from None
    except (ValueError, RecursionError) as exc:  # not JSON, nested too deeply, or a number too long
        if text[:1] in "{[\"":
            reason = getattr(exc, "msg", None) or "it is nested too deeply or too large"
            raise forms.ValidationError(
                f"this looks like JSON but is not valid ({reason}); write plain text without a leading "
                f"{text[0]!r}, or valid JSON such as \"text\""
            ) from None
        return text  # e.g. "1.2.3" or "2024-01-01": plain text that merely starts with a digit


def format_value(value: object) -> str:
    """The text to put in an input so that `parse_value` gives the same value back."""
    if isinstance(value, str):
        return json.dumps(value) if _LOOKS_LIKE_JSON.match(value.strip()) or value != value.strip() else value
    return json.dumps(value)


def display_value(value: object) -> str:
    """How a value reads on a page: text as it is, anything else as JSON (true, 42, null)."""
    return value if isinstance(value, str) else json.dumps(value)


def value_type(value: object) -> str:
    """A short type name shown beside non-text values, so `true` and "true" can be told apart."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "text"


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b  # 1 == True and 1 == 1.0, but they are different values


def metadata_changes(shown: Mapping, desired: Mapping) -> dict:
    """What to send so that the metadata a person was shown becomes what they want.

    New and edited keys with their values, keys they removed with None (the service deletes those).
    Diffing against what was on screen, not the database, keeps what others changed meanwhile.
    """
    missing = object()
    changed = {k: v for k, v in desired.items() if not _same(shown.get(k, missing), v)}
    removed = {k: None for k in shown if k not in desired}
    return {**changed, **removed}


def _shown_metadata(raw: str) -> dict | None:
    if len(raw) > 2 * settings.API_MAX_BODY:
        return None
    try:
        shown = strict_json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return shown if isinstance(shown, dict) else None


@dataclass
class MetadataRow:
    """One row of the metadata table as posted: `original` is the name it had before editing."""

    original: str
    key: str
    value: str
    error: str = ""


class MetadataRows:
    """Rows of name/value inputs (posted as the lists `meta_key`, `meta_value`, `meta_original`).

    Not a Django form: rows are added and removed in the browser, so they are parallel lists. The
    metadata the rows were filled from travels with them as JSON (`meta_shown`), and `changes` is
    the difference with it (`metadata_changes`): rows left alone are not sent, so they cannot undo
    someone else's edit made since the page was drawn. Nothing is changed unless every row is valid.
    """

    INCOMPLETE = "the metadata rows were incomplete; reload the page and try again"

    def __init__(self, data: Mapping | None = None, shown: Mapping | None = None, blank_rows: int = 2):
        self.shown = dict(shown or {})
        self.bound = data is not None
        self.error = ""
        self.changes: dict = {}
        self.rows: list[MetadataRow] = []
        if data is None:
            self.rows = [MetadataRow(k, k, format_value(v)) for k, v in self.shown.items()]
            self.rows += [MetadataRow("", "", "") for _ in range(blank_rows)]
        else:
            self._read(data)

    @property
    def shown_json(self) -> str:
        return json.dumps(self.shown)

    def _read(self, data: Mapping) -> None:
        keys, values = data.getlist("meta_key"), data.getlist("meta_value")
        originals = data.getlist("meta_original") or [""] * len(keys)
        shown = _shown_metadata(data.get("meta_shown", "{}"))
        if shown is None or not (len(keys) == len(values) == len(originals)):
            self.error = self.INCOMPLETE
            return
        rows = [MetadataRow(o.strip(), k.strip(), v) for o, k, v in zip(originals, keys, values, strict=True)]
        if "meta_shown" not in data and any(row.original for row in rows):
            self.error = self.INCOMPLETE  # rows filled from metadata must say what it was
            return
        self.shown, self.rows = shown, rows

    def is_valid(self) -> bool:
        if not self.bound or self.error:
            return False
        desired: dict = {}
        for row in self.rows:
            self._read_row(row, desired)
        if any(row.error for row in self.rows):
            return False
        try:
            self.changes = check_metadata(metadata_changes(self.shown, desired))
        except BadMessage as exc:
            self.error = exc.message
            return False
        return True

    @staticmethod
    def _read_row(row: MetadataRow, desired: dict) -> None:
        if not row.key:
            if row.value.strip() and not row.original:
                row.error = "give this value a name"
            return  # a cleared name: the entry is not wanted any more, so it is removed
        if len(row.key) > MAX_METADATA_KEY:
            row.error = f"names are at most {MAX_METADATA_KEY} characters"
            return
        if row.key in desired:
            row.error = f"the name {row.key!r} is used twice"
            return
        try:
            value = parse_value(row.value)
        except forms.ValidationError as exc:
            row.error = exc.messages[0]
            value = row.value  # kept, so a second row with this name is still reported
        desired[row.key] = value
