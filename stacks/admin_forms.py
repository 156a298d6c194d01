"""Forms and permission building blocks of the admin console (stacks and machines admin).

The admin is one more door into CloudSeam, so it obeys the same roles as the API and pages:
`is_staff` lets a person open `/admin/`, and their CloudSeam role decides what they may do there
(viewer: look; operator: act on stacks and tasks, edit metadata; admin: machines, tokens, users).
Django's per-model permissions are not used for CloudSeam's models, so there is one rule to learn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from cloudseam_site import strict_json
from stacks.forms import METADATA_HELP, metadata_changes, parse_value
from stacks.forms import format_value as cell_text
from stacks.messages import BadMessage, check_metadata

# --- metadata as a key/value table --------------------------------------------------------------

NEW_ROWS = 3


@dataclass
class MetadataEdit:
    """What the person saw and what they want; the difference is what gets sent."""

    original: dict
    desired: dict = field(default_factory=dict)

    def changes(self) -> dict:
        """Keys to set and keys to remove (None), relative to what was on screen."""
        return metadata_changes(self.original, self.desired)


@dataclass
class _Rows:
    original: dict
    rows: list[tuple[str, str, str]]  # the key the row was shown with ("" for a new row), key, value


class MetadataTableWidget(forms.Widget):
    """Rows of key and value, plus a few empty rows for new keys; clearing a key removes it.

    Rendered in Python so it needs no template engine configuration, and the metadata shown is
    kept in a hidden field so the save can send only what this person changed.
    """

    def format_value(self, value) -> _Rows:
        if isinstance(value, _Rows):
            return value
        shown = value if isinstance(value, dict) else {}
        return _Rows(dict(shown), [(k, k, cell_text(v)) for k, v in shown.items()])

    def value_from_datadict(self, data, files, name) -> _Rows:
        try:
            original = strict_json.loads(data.get(f"{name}-original") or "{}")
        except (ValueError, RecursionError):
            original = {}
        count = data.get(f"{name}-rows", "0")
        count = min(int(count), 500) if count.isdigit() else 0
        rows = [(data.get(f"{name}-was-{i}", ""), data.get(f"{name}-key-{i}", ""), data.get(f"{name}-value-{i}", ""))
                for i in range(count)]
        return _Rows(original if isinstance(original, dict) else {}, rows)

    def render(self, name, value, attrs=None, renderer=None) -> str:
        shown = self.format_value(value)
        rows = [*[row for row in shown.rows if any(row)], *[("", "", "")] * NEW_ROWS]  # no blanks piling up
        body = format_html_join(
            "",
            '<tr><td><input type="hidden" name="{0}-was-{1}" value="{2}">'
            '<input type="text" name="{0}-key-{1}" value="{3}" aria-label="key {1}"></td>'
            '<td><input type="text" name="{0}-value-{1}" value="{4}" size="60" aria-label="value {1}"></td></tr>',
            ((name, i, was, key, text) for i, (was, key, text) in enumerate(rows)),
        )
        return format_html(
            '<table class="cloudseam-metadata"><thead><tr><th>key</th><th>value</th></tr></thead>'
            "<tbody>{}</tbody></table>"
            '<input type="hidden" name="{}-rows" value="{}">'
            '<input type="hidden" name="{}-original" value="{}">',
            body, name, len(rows), name, json.dumps(shown.original),
        )


class MetadataTableField(forms.Field):
    """Turns the table into a flat dict, checked by the same rules as the pages and the API.

    Values are read by the pages' own `parse_value` and checked by `check_metadata`, so a value
    means the same thing and gets the same refusal whichever door it came through.
    """

    widget = MetadataTableWidget

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", f"{METADATA_HELP} Metadata is flat: objects and lists are refused.")
        super().__init__(**kwargs)

    def clean(self, value: _Rows) -> MetadataEdit:
        desired: dict = {}
        for number, (was, raw_key, text) in enumerate(value.rows, start=1):
            key = raw_key.strip()
            if not key:
                if text.strip() and not was:
                    raise ValidationError(f"row {number} has a value but no key; give it a key or clear it")
                continue  # a cleared key: removed (the difference with the original says so)
            if key in desired:
                raise ValidationError(f"key {key!r} appears twice; each key may appear once")
            try:
                parsed = parse_value(text)
            except ValidationError as exc:
                raise ValidationError(f"{key}: {exc.messages[0]}") from None
            if parsed is not None:  # null removes the key, as in an event message
                desired[key] = parsed
        try:
            checked = check_metadata(desired)
        except BadMessage as exc:
            raise ValidationError(exc.message) from None
        return MetadataEdit(original=value.original, desired=checked)

    def has_changed(self, initial, data) -> bool:
        try:
            return bool(self.clean(data).changes())
        except (ValidationError, AttributeError):
            return True


def metadata_table_html(metadata: dict) -> str:
    """The read-only table viewers see instead of the editor."""
    if not metadata:
        return format_html("<em>{}</em>", "no metadata")
    rows = format_html_join("", "<tr><td>{}</td><td><code>{}</code></td></tr>",
                            ((k, cell_text(v)) for k, v in sorted(metadata.items())))
    return format_html('<table class="cloudseam-metadata"><tbody>{}</tbody></table>', rows)


class StackMetadataForm(forms.ModelForm):
    """The only editable part of a stack in the admin; state and tasks change through events.

    The table is not the model field itself: the form never writes the stack, the admin sends
    the difference through `stacks.services.update_metadata`.
    """

    metadata_table = MetadataTableField(label="Metadata")

    class Meta:
        fields: list[str] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["metadata_table"].initial = dict(self.instance.metadata or {})


# --- sending an event to several stacks ---------------------------------------------------------


class SendEventForm(forms.Form):
    """The intermediate page of the "send an event" action: only events some selected stack accepts."""

    event = forms.ChoiceField(label="Event", widget=forms.RadioSelect)

    def __init__(self, *args, counts: dict[str, int], total: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["event"].choices = [
            (event, f"{event} (accepted by {count} of {total} selected stacks)") for event, count in counts.items()
        ]
