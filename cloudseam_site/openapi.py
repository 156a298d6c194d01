"""The OpenAPI 3.1 description of the HTTP API, served at /api/openapi.json."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

ERROR = {"$ref": "#/components/schemas/Error"}


def _resp(description: str, schema: dict | None = None) -> dict:
    body = {"description": description}
    if schema is not None:
        body["content"] = {"application/json": {"schema": schema}}
    return body


def _errors(*codes: int) -> dict:
    text = {
        400: "Bad request: the message or a parameter is malformed",
        401: "Not authenticated, or the token is unknown, revoked or expired",
        403: "Authenticated but the role does not allow this",
        404: "Not found",
        409: "Conflict: the event is not accepted in this state, or the machine differs",
        413: "The body is larger than 256 KiB",
        415: "The body has the wrong content type",
    }
    return {str(c): _resp(text[c], ERROR) for c in codes}


STACK_SCHEMA = {
    "type": "object",
    "required": ["id", "machine", "machineVersion", "state", "previousState", "tasks", "metadata", "removed"],
    "properties": {
        "id": {"type": "string"},
        "machine": {"type": "string"},
        "machineVersion": {"type": "integer"},
        "state": {"type": "string"},
        "previousState": {"type": ["string", "null"]},
        "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
        "metadata": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}},
        "removed": {"type": "boolean"},
        "createdAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"},
        "record": {"type": "integer", "description": "this stack's record; ids are reused after removal"},
        "expiresAt": {"type": ["string", "null"], "format": "date-time", "description": (
            "when the stack's lifetime ends (metadata expiresAt or ttl, or its machine's lifetime); "
            "null when it has none")},
    },
}

EVENT_MESSAGE = {
    "type": "object",
    "required": ["stackId"],
    "additionalProperties": False,
    "properties": {
        "stackId": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"},
        "event": {"type": "string", "pattern": "^[A-Z0-9_-]{1,63}$"},
        "action": {"type": "string", "description": "older alias of event"},
        "machine": {"type": "string", "description": "required for a new stack"},
        "metadata": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}},
        "task": {"type": "object", "properties": {"name": {"type": "string"}, "id": {"type": "string"}},
                 "description": "the task reported on: its id when given, else its name; other keys are ignored"},
        "description": {"type": "string"},
        "id": {"type": "string", "description": "idempotency key: the same id is applied once"},
    },
}


_REASON = {
    "type": "object",
    "properties": {
        "code": {"enum": ["state_removed", "tasks_changed", "event_removed", "no_terminal"]},
        "message": {"type": "string"},
        "blocksUpgrade": {"type": "boolean", "description": "UPGRADE_MACHINE would refuse this stack"},
    },
}
IMPACT_SCHEMA = {
    "type": "object",
    "properties": {
        "machine": {"type": "string"},
        "currentVersion": {"type": "integer"},
        "active": {"type": "integer", "description": "active stacks of the machine"},
        "upgradableCount": {"type": "integer", "description": "active stacks that could move to the draft"},
        "strandedCount": {"type": "integer", "description": "active stacks the draft would strand"},
        "strandedGroups": {
            "type": "array",
            "description": "the stranded stacks, one group per set of reasons (so per state), the group with the "
                           "first stack id first; each lists at most its first 50 stacks by id, `count` says how "
                           "many it has",
            "items": {"type": "object", "properties": {
                "state": {"type": "string"}, "reasons": {"type": "array", "items": _REASON},
                "count": {"type": "integer"},
                "stacks": {"type": "array", "maxItems": 50, "items": {"type": "object", "properties": {
                    "id": {"type": "string"}, "version": {"type": "integer"}}}}}},
        },
        "states": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "stacks": {"type": "integer"}, "upgradable": {"type": "integer"}, "stranded": {"type": "integer"},
            "inDraft": {"type": "boolean"}, "nodeId": {"type": ["string", "null"]}}}},
        "summary": {"type": "string"},
    },
}


def _paged(item: dict) -> dict:
    return {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "page": {"type": "integer"},
            "pages": {"type": "integer"},
            "results": {"type": "array", "items": item},
        },
    }


ATTEMPT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "stack": {"type": "string"},
        "record": {"type": "integer"},
        "taskInstance": {"type": ["string", "null"]},
        "state": {"type": "string"},
        "name": {"type": "string"},
        "executor": {"type": "string"},
        "number": {"type": "integer", "description": "the task's attempt count when this one started"},
        "outcome": {"enum": ["running", "succeeded", "failed", "lost", "cancelled"]},
        "error": {"type": ["string", "null"]},
        "actor": {"type": ["string", "null"], "description": "who reported an external task"},
        "queuedAt": {"type": ["string", "null"], "format": "date-time"},
        "startedAt": {"type": ["string", "null"], "format": "date-time"},
        "finishedAt": {"type": ["string", "null"], "format": "date-time"},
        "durationSeconds": {"type": ["number", "null"]},
        "outputLines": {"type": "integer", "description": "lines written in all"},
        "droppedLines": {"type": "integer", "description": "earliest lines dropped to keep the output bounded"},
    },
}


def _run_record_paths(stack_id: dict, record: dict, page_params: list) -> dict:
    """Task attempts (issue #8): every run of every task, kept after the state is left."""
    attempts = _paged({"$ref": "#/components/schemas/TaskAttempt"})
    filters = [{"name": n, "in": "query", "schema": {"type": "string"}} for n in ("state", "name", "outcome")]
    attempt_id = {"name": "attempt_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    listing = {"200": _resp("A page of attempts, newest first", attempts), **_errors(400, 401, 403, 404)}
    return {
        "/api/stacks/{stack_id}/tasks": {"get": {
            "summary": "Every task attempt of every state visit, newest first (filters: state, name, outcome)",
            "parameters": [stack_id, *filters, *page_params], "responses": listing}},
        "/api/stacks/removed/{record}/tasks": {"get": {
            "summary": "A removed stack's task attempts", "parameters": [record, *filters, *page_params],
            "responses": listing}},
        "/api/tasks/{attempt_id}": {"get": {
            "summary": "One task attempt", "parameters": [attempt_id],
            "responses": {"200": _resp("The attempt", {"$ref": "#/components/schemas/TaskAttempt"}),
                          **_errors(401, 403, 404)}}},
        "/api/tasks/{attempt_id}/output": {"get": {
            "summary": "An attempt's kept output as text/plain; `since` returns the lines after that line "
                       "number, and the X-Next-Line header gives the number of the last line",
            "parameters": [attempt_id, {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0}}],
            "responses": {"200": {"description": "The output",
                                  "headers": {"X-Next-Line": {"schema": {"type": "integer"}}},
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_errors(400, 401, 403, 404)}}},
    }


def document() -> dict:
    stack_ref = {"$ref": "#/components/schemas/Stack"}
    page_params = [
        {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {"name": "pageSize", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
    ]
    stack_id = {"name": "stack_id", "in": "path", "required": True, "schema": {"type": "string"}}
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    record = {"name": "record", "in": "path", "required": True, "schema": {"type": "integer"}}
    yaml_body = {"required": True, "content": {"application/yaml": {"schema": {"type": "string"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "CloudSeam API", "version": "1"},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "githubSignature": {"type": "apiKey", "in": "header", "name": "X-Hub-Signature-256",
                                    "description": "sha256=<hex HMAC-SHA256 of the raw body, keyed by the secret>"},
                "gitlabToken": {"type": "apiKey", "in": "header", "name": "X-Gitlab-Token"},
                "cloudseamSignature": {"type": "apiKey", "in": "header", "name": "X-CloudSeam-Signature-256",
                                       "description": "as X-Hub-Signature-256 (generic hooks)"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"},
                          "warning": {"type": "string", "description": "sent metadata that was not applied"}}},
                "Task": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "name": {"type": "string"},
                        "status": {"enum": ["PENDING", "SATISFIED", "ERROR"]},
                        "phase": {"enum": ["queued", "running", "waiting", "retrying", "done", "failed"]},
                        "errorMessage": {"type": ["string", "null"]},
                        "attempts": {"type": "integer"},
                    },
                },
                "Stack": STACK_SCHEMA,
                "TaskAttempt": ATTEMPT_SCHEMA,
                "EventMessage": EVENT_MESSAGE,
                "HistoryEntry": {
                    "type": "object",
                    "properties": {
                        k: {"type": ["string", "integer", "object", "null"]}
                        for k in ("id", "event", "source", "actor", "outcome", "fromState", "toState", "error",
                                  "metadata", "createdAt")
                    },
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/events": {
                "post": {
                    "summary": "Send an event to a stack (creates the stack when it is new)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventMessage"}}},
                    },
                    "responses": {"200": _resp("The stack after the event; with a `warning` sentence when the metadata "
                                                "sent with an ignored (stale) completion was not applied",
                                                stack_ref),
                                  **_errors(400, 401, 403, 404, 409, 413, 415)},
                }
            },
            "/api/stacks": {
                "get": {
                    "summary": "List stacks",
                    "parameters": [
                        {"name": "machine", "in": "query", "schema": {"type": "string"}},
                        {"name": "state", "in": "query", "schema": {"type": "string"}},
                        {"name": "q", "in": "query", "schema": {"type": "string"}},
                        {"name": "removed", "in": "query", "schema": {"type": "boolean"}},
                        {"name": "status", "in": "query", "description": (
                            "quick filter: failed (a current task in ERROR), waiting (a current external task "
                            "PENDING), running (a current task of another executor PENDING), idle (no change "
                            "for idleHours)"),
                         "schema": {"type": "string", "enum": ["failed", "waiting", "running", "idle"]}},
                        {"name": "idleHours", "in": "query", "description": "N for status=idle (default 24)",
                         "schema": {"type": "integer", "minimum": 1, "maximum": 8784, "default": 24}},
                        *page_params,
                    ],
                    "responses": {"200": _resp("A page of stacks", _paged(stack_ref)), **_errors(400, 401, 403)},
                }
            },
            "/api/stacks/{stack_id}": {
                "get": {
                    "summary": "One stack (the active one, or the last removed one)",
                    "parameters": [stack_id],
                    "responses": {"200": _resp("The stack", stack_ref), **_errors(401, 403, 404)},
                }
            },
            "/api/stacks/{stack_id}/history": {
                "get": {
                    "summary": "Every event a stack received, newest first",
                    "parameters": [stack_id, *page_params],
                    "responses": {
                        "200": _resp("History", _paged({"$ref": "#/components/schemas/HistoryEntry"})),
                        **_errors(401, 403, 404),
                    },
                }
            },
            "/api/stacks/removed/{record}": {
                "get": {
                    "summary": "A removed stack's record (by `record`, since its id may be in use again)",
                    "parameters": [record],
                    "responses": {"200": _resp("The removed stack", stack_ref), **_errors(401, 403, 404)},
                }
            },
            "/api/stacks/removed/{record}/history": {
                "get": {
                    "summary": "A removed stack's history",
                    "parameters": [record, *page_params],
                    "responses": {
                        "200": _resp("History", _paged({"$ref": "#/components/schemas/HistoryEntry"})),
                        **_errors(401, 403, 404),
                    },
                }
            },
            **_run_record_paths(stack_id, record, page_params),
            "/api/machines": {
                "get": {"summary": "List machines", "responses": {"200": _resp("Machines"), **_errors(401, 403)}}
            },
            "/api/machines/validate": {
                "post": {
                    "summary": "Validate a machine document without saving it",
                    "requestBody": yaml_body,
                    "responses": {"200": _resp("valid, errors and warnings"), **_errors(400, 401, 403, 413, 415)},
                }
            },
            "/api/machines/{name}": {
                "get": {
                    "summary": "A machine: definition, YAML, Mermaid and DOT source, versions",
                    "parameters": [name],
                    "responses": {"200": _resp("The machine"), **_errors(401, 403, 404)},
                },
                "put": {
                    "summary": "Save a new version of a machine (admins)",
                    "parameters": [name],
                    "requestBody": yaml_body,
                    "responses": {
                        "200": _resp("Unchanged: the content equals an existing version"),
                        "201": _resp("A new version was created"),
                        **_errors(400, 401, 403, 413, 415),
                    },
                },
            },
            "/hooks/{name}": HOOKS_PATH,
            "/api/machines/{name}/impact": {
                "post": {
                    "summary": "What saving this YAML as the machine's newest version would do to its active stacks",
                    "description": "Each active stack is compared with the version it is pinned to: upgradable "
                                   "(UPGRADE_MACHINE would succeed and nothing it relies on changed) or stranded, "
                                   "with a sentence per reason (state removed, tasks changed, an event it may be "
                                   "waiting for removed, no terminal state reachable any more). An invalid draft "
                                   "is answered 400 with the validator's errors. The answer stays small however "
                                   "many stacks there are: counts, per state and in all, and the stranded stacks "
                                   "by group with the first 50 ids of each.",
                    "parameters": [name],
                    "requestBody": yaml_body,
                    "responses": {"200": _resp("The impact", IMPACT_SCHEMA), **_errors(400, 401, 403, 404, 413, 415)},
                }
            },
        },
    }


HOOK_HEADERS = [
    {"name": "X-GitHub-Event", "in": "header", "schema": {"type": "string"}, "description": "pull_request or ping"},
    {"name": "X-GitHub-Delivery", "in": "header", "schema": {"type": "string"}, "description": "GitHub delivery id"},
    {"name": "X-Gitlab-Event", "in": "header", "schema": {"type": "string"}, "description": "Merge Request Hook"},
    {"name": "X-Gitlab-Event-UUID", "in": "header", "schema": {"type": "string"}},
    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"},
     "description": "GitLab and generic hooks: the delivery id, the same on the sender's retries"},
]
HOOKS_PATH = {
    "post": {
        "summary": "Receive a signed webhook (GitHub pull_request, GitLab Merge Request Hook, or generic JSON)",
        "description": "The hook is configured in the admin (Inbound hooks): source, secret, machine, stack id "
                       "template (`pr-{number}`) and the event for open, update (new commits) and close/merge. "
                       "The delivery is checked (GitHub/generic: HMAC-SHA256 of the body; GitLab: the token, "
                       "constant-time), its id is kept so a replay is refused, and the mapped event goes through "
                       "the same door as every other event (source `webhook`, actor `<source>:<hook name>`). "
                       "A generic body is `{\"stackId\", \"event\", \"metadata\"}` with an Idempotency-Key header.",
        "security": [{"githubSignature": []}, {"gitlabToken": []}, {"cloudseamSignature": []}],
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                       *HOOK_HEADERS],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {
            "200": _resp("Applied: `{status, kind, stackId, event, stack}`"),
            "202": _resp("Not mapped by this hook (another action or event kind, or a ping): "
                         "`{status: ignored, kind, reason}`"),
            "400": _resp("The body is not JSON of the host's shape, or the delivery has no id", ERROR),
            "401": _resp("The signature or token does not match; nothing was changed", ERROR),
            "404": _resp("No enabled hook of this name", ERROR),
            "409": _resp("The delivery id was already received (with `firstStatus`, `firstAnswer`), or the "
                         "stack refused the event in its state", ERROR),
            "413": _resp("The delivery is larger than 1 MiB", ERROR),
        },
    }
}


def openapi_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(document())
