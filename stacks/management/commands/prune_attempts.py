"""prune_attempts [--days N]: delete finished task attempts older than the retention."""

from django.conf import settings
from django.core.management.base import BaseCommand

from stacks import attempts


class Command(BaseCommand):
    help = ("Delete finished task attempts (and their output) older than CLOUDSEAM_ATTEMPT_RETENTION_DAYS "
            "(or --days; 0 keeps everything), after closing as cancelled the running attempts of tasks the "
            "stack left whose job stopped without reporting.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None)

    def handle(self, *args, **options):
        days = settings.CLOUDSEAM_ATTEMPT_RETENTION_DAYS if options["days"] is None else options["days"]
        abandoned = attempts.close_abandoned()
        if abandoned:
            self.stdout.write(f"closed {abandoned} attempt(s) of tasks the stack had left whose job never reported")
        deleted = attempts.prune(days)
        self.stdout.write(f"deleted {deleted} attempt(s) finished more than {days} day(s) ago" if days > 0
                          else "retention is 0: every attempt is kept")
