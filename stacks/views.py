"""Pages for stacks. (The full live dashboard arrives with the pages issue.)"""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from stacks.models import Stack


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    stacks = Stack.objects.active().select_related("machine")[:200]
    return render(request, "stacks/dashboard.html", {"stacks": stacks})
