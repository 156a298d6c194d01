"""The admin's doors for people and access: tokens, users, groups, machine limits, the admin log.

The admin site's own settings live here too (titles, the throttled login form), because who may
enter the admin is an access question. django-rq's dashboard is unregistered: it is served at
/admin/rq/ to admins only (see `cloudseam_site.accounts.urls`).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.db.models import Q, QuerySet
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django_rq.models import Dashboard

from cloudseam_site.accounts import tokens
from cloudseam_site.accounts.admin_roles import RoleAdminMixin
from cloudseam_site.accounts.forms import AdminLoginForm, ApiTokenAdminForm
from cloudseam_site.accounts.models import ROLE_ADMIN, ApiToken, MachineAccess

admin.site.site_header = "CloudSeam admin"
admin.site.site_title = "CloudSeam admin"
admin.site.index_title = "Operations console"
admin.site.login_form = AdminLoginForm  # the admin's login page is throttled like /accounts/login/

# django-rq registers its dashboard for every staff user; it lives at /admin/rq/, for admins only.
if admin.site.is_registered(Dashboard):
    admin.site.unregister(Dashboard)



# --- tokens -------------------------------------------------------------------------------------


class TokenStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request, queryset: QuerySet[ApiToken]):
        now = timezone.now()
        live = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        if self.value() == "active":
            return queryset.filter(live, revoked_at__isnull=True)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True).exclude(live)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(RoleAdminMixin, admin.ModelAdmin):
    """Admins create tokens for anybody (shown once) and revoke them; tokens are never edited or deleted."""

    view_role = add_role = operate_role = ROLE_ADMIN
    form = ApiTokenAdminForm
    autocomplete_fields = ("user",)
    list_display = ("name", "user", "role", "starts_with", "status", "created_at", "expires_at", "last_used_at",
                    "revoked_at")
    list_filter = ("role", TokenStatusFilter)
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__username")
    actions = ["revoke"]
    view_fields = ("name", "user", "role", "machine_list", "starts_with", "status", "created_at", "expires_at",
                   "last_used_at", "revoked_at")
    filter_horizontal = ("machines",)

    def get_fields(self, request, obj=None):
        return ["user", "name", "role", "expires_at", "machines"] if obj is None else list(self.view_fields)

    @admin.display(description="may change stacks of")
    def machine_list(self, obj: ApiToken) -> str:
        return ", ".join(m.name for m in obj.machines.all()) or "every machine its user may change"

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.view_fields

    @admin.display(description="starts with")
    def starts_with(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…"

    @admin.display(description="status")
    def status(self, obj: ApiToken) -> str:
        return tokens.token_status(obj)

    def save_model(self, request, obj, form, change) -> None:
        data = form.cleaned_data
        token, raw = tokens.issue_token(request.user, data["user"], data["name"], data["role"], data["expires_at"],
                                       machines=data.get("machines") or ())
        obj.pk, obj.key_hash, obj.prefix, obj.created_at = token.pk, token.key_hash, token.prefix, token.created_at
        obj._state.adding = False
        request.cloudseam_raw_token = raw

    def log_addition(self, request, obj, message):
        """`tokens.issue_token` already wrote the log entry, with more detail."""

    def response_add(self, request, obj, post_url_continue=None) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "API token created",
            "opts": self.model._meta,
            "token": obj,
            "raw": request.cloudseam_raw_token,
        }
        response = TemplateResponse(request, "admin/accounts/apitoken/created.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected tokens", permissions=["operate"])
    def revoke(self, request, queryset) -> None:
        revoked = tokens.revoke_tokens(request.user, queryset)
        if revoked:
            names = ", ".join(f"{t.name} ({t.user.get_username()})" for t in revoked)
            self.message_user(request, f"Revoked: {names}. Requests using them now get 401.", messages.SUCCESS)
        else:
            self.message_user(request, "The selected tokens were already revoked.", messages.INFO)


# --- the admin log, users and groups --------------------------------------------------------------


@admin.register(LogEntry)
class LogEntryAdmin(RoleAdminMixin, admin.ModelAdmin):
    """Django's record of admin changes (and of token creation/revocation), for admins to read."""

    view_role = ROLE_ADMIN
    operate_role = None
    list_display = ("action_time", "user", "action_flag", "content_type", "object_repr", "change_message_text")
    list_filter = ("action_flag", "content_type", "user")
    search_fields = ("object_repr", "change_message", "user__username")
    fields = ("action_time", "user", "action_flag", "content_type", "object_id", "object_repr",
              "change_message_text")
    readonly_fields = fields

    @admin.display(description="change")
    def change_message_text(self, obj: LogEntry) -> str:
        return obj.get_change_message()


class RoleUserAdmin(RoleAdminMixin, UserAdmin):
    """Managing people is the admin role's job; group membership is how roles are given."""

    view_role = add_role = change_role = delete_role = ROLE_ADMIN
    operate_role = None


class RoleGroupAdmin(RoleAdminMixin, GroupAdmin):
    view_role = add_role = change_role = delete_role = ROLE_ADMIN
    operate_role = None


for _model, _model_admin in ((get_user_model(), RoleUserAdmin), (Group, RoleGroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _model_admin)


@admin.register(MachineAccess)
class MachineAccessAdmin(RoleAdminMixin, admin.ModelAdmin):
    """Admins limit a user to changing stacks of some machines (e.g. operators of qa-env only)."""

    view_role = add_role = change_role = delete_role = ROLE_ADMIN
    operate_role = None
    autocomplete_fields = ("user",)
    filter_horizontal = ("machines",)
    list_display = ("user", "machine_names")
    search_fields = ("user__username",)

    @admin.display(description="may change stacks of")
    def machine_names(self, obj: MachineAccess) -> str:
        return ", ".join(m.name for m in obj.machines.all()) or "no machine"
