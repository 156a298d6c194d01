"""The "My tokens" page: people create and revoke their own API tokens.

A new token is shown once, in the response to the form that created it (no redirect, no session
message), so it is never stored anywhere but in the person's hands; the database keeps its hash.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from stacks import audit
from stacks.admin_forms import MyTokenForm
from stacks.models import ApiToken
from stacks.permissions import user_role


def _render_list(request: HttpRequest, form: MyTokenForm, status: int = 200) -> HttpResponse:
    now = timezone.now()
    tokens = [(t, audit.token_status(t, now)) for t in ApiToken.objects.filter(user=request.user)]
    context = {"form": form, "tokens": tokens, "user_role": user_role(request.user)}
    return render(request, "tokens/list.html", context, status=status)


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
    token, raw = audit.issue_token(request.user, request.user, form.cleaned_data["name"],
                                   form.cleaned_data["role"], expires_at)
    return render(request, "tokens/created.html", {"token": token, "raw": raw})


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    if audit.revoke_tokens(request.user, ApiToken.objects.filter(pk=token.pk)):
        messages.success(request, f"Token {token.name} is revoked; requests using it now get 401.")
    else:
        messages.info(request, f"Token {token.name} was already revoked.")
    return redirect("tokens-list")
