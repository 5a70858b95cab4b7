from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('sandbox_hubspot', '0003_record_purged'),
    ]

    operations = [
        migrations.AddField(
            model_name='recordchange',
            name='merged_into',
            field=models.BigIntegerField(blank=True, null=True),
        ),
    ]
