from django.urls import path

from machines_app import views

urlpatterns = [
    path("", views.machine_list, name="machines-list"),
]
