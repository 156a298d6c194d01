"""Tokens, login failures and machine limits move here from `stacks`, tables and rows untouched.

Only Django's model state moves (`SeparateDatabaseAndState`): the tables keep their names through
`db_table`. The content types are renamed rather than recreated, so admin log entries written
about tokens before the move still resolve to them.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


MOVED = ("apitoken", "loginfailure", "machineaccess")


def move_content_types(apps, schema_editor):
    content_types = apps.get_model("contenttypes", "ContentType")
    content_types.objects.filter(app_label="stacks", model__in=MOVED).update(app_label="accounts")


def restore_content_types(apps, schema_editor):
    content_types = apps.get_model("contenttypes", "ContentType")
    content_types.objects.filter(app_label="accounts", model__in=MOVED).update(app_label="stacks")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('stacks', '0005_machine_access'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('machines_app', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
                migrations.CreateModel(
                    name='LoginFailure',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('username', models.CharField(db_index=True, max_length=150)),
                        ('ip', models.CharField(blank=True, max_length=64)),
                        ('locked', models.BooleanField(default=False)),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                    ],
                    options={
                        'db_table': 'stacks_loginfailure',
                        'ordering': ['-created_at', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='ApiToken',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100)),
                        ('role', models.CharField(choices=[('viewer', 'viewer'), ('operator', 'operator'), ('admin', 'admin')], default='viewer', max_length=10)),
                        ('key_hash', models.CharField(editable=False, max_length=64, unique=True)),
                        ('prefix', models.CharField(editable=False, max_length=12)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('expires_at', models.DateTimeField(blank=True, null=True)),
                        ('last_used_at', models.DateTimeField(blank=True, null=True)),
                        ('revoked_at', models.DateTimeField(blank=True, null=True)),
                        ('machines', models.ManyToManyField(blank=True, help_text='Limit this token to changing stacks of these machines; empty: whatever its user may change.', related_name='+', to='machines_app.machine')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'verbose_name': 'API token',
                        'db_table': 'stacks_apitoken',
                        'ordering': ['-created_at'],
                    },
                ),
                migrations.CreateModel(
                    name='MachineAccess',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('machines', models.ManyToManyField(blank=True, related_name='+', to='machines_app.machine')),
                        ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='machine_access', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'verbose_name': 'machine access',
                        'verbose_name_plural': 'machine access',
                        'db_table': 'stacks_machineaccess',
                    },
                ),
        ]),
        migrations.RunPython(move_content_types, restore_content_types),
    ]
