"""Machine pages, mounted at /machines/ (DESIGN §6.6). `new/` and `preview/` come before `<name>/`."""

from django.urls import path, re_path

from machines_app import views

urlpatterns = [
    path("", views.machine_list, name="machines-list"),
    path("new/", views.machine_new, name="machines-new"),
    path("preview/", views.machine_preview, name="machines-preview"),
    path("<str:name>/", views.machine_detail, name="machines-detail"),
    path("<str:name>/edit/", views.machine_edit, name="machines-edit"),
    re_path(r"^(?P<name>[^/]+)/export\.(?P<fmt>svg|dot|mermaid)$", views.machine_export, name="machines-export"),
]
