"""send_event STACK EVENT: the command-line door to `handle_event`."""

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from cloudseam_site import strict_json
from stacks.services import handle_event


def _meta_value(key: str, raw: str):
    """k=v values stay strings unless they are JSON numbers, booleans or null; objects are refused
    as everywhere else (metadata is flat), rather than stored as text that looks like JSON."""
    if not strict_json.is_utf8(key) or not strict_json.is_utf8(raw):
        raise CommandError(f"--meta {strict_json.scrub(key)}: the text is not valid UTF-8", returncode=2)
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(value, dict | list):
        raise CommandError(f"--meta {key}: metadata must be flat; give a string, number, boolean or null",
                           returncode=2)
    return value if isinstance(value, int | float | bool) or value is None else raw


class Command(BaseCommand):
    help = "Send an event to a stack and print the resulting stack as JSON (exit 1 with the error)."

    def add_arguments(self, parser):
        parser.add_argument("stack", nargs="?")
        parser.add_argument("event", nargs="?")
        parser.add_argument("--machine")
        parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--task", help="task name, for TASK_COMPLETED / TASK_ERROR")
        parser.add_argument("--description", help="error text, for TASK_ERROR")
        parser.add_argument("--id", dest="message_id", help="idempotency key")
        parser.add_argument("--json", dest="json_file", help="read the whole message from a file, or - for stdin")

    def handle(self, *args, **options):
        message = self._message(options)
        result = handle_event(message, actor=_cli_actor(), source="cli")
        if not result.ok:
            raise CommandError(result.body["error"], returncode=1)
        self.stdout.write(json.dumps(result.body, indent=2))

    def _message(self, options) -> dict:
        if options["json_file"]:
            return self._read_json(options["json_file"])
        if not options["stack"] or not options["event"]:
            raise CommandError("give STACK and EVENT, or --json FILE", returncode=2)
        message = {"stackId": options["stack"], "event": options["event"]}
        if options["machine"]:
            message["machine"] = options["machine"]
        if options["meta"]:
            message["metadata"] = {}
            for item in options["meta"]:
                key, sep, value = item.partition("=")
                if not sep:
                    raise CommandError(f"--meta takes KEY=VALUE; got {item!r}", returncode=2)
                message["metadata"][key] = _meta_value(key, value)
        for field, key in (("task", "task"), ("description", "description"), ("message_id", "id")):
            if options[field]:
                message[key] = {"name": options[field]} if field == "task" else options[field]
        return message

    def _read_json(self, source: str) -> dict:
        try:
            text = sys.stdin.read() if source == "-" else open(source, encoding="utf-8").read()  # noqa: SIM115
            return strict_json.loads(text, source)
        except strict_json.JsonInputError as exc:
            raise CommandError(exc.message, returncode=1) from None
        except OSError as exc:
            raise CommandError(f"cannot read {source}: {exc.strerror}", returncode=1) from None
        except ValueError as exc:
            raise CommandError(f"{source} is not valid JSON: {exc}", returncode=1) from None


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "cli"
