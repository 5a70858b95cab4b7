from django.db import migrations

DEFAULT_WRITE_KEY = "sbx_seg_DefaultWorkspaceKey00001"


def create_default(apps, schema_editor):
    SegmentWorkspace = apps.get_model("sandbox_segment", "SegmentWorkspace")
    SegmentWorkspace.objects.get_or_create(
        write_key=DEFAULT_WRITE_KEY, defaults={"name": "Default Profile Space", "is_default": True}
    )


class Migration(migrations.Migration):
    dependencies = [("sandbox_segment", "0001_initial")]

    operations = [migrations.RunPython(create_default, migrations.RunPython.noop)]
