"""Routes for logging in, "My tokens", the admins-only security pages and django-rq.

Included at the root of `cloudseam_site/urls.py` before the admin and `django.contrib.auth.urls`,
so the throttled login and the admins-only wrapping of `/admin/rq/` take precedence.

django-rq's views only require `is_staff`; a staff viewer or operator must not empty queues or
stop jobs, so every one of its views (including the JSON stats it links to) is wrapped here.
"""

from __future__ import annotations

from django.shortcuts import redirect
from django.urls import include, path, re_path
from django.urls.resolvers import URLPattern
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

from cloudseam_site.accounts import people_views, views


def _rq_patterns() -> list[URLPattern]:
    api = [URLPattern(p.pattern, views.admins_only(p.callback), p.default_args, p.name)
           for p in get_api_urlpatterns()]
    return api + get_admin_urlpatterns(view_wrapper=views.admins_only)


urlpatterns = [
    path("accounts/login/", views.login_view, name="login"),
    path("tokens/", views.token_list, name="tokens-list"),
    path("tokens/new/", views.token_create, name="tokens-create"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="tokens-revoke"),
    path("people/", people_views.people_list, name="people-list"),
    path("people/add/", people_views.person_add, name="people-add"),
    path("people/<int:user_id>/", people_views.person_detail, name="people-detail"),
    path("people/<int:user_id>/role/", people_views.person_role, name="people-role"),
    path("people/<int:user_id>/machines/", people_views.person_machines, name="people-machines"),
    path("people/<int:user_id>/active/", people_views.person_active, name="people-active"),
    path("people/<int:user_id>/tokens/revoke/", people_views.person_revoke, name="people-revoke"),
    path("admin/security/failed-logins/", views.failed_logins, name="security-failed-logins"),
    path("admin/rq/", include((_rq_patterns(), "django_rq"))),
    # Bookmarks from before tokens and machine limits moved out of the stacks app.
    re_path(r"^admin/stacks/(?P<rest>(?:apitoken|machineaccess|loginfailure)/.*)$",
            lambda request, rest: redirect(f"/admin/accounts/{rest}", permanent=True)),
]
