"""CloudSeam roles inside the Django admin, shared by every ModelAdmin of every app.

The admin is one more door into CloudSeam, so it obeys the same roles as the API and pages:
`is_staff` lets a person open `/admin/`, and their CloudSeam role decides what they may do there
(viewer: look; operator: act on stacks and tasks, edit metadata; admin: machines, tokens, users).
Django's per-model permissions are not used for CloudSeam's models, so there is one rule to learn.
"""

from __future__ import annotations

from django.http import HttpRequest

from cloudseam_site.accounts.models import ROLE_OPERATOR, ROLE_VIEWER
from cloudseam_site.accounts.roles import has_role


class RoleAdminMixin:
    """ModelAdmin permissions from CloudSeam roles; `None` means nobody, not even a superuser.

    History must stay unchangeable for everybody, which Django's superuser shortcut would defeat,
    so each kind of permission is answered here from the role alone.
    """

    view_role: str | None = ROLE_VIEWER
    add_role: str | None = None
    change_role: str | None = None
    delete_role: str | None = None
    operate_role: str | None = ROLE_OPERATOR  # admin actions that go through the services

    @staticmethod
    def _allowed(request: HttpRequest, role: str | None) -> bool:
        return role is not None and has_role(request, role)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request, self.view_role)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._allowed(request, self.view_role) or self.has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, *args) -> bool:  # inlines pass the parent
        return self._allowed(request, self.add_role)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._allowed(request, self.change_role)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._allowed(request, self.delete_role)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request, self.operate_role)


