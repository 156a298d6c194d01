"""Event messages (DESIGN §6.1): checked before anything is looked up or locked.

Pure Python. Every rejection is a sentence a user can act on; a huge or hostile value is described,
never echoed back whole.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cloudseam_site.strict_json import JsonInputError, check_text
from machines_app.spec.model import TASK_COMPLETED, TASK_ERROR

STACK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
EVENT_RE = re.compile(r"^[A-Z0-9_-]{1,63}$")
MACHINE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
RETRY_TASK = "RETRY_TASK"  # a service event (stacks.services); it names the task to run again
TASK_ID_RE = re.compile(r"^[0-9a-f]{32}$")
TASK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
RESERVED_STACK_IDS = ("new", "removed")  # /stacks/new/ and /stacks/removed/ are pages, not stacks
FIELDS = ("stackId", "event", "action", "machine", "metadata", "task", "description", "id")
MAX_METADATA_KEYS = 200
MAX_METADATA_KEY = 100
MAX_METADATA_VALUE = 10_000
MAX_DESCRIPTION = 10_000
MAX_MESSAGE_ID = 200


class BadMessage(Exception):
    """The message is malformed (400); nothing was looked up or changed."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class EventMessage:
    stack_id: str
    event: str
    machine: str | None = None
    metadata: Mapping = field(default_factory=dict)
    task: Mapping | None = None  # {"id": …} or {"name": …} (the id when a report gives both)
    description: str | None = None
    message_id: str | None = None

    @property
    def fingerprint(self) -> str:
        """What the message asks for (event, metadata, task, description), for telling whether a
        reused `id` comes with the same message (answered from the first time) or a different one."""
        asked = [self.event, dict(self.metadata), dict(self.task) if self.task else None, self.description]
        return hashlib.sha256(json.dumps(asked, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _describe(value: object) -> str:
    """A short description of a rejected value, safe to put in an error sentence."""
    if isinstance(value, str):
        return f"a string of {len(value)} characters" if len(value) > 40 else repr(value)
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a value of an unsupported type"


def _stack_id(raw: object) -> str:
    if raw is None or raw == "":
        raise BadMessage("stackId is required: the id of the stack to act on, e.g. \"feature-123\"")
    if not isinstance(raw, str) or not STACK_ID_RE.match(raw):
        raise BadMessage(
            f"stackId must be 1 to 63 characters of letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit; got {_describe(raw)}"
        )
    if raw in RESERVED_STACK_IDS:
        raise BadMessage(f"stackId {raw!r} is reserved: /stacks/{raw}/ is a page of its own; choose another id")
    return raw


def _event(data: Mapping) -> str:
    event, action = data.get("event"), data.get("action")
    if event is not None and action is not None and event != action:
        raise BadMessage("send either event or its older alias action, not both with different values")
    raw = event if event is not None else action
    if raw is None or raw == "":
        raise BadMessage("event is required: the name of the event to apply, e.g. \"LAUNCH\"")
    if isinstance(raw, str) and not EVENT_RE.match(raw) and EVENT_RE.match(raw.upper()):
        raise BadMessage(f"event names are upper case: did you mean {raw.upper()}?")
    if not isinstance(raw, str) or not EVENT_RE.match(raw):
        raise BadMessage(
            f"event must be an upper-case name of letters, digits, '-' or '_' (at most 63), e.g. "
            f"\"LAUNCH\"; got {_describe(raw)}"
        )
    return raw


def _machine(raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not MACHINE_RE.match(raw):
        raise BadMessage(f"machine must be a machine name such as \"qa-env\"; got {_describe(raw)}")
    return raw


def check_metadata(raw: object) -> dict:
    """A flat object of scalars; shared by the API, the pages and the admin's metadata editor."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise BadMessage(f"metadata must be a flat object of names to values; got {_describe(raw)}")
    if len(raw) > MAX_METADATA_KEYS:
        raise BadMessage(f"metadata may have at most {MAX_METADATA_KEYS} keys; got {len(raw)}")
    _check_unicode(raw, "metadata")
    for key, value in raw.items():
        _check_metadata_key(key)
        _check_metadata_value(key, value)
    return dict(raw)


def _check_unicode(value: object, what: str) -> None:
    """Text a database, a page or a log cannot hold (a lone surrogate) is refused wherever it is."""
    try:
        check_text(value, what)
    except JsonInputError as exc:
        raise BadMessage(exc.message) from None


def _check_metadata_key(key: object) -> None:
    if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY:
        raise BadMessage(f"metadata keys must be 1 to {MAX_METADATA_KEY} characters; got {_describe(key)}")
    if "\x00" in key:
        raise BadMessage(f"metadata key {key!r} contains a NUL character, which CloudSeam cannot store")


def _check_metadata_value(key: str, value: object) -> None:
    if isinstance(value, Mapping | list | tuple):
        raise BadMessage(
            f"metadata must be flat: {key!r} is {_describe(value)}; values may be strings, numbers, booleans or null"
        )
    if not isinstance(value, str | int | float | bool) and value is not None:
        raise BadMessage(f"metadata value for {key!r} must be a string, number, boolean or null")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadMessage(f"metadata value for {key!r} is not a finite number; JSON has no infinity or NaN")
    if isinstance(value, str) and len(value) > MAX_METADATA_VALUE:
        raise BadMessage(f"metadata value for {key!r} is longer than {MAX_METADATA_VALUE} characters")
    if isinstance(value, str) and "\x00" in value:
        raise BadMessage(f"metadata {key!r} contains a NUL character, which CloudSeam cannot store")


TASK_SHAPE = "task must be {\"name\": \"<task name>\"} or {\"id\": \"<task instance id>\"}"


def _task(raw: object) -> Mapping | None:
    """The task a report is about: its `id` when present, else its `name`; other keys are ignored.

    Workers of the original CloudSeam echoed the whole task back (`{name, executor, config}`), and our
    own task message carries `{id, name, executor, config}`: both are accepted as they are.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise BadMessage(f"{TASK_SHAPE}; got {_describe(raw)}")
    task_id, name = raw.get("id"), raw.get("name")
    if task_id is not None and not (isinstance(task_id, str) and TASK_ID_RE.match(task_id)):
        raise BadMessage(f"{TASK_SHAPE}; its id must be the 32 hexadecimal characters sent with the task, "
                         f"got {_describe(task_id)}")
    if name is not None and not (isinstance(name, str) and TASK_NAME_RE.match(name)):
        raise BadMessage(f"{TASK_SHAPE}; its name must be a task name of the machine, got {_describe(name)}")
    if task_id is not None:
        return {"id": task_id}
    if name is not None:
        return {"name": name}
    raise BadMessage(f"{TASK_SHAPE}; the task object has neither id nor name")


def _short_text(raw: object, name: str, limit: int) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > limit:
        raise BadMessage(f"{name} must be a string of at most {limit} characters; got {_describe(raw)}")
    if "\x00" in raw:
        raise BadMessage(f"{name} contains a NUL character, which CloudSeam cannot store")
    return raw


def parse_message(data: object) -> EventMessage:
    """Check a decoded JSON message and return it in typed form, or raise BadMessage."""
    if not isinstance(data, Mapping):
        raise BadMessage("the event message must be a JSON object")
    _check_unicode(data, "the event message")
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        raise BadMessage(f"unknown field {_describe(str(unknown[0]))}; fields: {', '.join(FIELDS)}")
    message = EventMessage(
        stack_id=_stack_id(data.get("stackId")),
        event=_event(data),
        machine=_machine(data.get("machine")),
        metadata=check_metadata(data.get("metadata")),
        task=_task(data.get("task")),
        description=_short_text(data.get("description"), "description", MAX_DESCRIPTION),
        message_id=_short_text(data.get("id"), "id", MAX_MESSAGE_ID),
    )
    if message.event in (TASK_COMPLETED, TASK_ERROR, RETRY_TASK) and message.task is None:
        raise BadMessage(f"{message.event} needs task: {{\"name\": …}} or {{\"id\": …}}")
    return message
