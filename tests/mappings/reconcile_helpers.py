"""The whole pipeline against both sandboxes: a Source on a HubSpot sandbox portal, an identify mapping to the
Segment sandbox, and an oracle that says, independently of the engine, what the sandbox's merged profiles must
hold for the HubSpot data the sandbox has right now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mappings.delivery import deliver_collections, sync_in_foreground
from mappings.models import DeliveryRun, Destination, Mapping, ProfileSpace
from models_app.models import DataModel
from sources.models import Source, SyncRun
from sources.runs import create_run
from tests.sources.extract_helpers import make_source, sandbox_archived, sandbox_truth

PORTAL = 3301

# One trait per interesting HubSpot type: string, number (int and float), bool, date, datetime, multi-select
# checkbox, single-select radio, long text (for oversize values), and the record id.
TRAITS = [
    ["email", "email"],
    ["firstname", "first_name"],
    ["loyalty_points", "loyalty_points"],
    ["lifetime_value_eur", "lifetime_value"],
    ["vip_customer", "vip"],
    ["signup_date", "signed_up_on"],
    ["last_login_at", "last_login_at"],
    ["interests", "interests"],
    ["customer_tier", "tier"],
    ["support_notes", "notes"],
    ["id", "hubspot_id"],
]
COLUMNS = [c for c, _ in TRAITS if c != "id"]


def make_mapping(source: Source, write_key: str, *, user_id: str = "email") -> Mapping:
    destination = Destination.objects.create(workspace=source.workspace, name="Segment")
    space = ProfileSpace.objects.create(destination=destination, name="Sandbox", write_key=write_key, region="sandbox")
    model = DataModel.objects.create(source=source, collection="contacts", name="Contacts", columns=COLUMNS)
    return Mapping.objects.create(
        destination=destination,
        data_model=model,
        profile_space=space,
        action="identify",
        identifiers={"user_id": user_id, "anonymous_id": None, "group_id": None},
        traits=TRAITS,
        options={"empty_values": "null"},
        enabled=True,
    )


COMPANY_TRAITS = [["name", "name"], ["domain", "domain"], ["description", "description"], ["id", "hubspot_id"]]


def make_group_mapping(source: Source, write_key: str) -> Mapping:
    """Companies to Segment accounts: groupId and anonymousId from the record id."""
    destination = Destination.objects.create(workspace=source.workspace, name="Segment accounts")
    space = ProfileSpace.objects.create(destination=destination, name="Accounts", write_key=write_key, region="sandbox")
    model = DataModel.objects.create(
        source=source, collection="companies", name="Companies", columns=["name", "domain", "description"]
    )
    return Mapping.objects.create(
        destination=destination,
        data_model=model,
        profile_space=space,
        action="group",
        identifiers={"user_id": None, "anonymous_id": "id", "group_id": "id"},
        traits=COMPANY_TRAITS,
        options={"empty_values": "null"},
        enabled=True,
    )


def set_archived_option(mapping: Mapping, behaviour: str, trait: str = "hubspot_archived") -> None:
    """What the editor saves for "When a record is archived in HubSpot"."""
    mapping.archived_behaviour = behaviour
    if behaviour == Mapping.ArchivedBehaviour.TRAIT:
        mapping.archived_trait = trait
    mapping.save(update_fields=["archived_behaviour", "archived_trait"])


def setup_pipeline(workspace, hub, segment, contacts: int, **mapping_kwargs):
    hub.seed(PORTAL, contacts=contacts, companies=0, deals=0, tickets=0)
    source = make_source(workspace, hub, hub_id=PORTAL)
    mapping = make_mapping(source, segment.write_key, **mapping_kwargs)
    return source, mapping


def sync_and_deliver(source: Source, trigger: str = SyncRun.Trigger.MANUAL) -> tuple[SyncRun, list[DeliveryRun]]:
    """One sync and then its deliveries, in this process (what `manage.py sync` does)."""
    run = create_run(source=source, trigger=trigger)
    assert run is not None
    finished, changed = sync_in_foreground(run_id=run.pk)
    assert finished is not None and finished.status == SyncRun.Status.SUCCEEDED, finished and finished.error
    deliveries = [d for _, d in deliver_collections(source=source, collections=changed, sync_run_id=finished.pk)]
    return finished, deliveries


# --- the oracle: HubSpot's property types → trait values, written out independently of mappings/convert.py ------


def _iso(dt: datetime) -> str:
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _when(text: str) -> str:
    if text.lstrip("-").isdigit():
        return _iso(datetime.fromtimestamp(int(text) / 1000, tz=UTC))
    if len(text) == 10:  # a HubSpot date: midnight UTC
        return text + "T00:00:00.000Z"
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return _iso(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


EXPECT = {
    "email": str,
    "firstname": str,
    "loyalty_points": _number,
    "lifetime_value_eur": _number,
    "vip_customer": lambda t: {"true": True, "false": False}[t],
    "signup_date": _when,
    "last_login_at": _when,
    "interests": lambda t: [p for p in t.split(";") if p] or None,
    "customer_tier": str,
    "support_notes": str,
}


def expected_traits(object_id: int, props: dict[str, Any]) -> dict[str, Any]:
    traits: dict[str, Any] = {}
    for column, trait in TRAITS:
        if column == "id":
            traits[trait] = object_id
            continue
        value = props.get(column)
        traits[trait] = None if value in (None, "") else EXPECT[column](value)
    return traits


class Oracle:
    """What the Segment sandbox must hold. Profiles are keyed by user id and never removed (Segment keeps a
    profile whose record was archived, merged into another or changed its email), so the expectation
    accumulates: after each sync, every live record with a user id sets its profile's traits to what the mapping
    defines for it now, and so does every archived record whose profile was made before (with "Do nothing", the
    values it was archived with: an update made just before the archive still reaches the profile). A record
    merged into another is in no list: its profile stays as it was; the merged record is a live record of its
    own."""

    def __init__(self, hub, portal: int, user_id: str = "email") -> None:
        self.hub = hub
        self.portal = portal
        self.user_id = user_id
        self.profiles: dict[str, dict[str, Any]] = {}
        self.delivered: set[int] = set()  # records that made a profile

    def user_id_of(self, object_id: int, props: dict[str, Any]) -> str | None:
        if self.user_id == "id":
            return str(object_id)
        value = (props.get(self.user_id) or "").strip()
        return value or None

    def after_sync(self, *, skip: set[int] = frozenset()) -> dict[str, dict[str, Any]]:
        """Update the expectation from the sandbox's current data (`skip`: records that must be rejected)."""
        live, _archived = sandbox_truth(self.hub, self.portal, "contacts")
        for object_id, props in sorted(sandbox_archived(self.hub, self.portal, "contacts").items()):
            uid = self.user_id_of(object_id, props)
            if object_id in self.delivered and uid is not None and object_id not in skip:
                self.profiles[uid] = expected_traits(object_id, props)
        seen: dict[str, int] = {}
        for object_id, props in sorted(live.items()):
            uid = self.user_id_of(object_id, props)
            if uid is None or object_id in skip:
                continue
            assert uid not in seen, f"two live records share user id {uid!r}: {seen[uid]} and {object_id}"
            seen[uid] = object_id
            self.profiles[uid] = expected_traits(object_id, props)
            self.delivered.add(object_id)
        return self.profiles


def update_then_archive(hub, portal: int, rng, n: int) -> list[int]:
    """`n` live contacts changed in HubSpot and archived before the next sync sees the change."""
    from tests.sources.extract_helpers import archive

    live, _archived = sandbox_truth(hub, portal, "contacts")
    ids = rng.sample(sorted(live), min(n, len(live)))
    for object_id in ids:
        hub.set_properties(object_id, {"firstname": f"Last{rng.randint(0, 999)}"}, portal=portal)
    archive(hub, ids, hub_id=portal)
    return ids


def merge_pairs(hub, portal: int, rng, n: int) -> list[int]:
    """`n` merges of two live contacts (a new id each, sometimes the primary's); the merged records' ids."""
    from tests.sources.extract_helpers import merge

    live, _archived = sandbox_truth(hub, portal, "contacts")
    picked = rng.sample(sorted(live), min(2 * n, len(live) - len(live) % 2))
    return [
        merge(hub, picked[k], picked[k + 1], hub_id=portal, keep_id=rng.random() < 0.3)
        for k in range(0, len(picked) - 1, 2)
    ]


def inbox_total(segment) -> int:
    """Every message the sandbox got, accepted or discarded."""
    counts = segment.counts()
    return counts["received"] + counts["discarded"]
