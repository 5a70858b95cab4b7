"""The seed workflow, set up through the services the pages use, for the configuration-as-code tests: a source
connected to the HubSpot sandbox (OAuth aside: its tokens come from the sandbox's token endpoint), a data model, a
Segment Profiles destination with a Profile Space, an enabled mapping, the source enabled, an alert channel and
the monitoring settings."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from allauth.account.models import EmailAddress
from django.utils import timezone

from hubsync import workspaces
from hubsync.models import Membership, Role, Workspace
from mappings import services as mapping_services
from mappings.models import Mapping
from models_app import services as model_services
from monitoring import services as monitoring_services
from sources import services as source_services
from sources.oauth import Connection
from sources.ratelimit import get_rate_limiter
from tests.factories import UserFactory

PORTAL = 1001  # the sandbox's default portal
WRITE_KEY = "wk_production_0123456789"
# A listener on loopback: a test-only allowance (hubsync.outbound ignores it unless HUBSYNC_TESTING or DEBUG).
WEBHOOK = "http://127.0.0.1:9/services/T000/B000/secretpart"
OWNER_EMAIL = "owner@acme.test"


def sandbox_settings(settings: Any, live_server: Any) -> None:
    settings.BASE_URL = live_server.url
    settings.HUBSPOT_API_BASE = ""  # the sandbox on BASE_URL
    settings.HUBSPOT_RETRY_BASE_SECONDS = 0.05
    settings.HUBSPOT_RETRY_CAP_SECONDS = 0.2
    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = True
    get_rate_limiter().reset(str(PORTAL))


def owner_of(workspace: Workspace, email: str = OWNER_EMAIL) -> Any:
    user = UserFactory(email=email)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    Membership.objects.create(user=user, workspace=workspace, role=Role.OWNER)
    return user


def connect(sandbox: Any, workspace: Workspace, actor: Any, *, collections: list[str] | None = None) -> Any:
    """What the source wizard's last step does after the HubSpot login."""
    tok = sandbox.token(PORTAL, ["oauth", "crm.objects.contacts.read", "crm.objects.companies.read"])
    connection = Connection(
        hub_id=PORTAL,
        hub_domain="acme-sandbox.example",
        scopes=["oauth", "crm.objects.contacts.read", "crm.objects.companies.read"],
        access_token=tok["access_token"],
        refresh_token=tok["refresh_token"],
        expires_at=timezone.now() + timedelta(seconds=tok["expires_in"]),
    )
    return source_services.create_source(
        workspace=workspace,
        actor=actor,
        name="HubSpot",
        label="Production portal",
        connection=connection,
        schema_name="hubspot",
        start_date=date(2024, 1, 1),
        sync_interval=timedelta(hours=3),
        collections=collections or ["contacts"],
    )


def seed(sandbox: Any, workspace: Workspace, actor: Any) -> dict[str, Any]:
    source = connect(sandbox, workspace, actor, collections=["contacts", "companies"])
    sc = source.collections.get(collection="contacts")
    sc.properties = {n: {"label": n.title(), "type": "string"} for n in ("email", "firstname", "lastname", "city")}
    sc.save(update_fields=["properties"])
    model = model_services.create_data_model(
        workspace=workspace,
        actor=actor,
        source=source,
        collection="contacts",
        name="Contacts",
        columns=["email", "firstname", "lastname"],
    )
    destination = mapping_services.create_destination(
        workspace=workspace, name="Segment", kind="segment_profiles", actor=actor
    )
    space = mapping_services.create_profile_space(
        destination=destination, name="Production", write_key=WRITE_KEY, region="us", actor=actor
    )
    mapping = mapping_services.save_mapping(
        mapping=Mapping(destination=destination),
        data={
            "name": "Contacts to profiles",
            "data_model": model,
            "profile_space": space,
            "action": "identify",
            "identifiers": {"user_id": "email", "anonymous_id": None, "group_id": None},
            "traits": [["email", "email"], ["firstname", "first_name"], ["lastname", "last_name"]],
            "empty_values": "null",
            "identifier_format": "lower",
            "archived_behaviour": "nothing",
            "archived_trait": "",
        },
        actor=actor,
    )
    mapping_services.set_mapping_enabled(mapping=mapping, enabled=True, actor=actor)
    done, missing, _ = source_services.set_enabled(source=source, actor=actor, enabled=True)
    assert done, missing
    monitoring_services.create_channel(
        workspace=workspace, kind="email", name="Ops", emails=OWNER_EMAIL, webhook_url="", actor=actor
    )
    monitoring_services.create_channel(
        workspace=workspace, kind="webhook", name="Slack", emails="", webhook_url=WEBHOOK, actor=actor
    )
    workspaces.update_monitoring_settings(
        workspace=workspace,
        drift_pauses_mappings=False,
        freshness_alert_minutes=30,
        rejected_alert_threshold=50,
        actor=actor,
    )
    return {"source": source, "model": model, "destination": destination, "space": space, "mapping": mapping}
