from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("stacks", "0011_notifications_and_hooks"),
    ]

    operations = [
        migrations.AddField(
            model_name="stack",
            name="expiry_fired",
            field=models.CharField(blank=True, editable=False, max_length=60),
        ),
    ]
