"""Pages for machines. (Diagrams and the editor arrive with the pages issue.)"""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from machines_app.models import Machine


@login_required
def machine_list(request: HttpRequest) -> HttpResponse:
    machines = Machine.objects.select_related("current_version")
    return render(request, "machines_app/machine_list.html", {"machines": machines})
