"""Forms of the stack pages: dashboard filters, the new-stack form, the actions, metadata rows.

They only check what a person typed and turn it into the fields of an event message; whether the
event is accepted is the service's decision (`stacks.services`), so the page and the API give the
same answer. Metadata is typed as rows of name and value; a value is read as JSON when it looks
like JSON, so `true`, `42` and `null` keep their types (a machine may test `healthy is True`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.db.models import QuerySet

from cloudseam_site import strict_json
from machines_app.spec.model import RETRY_FAILED_TASKS, RETRY_PENDING_TASKS, TASK_COMPLETED, TASK_ERROR
from stacks.messages import (
    EVENT_RE,
    MAX_DESCRIPTION,
    MAX_METADATA_KEY,
    STACK_ID_RE,
    TASK_NAME_RE,
    BadMessage,
    check_metadata,
)
from stacks.models import DEFAULT_IDLE_HOURS, MAX_IDLE_HOURS, QUICK_FILTERS, Stack

METADATA_HELP = (
    'Values are read as JSON when they look like it (true, 42, null, "quoted text"); anything else is '
    "plain text. Clear a name to remove that entry."
)
_LOOKS_LIKE_JSON = re.compile(r'^(true|false|null|-?\d[\d.eE+-]*|["{\[].*)$', re.DOTALL)

DASHBOARD_SORTS = {
    "id": ("key",),
    "-id": ("-key",),
    "machine": ("machine__name", "key"),
    "state": ("state", "key"),
    "updated": ("updated_at", "key"),
    "-updated": ("-updated_at", "key"),
}
SORT_LABELS = {
    "id": "Stack id (A–Z)",
    "-id": "Stack id (Z–A)",
    "machine": "Machine",
    "state": "State",
    "-updated": "Last change (newest first)",
    "updated": "Last change (oldest first)",
}


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


# --- dashboard and removed stacks -----------------------------------------------------------------


class StackFilterForm(forms.Form):
    """Search by id, filter by machine, state and quick filter (failed, waiting, running, idle), sort.

    Unknown machine and state values simply match nothing; an unknown quick filter or a bad number
    of idle hours is ignored (the page shows every stack, and says why beside the field).
    """

    q = forms.CharField(required=False, max_length=100, label="Search by id")
    machine = forms.CharField(required=False, max_length=63)
    state = forms.CharField(required=False, max_length=63)
    status = forms.ChoiceField(required=False, choices=[("", "all"), *QUICK_FILTERS.items()])
    idleHours = forms.IntegerField(  # the URL's name, as in the API
        required=False, min_value=1, max_value=MAX_IDLE_HOURS, label="Idle longer than (hours)")
    sort = forms.ChoiceField(required=False, choices=list(SORT_LABELS.items()))

    FILTERS = ("q", "machine", "state", "status", "idleHours")

    def value(self, name: str):
        self.is_valid()  # a bad field is left out of cleaned_data; the others still apply
        return self.cleaned_data.get(name) or ""

    @property
    def idle_hours(self) -> int:
        return self.value("idleHours") or DEFAULT_IDLE_HOURS

    def search(self, stacks: QuerySet[Stack], *, status: bool = True) -> QuerySet[Stack]:
        """The stacks these filters match (`status=False`: all but the quick filter, for its counts)."""
        return stacks.search(q=self.value("q"), machine=self.value("machine"), state=self.value("state"),
                             status=self.value("status") if status else "", idle_hours=self.idle_hours)

    def apply(self, stacks: QuerySet[Stack]) -> QuerySet[Stack]:
        return self.search(stacks).order_by(*DASHBOARD_SORTS[self.value("sort") or "id"])

    def filters(self) -> dict[str, str]:
        """The filter values as they go back into a URL (empty ones left out)."""
        return {name: str(self.value(name)) for name in self.FILTERS if self.value(name)}


# --- actions ----------------------------------------------------------------------------------------


class EventForm(forms.Form):
    """One event button; `confirm` carries the typed stack id for events that end the stack."""

    event = forms.RegexField(regex=EVENT_RE, max_length=63)
    confirm = forms.CharField(required=False, max_length=63, strip=True)


class RetryForm(forms.Form):
    which = forms.ChoiceField(choices=[("failed", "failed"), ("pending", "pending")])

    @property
    def event(self) -> str:
        return RETRY_FAILED_TASKS if self.cleaned_data["which"] == "failed" else RETRY_PENDING_TASKS


class TaskResultForm(forms.Form):
    """Mark an external task done, or failed with a reason (the reason is what people will read)."""

    task = forms.RegexField(regex=TASK_NAME_RE, max_length=63)
    outcome = forms.ChoiceField(choices=[("done", "done"), ("failed", "failed")])
    reason = forms.CharField(required=False, max_length=MAX_DESCRIPTION)

    def clean(self) -> dict:
        data = super().clean()
        if data.get("outcome") == "failed" and not data.get("reason"):
            self.add_error("reason", "say why the task failed; the reason is shown on the task and in the history")
        return data

    @property
    def event(self) -> str:
        return TASK_COMPLETED if self.cleaned_data["outcome"] == "done" else TASK_ERROR


class NewStackForm(forms.Form):
    """A new stack: its id, its machine, the first event (one INIT accepts) and metadata rows."""

    stack_id = forms.RegexField(
        regex=STACK_ID_RE,
        max_length=63,
        label="Stack id",
        error_messages={
            "invalid": "use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        },
    )
    machine = forms.ChoiceField(label="Machine")
    event = forms.CharField(max_length=63, label="First event")

    def __init__(self, data: Mapping | None = None, *, first_events: Mapping[str, list[str]], **kwargs):
        super().__init__(data, **kwargs)
        self.first_events = first_events
        self.fields["machine"].choices = [(name, name) for name in first_events]
        self.metadata = MetadataRows(data, blank_rows=2)

    def clean_stack_id(self) -> str:
        stack_id = self.cleaned_data["stack_id"]
        if Stack.objects.active().filter(key=stack_id).exists():
            raise forms.ValidationError(f"stack {stack_id} already exists; pick another id or open that stack")
        return stack_id

    def clean(self) -> dict:
        data = super().clean()
        machine, event = data.get("machine"), data.get("event")
        if machine and event and event not in self.first_events.get(machine, []):
            accepted = ", ".join(self.first_events.get(machine, [])) or "none"
            self.add_error("event", f"a new {machine} stack accepts only: {accepted}")
        if self.is_bound and not self.metadata.is_valid():
            self.add_error(None, self.metadata.error or "fix the metadata rows marked below")
        return data
