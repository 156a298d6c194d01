"""Stack pages, mounted at the site root (DESIGN §6.6). `removed/` and `new/` come before `<id>/`."""

from django.urls import path, re_path

from stacks.pages import run as run_views
from stacks.pages import triage as triage_views
from stacks.pages import upgrades as upgrades_views
from stacks.pages import views

STACK_ID = r"(?P<stack_id>[A-Za-z0-9][A-Za-z0-9._-]{0,62})"

urlpatterns = [
    path("", views.dashboard, name="stacks-dashboard"),
    path("bulk/", triage_views.bulk_action, name="stacks-bulk"),
    path("stacks/new/", views.stack_new, name="stacks-new"),
    path("stacks/removed/", views.removed_list, name="stacks-removed"),
    path("stacks/removed/<int:pk>/", views.removed_detail, name="stacks-removed-detail"),
    path("stacks/removed/<int:pk>/replay.json", run_views.removed_replay, name="stacks-removed-replay"),
    re_path(rf"^stacks/{STACK_ID}/$", views.stack_detail, name="stacks-detail"),
    re_path(rf"^stacks/{STACK_ID}/output/$", views.stack_output, name="stacks-output"),
    re_path(rf"^stacks/{STACK_ID}/event/$", views.stack_event, name="stacks-event"),
    re_path(rf"^stacks/{STACK_ID}/retry/$", views.stack_retry, name="stacks-retry"),
    re_path(rf"^stacks/{STACK_ID}/retry-task/$", views.stack_retry_task, name="stacks-retry-task"),
    re_path(rf"^stacks/{STACK_ID}/replay\.json$", run_views.stack_replay, name="stacks-replay"),
    re_path(rf"^stacks/{STACK_ID}/task/$", views.stack_task, name="stacks-task"),
    re_path(rf"^stacks/{STACK_ID}/metadata/$", views.stack_metadata, name="stacks-metadata"),
    re_path(rf"^stacks/{STACK_ID}/upgrade/$", views.stack_upgrade, name="stacks-upgrade"),
    re_path(rf"^stacks/{STACK_ID}/extend/$", views.stack_extend, name="stacks-extend"),
    path("machines/<str:name>/move-stacks/", upgrades_views.move_stacks, name="stacks-move-to-current"),
]
