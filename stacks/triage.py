"""Triage on the dashboard: the quick filters with their counts, and what bulk actions may send.

The filters themselves are `StackQuerySet.search(status=…)` (the one stack search); this module
only shapes them for the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django import forms

from machines_app.models import Machine
from stacks import bulk
from stacks.messages import EVENT_RE, MAX_METADATA_KEY, BadMessage, check_metadata
from stacks.metadata_editor import parse_value
from stacks.models import QUICK_FILTERS, STATUS_IDLE


@dataclass(frozen=True)
class QuickFilter:
    name: str  # "" for every stack
    label: str
    count: int | None
    url: str  # the dashboard with this quick filter and the other filters kept
    active: bool


def quick_filters(filters: dict[str, str], counts: dict[str, int], idle_hours: int) -> list[QuickFilter]:
    """"All" plus one link per quick filter, each keeping the search, machine, state and idle hours."""
    current = filters.get("status", "")
    kept = {k: v for k, v in filters.items() if k not in ("status", "page")}
    links = [QuickFilter("", "All", None, "?" + urlencode(kept), current == "")]
    for name, label in QUICK_FILTERS.items():
        shown = f"Idle > {idle_hours} h" if name == STATUS_IDLE else label
        links.append(QuickFilter(name, shown, counts[name], "?" + urlencode({**kept, "status": name}),
                                 current == name))
    return links


def bulk_events() -> list[str]:
    """The user events of every machine's current version, for the bulk "Send event" field."""
    events: set[str] = set()
    for machine in Machine.objects.filter(current_version__isnull=False).select_related("current_version"):
        events.update(machine.current_version.spec.events)
    return sorted(events)


# --- bulk actions ---------------------------------------------------------------------------------


class BulkActionForm(forms.Form):
    """What to do, and to which stacks: the ones ticked, or all that match the filters (number typed)."""

    action = forms.ChoiceField(choices=list(bulk.ACTIONS.items()),
                               error_messages={"required": "choose an action", "invalid_choice": "choose an action: "
                                               + ", ".join(bulk.ACTIONS.values())})
    scope = forms.ChoiceField(choices=[("selected", "selected"), ("all", "all")], required=False)
    confirm = forms.CharField(required=False, max_length=12, strip=True)
    event = forms.CharField(required=False, max_length=63, strip=True)
    meta_key = forms.CharField(required=False, max_length=MAX_METADATA_KEY, strip=True)
    meta_value = forms.CharField(required=False, max_length=10_000, strip=False)

    def clean(self) -> dict:
        data = super().clean()
        action = data.get("action")
        if action == bulk.SEND_EVENT and not EVENT_RE.fullmatch(data.get("event") or ""):
            self.add_error("event", "name the event to send, e.g. DESTROY (upper-case letters, digits and '-')")
        if action == bulk.UPDATE_METADATA:
            self._clean_metadata(data)
        return data

    def _clean_metadata(self, data: dict) -> None:
        if not data.get("meta_key"):
            self.add_error("meta_key", "name the metadata entry to set (a value of null removes it)")
            return
        try:
            value = parse_value(data.get("meta_value") or "")
            data["metadata"] = check_metadata({data["meta_key"]: value})
        except forms.ValidationError as exc:
            self.add_error("meta_value", exc)
        except BadMessage as exc:
            self.add_error("meta_value", exc.message)

    def first_error(self) -> str:
        return next((str(e) for errors in self.errors.values() for e in errors), "check the form")
