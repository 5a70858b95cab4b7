"""Invitation tokens are stored hashed. Pending invitations keep working: the hash of each existing token is
computed here, so the links already sent by e-mail still match; the plain tokens are then dropped."""

import hashlib

from django.db import migrations, models


def hash_tokens(apps, schema_editor):
    Invitation = apps.get_model("hubsync", "Invitation")
    for invitation in Invitation.objects.only("pk", "token").iterator():
        digest = hashlib.sha256(invitation.token.encode("utf-8", "surrogatepass")).hexdigest()
        Invitation.objects.filter(pk=invitation.pk).update(token_hash=digest)


class Migration(migrations.Migration):
    dependencies = [("hubsync", "0002_alerts_workspacesettings")]

    operations = [
        migrations.AddField(
            model_name="invitation", name="token_hash", field=models.CharField(max_length=64, null=True)
        ),
        migrations.RunPython(hash_tokens, migrations.RunPython.noop),
        migrations.RemoveField(model_name="invitation", name="token"),
        migrations.AlterField(
            model_name="invitation",
            name="token_hash",
            field=models.CharField(editable=False, max_length=64, unique=True),
        ),
    ]
