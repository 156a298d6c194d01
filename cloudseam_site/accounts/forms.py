"""Forms of the access pages: the throttled login forms and the token forms (admin and "My tokens").

Both login forms share one mixin, so guessing a password through the admin's login page is
throttled exactly like the normal one.
"""

from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from cloudseam_site.accounts import audit, throttle
from cloudseam_site.accounts.models import ROLE_VIEWER, ROLES, ApiToken
from cloudseam_site.accounts.roles import RANK, user_role


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


def token_role_problem(user, role: str) -> str | None:
    """Why `user` may not hold a token of `role`, or None; a token never outranks its user."""
    if role not in dict(ROLES):
        return f"unknown role {role!r}; roles: {', '.join(dict(ROLES))}"
    has = user_role(user)
    if has is None:
        return f"{user.get_username()} has no CloudSeam role, so a token for them could do nothing"
    if RANK[role] > RANK[has]:
        return f"{user.get_username()} has the {has} role; a token cannot have more ({role})"
    return None


def roles_up_to(role: str | None) -> list[tuple[str, str]]:
    return [(name, label) for name, label in ROLES if RANK[name] <= RANK[role]]


class ApiTokenAdminForm(forms.ModelForm):
    """Admins create a token for any user; the raw token is shown once on the next page."""

    class Meta:
        model = ApiToken
        fields = ["user", "name", "role", "expires_at", "machines"]

    def clean(self) -> dict:
        cleaned = super().clean()
        user, role = cleaned.get("user"), cleaned.get("role")
        if user is not None and role:
            problem = token_role_problem(user, role)
            if problem:
                self.add_error("role", problem)
        return cleaned


EXPIRY_CHOICES = [("7", "in 7 days"), ("30", "in 30 days"), ("90", "in 90 days"), ("365", "in a year"),
                  ("never", "never")]


class MyTokenForm(forms.Form):
    """"My tokens": a person makes tokens for themselves, up to their own role."""

    name = forms.CharField(max_length=100, help_text="What it is for, e.g. \"CI deploys\".")
    role = forms.ChoiceField()
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, initial="90", label="Expires")

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["role"].choices = roles_up_to(user_role(user))
        self.fields["role"].initial = ROLE_VIEWER  # least privilege unless asked for more

    def clean_role(self) -> str:
        role = self.cleaned_data["role"]
        problem = token_role_problem(self.user, role)
        if problem:
            raise ValidationError(problem)
        return role

