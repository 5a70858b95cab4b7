"""Create or resize a sandbox HubSpot portal.

    python manage.py sandbox_seed --portal 2001 --contacts 1000000 --companies 5000 --deals 2000 --tickets 800 --seed 7

Records are generated from their index, so this is instant whatever the sizes. Sizes not given keep their value.
Re-seeding wipes the portal's stored changes and custom properties (they belong to the previous data set) unless
--keep-changes.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from sandbox.hubspot.portals import seed_portal


class Command(BaseCommand):
    help = "Create or resize a sandbox HubSpot portal (generated data: instant, no storage)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--portal", type=int, required=True, help="hub id, e.g. 1001")
        for name in ("contacts", "companies", "deals", "tickets"):
            parser.add_argument(f"--{name}", type=int, default=None)
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--name", default=None)
        parser.add_argument("--domain", default=None)
        parser.add_argument("--keep-changes", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            portal = seed_portal(
                hub_id=opts["portal"],
                contacts=opts["contacts"],
                companies=opts["companies"],
                deals=opts["deals"],
                tickets=opts["tickets"],
                seed=opts["seed"],
                name=opts["name"],
                domain=opts["domain"],
                keep_changes=opts["keep_changes"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"portal {portal.hub_id} ({portal.name}, {portal.domain}) seed={portal.seed}: "
            f"{portal.contacts} contacts, {portal.companies} companies, {portal.deals} deals, {portal.tickets} tickets"
        )
