"""create_token USER --role ROLE: an API token; the token is the last line printed, shown once."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from cloudseam_site.accounts.models import ROLES, ApiToken
from cloudseam_site.accounts.tokens import RoleRefused, ensure_user_with_role, issue_token

# Machines are reached through the token's relation: accounts imports nothing from machines_app.
Machine = ApiToken._meta.get_field("machines").related_model


class Command(BaseCommand):
    help = "Create an API token for USER (created if needed) with a role; prints the token last."

    def add_arguments(self, parser):
        parser.add_argument("user")
        parser.add_argument("--role", default="viewer", choices=[r for r, _ in ROLES])
        parser.add_argument("--name", default="cli")
        parser.add_argument("--days", type=int, default=None, help="expire after this many days")
        parser.add_argument("--machine", action="append", default=[], dest="machines", metavar="NAME",
                            help="only change stacks of this machine (repeat for several)")
        parser.add_argument("--promote", action="store_true",
                            help="give an existing user the role when it is higher than the one they have")

    def handle(self, *args, user, role, name, days, machines, promote, **options):
        if days is not None and days < 1:
            raise CommandError("--days must be 1 or more")
        found = list(Machine.objects.filter(name__in=machines))
        missing = sorted(set(machines) - {m.name for m in found})
        if missing:
            raise CommandError(f"no machine named {', '.join(missing)}")
        try:
            account = ensure_user_with_role(user, role, promote=promote)
        except RoleRefused as exc:
            raise CommandError(str(exc)) from None
        expires = timezone.now() + timedelta(days=days) if days else None
        token, raw = issue_token(None, account, name, role, expires, machines=found, via="create_token command")
        self.stdout.write(f"token {token.name!r} for {account.get_username()} with role {role}"
                          + (f", expires {expires:%Y-%m-%d}" if expires else "")
                          + (f", limited to {', '.join(sorted(machines))}" if machines else ""))
        self.stdout.write(raw)
