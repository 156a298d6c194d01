"""Management commands (DESIGN §6.5): output, exit codes, and the `cloudseam` console script."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from cloudseam_site.accounts.models import ApiToken, hash_token
from machines_app.models import Machine, MachineVersion
from tests.conftest import SIMPLE_MACHINE

ROOT = Path(__file__).resolve().parent.parent


def run(*args, stdin: str | None = None) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        sys.stdin, saved = io.StringIO(stdin), sys.stdin
    try:
        call_command(*args, stdout=out, stderr=err)
    finally:
        if stdin is not None:
            sys.stdin = saved
    return out.getvalue(), err.getvalue()


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "simple.yml").write_text(SIMPLE_MACHINE)
    (tmp_path / "broken.yaml").write_text(SIMPLE_MACHINE.replace("state: RUN", "state: RUNN"))
    (tmp_path / "notes.txt").write_text("not a machine")
    return tmp_path


def test_it_validates_files_and_reports_file_line_path_message(folder):
    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("validate_machines", str(folder / "simple.yml"), str(folder / "broken.yaml"), stdout=out)
    assert failed.value.returncode == 1
    lines = out.getvalue().splitlines()
    assert f"{folder / 'broken.yaml'}:11: states.PROVISION.on.NEXT[0].state: " in lines[0]
    assert "RUNN" in lines[0] and lines[-1] == "1 valid, 1 invalid"


def test_it_validates_the_demo_machines():
    out, _ = run("validate_machines", str(ROOT / "machines"))
    assert out.splitlines()[-1].startswith("2 valid, 0 invalid")


def test_it_loads_a_folder_creating_versions_only_for_changes(db, folder):
    with pytest.raises(CommandError) as failed:
        run("load_machines", str(folder))
    assert failed.value.returncode == 1
    assert list(Machine.objects.values_list("name", flat=True)) == ["simple"]
    (folder / "broken.yaml").unlink()
    out, _ = run("load_machines", str(folder))
    assert "simple: unchanged" in out and MachineVersion.objects.count() == 1
    (folder / "simple.yml").write_text(SIMPLE_MACHINE + "\n# tweak\n")
    out, _ = run("load_machines", str(folder))
    assert "simple: new version" in out and Machine.objects.get().current_version.number == 2


def test_it_creates_tokens_printing_the_token_last_and_storing_its_hash(db):
    out, _ = run("create_token", "robot", "--role", "operator", "--days", "30")
    token = out.strip().splitlines()[-1]
    stored = ApiToken.objects.get()
    assert stored.key_hash == hash_token(token) and token not in stored.key_hash
    assert stored.role == "operator" and stored.expires_at is not None
    assert stored.user.groups.filter(name="operator").exists()
    assert not stored.user.has_usable_password()


def test_it_sends_events_and_exits_1_with_the_error(simple_machine):
    out, _ = run("send_event", "cli-1", "LAUNCH", "--machine", "simple", "--meta", "n=3", "--meta", "flag=true",
                 "--meta", "text=hello world")
    stack = json.loads(out)
    assert stack["metadata"] == {"n": 3, "flag": True, "text": "hello world"}
    with pytest.raises(CommandError) as refused:
        run("send_event", "cli-1", "LAUNCH")
    assert refused.value.returncode == 1 and "not accepted" in str(refused.value)
    with pytest.raises(CommandError) as unknown:
        run("send_event", "nosuch", "LAUNCH")
    assert "--machine on the command line" in str(unknown.value)
    with pytest.raises(CommandError) as lower:
        run("send_event", "cli-1", "destroy")
    assert "did you mean DESTROY?" in str(lower.value)
    with pytest.raises(CommandError) as nested:
        run("send_event", "cli-1", "NOTE", "--meta", 'y={"a": 1}')
    assert "must be flat" in str(nested.value)
    with pytest.raises(CommandError) as bad_meta:
        run("send_event", "cli-1", "NOTE", "--meta", "novalue")
    assert "KEY=VALUE" in str(bad_meta.value)


def test_it_reads_a_whole_message_from_json(simple_machine, tmp_path):
    message = tmp_path / "m.json"
    message.write_text(json.dumps({"stackId": "j", "action": "LAUNCH", "machine": "simple"}))
    assert json.loads(run("send_event", "--json", str(message))[0])["state"] == "PROVISION"
    out, _ = run("send_event", "--json", "-", stdin=json.dumps({"stackId": "j", "event": "DESTROY"}))
    assert json.loads(out)["removed"] is True
    with pytest.raises(CommandError):
        run("send_event", "--json", "-", stdin="{nope")


def test_it_runs_as_the_cloudseam_console_script():
    script = Path(sys.executable).parent / "cloudseam"
    done = subprocess.run([str(script), "validate_machines", str(ROOT / "machines")], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "2 valid, 0 invalid" in done.stdout


def test_it_does_not_undo_an_edit_made_since_the_folder_was_loaded(db, folder):
    from machines_app.services import save_machine

    (folder / "broken.yaml").unlink()
    run("load_machines", str(folder))
    save_machine("simple", SIMPLE_MACHINE + "\n# edited in the browser\n", actor="ada", source="editor")
    out, _ = run("load_machines", str(folder))  # as every `serve` start does
    assert Machine.objects.get().current_version.number == 2
    assert "matches version 1, but version 2 (saved by ada via editor) is newer; kept it" in out


def test_it_stores_browser_line_endings_as_the_same_version(db):
    from machines_app.services import save_machine

    first = save_machine("simple", SIMPLE_MACHINE, actor="t")
    again = save_machine("simple", SIMPLE_MACHINE.replace("\n", "\r\n"), actor="t", source="editor")
    assert not again.created and again.version == first.version


def test_it_takes_a_file_rolled_back_in_the_folder_as_a_revert(db, folder):
    (folder / "broken.yaml").unlink()
    run("load_machines", str(folder))
    (folder / "simple.yml").write_text(SIMPLE_MACHINE + "\n# bad change\n")
    run("load_machines", str(folder))
    (folder / "simple.yml").write_text(SIMPLE_MACHINE)  # `git revert` of the bad change
    run("load_machines", str(folder))
    assert Machine.objects.get().current_version.number == 1


# --- compatibility with the original CloudSeam (issue #7) ---------------------------------------


def test_it_refuses_to_raise_an_existing_users_role_without_promote(db):
    from tests.support import make_user

    vera = make_user("vera", "viewer")
    with pytest.raises(CommandError) as refused:
        run("create_token", "vera", "--role", "admin")
    assert str(refused.value) == (
        "user vera has the viewer role, lower than admin; pass --promote to give them the admin role, "
        "or ask for a token with --role viewer"
    )
    assert list(vera.groups.values_list("name", flat=True)) == ["viewer"] and not ApiToken.objects.exists()

    out, _ = run("create_token", "vera", "--role", "admin", "--promote")
    assert ApiToken.objects.get().role == "admin" and out.strip().splitlines()[-1].startswith("cs_")
    assert sorted(vera.groups.values_list("name", flat=True)) == ["admin", "viewer"]


def test_it_gives_the_role_to_a_new_user_or_one_without_a_role_and_keeps_a_higher_one(db):
    from tests.support import make_user

    nobody, ada = make_user("nobody", None), make_user("ada", "admin")
    run("create_token", "nobody", "--role", "operator")
    run("create_token", "newcomer", "--role", "admin")
    run("create_token", "ada", "--role", "viewer")
    assert list(nobody.groups.values_list("name", flat=True)) == ["operator"]
    assert ApiToken.objects.get(user__username="newcomer").user.groups.get().name == "admin"
    assert list(ada.groups.values_list("name", flat=True)) == ["admin"]  # a viewer token, the user unchanged
    assert ApiToken.objects.get(user=ada).role == "viewer"
