"""Machine diagrams, tested on the Mermaid and DOT text (and once through a real ``dot``).

Machines are built straight from the spec dataclasses so these tests do not depend on the YAML
parser; no database is used.
"""

from __future__ import annotations

import re
import shutil
import time
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from machines_app import diagrams
from machines_app.diagrams import (
    DiagramError,
    Edge,
    build_graph,
    mermaid_node_id,
    render_svg,
    svg_node_id,
    to_dot,
    to_mermaid,
)
from machines_app.spec import Action, Machine, State, TaskDef

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE_STATE = '<script>alert("x")</script>'
HOSTILE_TASK = "a\"b'c<img src=x onerror=alert(1)>&amp;#quot;`d|e%%f;\\N"
HOSTILE_EVENT = 'GO"|-->s_X["pwn"]'
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


def advance(state: str) -> tuple[Action, ...]:
    return (Action(kind="advance", state=state),)


NOOP = (Action(kind="no-op"),)


def make_machine(states: list[State], events: tuple[str, ...] = ()) -> Machine:
    task_names = {task for state in states for task in state.tasks}
    return Machine(
        version=1,
        events=events,
        states={state.name: state for state in states},
        tasks={name: TaskDef(name=name, executor="sleep") for name in sorted(task_names)},
    )


@pytest.fixture
def machine() -> Machine:
    """A small lifecycle: INIT -LAUNCH-> PROVISION -NEXT-> RUNNING -DESTROY-> TEAR-DOWN."""
    return make_machine(
        [
            State("INIT", on={"LAUNCH": advance("PROVISION"), "PING": NOOP}),
            State(
                "PROVISION",
                tasks=("create-db", "issue.cert"),
                on={"NEXT": advance("RUNNING"), "DESTROY": advance("TEAR-DOWN")},
            ),
            State(
                "RUNNING",
                on={
                    "DESTROY": advance("TEAR-DOWN"),
                    "STOP": advance("TEAR-DOWN"),
                    "REDEPLOY": advance("RUNNING"),
                    "PING": NOOP,
                },
            ),
            State("TEAR-DOWN", terminal=True, tasks=("drop-db",), on={"NEXT": NOOP}),
        ],
        events=("LAUNCH", "DESTROY", "STOP", "REDEPLOY", "PING"),
    )


@pytest.fixture
def hostile() -> Machine:
    """Names no validator would let through, to prove the text cannot be broken or injected."""
    return make_machine(
        [
            State("INIT", on={HOSTILE_EVENT: advance(HOSTILE_STATE)}),
            State(HOSTILE_STATE, terminal=True, tasks=(HOSTILE_TASK,)),
        ],
        events=(HOSTILE_EVENT,),
    )


@pytest.fixture
def no_dot(tmp_path, monkeypatch):
    """PATH without Graphviz; the cached lookup is cleared before and after."""
    monkeypatch.setenv("PATH", str(tmp_path))
    diagrams.dot_executable.cache_clear()
    yield
    diagrams.dot_executable.cache_clear()


def mermaid_lines(text: str, prefix: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]


def dot_node_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if " [label=<" in line]


# --- build_graph -----------------------------------------------------------------------------


def test_it_builds_nodes_in_document_order_with_roles(machine):
    graph = build_graph(machine)

    assert [n.state for n in graph.nodes] == ["INIT", "PROVISION", "RUNNING", "TEAR-DOWN"]
    assert graph.node("INIT").is_init and not graph.node("RUNNING").is_init
    assert graph.node("TEAR-DOWN").terminal and not graph.node("PROVISION").terminal
    assert graph.node("PROVISION").tasks == ("create-db", "issue.cert")


def test_it_merges_events_between_the_same_states_and_marks_next_automatic(machine):
    edges = build_graph(machine).edges

    assert Edge("RUNNING", "TEAR-DOWN", ("DESTROY", "STOP")) in edges
    assert Edge("PROVISION", "RUNNING", ("NEXT",), automatic=True) in edges
    assert Edge("INIT", "PROVISION", ("LAUNCH",)) in edges
    assert Edge("RUNNING", "TEAR-DOWN", ("DESTROY", "STOP")).label == "DESTROY, STOP"


def test_it_lists_noop_events_on_the_node_and_keeps_self_advances_as_edges(machine):
    graph = build_graph(machine)

    assert graph.node("RUNNING").noop_events == ("PING",)
    assert graph.node("TEAR-DOWN").noop_events == ("NEXT",)
    assert Edge("RUNNING", "RUNNING", ("REDEPLOY",)) in graph.edges
    assert all(e.events != ("PING",) for e in graph.edges)


def test_it_sends_an_edge_to_the_last_advance_of_an_event():
    machine = make_machine(
        [
            State("INIT", on={"GO": (Action("advance", "A"), Action("no-op"), Action("advance", "B"))}),
            State("A", terminal=True),
            State("B", terminal=True),
        ]
    )

    assert build_graph(machine).edges == (Edge("INIT", "B", ("GO",)),)


# --- ids -------------------------------------------------------------------------------------


def test_it_derives_stable_node_ids_from_state_names():
    assert mermaid_node_id("TEAR-DOWN") == "s_TEAR_DOWN"
    assert mermaid_node_id("INIT") == "s_INIT"
    assert svg_node_id("TEAR-DOWN") == "state-TEAR-DOWN"
    assert svg_node_id("A-1") == "state-A-1"


def test_it_gives_the_same_text_every_time(machine):
    assert to_mermaid(machine, "RUNNING") == to_mermaid(machine, "RUNNING")
    assert to_dot(machine, "RUNNING") == to_dot(machine, "RUNNING")


@given(st.text())
def test_it_keeps_ids_to_safe_characters(name):
    assert re.fullmatch(r"s_[A-Za-z0-9_]*", mermaid_node_id(name))
    assert re.fullmatch(r"state-[A-Za-z0-9_-]*", svg_node_id(name))


@given(st.text(max_size=6), st.text(max_size=6))
def test_it_never_gives_two_names_the_same_id(a, b):
    if a != b:
        assert mermaid_node_id(a) != mermaid_node_id(b)
        assert svg_node_id(a) != svg_node_id(b)


def test_it_never_gives_two_dashed_names_the_same_mermaid_id():
    names = ["A-B", "A-x42_", "A_x2d_B", "A--B", "-", "--", "A-"]
    assert len({mermaid_node_id(n) for n in names}) == len(names)


# --- Mermaid ---------------------------------------------------------------------------------


def test_it_writes_a_mermaid_flowchart_with_nodes_and_edges(machine):
    text = to_mermaid(machine)

    assert text.startswith("flowchart LR\n")
    assert mermaid_lines(text, "s_INIT(") == ['s_INIT("INIT<br/>no-op: PING")']
    assert 's_TEAR_DOWN[["TEAR-DOWN<br/>▸ drop-db<br/>no-op: NEXT"]]' in text
    assert 's_PROVISION("PROVISION<br/>▸ create-db<br/>▸ issue.cert")' in text
    assert 's_INIT -->|"LAUNCH"| s_PROVISION' in text
    assert 's_PROVISION -.->|"NEXT"| s_RUNNING' in text
    assert 's_RUNNING -->|"DESTROY, STOP"| s_TEAR_DOWN' in text
    assert 's_RUNNING -->|"REDEPLOY"| s_RUNNING' in text


def test_it_declares_mermaid_classes_for_init_terminal_and_every_state(machine):
    text = to_mermaid(machine)

    for name in ("state", "init", "terminal", "current"):
        assert len(mermaid_lines(text, f"classDef {name} ")) == 1
    assert "class s_INIT init" in text
    assert "class s_TEAR_DOWN terminal" in text
    assert "class s_INIT,s_PROVISION,s_RUNNING,s_TEAR_DOWN state" in text
    assert not mermaid_lines(text, "class ") or "current" not in " ".join(mermaid_lines(text, "class "))


def test_it_puts_the_current_class_on_exactly_the_highlighted_mermaid_node(machine):
    text = to_mermaid(machine, highlight="RUNNING")

    assert [line for line in mermaid_lines(text, "class ") if line.endswith(" current")] == ["class s_RUNNING current"]


def test_it_shows_task_statuses_on_the_highlighted_mermaid_node_only(machine):
    statuses = {"create-db": "SATISFIED", "issue.cert": "ERROR", "drop-db": "PENDING"}
    text = to_mermaid(machine, highlight="PROVISION", task_status=statuses)

    assert 's_PROVISION("PROVISION<br/>✔ create-db · SATISFIED<br/>✖ issue.cert · ERROR")' in text
    assert "▸ drop-db<br/>" in text  # TEAR-DOWN is not the current state


def test_it_shows_task_statuses_everywhere_without_a_highlight(machine):
    text = to_mermaid(machine, task_status={"drop-db": "PENDING", "create-db": "SATISFIED"})

    assert "○ drop-db · PENDING" in text
    assert "✔ create-db · SATISFIED" in text
    assert "▸ issue.cert" in text


def test_it_escapes_hostile_names_in_mermaid(hostile):
    text = to_mermaid(hostile, highlight=HOSTILE_STATE, task_status={HOSTILE_TASK: '"><b>ERROR'})
    body = text.split("\n    classDef ")[0]

    assert "<script" not in text and "<img" not in text and "<b>" not in text
    assert "%%" not in text and "`" not in text and "\\" not in text
    # Each label is exactly one quoted string holding only safe characters, entities and our <br/>.
    for label in re.findall(r'"(.*?)"', body):
        leftover = re.sub(r"#\d+;|<br/>", "", label)
        assert re.fullmatch(r"[A-Za-z0-9 ._,:▸○✔✖?·-]*", leftover), label
    assert body.count('"') == 2 * 3  # two node labels and one edge label, nothing more
    assert f"class {mermaid_node_id(HOSTILE_STATE)} current" in text


def test_it_escapes_quotes_and_angles_with_mermaid_entity_codes(hostile):
    text = to_mermaid(hostile)

    assert '[["#60;script#62;alert#40;#34;x#34;#41;#60;#47;script#62;<br/>' in text
    assert "▸ a#34;b#39;c#60;img src#61;x onerror#61;alert#40;1#41;#62;" in text
    assert "#38;amp#59;#35;quot#59;#96;d#124;e#37;#37;f#59;#92;N" in text
    assert '-->|"GO#34;#124;--#62;s_X#91;#34;pwn#34;#93;"| s__x3c_' in text


@given(st.text())
def test_it_leaves_nothing_unescaped_in_mermaid_text(text):
    assert re.fullmatch(r"([A-Za-z0-9 ._,-]|#\d+;)*", diagrams._mermaid_text(text))


# --- DOT -------------------------------------------------------------------------------------


def test_it_writes_dot_with_ids_classes_and_labels(machine):
    text = to_dot(machine)

    assert text.startswith("digraph machine {")
    assert "rankdir=LR" in text
    init = next(line for line in dot_node_lines(text) if line.lstrip().startswith("INIT "))
    assert 'id="state-INIT"' in init and 'class="state init"' in init
    assert "<B>INIT</B>" in init and "no-op: PING" in init
    teardown = next(line for line in dot_node_lines(text) if '"TEAR-DOWN" [' in line)
    assert 'id="state-TEAR-DOWN"' in teardown and 'class="state terminal"' in teardown
    assert "peripheries=2" in teardown and "▸ drop-db" in teardown
    assert 'PROVISION -> RUNNING [class="transition automatic" label=NEXT style=dashed]' in text
    assert 'RUNNING -> "TEAR-DOWN" [class=transition label="DESTROY, STOP"]' in text
    assert "RUNNING -> RUNNING [class=transition label=REDEPLOY]" in text
    assert "nslimit" not in text and "xlabel" not in text


def test_it_fills_exactly_the_highlighted_dot_node(machine):
    text = to_dot(machine, highlight="INIT")

    current = [line for line in dot_node_lines(text) if "current" in line]
    assert len(current) == 1
    assert 'id="state-INIT"' in current[0] and 'class="state init current"' in current[0]
    assert 'fillcolor="#fde68a"' in current[0]
    assert sum('fillcolor="#fde68a"' in line for line in dot_node_lines(text)) == 1


def test_it_colours_task_statuses_in_dot(machine):
    statuses = {"create-db": "SATISFIED", "issue.cert": "ERROR"}
    text = to_dot(machine, highlight="PROVISION", task_status=statuses)

    assert '<TD ALIGN="LEFT" BGCOLOR="#dcfce7"><FONT COLOR="#166534">✔ create-db · SATISFIED</FONT>' in text
    assert '<TD ALIGN="LEFT" BGCOLOR="#fee2e2"><FONT COLOR="#991b1b">✖ issue.cert · ERROR</FONT>' in text


def test_it_escapes_hostile_names_in_dot(hostile):
    text = to_dot(hostile, highlight=HOSTILE_STATE, task_status={HOSTILE_TASK: "PENDING"})

    labels = "".join(re.findall(r"label=<(<TABLE.*?</TABLE>)>", text))
    assert "<script" not in text and "<img" not in text
    assert "<B>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</B>" in labels
    assert "a&quot;b&#x27;c&lt;img src=x onerror=alert(1)&gt;&amp;amp;#quot;`d|e%%f;\\\\N" in labels
    # Outside HTML labels, text is a DOT quoted string with its quotes and backslashes escaped.
    assert 'label="GO\\"|-->s_X[\\"pwn\\"]"' in text
    assert f'id="{svg_node_id(HOSTILE_STATE)}"' in text


def test_it_rejects_a_highlight_that_is_not_a_state(machine):
    with pytest.raises(DiagramError, match="'NOPE' is not in this machine; known states: INIT, PROVISION"):
        to_mermaid(machine, highlight="NOPE")
    with pytest.raises(DiagramError):
        to_dot(machine, highlight="NOPE")


# --- SVG through dot -------------------------------------------------------------------------


@needs_dot
def test_it_renders_svg_with_state_ids_and_classes(machine):
    svg = render_svg(to_dot(machine, highlight="RUNNING"))

    assert svg.startswith("<svg")
    root = ET.fromstring(svg)
    groups = {g.get("id"): g.get("class") for g in root.iter(f"{SVG}g")}
    assert groups["state-INIT"] == "node state init"
    assert groups["state-RUNNING"] == "node state current"
    assert groups["state-TEAR-DOWN"] == "node state terminal"


@needs_dot
def test_it_renders_hostile_names_as_plain_text(hostile):
    svg = render_svg(to_dot(hostile, task_status={HOSTILE_TASK: "ERROR"}))
    root = ET.fromstring(svg)

    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert HOSTILE_STATE in texts
    assert f"✖ {HOSTILE_TASK} · ERROR" in texts
    assert HOSTILE_EVENT in texts
    assert not list(root.iter(f"{SVG}script")) and not list(root.iter("script"))


@needs_dot
def test_it_raises_diagram_error_when_dot_fails():
    with pytest.raises(DiagramError, match="Graphviz's dot failed"):
        render_svg("digraph { this is not dot")


def test_it_raises_diagram_error_when_dot_is_missing(no_dot, machine):
    assert diagrams.dot_available() is False
    with pytest.raises(DiagramError, match="dot program is not installed; the page will draw"):
        render_svg(to_dot(machine))


def test_it_stops_dot_after_the_timeout(tmp_path, monkeypatch):
    slow = tmp_path / "dot"
    slow.write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 5\n")
    slow.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    diagrams.dot_executable.cache_clear()
    try:
        started = time.perf_counter()
        with pytest.raises(DiagramError, match="took longer than 0.2 s"):
            render_svg("digraph { A }", timeout=0.2)
        assert time.perf_counter() - started < 3
    finally:
        diagrams.dot_executable.cache_clear()


# --- size and legend -------------------------------------------------------------------------


def chain_machine(size: int) -> Machine:
    """INIT, then S1 … S<size-1> linked by NEXT, the last one terminal."""
    states = [State("INIT", on={"LAUNCH": advance("S1")})]
    for i in range(1, size - 1):
        states.append(State(f"S{i}", tasks=(f"task-{i}",), on={"NEXT": advance(f"S{i + 1}")}))
    states.append(State(f"S{size - 1}", terminal=True))
    return make_machine(states, events=("LAUNCH",))


def test_it_writes_text_for_a_300_state_machine_quickly():
    machine = chain_machine(300)

    started = time.perf_counter()
    mermaid = to_mermaid(machine, highlight="S150", task_status={"task-150": "PENDING"})
    dot = to_dot(machine, highlight="S150", task_status={"task-150": "PENDING"})
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    assert mermaid.count(" -.->") == 298 and dot.count("style=dashed") == 298
    assert "○ task-150 · PENDING" in mermaid


def test_it_asks_dot_for_a_compact_layout_above_the_threshold():
    small = to_dot(chain_machine(diagrams.COMPACT_LAYOUT_ABOVE))
    large = to_dot(chain_machine(diagrams.COMPACT_LAYOUT_ABOVE + 1))

    assert "nslimit" not in small and " label=NEXT" in small
    assert "nslimit=2 nslimit1=2" in large
    assert 'S1 -> S2 [class="transition automatic" style=dashed xlabel=NEXT]' in large


def test_it_gives_css_that_restyles_dot_svg_nodes_by_class():
    css = diagrams.svg_css("#diagram")
    rules = css.strip().splitlines()

    assert [rule.split(" path")[0] for rule in rules] == [
        "#diagram g.node.state",
        "#diagram g.node.init",
        "#diagram g.node.terminal",
        "#diagram g.node.current",
    ]
    assert "g.node.current path:first-of-type { fill: #fde68a; stroke: #b45309; stroke-width: 2.5px; }" in css


def test_it_lists_every_class_and_colour_in_the_legend(machine):
    items = {item.css_class: item for item in diagrams.legend()}

    assert {"state", "init", "terminal", "current", "automatic"} <= set(items)
    assert {"task-pending", "task-satisfied", "task-error"} <= set(items)
    assert items["current"].fill in to_dot(machine, highlight="INIT")
    assert f"fill:{items['init'].fill}" in to_mermaid(machine)


def test_it_draws_an_empty_action_list_like_a_no_op():
    empty = make_machine(
        [
            State("INIT", on={"LAUNCH": advance("RUN"), "ACCESS": ()}),
            State("RUN", tasks=("job",), on={"NEXT": (), "DESTROY": advance("END")}),
            State("END", terminal=True),
        ],
        events=("LAUNCH", "ACCESS", "DESTROY"),
    )

    graph = build_graph(empty)

    assert graph.node("INIT").noop_events == ("ACCESS",)
    assert graph.node("RUN").noop_events == ("NEXT",)
    assert [(e.source, e.target) for e in graph.edges] == [("INIT", "RUN"), ("RUN", "END")]
    assert "ACCESS" in to_mermaid(empty) and "ACCESS" in to_dot(empty)
