"""Notification targets (admins only: they hold secrets) and deliveries (read-only, with "Send again")."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from cloudseam_site.accounts.admin_roles import RoleAdminMixin
from cloudseam_site.accounts.models import ROLE_ADMIN
from stacks.notifications import jobs
from stacks.notifications.models import FAILED, RETRYING, NotificationDelivery, NotificationTarget


@admin.register(NotificationTarget)
class NotificationTargetAdmin(RoleAdminMixin, admin.ModelAdmin):
    view_role = add_role = change_role = delete_role = ROLE_ADMIN
    operate_role = None
    list_display = ("name", "kind", "url_host", "enabled", "created_at")
    list_filter = ("kind", "enabled")
    search_fields = ("name",)
    fields = ("name", "kind", "url", "secret", "enabled")

    @admin.display(description="where")
    def url_host(self, obj: NotificationTarget) -> str:
        return obj.url.split("://", 1)[0] + "://…" if obj.kind != "webhook" else obj.url.split("?", 1)[0][:80]


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(RoleAdminMixin, admin.ModelAdmin):
    """Every notification and each attempt's answer; history, so nobody edits it."""

    list_display = ("created_at", "stack_key", "trigger", "state", "target_name", "status", "attempts", "status_code",
                    "short_error", "duration_ms")
    list_filter = ("status", "trigger", "target_name")
    search_fields = ("stack_key", "target_name")
    show_full_result_count = False
    fields = ("created_at", "stack", "stack_key", "trigger", "state", "target_name", "status", "attempts",
              "status_code", "error", "duration_ms", "finished_at", "answers", "payload")
    readonly_fields = fields
    actions = ("send_again",)

    @admin.display(description="error")
    def short_error(self, obj: NotificationDelivery) -> str:
        return obj.error if len(obj.error) <= 80 else obj.error[:79] + "…"

    @admin.action(description="Send the selected failed deliveries again", permissions=["operate"])
    def send_again(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(queryset.filter(status=FAILED).values_list("pk", flat=True))
        NotificationDelivery.objects.filter(pk__in=ids, status=FAILED).update(status=RETRYING)
        jobs.enqueue(ids)
        self.message_user(request, f"{len(ids)} deliveries queued again (failed ones only).", messages.SUCCESS)
