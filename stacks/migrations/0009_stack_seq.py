from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("stacks", "0008_event_fingerprint")]

    operations = [
        migrations.AddField(
            model_name="stack",
            name="seq",
            field=models.PositiveBigIntegerField(default=0, help_text="changes so far; live frames carry it"),
        ),
    ]
