"""What a validated machine is: small frozen dataclasses, the format's constants, one exception."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

EXECUTORS = ("shell", "http", "python", "terraform", "lambda", "external", "sleep")
# The vocabulary every part of CloudSeam shares: the one set of state, event and status names.
INIT = "INIT"
NEXT = "NEXT"
TASK_COMPLETED = "TASK_COMPLETED"
TASK_ERROR = "TASK_ERROR"
RETRY_FAILED_TASKS = "RETRY_FAILED_TASKS"
RETRY_PENDING_TASKS = "RETRY_PENDING_TASKS"
SYSTEM_EVENTS = (NEXT, TASK_COMPLETED, TASK_ERROR, RETRY_FAILED_TASKS, RETRY_PENDING_TASKS)
PENDING, SATISFIED, ERROR = "PENDING", "SATISFIED", "ERROR"
TASK_STATUSES = (PENDING, SATISFIED, ERROR)
NAME_PATTERN = r"^[A-Z0-9-]{1,63}$"  # events and states; 63: what messages and database columns hold
MAX_NAME_LENGTH = 63
TASK_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
MACHINE_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"  # lower case only: see docs/machine-format.md
TOP_KEYS = ("version", "events", "states", "tasks", "notify", "lifetime")
LIFETIME_KEYS = ("ttl", "idle", "event")
STATE_KEYS = ("terminal", "tasks", "on")
TASK_KEYS = ("executor", "config", "timeout", "retries")
ACTION_KINDS = ("advance", "no-op")
# `notify:` rules: what happened to a stack, and the name of a target configured outside the file.
TASK_FAILED, ENTERED, REMOVED = "task_failed", "entered", "removed"
NOTIFY_TRIGGERS = (TASK_FAILED, ENTERED, REMOVED)
NOTIFY_KEYS = ("on", "target", "state")


class SpecError(Exception):
    """The one exception of this module: the text is not a valid v1 machine."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(p.format() for p in problems) or "invalid machine")


@dataclass(frozen=True)
class Problem:
    path: str  # "states.PROVISION.on.NEXT[0].state"; "" for the document itself
    line: int | None  # 1-based YAML line, None when unknown
    message: str  # a whole sentence naming the culprit and what is allowed

    def format(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path + ': ' if self.path else ''}{self.message}"

    def as_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "message": self.message}


@dataclass(frozen=True)
class Action:
    kind: str  # "advance" or "no-op"
    state: str | None = None  # target state for "advance"


@dataclass(frozen=True)
class TaskDef:
    name: str
    executor: str
    config: Mapping = field(default_factory=lambda: MappingProxyType({}))
    timeout: float | None = None  # seconds
    retries: int = 0  # automatic re-runs before ERROR


@dataclass(frozen=True)
class State:
    name: str
    terminal: bool = False
    tasks: tuple[str, ...] = ()
    on: Mapping[str, tuple[Action, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def leads_to(self, event: str) -> str | None:
        """Where `event` takes a stack in this state: the last `advance`, or None when it only no-ops.

        The engine runs the actions in order, so the last advance is where the stack ends up; the
        pages, the diagrams and the impact of an edit all ask this one question here.
        """
        target = None
        for action in self.on.get(event, ()):
            if action.kind == "advance":
                target = action.state
        return target


@dataclass(frozen=True)
class NotifyRule:
    """`{on: entered, state: RUN, target: ops-hook}`: tell a target when this happens to a stack."""

    on: str  # one of NOTIFY_TRIGGERS
    target: str  # a target's name; its URL and secret live in the admin, never in the machine file
    state: str | None = None  # for `entered`: which state

    def matches(self, trigger: str, state: str | None = None) -> bool:
        return self.on == trigger and (self.on != ENTERED or self.state == state)


@dataclass(frozen=True)
class Lifetime:
    """When a stack of this machine expires: `ttl` seconds after creation, `idle` seconds without a
    change (either may be None), and the user event it then receives."""

    ttl: int | None
    idle: int | None
    event: str


@dataclass(frozen=True)
class Machine:
    version: int
    events: tuple[str, ...]
    states: Mapping[str, State]  # in document order
    tasks: Mapping[str, TaskDef]  # in document order
    notify: tuple[NotifyRule, ...] = ()
    lifetime: Lifetime | None = None

    def accepted_events(self, state: str) -> tuple[str, ...]:
        """User events the given state handles (NEXT excluded), in document order."""
        return tuple(e for e in self.states[state].on if e != "NEXT")

    def task_defs(self, state: str) -> tuple[TaskDef, ...]:
        return tuple(self.tasks[name] for name in self.states[state].tasks)


@dataclass(frozen=True)
class Validation:
    machine: Machine | None  # None when there are errors
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "errors": [p.as_dict() for p in self.errors],
            "warnings": [p.as_dict() for p in self.warnings],
        }
