from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("mappings", "0006_delivery_run_unconfirmed"),
    ]

    operations = [
        migrations.AddField(
            model_name="deliverystate",
            name="delivered_message_id",
            field=models.CharField(blank=True, max_length=100, null=True),
        ),
    ]
