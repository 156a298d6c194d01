from django.urls import path

from stacks import views

urlpatterns = [
    path("", views.dashboard, name="stacks-dashboard"),
]
