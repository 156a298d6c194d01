"""The access models now live in `accounts`; only Django's state forgets them here, the tables stay."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('stacks', '0005_machine_access'),
        ('accounts', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
                migrations.RemoveField(
                    model_name='apitoken',
                    name='machines',
                ),
                migrations.RemoveField(
                    model_name='apitoken',
                    name='user',
                ),
                migrations.DeleteModel(
                    name='LoginFailure',
                ),
                migrations.RemoveField(
                    model_name='machineaccess',
                    name='machines',
                ),
                migrations.RemoveField(
                    model_name='machineaccess',
                    name='user',
                ),
                migrations.DeleteModel(
                    name='ApiToken',
                ),
                migrations.DeleteModel(
                    name='MachineAccess',
                ),
        ]),
    ]
