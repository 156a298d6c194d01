"""The access pages: logging in (throttled), "My tokens", and the admins-only security pages.

A new token is shown once, in the response to the form that created it (no redirect, no session
message), so it is never stored anywhere but in the person's hands; the database keeps its hash.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps

from django.contrib import admin, messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from cloudseam_site.accounts import audit, throttle, tokens
from cloudseam_site.accounts.forms import LoginForm, MyTokenForm
from cloudseam_site.accounts.models import ROLE_ADMIN, ApiToken
from cloudseam_site.accounts.roles import has_role, user_role

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


# --- My tokens ---------------------------------------------------------------------------------


def _render_list(request: HttpRequest, form: MyTokenForm, status: int = 200) -> HttpResponse:
    now = timezone.now()
    rows = [(t, tokens.token_status(t, now)) for t in ApiToken.objects.filter(user=request.user)]
    context = {"form": form, "tokens": rows, "user_role": user_role(request.user)}
    return render(request, "accounts/tokens/list.html", context, status=status)


@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    return _render_list(request, MyTokenForm(user=request.user))


@login_required
@require_POST
@never_cache
def token_create(request: HttpRequest) -> HttpResponse:
    form = MyTokenForm(request.POST, user=request.user)
    if not form.is_valid():
        return _render_list(request, form, status=400)
    days = form.cleaned_data["expires"]
    expires_at = None if days == "never" else timezone.now() + timedelta(days=int(days))
    token, raw = tokens.issue_token(request.user, request.user, form.cleaned_data["name"],
                                   form.cleaned_data["role"], expires_at)
    return render(request, "accounts/tokens/created.html", {"token": token, "raw": raw})


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    if tokens.revoke_tokens(request.user, ApiToken.objects.filter(pk=token.pk)):
        messages.success(request, f"Token {token.name} is revoked; requests using it now get 401.")
    else:
        messages.info(request, f"Token {token.name} was already revoked.")
    return redirect("tokens-list")
