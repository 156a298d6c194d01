"""What a new version of a machine does to the stacks already running on it (pure).

Stacks are pinned to a machine version and the engine is pure, so the effect of a draft on every
active stack can be worked out before it is saved: the editor shows it as you type, the machine
page moves the compatible stacks in one go, and `validate_machines --impact` fails a CI pipeline
that would strand running environments. No Django and no database here: callers pass the old
machine each stack is pinned to, the new machine, and each stack's (id, state, current task names).

A stack is *upgradable* when nothing below applies. Otherwise it is *stranded*, for one or more
reasons, each a sentence:
- `state_removed`: its state does not exist in the new version;
- `tasks_changed`: its current tasks differ from its state's tasks in the new version;
- `event_removed`: an event its state handled in the old version is no longer handled there;
- `no_terminal`: from its state a terminal state could be reached before and cannot be now.
The first two are exactly what `UPGRADE_MACHINE` (stacks.services) refuses ("state_missing",
"tasks_differ"), so `blocks_upgrade` says whether the service would refuse the move; the last two
are moves the service allows but that leave the stack waiting for something that can no longer
happen, which is why a bulk move leaves them out too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from machines_app.spec import Machine

STATE_REMOVED = "state_removed"
TASKS_CHANGED = "tasks_changed"
EVENT_REMOVED = "event_removed"
NO_TERMINAL = "no_terminal"
REASONS = (STATE_REMOVED, TASKS_CHANGED, EVENT_REMOVED, NO_TERMINAL)
BLOCKING = frozenset({STATE_REMOVED, TASKS_CHANGED})  # UPGRADE_MACHINE refuses these
SUMMARY_KEYS = 5  # stack ids named per group in the summary sentence before "and N more"
LISTED = 50  # stack ids named per stranded group in the JSON answer; the rest are only counted


class StackRef(NamedTuple):
    """What the impact needs to know of one stack (a named tuple: tens of thousands are made per check)."""

    key: str
    state: str
    tasks: tuple[str, ...] = ()  # names of its current task instances, in order
    version: int | None = None  # the version number it is pinned to, for reports


@dataclass(frozen=True)
class Reason:
    code: str  # one of REASONS
    short: str  # "FROZEN no longer exists": for the summary sentence
    message: str  # a whole sentence saying what changed and what to do

    @property
    def blocks_upgrade(self) -> bool:
        return self.code in BLOCKING

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "blocksUpgrade": self.blocks_upgrade}


class StackGroup(NamedTuple):
    """Stacks that share a pinned version, a state and current tasks, and so share one verdict.

    Reading stacks as groups keeps the editor's check cheap for tens of thousands of stacks: one
    verdict and one string per stack, not objects per stack (`in_flight` builds these directly).
    """

    state: str
    tasks: tuple[str, ...]
    version: int | None
    keys: list[str]


class StrandedGroup(NamedTuple):
    """Stacks stranded for the same reasons, whatever version or task group they came from.

    The reasons name the state, so the stacks of one group are all in it. What the editor lists:
    the reasons once, how many stacks, and the first of them, not one entry per stack.
    """

    state: str
    reasons: tuple[Reason, ...]
    stacks: list[tuple[str, int | None]]  # (stack id, version it is pinned to), by stack id

    @property
    def label(self) -> str:
        """'FROZEN no longer exists': how the summary sentence names the group."""
        return "; ".join(r.short for r in self.reasons)

    def as_dict(self, listed: int = LISTED) -> dict:
        return {
            "state": self.state,
            "reasons": [r.as_dict() for r in self.reasons],
            "count": len(self.stacks),
            "stacks": [{"id": key, "version": version} for key, version in self.stacks[:listed]],
        }


class StackImpact(NamedTuple):
    stack: StackRef
    reasons: tuple[Reason, ...]

    @property
    def upgradable(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict:
        return {
            "id": self.stack.key,
            "state": self.stack.state,
            "version": self.stack.version,
            "upgradable": self.upgradable,
            "reasons": [r.as_dict() for r in self.reasons],
        }


@dataclass(frozen=True)
class StateCount:
    stacks: int = 0
    upgradable: int = 0
    stranded: int = 0


@dataclass(frozen=True)
class Impact:
    """The verdict for every stack, in the order given, with counts per state."""

    groups: tuple[tuple[StackGroup, tuple[Reason, ...]], ...]
    states: Mapping[str, StateCount] = field(default_factory=dict)

    def _expand(self, stranded: bool) -> tuple[StackImpact, ...]:
        found = [
            StackImpact(StackRef(key, group.state, group.tasks, group.version), reasons)
            for group, reasons in self.groups if bool(reasons) == stranded for key in group.keys
        ]
        return tuple(sorted(found, key=lambda verdict: verdict.stack.key))

    @cached_property
    def stacks(self) -> tuple[StackImpact, ...]:
        """Every stack's verdict, by stack id."""
        return tuple(sorted(self.upgradable + self.stranded, key=lambda verdict: verdict.stack.key))

    @cached_property
    def upgradable(self) -> tuple[StackImpact, ...]:
        return self._expand(stranded=False)

    @cached_property
    def stranded(self) -> tuple[StackImpact, ...]:
        return self._expand(stranded=True)

    @cached_property
    def stranded_groups(self) -> tuple[StrandedGroup, ...]:
        """The stranded stacks, one group per set of reasons, the group with the first stack id first."""
        found: dict[tuple[Reason, ...], StrandedGroup] = {}
        for group, reasons in self.groups:
            if reasons and group.keys:
                entry = found.setdefault(reasons, StrandedGroup(group.state, reasons, []))
                entry.stacks.extend((key, group.version) for key in group.keys)
        for entry in found.values():
            entry.stacks.sort()
        return tuple(sorted(found.values(), key=lambda entry: entry.stacks[0]))

    @property
    def active(self) -> int:
        return sum(len(group.keys) for group, _ in self.groups)

    @property
    def stranded_count(self) -> int:
        return sum(len(group.keys) for group, reasons in self.groups if reasons)

    def upgradable_keys(self) -> list[str]:
        """The ids of the stacks that can move up, sorted, without a verdict object per stack."""
        return sorted(key for group, reasons in self.groups if not reasons for key in group.keys)

    def summary(self, subject: str = "This version") -> str:
        """One sentence: 'This version would leave 3 stacks stranded (…) and let 41 move up'."""
        return summary(self, subject)

    def as_dict(self, listed: int = LISTED) -> dict:
        """Counts, and the stranded stacks by group with at most `listed` ids each: small for any number of stacks."""
        stranded = self.stranded_count
        return {
            "active": self.active,
            "upgradableCount": self.active - stranded,
            "strandedCount": stranded,
            "strandedGroups": [entry.as_dict(listed) for entry in self.stranded_groups],
            "states": {
                name: {"stacks": c.stacks, "upgradable": c.upgradable, "stranded": c.stranded}
                for name, c in self.states.items()
            },
            "summary": self.summary(),
        }


# --- the reasons -----------------------------------------------------------------------------------------


def terminal_reaching(machine: Machine) -> frozenset[str]:
    """States from which some terminal state can be reached (terminal states included)."""
    sources: dict[str, set[str]] = {name: set() for name in machine.states}
    for name, state in machine.states.items():
        for actions in state.on.values():
            for action in actions:
                if action.kind == "advance" and action.state in sources:
                    sources[action.state].add(name)
    seen = {name for name, state in machine.states.items() if state.terminal}
    todo = list(seen)
    while todo:
        for source in sources[todo.pop()]:
            if source not in seen:
                seen.add(source)
                todo.append(source)
    return frozenset(seen)


def _names(names: Iterable[str]) -> str:
    return ", ".join(names) or "none"


def _state_removed(state: str, new: Machine) -> Reason:
    return Reason(
        STATE_REMOVED,
        f"{state} no longer exists",
        f"state {state} does not exist in this version (its states: {_names(new.states)}); "
        "finish the stack or move it to a state that still exists first",
    )


def _tasks_changed(state: str, tasks: tuple[str, ...], new_tasks: tuple[str, ...]) -> Reason:
    return Reason(
        TASKS_CHANGED,
        f"{state} has different tasks",
        f"state {state} has different tasks in this version ({_names(new_tasks)}; the stack has "
        f"{_names(tasks)}); move the stack once it has left {state}",
    )


def _events_removed(state: str, gone: list[str]) -> Reason:
    listed = _names(gone)
    return Reason(
        EVENT_REMOVED,
        f"{state} no longer handles {listed}",
        f"state {state} no longer handles {listed}, which the stack may be waiting for; "
        f"move the stack once it has left {state}, or keep handling {listed} there",
    )


def _no_terminal(state: str) -> Reason:
    return Reason(
        NO_TERMINAL,
        f"{state} no longer reaches a terminal state",
        f"from state {state} no terminal state can be reached in this version, so the stack could never "
        "finish; keep a path from it to a terminal state",
    )


class _Judge:
    """Works out reasons once per (old machine, state, tasks), however many stacks share them."""

    def __init__(self, new: Machine):
        self.new = new
        self.new_reaching = terminal_reaching(new)
        self._old_reaching: dict[int, frozenset[str]] = {}
        self._memo: dict[tuple[int, str, tuple[str, ...]], tuple[Reason, ...]] = {}

    def reasons(self, old: Machine, state: str, tasks: tuple[str, ...]) -> tuple[Reason, ...]:
        key = (id(old), state, tasks)
        if key not in self._memo:
            self._memo[key] = self._work_out(old, state, tasks)
        return self._memo[key]

    def _work_out(self, old: Machine, state: str, tasks: tuple[str, ...]) -> tuple[Reason, ...]:
        target = self.new.states.get(state)
        if target is None:
            return (_state_removed(state, self.new),)
        found = []
        if tuple(tasks) != tuple(target.tasks):  # exactly the service's "tasks_differ" test
            found.append(_tasks_changed(state, tasks, target.tasks))
        before = old.states.get(state)
        if before is not None:
            gone = [event for event in before.on if event not in target.on]
            if gone:
                found.append(_events_removed(state, gone))
            if state in self._reaching(old) and state not in self.new_reaching:
                found.append(_no_terminal(state))
        return tuple(found)

    def _reaching(self, old: Machine) -> frozenset[str]:
        if id(old) not in self._old_reaching:
            self._old_reaching[id(old)] = terminal_reaching(old)
        return self._old_reaching[id(old)]


def stack_reasons(old: Machine, new: Machine, stack: StackRef) -> tuple[Reason, ...]:
    """Why moving one stack from `old` to `new` would strand it; empty when it can move up."""
    return _Judge(new).reasons(old, stack.state, tuple(stack.tasks))


def assess(new: Machine, pinned: Iterable[tuple[Machine, Iterable[StackRef]]]) -> Impact:
    """The impact of `new` on stacks grouped by the machine version each is pinned to.

    `pinned` pairs each old machine with its stacks, so a stack on an older version than the
    newest is compared against its own version.
    """
    grouped = []
    for old, stacks in pinned:
        groups: dict[tuple, StackGroup] = {}
        for stack in stacks:
            tasks = tuple(stack.tasks)
            group = groups.get((stack.state, tasks, stack.version))
            if group is None:
                group = groups[stack.state, tasks, stack.version] = StackGroup(stack.state, tasks, stack.version, [])
            group.keys.append(stack.key)
        grouped.append((old, groups.values()))
    return assess_groups(new, grouped)


def assess_groups(new: Machine, pinned: Iterable[tuple[Machine, Iterable[StackGroup]]]) -> Impact:
    """`assess` for stacks already grouped by state and tasks (what `in_flight` reads)."""
    judge = _Judge(new)
    verdicts = []
    counts: dict[str, list[int]] = {}
    for old, groups in pinned:
        for group in groups:
            reasons = judge.reasons(old, group.state, group.tasks)
            verdicts.append((group, reasons))
            row = counts.setdefault(group.state, [0, 0, 0])
            row[0] += len(group.keys)
            row[2 if reasons else 1] += len(group.keys)
    states = {name: StateCount(*row) for name, row in counts.items()}
    return Impact(tuple(verdicts), states)


# --- the sentence ----------------------------------------------------------------------------------------


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _group_text(label: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:SUMMARY_KEYS])
    more = len(keys) - SUMMARY_KEYS
    return f"{label}: {shown}" + (f" and {more} more" if more > 0 else "")


def summary(impact: Impact, subject: str = "This version") -> str:
    """'This version would leave 3 stacks stranded (FROZEN no longer exists: feature-12, …) and let 41 move up'."""
    if not impact.groups:
        return f"{subject} affects no stack: none is active"
    groups: dict[str, list[str]] = {}
    for entry in impact.stranded_groups:  # groups with the same label (tasks changed, differently) are one
        groups.setdefault(entry.label, []).extend(key for key, _ in entry.stacks)
    up = impact.active - impact.stranded_count
    if not groups:
        return f"{subject} would let {'the 1 active stack' if up == 1 else f'all {up} active stacks'} move up"
    details = "; ".join(_group_text(label, sorted(keys)) for label, keys in groups.items())
    stranded = _plural(impact.stranded_count, "stack")
    return f"{subject} would leave {stranded} stranded ({details}) and let {up} move up"
