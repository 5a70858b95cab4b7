from django.db import migrations

# A copy of sandbox.hubspot.portals.DEFAULT_PORTALS at the time of writing (migrations must not change when
# the code does); portals are also created lazily, because test runs flush tables.
PORTALS = [
    (1001, "Acme Sandbox", "acme-sandbox.example", 1001, 300, 120, 150, 80, "US/Eastern", "USD"),
    (1002, "Globex Demo (EU)", "globex-demo.example", 1002, 60, 25, 30, 20, "Europe/Berlin", "EUR"),
]


def create(apps, schema_editor):
    Portal = apps.get_model("sandbox_hubspot", "Portal")
    for hub_id, name, domain, seed, contacts, companies, deals, tickets, tz, currency in PORTALS:
        Portal.objects.get_or_create(
            hub_id=hub_id,
            defaults={
                "name": name, "domain": domain, "seed": seed, "contacts": contacts, "companies": companies,
                "deals": deals, "tickets": tickets, "time_zone": tz, "currency": currency,
                "user_email": f"sandbox-admin@{domain}", "user_id": 7_000_000 + hub_id,
                "generated_at_ms": 1767225600000,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("sandbox_hubspot", "0001_initial")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
