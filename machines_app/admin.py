"""Machines in the admin: read with line numbers, edit to save a new version, versions never change.

Saving goes through `machines_app.services.save_machine`, the same path as the API and the
machines folder, so the admin shows the validator's own messages ("line 12: states.X…: …") and
can never store an invalid machine or alter a version a stack is pinned to.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from cloudseam_site.accounts.admin_roles import RoleAdminMixin
from cloudseam_site.accounts.models import ROLE_ADMIN
from machines_app import spec
from machines_app.models import Machine, MachineVersion
from machines_app.services import InvalidMachine, save_machine, validate_text


def numbered_yaml(text: str) -> str:
    """YAML as HTML with line numbers, so "line 12" in a message can be found at a glance."""
    lines = text.splitlines() or [""]
    body = format_html_join(
        "\n", '<span id="L{0}"><span class="ln">{0}</span>{1}</span>', ((n, line) for n, line in enumerate(lines, 1))
    )
    return format_html('<pre class="cloudseam-yaml">{}</pre>', body)


class MachineAdminForm(forms.ModelForm):
    """Name (when adding) and the YAML of the new version, checked by the machine validator."""

    yaml = forms.CharField(
        label="YAML",
        strip=False,  # the content hash is of the exact text; stripping would make a "new" version
        widget=forms.Textarea(attrs={"rows": 30, "cols": 100, "class": "cloudseam-yaml-editor",
                                     "spellcheck": "false", "wrap": "off"}),
        help_text="Saving creates a new version when the content changed. Running stacks stay on their "
                  "version until you move them (Stacks → action \"Move to the machine's newest version\").",
    )

    class Meta:
        model = Machine
        fields = ["name"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.warnings: tuple[spec.Problem, ...] = ()
        current = self.instance.current_version if self.instance.pk else None
        if current is not None:
            self.fields["yaml"].initial = current.yaml_text

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        problem = spec.check_machine_name(name)
        if problem:
            raise ValidationError(problem)
        return name

    def clean_yaml(self) -> str:
        text = self.cleaned_data["yaml"].replace("\r\n", "\n")  # browsers send CRLF; files use LF
        result = validate_text(text)
        if not result.valid:
            raise ValidationError([problem.format() for problem in result.errors])
        self.warnings = result.warnings
        return text


class MachineVersionInline(RoleAdminMixin, admin.TabularInline):
    model = MachineVersion
    fields = ("number", "created_at", "created_by", "source", "content_hash")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-number",)


@admin.register(Machine)
class MachineAdmin(RoleAdminMixin, admin.ModelAdmin):
    add_role = change_role = ROLE_ADMIN
    operate_role = None
    form = MachineAdminForm
    inlines = [MachineVersionInline]
    list_display = ("name", "current_version", "version_count", "active_stacks", "updated_at")
    list_select_related = ("current_version",)
    search_fields = ("name",)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # a new machine has no versions yet

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["name", "yaml"]})]
        fields = ["name", "current_version", "updated_at", "active_stacks", "current_yaml"]
        if self.has_change_permission(request, obj):
            fields.append("yaml")
        return [(None, {"fields": fields})]

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("name", "current_version", "updated_at", "active_stacks", "current_yaml")

    @admin.display(description="versions")
    def version_count(self, obj: Machine) -> int:
        return obj.versions.count()

    @admin.display(description="active stacks")
    def active_stacks(self, obj: Machine) -> int:
        return obj.stacks.filter(removed_at__isnull=True).count()

    @admin.display(description="current YAML")
    def current_yaml(self, obj: Machine) -> str:
        return numbered_yaml(obj.current_version.yaml_text) if obj.current_version else "-"

    def save_model(self, request, obj, form, change) -> None:
        try:
            saved = save_machine(obj.name, form.cleaned_data["yaml"], actor=request.user.get_username(),
                                 source="admin")
        except InvalidMachine as exc:  # only when the document changed under us; the form checked it
            request.cloudseam_error = str(exc)
            return
        obj.pk = saved.version.machine_id
        obj.refresh_from_db()
        obj._state.adding = False
        request.cloudseam_saved = saved
        for warning in saved.warnings:
            self.message_user(request, f"Warning: {warning.format()}", messages.WARNING)

    def save_related(self, request, form, formsets, change) -> None:
        """Versions are immutable; the only thing saved is the new version above."""

    def construct_change_message(self, request, form, formsets, add=False):
        return ""  # the inline was not saved (see save_related); log_* write their own message

    def log_addition(self, request, obj, message):
        return None if getattr(request, "cloudseam_error", None) else super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        saved = getattr(request, "cloudseam_saved", None)
        if saved is None or not saved.created:
            return None
        return super().log_change(request, obj, f"Saved version {saved.version.number}.")

    def _saved_response(self, request: HttpRequest, obj: Machine) -> HttpResponse:
        error = getattr(request, "cloudseam_error", None)
        if error:
            self.message_user(request, f"Nothing was saved: {error}", messages.ERROR)
            return HttpResponseRedirect(request.path)
        saved = request.cloudseam_saved
        if saved.created:
            self.message_user(request, f"Saved {obj.name} version {saved.version.number}.", messages.SUCCESS)
        else:
            self.message_user(
                request, f"{obj.name} already has this content as version {saved.version.number}; it is now "
                         "the current version and no new version was made.", messages.INFO)
        return HttpResponseRedirect(reverse("admin:machines_app_machine_change", args=[obj.pk]))

    def response_add(self, request, obj, post_url_continue=None) -> HttpResponse:
        return self._saved_response(request, obj)

    def response_change(self, request, obj) -> HttpResponse:
        return self._saved_response(request, obj)


@admin.register(MachineVersion)
class MachineVersionAdmin(RoleAdminMixin, admin.ModelAdmin):
    """Versions are what stacks are pinned to: nobody edits or deletes them."""

    operate_role = None
    list_display = ("machine", "number", "is_current", "created_at", "created_by", "source", "pinned_stacks")
    list_filter = ("machine", "source")
    list_select_related = ("machine",)
    search_fields = ("machine__name", "created_by", "content_hash")
    fields = ("machine", "number", "is_current", "created_at", "created_by", "source", "content_hash",
              "pinned_stacks", "yaml")
    readonly_fields = fields

    @admin.display(description="current", boolean=True)
    def is_current(self, obj: MachineVersion) -> bool:
        return obj.machine.current_version_id == obj.pk

    @admin.display(description="active stacks pinned")
    def pinned_stacks(self, obj: MachineVersion) -> int:
        return obj.stacks.filter(removed_at__isnull=True).count()

    @admin.display(description="YAML")
    def yaml(self, obj: MachineVersion) -> str:
        return numbered_yaml(obj.yaml_text)
