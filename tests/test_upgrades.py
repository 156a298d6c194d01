"""Impact of a machine edit against a real database: the API, the bulk move, its page, and the CLI.

The pure rules are in tests/test_impact.py; here the stacks are real rows, moved through
`UPGRADE_MACHINE`, and the verdicts must agree with what that service event does.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from cloudseam_site.accounts.models import MachineAccess
from machines_app import impact, in_flight, spec
from machines_app.models import Machine
from machines_app.services import save_machine
from stacks import services
from stacks.models import Stack, StackEvent, Task
from tests.conftest import SIMPLE_MACHINE

pytestmark = pytest.mark.postgres  # also run on PostgreSQL by `make test`

COMPATIBLE = SIMPLE_MACHINE.replace("DESTROY, NOTE]", "DESTROY, NOTE, PAUSE]")  # a new event, handled nowhere yet
RUN_RENAMED = SIMPLE_MACHINE.replace("RUN", "LIVE")
TASKS_CHANGED = SIMPLE_MACHINE.replace("tasks: [db, cert]", "tasks: [db]")
NOTE_DROPPED = SIMPLE_MACHINE.replace("      NOTE: [{action: no-op}]\n", "")
SERVICE_CODES = {"state_removed": "state_missing", "tasks_changed": "tasks_differ"}  # what UPGRADE_MACHINE says
BROKEN = SIMPLE_MACHINE.replace("state: RUN}", "state: RUNN}")


def send(key: str, event: str, **fields) -> services.EventResult:
    result = services.send(key, event, actor="tests", source="tests", **fields)
    assert result.ok, result.body
    return result


def provisioning(key: str) -> None:
    send(key, "LAUNCH", machine="simple")


def running(key: str) -> None:
    provisioning(key)
    for task in ("db", "cert"):
        send(key, "TASK_COMPLETED", task={"name": task})


@pytest.fixture
def stacks(simple_machine) -> dict[str, str]:
    """Two stacks provisioning, two running, on version 1 of `simple`."""
    for key in ("prov-1", "prov-2"):
        provisioning(key)
    for key in ("run-1", "run-2"):
        running(key)
    return dict(Stack.objects.active().values_list("key", "state"))


def post_impact(client, text: str, name: str = "simple", content_type: str = "application/yaml"):
    return client.post(f"/api/machines/{name}/impact", data=text, content_type=content_type)


# --- the API ---------------------------------------------------------------------------------------------


def test_it_names_the_stranded_stacks_of_a_draft_and_counts_them_per_state(as_viewer, stacks):
    response = post_impact(as_viewer, RUN_RENAMED)
    assert response.status_code == 200
    body = response.json()
    assert body["machine"] == "simple" and body["currentVersion"] == 1 and body["active"] == 4
    assert body["upgradableCount"] == 2 and body["strandedCount"] == 2
    [group] = body["strandedGroups"]
    assert group["state"] == "RUN" and group["count"] == 2
    assert group["stacks"] == [{"id": "run-1", "version": 1}, {"id": "run-2", "version": 1}]
    reason = group["reasons"][0]
    assert reason["code"] == "state_removed" and reason["blocksUpgrade"] is True
    assert "state RUN does not exist in this version" in reason["message"]
    assert body["states"]["RUN"] == {"stacks": 2, "upgradable": 0, "stranded": 2, "inDraft": False, "nodeId": None}
    assert body["states"]["PROVISION"] == {"stacks": 2, "upgradable": 2, "stranded": 0, "inDraft": True,
                                           "nodeId": "state-PROVISION"}
    assert body["summary"] == ("This version would leave 2 stacks stranded (RUN no longer exists: run-1, run-2) "
                               "and let 2 move up")


def test_it_answers_an_invalid_draft_with_the_validators_errors(as_viewer, stacks):
    response = post_impact(as_viewer, BROKEN)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "the draft is not a valid machine; fix its errors to see its impact"
    assert body["valid"] is False and "RUNN" in body["errors"][0]["message"] and body["errors"][0]["line"]
    assert body["errors"] == as_viewer.post("/api/machines/validate", data=BROKEN,
                                                content_type="application/yaml").json()["errors"]


@pytest.mark.parametrize(
    ("name", "text", "content_type", "status", "words"),
    [
        ("nope", SIMPLE_MACHINE, "application/yaml", 404, "machine nope does not exist"),
        ("simple", SIMPLE_MACHINE, "application/json", 415, "send the machine as application/yaml"),
        ("simple", b"\xff\xfe", "application/yaml", 400, "UTF-8"),
        ("simple", "a: [", "application/yaml", 400, "not a valid machine"),
    ],
)
def test_it_refuses_bad_impact_requests_with_a_sentence(as_viewer, stacks, name, text, content_type, status,
                                                        words):
    response = post_impact(as_viewer, text, name, content_type)
    assert response.status_code == status
    assert words in response.json()["error"]


def test_it_asks_who_is_there_before_answering(client, stacks):
    response = post_impact(client, COMPATIBLE)
    assert response.status_code == 401 and "authentication required" in response.json()["error"]


def test_it_reads_the_stacks_in_two_queries_however_many_there_are(stacks, django_assert_num_queries):
    machine = Machine.objects.select_related("current_version").get(name="simple")
    with django_assert_num_queries(2):
        in_flight.draft_impact(machine, machine.current_version.spec)


def test_it_reads_each_stacks_current_tasks_in_position_order(stacks):
    """The database joins task names in any order; the positions put them back as UPGRADE_MACHINE sees them."""
    for task in Task.objects.filter(stack__key="prov-1", current=True):
        task.position = 1 - task.position  # cert first now, though written second
        task.save(update_fields=["position"])
    machine = Machine.objects.select_related("current_version").get(name="simple")
    reordered = SIMPLE_MACHINE.replace("[db, cert]", "[cert, db]")
    for draft, stranded, upgradable, has in [(SIMPLE_MACHINE, "prov-1", "prov-2", "cert, db"),
                                             (reordered, "prov-2", "prov-1", "db, cert")]:
        verdicts = {v.stack.key: v for v in in_flight.draft_impact(machine, spec.load(draft)).stacks}
        reasons = verdicts[stranded].reasons
        assert [r.code for r in reasons] == ["tasks_changed"] and f"the stack has {has})" in reasons[0].message
        assert verdicts[upgradable].upgradable
        assert verdicts["run-1"].upgradable  # the tasks it ran in PROVISION are no longer current


@pytest.mark.parametrize(
    ("task_list", "names"),
    [(None, ()), ("", ()), ("0 db", ("db",)), ("1 cert,0 db", ("db", "cert")), ("10 c,2 b,0 a", ("a", "b", "c"))],
)
def test_it_puts_the_task_names_the_database_joined_in_position_order(task_list, names):
    assert in_flight.task_names(task_list) == names


def test_it_compares_a_stack_with_the_version_it_is_pinned_to(as_viewer, stacks):
    save_machine("simple", NOTE_DROPPED, actor="tests")  # v2: RUN no longer handles NOTE
    running("run-v2")  # pinned to v2, where NOTE is already gone
    body = post_impact(as_viewer, NOTE_DROPPED + "\n# v3\n").json()
    [group] = body["strandedGroups"]
    assert group["stacks"] == [{"id": "run-1", "version": 1}, {"id": "run-2", "version": 1}]  # run-v2 never had NOTE
    assert [r["code"] for r in group["reasons"]] == ["event_removed"]
    assert body["states"]["RUN"] == {"stacks": 3, "upgradable": 1, "stranded": 2, "inDraft": True,
                                     "nodeId": "state-RUN"}


@pytest.mark.parametrize("draft", [COMPATIBLE, RUN_RENAMED, TASKS_CHANGED, NOTE_DROPPED],
                         ids=["compatible", "state removed", "tasks changed", "event removed"])
def test_it_agrees_with_upgrade_machine_on_every_stack(stacks, draft):
    machine = Machine.objects.get(name="simple")
    save_machine("simple", draft, actor="tests")
    machine.refresh_from_db()
    verdicts = in_flight.pending_impact(machine).stacks
    assert len(verdicts) == 4
    for verdict in verdicts:
        result = services.upgrade_machine(verdict.stack.key, actor="tests", source="tests")
        blocked = [r.code for r in verdict.reasons if r.blocks_upgrade]
        assert result.ok == (not blocked), (verdict, result.body)
        if blocked:
            assert result.body["code"] == SERVICE_CODES[blocked[0]]


# --- moving the compatible stacks -------------------------------------------------------------------------


def move(client, confirm, version=2, name="simple", **headers):
    return client.post(f"/machines/{name}/move-stacks/", {"confirm": confirm, "version": version}, **headers)


def test_it_moves_every_compatible_stack_and_reports_each(as_operator, stacks):
    save_machine("simple", RUN_RENAMED, actor="tests")
    page = as_operator.get("/machines/simple/")
    assert "Move all 2 compatible stacks to version 2" in page.content.decode()
    response = move(as_operator, "2")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Moved 2 stacks to version 2" in html and "Stranded by version 2" in html
    assert "State RUN does not exist in this version" in html
    versions = dict(Stack.objects.active().values_list("key", "machine_version__number"))
    assert versions == {"prov-1": 2, "prov-2": 2, "run-1": 1, "run-2": 1}
    moved = StackEvent.objects.filter(event=services.UPGRADE_MACHINE, outcome="applied")
    assert sorted(moved.values_list("stack_key", flat=True)) == ["prov-1", "prov-2"]
    assert set(moved.values_list("actor", flat=True)) == {"otto"}


def test_it_answers_scripts_with_json(as_operator, stacks):
    save_machine("simple", COMPATIBLE, actor="tests")
    response = move(as_operator, 4, HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json() == {"machine": "simple", "version": 2, "moved": ["prov-1", "prov-2", "run-1", "run-2"],
                               "refused": [], "stranded": []}


@pytest.mark.parametrize(("confirm", "version", "status", "words"), [
    ("3", 2, 400, "type the number of stacks to move (2) to confirm; you typed 3, so nothing was moved"),
    ("", 2, 400, "you typed nothing, so nothing was moved"),
    ("two", 2, 400, "you typed two"),
    ("2", 1, 409, "simple is now at version 2, not 1; nothing was moved"),
])
def test_it_moves_nothing_unless_the_number_is_confirmed(as_operator, stacks, confirm, version, status, words):
    save_machine("simple", RUN_RENAMED, actor="tests")
    response = move(as_operator, confirm, version)
    assert response.status_code == status
    assert words in response.content.decode()
    assert not Stack.objects.active().filter(machine_version__number=2).exists()
    assert not StackEvent.objects.filter(event=services.UPGRADE_MACHINE).exists()


def test_it_says_when_there_is_nothing_to_move(as_operator, stacks):
    response = move(as_operator, "0", 1, HTTP_ACCEPT="application/json")
    assert response.status_code == 409
    assert response.json()["error"] == "no stack can be moved to version 1 of simple; nothing was moved"


def test_it_lets_only_operators_and_admins_move_stacks(as_viewer, stacks):
    save_machine("simple", COMPATIBLE, actor="tests")
    page = as_viewer.get("/machines/simple/").content.decode()
    assert "4 can move to version 2" in page and "move-stacks-form" not in page
    assert move(as_viewer, "4").status_code == 403
    assert as_viewer.get("/machines/simple/move-stacks/").status_code == 403
    assert not Stack.objects.active().filter(machine_version__number=2).exists()


def test_it_refuses_an_operator_limited_to_other_machines(client, make_user, stacks):
    user = make_user("qa-only", "operator")
    access = MachineAccess.objects.create(user=user)
    access.machines.add(save_machine("other", SIMPLE_MACHINE, actor="tests").version.machine)
    client.force_login(user)
    save_machine("simple", COMPATIBLE, actor="tests")
    response = move(client, "4")
    assert response.status_code == 403
    assert "qa-only may not change stacks of machine simple; nothing was moved" in response.content.decode()
    assert not Stack.objects.active().filter(machine_version__number=2).exists()


def test_it_reports_a_stack_refused_after_the_list_was_shown(as_operator, stacks, monkeypatch):
    save_machine("simple", TASKS_CHANGED, actor="tests")  # run-1 and run-2 can move; the others cannot
    real = services.upgrade_machine

    def racing(key, **kwargs):
        if key == "run-2":  # meanwhile, it went back to provisioning: now its tasks differ
            send("run-2", "DEPLOY")
        return real(key, **kwargs)

    monkeypatch.setattr(services, "upgrade_machine", racing)
    response = move(as_operator, "2", HTTP_ACCEPT="application/json")
    body = response.json()
    assert body["moved"] == ["run-1"]
    assert body["refused"][0]["id"] == "run-2" and "has different tasks in version 2" in body["refused"][0]["error"]


def test_it_shows_the_move_page_with_what_would_happen(as_operator, stacks):
    save_machine("simple", RUN_RENAMED, actor="tests")
    html = as_operator.get("/machines/simple/move-stacks/").content.decode()
    assert "Move all 2 compatible stacks to version 2" in html and "run-1" in html
    assert as_operator.get("/machines/nope/move-stacks/").status_code == 404


# --- the command line -------------------------------------------------------------------------------------


def test_it_fails_a_ci_check_that_would_strand_stacks(stacks, tmp_path):
    path = tmp_path / "simple.yml"
    path.write_text(RUN_RENAMED)
    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("validate_machines", "--impact", str(path), stdout=out)
    assert failed.value.returncode == 3
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{path}: stack run-1 (RUN, v1) would be stranded: state RUN does not exist")
    assert any("This file (simple) would leave 2 stacks stranded" in line for line in lines)
    assert lines[-1] == "1 valid, 0 invalid"


def test_it_passes_a_ci_check_that_strands_nothing(stacks, tmp_path):
    (tmp_path / "simple.yml").write_text(COMPATIBLE)
    (tmp_path / "brand-new.yml").write_text(SIMPLE_MACHINE)
    out = io.StringIO()
    call_command("validate_machines", "--impact", str(tmp_path), stdout=out)
    text = out.getvalue()
    assert "This file (simple) would let all 4 active stacks move up" in text
    assert "machine brand-new is not in the database yet" in text


def test_it_says_how_the_impact_check_fails_in_its_help(capsys):
    with pytest.raises(SystemExit):
        call_command("validate_machines", "--help")
    assert "exits 3 when there are any" in " ".join(capsys.readouterr().out.split())


def test_it_describes_the_impact_endpoint_in_the_openapi_document(as_viewer, stacks):
    document = as_viewer.get("/api/openapi.json").json()
    operation = document["paths"]["/api/machines/{name}/impact"]["post"]
    assert {"200", "400", "404"} <= set(operation["responses"])
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    body = post_impact(as_viewer, RUN_RENAMED).json()
    assert set(body) == set(schema["properties"])
    groups = schema["properties"]["strandedGroups"]["items"]
    assert set(body["strandedGroups"][0]) == set(groups["properties"])
    assert set(body["strandedGroups"][0]["stacks"][0]) == set(groups["properties"]["stacks"]["items"]["properties"])
    assert groups["properties"]["stacks"]["maxItems"] == impact.LISTED
