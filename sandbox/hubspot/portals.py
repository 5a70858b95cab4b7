"""Sandbox portals: the defaults that exist out of the box, and (re)seeding one."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from .data import MAX_SIZE
from .models import DEFAULT_GENERATED_AT_MS, CustomProperty, Portal, RecordChange

DEFAULT_PORTALS: list[dict[str, Any]] = [
    {
        "hub_id": 1001,
        "name": "Acme Sandbox",
        "domain": "acme-sandbox.example",
        "seed": 1001,
        "contacts": 300,
        "companies": 120,
        "deals": 150,
        "tickets": 80,
        "time_zone": "US/Eastern",
        "currency": "USD",
    },
    {
        "hub_id": 1002,
        "name": "Globex Demo (EU)",
        "domain": "globex-demo.example",
        "seed": 1002,
        "contacts": 60,
        "companies": 25,
        "deals": 30,
        "tickets": 20,
        "time_zone": "Europe/Berlin",
        "currency": "EUR",
    },
]
DEFAULT_PORTAL_ID = 1001


def _defaults(spec: dict[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in spec.items() if k != "hub_id"}
    values.setdefault("user_email", f"sandbox-admin@{spec['domain']}")
    values.setdefault("user_id", 7_000_000 + spec["hub_id"])
    values.setdefault("generated_at_ms", DEFAULT_GENERATED_AT_MS)
    return values


def ensure_default_portals() -> None:
    """Create the default portals if they are missing (tests flush tables, so this is also done lazily)."""
    ids = [p["hub_id"] for p in DEFAULT_PORTALS]
    existing = set(Portal.objects.filter(hub_id__in=ids).values_list("pk", flat=True))
    for spec in DEFAULT_PORTALS:
        if spec["hub_id"] in existing:
            continue
        try:
            with transaction.atomic():
                Portal.objects.create(hub_id=spec["hub_id"], **_defaults(spec))
        except IntegrityError:
            pass  # created concurrently


def get_portal(hub_id: int) -> Portal | None:
    portal = Portal.objects.filter(pk=hub_id).first()
    if portal is None and any(p["hub_id"] == hub_id for p in DEFAULT_PORTALS):
        ensure_default_portals()
        portal = Portal.objects.filter(pk=hub_id).first()
    return portal


def all_portals() -> list[Portal]:
    ensure_default_portals()
    return list(Portal.objects.order_by("hub_id"))


def seed_portal(
    *,
    hub_id: int,
    contacts: int | None = None,
    companies: int | None = None,
    deals: int | None = None,
    tickets: int | None = None,
    seed: int | None = None,
    name: str | None = None,
    domain: str | None = None,
    generated_at_ms: int | None = None,
    keep_changes: bool = False,
) -> Portal:
    """Create or resize a portal. Generation is instant; stored changes and custom properties are wiped
    (unless keep_changes) because they refer to the previous data set."""
    sizes = {"contacts": contacts, "companies": companies, "deals": deals, "tickets": tickets}
    for key, value in sizes.items():
        if value is not None and not 0 <= value <= MAX_SIZE:
            raise ValueError(f"{key} must be between 0 and {MAX_SIZE}")
    with transaction.atomic():
        portal = Portal.objects.select_for_update().filter(pk=hub_id).first()
        if portal is None:
            spec = next((p for p in DEFAULT_PORTALS if p["hub_id"] == hub_id), None)
            spec = (
                dict(spec)
                if spec
                else {
                    "hub_id": hub_id,
                    "name": name or f"Sandbox portal {hub_id}",
                    "domain": domain or f"portal-{hub_id}.example",
                    "seed": hub_id,
                }
            )
            portal = Portal(hub_id=hub_id, **_defaults(spec))
        for key, value in sizes.items():
            if value is not None:
                setattr(portal, key, value)
        if seed is not None:
            portal.seed = seed
        if name:
            portal.name = name
        if domain:
            portal.domain = domain
            portal.user_email = f"sandbox-admin@{domain}"
        if generated_at_ms is not None:
            portal.generated_at_ms = generated_at_ms
        if not keep_changes and portal.pk and Portal.objects.filter(pk=portal.pk).exists():
            RecordChange.objects.filter(portal_id=portal.pk).delete()
            CustomProperty.objects.filter(portal_id=portal.pk).delete()
        portal.schema_version += 1
        portal.save()
    from . import state

    state.invalidate()
    return portal
