from django.contrib import admin
from django.urls import include, path, re_path

from cloudseam_site import openapi
from cloudseam_site.api import api_not_found
from machines_app import api as machines_api
from stacks.api import run as run_api
from stacks.api import stacks as stacks_api
from stacks.hooks import views as hooks_views

api_patterns = [
    path("events", stacks_api.post_event, name="api-events"),
    path("stacks", stacks_api.list_stacks, name="api-stacks"),
    path("stacks/removed/<int:record>", stacks_api.removed_detail, name="api-removed-stack"),
    path("stacks/removed/<int:record>/history", stacks_api.removed_history, name="api-removed-stack-history"),
    path("stacks/removed/<int:record>/tasks", run_api.removed_tasks, name="api-removed-stack-tasks"),
    path("stacks/<str:stack_id>", stacks_api.stack_detail, name="api-stack"),
    path("stacks/<str:stack_id>/history", stacks_api.stack_history, name="api-stack-history"),
    path("stacks/<str:stack_id>/tasks", run_api.stack_tasks, name="api-stack-tasks"),
    path("tasks/<int:attempt_id>", run_api.attempt_detail, name="api-attempt"),
    path("tasks/<int:attempt_id>/output", run_api.attempt_output, name="api-attempt-output"),
    path("machines", machines_api.list_machines, name="api-machines"),
    path("machines/validate", machines_api.validate_machine, name="api-machines-validate"),
    path("machines/<str:name>", machines_api.machine_detail, name="api-machine"),
    path("machines/<str:name>/impact", machines_api.machine_impact, name="api-machine-impact"),
    path("openapi.json", openapi.openapi_view, name="api-openapi"),
    re_path(r"^.*$", api_not_found),
]

urlpatterns = [
    # First: the throttled login, "My tokens", and /admin/rq/ for admins only must win over the
    # admin's and Django's own routes.
    path("", include("cloudseam_site.accounts.urls")),
    path("", include("stacks.observability.urls")),  # /healthz, /readyz, /metrics
    path("api/", include(api_patterns)),
    path("hooks/<slug:name>", hooks_views.receive, name="hooks-receive"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("stacks.pages.urls")),
    path("machines/", include("machines_app.urls")),
]

handler404 = "stacks.pages.not_found.page_not_found"  # names the missing stack or machine and offers the way on
