"""The new-stack form: id, machine, first event and metadata, with its refusals.

Through Django's test client, as a browser without JavaScript posts; the page scripts send the same
forms asking for JSON.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from machines_app.services import save_machine
from stacks import services
from stacks.models import Stack
from tests.support import (
    OTHER,
)
from tests.support import launch_shop as launch
from tests.support import removed_shop_stack as removed_stack

pytestmark = pytest.mark.django_db


# --- new stack -------------------------------------------------------------------------------------------


def test_it_creates_a_stack_from_the_form(as_operator, shop):
    page = as_operator.get(reverse("stacks-new"), {"machine": "shop"}).content.decode()
    assert '<optgroup label="shop"' in page and '<option value="LAUNCH"' in page and '<option value="PING"' not in page
    data = {"stack_id": "feature-7", "machine": "shop", "event": "LAUNCH",
            "meta_original": ["", ""], "meta_key": ["owner", ""], "meta_value": ["me", ""]}
    response = as_operator.post(reverse("stacks-new"), data)
    assert response.status_code == 302
    assert response["Location"] == reverse("stacks-detail", args=["feature-7"])
    stack = Stack.objects.active().get(key="feature-7")
    assert (stack.state, stack.metadata) == ("RUN", {"owner": "me"})


def _selected_machine(page: str) -> list[str]:
    select = page[page.index('<select name="machine"'):]
    return re.findall(r'<option value="([^"]+)" selected>', select[:select.index("</select>")])


def test_it_preselects_the_machine_most_active_stacks_use(as_operator, shop):
    save_machine("other", OTHER, actor="test", source="test")
    assert _selected_machine(as_operator.get(reverse("stacks-new")).content.decode()) == ["other"]  # none used: first
    launch("s1")
    for key in ("o1", "o2"):
        assert services.send(key, "LAUNCH", machine="other", actor="test", source="test").ok
    removed_stack("gone-1")
    removed_stack("gone-2")  # removed stacks do not count
    assert _selected_machine(as_operator.get(reverse("stacks-new")).content.decode()) == ["other"]
    launch("s2")
    launch("s3")
    assert _selected_machine(as_operator.get(reverse("stacks-new")).content.decode()) == ["shop"]
    asked = as_operator.get(reverse("stacks-new"), {"machine": "other"}).content.decode()
    assert _selected_machine(asked) == ["other"]
    unknown = as_operator.get(reverse("stacks-new"), {"machine": "nope"}).content.decode()
    assert _selected_machine(unknown) == ["shop"]


def test_it_refuses_a_taken_id_a_bad_id_and_a_wrong_first_event(as_operator, shop):
    launch("taken")
    cases = [
        ({"stack_id": "taken", "event": "LAUNCH"}, "already exists"),
        ({"stack_id": "bad id!", "event": "LAUNCH"}, "starting with a letter or digit"),
        ({"stack_id": "fresh", "event": "PING"}, "accepts only: LAUNCH, DESTROY"),
    ]
    for fields, message in cases:
        response = as_operator.post(reverse("stacks-new"), {"machine": "shop", **fields})
        assert response.status_code == 400, fields
        assert message in response.content.decode(), fields
    assert Stack.objects.count() == 1


def test_it_refuses_bad_metadata_on_a_new_stack(as_operator, shop):
    data = {"stack_id": "fresh", "machine": "shop", "event": "LAUNCH",
            "meta_original": [""], "meta_key": ["x"], "meta_value": ["[1, 2]"]}
    response = as_operator.post(reverse("stacks-new"), data)
    assert response.status_code == 400 and b"metadata must be flat" in response.content
    assert not Stack.objects.filter(key="fresh").exists()
