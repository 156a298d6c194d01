"""Machine format v1 (DESIGN §4): what the validator accepts, what it rejects, and how it says so.

No database and no Django: `machines_app.spec` is pure Python. Each rule is checked on the path,
the line and the key words of its message.
"""

from __future__ import annotations

import dataclasses
import textwrap
import time
from pathlib import Path
from types import MappingProxyType

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machines_app import spec
from machines_app.spec import Action, Machine, Problem, SpecError, TaskDef, Validation

COMPAT = next((p for p in (Path(__file__).resolve().parent.parent.parent / "shared" / "compat",  # beside the checkout
                           Path("/work/shared/compat")) if p.is_dir()), None)
needs_compat = pytest.mark.skipif(COMPAT is None, reason="shared/compat is not beside this checkout")
MACHINES = Path(__file__).parent / "machines"

# Line numbers below refer to this document; tests change one piece of it at a time.
BASE = """\
version: 1
events: [LAUNCH, DESTROY]
states:
  INIT:
    on:
      LAUNCH:
        - action: advance
          state: PROVISION
  PROVISION:
    tasks: [setup]
    on:
      NEXT:
        - action: advance
          state: RUN
  RUN:
    on:
      DESTROY:
        - action: advance
          state: DONE
  DONE:
    terminal: true
tasks:
  setup:
    executor: sleep
"""


def variant(old: str, new: str) -> str:
    assert BASE.count(old) == 1, f"{old!r} must appear once in BASE"
    return BASE.replace(old, new)


def check(text: str) -> Validation:
    return spec.validate(textwrap.dedent(text))


def error_at(result: Validation, path: str) -> Problem:
    found = [p for p in result.errors if p.path == path]
    assert found, f"no error at {path}; errors: {[p.format() for p in result.errors]}"
    assert result.machine is None
    return found[0]


def warning_at(result: Validation, path: str) -> Problem:
    found = [p for p in result.warnings if p.path == path]
    assert found, f"no warning at {path}; warnings: {[p.format() for p in result.warnings]}"
    return found[0]


def one_task(executor: str, config: str | None) -> Validation:
    """A machine with one task `t`; its `config` line (if any) is line 10."""
    text = textwrap.dedent(
        f"""\
        version: 1
        states:
          INIT:
            tasks: [t]
            on: {{NEXT: [{{action: advance, state: DONE}}]}}
          DONE: {{terminal: true}}
        tasks:
          t:
            executor: {executor}
        """
    )
    return spec.validate(text + (f"    config: {config}\n" if config is not None else ""))


# --- machines that must validate ----------------------------------------------------------------


@needs_compat
def test_it_accepts_the_original_sample_machine():
    result = spec.validate((COMPAT / "original-v1-sample.yml").read_bytes())
    assert result.errors == ()
    assert result.warnings == ()
    machine = result.machine
    assert list(machine.states) == ["INIT", "PROVISION", "RUN", "DESTROY"]
    # NEXT is the state's own key; ACCESS and DESTROY come from the << merge, in its place.
    assert list(machine.states["PROVISION"].on) == ["NEXT", "ACCESS", "DESTROY"]
    assert machine.states["RUN"].on["ACCESS"] == (Action("no-op"),)
    assert machine.tasks["nuke-files"].config["source"] == {"type": "local", "location": "/samples/tf"}


@needs_compat
def test_it_accepts_the_original_validator_machine():
    result = spec.validate((COMPAT / "original-validator-valid.yml").read_text())
    assert result.errors == ()
    assert result.valid
    machine = result.machine
    assert "LAUNCH" in machine.states and "LAUNCH" in machine.events  # a state named like an event
    assert machine.states["FROZEN"].tasks == ()
    assert "NEXT" in machine.states["FROZEN"].on
    assert machine.tasks["db-destroy"] == TaskDef(
        "db-destroy", "lambda", MappingProxyType({"name": "db-destroy", "args": {"task": "destroy"}})
    )
    assert machine.tasks["scaledown"].config["variables"] == {"desired_capacity": 0}
    # Nothing advances to LAUNCH; only FROZEN's NEXT leads to THAW, and FROZEN has no tasks to finish.
    assert [p.path for p in result.warnings] == ["states.LAUNCH", "states.THAW"]


def test_it_accepts_a_task_of_every_executor_and_fills_defaults():
    result = spec.validate((MACHINES / "every-executor.yml").read_bytes())
    assert result.errors == () and result.warnings == ()
    tasks = result.machine.tasks
    assert [t.executor for t in tasks.values()] == [
        "terraform", "terraform", "http", "shell", "lambda", "python", "sleep", "external",
    ]  # fmt: skip
    assert tasks["infra"].timeout == 1800.0 and tasks["infra"].retries == 2
    assert tasks["notify"].config["method"] == "POST" and tasks["notify"].config["mode"] == "sync"
    assert tasks["notify"].config["headers"] == {"X-Team": "platform", "X-Attempt": "1"}
    assert tasks["migrate"].config["command"] == ["./manage.py", "migrate", "--noinput"]
    assert tasks["migrate"].config["env"]["WORKERS"] == "4"
    assert tasks["wait"].config == {"seconds": 1}
    assert tasks["sign-off"].config["instructions"].startswith("Ask the release manager")
    assert tasks["compile"].config["callable"] == "deploy.steps.assets:build"


def test_it_reads_on_off_yes_no_as_names_and_merges_shared_handlers():
    result = spec.validate((MACHINES / "anchors.yml").read_text())
    assert result.errors == () and result.warnings == ()
    machine = result.machine
    assert machine.events == ("YES", "NOTE", "STOP", "N")
    assert list(machine.states) == ["INIT", "ON", "OFF"]
    on = machine.states["ON"].on
    assert list(on) == ["STOP", "N", "NOTE"]
    assert on["STOP"] == (Action("advance", "OFF"),)  # the first merged mapping wins
    assert on["NOTE"] == (Action("advance", "ON"),)  # the state's own key wins over merged ones


def test_it_reads_bytes_and_text_alike():
    assert spec.validate(BASE.encode()).machine == spec.validate(BASE).machine


# --- the built machine --------------------------------------------------------------------------


def test_it_builds_a_frozen_machine_in_document_order():
    machine = spec.load(BASE)
    assert isinstance(machine, Machine)
    assert machine.version == 1
    assert machine.events == ("LAUNCH", "DESTROY")
    assert list(machine.states) == ["INIT", "PROVISION", "RUN", "DONE"]
    assert machine.states["PROVISION"].tasks == ("setup",)
    assert machine.states["DONE"].terminal is True
    assert machine.accepted_events("RUN") == ("DESTROY",)
    assert machine.accepted_events("PROVISION") == ()
    assert machine.task_defs("PROVISION") == (TaskDef("setup", "sleep", MappingProxyType({"seconds": 1})),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        machine.version = 2
    with pytest.raises(TypeError):
        machine.states["NEW"] = machine.states["INIT"]
    with pytest.raises(TypeError):
        machine.tasks["setup"].config["seconds"] = 5
    with pytest.raises(TypeError):
        machine.states["INIT"].on["LAUNCH"] = ()


def test_it_keeps_on_handlers_in_document_order():
    machine = spec.load(
        variant(
            "      DESTROY:\n        - action: advance\n          state: DONE\n",
            "      DESTROY:\n        - action: advance\n          state: DONE\n      LAUNCH: [{action: no-op}]\n",
        )
    )
    assert machine.accepted_events("RUN") == ("DESTROY", "LAUNCH")


def test_it_accepts_version_1_point_0_and_omitted_optional_sections():
    machine = spec.load("version: 1.0\nstates:\n  INIT:\n    terminal: true\n")
    assert machine.version == 1 and machine.events == () and dict(machine.tasks) == {}


def test_it_ignores_x_keys_at_the_top():
    result = spec.validate("x-notes: anything [goes] here\nx-anchor: &a {k: 1}\n" + BASE)
    assert result.errors == ()


def test_it_raises_spec_error_with_every_problem_from_load():
    with pytest.raises(SpecError) as caught:
        spec.load(variant("version: 1", "version: 2").replace("state: RUN\n", "state: RUNN\n"))
    assert [p.path for p in caught.value.problems] == ["version", "states.PROVISION.on.NEXT[0].state"]
    assert "line 1: version: 'version' must be 1" in str(caught.value)


def test_it_serialises_problems_for_the_api():
    result = spec.validate(variant("state: RUN\n", "state: RUNN\n"))
    assert result.as_dict()["valid"] is False
    assert result.as_dict()["errors"] == [
        {
            "path": "states.PROVISION.on.NEXT[0].state",
            "line": 14,
            "message": "state 'RUNN' does not exist (did you mean 'RUN'?); known states: INIT, PROVISION, RUN, DONE",
        }
    ]


# --- version and top-level keys -----------------------------------------------------------------


@pytest.mark.parametrize(
    "line,found",
    [('version: "1"', "found the text '1'"), ("version: 2", "found the number 2"), ("version: true", "found true")],
)
def test_it_requires_version_to_be_the_number_1(line, found):
    problem = error_at(spec.validate(variant("version: 1", line)), "version")
    assert problem.line == 1
    assert "'version' must be 1" in problem.message and found in problem.message


def test_it_requires_a_version():
    problem = error_at(spec.validate(variant("version: 1\n", "")), "version")
    assert "missing 'version'" in problem.message and "version: 1" in problem.message


def test_it_rejects_unknown_top_level_keys_naming_the_allowed_ones():
    problem = error_at(spec.validate(BASE + "colour: blue\n"), "colour")
    assert problem.line == 25
    assert "unknown top-level key 'colour'" in problem.message
    assert "version, events, states, tasks" in problem.message and "x-" in problem.message


# --- events -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "events,path,words",
    [
        ("[LAUNCH, DESTROY, LAUNCH]", "events[2]", "event LAUNCH is declared twice (first at line 2)"),
        ("[LAUNCH, DESTROY, NEXT]", "events[2]", "NEXT must not be declared: it is implicit"),
        ("[LAUNCH, DESTROY, TASK_ERROR]", "events[2]", "TASK_ERROR is a system event"),
        ("[LAUNCH, DESTROY, RETRY_FAILED_TASKS]", "events[2]", "cannot be declared"),
        ("[LAUNCH, DESTROY, launch]", "events[2]", "event name 'launch' is not allowed; use upper-case"),
        ("[LAUNCH, DESTROY, GO_NOW]", "events[2]", "event name 'GO_NOW' is not allowed"),
        ("[LAUNCH, DESTROY, 42]", "events[2]", "an event name must be text; found the number 42"),
        ("{LAUNCH: 1}", "events", "'events' must be a list of event names"),
    ],
)
def test_it_checks_event_declarations(events, path, words):
    problem = error_at(spec.validate(variant("events: [LAUNCH, DESTROY]", f"events: {events}")), path)
    assert problem.line == 2
    assert words in problem.message


def test_it_names_each_event_on_its_own_line_in_block_lists():
    result = spec.validate(variant("events: [LAUNCH, DESTROY]", "events:\n  - LAUNCH\n  - DESTROY\n  - NEXT"))
    assert error_at(result, "events[2]").line == 5


# --- states -------------------------------------------------------------------------------------


def test_it_requires_states():
    problem = error_at(spec.validate("version: 1\n"), "states")
    assert "missing 'states'" in problem.message


def test_it_requires_states_to_be_a_mapping():
    problem = error_at(spec.validate("version: 1\nstates: [INIT]\n"), "states")
    assert problem.line == 2 and "'states' must be a mapping" in problem.message and "found a list" in problem.message


def test_it_requires_an_init_state():
    problem = error_at(spec.validate(BASE.replace("INIT", "START")), "states")
    assert problem.line == 3
    assert (
        "an INIT state is required" in problem.message
        and "states found: START, PROVISION, RUN, DONE" in problem.message
    )


def test_it_requires_a_terminal_state():
    problem = error_at(spec.validate(variant("    terminal: true\n", "    terminal: false\n")), "states")
    assert problem.line == 3 and "no state has 'terminal: true'" in problem.message


@pytest.mark.parametrize("name", ["run", "RUN_FAST", "RUN FAST", "ÉTAT"])
def test_it_checks_state_names(name):
    result = spec.validate(variant("tasks:\n", f"  '{name}': {{terminal: true}}\ntasks:\n"))
    problem = next(p for p in result.errors if "state name" in p.message)
    assert problem.line == 22
    assert f"state name '{name}' is not allowed; use upper-case letters, digits and '-'" in problem.message


def test_it_rejects_unknown_keys_in_a_state():
    problem = error_at(
        spec.validate(variant("    terminal: true\n", "    terminal: true\n    final: yes\n")), "states.DONE.final"
    )
    assert problem.line == 22
    assert "unknown key 'final' in state DONE; allowed keys: terminal, tasks, on" in problem.message


def test_it_requires_terminal_to_be_a_boolean_and_yes_is_not_one():
    problem = error_at(spec.validate(variant("    terminal: true\n", "    terminal: yes\n")), "states.DONE.terminal")
    assert problem.line == 21
    assert "'terminal' must be true or false; found the text 'yes'" in problem.message


def test_it_requires_a_state_to_be_a_mapping():
    problem = error_at(spec.validate(variant("  DONE:\n    terminal: true\n", "  DONE: [terminal]\n")), "states.DONE")
    assert problem.line == 20 and "state DONE must be a mapping with terminal, tasks and on" in problem.message


def test_it_accepts_an_empty_state():
    assert spec.validate(BASE + "x-unused: 1\n").valid
    result = spec.validate(variant("  RUN:\n", "  IDLE:\n  RUN:\n"))
    assert result.errors == ()
    assert result.machine.states["IDLE"].on == {}


@pytest.mark.parametrize(
    "tasks,path,words",
    [
        ("[setup, nope]", "states.PROVISION.tasks[1]", "task 'nope' is not defined under tasks; known tasks: setup"),
        ("[setup, setpu]", "states.PROVISION.tasks[1]", "(did you mean 'setup'?)"),
        ("[setup, setup]", "states.PROVISION.tasks[1]", "task setup is listed twice in this state (first at line 10)"),
        ("[5]", "states.PROVISION.tasks[0]", "a task name must be text; found the number 5"),
        ("setup", "states.PROVISION.tasks", "'tasks' must be a list of task names"),
    ],
)
def test_it_checks_the_tasks_of_a_state(tasks, path, words):
    problem = error_at(spec.validate(variant("    tasks: [setup]", f"    tasks: {tasks}")), path)
    assert problem.line == 10
    assert words in problem.message


def test_it_requires_a_next_handler_in_a_non_terminal_state_with_tasks():
    text = variant(
        "      NEXT:\n        - action: advance\n          state: RUN\n", "      DESTROY: [{action: no-op}]\n"
    )
    problem = error_at(spec.validate(text), "states.PROVISION.on")
    assert problem.line == 11
    assert "state PROVISION has tasks but no NEXT handler" in problem.message


def test_it_points_at_the_state_when_a_state_with_tasks_has_no_on_at_all():
    text = variant("      NEXT:\n        - action: advance\n          state: RUN\n", "")
    text = text.replace("    on:\n  RUN:", "  RUN:")
    problem = error_at(spec.validate(text), "states.PROVISION.on")
    assert problem.line == 9


def test_it_lets_a_terminal_state_have_tasks_and_handlers_without_next():
    text = variant(
        "    terminal: true\n",
        "    terminal: true\n    tasks: [setup]\n    on:\n      LAUNCH: [{action: advance, state: PROVISION}]\n",
    )
    result = spec.validate(text)
    assert result.errors == () and result.warnings == ()
    assert result.machine.states["DONE"].tasks == ("setup",)


# --- event handlers and actions -----------------------------------------------------------------


def test_it_names_the_missing_state_and_the_known_ones():
    problem = error_at(spec.validate(variant("state: RUN\n", "state: RUNN\n")), "states.PROVISION.on.NEXT[0].state")
    assert problem.line == 14
    assert problem.message.startswith("state 'RUNN' does not exist")
    assert problem.message.endswith("known states: INIT, PROVISION, RUN, DONE")


def test_it_rejects_handlers_for_undeclared_events():
    problem = error_at(spec.validate(variant("      DESTROY:\n", "      DESTORY:\n")), "states.RUN.on.DESTORY")
    assert problem.line == 17
    assert "event 'DESTORY' is not declared in events (did you mean 'DESTROY'?)" in problem.message
    assert "known events: LAUNCH, DESTROY" in problem.message


@pytest.mark.parametrize("event", ["TASK_COMPLETED", "TASK_ERROR", "RETRY_FAILED_TASKS", "RETRY_PENDING_TASKS"])
def test_it_rejects_handlers_for_system_events_other_than_next(event):
    problem = error_at(spec.validate(variant("      DESTROY:\n", f"      {event}:\n")), f"states.RUN.on.{event}")
    assert problem.line == 17
    assert f"{event} is a system event" in problem.message and "NEXT" in problem.message


@pytest.mark.parametrize(
    "handler,words",
    [
        ("{action: no-op}", "must be a list of actions, e.g. [{action: advance, state: RUN}]"),
        ("~", "found nothing (null)"),
    ],
)
def test_it_requires_a_list_of_actions(handler, words):
    text = variant("      DESTROY:\n        - action: advance\n          state: DONE\n", f"      DESTROY: {handler}\n")
    problem = error_at(spec.validate(text), "states.RUN.on.DESTROY")
    assert problem.line == 17 and words in problem.message


def test_it_requires_on_to_be_a_mapping():
    text = variant("    on:\n      DESTROY:\n        - action: advance\n          state: DONE\n", "    on: [DESTROY]\n")
    problem = error_at(spec.validate(text), "states.RUN.on")
    assert problem.line == 16 and "'on' must be a mapping of events to lists of actions" in problem.message


@pytest.mark.parametrize(
    "action,path,words",
    [
        ("{action: goto, state: DONE}", "[0].action", "'action' must be one of advance, no-op; found the text 'goto'"),
        ("{state: DONE}", "[0].action", "missing 'action' in an action; allowed: advance, no-op"),
        ("{action: advance}", "[0].state", "missing 'state' in an advance action: the state to move to; known states"),
        ("{action: advance, state: 404}", "[0].state", "quote names like '404'"),
        ("{action: no-op, state: DONE}", "[0].state", "unknown key 'state' in a no-op action; allowed keys: action"),
        ("{action: advance, state: DONE, when: now}", "[0].when", "unknown key 'when' in an advance action"),
        ("advance", "[0]", "an action must be {action: advance, state: NAME} or {action: no-op}"),
    ],
)
def test_it_checks_each_action(action, path, words):
    text = variant(
        "      DESTROY:\n        - action: advance\n          state: DONE\n", f"      DESTROY:\n        - {action}\n"
    )
    problem = error_at(spec.validate(text), "states.RUN.on.DESTROY" + path)
    assert problem.line == 18 and words in problem.message


# --- tasks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["-setup", "set up", "a" * 64, "ünï"])
def test_it_checks_task_names(name):
    text = variant("    tasks: [setup]", f"    tasks: ['{name}']").replace("  setup:\n", f"  '{name}':\n")
    problem = next(p for p in spec.validate(text).errors if "task name" in p.message)
    assert problem.line == 23
    assert (
        "is not allowed; use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit" in problem.message
    )


def test_it_accepts_task_names_with_dots_and_quotes_them_in_paths():
    text = variant("    tasks: [setup]", "    tasks: [db.setup]").replace("  setup:\n", "  db.setup:\n")
    assert spec.validate(text).valid
    problem = error_at(spec.validate(text + "    retries: -1\n"), 'tasks["db.setup"].retries')
    assert problem.line == 25


@pytest.mark.parametrize(
    "extra,path,line,words",
    [
        (
            "    executor: bash\n",
            "tasks.setup.executor",
            24,
            "'executor' must be one of shell, http, python, terraform",
        ),
        ("    timeout: 0\n", "tasks.setup.timeout", 25, "'timeout' must be a number above 0; found the number 0"),
        ("    timeout: ten\n", "tasks.setup.timeout", 25, "'timeout' must be a number; found the text 'ten'"),
        ("    timeout: .inf\n", "tasks.setup.timeout", 25, "must be a number above 0; found the number inf"),
        ("    retries: -1\n", "tasks.setup.retries", 25, "'retries' must be 0 or more"),
        ("    retries: 1.5\n", "tasks.setup.retries", 25, "'retries' must be a whole number"),
        ("    retries: true\n", "tasks.setup.retries", 25, "'retries' must be a whole number; found true"),
        ("    config: [1]\n", "tasks.setup.config", 25, "'config' must be a mapping of executor settings"),
        (
            "    owner: me\n",
            "tasks.setup.owner",
            25,
            "unknown key 'owner' in task setup; allowed keys: executor, config, timeout, retries",
        ),
    ],
)
def test_it_checks_task_fields(extra, path, line, words):
    text = (
        BASE.replace("    executor: sleep\n", "") + ("    executor: sleep\n" if "executor" not in extra else "") + extra
    )
    problem = error_at(spec.validate(text), path)
    assert problem.line == line and words in problem.message


def test_it_requires_an_executor():
    problem = error_at(spec.validate(BASE.replace("    executor: sleep\n", "    timeout: 5\n")), "tasks.setup.executor")
    assert problem.line == 23 and "missing 'executor' in task setup; allowed: shell, http" in problem.message


def test_it_requires_a_task_to_be_a_mapping():
    problem = error_at(
        spec.validate(BASE.replace("  setup:\n    executor: sleep\n", "  setup: sleep\n")), "tasks.setup"
    )
    assert problem.line == 23 and "task setup must be a mapping with executor and config" in problem.message


# --- executor configs ---------------------------------------------------------------------------

CONFIG_ERRORS = [
    # terraform
    ("terraform", None, "config.action", 8, "missing 'action' in the terraform config; allowed: apply, destroy"),
    ("terraform", None, "config.source", 8, "missing 'source' in the terraform config: {type: s3, bucket, key}"),
    (
        "terraform",
        "{action: plan, source: {type: local, location: .}}",
        "config.action",
        10,
        "must be one of apply, destroy",
    ),
    ("terraform", "{action: apply, source: {type: git}}", "config.source.type", 10, "'type' must be one of s3, local"),
    (
        "terraform",
        "{action: apply, source: {type: s3, bucket: b}}",
        "config.source.key",
        10,
        "missing 'key' in the terraform source",
    ),
    (
        "terraform",
        "{action: apply, source: {type: local, location: 5}}",
        "config.source.location",
        10,
        "'location' must be text",
    ),
    (
        "terraform",
        "{action: apply, source: {type: local, location: ., bucket: b}}",
        "config.source.bucket",
        10,
        "allowed keys: type, location",
    ),
    ("terraform", "{action: apply, source: s3://b/k}", "config.source", 10, "'source' must be a mapping"),
    (
        "terraform",
        "{action: apply, source: {type: local, location: .}, variables: {a: [1]}}",
        "config.variables.a",
        10,
        "must be a text, number, true/false or null value",
    ),
    (
        "terraform",
        "{action: apply, source: {type: local, location: .}, vars: {}}",
        "config.vars",
        10,
        "allowed keys: action, source, variables",
    ),
    # lambda
    ("lambda", None, "config.name", 8, "missing 'name' in the lambda config"),
    ("lambda", "{name: ''}", "config.name", 10, "'name' must not be empty"),
    ("lambda", "{name: f, args: [1]}", "config.args", 10, "'args' must be a mapping"),
    # shell
    ("shell", None, "config.command", 8, "missing 'command' in the shell config; a list of arguments"),
    ("shell", "{command: []}", "config.command", 10, "command must be a non-empty list of arguments"),
    ("shell", "{command: [./run.sh, 5]}", "config.command[1]", 10, "every argument must be text (quote numbers)"),
    ("shell", "{command: ['']}", "config.command[0]", 10, "the program to run must not be empty"),
    ("shell", "{command: [a], env: {A: 1.10}}", "config.env.A", 10, "'A' must be text (quote it"),
    ("shell", "{command: [a], env: {A: true}}", "config.env.A", 10, "found true"),
    ("shell", "{command: [a], env: [A=1]}", "config.env", 10, "'env' must be a mapping"),
    ("shell", "{command: [a], cwd: 5}", "config.cwd", 10, "'cwd' must be text"),
    ("shell", "{command: [a], shell: true}", "config.shell", 10, "allowed keys: command, env, cwd"),
    # http
    ("http", None, "config.url", 8, "missing 'url' in the http config"),
    (
        "http",
        "{url: ftp://example.com/x}",
        "config.url",
        10,
        "'url' must be an http:// or https:// address with a host",
    ),
    ("http", "{url: 'https://'}", "config.url", 10, "with a host"),
    ("http", "{url: 'http://[::1'}", "config.url", 10, "with a host"),
    (
        "http",
        "{url: 'http://x', method: FETCH}",
        "config.method",
        10,
        "'method' must be one of GET, POST, PUT, PATCH, DELETE",
    ),
    ("http", "{url: 'http://x', mode: async}", "config.mode", 10, "'mode' must be one of sync, callback"),
    ("http", "{url: 'http://x', headers: {X-A: [1]}}", "config.headers.X-A", 10, "'X-A' must be text"),
    # python
    ("python", None, "config.callable", 8, "missing 'callable' in the python config"),
    ("python", "{callable: os.system}", "config.callable", 10, "'callable' must look like package.module:function"),
    ("python", "{callable: 'pkg.mod:fn()'}", "config.callable", 10, "must look like package.module:function"),
    ("python", "{callable: 'pkg..mod:fn'}", "config.callable", 10, "must look like package.module:function"),
    ("python", "{callable: 'a:b', args: 1}", "config.args", 10, "'args' must be a mapping"),
    # external
    ("external", "{instructions: [a]}", "config.instructions", 10, "'instructions' must be text"),
    ("external", "{approvers: [a]}", "config.approvers", 10, "allowed keys: instructions"),
    # sleep
    ("sleep", "{seconds: -1}", "config.seconds", 10, "'seconds' must be a number 0 or more"),
    ("sleep", "{seconds: soon}", "config.seconds", 10, "'seconds' must be a number"),
    ("sleep", "{fail: 1.5}", "config.fail", 10, "'fail' must be a number from 0 to 1"),
    ("sleep", "{fail: -0.1}", "config.fail", 10, "'fail' must be a number from 0 to 1"),
]


@pytest.mark.parametrize("executor,config,path,line,words", CONFIG_ERRORS)
def test_it_checks_executor_configs(executor, config, path, line, words):
    problem = error_at(one_task(executor, config), f"tasks.t.{path}")
    assert problem.line == line
    assert words in problem.message


def test_it_refuses_a_shell_command_string_and_says_why():
    problem = error_at(one_task("shell", "{command: ./deploy.sh --env qa}"), "tasks.t.config.command")
    assert problem.message == (
        'command must be a list of arguments, e.g. ["./deploy.sh", "--env", "qa"]; CloudSeam never runs a shell'
    )


@pytest.mark.parametrize(
    "executor,config,expected",
    [
        ("external", None, {}),
        ("sleep", None, {"seconds": 1}),
        ("sleep", "{seconds: 0, fail: 0.25}", {"seconds": 0, "fail": 0.25}),
        (
            "http",
            "{url: 'http://x', method: GET, mode: callback}",
            {"url": "http://x", "method": "GET", "mode": "callback"},
        ),
        ("python", "{callable: 'tasks:run'}", {"callable": "tasks:run"}),
        ("lambda", "{name: f}", {"name": "f"}),
        (
            "shell",
            "{command: [make], env: {PORT: 8080, HOST: x}}",
            {"command": ["make"], "env": {"PORT": "8080", "HOST": "x"}},
        ),
    ],
)
def test_it_stores_configs_read_only_with_defaults(executor, config, expected):
    result = one_task(executor, config)
    assert result.errors == ()
    stored = result.machine.tasks["t"].config
    assert isinstance(stored, MappingProxyType)
    assert dict(stored) == expected


# --- collecting every problem -------------------------------------------------------------------


def test_it_collects_every_error_in_line_order():
    result = check(
        """\
        version: 2
        events: [GO, NEXT]
        states:
          INIT:
            on:
              GO: [{action: advance, state: NOWHERE}]
              STOP: [{action: no-op}]
        tasks:
          a: {executor: shell, config: {command: run}}
        """
    )
    assert [(p.line, p.path) for p in result.errors] == [
        (1, "version"),
        (2, "events[1]"),
        (3, "states"),  # no terminal state
        (6, "states.INIT.on.GO[0].state"),
        (7, "states.INIT.on.STOP"),
        (9, "tasks.a.config.command"),
    ]
    assert result.machine is None


# --- warnings -----------------------------------------------------------------------------------

WARNED = """\
version: 1
events: [GO, UNUSED]
states:
  INIT:
    on:
      GO: [{action: advance, state: LOOP}]
  LOOP:
    on:
      GO: [{action: no-op}]
  ORPHAN:
    terminal: true
    on:
      NEXT: [{action: no-op}]
tasks:
  spare: {executor: external}
"""


def test_it_warns_without_failing():
    result = spec.validate(WARNED)
    assert result.errors == () and result.valid and result.machine is not None
    assert [(p.line, p.path) for p in result.warnings] == [
        (2, "events[1]"),
        (4, "states.INIT"),
        (10, "states.ORPHAN"),
        (10, "states.ORPHAN.on.NEXT"),
        (15, "tasks.spare"),
    ]


def test_it_warns_about_unreachable_states():
    assert "state ORPHAN cannot be reached from INIT" in warning_at(spec.validate(WARNED), "states.ORPHAN").message


def test_it_warns_about_events_no_state_handles():
    message = warning_at(spec.validate(WARNED), "events[1]").message
    assert "event UNUSED is declared but no state handles it" in message


def test_it_warns_when_no_terminal_state_can_be_reached():
    message = warning_at(spec.validate(WARNED), "states.INIT").message
    assert "no terminal state can be reached from INIT" in message


def test_it_warns_about_unused_tasks():
    assert "task spare is defined but no state uses it" in warning_at(spec.validate(WARNED), "tasks.spare").message


def test_it_warns_that_next_never_runs_in_a_terminal_state():
    assert "this NEXT handler never runs" in warning_at(spec.validate(WARNED), "states.ORPHAN.on.NEXT").message


# --- reading problems come through validate -----------------------------------------------------


@pytest.mark.parametrize(
    "text,line,words",
    [
        (BASE + "version: 1\n", 25, "duplicate key 'version' (first at line 1)"),
        (variant("executor: sleep", "executor: !!python/name:os.system"), 24, "!!python/name:os.system is not allowed"),
        (BASE.replace("  DONE:", " DONE:"), 20, "not valid YAML"),
        ("- version: 1\n", 1, "the top level must be a mapping"),
        (b"version: 1\nstates: \xc3\x28\n", 2, "not valid UTF-8"),
    ],
)
def test_it_reports_reading_problems_as_errors(text, line, words):
    result = spec.validate(text)
    assert result.machine is None and len(result.errors) == 1
    assert result.errors[0].line == line and words in result.errors[0].message


# --- machine names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["qa-env", "original-v1-sample", "a", "0day", "team.app_v2", "x" * 63])
def test_it_accepts_machine_names(name):
    assert spec.check_machine_name(name) is None


@pytest.mark.parametrize(
    "name,words",
    [
        ("QA-Env", "must be lower case: use 'qa-env'"),
        ("qa.yml", "must leave out the .yml/.yaml extension"),
        ("qa.yaml", "must leave out the .yml/.yaml extension"),
        ("-qa", "is not allowed; use 1-63 lower-case letters"),
        (".hidden", "is not allowed"),
        ("qa env", "is not allowed"),
        ("x" * 64, "is not allowed"),
        ("qa/../etc", "is not allowed"),
        ("qa\n", "is not allowed"),
        ("", "a machine name is required"),
    ],
)
def test_it_rejects_machine_names(name, words):
    assert words in spec.check_machine_name(name)


# --- size and speed -----------------------------------------------------------------------------


def big_machine(count: int = 300) -> str:
    lines = [
        "version: 1",
        "events: [GO, STOP]",
        "states:",
        "  INIT:",
        "    on:",
        "      GO: [{action: advance, state: S0}]",
    ]
    for i in range(count - 2):
        target = f"S{i + 1}" if i < count - 3 else "END"
        lines += [
            f"  S{i}:",
            f"    tasks: [t{i}]",
            "    on:",
            "      NEXT:",
            "        - action: advance",
            f"          state: {target}",
            "      STOP:",
            "        - action: advance",
            "          state: END",
        ]
    lines += ["  END:", "    terminal: true", "    tasks: [t298, t299]", "tasks:"]
    for i in range(count):
        lines += [f"  t{i}:", "    executor: shell", "    timeout: 30", "    config:"]
        lines += [f"      command: [./step.sh, --number, '{i}']", "      env: {STAGE: qa}"]
    return "\n".join(lines) + "\n"


def test_it_validates_300_states_and_300_tasks_in_well_under_100_ms():
    text = big_machine()
    result = spec.validate(text)
    assert result.errors == () and result.warnings == ()
    assert len(result.machine.states) == 300 and len(result.machine.tasks) == 300
    timings = []
    for _ in range(5):  # CPU time, best of five: other processes on a busy machine do not count
        started = time.process_time()
        spec.validate(text)
        timings.append(time.process_time() - started)
    assert min(timings) < 0.1, timings


# --- never raises -------------------------------------------------------------------------------

VOCABULARY = [
    "version", "events", "states", "tasks", "INIT", "RUN", "DONE", "NEXT", "GO", "TASK_ERROR", "on",
    "terminal", "action", "advance", "no-op", "state", "executor", "config", "timeout", "retries",
    "shell", "http", "python", "terraform", "lambda", "external", "sleep", "command", "url", "source",
    "type", "s3", "local", "callable", "seconds", "fail", "env", "headers", "x-a", "<<", "",
]  # fmt: skip

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(VOCABULARY) | st.text(max_size=8)
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(VOCABULARY), children, max_size=5)
    ),
    max_leaves=40,
)


def assert_handled(result: Validation) -> None:
    assert isinstance(result, Validation)
    assert result.valid == (result.machine is not None)
    for problem in result.errors + result.warnings:
        assert isinstance(problem.path, str) and problem.message
        assert problem.line is None or problem.line >= 1
        assert "bug in CloudSeam" not in problem.message, problem


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_it_never_raises_on_random_text(text):
    assert_handled(spec.validate(text))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary())
def test_it_never_raises_on_random_bytes(data):
    assert_handled(spec.validate(data))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_it_never_raises_on_random_yaml_structures(document):
    assert_handled(spec.validate(yaml.safe_dump(document)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from(["delete", "copy", "garble"]), st.text(max_size=6)), max_size=4
    )
)
def test_it_never_raises_on_damaged_machines(edits):
    lines = (MACHINES / "every-executor.yml").read_text().splitlines()
    for index, kind, text in edits:
        index %= len(lines)
        if kind == "delete":
            del lines[index]
        elif kind == "copy":
            lines.insert(index, lines[index])
        else:
            lines[index] = lines[index][: len(text)] + text
    assert_handled(spec.validate("\n".join(lines)))


# --- compatibility with the original CloudSeam (issue #7) ---------------------------------------


def test_it_accepts_an_empty_list_of_actions_as_accept_and_do_nothing():
    text = variant("      DESTROY:\n        - action: advance\n          state: DONE\n", "      DESTROY: []\n")
    text = text.replace("          state: RUN\n", "          state: RUN\n      DESTROY: []\n", 1)
    result = spec.validate(text)
    assert result.errors == ()
    assert result.machine.states["RUN"].on["DESTROY"] == ()
    assert result.machine.states["PROVISION"].on["DESTROY"] == ()
    assert result.machine.accepted_events("RUN") == ("DESTROY",)


def test_it_limits_state_and_event_names_to_63_characters():
    long_state, long_event, longest = "S" * 70, "E" * 64, "N" * 63
    text = variant("tasks:\n", f"  {long_state}: {{terminal: true}}\n  {longest}: {{terminal: true}}\ntasks:\n")
    text = text.replace("events: [LAUNCH, DESTROY]", f"events: [LAUNCH, DESTROY, {long_event}, {longest}]")
    result = spec.validate(text)

    state = error_at(result, f"states.{long_state}")
    assert state.line == 22
    assert state.message == (
        f"state name '{'S' * 57}...' is 70 characters long; state names may have at most 63 characters"
    )
    event = error_at(result, "events[2]")
    assert event.line == 2 and "event name" in event.message and "is 64 characters long" in event.message
    assert [p.path for p in result.errors] == ["events[2]", f"states.{long_state}"]  # 63 is allowed


DEAD_NEXT = """\
version: 1
events: [GO, STOP]
states:
  INIT:
    on:
      GO: [{action: advance, state: WAIT}]
  WAIT:
    on:
      NEXT: [{action: advance, state: HIDDEN}]
      STOP: [{action: advance, state: DONE}]
  HIDDEN:
    on:
      STOP: [{action: advance, state: DONE}]
  DONE:
    terminal: true
"""


def test_it_counts_next_only_from_states_whose_tasks_can_finish_when_warning_about_unreachable_states():
    result = spec.validate(DEAD_NEXT)
    assert result.valid
    hidden = warning_at(result, "states.HIDDEN")
    assert hidden.line == 11
    assert hidden.message.startswith("state HIDDEN cannot be reached from INIT: only the NEXT handler of WAIT")
    assert "never in a state without tasks" in hidden.message
    with_task = DEAD_NEXT.replace("  WAIT:\n", "  WAIT:\n    tasks: [check]\n") + "tasks: {check: {executor: sleep}}\n"
    assert spec.validate(with_task).warnings == ()

