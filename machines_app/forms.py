"""The machine editor's form: a name (new machines only) and the YAML text.

The YAML is checked by `machines_app.services.save_machine` (which runs the validator), not here,
so the editor, the API and the machines folder refuse exactly the same documents. The form adds
one guard of its own: saving over a version someone else saved since the editor was opened needs
an explicit "save anyway".
"""

from __future__ import annotations

from django import forms

from machines_app import spec
from machines_app.models import Machine

MAX_YAML_CHARS = 200_000


class MachineForm(forms.Form):
    name = forms.CharField(max_length=63, label="Machine name",
                           help_text="Lower case, like a file name without .yml: qa-env")
    yaml_text = forms.CharField(widget=forms.Textarea, strip=False, max_length=MAX_YAML_CHARS, label="YAML")
    base_version = forms.IntegerField(required=False, widget=forms.HiddenInput)
    overwrite = forms.BooleanField(required=False, label="Save anyway, replacing the newer version")

    def __init__(self, *args, machine: Machine | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.machine = machine
        if machine is not None:
            self.fields["name"].required = False
            self.fields["name"].disabled = True
            self.fields["name"].initial = machine.name

    def clean_name(self) -> str:
        if self.machine is not None:
            return self.machine.name
        name = self.cleaned_data["name"].strip()
        problem = spec.check_machine_name(name)
        if problem:
            raise forms.ValidationError(problem)
        if Machine.objects.filter(name=name).exists():
            raise forms.ValidationError(f"machine {name} already exists; open it and choose Edit instead")
        return name

    def clean(self) -> dict:
        data = super().clean()
        current = self.machine.current_version if self.machine is not None else None
        base = data.get("base_version")
        if current is not None and base and base != current.number and not data.get("overwrite"):
            self.stale_version = current
            raise forms.ValidationError(
                f"{self.machine.name} was saved as version {current.number} by {current.created_by or 'someone'} "
                f"after you opened the editor (you started from version {base}); compare the versions, or tick "
                "“save anyway”"
            )
        return data
