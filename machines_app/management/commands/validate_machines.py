"""validate_machines PATH…: check machine files without saving them (exit 1 on any error).

With --impact, also check each valid file against the active stacks of the machine of that name in
the running database, and exit 3 when it would strand any (see machines_app.impact_report).
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from machines_app import impact_report, spec
from machines_app.services import machine_files, validate_text


class Command(BaseCommand):
    help = (
        "Validate machine YAML files (or folders of them); prints file:line: path: message per problem and "
        "exits 1 when a file is not valid. With --impact, also lists the active stacks (of the machine named "
        "like the file, in this database) that the file would strand, and exits 3 when there are any."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", help="machine files or folders")
        parser.add_argument(
            "--impact", action="store_true",
            help="check each file against the active stacks of its machine in the database; exit status 3 when "
                 "saving it would strand any (for CI pipelines reviewing machine changes)",
        )

    def handle(self, *args, paths, impact=False, **options):
        files = self._collect([Path(p) for p in paths])
        failed = stranded = 0
        for path in files:
            result = validate_text(path.read_bytes())
            name_error = spec.check_machine_name(path.stem)
            errors = list(result.errors) + ([spec.Problem("name", None, name_error)] if name_error else [])
            for problem in errors:
                self.stdout.write(_line(path, problem))
            for problem in result.warnings:
                self.stdout.write(_line(path, problem, "warning: "))
            if errors:
                failed += 1
            elif impact:
                stranded += impact_report.report(path, result.machine, self.stdout.write)
        self.stdout.write(f"{len(files) - failed} valid, {failed} invalid")
        if failed:
            raise CommandError(f"{failed} machine file(s) are not valid", returncode=1)
        if stranded:
            raise CommandError(f"{stranded} active stack(s) would be stranded", returncode=3)

    def _collect(self, paths: list[Path]) -> list[Path]:
        files = []
        for path in paths:
            if path.is_dir():
                files.extend(machine_files(path))
            elif path.is_file():
                files.append(path)
            else:
                raise CommandError(f"{path} does not exist")
        return files


def _line(path: Path, problem: spec.Problem, prefix: str = "") -> str:
    where = f"{path}:{problem.line}:" if problem.line else f"{path}:"  # a whole-file problem has no line
    return f"{where} {prefix}{problem.path or '(document)'}: {problem.message}"
