"""Probe and metrics routes, mounted at the site root before the stack pages."""

from django.urls import path

from stacks.observability import views

urlpatterns = [
    path("healthz", views.healthz, name="observability-healthz"),
    path("readyz", views.readyz, name="observability-readyz"),
    path("metrics", views.metrics_view, name="observability-metrics"),
]
