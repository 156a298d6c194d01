"""Logging in (throttled, for `/accounts/login/` and `/admin/login/`) and the admins-only security pages.

Both login forms share one mixin, so guessing a password through the admin's login page is
throttled exactly like the normal one.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView, redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from stacks import audit, throttle
from stacks.models import ROLE_ADMIN
from stacks.permissions import has_role


class ThrottledLoginMixin:
    """Refuse a locked (username, address) before checking the password; count every failure."""

    request: HttpRequest | None
    cleaned_data: dict

    def clean(self) -> dict:
        username = self.cleaned_data.get("username") or ""
        ip = throttle.client_ip(self.request)
        if username and throttle.is_locked(username, ip):
            audit.login_failed(username, ip, locked=True)
            raise ValidationError(throttle.locked_message(), code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError:
            if username:
                count = throttle.record_failure(username, ip)
                audit.login_failed(username, ip, locked=count >= throttle.max_failures())
            raise
        throttle.clear(username, ip)
        return cleaned


class LoginForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass


login_view = LoginView.as_view(authentication_form=LoginForm)


def admins_only(view: Callable) -> Callable:
    """Admin-role users only: others are sent to log in (anonymous) or refused (403)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not has_role(request, ROLE_ADMIN):
            raise PermissionDenied("this page is for CloudSeam admins")
        return view(request, *args, **kwargs)

    return wrapper


@admins_only
def failed_logins(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Failed logins",
        "failures": audit.recent_login_failures(),
        "max_failures": throttle.max_failures(),
        "window_minutes": throttle.window_seconds() // 60,
    }
    return render(request, "admin/failed_logins.html", context)
