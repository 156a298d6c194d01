"""The People page (/people/), for admins: list, add, role, machine limits, active, tokens.

Thin views over `cloudseam_site.accounts.people`; every change is a plain POST form that redirects
back with a message (or shows the refusal with status 400/409), and is logged with LogEntry there.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from cloudseam_site.accounts import people
from cloudseam_site.accounts.models import ROLE_ADMIN, ROLE_VIEWER, ROLES
from cloudseam_site.accounts.roles import role_required


class InviteForm(forms.Form):
    username = forms.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLES, initial=ROLE_VIEWER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLES, error_messages={
        "invalid_choice": "choose a role: " + ", ".join(people.ROLE_NAMES), "required": "choose a role"})


class MachinesForm(forms.Form):
    limited = forms.BooleanField(required=False)
    machines = forms.MultipleChoiceField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = people.machine_model().objects.order_by("name").values_list("name", flat=True)
        self.fields["machines"].choices = [(n, n) for n in names]


def _first_error(form: forms.Form) -> str:
    return next((f"{field}: {e}" if field != "__all__" else str(e)
                 for field, errors in form.errors.items() for e in errors), "check the form")


def _list(request: HttpRequest, form: InviteForm, status: int = 200) -> HttpResponse:
    context = {"people": people.people(), "form": form, "roles": people.ROLE_NAMES}
    return render(request, "accounts/people/list.html", context, status=status)


def _person_or_404(user_id: int):
    return get_object_or_404(get_user_model(), pk=user_id)


def _detail(request: HttpRequest, user, error: str = "", status: int = 200) -> HttpResponse:
    context = {
        "person": people.person(user),
        "roles": people.ROLE_NAMES,
        "machines": MachinesForm().fields["machines"].choices,
        "tokens": people.token_rows(user),
        "error": error,
    }
    return render(request, "accounts/people/detail.html", context, status=status)


@role_required(ROLE_ADMIN)
@require_safe
def people_list(request: HttpRequest) -> HttpResponse:
    return _list(request, InviteForm())


@role_required(ROLE_ADMIN)
@require_POST
@never_cache
def person_add(request: HttpRequest) -> HttpResponse:
    """Add a person; the answer shows their one-time set-password link (not stored, not redirected)."""
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _list(request, form, status=400)
    data = form.cleaned_data
    try:
        user = people.invite(request.user, data["username"], data["email"], data["role"])
    except people.Refused as exc:
        form.add_error("username", str(exc))
        return _list(request, form, status=409)
    link = request.build_absolute_uri(people.set_password_path(user))
    return render(request, "accounts/people/invited.html", {"person": user, "role": data["role"], "link": link})


@role_required(ROLE_ADMIN)
@require_safe
def person_detail(request: HttpRequest, user_id: int) -> HttpResponse:
    return _detail(request, _person_or_404(user_id))


def _change(request: HttpRequest, user, change, done: str) -> HttpResponse:
    """Run one change; a refusal is the person's page again with the sentence (409)."""
    try:
        changed = change()
    except people.Refused as exc:
        return _detail(request, user, error=str(exc), status=409)
    messages.success(request, done if changed is not False else "Nothing to change.")
    if request.POST.get("next") == "list":
        return redirect("people-list")
    return redirect("people-detail", user_id=user.pk)


@role_required(ROLE_ADMIN)
@require_POST
def person_role(request: HttpRequest, user_id: int) -> HttpResponse:
    user = _person_or_404(user_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _detail(request, user, error=_first_error(form), status=400)
    role = form.cleaned_data["role"]
    return _change(request, user, lambda: people.set_role(request.user, user, role),
                   f"{user.get_username()} is now {'an' if role[0] in 'aeiou' else 'a'} {role}.")


@role_required(ROLE_ADMIN)
@require_POST
def person_machines(request: HttpRequest, user_id: int) -> HttpResponse:
    user = _person_or_404(user_id)
    form = MachinesForm(request.POST)
    if not form.is_valid():
        return _detail(request, user, error=_first_error(form), status=400)
    names = form.cleaned_data["machines"] if form.cleaned_data["limited"] else None
    shown = "every machine" if names is None else ", ".join(names) or "no machine"
    return _change(request, user, lambda: people.set_machines(request.user, user, names),
                   f"{user.get_username()} may change stacks of: {shown}.")


@role_required(ROLE_ADMIN)
@require_POST
def person_active(request: HttpRequest, user_id: int) -> HttpResponse:
    user = _person_or_404(user_id)
    active = request.POST.get("active") == "1"
    what = "reactivated" if active else "deactivated: they cannot log in and their tokens stop working"
    return _change(request, user, lambda: people.set_active(request.user, user, active),
                   f"{user.get_username()} is {what}.")


@role_required(ROLE_ADMIN)
@require_POST
def person_revoke(request: HttpRequest, user_id: int) -> HttpResponse:
    user = _person_or_404(user_id)
    ids = [int(i) for i in request.POST.getlist("token") if i.isascii() and i.isdigit()]
    if not ids:
        return _detail(request, user, error="choose the tokens to revoke", status=400)
    revoked = people.revoke(request.user, user, ids)
    names = ", ".join(t.name for t in revoked)
    return _change(request, user, lambda: bool(revoked),
                   f"Revoked {names}; requests using {'it' if len(revoked) == 1 else 'them'} now get 401.")
