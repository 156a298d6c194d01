"""Inbound hooks (admins only: they hold secrets) and the deliveries received (read-only)."""

from __future__ import annotations

from django.contrib import admin

from cloudseam_site.accounts.admin_roles import RoleAdminMixin
from cloudseam_site.accounts.models import ROLE_ADMIN
from stacks.hooks.models import HookDelivery, InboundHook


@admin.register(InboundHook)
class InboundHookAdmin(RoleAdminMixin, admin.ModelAdmin):
    view_role = add_role = change_role = delete_role = ROLE_ADMIN
    operate_role = None
    list_display = ("name", "source", "machine", "stack_id_template", "on_open", "on_update", "on_close", "enabled")
    list_filter = ("source", "enabled")
    search_fields = ("name",)
    fields = ("name", "source", "secret", "machine", "stack_id_template", "on_open", "on_update", "on_close",
              "enabled")


@admin.register(HookDelivery)
class HookDeliveryAdmin(RoleAdminMixin, admin.ModelAdmin):
    """What each sender delivered and what it was answered; evidence, so nobody edits it."""

    operate_role = None
    list_display = ("received_at", "hook", "delivery_id", "kind", "stack_key", "status_code")
    list_filter = ("hook", "status_code")
    search_fields = ("delivery_id", "stack_key")
    show_full_result_count = False
    fields = ("received_at", "hook", "delivery_id", "kind", "stack_key", "status_code", "response")
    readonly_fields = fields
