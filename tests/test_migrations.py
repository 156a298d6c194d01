"""Moving tokens, login failures and machine limits to the `accounts` app kept every row, and the
admin log entries written about tokens before the move still open the token they name."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

BEFORE = [("stacks", "0005_machine_access"), ("machines_app", "0001_initial"),
          ("admin", "0003_logentry_add_action_flag_choices"), ("accounts", None)]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


def test_it_keeps_tokens_and_their_admin_log_across_the_move():
    leaf = MigrationExecutor(connection).loader.graph.leaf_nodes()
    old = migrate(BEFORE)
    User = old.get_model("auth", "User")
    ContentType = old.get_model("contenttypes", "ContentType")
    LogEntry = old.get_model("admin", "LogEntry")
    Token = old.get_model("stacks", "ApiToken")
    LoginFailure = old.get_model("stacks", "LoginFailure")
    Machine = old.get_model("machines_app", "Machine")
    MachineAccess = old.get_model("stacks", "MachineAccess")

    alice = User.objects.create(username="alice")
    token = Token.objects.create(user=alice, name="ci", role="operator", key_hash="f" * 64, prefix="cs_abc")
    qa = Machine.objects.create(name="qa-env")
    token.machines.add(qa)
    MachineAccess.objects.create(user=alice).machines.add(qa)
    LoginFailure.objects.create(username="mallory", ip="10.0.0.9")
    token_type, _ = ContentType.objects.get_or_create(app_label="stacks", model="apitoken")
    LogEntry.objects.create(user=alice, content_type=token_type, object_id=str(token.pk), object_repr="ci",
                            action_flag=1, change_message="Created API token 'ci'.")

    migrate(leaf)

    from django.contrib.admin.models import LogEntry as CurrentLogEntry
    from django.contrib.contenttypes.models import ContentType as CurrentContentType

    from cloudseam_site.accounts.models import ApiToken
    from cloudseam_site.accounts.models import LoginFailure as CurrentLoginFailure
    from cloudseam_site.accounts.models import MachineAccess as Access

    CurrentContentType.objects.clear_cache()
    moved = ApiToken.objects.get(pk=token.pk)
    assert (moved.name, moved.user.username, moved.prefix) == ("ci", "alice", "cs_abc")
    assert list(moved.machines.values_list("name", flat=True)) == ["qa-env"]
    assert list(Access.objects.get(user__username="alice").machines.values_list("name", flat=True)) == ["qa-env"]
    assert CurrentLoginFailure.objects.get().username == "mallory"
    entry = CurrentLogEntry.objects.get(object_repr="ci")
    assert entry.content_type.app_label == "accounts"
    assert entry.get_edited_object() == moved
    assert not CurrentContentType.objects.filter(app_label="stacks", model="apitoken").exists()
