"""Forms and permission building blocks of the admin console (stacks and machines admin).

The admin is one more door into CloudSeam, so it obeys the same roles as the API and pages:
`is_staff` lets a person open `/admin/`, and their CloudSeam role decides what they may do there
(viewer: look; operator: act on stacks and tasks, edit metadata; admin: machines, tokens, users).
Django's per-model permissions are not used for CloudSeam's models, so there is one rule to learn.
"""

from __future__ import annotations

from django import forms
from django.utils.html import format_html, format_html_join

from stacks.metadata_editor import format_value as cell_text

# --- metadata, read-only ------------------------------------------------------------------------


def metadata_table_html(metadata: dict) -> str:
    """The read-only table viewers see instead of the editor."""
    if not metadata:
        return format_html("<em>{}</em>", "no metadata")
    rows = format_html_join("", "<tr><td>{}</td><td><code>{}</code></td></tr>",
                            ((k, cell_text(v)) for k, v in sorted(metadata.items())))
    return format_html('<table class="cloudseam-metadata"><tbody>{}</tbody></table>', rows)


# --- sending an event to several stacks ---------------------------------------------------------


class SendEventForm(forms.Form):
    """The intermediate page of the "send an event" action: only events some selected stack accepts."""

    event = forms.ChoiceField(label="Event", widget=forms.RadioSelect)

    def __init__(self, *args, counts: dict[str, int], total: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["event"].choices = [
            (event, f"{event} (accepted by {count} of {total} selected stacks)") for event, count in counts.items()
        ]
