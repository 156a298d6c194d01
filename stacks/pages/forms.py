"""Forms of the stack pages: dashboard filters, the new-stack form and the actions.

They only check what a person typed and turn it into the fields of an event message; whether the
event is accepted is the service's decision (`stacks.services`), so the page and the API give the
same answer. Metadata is typed as rows of name and value; a value is read as JSON when it looks
like JSON, so `true`, `42` and `null` keep their types (a machine may test `healthy is True`).
"""

from __future__ import annotations

from collections.abc import Mapping

from django import forms
from django.db.models import QuerySet

from machines_app.spec.model import RETRY_FAILED_TASKS, RETRY_PENDING_TASKS, TASK_COMPLETED, TASK_ERROR
from stacks.messages import (
    EVENT_RE,
    MAX_DESCRIPTION,
    STACK_ID_RE,
    TASK_NAME_RE,
)
from stacks.metadata_editor import MetadataRows
from stacks.models import DEFAULT_IDLE_HOURS, MAX_IDLE_HOURS, QUICK_FILTERS, Stack

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
