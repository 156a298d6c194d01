"""The impact of a machine edit on running stacks (machines_app.impact): pure, no database.

Every reason on its own and in every combination, the "same as UPGRADE_MACHINE" rule for the two
reasons the service refuses, stacks pinned to older versions, counts per state and the sentence.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from machines_app import impact, spec
from machines_app.impact import EVENT_REMOVED, NO_TERMINAL, STATE_REMOVED, TASKS_CHANGED, StackRef

BASE = {
    "version": 1,
    "events": ["LAUNCH", "FREEZE", "RESUME", "DESTROY"],
    "states": {
        "INIT": {"on": {"LAUNCH": [{"action": "advance", "state": "PROVISION"}]}},
        "PROVISION": {
            "tasks": ["db", "cert"],
            "on": {"NEXT": [{"action": "advance", "state": "RUN"}],
                   "DESTROY": [{"action": "advance", "state": "GONE"}]},
        },
        "RUN": {"on": {"FREEZE": [{"action": "advance", "state": "FROZEN"}],
                       "DESTROY": [{"action": "advance", "state": "GONE"}]}},
        "FROZEN": {"on": {"RESUME": [{"action": "advance", "state": "RUN"}],
                          "DESTROY": [{"action": "advance", "state": "GONE"}]}},
        "GONE": {"terminal": True},
    },
    "tasks": {"db": {"executor": "external"}, "cert": {"executor": "external"}, "snapshot": {"executor": "external"}},
}


def build(*changes) -> spec.Machine:
    doc = copy.deepcopy(BASE)
    for change in changes:
        change(doc)
    return spec.load(yaml.safe_dump(doc, sort_keys=False))


def advance(state: str) -> list[dict]:
    return [{"action": "advance", "state": state}]


# Changes to FROZEN, one per reason, that can be combined in any order given.
def frozen_gets_a_task(doc: dict) -> None:
    doc["states"]["FROZEN"]["tasks"] = ["snapshot"]
    doc["states"]["FROZEN"]["on"]["NEXT"] = advance("FROZEN")


def frozen_drops_resume(doc: dict) -> None:
    del doc["states"]["FROZEN"]["on"]["RESUME"]


def frozen_leads_nowhere(doc: dict) -> None:
    """Every handler of FROZEN now goes to TRAP, a state with no way out: no terminal state is reachable."""
    doc["states"]["TRAP"] = {}
    for event in doc["states"]["FROZEN"]["on"]:
        doc["states"]["FROZEN"]["on"][event] = advance("TRAP")


def frozen_removed(doc: dict) -> None:
    del doc["states"]["FROZEN"]
    doc["states"]["RUN"]["on"]["FREEZE"] = [{"action": "no-op"}]


CHANGES = {TASKS_CHANGED: frozen_gets_a_task, EVENT_REMOVED: frozen_drops_resume, NO_TERMINAL: frozen_leads_nowhere}
OLD = build()
STACKS = [StackRef("feature-12", "FROZEN"), StackRef("master", "RUN"), StackRef("qa-7", "PROVISION", ("db", "cert"))]


def codes(old: spec.Machine, new: spec.Machine, stack: StackRef) -> set[str]:
    return {r.code for r in impact.stack_reasons(old, new, stack)}


def test_it_lets_every_stack_move_up_when_nothing_they_rely_on_changed():
    result = impact.assess(OLD, [(OLD, STACKS)])
    assert [s.upgradable for s in result.stacks] == [True, True, True]
    assert result.stranded == ()
    assert result.summary() == "This version would let all 3 active stacks move up"


@pytest.mark.parametrize(
    "combination",
    [c for n in range(1, len(CHANGES) + 1) for c in itertools.combinations(CHANGES, n)],
    ids=lambda c: "+".join(c),
)
def test_it_names_every_reason_and_every_combination_of_reasons(combination):
    new = build(*(CHANGES[code] for code in combination))
    assert codes(OLD, new, STACKS[0]) == set(combination)
    assert codes(OLD, new, STACKS[1]) == set()  # RUN itself is untouched: its stack can move up
    assert codes(OLD, new, STACKS[2]) == set()


def test_it_reports_a_removed_state_alone_whatever_else_changed():
    new = build(frozen_removed)
    reasons = impact.stack_reasons(OLD, new, STACKS[0])
    assert [r.code for r in reasons] == [STATE_REMOVED]
    assert reasons[0].blocks_upgrade
    assert "state FROZEN does not exist in this version" in reasons[0].message
    assert "INIT, PROVISION, RUN, GONE" in reasons[0].message


@pytest.mark.parametrize(
    ("new_tasks", "stack_tasks"),
    [(["db"], ("db", "cert")), (["db", "cert", "snapshot"], ("db", "cert")), (["cert", "db"], ("db", "cert"))],
    ids=["task removed", "task added", "tasks reordered"],
)
def test_it_treats_any_change_to_the_tasks_as_upgrade_machine_does(new_tasks, stack_tasks):
    def change(doc):
        doc["states"]["PROVISION"]["tasks"] = new_tasks

    reasons = impact.stack_reasons(OLD, build(change), StackRef("qa-7", "PROVISION", stack_tasks))
    assert [r.code for r in reasons] == [TASKS_CHANGED]
    assert reasons[0].blocks_upgrade
    assert "state PROVISION has different tasks in this version" in reasons[0].message


def test_it_compares_the_stacks_own_tasks_not_the_old_definition():
    """UPGRADE_MACHINE compares the stack's current task instances, so the impact does too."""
    assert codes(OLD, OLD, StackRef("odd", "PROVISION", ("db",))) == {TASKS_CHANGED}
    assert codes(OLD, OLD, StackRef("fine", "PROVISION", ("db", "cert"))) == set()


def test_it_does_not_block_the_upgrade_for_a_removed_event_or_a_lost_terminal_path():
    new = build(frozen_drops_resume, frozen_leads_nowhere)
    reasons = impact.stack_reasons(OLD, new, STACKS[0])
    assert {r.code for r in reasons} == {EVENT_REMOVED, NO_TERMINAL}
    assert not any(r.blocks_upgrade for r in reasons)
    assert any("no longer handles RESUME, which the stack may be waiting for" in r.message for r in reasons)
    assert any("from state FROZEN no terminal state can be reached" in r.message for r in reasons)


def test_it_treats_an_event_removed_from_the_machine_as_removed_from_the_state():
    def drop_resume_everywhere(doc):
        doc["events"].remove("RESUME")
        del doc["states"]["FROZEN"]["on"]["RESUME"]

    assert codes(OLD, build(drop_resume_everywhere), STACKS[0]) == {EVENT_REMOVED}


@pytest.mark.parametrize(
    "change",
    [
        lambda doc: doc["states"]["FROZEN"]["on"].update(RESUME=advance("PROVISION")),  # another target
        lambda doc: doc["states"]["FROZEN"]["on"].update(FREEZE=[{"action": "no-op"}]),  # a new event handled
        lambda doc: doc["states"]["RUN"]["on"].pop("FREEZE"),  # another state changed
        lambda doc: doc["tasks"]["db"].update(timeout=30),  # a task's definition changed, not the list
    ],
    ids=["handler retargeted", "event added", "other state changed", "task config changed"],
)
def test_it_lets_a_stack_move_up_across_harmless_changes(change):
    assert codes(OLD, build(change), STACKS[0]) == set()


def test_it_only_reports_a_lost_terminal_path_that_existed_before():
    old = build(frozen_leads_nowhere)
    assert codes(old, old, StackRef("stuck", "FROZEN")) == set()


def test_it_compares_each_stack_with_the_version_it_is_pinned_to():
    v1, v2 = OLD, build(frozen_drops_resume)
    draft = build(frozen_drops_resume, lambda doc: doc["events"].append("PAUSE"))
    result = impact.assess(draft, [(v1, [StackRef("old", "FROZEN", (), 1)]), (v2, [StackRef("new", "FROZEN", (), 2)])])
    verdicts = {s.stack.key: s for s in result.stacks}
    assert [r.code for r in verdicts["old"].reasons] == [EVENT_REMOVED]
    assert verdicts["new"].upgradable
    assert verdicts["old"].as_dict()["version"] == 1


def test_it_counts_stacks_per_state():
    stacks = [StackRef(f"f-{i}", "FROZEN") for i in range(3)] + [StackRef("m", "RUN"), StackRef("q", "INIT")]
    result = impact.assess(build(frozen_removed), [(OLD, stacks)])
    assert result.states["FROZEN"] == impact.StateCount(stacks=3, upgradable=0, stranded=3)
    assert result.states["RUN"] == impact.StateCount(stacks=1, upgradable=1, stranded=0)
    assert result.as_dict()["states"]["INIT"] == {"stacks": 1, "upgradable": 1, "stranded": 0}


def test_it_says_what_the_version_would_do_in_one_sentence():
    stacks = [StackRef(k, "FROZEN") for k in ("feature-12", "feature-19", "qa-7")]
    stacks += [StackRef(f"run-{i}", "RUN") for i in range(41)]
    result = impact.assess(build(frozen_removed), [(OLD, stacks)])
    assert result.summary() == (
        "This version would leave 3 stacks stranded (FROZEN no longer exists: feature-12, feature-19, qa-7) "
        "and let 41 move up"
    )


def test_it_groups_the_sentence_by_reason_and_shortens_long_lists():
    stacks = [StackRef(f"f-{i}", "FROZEN") for i in range(8)] + [StackRef("p", "PROVISION", ("db",))]
    result = impact.assess(build(frozen_drops_resume), [(OLD, stacks)])
    assert result.summary() == (
        "This version would leave 9 stacks stranded (FROZEN no longer handles RESUME: f-0, f-1, f-2, f-3, f-4 "
        "and 3 more; PROVISION has different tasks: p) and let 0 move up"
    )


def test_it_says_so_when_there_is_nothing_to_move():
    assert impact.assess(OLD, []).summary() == "This version affects no stack: none is active"
    assert impact.assess(OLD, [(OLD, STACKS[:1])]).summary() == "This version would let the 1 active stack move up"


def test_it_works_out_each_distinct_stack_situation_once():
    """10 000 stacks in a handful of states cost a handful of comparisons (the editor asks as you type)."""
    stacks = [StackRef(f"s-{i}", ("RUN", "FROZEN")[i % 2]) for i in range(10_000)]
    result = impact.assess(build(frozen_removed), [(OLD, stacks)])
    assert len(result.stranded) == 5000
    assert result.stranded[0].reasons is result.stranded[1].reasons


def test_it_finds_the_states_that_reach_a_terminal_state():
    assert impact.terminal_reaching(OLD) == {"INIT", "PROVISION", "RUN", "FROZEN", "GONE"}
    assert impact.terminal_reaching(build(frozen_leads_nowhere)) == {"INIT", "PROVISION", "RUN", "GONE"}


# --- stranded stacks by group: what the API answers, however many stacks there are ----------------------


def test_it_puts_stacks_stranded_for_the_same_reasons_in_one_group_whatever_their_version():
    v1, v2 = OLD, build(lambda doc: doc["events"].append("PAUSE"))
    result = impact.assess(build(frozen_removed), [
        (v2, [StackRef("b", "FROZEN", (), 2), StackRef("m", "RUN", (), 2)]),
        (v1, [StackRef("c", "FROZEN", (), 1), StackRef("a", "FROZEN", (), 1)]),
    ])
    [group] = result.stranded_groups
    assert group.state == "FROZEN" and [r.code for r in group.reasons] == [STATE_REMOVED]
    assert group.stacks == [("a", 1), ("b", 2), ("c", 1)]
    assert result.stranded_count == 3 and result.active == 4


def test_it_keeps_different_reasons_apart_and_orders_the_groups_by_their_first_stack():
    stacks = [StackRef("z-frozen", "FROZEN"), StackRef("p-odd", "PROVISION", ("db",)),
              StackRef("q-odder", "PROVISION", ()), StackRef("b-frozen", "FROZEN"), StackRef("run", "RUN")]
    result = impact.assess(build(frozen_drops_resume), [(OLD, stacks)])
    groups = [(g.state, [k for k, _ in g.stacks], {r.code for r in g.reasons}) for g in result.stranded_groups]
    assert groups == [
        ("FROZEN", ["b-frozen", "z-frozen"], {EVENT_REMOVED}),
        ("PROVISION", ["p-odd"], {TASKS_CHANGED}),  # each set of tasks has its own sentence
        ("PROVISION", ["q-odder"], {TASKS_CHANGED}),
    ]
    # …but the summary sentence says "different tasks" once for both
    assert "PROVISION has different tasks: p-odd, q-odder" in result.summary()


def test_it_answers_counts_and_only_the_first_stacks_of_each_group():
    stacks = [StackRef(f"f-{i:03}", "FROZEN", (), 1) for i in range(120)] + [StackRef("run", "RUN", (), 1)]
    stacks += [StackRef("p", "PROVISION", ("db",), 1)]
    body = impact.assess(build(frozen_removed), [(OLD, stacks)]).as_dict(listed=50)
    assert (body["active"], body["upgradableCount"], body["strandedCount"]) == (122, 1, 121)
    frozen, provision = body["strandedGroups"]
    assert frozen["state"] == "FROZEN" and frozen["count"] == 120
    assert frozen["stacks"] == [{"id": f"f-{i:03}", "version": 1} for i in range(50)]
    assert frozen["reasons"] == [{"code": STATE_REMOVED, "message": frozen["reasons"][0]["message"],
                                  "blocksUpgrade": True}]
    assert provision == {"state": "PROVISION", "count": 1, "stacks": [{"id": "p", "version": 1}],
                         "reasons": [r.as_dict() for r in impact.stack_reasons(OLD, OLD, stacks[-1])]}
    assert body["states"]["FROZEN"] == {"stacks": 120, "upgradable": 0, "stranded": 120}


def test_it_answers_no_groups_when_nothing_is_stranded():
    body = impact.assess(OLD, [(OLD, STACKS)]).as_dict()
    assert (body["upgradableCount"], body["strandedCount"], body["strandedGroups"]) == (3, 0, [])


SITUATIONS = [StackRef("", state, tasks) for state, tasks in
              [("FROZEN", ()), ("RUN", ()), ("PROVISION", ("db", "cert")), ("PROVISION", ("db",)), ("INIT", ())]]


@given(
    picks=st.lists(st.tuples(st.sampled_from(SITUATIONS), st.sampled_from([1, 2])), max_size=60),
    changes=st.one_of(st.lists(st.sampled_from(list(CHANGES.values())), max_size=3, unique=True),
                      st.just([frozen_removed])),
)
@settings(max_examples=60, deadline=None)
def test_it_groups_exactly_the_stacks_each_verdict_strands(picks, changes):
    """Whatever the stacks, versions and draft: the groups hold each stranded stack once, with its own reasons."""
    old = {1: OLD, 2: build(frozen_gets_a_task)}
    stacks = {1: [], 2: []}
    for i, (situation, version) in enumerate(picks):
        stacks[version].append(situation._replace(key=f"s-{i}", version=version))
    new = build(*changes)
    result = impact.assess(new, [(old[v], stacks[v]) for v in (1, 2)])
    grouped = {key: (version, group.reasons) for group in result.stranded_groups for key, version in group.stacks}
    one_by_one = {s.key: (v, impact.stack_reasons(old[v], new, s)) for v in (1, 2) for s in stacks[v]}
    assert grouped == {key: verdict for key, verdict in one_by_one.items() if verdict[1]}
    assert all(group.stacks == sorted(group.stacks) for group in result.stranded_groups)
    body = result.as_dict()
    assert sum(group["count"] for group in body["strandedGroups"]) == body["strandedCount"] == len(grouped)
    assert body["upgradableCount"] == len(result.upgradable_keys()) == len(picks) - len(grouped)
