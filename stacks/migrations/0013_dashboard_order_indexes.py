from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("stacks", "0012_stack_expiry_fired"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="stack",
            index=models.Index(fields=["removed_at", "key"], name="stack_by_key_idx"),
        ),
        migrations.AddIndex(
            model_name="stack",
            index=models.Index(fields=["removed_at", "-updated_at", "key"], name="stack_by_newest_idx"),
        ),
    ]
