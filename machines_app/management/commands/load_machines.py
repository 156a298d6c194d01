"""load_machines [DIR]: sync a folder of machines; a new version only where the content changed."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from machines_app.services import load_folder


class Command(BaseCommand):
    help = "Load every .yml/.yaml machine of a folder (default: CLOUDSEAM_MACHINES_DIR)."

    def add_arguments(self, parser):
        parser.add_argument("folder", nargs="?", default=None)

    def handle(self, *args, folder=None, **options):
        path = Path(folder) if folder else Path(settings.MACHINES_DIR)
        if not path.is_dir():
            raise CommandError(f"{path} is not a folder")
        report = load_folder(path)
        for name in report.created:
            self.stdout.write(f"loaded {name}: new version")
        for name in report.unchanged:
            self.stdout.write(f"loaded {name}: unchanged")
        for reason in report.outdated.values():
            self.stdout.write(f"note: {reason}")
        for file_name, problems in report.invalid.items():
            for problem in problems:
                self.stderr.write(f"{path / file_name}:{problem.line or 0}: {problem.path or '(document)'}: "
                                  f"{problem.message}")
            self.stderr.write(f"skipped {file_name}: not valid")
        if report.invalid:
            raise CommandError(f"{len(report.invalid)} machine file(s) were skipped", returncode=1)
