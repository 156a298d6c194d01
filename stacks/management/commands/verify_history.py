"""verify_history [STACK…]: replay each stack's history through the engine and compare with what is stored."""

from django.core.management.base import BaseCommand, CommandError

from stacks import history
from stacks.models import Stack


class Command(BaseCommand):
    help = ("Replay each stack's history (all active stacks, or the ids given; a removed stack by its id when "
            "no active stack has it) and print every difference from the stored stack; exit 1 on any.")

    def add_arguments(self, parser):
        parser.add_argument("stacks", nargs="*", metavar="STACK")
        parser.add_argument("--removed", action="store_true", help="also check every removed stack")

    def handle(self, *args, **options):
        stacks = self._stacks(options["stacks"], options["removed"])
        bad = 0
        for stack in stacks:
            found = history.verify(stack)
            label = f"{stack.key} (record {stack.pk}{', removed' if stack.removed else ''})"
            if found:
                bad += 1
                for line in found:
                    self.stdout.write(f"{label}: {line}")
            elif options["verbosity"] > 1:
                self.stdout.write(f"{label}: ok")
        self.stdout.write(f"{len(stacks)} stack(s) checked, {bad} with differences")
        if bad:
            raise CommandError(f"{bad} stack(s) do not replay to their stored state", returncode=1)

    def _stacks(self, keys: list[str], removed: bool) -> list[Stack]:
        related = Stack.objects.select_related("machine", "machine_version")
        if not keys:
            return list(related.all() if removed else related.active())
        found = []
        for key in keys:
            stack = Stack.objects.latest_for(key)
            if stack is None:
                raise CommandError(f"stack {key[:63]} does not exist", returncode=2)
            found.append(stack)
        return found
