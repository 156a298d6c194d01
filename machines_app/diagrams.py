"""Machine diagrams: Mermaid and Graphviz DOT text from a machine, with one state highlighted.

Built in two steps, so that the drawing rules are tested on plain data and plain text, never on
images: ``build_graph`` turns a machine into small frozen dataclasses, and ``to_mermaid`` /
``to_dot`` turn those into text. ``render_svg`` runs Graphviz's ``dot`` when it is installed; when
it is not, pages fall back to drawing the Mermaid text in the browser. Pure Python (no Django), so
the API, the pages, the CLI and the editor preview share it.

Choices a reader of the pictures relies on:

- Mermaid output is a ``flowchart LR``: it lays machines out left to right like the DOT output,
  allows multi-line labels (task lists) and per-node classes, which ``stateDiagram-v2`` handles
  poorly.
- An edge means "this event moves the stack to another state". Several events between the same two
  states share one edge with a comma-joined label; ``NEXT`` edges (fired by the engine when every
  task is done) are kept apart and drawn dashed (``Edge.automatic``).
- Events handled with ``no-op`` only are listed on their node ("no-op: X, Y"), not drawn as
  self-loops: they change nothing, and loops would clutter large machines. An ``advance`` to the
  state itself is a real transition (tasks are recreated) and stays a self-loop edge.
- When an event runs several actions, the engine applies them in order, so the stack ends in the
  state of the last ``advance``; that is where the edge goes.
- Node ids are stable and derived from the state name, so a live page can find a drawn node and
  change its class without drawing again: Mermaid ``s_<NAME>`` with ``-`` written as ``_``
  (``TEAR-DOWN`` -> ``s_TEAR_DOWN``), SVG ``state-<NAME>`` (``state-TEAR-DOWN``). Characters that
  a valid machine never has in a state name are written as ``_x<hex>_``, keeping ids safe and
  distinct.
- Task statuses (task name -> ``PENDING``/``SATISFIED``/``ERROR``) are a stack's tasks, which belong
  to its current state, so with a highlighted state they are shown on that state only; without
  one (a preview), on every state that lists the task.
"""

from __future__ import annotations

import functools
import html
import shutil
import string
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

import graphviz

from machines_app.spec import Machine
from machines_app.spec.model import ERROR, INIT, NEXT, PENDING, SATISFIED

INIT_STATE = INIT
NEXT_EVENT = NEXT
# Above this many states to_dot asks for a cheaper layout (see to_dot and benchmarks/bench_diagrams.py).
COMPACT_LAYOUT_ABOVE = 100

DOT_MISSING = "Graphviz's dot program is not installed; the page will draw the diagram in the browser instead"


class DiagramError(Exception):
    """The one exception of this module: a diagram could not be drawn (see the message)."""


# ---------------------------------------------------------------------------------------------
# Step 1: machine -> graph


@dataclass(frozen=True)
class Node:
    """One state as drawn: its name, role, the tasks entering it creates and its no-op events."""

    state: str
    is_init: bool
    terminal: bool
    tasks: tuple[str, ...]
    noop_events: tuple[str, ...]  # accepted here but change nothing: listed on the node


@dataclass(frozen=True)
class Edge:
    """Every event that moves a stack from ``source`` to ``target`` (one arrow on the page)."""

    source: str
    target: str
    events: tuple[str, ...]
    automatic: bool = False  # the NEXT edge: fired by the engine, not by a person

    @property
    def label(self) -> str:
        return ", ".join(self.events)


@dataclass(frozen=True)
class Graph:
    """A machine reduced to what a diagram shows, in document order."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def node(self, state: str) -> Node:
        for node in self.nodes:
            if node.state == state:
                return node
        raise KeyError(state)


@dataclass(frozen=True)
class RunPath:
    """The way a stack went: transitions followed (with how often) and states where a task failed.

    Drawn over a machine without colour alone: visited states get a bold outline, followed edges
    a thick line (with "×N" when taken more than once), states where a task failed a dashed outline.
    """

    edges: tuple[tuple[str, str, int], ...] = ()  # (from state, to state, times taken)
    failed: tuple[str, ...] = ()

    @classmethod
    def of(cls, edges: Mapping[str, int] | None = None, failed=()) -> RunPath:
        """From the replay's shape: {"FROM>TO": count} and a list of states."""
        found = []
        for key, count in sorted((edges or {}).items()):
            source, _, target = key.partition(">")
            found.append((source, target, int(count)))
        return cls(edges=tuple(found), failed=tuple(sorted(set(failed))))

    @property
    def visited(self) -> frozenset[str]:
        return frozenset(s for source, target, _ in self.edges for s in (source, target))

    def count(self, source: str, target: str) -> int:
        return sum(n for s, t, n in self.edges if s == source and t == target)

    def cache_key(self) -> str:
        edges = ",".join(f"{s}>{t}={n}" for s, t, n in self.edges)
        return f"{edges};{','.join(self.failed)}"


def build_graph(machine: Machine) -> Graph:
    """Reduce a validated machine to nodes and merged edges (the data both renderers draw)."""
    nodes: list[Node] = []
    merged: dict[tuple[str, str, bool], list[str]] = {}
    for name, state in machine.states.items():
        noops: list[str] = []
        for event in state.on:
            target = state.leads_to(event)
            if target is None:
                noops.append(event)
            else:
                merged.setdefault((name, target, event == NEXT_EVENT), []).append(event)
        nodes.append(
            Node(
                state=name,
                is_init=name == INIT_STATE,
                terminal=state.terminal,
                tasks=tuple(state.tasks),
                noop_events=tuple(noops),
            )
        )
    edges = tuple(
        Edge(source=src, target=dst, events=tuple(events), automatic=auto)
        for (src, dst, auto), events in merged.items()
    )
    return Graph(nodes=tuple(nodes), edges=edges)


# ---------------------------------------------------------------------------------------------
# Shared by both renderers: ids, classes, colours


_ID_CHARS = frozenset(string.ascii_uppercase + string.digits + "-")


def _encode(name: str) -> str:
    """State name -> id-safe text; valid names (A-Z, 0-9, -) come back unchanged."""
    return "".join(c if c in _ID_CHARS else f"_x{ord(c):x}_" for c in name)


def svg_node_id(state: str) -> str:
    """The ``id`` of a state's ``<g>`` in the SVG drawn from ``to_dot`` (``state-PROVISION``)."""
    return "state-" + _encode(state)


def mermaid_node_id(state: str) -> str:
    """A state's Mermaid node id (``s_TEAR_DOWN``); Mermaid reads ``--`` in an id as an arrow."""
    return "s_" + _encode(state).replace("-", "_")


@dataclass(frozen=True)
class Colours:
    """How one class looks; the one table behind DOT attributes, Mermaid classDefs, CSS, legend."""

    fill: str
    stroke: str
    text: str = "#111827"
    stroke_width: float = 1.0


# Later entries win when a node has several roles (a highlighted terminal state looks current),
# in DOT attributes, in Mermaid's classDef order and in the CSS of ``svg_css``.
STATE_COLOURS: Mapping[str, Colours] = {
    "state": Colours(fill="#ffffff", stroke="#6b7280"),
    "init": Colours(fill="#dbeafe", stroke="#1d4ed8", stroke_width=1.5),
    "terminal": Colours(fill="#e5e7eb", stroke="#374151"),
    "current": Colours(fill="#fde68a", stroke="#b45309", stroke_width=2.5),
}
TASK_COLOURS: Mapping[str, Colours] = {
    PENDING: Colours(fill="#f3f4f6", stroke="#9ca3af", text="#374151"),
    SATISFIED: Colours(fill="#dcfce7", stroke="#16a34a", text="#166534"),
    ERROR: Colours(fill="#fee2e2", stroke="#dc2626", text="#991b1b"),
}
TASK_MARKS: Mapping[str, str] = {PENDING: "○", SATISFIED: "✔", ERROR: "✖"}
EDGE_COLOUR = "#4b5563"
# The path taken (RunPath): shape and line style first, colour second, so it reads without colour.
VISITED = Colours(fill="#ffffff", stroke="#111827", stroke_width=2.5)
FAILED = Colours(fill="#fee2e2", stroke="#b91c1c", text="#7f1d1d", stroke_width=2.5)
FOLLOWED_COLOUR, FOLLOWED_WIDTH = "#1e3a8a", 3.0


@dataclass(frozen=True)
class LegendItem:
    """One entry of a page's legend and how it looks.

    ``css_class`` is the CSS class for states (``state``, ``init``, ``terminal``, ``current``, on the
    node's ``<g>`` in both SVGs) and for NEXT edges (``automatic``, on the edge's ``<g>`` in the
    DOT SVG); task rows are coloured in the drawing itself, so theirs (``task-error`` …) only
    name legend entries (``swatch-task-error``).
    """

    css_class: str
    label: str
    fill: str
    stroke: str
    text: str


def legend(stack: bool = True) -> tuple[LegendItem, ...]:
    """What the colours mean, from the same table the renderers use, so the legend cannot drift.

    A machine page (``stack=False``) shows no stack: no current state, no task statuses, no path.
    """
    names = {
        "state": "state",
        "init": "initial state (INIT)",
        "terminal": "terminal state (double border)",
        "current": "current state (thick border)",
    }
    items = [LegendItem(cls, names[cls], c.fill, c.stroke, c.text) for cls, c in STATE_COLOURS.items()
             if stack or cls != "current"]
    if stack:
        items += [
            LegendItem(f"task-{status.lower()}", f"task {status}", c.fill, c.stroke, c.text)
            for status, c in TASK_COLOURS.items()
        ]
        items += [
            LegendItem("visited", "visited state (bold outline)", VISITED.fill, VISITED.stroke, VISITED.text),
            LegendItem("failed", "a task failed here (dashed red outline)", FAILED.fill, FAILED.stroke, FAILED.text),
            LegendItem("followed", "transition taken (thick line, ×N when repeated)", "none", FOLLOWED_COLOUR,
                       FOLLOWED_COLOUR),
        ]
    items.append(LegendItem("automatic", "NEXT (automatic, dashed)", "none", EDGE_COLOUR, EDGE_COLOUR))
    return tuple(items)


def _classes(node: Node, highlight: str | None) -> list[str]:
    """CSS classes of a node besides ``state``, in STATE_COLOURS order (later wins)."""
    roles = {"init": node.is_init, "terminal": node.terminal, "current": node.state == highlight}
    return [cls for cls, present in roles.items() if present]


def _check_highlight(graph: Graph, highlight: str | None) -> None:
    """A stack's state always exists in its pinned machine; anything else is a caller's bug."""
    if highlight is not None and all(n.state != highlight for n in graph.nodes):
        known = ", ".join(n.state for n in graph.nodes)
        raise DiagramError(f"state {highlight!r} is not in this machine; known states: {known}")


def _statuses(node: Node, highlight: str | None, task_status: Mapping[str, str] | None) -> Mapping[str, str]:
    """Task statuses to show on this node: a stack's tasks belong to its current state only."""
    if not task_status or (highlight is not None and node.state != highlight):
        return {}
    return task_status


def _task_mark(status: str | None) -> str:
    """The symbol before a task name: "▸" with no status, then ○ PENDING, ✔ SATISFIED, ✖ ERROR."""
    if status is None:
        return "▸"
    return TASK_MARKS.get(status, "?")


def _printable(text: str) -> str:
    """Replace control characters: a stray newline or NUL must not break either syntax."""
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


# ---------------------------------------------------------------------------------------------
# Step 2a: Mermaid


_MERMAID_SAFE = frozenset(string.ascii_letters + string.digits + " ._-,")


def _mermaid_text(text: str) -> str:
    """Escape user text for a quoted Mermaid label: anything but [A-Za-z0-9 ._-,] -> ``#<code>;``."""
    return "".join(c if c in _MERMAID_SAFE else f"#{ord(c)};" for c in _printable(text))


def _mermaid_label(node: Node, statuses: Mapping[str, str]) -> str:
    lines = [_mermaid_text(node.state)]
    for task in node.tasks:
        status = statuses.get(task)
        suffix = f" · {_mermaid_text(status)}" if status else ""
        lines.append(f"{_task_mark(status)} {_mermaid_text(task)}{suffix}")
    if node.noop_events:
        lines.append("no-op: " + _mermaid_text(", ".join(node.noop_events)))
    return "<br/>".join(lines)


def _mermaid_node(node: Node, statuses: Mapping[str, str]) -> str:
    """Terminal states get the double-bordered subroutine shape, others a rounded box.

    INIT keeps the rounded box (its class colours it): Mermaid draws a stadium as a nested group,
    which the live restyling recipe in ``to_mermaid`` would not reach.
    """
    label = f'"{_mermaid_label(node, statuses)}"'
    node_id = mermaid_node_id(node.state)
    if node.terminal:
        return f"{node_id}[[{label}]]"
    return f"{node_id}({label})"


def _mermaid_edge(edge: Edge) -> str:
    arrow = "-.->" if edge.automatic else "-->"
    label = _mermaid_text(edge.label)
    return f'{mermaid_node_id(edge.source)} {arrow}|"{label}"| {mermaid_node_id(edge.target)}'


def _mermaid_class_def(name: str, colours: Colours) -> str:
    return (
        f"classDef {name} fill:{colours.fill},stroke:{colours.stroke},"
        f"color:{colours.text},stroke-width:{colours.stroke_width:g}px"
    )


def to_mermaid(machine: Machine, highlight: str | None = None, task_status: Mapping[str, str] | None = None) -> str:
    """Mermaid ``flowchart LR`` text for the browser; node ids are ``mermaid_node_id(state)``.

    Every node gets the ``state`` class, plus ``init``, ``terminal`` and ``current`` (the
    highlighted state) as they apply. Mermaid 11 draws a node as ``<g class="node default state
    ..." id="<render id>-flowchart-s_RUNNING-<n>">``; ids never contain ``-``, so the selector
    ``g.node[id*="-flowchart-s_RUNNING-"]`` finds exactly one node. Mermaid also copies each
    node's classDef styles inline (``!important``) onto its shape, which would pin the colours:
    a live page removes the ``style`` attribute of ``g.node > *`` once after rendering (the
    classDef rules Mermaid puts in the SVG's stylesheet then give the same look) and from then on
    moves ``current`` by toggling classes.
    """
    graph = build_graph(machine)
    _check_highlight(graph, highlight)
    lines = ["flowchart LR"]
    lines += [f"    {_mermaid_node(n, _statuses(n, highlight, task_status))}" for n in graph.nodes]
    lines += [f"    {_mermaid_edge(e)}" for e in graph.edges]
    lines += [f"    {_mermaid_class_def(name, c)}" for name, c in STATE_COLOURS.items()]
    members: dict[str, list[str]] = {cls: [] for cls in STATE_COLOURS}
    for node in graph.nodes:
        for cls in ["state", *_classes(node, highlight)]:
            members[cls].append(mermaid_node_id(node.state))
    lines += [f"    class {','.join(ids)} {cls}" for cls, ids in members.items() if ids]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Step 2b: Graphviz DOT


def _html(text: str) -> str:
    """Escape user text for a Graphviz HTML-like label (an XML fragment).

    Graphviz still expands escString sequences (``\\N`` = node name, ``\\G`` …) in HTML label
    text, after decoding entities, so backslashes are doubled as well.
    """
    return html.escape(_printable(text), quote=True).replace("\\", "\\\\")


def _dot_task_row(task: str, status: str | None) -> str:
    suffix = f" · {status}" if status else ""
    text = _html(f"{_task_mark(status)} {task}{suffix}")
    colours = TASK_COLOURS.get(status or "")
    if colours is None:
        return f'<TR><TD ALIGN="LEFT">{text}</TD></TR>'
    return f'<TR><TD ALIGN="LEFT" BGCOLOR="{colours.fill}"><FONT COLOR="{colours.text}">{text}</FONT></TD></TR>'


def _dot_label(node: Node, statuses: Mapping[str, str]) -> str:
    """An HTML-like label: the state name in bold, one coloured row per task, then no-op events."""
    rows = [f"<TR><TD><B>{_html(node.state)}</B></TD></TR>"]
    rows += [_dot_task_row(task, statuses.get(task)) for task in node.tasks]
    if node.noop_events:
        noops = _html("no-op: " + ", ".join(node.noop_events))
        rows.append(f'<TR><TD><FONT POINT-SIZE="9" COLOR="#4b5563">{noops}</FONT></TD></TR>')
    return '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="1" CELLPADDING="2">' + "".join(rows) + "</TABLE>>"


def _dot_node_attrs(node: Node, highlight: str | None, path: RunPath | None = None) -> dict[str, str]:
    classes = _classes(node, highlight)
    colours = STATE_COLOURS[classes[-1] if classes else "state"]
    extra = []
    if path is not None and node.state in path.failed:
        extra, colours = ["failed"], FAILED if "current" not in classes else colours
    elif path is not None and node.state in path.visited:
        extra = ["visited"]
        if not set(classes) & {"current", "init"}:
            colours = VISITED
    attrs = {
        "id": svg_node_id(node.state),
        "class": " ".join(["state", *classes, *extra]),
        "fillcolor": colours.fill,
        "color": colours.stroke,
        "fontcolor": colours.text,
        "penwidth": f"{max(colours.stroke_width, 2.5 if extra else 0):g}",
    }
    if "failed" in extra:
        attrs["style"] = "rounded,filled,dashed"
    if node.terminal:
        attrs["peripheries"] = "2"
    return attrs


def svg_edge_id(source: str, target: str, automatic: bool = False) -> str:
    """The ``id`` of a transition's ``<g>`` in the DOT SVG (``edge-RUN--PROVISION``, ``-next`` for NEXT)."""
    return f"edge-{_encode(source)}--{_encode(target)}{'-next' if automatic else ''}"


def _dot_edge_attrs(edge: Edge, compact: bool, path: RunPath | None = None) -> dict[str, str]:
    """Edge attributes; a compact layout puts the event as ``xlabel`` (placed after layout)."""
    taken = path.count(edge.source, edge.target) if path is not None else 0
    text = edge.label + (f" ×{taken}" if taken > 1 else "")
    label = graphviz.escape(_printable(text))
    classes = ["transition", *(["automatic"] if edge.automatic else []), *(["followed"] if taken else [])]
    attrs = {"xlabel" if compact else "label": label, "class": " ".join(classes)}
    if path is not None:  # a stack's page: the scrubber finds the edge by id
        attrs["id"] = svg_edge_id(edge.source, edge.target, edge.automatic)
    if edge.automatic:
        attrs["style"] = "dashed"
    if taken:
        attrs.update({"penwidth": f"{FOLLOWED_WIDTH:g}", "color": FOLLOWED_COLOUR, "fontcolor": FOLLOWED_COLOUR})
    return attrs


def _dot_graph_attrs(compact: bool) -> dict[str, str]:
    """Graph attributes; a compact layout caps dot's network-simplex passes (``nslimit``)."""
    attrs = {"rankdir": "LR", "bgcolor": "transparent", "nodesep": "0.3", "ranksep": "0.5"}
    if compact:
        attrs.update({"nslimit": "2", "nslimit1": "2"})
    return attrs


def to_dot(machine: Machine, highlight: str | None = None, task_status: Mapping[str, str] | None = None,
           path: RunPath | None = None) -> str:
    """Graphviz DOT text, left to right; each state's SVG ``<g>`` gets ``id="state-<NAME>"``.

    Graphviz copies ``id`` and ``class`` into the SVG (``<g id="state-INIT" class="node state
    init">``), so a live page can move ``current`` by toggling classes: CSS (see ``svg_css``)
    overrides the colours drawn here. Terminal states have a double border, NEXT edges are dashed.

    Machines of more than ``COMPACT_LAYOUT_ABOVE`` states get a compact layout: dot's time grows
    steeply with size and long edges (300 states with a DESTROY edge from every tenth state to a
    teardown took over 60 s; Graphviz 2.43 crashed when its passes were capped while edge labels
    were ranked), so edge labels become ``xlabel`` and the passes are capped, which brings that
    machine to a fraction of a second at the cost of some label overlap. A DESTROY edge from each
    of 300 states still takes dot about 10 s: ``render_svg``'s timeout turns that into a
    DiagramError and the page draws the Mermaid text instead.

    With a ``path`` (a stack's run) visited states, followed transitions and states where a task
    failed are marked too (see ``RunPath``); each edge's ``<g>`` has ``id=svg_edge_id(...)``.
    """
    graph = build_graph(machine)
    _check_highlight(graph, highlight)
    compact = len(graph.nodes) > COMPACT_LAYOUT_ABOVE
    dot = graphviz.Digraph(
        name="machine",
        graph_attr=_dot_graph_attrs(compact),
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "11"},
        edge_attr={"fontname": "Helvetica", "fontsize": "10", "color": EDGE_COLOUR, "fontcolor": EDGE_COLOUR},
    )
    for node in graph.nodes:
        label = _dot_label(node, _statuses(node, highlight, task_status))
        dot.node(_encode(node.state), label=label, _attributes=_dot_node_attrs(node, highlight, path))
    for edge in graph.edges:
        dot.edge(_encode(edge.source), _encode(edge.target), _attributes=_dot_edge_attrs(edge, compact, path))
    return dot.source


def svg_css(scope: str = "svg") -> str:
    """CSS for SVG drawn from ``to_dot``, so that toggling a node's classes restyles it live.

    CSS beats Graphviz's presentation attributes (``fill="#fde68a"``). Only the node's first
    ``path`` is the state box (a terminal state's second path is its outer border, the
    ``polygon`` elements are task-row backgrounds), hence ``path:first-of-type``. Rules follow
    STATE_COLOURS order, so ``current`` wins as it does in the DOT text.
    """
    rules = [
        f"{scope} g.node.{cls} path:first-of-type {{ fill: {c.fill}; stroke: {c.stroke}; "
        f"stroke-width: {c.stroke_width:g}px; }}"
        for cls, c in STATE_COLOURS.items()
    ]
    return "\n".join(rules) + "\n"


def path_css(scope: str = "svg") -> str:
    """CSS for the path (RunPath) as classes, so the timeline scrubber redraws it without a new layout."""
    rules = [
        f"{scope} g.node.visited path:first-of-type {{ stroke-width: {VISITED.stroke_width:g}px; }}",
        f"{scope} g.node.visited:not(.current):not(.init):not(.failed) path:first-of-type {{ "
        f"stroke: {VISITED.stroke}; }}",
        f"{scope} g.node.failed path:first-of-type {{ stroke: {FAILED.stroke}; stroke-dasharray: 6 3; "
        f"stroke-width: {FAILED.stroke_width:g}px; }}",
        f"{scope} g.node.failed:not(.current) path:first-of-type {{ fill: {FAILED.fill}; }}",
        f"{scope} g.node:not(.visited):not(.failed):not(.current) path:first-of-type {{ stroke-dasharray: none; }}",
        f"{scope} g.edge.followed path {{ stroke: {FOLLOWED_COLOUR}; stroke-width: {FOLLOWED_WIDTH:g}px; }}",
        f"{scope} g.edge.followed polygon {{ stroke: {FOLLOWED_COLOUR}; fill: {FOLLOWED_COLOUR}; }}",
        f"{scope} g.edge:not(.followed) path {{ stroke: {EDGE_COLOUR}; stroke-width: 1px; }}",
        f"{scope} g.edge:not(.followed) polygon {{ stroke: {EDGE_COLOUR}; fill: {EDGE_COLOUR}; }}",
        f"{scope} g.edge.followed text {{ fill: {FOLLOWED_COLOUR}; font-weight: bold; }}",
    ]
    return "\n".join(rules) + "\n"


# ---------------------------------------------------------------------------------------------
# SVG through Debian's dot


@functools.cache
def dot_executable() -> str | None:
    """Full path of Graphviz's ``dot``, looked up once per process (call ``cache_clear`` to redo)."""
    return shutil.which("dot")


def dot_available() -> bool:
    """Whether pages can get server-side SVG, or should draw the Mermaid text in the browser."""
    return dot_executable() is not None


def render_svg(dot_source: str, timeout: float = 10) -> str:
    """Run ``dot -Tsvg`` (argv list, no shell, bounded time) and return the ``<svg>`` element.

    The XML prolog and doctype are dropped so the result can be placed inside an HTML page.
    """
    exe = dot_executable()
    if exe is None:
        raise DiagramError(DOT_MISSING)
    try:
        done = subprocess.run(
            [exe, "-Tsvg"],
            input=dot_source.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DiagramError(f"Graphviz's dot took longer than {timeout:g} s and was stopped") from exc
    except OSError as exc:
        raise DiagramError(f"Graphviz's dot could not be started: {exc}") from exc
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip()[-500:] or f"exit status {done.returncode}"
        raise DiagramError(f"Graphviz's dot failed: {detail}")
    svg = done.stdout.decode("utf-8", "replace")
    start = svg.find("<svg")
    if start < 0:
        raise DiagramError("Graphviz's dot produced no <svg> element")
    return svg[start:]
