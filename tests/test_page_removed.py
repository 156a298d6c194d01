"""The removed-stacks archive: listed, searched, their history kept.

Through Django's test client, as a browser without JavaScript posts; the page scripts send the same
forms asking for JSON.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from stacks.models import Stack
from tests.support import launch_shop as launch
from tests.support import removed_shop_stack as removed_stack

pytestmark = pytest.mark.django_db


# --- removed stacks ----------------------------------------------------------------------------------------


def test_it_lists_and_searches_removed_stacks_and_keeps_their_history(as_viewer, shop):
    gone = removed_stack("old-1")
    removed_stack("other-2")
    launch("old-1")  # the id is free again
    listing = as_viewer.get(reverse("stacks-removed"), {"q": "old"}).content.decode()
    assert reverse("stacks-removed-detail", args=[gone.pk]) in listing and "other-2" not in listing
    page = as_viewer.get(reverse("stacks-removed-detail", args=[gone.pk])).content.decode()
    assert "DESTROY" in page and "LAUNCH" in page and "GONE" in page
    assert "/event/" not in page
    active = Stack.objects.active().get(key="old-1")
    assert as_viewer.get(reverse("stacks-removed-detail", args=[active.pk])).status_code == 404
