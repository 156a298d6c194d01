"""The `cloudseam` console script: the same commands as `python manage.py …`."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudseam_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["cloudseam", *sys.argv[1:]])
