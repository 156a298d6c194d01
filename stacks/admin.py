"""The Django admin as CloudSeam's operations console: stacks, tasks, history, tokens, users.

Nothing here writes a stack directly. Metadata edits and every action (retry, send an event, move
to the newest machine version) call `stacks.services`, so they are checked like any other event
and recorded in the stack's history with the admin user as actor. Who may do what follows the
roles (see `cloudseam_site.accounts.admin_roles.RoleAdminMixin`); history is read-only for everybody.
"""

from __future__ import annotations

from collections import Counter

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from cloudseam_site.accounts.admin_roles import RoleAdminMixin
from cloudseam_site.accounts.roles import Actor, request_actor
from machines_app.spec.model import RETRY_FAILED_TASKS, RETRY_PENDING_TASKS
from stacks import services
from stacks.admin_forms import (
    SendEventForm,
    metadata_table_html,
)
from stacks.bulk import for_each_stack
from stacks.metadata_editor import METADATA_HELP, MetadataRows
from stacks.models import ERROR, PENDING, Stack, StackEvent, Task, TaskAttempt
from stacks.runtime import queueing


def actor(request: HttpRequest) -> Actor:
    return request_actor(request)


def report(modeladmin: admin.ModelAdmin, request: HttpRequest, outcomes: list[tuple[str, str | None]],
           done: str) -> None:
    """One success line naming the stacks that worked, one error line per stack that did not."""
    ok = [key for key, error in outcomes if error is None]
    if ok:
        modeladmin.message_user(request, f"{done}: {', '.join(ok)}.", messages.SUCCESS)
    for key, error in outcomes:
        if error is not None:
            modeladmin.message_user(request, f"Stack {key}: {error}", messages.ERROR)  # the admin capitalises


# --- filters ------------------------------------------------------------------------------------


class RemovedFilter(admin.SimpleListFilter):
    """Active stacks by default: removed ones pile up over time but stay readable here."""

    title = "lifecycle"
    parameter_name = "lifecycle"

    def lookups(self, request, model_admin):
        return [("active", "active"), ("removed", "removed"), ("all", "all")]

    def choices(self, changelist):
        current = self.value() or "active"
        for value, label in self.lookup_choices:
            yield {
                "selected": current == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request, queryset):
        value = self.value() or "active"
        if value == "active":
            return queryset.filter(removed_at__isnull=True)
        if value == "removed":
            return queryset.filter(removed_at__isnull=False)
        return queryset


class FailedTasksFilter(admin.SimpleListFilter):
    title = "failed tasks"
    parameter_name = "failed"

    def lookups(self, request, model_admin):
        return [("yes", "has failed tasks"), ("no", "no failed tasks")]

    def queryset(self, request, queryset):
        failed = Exists(Task.objects.filter(stack=OuterRef("pk"), current=True, status=ERROR))
        if self.value() == "yes":
            return queryset.filter(failed)
        if self.value() == "no":
            return queryset.filter(~failed)
        return queryset


# --- stacks -------------------------------------------------------------------------------------


class TaskInline(RoleAdminMixin, admin.TabularInline):
    """The stack's current tasks; older task instances are on the Tasks list."""

    model = Task
    fields = ("name", "status", "attempts", "executor", "started_at", "finished_at", "error_message")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "current tasks"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(current=True).order_by("position")


@admin.register(Stack)
class StackAdmin(RoleAdminMixin, admin.ModelAdmin):
    """Stacks are read here; metadata is edited on its own page ("Edit metadata…"), like the page's
    editor, and every change goes through `stacks.services` as an event."""

    inlines = [TaskInline]
    list_display = ("key", "machine", "version", "state", "previous_state", "failed_tasks", "updated_at",
                    "removed_at")
    list_filter = (RemovedFilter, "machine", "state", FailedTasksFilter)
    list_select_related = ("machine", "machine_version")
    search_fields = ("key", "machine__name", "state")
    readonly_fields = ("key", "machine", "machine_version", "state", "previous_state", "history", "created_at",
                       "updated_at", "removed_at", "metadata_view")
    actions = ["retry_failed", "retry_pending", "send_event", "move_to_newest_version"]

    def get_queryset(self, request):
        failed = Count("tasks", filter=Q(tasks__current=True, tasks__status=ERROR))
        return super().get_queryset(request).annotate(failed_count=failed)

    def get_fieldsets(self, request, obj=None):
        return [
            (None, {"fields": ["key", "machine", "machine_version", "state", "previous_state", "history",
                               "created_at", "updated_at", "removed_at"]}),
            ("Metadata", {"fields": ["metadata_view"]}),
        ]

    def get_urls(self):
        edit = self.admin_site.admin_view(self.edit_metadata)
        return [path("<int:pk>/metadata/", edit, name="stacks_stack_metadata"), *super().get_urls()]

    @admin.display(description="version")
    def version(self, obj: Stack) -> int:
        return obj.machine_version.number

    @admin.display(description="failed tasks", ordering="failed_count")
    def failed_tasks(self, obj: Stack) -> int:
        return obj.failed_count

    @admin.display(description="history")
    def history(self, obj: Stack) -> str:
        url = reverse("admin:stacks_stackevent_changelist") + f"?stack__id__exact={obj.pk}"
        return format_html('<a href="{}">{} events</a>', url, obj.events.count())

    @admin.display(description="metadata")
    def metadata_view(self, obj: Stack) -> str:
        table = metadata_table_html(obj.metadata)
        if obj.removed or not self.has_operate_permission(self._request):
            return table
        link = format_html('<p><a class="button" href="{}">Edit metadata…</a></p>',
                           reverse("admin:stacks_stack_metadata", args=[obj.pk]))
        return format_html("{}{}", table, link)

    def get_form(self, request, obj=None, change=False, **kwargs):
        self._request = request  # metadata_view offers the editor only to those who may use it
        return super().get_form(request, obj, change, **kwargs)

    # Editing metadata: an intermediate page with the stack page's own editor.

    def edit_metadata(self, request: HttpRequest, pk: int) -> HttpResponse:
        stack = Stack.objects.filter(pk=pk).select_related("machine").first()
        if stack is None:
            raise Http404(f"there is no stack record {pk}")
        if not self.has_operate_permission(request):
            raise PermissionDenied("editing metadata needs the operator role")
        change_url = reverse("admin:stacks_stack_change", args=[stack.pk])
        if stack.removed:
            self.message_user(request, f"{stack.key} was removed; its metadata is kept as it was.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        if request.method != "POST":
            return self._metadata_page(request, stack, MetadataRows(shown=stack.metadata))
        rows = MetadataRows(request.POST)
        if not rows.is_valid():
            rows.error = rows.error or "nothing was saved: fix the rows marked below"
            return self._metadata_page(request, stack, rows, status=400)
        if not rows.changes:
            self.message_user(request, "The metadata was not changed.", messages.INFO)
            return HttpResponseRedirect(change_url)
        result = services.update_metadata(stack.key, rows.changes, actor=actor(request), source="admin")
        if not result.ok:
            rows.error = f"Nothing was saved: {result.body.get('error', 'refused')}"
            return self._metadata_page(request, stack, rows, status=result.status)
        self.log_change(request, stack, f"Changed metadata: {', '.join(sorted(rows.changes))}.")
        self.message_user(request, f"Metadata of {stack.key} saved ({', '.join(sorted(rows.changes))}); "
                                   "recorded in its history.", messages.SUCCESS)
        return HttpResponseRedirect(change_url)

    def _metadata_page(self, request: HttpRequest, stack: Stack, rows: MetadataRows, status: int = 200):
        context = {**self.admin_site.each_context(request), "title": f"Edit metadata of {stack.key}",
                   "opts": self.model._meta, "stack": stack, "rows": rows, "metadata_help": METADATA_HELP}
        response = TemplateResponse(request, "admin/stacks/stack/metadata.html", context, status=status)
        add_never_cache_headers(response)
        return response

    # Actions: each goes through the services, one stack at a time, and is reported per stack.

    @admin.action(description="Retry failed tasks", permissions=["operate"])
    def retry_failed(self, request, queryset) -> None:
        outcomes = for_each_stack(queryset, lambda key: services.send(
            key, RETRY_FAILED_TASKS, actor=actor(request), source="admin"))
        report(self, request, outcomes, "Failed tasks retried")

    @admin.action(description="Retry pending tasks", permissions=["operate"])
    def retry_pending(self, request, queryset) -> None:
        outcomes = for_each_stack(queryset, lambda key: services.send(
            key, RETRY_PENDING_TASKS, actor=actor(request), source="admin"))
        report(self, request, outcomes, "Pending tasks dispatched again")

    @admin.action(description="Move to the machine's newest version", permissions=["operate"])
    def move_to_newest_version(self, request, queryset) -> None:
        outcomes = for_each_stack(queryset, lambda key: services.upgrade_machine(
            key, actor=actor(request), source="admin"))
        report(self, request, outcomes, "Moved to the newest version")

    @admin.action(description="Send an event…", permissions=["operate"])
    def send_event(self, request, queryset) -> HttpResponse | None:
        rows = [self._event_row(stack) for stack in queryset.select_related("machine", "machine_version")]
        counts = Counter(event for row in rows for event in row["events"])
        if not counts:
            self.message_user(request, "None of the selected stacks accepts an event in its current state.",
                              messages.WARNING)
            return None
        ordered = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
        data = request.POST if request.POST.get("post") == "yes" else None
        form = SendEventForm(data, counts=ordered, total=len(rows))
        if form.is_valid():
            event = form.cleaned_data["event"]
            outcomes = for_each_stack([row["stack"] for row in rows], lambda key: services.send(
                key, event, actor=actor(request), source="admin"))
            report(self, request, outcomes, f"{event} applied")
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Send an event",
            "opts": self.model._meta,
            "rows": rows,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/stacks/stack/send_event.html", context)

    @staticmethod
    def _event_row(stack: Stack) -> dict:
        """The user events the stack's state accepts under the machine version it is pinned to."""
        if stack.removed:
            return {"stack": stack, "removed": True, "events": ()}
        machine = stack.machine_version.spec
        events = machine.accepted_events(stack.state) if stack.state in machine.states else ()
        return {"stack": stack, "removed": False, "events": events}


# --- tasks --------------------------------------------------------------------------------------


@admin.register(Task)
class TaskAdmin(RoleAdminMixin, admin.ModelAdmin):
    list_display = ("name", "stack", "state", "status", "executor", "attempts", "current", "started_at",
                    "finished_at", "duration")
    list_filter = ("status", "executor", ("stack__machine", admin.RelatedOnlyFieldListFilter), "current")
    list_select_related = ("stack",)
    search_fields = ("stack__key", "name", "error_message")
    fields = ("stack", "name", "state", "status", "current", "executor", "attempts", "error_message", "output",
              "created_at", "started_at", "finished_at", "heartbeat_at", "duration", "rq_job")
    readonly_fields = fields
    actions = ["retry"]

    @admin.display(description="duration")
    def duration(self, obj: Task) -> str:
        seconds = obj.duration_seconds
        return "" if seconds is None else f"{seconds:.1f} s"

    @admin.display(description="RQ job")
    def rq_job(self, obj: Task) -> str:
        return "-" if obj.executor == "external" else queueing.job_id(obj.id)

    @admin.display(description="output (last lines)")
    def output(self, obj: Task) -> str:
        return format_html("<pre>{}</pre>", obj.output_tail) if obj.output_tail else "-"

    @admin.action(description="Retry", permissions=["operate"])
    def retry(self, request, queryset) -> None:
        """Failed tasks are retried, else pending ones dispatched again, per stack.

        The services retry all failed (or pending) tasks of a stack together, which is what a
        person wants after fixing the cause; the message says so.
        """
        by_stack: dict[int, list[Task]] = {}
        for task in queryset.select_related("stack"):
            by_stack.setdefault(task.stack_id, []).append(task)
        outcomes = []
        for tasks in by_stack.values():
            stack = tasks[0].stack
            current = [t for t in tasks if t.current]
            if any(t.status == ERROR for t in current):
                event = RETRY_FAILED_TASKS
            elif any(t.status == PENDING for t in current):
                event = RETRY_PENDING_TASKS
            else:
                outcomes.append((stack.key, "the selected tasks are done or no longer current; nothing to retry"))
                continue
            outcomes.extend(for_each_stack([stack], lambda key, event=event: services.send(
                key, event, actor=actor(request), source="admin")))
        report(self, request, outcomes, "Sent to run again (a stack's failed tasks, or its pending ones if none "
                                        "failed)")


# --- history ------------------------------------------------------------------------------------


@admin.register(StackEvent)
class StackEventAdmin(RoleAdminMixin, admin.ModelAdmin):
    """Read-only for everybody, superusers included: history is evidence."""

    operate_role = None
    list_display = ("created_at", "stack_key", "event", "outcome", "source", "actor", "from_state", "to_state",
                    "short_error")
    list_filter = ("outcome", "source", "created_at")  # no per-event filter: DISTINCT over all history is slow
    search_fields = ("stack_key", "actor", "event", "error")
    show_full_result_count = False  # history only grows; skip the second COUNT(*) of every page
    fields = ("created_at", "stack", "stack_key", "event", "outcome", "source", "actor", "from_state", "to_state",
              "error", "metadata", "task_ref", "message_id", "status_code", "response")
    readonly_fields = fields

    @admin.display(description="error")
    def short_error(self, obj: StackEvent) -> str:
        return obj.error if len(obj.error) <= 80 else obj.error[:79] + "…"


# --- task attempts (the run record) ------------------------------------------------------------------


@admin.register(TaskAttempt)
class TaskAttemptAdmin(RoleAdminMixin, admin.ModelAdmin):
    """Read-only for everybody: attempts are the record of what ran (pruned by `prune_attempts`)."""

    operate_role = None
    list_display = ("started_at", "stack", "state", "task_name", "number", "executor", "outcome", "duration")
    list_filter = ("outcome", "executor")
    list_select_related = ("stack",)
    search_fields = ("stack__key", "task_name", "error")
    show_full_result_count = False
    fields = ("stack", "task", "state", "task_name", "executor", "number", "outcome", "error", "actor", "queued_at",
              "started_at", "finished_at", "duration", "line_count", "dropped_lines", "kept_output")
    readonly_fields = fields

    @admin.display(description="duration")
    def duration(self, obj: TaskAttempt) -> str:
        seconds = obj.duration_seconds
        return "" if seconds is None else f"{seconds:.1f} s"

    @admin.display(description="output (kept)")
    def kept_output(self, obj: TaskAttempt) -> str:
        return format_html("<pre>{}</pre>", obj.output[-20_000:]) if obj.output else "-"


# Admin pages of the stacks app's own packages.
from stacks.hooks import admin as hooks_admin  # noqa: E402, F401
from stacks.notifications import admin as notifications_admin  # noqa: E402, F401
